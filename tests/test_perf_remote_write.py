"""Issue 12 acceptance 1: ``POST /rpc`` to a plain http:// server goes over http.client
(store/rpc_conn.py, ~3x less client CPU a request than httpx), with the same retry and
lost-response guarantees as the httpx path (tests/test_faults.py covers that one)."""

from __future__ import annotations

import json
import re
import socket
import threading
import uuid

import pytest

from eventodb_cli.domain.message import new_message
from eventodb_cli.store.remote import RemoteStore


@pytest.fixture
def ns_token(server):
    with RemoteStore(server.url, server.token) as admin:
        return admin.ns_create("perfw-" + uuid.uuid4().hex[:10])["token"]


class ResponseLosingProxy:
    """Forwards each connection to the server; on every ``k``-th request it forwards the
    request but closes the client's connection instead of relaying the answer (the server
    applied it; the client never hears)."""

    def __init__(self, upstream_port: int, k: int):
        self.up = upstream_port
        self.k = k
        self.requests = 0
        self.lost = 0
        self.lost_ids: set[bytes] = set()
        self.lock = threading.Lock()
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while True:
            try:
                c, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(c,), daemon=True).start()

    @staticmethod
    def _read_message(s: socket.socket, buf: bytes) -> tuple[bytes | None, bytes]:
        """One HTTP message with a Content-Length body, and what followed it."""
        while b"\r\n\r\n" not in buf:
            data = s.recv(65536)
            if not data:
                return None, buf
            buf += data
        head, rest = buf.split(b"\r\n\r\n", 1)
        n = 0
        for line in head.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                n = int(value)
        while len(rest) < n:
            data = s.recv(65536)
            if not data:
                return None, buf
            rest += data
        return head + b"\r\n\r\n" + rest[:n], rest[n:]

    def _serve(self, c: socket.socket):
        u = socket.create_connection(("127.0.0.1", self.up))
        cbuf = ubuf = b""
        try:
            while True:
                req, cbuf = self._read_message(c, cbuf)
                if req is None:
                    return
                u.sendall(req)
                resp, ubuf = self._read_message(u, ubuf)
                if resp is None:
                    return
                mid = re.search(rb'"id":"([^"]+)"', req)
                with self.lock:
                    self.requests += 1
                    # each message's answer is lost at most once: retries always get through
                    lose = (b"stream.write" in req and self.requests % self.k == 0 and mid
                            and mid.group(1) not in self.lost_ids)
                    if lose:
                        self.lost += 1
                        self.lost_ids.add(mid.group(1))
                if lose:
                    return  # the answer is dropped with the connection
                c.sendall(resp)
        except OSError:
            pass
        finally:
            for s in (c, u):
                try:
                    s.close()
                except OSError:
                    pass

    def close(self):
        self.sock.close()


def test_plain_http_rpc_goes_over_http_client(server, ns_token):
    with RemoteStore(server.url, ns_token) as s:
        s.write(new_message("fast-1", "T", {"a": 1}))
        assert s._rpc_conns() is not None
        assert s._client is None  # httpx's client was never needed
        assert s.stream_version("fast-1") == 0
    with RemoteStore(server.url, ns_token, transport=__import__("httpx").HTTPTransport()) as s:
        assert s._rpc_conns() is None  # an injected transport is always used
    with RemoteStore("https://127.0.0.1:9", ns_token) as s:
        assert s._rpc_conns() is None  # TLS stays with httpx


def test_lost_responses_over_http_client_are_written_once(server, ns_token):
    port = int(server.url.rsplit(":", 1)[1])
    proxy = ResponseLosingProxy(port, k=4)
    try:
        with RemoteStore(proxy.url, ns_token, backoff=0.01, concurrency=4) as s:
            msgs = [new_message(f"lose-{i % 6}", "T", {"i": i}) for i in range(120)]
            res = s.write_batch(msgs)
        assert proxy.lost >= 20
        with RemoteStore(server.url, ns_token) as reader:
            stored = list(reader.iter_category("lose"))
            assert len(stored) == 120  # no duplicates, nothing missing
            by_i = {json.loads(m.data)["i"]: m for m in stored}
            for i, r in enumerate(res):
                assert (by_i[i].position, by_i[i].global_position) == \
                    (r.position, r.global_position)
            for k in range(6):  # per-stream order kept
                assert [json.loads(m.data)["i"] for m in reader.stream_get(f"lose-{k}")] == \
                    list(range(k, 120, 6))
    finally:
        proxy.close()
