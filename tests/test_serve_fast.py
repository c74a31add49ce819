"""The hot path of ``eventodb serve`` (issue 12): ``POST /rpc`` writes and ``GET /health``
answered from the parser's callbacks (``server/fastpath.py``) and small writes committed on the
event loop when nothing competes (``server/loopwrite.py``). Each must answer exactly as the
paths they short-cut, and a write must never make the event loop wait."""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import os
import re
import socket
import subprocess
import sys
import threading
import time
import uuid

import httpx

from conftest import RecordingTransport, start_server
from eventodb_cli.domain.message import NewMessage, canonical_json


# --- raw HTTP/1.1 on one keep-alive socket -------------------------------------------------------
class Raw:
    def __init__(self, url: str):
        host, port = url.rsplit("//", 1)[1].split(":")
        self.sock = socket.create_connection((host, int(port)), timeout=20)
        self.buf = b""

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def response(self) -> bytes:
        """One whole response (Content-Length framed), as sent."""
        while b"\r\n\r\n" not in self.buf:
            self._more()
        head, _, rest = self.buf.partition(b"\r\n\r\n")
        length = int(re.search(rb"\r\ncontent-length: (\d+)", head).group(1))
        while len(rest) < length:
            self._more()
            head, _, rest = self.buf.partition(b"\r\n\r\n")
        self.buf = rest[length:]
        return head + b"\r\n\r\n" + rest[:length]

    def closed(self) -> bool:
        try:
            return self.sock.recv(1) == b""
        except OSError:
            return True

    def _more(self) -> None:
        chunk = self.sock.recv(65536)
        if not chunk:
            raise EOFError(self.buf)
        self.buf += chunk

    def close(self) -> None:
        self.sock.close()


def post(path: str, body, token: str | None, extra: bytes = b"",
         version: bytes = b"HTTP/1.1") -> bytes:
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    auth = b"Authorization: Bearer " + token.encode() + b"\r\n" if token else b""
    return (b"POST " + path.encode() + b" " + version + b"\r\nHost: x\r\n" + auth +
            b"Content-Type: application/json\r\nContent-Length: " + str(len(data)).encode() +
            b"\r\n" + extra + b"\r\n" + data)


def get(path: str, extra: bytes = b"") -> bytes:
    return b"GET " + path.encode() + b" HTTP/1.1\r\nHost: x\r\n" + extra + b"\r\n"


def undated(response: bytes) -> bytes:
    return re.sub(rb"\r\ndate: [^\r]*", b"\r\ndate: -", response)


def _namespace(server, prefix: str) -> tuple[str, str]:
    nid = f"{prefix}-{uuid.uuid4().hex[:8]}"
    r = httpx.post(server.url + "/rpc", json=["ns.create", nid],
                   headers={"Authorization": f"Bearer {server.token}"})
    assert r.status_code == 200, r.text
    return nid, r.json()["token"]


# --- fast path vs ASGI path ------------------------------------------------------------------
def test_fast_and_asgi_paths_answer_byte_for_byte_alike(server):
    """The same requests, once on ``/rpc`` (the fast path) in one namespace and once on
    ``/rpc?via=asgi`` (a query string: the ASGI application, as before) in another: the same
    bytes back (but the date), for answers the fast path gives and those it hands over."""
    _, ta = _namespace(server, "fast")
    _, tb = _namespace(server, "asgi")
    mid = str(uuid.uuid4())
    requests = [
        (["stream.write", "acct-1", {"type": "T", "data": {"a": 1, "<": "&"}}], "t"),
        (["stream.write", "acct-1", {"type": "T", "data": {}, "metadata": {"m": [1]}},
          {"expectedVersion": 0}], "t"),
        (["stream.write", "acct-1", {"type": "T", "data": {}}, {"expectedVersion": 5}], "t"),
        (["stream.write", "acct-2", {"type": "T", "data": {}}, {"id": mid}], "t"),
        (["stream.write", "acct-3", {"type": "T", "data": {}}, {"id": mid}], "t"),
        (["stream.write", "acct-2", {"type": "T", "data": {}}, {"id": "not-a-uuid"}], "t"),
        (["stream.write", "acct-2", {"type": "", "data": {}}], "t"),
        (["stream.write", "acct-2"], "t"),
        (b'["stream.write", "acct-2", {"type": "T", "data": {}', "t"),
        (["stream.version", "acct-1"], "t"),
        (["no.such"], "t"),
        (["stream.write", "acct-2", {"type": "T", "data": {}}], None),
        (["stream.write", "acct-2", {"type": "T", "data": {}}], "ns_bad"),
    ]
    fast, slow = Raw(server.url), Raw(server.url)
    try:
        answers = []
        for body, tok in requests:
            fast.send(post("/rpc", body, ta if tok == "t" else tok))
            slow.send(post("/rpc?via=asgi", body, tb if tok == "t" else tok))
            a, b = undated(fast.response()), undated(slow.response())
            assert a == b, (body, a, b)
            answers.append(a)
        fast.send(get("/health"))
        slow.send(get("/health?via=asgi"))
        assert undated(fast.response()) == undated(slow.response())
        # the connection's end: "connection: close", then the socket closes; HTTP/1.0 too
        for extra, version in ((b"Connection: close\r\n", b"HTTP/1.1"), (b"", b"HTTP/1.0")):
            a_, b_ = Raw(server.url), Raw(server.url)
            body = ["stream.write", "acct-9", {"type": "T", "data": {}}]
            a_.send(post("/rpc", body, ta, extra, version))
            b_.send(post("/rpc?via=asgi", body, tb, extra, version))
            a, b = undated(a_.response()), undated(b_.response())
            assert a == b and b"\r\nconnection: close\r\n" in a, (a, b)
            assert a_.closed() and b_.closed()
            a_.close()
            b_.close()
    finally:
        fast.close()
        slow.close()
    assert answers[0].startswith(b"HTTP/1.1 200 OK\r\n")
    assert answers[0].endswith(b'\r\n\r\n{"globalPosition":1,"position":0}\n')
    assert b"\r\nserver: EventoDB/" in answers[0]
    assert answers[2].startswith(b"HTTP/1.1 409 ")
    assert b"UNIQUE constraint failed: messages.id" in answers[4]
    assert answers[8].startswith(b"HTTP/1.1 400 ") and answers[11].startswith(b"HTTP/1.1 401 ")


def test_pipelined_requests_are_answered_in_order(server):
    """Requests sent back to back on one connection: fast, handed over, ASGI and fast again,
    each answered in turn."""
    s = "pipe-" + uuid.uuid4().hex[:8]
    raw = Raw(server.url)
    try:
        raw.send(post("/rpc", ["stream.write", s, {"type": "T", "data": {"n": 0}}], server.token)
                 + post("/rpc", ["stream.version", s], server.token)
                 + get("/health")
                 + post("/rpc?x=1", ["stream.write", s, {"type": "T", "data": {"n": 1}}],
                        server.token)
                 + post("/rpc", ["stream.write", s, {"type": "T", "data": {"n": 2}}],
                        server.token)
                 + post("/rpc", ["stream.get", s], server.token))
        out = [raw.response().partition(b"\r\n\r\n")[2] for _ in range(6)]
    finally:
        raw.close()
    assert json.loads(out[0])["position"] == 0
    assert out[1] == b"0\n"
    assert out[2] == b'{"status":"ok"}'
    assert json.loads(out[3])["position"] == 1
    assert json.loads(out[4])["position"] == 2
    assert [m[4]["n"] for m in json.loads(out[5])] == [0, 1, 2]


# --- loop path vs writer-thread path ----------------------------------------------------------
def _server(tmp_path, name: str):
    from eventodb_cli.server.app import Server
    from eventodb_cli.server.run import ensure_default, open_registry

    registry = open_registry(str(tmp_path / name), None)
    with contextlib.redirect_stderr(io.StringIO()):
        ensure_default(registry, None)
    return Server(registry, workers=2)


def _submit_all(server, msgs, threads: list | None = None):
    """Submit ``msgs`` one after the other; ``threads`` gets the number of writer threads
    started after each."""
    async def go():
        server.loop = asyncio.get_running_loop()
        out = []
        for m in msgs:
            out.append(await server.writes.submit("default", m))
            if threads is not None:
                threads.append(len(server.writes._threads))
        await server.loop.run_in_executor(None, server.writes.close)
        return out

    return asyncio.run(go())


def test_loop_and_thread_paths_give_identical_answers(tmp_path):
    """The same writes through loopwrite (the event loop) and through the writer threads:
    the same answers, conflicts and duplicates included (those the loop hands to the threads),
    and the same rows."""
    mid = "0190a0b0-0000-7000-8000-000000000001"
    big = {"blob": "x" * 20000}  # over LOOP_MAX_BYTES: always the threads'

    def msgs():
        return [NewMessage("acct-1", "T", canonical_json({"a": 1}), None, str(uuid.UUID(int=i)))
                for i in range(1, 4)] + [
            NewMessage("acct-1", "T", "{}", None, str(uuid.UUID(int=10)), 2),
            NewMessage("acct-1", "T", "{}", None, str(uuid.UUID(int=11)), 7),
            NewMessage("acct-2", "T", "{}", '{"m":1}', mid),
            NewMessage("acct-3", "T", "{}", None, mid),
            NewMessage("acct-4", "T", canonical_json(big), None, str(uuid.UUID(int=12))),
            NewMessage("acct-2", "T", "{}", None, str(uuid.UUID(int=13)), 0),
        ]

    loop_srv, thread_srv = _server(tmp_path, "loop"), _server(tmp_path, "thread")
    thread_srv.writes.loop_writes = False
    try:
        threads: list[int] = []
        via_loop = _submit_all(loop_srv, msgs(), threads)
        via_threads = _submit_all(thread_srv, msgs())
        loop_rows = loop_srv.registry.get("default").loop_writer().conn.total_changes
        rows = [s.registry.get("default").reader().stream_get(name)
                for s in (loop_srv, thread_srv) for name in ("acct-1", "acct-2", "acct-4")]
    finally:
        loop_srv.registry.close()
        thread_srv.registry.close()
    assert via_loop == via_threads
    # the first write is a writer thread's (it makes the WAL: the header fsync is not the
    # loop's), the other ordinary ones the loop's; the conflict, the duplicate and the large
    # message are the threads'
    assert threads == [1] * len(threads)
    assert loop_rows == 5  # writes 2, 3, 4, 6 and 9
    assert [st for st, _ in via_loop] == [200, 200, 200, 200, 409, 200, 500, 200, 200]
    assert "UNIQUE constraint failed: messages.id" in via_loop[6][1]
    strip = [[(m.id, m.stream_name, m.type, m.position, m.global_position, m.data, m.metadata)
              for m in r] for r in rows]
    assert strip[:3] == strip[3:]


def test_loop_writes_leave_checkpoints_to_a_writer_thread(tmp_path):
    """The loop's connection never waits for a lock and never checkpoints; its commits are
    checkpointed on a writer thread, so the WAL stays bounded (without: ~50 MiB here)."""
    srv = _server(tmp_path, "wal")
    try:
        res = _submit_all(srv, [NewMessage(f"w-{i % 40}", "T", canonical_json({"i": i}))
                                for i in range(3000)])
        ns = srv.registry.get("default")
        conn = ns.loop_writer().conn
        assert conn.execute("PRAGMA busy_timeout").fetchone()[0] == 0
        # only a safety net (when no writer thread can run the checkpoint job), well above
        # the writer threads' interval
        from eventodb_cli.server.loopwrite import CHECKPOINT_PAGES
        from eventodb_cli.server.registry import LOOP_AUTOCHECKPOINT

        assert conn.execute("PRAGMA wal_autocheckpoint").fetchone()[0] == LOOP_AUTOCHECKPOINT \
            >= 4 * CHECKPOINT_PAGES
        wal = os.path.getsize(ns.path + "-wal")
        threads = [t.name for t in srv.writes._threads]
    finally:
        srv.registry.close()
    assert [st for st, _ in res] == [200] * 3000
    assert json.loads(res[-1][1])["globalPosition"] == 3000
    assert threads  # the first write and the checkpoints
    assert wal < 12 * 1024 * 1024, wal


_HOLDER = """
import sqlite3, sys
c = sqlite3.connect(sys.argv[1], isolation_level=None)
c.execute("BEGIN IMMEDIATE")
print("locked", flush=True)
sys.stdin.readline()
c.execute("ROLLBACK")
"""


def test_write_while_another_process_holds_the_write_lock(tmp_path):
    """Another process holds SQLite's write lock: the write waits (on a writer thread, not on
    the event loop: /health answers meanwhile) and succeeds once the lock is free."""
    srv = start_server(tmp_path / "data")
    try:
        c = httpx.Client(base_url=srv.url, headers={"Authorization": f"Bearer {srv.token}"},
                         timeout=60)
        assert c.post("/rpc", json=["stream.write", "lock-1", {"type": "T", "data": {}}]) \
            .json() == {"globalPosition": 1, "position": 0}
        holder = subprocess.Popen([sys.executable, "-c", _HOLDER,
                                   str(srv.data_dir / "default.db")],
                                  stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        try:
            assert holder.stdout.readline().strip() == "locked"
            answer = {}

            def write():
                r = c.post("/rpc", json=["stream.write", "lock-1", {"type": "T", "data": {}}])
                answer["r"] = (r.status_code, r.json())

            t = threading.Thread(target=write)
            t.start()
            slowest = 0.0
            for _ in range(10):  # ~1 s with the lock held
                t0 = time.perf_counter()
                assert httpx.get(srv.url + "/health", timeout=5).status_code == 200
                slowest = max(slowest, time.perf_counter() - t0)
                time.sleep(0.1)
            assert "r" not in answer  # still waiting for the lock
            holder.stdin.write("\n")
            holder.stdin.flush()
            assert holder.wait(10) == 0
            t.join(30)
        finally:
            holder.kill()
        assert answer["r"] == (200, {"globalPosition": 2, "position": 1})
        assert slowest < 2.0, slowest  # a loop waiting for the lock: a 5 s timeout above
        # and the loop's path is back once the lock is free
        assert c.post("/rpc", json=["stream.write", "lock-1", {"type": "T", "data": {}}]) \
            .json() == {"globalPosition": 3, "position": 2}
        c.close()
    finally:
        srv.stop()


def test_requests_arm_no_timer_and_idle_connections_close_on_the_sweep(tmp_path):
    """uvicorn armed (and cancelled) a keep-alive timer per request, ~2.5 us each; here a
    request schedules nothing on the loop, and the once-a-second sweep closes a connection
    idle for longer than the idle timeout (and only then)."""
    import uvicorn
    from uvicorn.server import ServerState

    from eventodb_cli.server.connections import Limits
    from eventodb_cli.server.fastpath import protocol_class

    srv = _server(tmp_path, "timers")
    srv.test_mode = True

    async def go():
        loop = asyncio.get_running_loop()
        srv.loop = loop
        limits = Limits(idle_timeout=5.0)
        cls = protocol_class(limits, srv)
        config = uvicorn.Config(srv, http=cls, lifespan="off", log_level="warning",
                                timeout_keep_alive=5.0)
        config.load()
        proto = cls(config=config, server_state=ServerState(), app_state={})
        t = RecordingTransport()
        proto.connection_made(t)
        scheduled = []
        real = loop.call_at

        def counting(*args, **kwargs):
            scheduled.append(args)
            return real(*args, **kwargs)

        loop.call_at = counting  # call_later goes through call_at
        for i in range(20):
            proto.data_received(get("/health") if i % 2 else
                                post("/rpc", ["stream.write", "t-1", {"type": "T", "data": {}}],
                                     None))
            while len(t.writes) <= i:  # the first write is a writer thread's
                await asyncio.sleep(0)  # (no timer)
        loop.call_at = real
        now = loop.time()
        proto.check_reading(now + 4.0, 30.0)  # idle for 4 s: stays
        open_at_4 = not t.closed
        proto.check_reading(now + 5.5, 30.0)  # idle for 5.5 s: closed
        limits._sweeper and limits._sweeper.cancel()
        await loop.run_in_executor(None, srv.writes.close)
        return scheduled, t, open_at_4, proto.timeout_keep_alive_task

    try:
        scheduled, t, open_at_4, task = asyncio.run(go())
    finally:
        srv.registry.close()
    assert len(t.writes) == 20
    assert all(w.startswith(b"HTTP/1.1 200 OK\r\n") for w in t.writes)
    assert [json.loads(w.partition(b"\r\n\r\n")[2])["position"] for w in t.writes[::2]] == \
        list(range(10))
    assert scheduled == [] and task is None
    assert open_at_4 and t.closed


def test_loop_writes_publish_pokes_in_commit_order_without_a_self_pipe_wake(tmp_path):
    """A subscriber gets every write's poke in commit order, whichever path wrote it (the
    first write and the conflict's retry are the threads'); the loop's own writes schedule
    their pokes with call_soon, not call_soon_threadsafe (a self-pipe write and a wake-up)."""
    from eventodb_cli.server.hub import Subscriber

    srv = _server(tmp_path, "pokes")
    sub = Subscriber("default", "all", None, 0)
    srv.hub.add(sub)
    threadsafe = []

    async def go():
        loop = asyncio.get_running_loop()
        srv.loop = loop
        real = loop.call_soon_threadsafe

        def counting(*args, **kwargs):
            threadsafe.append(threading.current_thread().name)
            return real(*args, **kwargs)

        loop.call_soon_threadsafe = counting
        out = []
        for i in range(10):
            out.append(await srv.writes.submit("default", NewMessage(
                f"p-{i % 3}", "T", "{}", None, None, 99 if i == 5 else None)))
        await asyncio.sleep(0)
        loop.call_soon_threadsafe = real
        await loop.run_in_executor(None, srv.writes.close)
        return out

    try:
        out = asyncio.run(go())
    finally:
        srv.registry.close()
    assert [st for st, _ in out] == [200] * 5 + [409] + [200] * 4
    assert [g for _, _, g in sub.queue] == list(range(1, 10))
    # from writer threads only: the first write's answer and poke, the conflict's answer
    assert all(name.startswith("eventodb-write") for name in threadsafe), threadsafe
    assert len(threadsafe) == 3, threadsafe


# --- found in review (2026-12-04): each failed before its fix ------------------------------------
def _raw_get(path: bytes) -> bytes:
    return b"GET " + path + b" HTTP/1.1\r\nHost: x\r\n\r\n"


def test_a_client_that_does_not_read_its_answers_is_pushed_back(tmp_path):
    """Pipelined GET /health without reading the answers: the server stops reading once its
    send buffer is full (as the ASGI path does), instead of buffering answers without bound
    (250 MB sent and 1.1 GB of server memory before the fix)."""
    srv = start_server(tmp_path / "data")
    try:
        s = socket.create_connection(("127.0.0.1", int(srv.url.rsplit(":", 1)[1])))
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        chunk = _raw_get(b"/health") * 2000
        s.settimeout(5)
        sent = 0
        with contextlib.suppress(socket.timeout):
            while sent < 150_000_000:
                s.sendall(chunk)
                sent += len(chunk)
        assert sent < 100_000_000, f"{sent} bytes taken without any answer read"
        s.close()
    finally:
        srv.stop()


def test_a_request_after_an_immediate_answer_in_the_same_packet_is_not_idle(tmp_path):
    """GET /health and a subscription sent in one packet: the subscription is a request in
    progress, not an idle connection for the idle timeout (it was closed after 1 s)."""
    srv = start_server(tmp_path / "data", "--idle-timeout", "1", "--keepalive", "1")
    try:
        s = socket.create_connection(("127.0.0.1", int(srv.url.rsplit(":", 1)[1])))
        s.sendall(_raw_get(b"/health")
                  + _raw_get(b"/subscribe?stream=x-1&token=" + srv.token.encode()))
        s.settimeout(0.5)
        out, started = b"", time.monotonic()
        while time.monotonic() - started < 3.5:
            with contextlib.suppress(socket.timeout):
                data = s.recv(65536)
                assert data, f"closed by the server after {time.monotonic() - started:.1f} s"
                out += data
        assert out.count(b"keep-alive") >= 2, out[-300:]
        s.close()
    finally:
        srv.stop()


def test_the_wal_stays_bounded_when_no_writer_thread_can_checkpoint(tmp_path):
    """The only writer thread waits on another namespace's lock (held by another process)
    while loop writes go on in `default`: the loop connection's safety-net autocheckpoint
    bounds the WAL (it grew by ~100 MB a second before the fix)."""
    srv = start_server(tmp_path / "data", "--workers", "1")
    try:
        c = httpx.Client(base_url=srv.url, headers={"Authorization": f"Bearer {srv.token}"},
                         timeout=60)
        btok = c.post("/rpc", json=["ns.create", "bee"]).json()["token"]
        hb = {"Authorization": f"Bearer {btok}"}
        c.post("/rpc", json=["stream.write", "x-1", {"type": "T", "data": {}}], headers=hb)
        c.post("/rpc", json=["stream.write", "w-1", {"type": "T", "data": {}}])
        holder = subprocess.Popen([sys.executable, "-c", _HOLDER, str(srv.data_dir / "bee.db")],
                                  stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        try:
            assert holder.stdout.readline().strip() == "locked"
            blocked = threading.Thread(target=lambda: httpx.post(
                srv.url + "/rpc", json=["stream.write", "x-1", {"type": "T", "data": {}}],
                headers=hb, timeout=60), daemon=True)
            blocked.start()
            time.sleep(0.3)
            pad = "p" * 2000
            for i in range(6000):
                c.post("/rpc", json=["stream.write", f"w-{i}", {"type": "T", "data": {"p": pad}}])
            wal = os.path.getsize(srv.data_dir / "default.db-wal")
            assert wal < 40_000_000, f"WAL {wal} bytes"
        finally:
            holder.stdin.close()
            holder.wait(10)
    finally:
        srv.stop()
