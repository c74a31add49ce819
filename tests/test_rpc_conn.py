"""store/rpc_conn.py: the small HTTP/1.1 client of ``POST /rpc`` against a raw socket server that
answers in every shape HTTP/1.1 allows (the real ``eventodb serve`` is covered by the remote
tests; these are the shapes it does not send)."""

from __future__ import annotations

import socket
import threading
import time

import pytest

from eventodb_cli.store.rpc_conn import Failure, RpcConnections


class RawServer:
    """Accepts connections; for each request read, sends the next canned answer (bytes, sent in
    the given pieces with a pause between them), closing the connection after an HTTP/1.0 or
    ``Connection: close`` answer. ``None`` as an answer closes the connection."""

    def __init__(self, answers):
        self.answers = list(answers)
        self.requests: list[bytes] = []
        self.connections = 0
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen()
        self.port = self.sock.getsockname()[1]
        threading.Thread(target=self._serve, daemon=True).start()

    def _read_request(self, c, buf):
        while b"\r\n\r\n" not in buf:
            d = c.recv(65536)
            if not d:
                return None, b""
            buf += d
        head, _, rest = buf.partition(b"\r\n\r\n")
        n = int([ln.split(b":")[1] for ln in head.split(b"\r\n")
                 if ln.lower().startswith(b"content-length")][0])
        while len(rest) < n:
            rest += c.recv(65536)
        return head + b"\r\n\r\n" + rest[:n], rest[n:]

    def _serve(self):
        while self.answers:
            c, _ = self.sock.accept()
            self.connections += 1
            buf = b""
            while self.answers:
                req, buf = self._read_request(c, buf)
                if req is None:
                    break
                self.requests.append(req)
                answer = self.answers.pop(0)
                if answer is None:
                    c.close()
                    break
                pieces = answer if isinstance(answer, list) else [answer]
                for piece in pieces:
                    c.sendall(piece)
                    time.sleep(0.01)
                if pieces[0].startswith(b"HTTP/1.0") or b"Connection: close" in pieces[0]:
                    break
            c.close()


def _pool(srv):
    return RpcConnections("127.0.0.1", srv.port, "/rpc",
                          {"Content-Type": "application/json", "Authorization": "Bearer t"}, 5)


def test_keep_alive_content_length_in_pieces_and_one_connection():
    ok = b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 9\r\n\r\n"
    srv = RawServer([ok + b'{"a":[1]}', [ok[:10], ok[10:] + b'{"a"', b':[2]}']])
    pool = _pool(srv)
    assert pool.post(b'["x"]').json() == {"a": [1]}
    r = pool.post(b'["y"]')
    assert (r.status_code, r.json(), r.headers["content-type"]) == (200, {"a": [2]},
                                                                     "application/json")
    assert srv.connections == 1
    head, _, body = srv.requests[1].partition(b"\r\n\r\n")
    assert head.startswith(b"POST /rpc HTTP/1.1\r\nHost: 127.0.0.1:")
    assert b"\r\nContent-Length: 5" in head and b"Authorization: Bearer t" in head
    assert body == b'["y"]'


def test_chunked_interim_close_and_http10_answers():
    srv = RawServer([
        b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"3;ext=1\r\n[1,\r\n2\r\n2]\r\n0\r\nX-Trailer: 1\r\n\r\n",
        b"HTTP/1.1 503 Service Unavailable\r\nRetry-After: 1\r\nConnection: close\r\n"
        b"Content-Length: 2\r\n\r\n{}",
        b"HTTP/1.0 200 OK\r\n\r\n[3]",  # no length: the body ends with the connection
        b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\n4",
    ])
    pool = _pool(srv)
    assert pool.post(b"1").json() == [1, 2]
    r = pool.post(b"2")
    assert (r.status_code, r.headers["retry-after"]) == (503, "1")
    assert pool.post(b"3").json() == [3]
    assert pool.post(b"4").json() == 4
    assert srv.connections == 3  # closed after "Connection: close" and after the HTTP/1.0 body


@pytest.mark.parametrize("answer, text", [
    (None, "Server disconnected without sending a response."),
    (b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 10\r\n\r\n{}",
     "in the middle of an answer"),
    (b"garbage\r\n\r\n", "bad status line"),
    (b"HTTP/1.1 200 OK\r\nno colon here\r\n\r\n", "bad header line"),
])
def test_broken_answers_are_remote_protocol_errors(answer, text):
    srv = RawServer([answer] if answer is None else [answer, None])
    with pytest.raises(Failure) as e:
        _pool(srv).post(b"[]")
    assert e.value.httpx_type == "RemoteProtocolError" and text in str(e.value)


def test_connect_refused_is_a_connect_error():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    with pytest.raises(Failure) as e:
        RpcConnections("127.0.0.1", port, "/rpc", {}, 5).post(b"[]")
    assert e.value.httpx_type == "ConnectError"


def test_a_connection_the_server_closed_while_idle_is_not_used():
    """The server closes a kept-alive connection while it is idle (its idle timeout): the next
    request goes on a new connection and gets its answer, instead of failing as 'disconnected
    without a response' (which a write must treat as maybe applied)."""
    ok = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n[]"

    class ClosingServer(RawServer):
        def _serve(self):
            c, _ = self.sock.accept()
            self.connections += 1
            req, _ = self._read_request(c, b"")
            self.requests.append(req)
            c.sendall(ok)
            c.close()  # idle timeout, right after the answer
            c, _ = self.sock.accept()
            self.connections += 1
            req, _ = self._read_request(c, b"")
            self.requests.append(req)
            c.sendall(ok)
            c.close()

    srv = ClosingServer([])
    pool = _pool(srv)
    assert pool.post(b"1").json() == []
    time.sleep(0.2)
    assert pool.post(b"2").json() == []
    assert srv.connections == 2


def test_a_malformed_content_length_is_a_protocol_error():
    for value in (b"-3", b"1_0", b" 2x"):
        srv = RawServer([b"HTTP/1.1 200 OK\r\nContent-Length: " + value + b"\r\n\r\n{\"ok\":1}",
                         None])
        with pytest.raises(Failure) as e:
            _pool(srv).post(b"[]")
        assert e.value.httpx_type == "RemoteProtocolError" and "Content-Length" in str(e.value)
