"""The hot routes of ``eventodb serve`` without the ASGI cycle: ``POST /rpc`` with a
``stream.write`` and ``GET /health`` are answered straight from uvicorn's httptools parser
callbacks; everything else goes through the ASGI application as before.

Why: a sequential write cost the event-loop thread ~380 Python calls, most of them the
machinery around the write (an asyncio task per request and its steps, the ASGI scope, uvicorn's
``RequestResponseCycle``, ``receive``/``send`` awaits, a future per write and the loop turn that
runs its callbacks). Here a small write request is: the parser's callbacks, the same
``Server.caller`` / ``decode_envelope`` / ``check_request`` / ``parse_write`` as the ASGI path,
one ``WriteQueue.submit_call`` whose callback writes the answer with one ``transport.write``.

A request takes this path only when all of this holds; otherwise it is exactly the ASGI path:

- the URL is exactly ``/rpc`` (``POST``, with a ``Content-Length`` up to ``admission.SMALL``
  and the server's body limit: no memory admission, no 413) or ``/health`` (``GET``);
- no ``Expect: 100-continue``, no upgrade, no earlier request of the connection still being
  answered (pipelined requests queue behind it in uvicorn's pipeline, in order);
- once the body is in: the caller is authenticated, the body decodes, and the method is
  ``stream.write`` with valid arguments. Any other outcome (an auth error, a malformed body,
  another method, a validation error) hands the request, with its body, to the ASGI
  application, which answers it as it always did.

The answer's bytes are the ones uvicorn writes for ``app.send_response`` (status line, uvicorn's
default headers (``date``), ``content-type``, ``server``, ``retry-after`` on 503,
``content-length``, ``connection: close`` when the connection ends); ``tests/test_serve_fast.py``
compares the two paths byte for byte. The connection-level rules (read and idle timeouts,
shedding, the connection limit: ``connections.py``) see a fast request through the same
attributes as an ASGI one (``cycle.more_body``, ``cycle.response_complete``).
"""

from __future__ import annotations

import asyncio

from uvicorn.protocols.http.httptools_impl import STATUS_LINE, RequestResponseCycle

from .admission import RETRY_AFTER, SMALL
from .app import JSON_HEADERS
from .connections import GuardedProtocol, Limits
from .rpc import check_request, decode_envelope, parse_write
from .wire import error_body

_HEALTH = b'{"status":"ok"}'
_JSON_HEAD = b"".join(k + b": " + v + b"\r\n" for k, v in JSON_HEADERS)
_RETRY = b"retry-after: " + RETRY_AFTER.encode() + b"\r\n"


class _NoEvent:
    """Stands in for a cycle's ``message_event`` (uvicorn sets it when the connection is lost);
    nothing waits on a fast request."""

    __slots__ = ()

    def set(self) -> None:
        pass


_NO_EVENT = _NoEvent()


class FastCycle:
    """One request on the fast path: what uvicorn's ``RequestResponseCycle`` exposes to the
    protocol (``more_body``, ``response_complete``, ``keep_alive``, ``disconnected``,
    ``message_event``), plus what the request needs."""

    __slots__ = ("health", "method", "http_version", "headers", "body", "more_body",
                 "response_complete", "keep_alive", "disconnected", "message_event")

    def __init__(self, health: bool, method: str, http_version: str, headers: list,
                 keep_alive: bool):
        self.health = health
        self.method = method
        self.http_version = http_version
        self.headers = headers
        self.body = b""
        self.more_body = True
        self.response_complete = False
        self.keep_alive = keep_alive
        self.disconnected = False
        self.message_event = _NO_EVENT


def response_bytes(default_headers: list, status: int, body: bytes, keep_alive: bool) -> bytes:
    """The whole HTTP answer as uvicorn writes it for ``app.send_response(send, status, body)``:
    ``default_headers`` (the date), the JSON headers, ``retry-after`` on 503, the length, and
    ``connection: close`` when the connection ends after it."""
    head = [STATUS_LINE[status]]
    for name, value in default_headers:
        head.append(name + b": " + value + b"\r\n")
    head.append(_JSON_HEAD)
    if status == 503:
        head.append(_RETRY)
    head.append(b"content-length: %d\r\n" % len(body))
    if not keep_alive:
        head.append(b"connection: close\r\n")
    head.append(b"\r\n")
    head.append(body)
    return b"".join(head)


class FastProtocol(GuardedProtocol):
    """``GuardedProtocol`` (timeouts, shedding) that answers the hot routes itself."""

    app_server = None  # the ``app.Server``, set on the subclass made by ``protocol_class``
    # (uvicorn keeps the local address in ``self.server``)
    fast_limit = SMALL  # largest body taken here (min of SMALL and the server's body limit)

    def on_message_begin(self) -> None:
        # the ASGI scope is made only for a request that takes the ASGI path (_asgi_scope)
        # A request is being read: the connection is not idle (an answer given at once marks
        # it idle while the parser is still in the same packet, with no data_received after)
        self._idle_at = None
        self.url = b""
        self.expect_100_continue = False
        self.headers = []
        self.scope = None

    def on_headers_complete(self) -> None:
        url = self.url
        # not while the client is not reading its answers (the transport's buffer is over its
        # high-water mark): the ASGI path waits for the buffer to drain and stops reading, an
        # answer given here would be buffered without bound
        if (url == b"/rpc" or url == b"/health") and not self.expect_100_continue \
                and not self.flow.write_paused:
            prev = self.cycle
            parser = self.parser
            if (prev is None or prev.response_complete) and not parser.should_upgrade():
                method = parser.get_method()
                health = url == b"/health"
                if (method == b"GET" if health else method == b"POST" and self._small()):
                    version = parser.get_http_version()
                    self.cycle = FastCycle(health, method.decode("ascii"), version,
                                           self.headers,
                                           version != "1.0" and parser.should_keep_alive())
                    return
        self._asgi_scope()
        super().on_headers_complete()

    def _small(self) -> bool:
        """A ``Content-Length`` up to ``fast_limit`` and no ``Transfer-Encoding``."""
        length = None
        for name, value in self.headers:
            if name == b"content-length":
                if length is not None or not value.isdigit():
                    return False
                length = int(value)
            elif name == b"transfer-encoding":
                return False
        return length is not None and length <= self.fast_limit

    def _asgi_scope(self) -> None:
        """The scope uvicorn's ``on_message_begin`` makes, for the request being parsed."""
        url, headers, expect = self.url, self.headers, self.expect_100_continue
        super().on_message_begin()
        self.url, self.headers, self.expect_100_continue = url, headers, expect
        self.scope["headers"] = headers

    def on_body(self, body: bytes) -> None:
        cycle = self.cycle
        if type(cycle) is FastCycle:
            cycle.body += body
        else:
            super().on_body(body)

    def on_message_complete(self) -> None:
        cycle = self.cycle
        if type(cycle) is not FastCycle:
            super().on_message_complete()
            return
        cycle.more_body = False
        if cycle.health:
            self._answer(cycle, (200, _HEALTH))
            return
        server = self.app_server
        try:
            namespace, _admin = server.caller({"headers": cycle.headers}, {})
            req = decode_envelope(cycle.body)
            if check_request(req) != "stream.write":
                raise LookupError
            msg = parse_write(req[1:])
        except Exception:  # every other request, and every error, is the ASGI path's
            self._to_asgi(cycle)
            return
        try:
            server.writes.submit_call(namespace, msg,
                                      lambda result: self._answer(cycle, result))
        except Exception as e:  # as app.rpc: still a JSON answer (an exception here would
            # reach httptools and end the connection with a 400)
            self._answer(cycle, (500, error_body("INTERNAL_ERROR", f"{type(e).__name__}: {e}")))

    def _answer(self, cycle: FastCycle, result) -> None:
        """Write ``(status, body)`` as the whole answer (``response_bytes``); then the next
        pipelined request starts, or the keep-alive timer, as after an ASGI answer."""
        if cycle.response_complete:
            return
        cycle.response_complete = True
        transport = self.transport
        if cycle.disconnected or transport is None or transport.is_closing():
            return
        try:
            status, out = result
            data = response_bytes(self.server_state.default_headers, status,
                                  out.encode("utf-8") if isinstance(out, str) else out,
                                  cycle.keep_alive)
        except Exception as e:  # pragma: no cover - a bug: never leave the client waiting
            self.logger.error("answer on the fast path failed: %r", e)
            transport.close()
            return
        transport.write(data)
        if not cycle.keep_alive:
            transport.close()
        self.on_response_complete()

    def _to_asgi(self, cycle: FastCycle) -> None:
        """Hand a fast request whose body is in to the ASGI application (same answer as if it
        had never been here). Called from ``on_message_complete``: ``self.cycle`` is it."""
        scope = {
            "type": "http",
            "asgi": {"version": self.asgi_version, "spec_version": "2.3"},
            "http_version": cycle.http_version,
            "server": self.server,
            "client": self.client,
            "scheme": self.scheme,
            "root_path": self.root_path,
            "headers": cycle.headers,
            "state": self.app_state.copy(),
            "method": cycle.method,
            "path": self.root_path + ("/health" if cycle.health else "/rpc"),
            "raw_path": self.root_path.encode("ascii") + (b"/health" if cycle.health
                                                          else b"/rpc"),
            "query_string": b"",
        }
        asgi = RequestResponseCycle(
            scope=scope, transport=self.transport, flow=self.flow, logger=self.logger,
            access_logger=self.access_logger, access_log=self.access_log,
            default_headers=self.server_state.default_headers,
            message_event=asyncio.Event(), expect_100_continue=False,
            keep_alive=cycle.keep_alive, on_response=self.on_response_complete)
        asgi.body = bytearray(cycle.body)
        asgi.more_body = False
        asgi.message_event.set()  # the whole body is there for its first receive()
        self.cycle = asgi
        # as uvicorn starts a request's task (its _start_asgi_task, not in every uvicorn >= 0.30)
        task = self.loop.create_task(asgi.run_asgi(self.app))
        task.add_done_callback(self.tasks.discard)
        self.tasks.add(task)


def protocol_class(limits: Limits, server) -> type[FastProtocol]:
    """The protocol class to give uvicorn (``Config(http=...)``), bound to ``limits`` and the
    application's ``server``."""
    return type("EventoDBProtocol", (FastProtocol,), {
        "limits": limits, "app_server": server,
        "fast_limit": min(SMALL, server.max_body)})
