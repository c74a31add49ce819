"""Connections of ``eventodb serve``: read and idle timeouts, a connection limit below the file
limit that sheds idle and half-sent connections first, and a rate-limited log instead of a
traceback per refused ``accept()``.

The one place that decides how long a client may hold a socket without finishing a request,
and which connections go when there are too many:

- **read timeout** (``--read-timeout``, 30 s like the Go server's ``ReadTimeout``): from the first
  byte of a request (or from the connection being opened) until the whole request, headers and
  body, has arrived. A socket that sends nothing, half its headers or half its body is closed
  then. Time spent while the *server* has stopped reading (a body waiting for the memory budget,
  a pipelined request waiting its turn) does not count against the client. One sweep a second
  checks every connection against uvicorn's own state (nothing is added per request).
- **idle timeout** (``--idle-timeout``, 120 s like the Go server's ``IdleTimeout``): a keep-alive
  connection with no request in progress is closed after this long (uvicorn's
  ``timeout_keep_alive``), by the same sweep (up to a second late): uvicorn arms and cancels a
  timer per request for it, ~2.5 us of CPU each, half of what a ``GET /health`` costs the
  event loop on the fast path.
- **connection limit** (``--max-connections``, default derived from ``RLIMIT_NOFILE`` by
  ``auto_max_connections``): when a new connection would go over it, the connections that are
  idle or still sending their headers are closed, oldest first; requests being answered and SSE
  streams are never shed. Only if every connection is busy is the new one closed.
- when ``accept()`` fails for lack of file descriptors anyway, asyncio pauses accepting for a
  second; the log gets one line ``file limit reached`` at most every ``LOG_EVERY`` seconds (not a
  traceback per attempt) and idle connections are shed.
"""

from __future__ import annotations

import asyncio
import errno
import sys
import time

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol, RequestResponseCycle

ACCEPT_BURST = 128  # uvicorn's backlog: the listen queue and the accepts done in one go
LOG_EVERY = 10.0  # seconds between two log lines of the same kind
_FD_ERRORS = (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM)


def raise_file_limit() -> int:
    """Raise the soft ``RLIMIT_NOFILE`` to the hard limit (as Go programs do at start, since
    Go 1.19); return the soft limit in force."""
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY:
        hard = 1 << 20
    if soft == resource.RLIM_INFINITY:
        return hard
    if soft < hard:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
            soft = hard
        except (ValueError, OSError):
            pass
    return soft


def auto_max_connections(file_limit: int) -> int:
    """Connections allowed for a file limit: a quarter of the files (at least ``ACCEPT_BURST``
    + 64) stay free for one burst of ``accept()`` before the limit is applied, SQLite (three
    files per connection: db, wal, shm) and the process's own files."""
    return max(16, file_limit - max(ACCEPT_BURST + 64, file_limit // 4))


class Limits:
    """Settings and shared state of every connection of one server."""

    def __init__(self, *, read_timeout: float = 30.0, idle_timeout: float = 120.0,
                 max_connections: int = 1024, log=None):
        self.read_timeout = read_timeout
        self.idle_timeout = idle_timeout
        self.max_connections = max_connections
        self.open = 0  # connections made and not yet lost, minus those being shed
        self.conns: dict[GuardedProtocol, None] = {}  # open connections, oldest first
        self._sweeper: asyncio.TimerHandle | None = None
        self.shed = 0
        self.timed_out = 0
        self._log = log or _stderr
        self._logged: dict[str, float] = {}

    def note(self, kind: str, text: str) -> None:
        """Log ``text`` unless a line of the same ``kind`` was logged in the last LOG_EVERY s."""
        now = time.monotonic()
        last = self._logged.get(kind)
        if last is not None and now - last < LOG_EVERY:
            return
        self._logged[kind] = now
        self._log(text)

    def shed_idle(self, count: int, keep=None) -> int:
        """Close up to ``count`` idle or half-sent connections, oldest first."""
        done = 0
        for proto in list(self.conns):
            if done >= count:
                break
            if proto is not keep and proto.sheddable():
                proto.shed_now()
                done += 1
        self.shed += done
        return done

    def watch(self, proto: GuardedProtocol) -> None:
        self.conns[proto] = None
        if self._sweeper is None:
            self._schedule(proto.loop)

    def _schedule(self, loop) -> None:
        self._sweeper = loop.call_later(min(1.0, self.read_timeout / 4, self.idle_timeout / 4),
                                        self._sweep, loop)

    def _sweep(self, loop) -> None:
        """Every second (or a quarter of the read or idle timeout): close the connections that
        have made no progress on their request for longer than the read timeout, and those idle
        for longer than the idle timeout. One timer for all and nothing done per request, so
        the hot path costs nothing more."""
        now = loop.time()
        for proto in list(self.conns):
            proto.check_reading(now, self.read_timeout)
        if self.conns:
            self._schedule(loop)
        else:
            self._sweeper = None

    def file_limit_reached(self, exc: OSError) -> None:
        idle = sum(1 for p in self.conns if p.sheddable())
        shed = self.shed_idle(max(1, idle // 2))
        self.note("files", f"file limit reached ({exc.strerror}): {self.open} connections open, "
                           f"{shed} idle closed; accepting again in 1 s")

    def exception_handler(self, loop: asyncio.AbstractEventLoop, context: dict) -> None:
        """The event loop's exception handler: out-of-files errors are one rate-limited line."""
        exc = context.get("exception")
        if isinstance(exc, OSError) and exc.errno in _FD_ERRORS:
            self.file_limit_reached(exc)
            return
        loop.default_exception_handler(context)


def _stderr(text: str) -> None:
    print(f"eventodb serve: {text}", file=sys.stderr, flush=True)


class GuardedProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with the read timeout and the shedding above. It adds
    nothing per request: the sweep reads uvicorn's own per-connection state."""

    limits: Limits  # set on the subclass made by protocol_class()

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._state = None  # what the client owes, as last seen (see _reading_state)
        self._since = 0.0  # loop time it was first seen
        self._counted = False
        self._idle_at: float | None = None  # loop time the last answer ended; None: not idle

    def on_message_begin(self) -> None:
        self._idle_at = None  # a request is being read (see fastpath.on_message_begin)
        super().on_message_begin()

    def on_response_complete(self) -> None:
        """uvicorn's, but an idle connection is left to the sweep (``_idle_at``) instead of a
        timer per request."""
        self.server_state.total_requests += 1
        if self.transport.is_closing():
            return
        self._unset_keepalive_if_required()
        self.flow.resume_reading()
        if self.pipeline:
            cycle, app = self.pipeline.pop()
            task = self.loop.create_task(cycle.run_asgi(app))
            task.add_done_callback(self.tasks.discard)
            self.tasks.add(task)
        else:
            self._idle_at = self.loop.time()

    def _unset_keepalive_if_required(self) -> None:
        """Called by uvicorn on every read, at the end of an answer and when the connection
        is lost: the connection is not idle."""
        self._idle_at = None
        if self.timeout_keep_alive_task is not None:
            self.timeout_keep_alive_task.cancel()
            self.timeout_keep_alive_task = None

    def connection_made(self, transport) -> None:
        super().connection_made(transport)
        limits = self.limits
        limits.open += 1
        self._counted = True
        self._state = self._reading_state()
        self._since = self.loop.time()
        limits.watch(self)
        over = limits.open - limits.max_connections
        if over > 0:
            shed = limits.shed_idle(over, keep=self)
            if shed:
                limits.note("shed", f"connection limit reached ({limits.max_connections}): "
                                    "closing idle and half-sent connections, oldest first")
            else:
                limits.note("full", f"connection limit reached ({limits.max_connections}) and "
                                    "every connection is busy: refusing new connections")
                self.shed_now()

    def connection_lost(self, exc) -> None:
        self._uncount()
        super().connection_lost(exc)

    def _reading_state(self):
        """What the client still owes: ``(cycle, 0)`` (the headers of a request: a new
        connection, or bytes after a response), ``(cycle, 1)`` (the body of the request in
        progress), or ``None`` (nothing: idle keep-alive, left to uvicorn's idle timeout, or
        the whole request is in and the server is answering). Any progress changes it."""
        cycle = self.cycle
        if cycle is not None and cycle.more_body:  # even if answered early (401, 413, 503)
            return (cycle, 1)
        if self._idle_at is not None:
            return None
        if cycle is None or cycle.response_complete:
            return (cycle, 0)
        return None

    def sheddable(self) -> bool:
        """Idle, or still sending its headers (no request of it is being answered)."""
        if self.transport is None or self.transport.is_closing():
            return False
        cycle = self.cycle
        return self._idle_at is not None or cycle is None or cycle.response_complete

    def check_reading(self, now: float, timeout: float) -> None:
        idle = self._idle_at
        if idle is not None:  # owes nothing: the idle timeout, not the read timeout
            self._state = None
            if now - idle >= self.timeout_keep_alive and not self.transport.is_closing():
                self.transport.close()  # as uvicorn's timeout_keep_alive_handler
            return
        state = self._reading_state()
        if state is None or state != self._state:
            self._state = state
            self._since = now
            return
        if now - self._since < timeout or self.transport.is_closing():
            return
        if self.flow is not None and self.flow.read_paused:
            self._since = now  # the server stopped reading, not the client: not its fault
            return
        limits = self.limits
        limits.timed_out += 1
        limits.note("timeout", f"closing connections that did not send a whole request within "
                               f"{timeout:g} s ({limits.timed_out} so far)")
        self.shed_now()

    def shed_now(self) -> None:
        self._uncount()
        self.transport.close()

    def _uncount(self) -> None:
        self.limits.conns.pop(self, None)
        if self._counted:
            self._counted = False
            self.limits.open -= 1


class _Gather:
    """Stands in for a request's transport while one whole response is handed to uvicorn:
    collects its writes (and a ``close``) to pass them on as one."""

    __slots__ = ("real", "parts", "closed")

    def __init__(self, real):
        self.real = real
        self.parts: list[bytes] = []
        self.closed = False

    def write(self, data: bytes) -> None:
        self.parts.append(data)

    def close(self) -> None:
        self.closed = True

    def is_closing(self) -> bool:
        return self.closed or self.real.is_closing()

    def flush(self) -> None:
        if self.parts:
            self.real.write(b"".join(self.parts))
        if self.closed:
            self.real.close()


async def send_whole(send, start: dict, body: bytes) -> None:
    """Send ``start`` and then ``body`` as the whole response, in ONE write to the socket: one
    ``send()`` and one TCP segment instead of two (headers, then body), which for a small answer
    is a good part of the server's CPU per request (and one wake-up less for the client).

    uvicorn writes the status line and headers as soon as it gets ``http.response.start``;
    here, its request cycle writes to a ``_Gather`` for the two messages, so every check and
    header rule of uvicorn still applies. Any other ``send`` gets the two messages as usual."""
    body_msg = {"type": "http.response.body", "body": body}
    cycle = getattr(send, "__self__", None)
    if type(cycle) is not RequestResponseCycle or cycle.response_started:
        await send(start)
        await send(body_msg)
        return
    real = cycle.transport
    gather = cycle.transport = _Gather(real)
    try:
        await send(start)
        await send(body_msg)
    finally:
        cycle.transport = real
        gather.flush()


def protocol_class(limits: Limits) -> type[GuardedProtocol]:
    """The protocol class to give uvicorn (``Config(http=...)``), bound to ``limits``."""
    return type("EventoDBProtocol", (GuardedProtocol,), {"limits": limits})
