"""The SSE hub of ``eventodb serve`` on its own (routing, thresholds, MD5 groups, dedup after
replay, overflow), and a disconnect seen by a server running in this process."""

from __future__ import annotations

import asyncio
import threading
import time

import httpx
import pytest

from conftest import free_port, make_token
from eventodb_cli.domain.hashing import member_for
from eventodb_cli.server import hub as hubmod
from eventodb_cli.server.hub import Hub, Subscriber


def run(coro):
    return asyncio.run(coro)


def test_routing_by_namespace_stream_category_all():
    async def go():
        h = Hub()
        s = Subscriber("ns1", "stream", "acct-1", 0)
        c = Subscriber("ns1", "category", "acct", 0)
        a = Subscriber("ns1", "all", None, 0)
        other = Subscriber("ns2", "all", None, 0)
        for x in (s, c, a, other):
            h.add(x)
        h.publish_many("ns1", [("acct-1", 0, 1), ("acct-2", 0, 2), ("acctx-1", 0, 3),
                               ("acct", 0, 4)])
        assert list(s.queue) == [("acct-1", 0, 1)]
        assert [p[2] for p in c.queue] == [1, 2, 4]  # 'acct' (no id) is in category acct
        assert [p[2] for p in a.queue] == [1, 2, 3, 4]
        assert not other.queue
        assert h.counts == {"ns1": 3, "ns2": 1}
        for x in (s, c, a, other):
            h.remove(x)
        assert h.counts == {} and h.subscriber_count() == 0
    run(go())


def test_thresholds_and_dedup_after_replay():
    async def go():
        s = Subscriber("n", "stream", "a-1", 3)
        for p in range(6):
            s.push("a-1", p, 100 + p)
        assert [q[1] for q in s.queue] == [3, 4, 5]
        s.after_replay(4)  # the replay covered 3 and 4
        assert [q[1] for q in s.queue] == [5]
        s.push("a-1", 5, 105)  # a repeat is never queued twice
        assert [q[1] for q in s.queue] == [5]
        c = Subscriber("n", "category", "a", 10)
        c.push("a-1", 0, 9)
        c.push("a-1", 1, 10)
        c.after_replay(12)
        c.push("a-2", 0, 12)
        c.push("a-2", 1, 13)
        assert [q[2] for q in c.queue] == [13]
    run(go())


def test_consumer_group_uses_md5_member():
    async def go():
        names = [f"account-{i}" for i in range(40)] + ["account-123", "account-123+retry",
                                                      "account", "account-"]
        for m in range(3):
            s = Subscriber("n", "category", "account", 0, member=m, size=3)
            for g, n in enumerate(names, 1):
                s.push(n, 0, g)
            assert [q[0] for q in s.queue] == [n for n in names if member_for(n, 3) == m]
        # the Go server's live filter would send account-123 to member 0 of 2; MD5 says 1
        s = Subscriber("n", "category", "account", 0, member=1, size=2)
        s.push("account-123", 0, 1)
        assert list(s.queue) == [("account-123", 0, 1)]
    run(go())


def test_overflow_marks_the_subscriber(monkeypatch):
    monkeypatch.setattr(hubmod, "BUFFER", 5)

    async def go():
        s = Subscriber("n", "all", None, 0)
        for g in range(1, 8):
            s.push("a-1", g, g)
        assert len(s.queue) == 5 and s.overflow and s.event.is_set()
    run(go())


def test_close_namespace_closes_its_subscribers_only():
    async def go():
        h = Hub()
        a, b = Subscriber("x", "all", None, 0), Subscriber("y", "all", None, 0)
        h.add(a)
        h.add(b)
        h.close_namespace("x")
        assert a.closed and not b.closed
    run(go())


@pytest.fixture
def inproc(tmp_path):
    """A real server (uvicorn on a socket) running in this process, so the hub is visible."""
    import uvicorn

    from eventodb_cli.server.app import Server
    from eventodb_cli.server.run import bind, ensure_default, open_registry

    tok = make_token()
    port = free_port()
    sock = bind("127.0.0.1", port)
    reg = open_registry(str(tmp_path / "d"), None)
    ensure_default(reg, tok)
    app = Server(reg, keepalive=0.2)
    server = uvicorn.Server(uvicorn.Config(app, http="httptools", lifespan="on",
                                           log_level="warning", access_log=False))
    t = threading.Thread(target=lambda: asyncio.run(server.serve(sockets=[sock])),
                         daemon=True)
    t.start()
    url = f"http://127.0.0.1:{port}"
    for _ in range(100):
        try:
            httpx.get(url + "/health", timeout=1)
            break
        except httpx.HTTPError:
            time.sleep(0.05)
    yield app, url, tok
    server.should_exit = True
    t.join(10)


def test_disconnected_subscribers_are_removed(inproc):
    app, url, tok = inproc
    for params in ({"stream": "a-1"}, {"category": "a", "consumer": "0", "size": "2"},
                   {"all": "true"}):
        with httpx.stream("GET", url + "/subscribe", params={**params, "token": tok},
                          timeout=10) as r:
            lines = r.iter_lines()  # kept: a dropped iterator closes the response
            assert next(lines) == ": ready"
            time.sleep(0.3)  # past a keep-alive comment: still connected
            assert app.hub.subscriber_count() == 1, params
        deadline = time.monotonic() + 5
        while app.hub.subscriber_count() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert app.hub.subscriber_count() == 0
    # and the server still answers
    r = httpx.post(url + "/rpc", content=b'["sys.version"]',
                   headers={"Authorization": f"Bearer {tok}"})
    assert r.status_code == 200
