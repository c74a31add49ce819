"""``eventodb serve`` GET /subscribe (PROTOCOL.md section 7) against a real process: replay from
a position, live pokes, consumer groups with the MD5 rule (never the Go 31-multiplier hash),
``all=true``, no replay/subscribe race, keep-alive comments, exact 400 bodies, auth."""

from __future__ import annotations

import json
import queue
import threading
import time
import uuid

import httpx
import pytest

from conftest import start_server
from eventodb_cli.domain.hashing import member_for


@pytest.fixture(scope="module")
def srv(tmp_path_factory):
    s = start_server(tmp_path_factory.mktemp("serve-sse") / "data", "--keepalive", "0.4")
    yield s
    s.stop()


@pytest.fixture(scope="module")
def client(srv):
    with httpx.Client(base_url=srv.url, headers={"Authorization": f"Bearer {srv.token}"},
                      timeout=30) as c:
        yield c


def write(client, stream, **extra):
    r = client.post("/rpc", content=json.dumps(["stream.write", stream,
                                                {"type": "T", "data": extra}]))
    assert r.status_code == 200, r.text
    return r.json()


class SSE:
    """Reads an SSE response in a thread; ``items`` gets ('comment', text) and
    ('poke', dict) in arrival order, plus ('raw', line) for every line."""

    def __init__(self, srv, params, token=None):
        self.q: queue.Queue = queue.Queue()
        self.lines: list[str] = []
        self.status = None
        self.headers = None
        self._ready = threading.Event()
        self._client = httpx.Client(timeout=httpx.Timeout(30, read=60))
        self._params = params
        self._url = srv.url + "/subscribe"
        self._headers = {"Authorization": f"Bearer {token or srv.token}"}
        self._t = threading.Thread(target=self._run, daemon=True)
        self._t.start()
        assert self._ready.wait(10)

    def _run(self):
        try:
            with self._client.stream("GET", self._url, params=self._params,
                                     headers=self._headers) as r:
                self.status = r.status_code
                self.headers = r.headers
                self._ready.set()
                event = None
                for line in r.iter_lines():
                    self.lines.append(line)
                    if line.startswith(":"):
                        self.q.put(("comment", line[1:].strip()))
                    elif line.startswith("event: "):
                        event = line[7:]
                    elif line.startswith("data: "):
                        assert event == "poke", self.lines
                        self.q.put(("poke", json.loads(line[6:])))
                        event = None
        except (httpx.HTTPError, RuntimeError):
            pass
        finally:
            self._ready.set()
            self.q.put(("end", None))

    def next(self, timeout=10, kinds=("poke",)):
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"nothing within {timeout}s; lines: {self.lines[-10:]}")
            kind, value = self.q.get(timeout=left)
            if kind in kinds or kind == "end":
                return kind, value

    def pokes(self, n, timeout=10):
        out = []
        for _ in range(n):
            kind, value = self.next(timeout)
            assert kind == "poke", (kind, out)
            out.append(value)
        return out

    def quiet(self, seconds=0.6):
        """No poke arrives for ``seconds``."""
        try:
            kind, value = self.next(seconds)
        except (TimeoutError, queue.Empty):
            return True
        raise AssertionError(f"unexpected {kind}: {value}")

    def close(self):
        self._client.close()


@pytest.fixture
def sse(srv):
    opened = []

    def open_(params, token=None):
        s = SSE(srv, params, token)
        opened.append(s)
        return s

    yield open_
    for s in opened:
        s.close()


def name(prefix="sse"):
    return prefix + uuid.uuid4().hex[:10]


# --- stream ------------------------------------------------------------------------------------
def test_stream_ready_replay_from_position_then_live(client, sse):
    s = name() + "-1"
    res = [write(client, s, i=i) for i in range(5)]
    sub = sse({"stream": s, "position": 3})
    assert sub.status == 200
    h = sub.headers
    assert h["content-type"] == "text/event-stream" and h["cache-control"] == "no-cache"
    assert h["access-control-allow-origin"] == "*"
    assert sub.next(kinds=("comment",)) == ("comment", "ready")
    assert sub.pokes(2) == [{"stream": s, "position": p, "globalPosition":
                             res[p]["globalPosition"]} for p in (3, 4)]
    r5 = write(client, s)
    write(client, s + "x")  # another stream: no poke
    assert sub.pokes(1) == [{"stream": s, "position": 5, "globalPosition": r5["globalPosition"]}]
    assert sub.quiet()
    # the wire form, exactly
    i = sub.lines.index('data: {"stream":"%s","position":5,"globalPosition":%d}'
                        % (s, r5["globalPosition"]))
    assert sub.lines[i - 1] == "event: poke" and sub.lines[i + 1] == ""
    assert sub.lines[:2] == [": ready", ""]


def test_keepalive_comments(client, sse):
    sub = sse({"stream": name() + "-1"})
    assert sub.next(kinds=("comment",)) == ("comment", "ready")
    assert sub.next(timeout=3, kinds=("comment",)) == ("comment", "keep-alive")
    assert sub.next(timeout=3, kinds=("comment",)) == ("comment", "keep-alive")


def test_no_race_between_replay_and_live(client, sse, srv):
    """Writes during connect are poked exactly once, in order (Go loses those between its
    replay and its subscribe)."""
    s = name() + "-1"
    for i in range(50):
        write(client, s)
    stop = threading.Event()

    def writer():
        with httpx.Client(base_url=srv.url,
                          headers={"Authorization": f"Bearer {srv.token}"}) as c:
            for i in range(150):
                write(c, s)

    t = threading.Thread(target=writer)
    t.start()
    time.sleep(0.05)
    sub = sse({"stream": s})
    t.join()
    stop.set()
    got = [p["position"] for p in sub.pokes(200)]
    assert got == list(range(200))
    assert sub.quiet()


def test_replay_is_capped_at_1000(client, sse, srv):
    s = name() + "-1"
    body = "\n".join(json.dumps({"id": str(uuid.uuid4()), "stream": s, "type": "T", "pos": i,
                                 "gpos": 100000 + i, "data": {}, "meta": None,
                                 "time": "2025-01-01T00:00:00Z"}) for i in range(1005))
    r = client.post("/import", content=body)
    assert '"done":true' in r.text
    sub = sse({"stream": s})
    got = [p["position"] for p in sub.pokes(1000)]
    assert got == list(range(1000))
    assert sub.quiet(0.5)
    assert write(client, s)["position"] == 1005
    assert [p["position"] for p in sub.pokes(1)] == [1005]


# --- category and consumer groups --------------------------------------------------------------
def test_category_replay_and_live_use_md5_member(client, sse):
    cat = name("acc")
    # account-123: MD5 member 1 of 2, but the Go server's live filter (31-hash) says member 0
    before = [f"{cat}-123", f"{cat}-1", f"{cat}-2", f"{cat}-3+retry", cat, f"{cat}-"]
    res = {s: write(client, s) for s in before}
    subs = {m: sse({"category": cat, "consumer": m, "size": 2}) for m in (0, 1)}
    for m, sub in subs.items():
        want = [s for s in before if member_for(s, 2) == m]
        got = sub.pokes(len(want))
        assert got == [{"stream": s, "position": 0, "globalPosition": res[s]["globalPosition"]}
                       for s in want]
    after = [f"{cat}-123", f"{cat}-7", f"{cat}-123+retry", f"{cat}-x", cat]
    live = [(s, write(client, s)) for s in after]
    for m, sub in subs.items():
        want = [(s, r) for s, r in live if member_for(s, 2) == m]
        got = sub.pokes(len(want))
        assert got == [{"stream": s, "position": r["position"],
                        "globalPosition": r["globalPosition"]} for s, r in want]
        assert sub.quiet(0.5)
    assert member_for(f"{cat}-123", 2) == member_for(f"{cat}-123+retry", 2)


def test_category_position_is_global_and_no_group(client, sse):
    cat = name("cp")
    res = [write(client, f"{cat}-{i}") for i in range(4)]
    sub = sse({"category": cat, "position": res[2]["globalPosition"]})
    assert [p["globalPosition"] for p in sub.pokes(2)] == [r["globalPosition"] for r in res[2:]]
    r = write(client, f"{cat}-9")
    write(client, name("other") + "-1")
    assert sub.pokes(1)[0]["globalPosition"] == r["globalPosition"]
    assert sub.quiet(0.4)


def test_size_zero_means_no_filter_and_negative_member_matches_nothing(client, sse):
    cat = name("nf")
    write(client, f"{cat}-1")
    assert len(sse({"category": cat, "consumer": 0, "size": 0}).pokes(1)) == 1
    neg = sse({"category": cat, "consumer": -1, "size": 2})
    write(client, f"{cat}-2")
    assert neg.quiet(0.6)


def test_all_sends_ready_no_replay_then_everything(client, sse):
    before = write(client, name() + "-1")
    sub = sse({"all": "true"})
    assert sub.next(kinds=("comment",)) == ("comment", "ready")
    a = write(client, name("a") + "-1")
    b = write(client, name("b"))
    got = sub.pokes(2)
    assert [p["globalPosition"] for p in got] == [a["globalPosition"], b["globalPosition"]]
    assert all(p["globalPosition"] > before["globalPosition"] for p in got)


def test_all_with_position_filters_live(client, sse):
    head = write(client, name() + "-1")["globalPosition"]
    sub = sse({"all": "true", "position": head + 3})
    got = [write(client, name() + "-1")["globalPosition"] for _ in range(4)]
    assert [p["globalPosition"] for p in sub.pokes(2)] == [g for g in got if g >= head + 3]


def test_two_subscriptions_independent(client, sse):
    s1, s2 = name() + "-1", name() + "-2"
    a, b = sse({"stream": s1}), sse({"stream": s2})
    write(client, s1)
    write(client, s2)
    write(client, s2)
    assert [p["stream"] for p in a.pokes(1)] == [s1]
    assert [p["position"] for p in b.pokes(2)] == [0, 1]
    assert a.quiet(0.3)


def test_other_namespace_gets_no_pokes(client, sse, srv):
    tok = client.post("/rpc", content=json.dumps(["ns.create", name("ns")])).json()["token"]
    s = name() + "-1"
    other = sse({"stream": s}, token=tok)
    mine = sse({"stream": s})
    write(client, s)
    assert len(mine.pokes(1)) == 1
    assert other.quiet(0.5)


def test_deleting_the_namespace_ends_its_streams(client, sse):
    nid = name("del")
    tok = client.post("/rpc", content=json.dumps(["ns.create", nid])).json()["token"]
    sub = sse({"stream": "x-1"}, token=tok)
    assert sub.next(kinds=("comment",)) == ("comment", "ready")
    client.post("/rpc", content=json.dumps(["ns.delete", nid]))
    assert sub.next(timeout=5, kinds=()) == ("end", None)


# --- errors ------------------------------------------------------------------------------------
@pytest.mark.parametrize("params,body", [
    ({}, "Either 'stream', 'category', or 'all=true' parameter required"),
    ({"category": ""}, "Either 'stream', 'category', or 'all=true' parameter required"),
    ({"all": "yes"}, "Either 'stream', 'category', or 'all=true' parameter required"),
    ({"all": "true", "stream": "a-1"}, "Cannot combine 'all' with 'stream' or 'category'"),
    ({"all": "true", "category": "a"}, "Cannot combine 'all' with 'stream' or 'category'"),
    ({"stream": "a-1", "category": "a"}, "Cannot specify both 'stream' and 'category'"),
    ({"stream": "a-1", "position": "x"}, "Invalid position parameter"),
    ({"stream": "a-1", "position": "1.5"}, "Invalid position parameter"),
    ({"category": "a", "consumer": "x", "size": "2"}, "Invalid consumer parameter"),
    ({"category": "a", "consumer": "0", "size": "two"}, "Invalid size parameter"),
    ({"category": "a", "consumer": "2", "size": "2"},
     "Invalid consumer group: member must be < size"),
    ({"category": "a", "consumer": "1"}, "Invalid consumer group: member must be < size"),
])
def test_bad_parameters(srv, params, body):
    r = httpx.get(srv.url + "/subscribe", params=params,
                  headers={"Authorization": f"Bearer {srv.token}"})
    assert r.status_code == 400
    assert r.headers["content-type"] == "text/plain; charset=utf-8"
    assert r.text == body


def test_consumer_ignored_for_streams(srv, sse):
    sub = sse({"stream": name() + "-1", "consumer": "x", "size": "y"})
    assert sub.status == 200


def test_subscribe_auth(srv):
    r = httpx.get(srv.url + "/subscribe", params={"stream": "a-1"})
    assert r.status_code == 401 and r.json()["error"]["code"] == "AUTH_REQUIRED"
    r = httpx.get(srv.url + "/subscribe", params={"stream": "a-1", "token": "bad"})
    assert r.status_code == 401 and r.json()["error"]["code"] == "AUTH_INVALID_TOKEN"


def test_query_token_works(client, srv):
    s = name() + "-1"
    write(client, s)
    with httpx.stream("GET", srv.url + "/subscribe",
                      params={"stream": s, "token": srv.token}, timeout=10) as r:
        assert r.status_code == 200
        lines = r.iter_lines()
        assert [next(lines) for _ in range(4)] == [
            ": ready", "", "event: poke",
            'data: {"stream":"%s","position":0,"globalPosition":%d}'
            % (s, client.post("/rpc", content=json.dumps(["stream.last", s])).json()[3])]


def test_closed_clients_are_dropped(client, srv):
    """Many subscribers that go away do not break later writes or subscriptions."""
    s = name() + "-1"
    for _ in range(20):
        with httpx.stream("GET", srv.url + "/subscribe",
                          params={"stream": s, "token": srv.token}, timeout=10) as r:
            next(r.iter_lines())
    for _ in range(5):
        write(client, s)
    with httpx.stream("GET", srv.url + "/subscribe",
                      params={"stream": s, "token": srv.token}, timeout=10) as r:
        lines = r.iter_lines()
        got = [next(lines) for _ in range(17)]
    assert sum(1 for ln in got if ln.startswith("data: ")) == 5


@pytest.mark.parametrize("sig", ["SIGTERM", "SIGINT"])
def test_stop_ends_open_streams_and_exits_cleanly(tmp_path, sig):
    import signal as signal_mod

    s = start_server(tmp_path / "data")
    sub = SSE(s, {"all": "true"})
    try:
        assert sub.next(kinds=("comment",)) == ("comment", "ready")
        t0 = time.monotonic()
        s.proc.send_signal(getattr(signal_mod, sig))
        assert s.proc.wait(10) == 0
        assert time.monotonic() - t0 < 5
        assert sub.next(timeout=5, kinds=()) == ("end", None)
        assert f"stopped ({sig})" in s.log.read_text()
        assert "Traceback" not in s.log.read_text()
    finally:
        sub.close()
        s.stop()
