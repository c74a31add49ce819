"""Keep-alive ``POST /rpc`` over plain sockets, for ``http://`` URLs.

Why not httpx for these requests: measured on the 2-core bench machine (2026-12-03), one
``POST /rpc`` costs the client about 1.0 ms of CPU through ``httpx.Client`` (0.7 ms through its
transport alone: httpcore, h11) against 0.3 ms through ``http.client``. A bulk ``write --file``
sends one request per message, so the client, not the server, was the limit (~820 msg/s where 8
``http.client`` threads get 2,300-4,600). Everything else (TLS, proxies, SSE, ``/import``,
injected test transports) stays on httpx; ``RemoteStore.rpc_conn`` decides.

Why not ``http.client`` either (2026-12-04): once ``eventodb serve`` answered a write in ~100 us
of CPU, the client was the limit again. ``http.client`` sends the head and the body of a request
with two ``send`` calls (two segments, two reads and parser turns on the server) and parses every
answer's headers with ``email.parser``; about 60 us of client CPU a request went there. Here a
request is one ``sendall`` of bytes built from a prebuilt head, and the answer is read with a
small HTTP/1.1 reader (status line, headers, ``Content-Length`` or chunked body, keep-alive
rules); it also keeps ``http.client`` (and ``email``) out of a remote command's start.

Failures are raised as ``Failure`` naming the httpx exception type they stand for
(``httpx_type``); ``RemoteStore._attempt`` turns them into that type, so the retry rules (a
connect failure was not sent; anything later may have been applied) are the same for both paths,
and a command that only sends RPCs never imports httpx.
"""

from __future__ import annotations

import json
import select
import socket
import threading
from typing import Any


class Failure(Exception):
    """A transport failure; ``httpx_type``: the name of the httpx exception it stands for."""

    def __init__(self, httpx_type: str, text: str):
        super().__init__(text)
        self.httpx_type = httpx_type


class Reply:
    """The part of ``httpx.Response`` the RPC code reads."""

    __slots__ = ("status_code", "content", "headers")

    def __init__(self, status_code: int, content: bytes, headers: dict[str, str]):
        self.status_code = status_code
        self.content = content
        self.headers = headers

    @property
    def text(self) -> str:
        return self.content.decode("utf-8", "replace")

    def json(self) -> Any:
        return json.loads(self.content)


_MAX_HEAD = 64 * 1024  # status line and headers of an answer


class _Conn:
    """One keep-alive connection: a socket and what was read past the last answer."""

    __slots__ = ("sock", "buf")

    def __init__(self, sock: socket.socket):
        self.sock = sock
        self.buf = b""

    def close(self) -> None:
        try:
            self.sock.close()
        except OSError:
            pass

    def idle_and_open(self) -> bool:
        """Nothing to read on a connection between answers: the server has not closed it
        (idle timeout, restart). A request sent on a closed one could not be told from one the
        server got and lost, so it is dropped before use instead."""
        p = select.poll()  # not recv(MSG_DONTWAIT): a socket with a timeout waits for it first
        p.register(self.sock, select.POLLIN)
        return not p.poll(0)  # readable between answers: closed (EOF), reset, or stray bytes

    def _more(self) -> bytes:
        data = self.sock.recv(65536)
        if not data:
            raise _Closed
        return data

    def read_reply(self) -> tuple[Reply, bool]:
        """The next answer and whether the connection can carry another request."""
        while True:
            buf = self.buf
            try:
                while (end := buf.find(b"\r\n\r\n")) < 0:
                    if len(buf) > _MAX_HEAD:
                        raise Failure("RemoteProtocolError", "answer headers too long")
                    buf += self._more()
            except _Closed:
                raise Failure("RemoteProtocolError",
                              "Server disconnected without sending a response." if not buf
                              else "Server disconnected in the middle of an answer.") from None
            lines = buf[:end].decode("latin-1").split("\r\n")
            rest = buf[end + 4:]
            parts = lines[0].split(" ", 2)
            if len(parts) < 2 or not parts[0].startswith("HTTP/") or not parts[1].isdigit():
                raise Failure("RemoteProtocolError", f"bad status line: {lines[0][:80]!r}")
            status = int(parts[1])
            headers: dict[str, str] = {}
            for line in lines[1:]:
                name, sep, value = line.partition(":")
                if not sep:
                    raise Failure("RemoteProtocolError", f"bad header line: {line[:80]!r}")
                headers[name.strip().lower()] = value.strip()
            if 100 <= status < 200:  # an interim answer: the real one follows
                self.buf = rest
                continue
            break
        conn_hdr = headers.get("connection", "").lower()
        keep = ("close" not in conn_hdr) if parts[0] != "HTTP/1.0" else ("keep-alive" in conn_hdr)
        try:
            if "chunked" in headers.get("transfer-encoding", "").lower():
                body, rest = self._chunked(rest)
            elif "content-length" in headers:
                n_text = headers["content-length"]
                if not (n_text.isascii() and n_text.isdigit()):  # int() takes "-3", "1_0"
                    raise Failure("RemoteProtocolError", f"bad Content-Length: {n_text[:40]!r}")
                n = int(n_text)
                while len(rest) < n:
                    rest += self._more()
                body, rest = rest[:n], rest[n:]
            elif status in (204, 304):
                body = b""
            else:  # the body ends with the connection
                chunks = [rest]
                try:
                    while True:
                        chunks.append(self._more())
                except _Closed:
                    pass
                body, rest, keep = b"".join(chunks), b"", False
        except _Closed:
            raise Failure("RemoteProtocolError",
                          "Server disconnected in the middle of an answer.") from None
        self.buf = rest
        return Reply(status, body, headers), keep and not rest

    def _chunked(self, buf: bytes) -> tuple[bytes, bytes]:
        out = []
        while True:
            while (i := buf.find(b"\r\n")) < 0:
                buf += self._more()
            try:
                size = int(buf[:i].split(b";")[0], 16)
            except ValueError:
                raise Failure("RemoteProtocolError", "bad chunk size") from None
            buf = buf[i + 2:]
            if size == 0:  # trailers, then an empty line
                while (j := buf.find(b"\r\n")) != 0:
                    if j < 0:
                        buf += self._more()
                    else:
                        buf = buf[j + 2:]
                return b"".join(out), buf[2:]
            while len(buf) < size + 2:
                buf += self._more()
            out.append(buf[:size])
            buf = buf[size + 2:]


class _Closed(Exception):
    """The server closed the connection."""


class RpcConnections:
    """A pool of keep-alive connections to one host; ``post(body)`` sends one ``POST /rpc``."""

    def __init__(self, host: str, port: int, path: str, headers: dict[str, str],
                 timeout: float):
        self.host = host
        self.port = port
        self.path = path
        self.headers = dict(headers)
        self.timeout = timeout
        host_hdr = host if port == 80 else f"{host}:{port}"
        if ":" in host and not host.startswith("["):  # an IPv6 address
            host_hdr = f"[{host}]" if port == 80 else f"[{host}]:{port}"
        head = [f"POST {path} HTTP/1.1", f"Host: {host_hdr}", "Accept-Encoding: identity"]
        head += [f"{k}: {v}" for k, v in self.headers.items()
                 if k.lower() not in ("host", "content-length", "accept-encoding")]
        self._head = ("\r\n".join(head) + "\r\nContent-Length: ").encode("latin-1")
        self._idle: list[_Conn] = []
        self._lock = threading.Lock()

    def _connect(self) -> _Conn:
        try:
            sock = socket.create_connection((self.host, self.port), timeout=self.timeout)
        except socket.timeout as e:
            raise Failure("ConnectTimeout", f"timed out ({e})") from None
        except OSError as e:
            raise Failure("ConnectError", f"[Errno {e.errno}] {e.strerror or e}"
                          if e.errno else str(e)) from None
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except OSError:
            pass
        return _Conn(sock)

    def post(self, body: bytes) -> Reply:
        conn = None
        while conn is None:
            with self._lock:
                conn = self._idle.pop() if self._idle else None
            if conn is None:
                conn = self._connect()
            elif not conn.idle_and_open():
                conn.close()  # closed by the server while idle: a request on it would be lost
                conn = None
        try:
            conn.sock.sendall(b"".join((self._head, str(len(body)).encode(), b"\r\n\r\n",
                                        body)))
            reply, reusable = conn.read_reply()
        except socket.timeout:
            conn.close()
            raise Failure("ReadTimeout", "timed out") from None
        except Failure:
            conn.close()
            raise
        except OSError as e:  # reset, server gone
            conn.close()
            raise Failure("ReadError", str(e) or type(e).__name__) from None
        except BaseException:  # Ctrl-C mid-request: the connection's state is unknown
            conn.close()
            raise
        if reusable:
            with self._lock:
                self._idle.append(conn)
        else:
            conn.close()
        return reply

    def close(self) -> None:
        with self._lock:
            idle, self._idle = self._idle, []
        for conn in idle:
            conn.close()
