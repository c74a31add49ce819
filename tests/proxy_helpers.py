"""A small HTTP proxy in front of a real ``eventodb serve`` for tests of the remote store: a
``hook(method, path, body)`` may answer a request itself (``(status, headers, body)``) or let it
through (None); every request's arrival time, body and the most requests in flight are kept."""

from __future__ import annotations

import http.client
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit


class Proxy:
    def __init__(self, upstream: str, hook=None):
        u = urlsplit(upstream)
        self.host, self.port_up = u.hostname, u.port
        self.hook = hook
        self.arrivals: list[tuple[float, str, bytes]] = []
        self.in_flight = 0
        self.max_in_flight = 0
        self._lock = threading.Lock()
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a):
                pass

            def _handle(self):
                n = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(n) if n else b""
                with proxy._lock:
                    proxy.arrivals.append((time.monotonic(), self.path, body))
                    proxy.in_flight += 1
                    proxy.max_in_flight = max(proxy.max_in_flight, proxy.in_flight)
                try:
                    answer = proxy.hook(self.command, self.path, body) if proxy.hook else None
                    if answer is None:
                        answer = proxy._forward(self.command, self.path, body, self.headers)
                finally:
                    with proxy._lock:
                        proxy.in_flight -= 1
                status, headers, data = answer
                self.send_response(status)
                for k, v in headers.items():
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = _handle

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self._thread.start()

    def _forward(self, method, path, body, headers):
        c = http.client.HTTPConnection(self.host, self.port_up, timeout=60)
        try:
            fwd = {k: v for k, v in headers.items()
                   if k.lower() in ("authorization", "content-type", "accept")}
            c.request(method, path, body or None, fwd)
            r = c.getresponse()
            data = r.read()
            keep = {k: v for k, v in r.getheaders()
                    if k.lower() in ("content-type", "retry-after")}
            return r.status, keep, data
        finally:
            c.close()

    def bodies(self, prefix: bytes = b"") -> list[bytes]:
        return [b for _, _, b in self.arrivals if b.startswith(prefix)]

    def close(self):
        self.server.shutdown()
        self.server.server_close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def busy_answer(retry_after: str | None = "1"):
    """What ``eventodb serve``'s admission control answers when the memory budget stays full."""
    headers = {"Content-Type": "application/json"}
    if retry_after is not None:
        headers["Retry-After"] = retry_after
    return 503, headers, (b'{"error":{"code":"SERVER_BUSY","message":"Server busy: large '
                          b'request bodies in progress use the memory budget; retry later"}}')
