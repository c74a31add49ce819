"""``eventodb serve`` under clients that never finish their request (issue 9, item 1): read and
idle timeouts, the connection limit below the file limit, a log that does not flood.

Each test starts its own ``eventodb serve`` process, some with a small file limit
(``RLIMIT_NOFILE`` set in the child before it runs)."""

from __future__ import annotations

import select
import socket
import time
from pathlib import Path

import httpx
import pytest

from conftest import ServerProcess, start_server

HALF = b"POST /rpc HTTP/1.1\r\nHost: x\r\nContent-Le"
W = b'["stream.write","hard-1",{"type":"T","data":{}}]'


def start(tmp_path: Path, *extra: str, files: int | None = None) -> ServerProcess:
    """A serve of its own (conftest.start_server), with ``files`` as its file limit."""
    return start_server(tmp_path / "data", *extra, files=files)


@pytest.fixture
def srv_factory(tmp_path):
    started = []

    def make(*extra, files=None):
        s = start(tmp_path, *extra, files=files)
        started.append(s)
        return s

    yield make
    for s in started:
        s.stop()


def open_half(port: int, n: int, payload: bytes = HALF) -> list[socket.socket]:
    socks = []
    for _ in range(n):
        s = socket.create_connection(("127.0.0.1", port), timeout=10)
        if payload:
            try:
                s.sendall(payload)
            except OSError:  # already shed by the server
                pass
        socks.append(s)
    return socks


def wait_closed(socks: list[socket.socket], timeout: float) -> list[socket.socket]:
    """Wait until the server has closed every socket (EOF or reset); return those still open."""
    open_ = list(socks)
    deadline = time.monotonic() + timeout
    while open_ and time.monotonic() < deadline:
        ready, _, _ = select.select(open_, [], [], 0.5) if len(open_) < 1000 else (open_, 0, 0)
        for s in ready:
            try:
                s.setblocking(False)
                data = s.recv(65536)
            except BlockingIOError:
                continue
            except OSError:
                data = b""
            if not data or b"\r\n\r\n" in data:  # EOF, or an error answer before the close
                if not data:
                    open_.remove(s)
    return open_


def request(url: str, token: str) -> int:
    try:
        return httpx.post(url + "/rpc", content=W, timeout=20,
                          headers={"Authorization": f"Bearer {token}"}).status_code
    except httpx.HTTPError:
        return 0


def test_auto_connection_limit_stays_below_the_file_limit():
    from eventodb_cli.server.connections import ACCEPT_BURST, auto_max_connections

    for files in (256, 512, 1024, 4096, 1 << 20):
        limit = auto_max_connections(files)
        # one accept burst, SQLite's files and the process's own stay free
        assert 16 <= limit <= files - ACCEPT_BURST - 64 or limit == 16
    assert auto_max_connections(512) == 320
    assert auto_max_connections(1024) == 768


def test_serve_defaults_are_the_go_servers_timeouts():
    from eventodb_cli.cli.serve import serve

    defaults = {p.name: p.default for p in serve.params}
    assert defaults["read_timeout"] == 30.0  # fasthttp ReadTimeout of the Go server
    assert defaults["idle_timeout"] == 120.0  # its IdleTimeout
    assert defaults["max_connections"] == 0  # derived from the file limit


def test_700_half_sent_connections_with_a_file_limit_of_512(srv_factory):
    srv = srv_factory("--read-timeout", "5", files=512)
    size0 = srv.log.stat().st_size
    t0 = time.monotonic()
    socks = open_half(srv.port, 700)
    try:
        codes = [request(srv.url, srv.token) for _ in range(20)]
        assert sum(c == 200 for c in codes) >= 18, codes
        left = wait_closed(socks, max(1.0, 40 - (time.monotonic() - t0)))
        assert not left, f"{len(left)} half-sent connections still open after 40 s"
    finally:
        for s in socks:
            s.close()
    assert request(srv.url, srv.token) == 200
    grown = srv.log.stat().st_size - size0
    assert grown < 1_000_000, grown
    text = srv.log.read_text()
    assert "Traceback" not in text
    assert "connection limit reached (320)" in text


def test_silent_and_half_body_connections_are_closed_after_the_read_timeout(srv_factory):
    srv = srv_factory("--read-timeout", "1")
    silent = open_half(srv.port, 3, b"")
    half_head = open_half(srv.port, 3)
    half_body = open_half(srv.port, 3, b"POST /rpc HTTP/1.1\r\nHost: x\r\n"
                                       b"Content-Length: 100\r\n\r\n[\"stream.wr")
    # the same with a valid token: the server is waiting for the body, not answering early
    authed = open_half(srv.port, 3, b"POST /rpc HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer "
                                    + srv.token.encode() + b"\r\nContent-Length: 100\r\n\r\n[")
    t0 = time.monotonic()
    assert not wait_closed(silent + half_head + half_body + authed, 8)
    assert time.monotonic() - t0 < 8
    assert request(srv.url, srv.token) in (200, 401)  # still serving


def test_idle_keep_alive_connection_is_closed_after_the_idle_timeout(srv_factory):
    srv = srv_factory("--idle-timeout", "1", "--read-timeout", "30")
    s = socket.create_connection(("127.0.0.1", srv.port), timeout=10)
    s.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
    data = s.recv(65536)
    assert data.startswith(b"HTTP/1.1 200")
    t0 = time.monotonic()
    assert not wait_closed([s], 10)
    assert 0.5 < time.monotonic() - t0 < 8
    s.close()


def test_slow_but_steady_request_is_not_cut_and_keep_alive_works(srv_factory):
    """A request that arrives within the read timeout is answered, and the next request on the
    same connection gets a fresh read timeout."""
    srv = srv_factory("--read-timeout", "2")
    with httpx.Client(base_url=srv.url, timeout=10,
                      headers={"Authorization": f"Bearer {srv.token}"}) as c:
        for _ in range(3):
            assert c.post("/rpc", content=W).status_code == 200
            time.sleep(2.5)  # longer than the read timeout, shorter than the idle timeout
        assert c.post("/rpc", content=W).status_code == 200


def test_out_of_files_is_one_log_line_not_a_traceback_per_accept(srv_factory):
    """A --max-connections above what the file limit allows: accept() fails with EMFILE; the
    log says "file limit reached" once in a while, the server keeps answering afterwards."""
    srv = srv_factory("--max-connections", "5000", "--read-timeout", "3", files=256)
    size0 = srv.log.stat().st_size
    socks = open_half(srv.port, 300)
    try:
        time.sleep(2)
        left = wait_closed(socks, 15)
        assert not left
    finally:
        for s in socks:
            s.close()
    time.sleep(1.2)  # asyncio resumes accepting one second after EMFILE
    assert request(srv.url, srv.token) == 200
    text = srv.log.read_text()
    assert "file limit reached" in text
    assert "Traceback" not in text
    assert srv.log.stat().st_size - size0 < 20_000
