"""verify-groups on a server (issue 12, acceptance 5): only each message's stream name and
global position are decoded (no Message objects), and the member reads run a few at a time
against the real ``eventodb serve`` behind a small proxy (tests/proxy_helpers.py), with a report
that does not depend on the interleaving and errors that surface as a one-by-one read's."""

from __future__ import annotations

import json
import time
import uuid

import pytest

from proxy_helpers import Proxy

from eventodb_cli.domain.hashing import member_for
from eventodb_cli.domain.message import Message, NewMessage
from eventodb_cli.errors import UsageError
from eventodb_cli.services import groups as svc
from eventodb_cli.store.remote import RemoteStore

SIZE = 4


@pytest.fixture(scope="module")
def filled(server):
    """A namespace of its own: 120 streams of 1..3 messages in ``vgr``, a compound id, a stream
    without an id and another category in between."""
    with RemoteStore(server.url, server.token) as admin:
        token = admin.ns_create("vgr-" + uuid.uuid4().hex[:10])["token"]
    msgs = []
    for i in range(120):
        for _ in range(1 + i % 3):
            msgs.append(NewMessage(f"vgr-{uuid.UUID(int=i + 1)}", "T", '{"i":%d}' % i))
    msgs += [NewMessage(f"vgr-{uuid.UUID(int=1)}+retry", "T", "{}"), NewMessage("vgr", "T", "{}"),
             NewMessage("other-1", "T", "{}")]
    with RemoteStore(server.url, token) as s:
        s.write_batch(msgs)
    return server.url, token


def _group(body: bytes):
    """(member, size) of a category.get member read, else None."""
    if not body.startswith(b'["category.get"'):
        return None
    req = json.loads(body)
    g = req[2].get("consumerGroup") if len(req) > 2 and isinstance(req[2], dict) else None
    return None if g is None else (g["member"], g["size"])


def test_verify_on_a_server_builds_no_message_objects(filled, monkeypatch):
    url, token = filled
    built = [0]
    real = Message.from_category_wire.__func__

    def counting(cls, item):
        built[0] += 1
        return real(cls, item)

    monkeypatch.setattr(Message, "from_category_wire", classmethod(counting))
    with RemoteStore(url, token) as s:
        rep = svc.verify(s, "vgr", SIZE)
        assert rep["ok"], rep["violations"][:3]
        assert rep["messages"] == 242 and rep["streams"] == 122
        assert built[0] == 0
        assert sum(len(b) for b, _ in s.category_pages("vgr", 1, 1000)) == 242
        assert built[0] == 242  # the ordinary read still builds them


def test_member_reads_run_concurrently(filled):
    """Each member read is held 0.3 s by the proxy: they overlap (at most read_concurrency at
    once), so four of them take about one hold, not four."""
    url, token = filled

    def hold(method, path, body):
        if _group(body) is not None:
            time.sleep(0.3)
        return None

    with Proxy(url, hold) as p, RemoteStore(p.url, token) as s:
        rep = svc.verify(s, "vgr", SIZE)
        assert rep["ok"]
    assert 2 <= p.max_in_flight <= s.read_concurrency, p.max_in_flight


def _wrong_server(url: str, token: str):
    """A proxy whose member reads are wrong: member 1 never returns stream A (a gap), member 2
    also returns stream B of member 0 (a duplicate, wrong member); member 0 answers last and
    member 3 first."""
    import http.client
    from urllib.parse import urlsplit

    with RemoteStore(url, token) as s:
        names = sorted({m.stream_name for m in s.iter_category("vgr")})
    a = next(n for n in names if member_for(n, SIZE) == 1)
    b = next(n for n in names if member_for(n, SIZE) == 0 and "+" not in n
             and n + "+retry" not in names)
    u = urlsplit(url)

    def upstream(body: bytes) -> list:
        c = http.client.HTTPConnection(u.hostname, u.port, timeout=30)
        c.request("POST", "/rpc", body, {"Authorization": f"Bearer {token}"})
        out = json.loads(c.getresponse().read())
        c.close()
        return out

    def hook(method, path, body):
        g = _group(body)
        if g is None:
            return None
        time.sleep(0.05 * (SIZE - g[0]))
        share = upstream(body)
        if g[0] == 1:
            share = [x for x in share if x[1] != a]
        if g[0] == 2:
            req = json.loads(body)
            req[2]["consumerGroup"]["member"] = 0
            share = sorted(share + [x for x in upstream(json.dumps(req).encode())
                                    if x[1] == b], key=lambda x: x[4])
        return 200, {"Content-Type": "application/json"}, json.dumps(share).encode()

    return hook, a, b


def test_a_wrong_server_gets_the_same_report_concurrent_or_one_by_one(filled):
    url, token = filled
    hook, a, b = _wrong_server(url, token)
    reports = []
    for workers in (1, 4):
        with Proxy(url, hook) as p, RemoteStore(p.url, token) as s:
            s.read_concurrency = workers
            reports.append(svc.verify(s, "vgr", SIZE))
            if workers == 1:
                assert p.max_in_flight == 1
    one, concurrent = reports
    assert one == concurrent
    kinds = {(v["kind"], v["stream"]) for v in concurrent["violations"]}
    assert kinds == {("gap", a), ("duplicate", b), ("wrong-member", b)}, kinds
    assert concurrent["ok"] is False


def _rejecting(members_delays: dict[int, float]):
    def hook(method, path, body):
        g = _group(body)
        if g is None or g[0] not in members_delays:
            return None
        time.sleep(members_delays[g[0]])
        err = {"error": {"code": "INVALID_REQUEST", "message": f"refused member {g[0]}"}}
        return 400, {"Content-Type": "application/json"}, json.dumps(err).encode()

    return hook


def test_the_lowest_failing_member_s_error_is_raised(filled):
    """Members 1 and 3 are refused, member 3 at once and member 1 after 0.3 s: the error is
    member 1's, what reading the members one by one raises."""
    url, token = filled
    with Proxy(url, _rejecting({1: 0.3, 3: 0.0})) as p, RemoteStore(p.url, token) as s:
        with pytest.raises(UsageError) as ei:
            svc.verify(s, "vgr", SIZE)
    assert "refused member 1" in str(ei.value), str(ei.value)


def test_a_failing_member_read_exits_as_before_through_the_executable(exe, filled):
    url, token = filled
    with Proxy(url, _rejecting({2: 0.0})) as p:
        r = exe("verify-groups", "vgr", "--size", str(SIZE), "--url", p.url, "--token", token)
    assert r.exit_code == 2, r
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and "refused member 2" in lines[0], r.stderr
    assert "Traceback" not in r.stderr


def test_members_queued_behind_a_failure_send_nothing(filled):
    """Size 8 with 4 reads at a time: member 0 is refused; the members still queued when it
    failed send no request."""
    url, token = filled
    seen: list[int] = []

    def hook(method, path, body):
        g = _group(body)
        if g is None:
            return None
        seen.append(g[0])
        if g[0] == 0:
            err = {"error": {"code": "INVALID_REQUEST", "message": "refused member 0"}}
            return 400, {"Content-Type": "application/json"}, json.dumps(err).encode()
        time.sleep(0.5)  # members 1-3 are still reading when member 0 fails
        return None

    with Proxy(url, hook) as p, RemoteStore(p.url, token) as s:
        with pytest.raises(UsageError, match="refused member 0"):
            svc.verify(s, "vgr", 8)
    assert sorted(set(seen)) == [0, 1, 2, 3], seen


@pytest.mark.parametrize("bad", [[["id", None, "T", 0, 5, {}, None, "2025-01-01T00:00:00Z"]],
                                 [["id", "vgr-1", "T", 0, "5", {}, None, "x"]],
                                 [{"stream": "vgr-1"}], {"not": "a list"}])
def test_a_malformed_page_is_a_malformed_response_not_a_traceback(filled, bad):
    url, token = filled

    def hook(method, path, body):
        if body.startswith(b'["category.get"'):
            return 200, {"Content-Type": "application/json"}, json.dumps(bad).encode()
        return None

    from eventodb_cli.errors import EventoError

    with Proxy(url, hook) as p, RemoteStore(p.url, token) as s:
        with pytest.raises(EventoError) as ei:
            svc.verify(s, "vgr", SIZE)
    assert ei.value.code == "MALFORMED_RESPONSE" and "category.get vgr" in str(ei.value)
