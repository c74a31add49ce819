"""``consume --health-port``: ``GET /health`` (the consumer's JSON health) and ``GET /metrics``
(Prometheus text, services/metrics.py) on 127.0.0.1, served from daemon threads so the consumer
loop never waits for a scrape."""

from __future__ import annotations

import json
import threading

from ..errors import EventoError, UsageError


def serve_health(consumer, port: int, host: str = "127.0.0.1", *,
                 store_factory=None):
    """Serve ``GET /health`` (JSON) and ``GET /metrics`` (Prometheus text, services/metrics.py)
    on ``host:port`` from a daemon thread. ``/metrics`` reads the head and the lag from its own
    store (``store_factory()``, opened at the first scrape), never the consumer's connection.
    Returns the server (``.shutdown()`` stops it; ``.close_store()`` closes the metrics store)."""
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    lock = threading.Lock()
    opened: list = []

    def metrics_text() -> str:
        from .metrics import prometheus_text

        with lock:
            if store_factory is not None and not opened:
                opened.append(store_factory())
            row = consumer.metric_row(opened[0] if opened else None)
        return prometheus_text([row])

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 (http.server API)
            path = self.path.split("?")[0]
            if path == "/metrics":
                from .metrics import CONTENT_TYPE

                try:
                    body = metrics_text().encode()
                except EventoError as e:
                    self._send(503, {"error": e.message})
                    return
                self._raw(200, body, CONTENT_TYPE)
                return
            if path not in ("/health", "/"):
                self._send(404, {"error": "not found"})
                return
            self._send(200, consumer.health())

        def _send(self, status, obj):
            self._raw(status, json.dumps(obj).encode(), "application/json")

        def _raw(self, status, body: bytes, ctype: str):
            self.send_response(status)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    try:
        httpd = ThreadingHTTPServer((host, port), Handler)
    except OSError as e:
        raise UsageError(f"--health-port {port}: cannot listen on {host}:{port}: "
                         f"{e.strerror}") from None
    httpd.daemon_threads = True

    def close_store():
        with lock:
            for st in opened:
                st.close()
            opened.clear()

    httpd.close_store = close_store
    consumer.track_lag = True
    threading.Thread(target=httpd.serve_forever, name="eventodb-health", daemon=True).start()
    return httpd
