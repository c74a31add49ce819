"""Server CPU per request (issue 12): a whole response is one socket write, a write request
wakes the event loop once, and neither changes what goes over the wire."""

from __future__ import annotations

import asyncio
import json
import logging
import socket
import threading

from uvicorn.protocols.http.flow_control import FlowControl
from uvicorn.protocols.http.httptools_impl import RequestResponseCycle

from conftest import RecordingTransport
from eventodb_cli.domain.message import NewMessage
from eventodb_cli.server.connections import send_whole


def _cycle(transport, keep_alive: bool, method: str = "POST"):
    done = []
    cycle = RequestResponseCycle(
        scope={"type": "http", "method": method, "path": "/rpc", "headers": []},
        transport=transport, flow=FlowControl(transport), logger=logging.getLogger("t"),
        access_logger=logging.getLogger("t"), access_log=False, default_headers=[],
        message_event=asyncio.Event(), expect_100_continue=False, keep_alive=keep_alive,
        on_response=lambda: done.append(True))
    return cycle, done


START = {"type": "http.response.start", "status": 200,
         "headers": [(b"content-type", b"application/json"), (b"content-length", b"11")]}


def test_whole_response_is_one_socket_write():
    async def go():
        t = RecordingTransport()
        cycle, done = _cycle(t, keep_alive=True)
        await send_whole(cycle.send, START, b'{"ok":true}')
        return t, cycle, done

    t, cycle, done = asyncio.run(go())
    # before: two writes (status line + headers, then the body): two send() calls, two segments
    assert len(t.writes) == 1
    assert t.writes[0] == (b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n"
                           b"content-length: 11\r\n\r\n{\"ok\":true}")
    assert not t.closed and done == [True] and cycle.response_complete
    assert cycle.transport is t  # uvicorn's cycle gets its own transport back


def test_whole_response_then_close_when_not_keep_alive():
    async def go():
        t = RecordingTransport()
        cycle, done = _cycle(t, keep_alive=False)
        await send_whole(cycle.send, START, b'{"ok":true}')
        return t, done

    t, done = asyncio.run(go())
    assert len(t.writes) == 1 and t.writes[0].endswith(b'\r\n\r\n{"ok":true}')
    assert b"connection: close\r\n" in t.writes[0]
    assert t.closed and done == [True]


def test_send_whole_with_any_other_send_sends_two_messages():
    sent = []

    async def send(message):
        sent.append(message)

    asyncio.run(send_whole(send, START, b"{}"))
    assert sent == [START, {"type": "http.response.body", "body": b"{}"}]


def test_write_group_wakes_the_event_loop_once(tmp_path):
    """A group of writes is answered with ONE call_soon_threadsafe (one self-pipe write and one
    loop turn) from the queue's own writer thread; with ``loop.run_in_executor`` the unused
    asyncio future chained to the job woke the loop a second time per group."""
    import contextlib
    import io

    from eventodb_cli.server.app import Server
    from eventodb_cli.server.run import ensure_default, open_registry

    registry = open_registry(str(tmp_path / "data"), None)
    with contextlib.redirect_stderr(io.StringIO()):
        ensure_default(registry, None)
    server = Server(registry, workers=2)
    server.writes.loop_writes = False  # the writer threads' path (loopwrite: no hop at all)
    wakeups = []

    async def go():
        loop = asyncio.get_running_loop()
        server.loop = loop
        real = loop.call_soon_threadsafe

        def counting(*args, **kwargs):
            wakeups.append(threading.current_thread().name)
            return real(*args, **kwargs)

        loop.call_soon_threadsafe = counting
        results = []
        for i in range(5):
            results.append(await server.writes.submit(
                "default", NewMessage(f"cpu-{i}", "T", '{"i":%d}' % i)))
        await loop.run_in_executor(None, server.writes.close)
        return results

    try:
        results = asyncio.run(go())
    finally:
        registry.close()
    assert [s for s, _ in results] == [200] * 5
    assert [json.loads(b)["position"] for _, b in results] == [0] * 5
    # one per write (each its own group here), not two; the close() in a thread wakes it too
    assert len([w for w in wakeups if w.startswith("eventodb-write")]) == 5, wakeups


def _raw_request(url: str, request: bytes) -> bytes:
    host, port = url.rsplit("//", 1)[1].split(":")
    with socket.create_connection((host, int(port)), timeout=10) as s:
        s.sendall(request)
        out = b""
        while True:
            chunk = s.recv(65536)
            if not chunk:
                return out
            out += chunk


def test_rpc_answer_on_the_wire_with_connection_close(server):
    body = json.dumps(["stream.write", "cpuwire-1", {"type": "T", "data": {"a": 1}}]).encode()
    raw = _raw_request(server.url, b"POST /rpc HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
                       b"Authorization: Bearer " + server.token.encode() + b"\r\n"
                       b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body)
    head, _, payload = raw.partition(b"\r\n\r\n")  # the server closed after one whole answer
    lines = head.split(b"\r\n")
    assert lines[0] == b"HTTP/1.1 200 OK"
    headers = dict(line.split(b": ", 1) for line in lines[1:])
    assert headers[b"content-type"] == b"application/json"
    assert headers[b"connection"] == b"close"
    assert headers[b"server"].startswith(b"EventoDB/")
    assert int(headers[b"content-length"]) == len(payload)
    assert json.loads(payload)["position"] == 0


def test_error_answer_on_the_wire_keeps_retry_after(server):
    raw = _raw_request(server.url, b"GET /rpc HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
                       b"Authorization: Bearer " + server.token.encode() + b"\r\n\r\n")
    head, _, payload = raw.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 405 ")
    assert json.loads(payload)["error"]["code"] == "INVALID_REQUEST"
