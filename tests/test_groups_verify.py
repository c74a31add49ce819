"""verify-groups: healthy stores and servers pass; doctored member reads fail precisely.

Expected figures are computed here with straight loops over ``member_for``; doctored reads come
from a Store wrapper (local), an httpx.MockTransport in front of the real ``eventodb serve``
process, and a tiny real HTTP proxy (for the CLI and the installed executable).
"""

from __future__ import annotations

import json
import threading
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from eventodb_cli.domain.hashing import member_for
from eventodb_cli.domain.message import NewMessage
from eventodb_cli.services import groups as svc
from eventodb_cli.store.base import Store
from eventodb_cli.store.local import LocalStore

SIZE = 3


def _fill(store, cat: str, n_streams: int = 60) -> dict[str, int]:
    """Streams with 1..4 messages each, a compound id, and a stream without an id."""
    msgs = []
    counts: dict[str, int] = {}
    for i in range(n_streams):
        s = f"{cat}-{i}"
        for _ in range(1 + i % 4):
            msgs.append(NewMessage(s, "T", "{}", None, str(uuid.uuid4())))
            counts[s] = counts.get(s, 0) + 1
    for s in (f"{cat}-1+retry", f"{cat}-7+x+y", cat):
        msgs.append(NewMessage(s, "T", "{}", None, str(uuid.uuid4())))
        counts[s] = counts.get(s, 0) + 1
    # another category in between, to be left alone
    msgs.insert(5, NewMessage("other-1", "T", "{}", None, str(uuid.uuid4())))
    store.write_batch(msgs)
    return counts


def _expected_members(counts: dict[str, int], size: int) -> list[dict]:
    rows = [{"member": m, "streams": 0, "messages": 0} for m in range(size)]
    for s, c in counts.items():
        m = member_for(s, size)
        if m is None:
            continue
        rows[m]["streams"] += 1
        rows[m]["messages"] += c
    return rows


class Doctored(Store):
    """A LocalStore whose member reads follow ``owners`` overrides (a server with a broken
    assignment): ``owners[stream] = set of members that return it``; ``drop[stream] = n``
    leaves the first n messages of that stream out of every member read."""

    def __init__(self, inner: LocalStore, owners: dict[str, set[int]] | None = None,
                 drop: dict[str, int] | None = None, on_member_read=None):
        self.inner = inner
        self.owners = owners or {}
        self.drop = drop or {}
        self.on_member_read = on_member_read
        self.calls: list[tuple] = []

    def category_head(self, category):
        return self.inner.category_head(category)

    def category_get(self, category, position=1, batch_size=1000, correlation=None,
                     member=None, size=None):
        self.calls.append((position, batch_size, member, size))
        if member is None:
            return self.inner.category_get(category, position, batch_size, correlation)
        if self.on_member_read:
            self.on_member_read(self.inner)
        every = self.inner.category_get(category, 1, None, correlation)
        seen: dict[str, int] = {}
        share = []
        for x in every:
            seen[x.stream_name] = seen.get(x.stream_name, 0) + 1
            if seen[x.stream_name] <= self.drop.get(x.stream_name, 0):
                continue
            who = self.owners.get(x.stream_name)
            if who is None:
                m = member_for(x.stream_name, size)
                who = set() if m is None else {m}
            if member in who and x.global_position >= position:
                share.append(x)
        return share if batch_size is None else share[:batch_size]


# --- healthy ------------------------------------------------------------------------------------
def test_healthy_local_store_passes_with_exact_loads(cli, store_path):
    with LocalStore(store_path, create=True) as st:
        counts = _fill(st, "account")
    r = cli("verify-groups", "account", "--size", SIZE, "--store", store_path, "--format", "json")
    assert r.exit_code == 0, r
    rep = r.json()
    assert rep["ok"] is True and rep["violations"] == [] and rep["violationCounts"] == {}
    assert rep["category"] == "account" and rep["size"] == SIZE
    assert rep["streams"] == len(counts) and rep["messages"] == sum(counts.values())
    assert rep["unassignedStreams"] == 1
    want = _expected_members(counts, SIZE)
    assert [{k: m[k] for k in ("member", "streams", "messages")} for m in rep["members"]] == want
    total = sum(m["messages"] for m in want)
    for m, w in zip(rep["members"], want):
        assert m["share"] == round(100 * w["messages"] / total, 4)
    loads = [w["messages"] for w in want]
    assert rep["load"]["min"] == min(loads) and rep["load"]["max"] == max(loads)
    assert rep["load"]["mean"] == round(sum(loads) / SIZE, 4)


def test_healthy_table_through_the_executable(exe, store_path):
    with LocalStore(store_path, create=True) as st:
        _fill(st, "account")
    r = exe("verify-groups", "account", "--size", "4", "--store", store_path, "--format", "table")
    assert r.exit_code == 0, r
    assert "OK: the 4 members partition account exactly" in r.stdout
    assert "member" in r.stdout and "share" in r.stdout
    assert r.stderr == ""  # no progress when stderr is not a terminal
    # default format off a terminal: one JSON object on one line
    r = exe("verify-groups", "account", "--size", "4", "--store", store_path)
    assert r.exit_code == 0 and len(r.stdout.splitlines()) == 1 and r.json()["ok"] is True


def test_write_test_data_on_an_empty_store(exe, tmp_path):
    path = str(tmp_path / "new.db")
    r = exe("verify-groups", "probe", "--size", "3", "--store", path, "--write-test-data", "40",
            "--format", "json")
    assert r.exit_code == 0, r
    rep = r.json()
    assert rep["ok"] and rep["streams"] == 40 and rep["messages"] == 40
    assert sum(m["streams"] for m in rep["members"]) == 40
    assert "wrote 40 test streams" in r.stderr
    with LocalStore(path) as st:
        names = {m.stream_name for m in st.category_get("probe", 1, None)}
    assert len(names) == 40 and all(uuid.UUID(n[len("probe-"):]) for n in names)


def test_reads_are_a_snapshot_up_to_the_head(store_path):
    """Messages written while the members are read are left out of every read: no false gap."""
    with LocalStore(store_path, create=True) as st:
        counts = _fill(st, "account")
        head = st.category_head("account")
        written = []

        def writer(inner):
            s = f"account-late{len(written)}"
            inner.write_batch([NewMessage(s, "T", "{}")])
            written.append(s)

        rep = svc.verify(Doctored(st, on_member_read=writer), "account", SIZE)
    assert written, "the wrapper wrote during the member reads"
    assert rep["ok"], rep["violations"]
    assert rep["head"] == head and rep["streams"] == len(counts)


def test_read_pattern_one_unfiltered_pass_and_one_per_member(store_path):
    with LocalStore(store_path, create=True) as st:
        _fill(st, "account")
        d = Doctored(st)
        rep = svc.verify(d, "account", 4)
    assert rep["ok"]
    members_read = [c[2] for c in d.calls if c[2] is not None]
    assert members_read == [0, 1, 2, 3]  # one page each (small category), in member order
    assert all(c[1] == svc.READ_BATCH for c in d.calls)


def test_empty_category_is_not_found_not_a_pass(exe, store_path):
    """Issue 8 item 10: verifying nothing is a failure (exit 4), not an OK."""
    with LocalStore(store_path, create=True) as st:
        st.write_batch([NewMessage("other-1", "T", "{}")])
    for fmt in ("json", "table"):
        r = exe("verify-groups", "account", "--size", "2", "--store", store_path, "--format",
                fmt)
        assert r.exit_code == 4, r
        assert r.stdout == ""
        assert r.stderr.strip() == ("eventodb: error: no messages in category 'account': "
                                    "nothing to verify (--write-test-data K writes some)")


@pytest.mark.parametrize("args,needle", [
    (["--size", "0"], "--size: 0 is not in the range 1<=x<=100000"),
    (["--size", "2", "--write-test-data", "0"], "--write-test-data: 0 is not in the range"),
])
def test_usage_errors_exit_2(exe, store_path, args, needle):
    r = exe("verify-groups", "account", *args, "--store", store_path)
    assert r.exit_code == 2 and needle in r.stderr and "Traceback" not in r.stderr


def test_stream_name_instead_of_category_is_a_usage_error(exe, store_path):
    r = exe("verify-groups", "account-1", "--size", "2", "--store", store_path)
    assert r.exit_code == 2 and "not a category" in r.stderr


# --- doctored -----------------------------------------------------------------------------------
def _pick(counts, size, member, k=1, skip=()):
    """Plain streams (not the compound's cardinal stream) of ``member``."""
    out = [s for s in sorted(counts) if member_for(s, size) == member and "+" not in s
           and not s.endswith("-1") and s not in skip]
    return out[:k]


def test_doctored_local_reads_fail_with_a_precise_report(store_path):
    with LocalStore(store_path, create=True) as st:
        counts = _fill(st, "account")
        (dup,) = _pick(counts, SIZE, 0)  # of member 0, also returned to member 1
        (moved,) = _pick(counts, SIZE, 0, skip={dup})  # of member 0, returned by member 2 only
        (gone,) = _pick(counts, SIZE, 1)  # of member 1, returned by nobody
        (short,) = [s for s in _pick(counts, SIZE, 2, k=20) if counts[s] > 1][:1]
        comp = "account-1+retry"
        home = member_for("account-1", SIZE)
        away = (home + 1) % SIZE
        owners = {dup: {0, 1}, moved: {2}, gone: set(), comp: {away}, "account": {home}}
        rep = svc.verify(Doctored(st, owners, drop={short: 1}), "account", SIZE)
    assert rep["ok"] is False
    got = {(v["kind"], v["stream"]): v for v in rep["violations"]}
    want = {
        ("duplicate", dup): {"members": [0, 1], "expected": 0},
        ("wrong-member", dup): {"members": [1], "expected": 0},
        ("wrong-member", moved): {"members": [2], "expected": 0},
        ("gap", gone): {"members": [], "expected": 1},
        ("wrong-member", comp): {"members": [away], "expected": home},
        ("compound-split", comp): {"members": [away], "expected": home},
        ("returned-without-id", "account"): {"members": [home], "expected": None},
        ("count-mismatch", short): {"members": [2], "expected": 2},
    }
    assert set(got) == set(want)
    for key, fields in want.items():
        for f, val in fields.items():
            assert got[key][f] == val, (key, f, got[key])
    assert got[("count-mismatch", short)]["messages"] == counts[short] - 1
    assert got[("count-mismatch", short)]["unfilteredMessages"] == counts[short]
    assert got[("compound-split", comp)]["cardinalStream"] == "account-1"
    assert got[("compound-split", comp)]["cardinalMembers"] == [home]
    assert rep["violationCounts"] == {"duplicate": 1, "wrong-member": 3, "gap": 1,
                                      "compound-split": 1, "returned-without-id": 1,
                                      "count-mismatch": 1}
    # per-member figures are what the members returned
    want_rows = _expected_members(counts, SIZE)
    want_rows[1]["streams"] += 1
    want_rows[1]["messages"] += counts[dup]
    want_rows[0]["streams"] -= 1
    want_rows[0]["messages"] -= counts[moved]
    want_rows[2]["streams"] += 1
    want_rows[2]["messages"] += counts[moved] - 1
    want_rows[1]["streams"] -= 1
    want_rows[1]["messages"] -= counts[gone]
    want_rows[home]["streams"] += 1  # "account" (no id)
    want_rows[home]["messages"] += 1
    want_rows[home]["streams"] -= 1  # account-1+retry went away
    want_rows[home]["messages"] -= 1
    want_rows[away]["streams"] += 1
    want_rows[away]["messages"] += 1
    assert [{k: m[k] for k in ("member", "streams", "messages")}
            for m in rep["members"]] == want_rows


def test_foreign_and_unknown_streams_returned_by_a_member(store_path):
    class Extra(Doctored):
        def category_get(self, category, position=1, batch_size=1000, correlation=None,
                         member=None, size=None):
            got = super().category_get(category, position, batch_size, correlation, member, size)
            if member == 1 and position == 1:
                other = self.inner.category_get("other", 1, None)
                ghost = other[0]._replace(stream_name="account-ghost")
                got = sorted(got + other + [ghost], key=lambda x: x.global_position)
            return got

    with LocalStore(store_path, create=True) as st:
        _fill(st, "account")
        rep = svc.verify(Extra(st), "account", SIZE)
    got = sorted((v["kind"], v["stream"], v["members"], v["expected"], v["messages"])
                 for v in rep["violations"])
    assert got == [("unknown-stream", "account-ghost", [1], member_for("account-ghost", SIZE), 1),
                   ("unknown-stream", "other-1", [1], None, 1)]


def test_a_server_hashing_the_full_name_is_caught(store_path):
    """A server that hashes the whole stream name (SSE live filter style) breaks compound ids
    and most assignments: every such stream is reported."""
    with LocalStore(store_path, create=True) as st:
        counts = _fill(st, "account")
        from eventodb_cli.domain.hashing import hash64

        owners = {s: {abs(hash64(s)) % SIZE} for s in counts if member_for(s, SIZE) is not None}
        rep = svc.verify(Doctored(st, owners), "account", SIZE)
    wrong = {s for s in counts if member_for(s, SIZE) is not None
             and abs(hash64(s)) % SIZE != member_for(s, SIZE)}
    assert wrong
    assert {v["stream"] for v in rep["violations"] if v["kind"] == "wrong-member"} == wrong
    assert not rep["ok"]


def test_doctored_reads_through_the_cli_exit_1(cli, store_path, monkeypatch):
    with LocalStore(store_path, create=True) as st:
        counts = _fill(st, "account")
    (dup,) = _pick(counts, SIZE, 0)
    (moved,) = _pick(counts, SIZE, 2)
    import eventodb_cli.store.resolve as resolve

    real = resolve.open_store
    monkeypatch.setattr(resolve, "open_store",
                        lambda t, create=False: Doctored(real(t, create=create),
                                                         {dup: {0, 1}, moved: {0}}))
    r = cli("verify-groups", "account", "--size", SIZE, "--store", store_path, "--format",
            "json")
    assert r.exit_code == 1
    kinds = sorted((v["kind"], v["stream"], tuple(v["members"]), v["expected"])
                   for v in r.json()["violations"])
    assert kinds == sorted([("duplicate", dup, (0, 1), 0), ("wrong-member", dup, (1,), 0),
                            ("wrong-member", moved, (0,), 2)])
    r = cli("verify-groups", "account", "--size", SIZE, "--store", store_path, "--format",
            "table")
    assert r.exit_code == 1
    assert "FAILED: 3 violation(s): 1 duplicate, 2 wrong-member" in r.stdout
    assert dup in r.stdout and moved in r.stdout


# --- a real server ------------------------------------------------------------------------------
def _server_category(server) -> tuple[str, dict[str, int]]:
    from eventodb_cli.store.remote import RemoteStore

    cat = "vg" + uuid.uuid4().hex[:10]
    with RemoteStore(server.url, server.token) as rs:
        counts = _fill(rs, cat, 40)
    return cat, counts


def test_healthy_server_passes(exe, server):
    cat, counts = _server_category(server)
    r = exe("verify-groups", cat, "--size", "3", "--url", server.url, "--token", server.token,
            "--format", "json")
    assert r.exit_code == 0, r
    rep = r.json()
    assert rep["ok"] and rep["streams"] == len(counts)
    assert [{k: m[k] for k in ("member", "streams", "messages")}
            for m in rep["members"]] == _expected_members(counts, 3)


def test_write_test_data_against_a_server(exe, server):
    cat = "vgt" + uuid.uuid4().hex[:10]
    r = exe("verify-groups", cat, "--size", "4", "--url", server.url, "--token", server.token,
            "--write-test-data", "25", "--format", "json")
    assert r.exit_code == 0, r
    assert r.json()["streams"] == 25 and r.json()["ok"]


def _doctor_rpc(body: bytes, forward, owners: dict[str, set[int]]) -> bytes:
    """Rewrite category.get member reads: the share follows ``owners`` where it says so, and
    member_for elsewhere; everything else is forwarded unchanged. ``forward(body) -> bytes``."""
    req = json.loads(body)
    if not (isinstance(req, list) and req and req[0] == "category.get" and len(req) > 2
            and isinstance(req[2], dict) and req[2].get("consumerGroup")):
        return forward(body)
    opts = dict(req[2])
    group = opts.pop("consumerGroup")
    limit = opts.pop("batchSize", 1000)
    opts["batchSize"] = -1
    every = json.loads(forward(json.dumps([req[0], req[1], opts]).encode()))
    share = []
    for item in every:
        who = owners.get(item[1])
        if who is None:
            m = member_for(item[1], group["size"])
            who = set() if m is None else {m}
        if group["member"] in who:
            share.append(item)
    if limit not in (-1, 0):
        share = share[:limit]
    return json.dumps(share).encode()


def test_doctored_server_response_through_mock_transport(server):
    """An httpx.MockTransport in front of the real server rewrites member 1's category.get."""
    import httpx

    from eventodb_cli.store.remote import RemoteStore

    cat, counts = _server_category(server)
    (dup,) = _pick(counts, SIZE, 0)
    (moved,) = _pick(counts, SIZE, 2)
    real = httpx.Client(base_url=server.url)

    def forward(body: bytes) -> bytes:
        resp = real.post("/rpc", content=body,
                         headers={"Authorization": f"Bearer {server.token}",
                                  "Content-Type": "application/json"})
        assert resp.status_code == 200, resp.text
        return resp.content

    def handler(request: httpx.Request) -> httpx.Response:
        out = _doctor_rpc(request.content, forward, {dup: {0, 1}, moved: {1}})
        return httpx.Response(200, content=out, headers={"Content-Type": "application/json"})

    with RemoteStore(server.url, server.token, transport=httpx.MockTransport(handler)) as rs:
        rep = svc.verify(rs, cat, SIZE)
    real.close()
    assert not rep["ok"]
    assert sorted((v["kind"], v["stream"], v["members"], v["expected"])
                  for v in rep["violations"]) == sorted([
        ("duplicate", dup, [0, 1], 0), ("wrong-member", dup, [1], 0),
        ("wrong-member", moved, [1], 2)])


class _Proxy:
    """A tiny real HTTP server forwarding /rpc to the real server through ``_doctor_rpc``."""

    def __init__(self, server, owners):
        import httpx

        self.client = httpx.Client(base_url=server.url)
        token = server.token
        client = self.client

        def forward(body: bytes) -> bytes:
            return client.post("/rpc", content=body,
                               headers={"Authorization": f"Bearer {token}",
                                        "Content-Type": "application/json"}).content

        class H(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                out = _doctor_rpc(body, forward, owners)
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(out)))
                self.end_headers()
                self.wfile.write(out)

            def log_message(self, *a):
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), H)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()
        self.client.close()


def test_doctored_server_through_the_executable_exit_1(exe, server):
    cat, counts = _server_category(server)
    (dup,) = _pick(counts, SIZE, 2)
    (gone,) = _pick(counts, SIZE, 0)
    proxy = _Proxy(server, {dup: {2, 0}, gone: set()})
    try:
        r = exe("verify-groups", cat, "--size", SIZE, "--url", proxy.url, "--token",
                server.token, "--format", "json")
        t = exe("verify-groups", cat, "--size", SIZE, "--url", proxy.url, "--token",
                server.token, "--format", "table")
    finally:
        proxy.close()
    assert r.exit_code == 1, r
    rep = r.json()
    assert sorted((v["kind"], v["stream"], v["members"], v["expected"])
                  for v in rep["violations"]) == sorted([
        ("duplicate", dup, [0, 2], 2), ("wrong-member", dup, [0], 2), ("gap", gone, [], 0)])
    assert t.exit_code == 1 and "FAILED: 3 violation(s)" in t.stdout and gone in t.stdout


def test_memory_is_bounded_by_streams_not_messages(tmp_path):
    """100,000 messages in 7 streams: the peak is one page of messages, not the category
    (holding every message would take about 40 MB here)."""
    import tracemalloc

    path = str(tmp_path / "mem.db")
    with LocalStore(path, create=True) as st:
        for _ in range(10):
            st.write_batch([NewMessage(f"acc-{i % 7}", "T", '{"a":1}') for i in range(10_000)])
    with LocalStore(path) as st:
        tracemalloc.start()
        try:
            rep = svc.verify(st, "acc", 3)
            _cur, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
    assert rep["ok"] and rep["messages"] == 100_000 and rep["streams"] == 7
    assert peak < 15_000_000, peak


def test_progress_on_a_terminal_stderr_only(store_path):
    """With stderr on a terminal, a progress bar is drawn there; stdout keeps the clean JSON."""
    import os
    import pty
    import select
    import subprocess

    from conftest import exe_path

    with LocalStore(store_path, create=True) as st:
        _fill(st, "account")
    master, slave = pty.openpty()
    try:
        p = subprocess.Popen([exe_path(), "verify-groups", "account", "--size", "2", "--store",
                              store_path, "--format", "json"], stdout=subprocess.PIPE,
                             stderr=slave, env={**os.environ, "COLUMNS": "100"})
        os.close(slave)
        out, _ = p.communicate(timeout=60)
        seen = b""
        while select.select([master], [], [], 0.5)[0]:
            try:
                chunk = os.read(master, 65536)
            except OSError:
                break
            if not chunk:
                break
            seen += chunk
    finally:
        os.close(master)
    assert p.returncode == 0
    assert json.loads(out)["ok"] is True
    text = seen.decode("utf-8", "replace")
    assert "unfiltered read" in text and "member 1/2" in text
