"""The ASGI application of ``eventodb serve``: routing, auth, body limits, SSE and /import.

A plain ASGI callable on uvicorn (httptools): five fixed paths need no router. The hot routes
(a small ``stream.write`` on ``POST /rpc``, ``GET /health``) usually never get here: they are
answered from the parser's callbacks (``fastpath.py``), and what that path does not take
(another method, an error, a large body) is handed to this application unchanged.
"""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import parse_qsl

from .. import __version__
from .admission import IMPORT_FACTOR, RETRY_AFTER, RPC_FACTOR, SMALL, MemoryBudget
from .auth import TokenError, hash_token, parse_token
from .connections import send_whole
from .hub import Hub, Subscriber
from .registry import Registry
from .paging import Paged
from .rpc import (RpcError, check_request, decode_envelope, dispatch, handle_rpc,
                  parse_write)
from .writequeue import WriteQueue
from .wire import error_body, go_escape, jstr

SERVER_HEADER = (b"server", f"EventoDB/{__version__}".encode())
JSON_HEADERS = [(b"content-type", b"application/json"), SERVER_HEADER]
SSE_HEADERS = [
    (b"content-type", b"text/event-stream"),
    (b"cache-control", b"no-cache"),
    (b"connection", b"keep-alive"),
    (b"access-control-allow-origin", b"*"),
    SERVER_HEADER,
]
TEXT_HEADERS = [(b"content-type", b"text/plain; charset=utf-8"), SERVER_HEADER]
REPLAY_CAP = 1000
INLINE_DECODE = SMALL  # bodies up to this size are decoded on the event loop
MAX_IMPORT_LINE = 1024 * 1024


class HttpError(Exception):
    def __init__(self, status: int, body: str, headers=JSON_HEADERS):
        self.status = status
        self.body = body
        self.headers = headers


class Disconnected(Exception):
    pass


async def send_response(send, status: int, body: str | bytes, headers=JSON_HEADERS) -> None:
    data = body.encode("utf-8") if isinstance(body, str) else body
    if status == 503:
        headers = headers + [(b"retry-after", RETRY_AFTER.encode())]
    await send_whole(send, {"type": "http.response.start", "status": status,
                            "headers": headers + [(b"content-length", str(len(data)).encode())]},
                     data)


def _query(scope) -> dict[str, str]:
    out: dict[str, str] = {}
    qs = scope.get("query_string") or b""
    if qs:
        for k, v in parse_qsl(qs.decode("latin-1"), keep_blank_values=True, encoding="utf-8",
                              errors="replace"):
            out.setdefault(k, v)
    return out


def _header(scope, name: bytes) -> str | None:
    for k, v in scope["headers"]:
        if k == name:
            return v.decode("latin-1")
    return None


class Server:
    """State shared by requests: registry, hub, worker pool, settings."""

    def __init__(self, registry: Registry, *, test_mode: bool = False,
                 max_body: int = 100 * 1024 * 1024, keepalive: float = 15.0,
                 workers: int = 8, memory_budget: int = 512 * 1024 * 1024,
                 admin_token: str | None = None):
        self.registry = registry
        # namespace management needs the admin role: the default namespace's token, or this
        self.admin_hash = hash_token(admin_token) if admin_token else None
        self.budget = MemoryBudget(memory_budget)
        self.test_mode = test_mode
        self.max_body = max_body
        self.keepalive = keepalive
        self.hub = Hub()
        self.executor = ThreadPoolExecutor(max_workers=workers,
                                           thread_name_prefix="eventodb-sql")
        self.loop: asyncio.AbstractEventLoop | None = None
        self.writes = WriteQueue(self)
        self._tokens: dict[str, tuple[str, str]] = {}  # accepted token -> (namespace, sha256)

    # --- hooks called from worker threads ---------------------------------------------------
    def published(self, namespace: str, pokes: list[tuple[str, int, int]],
                  on_loop: bool = False) -> None:
        """Called by stream.write under the namespace write lock, after the commit, with
        (stream, position, globalPosition) of each message written. ``on_loop``: called on
        the event loop (``loopwrite``): ``call_soon``, FIFO with the threads' callbacks (pokes
        stay in commit order) and without waking the loop through its self-pipe."""
        if self.hub.counts.get(namespace) and self.loop is not None:
            if on_loop:
                self.loop.call_soon(self.hub.publish_many, namespace, pokes)
            else:
                self.loop.call_soon_threadsafe(self.hub.publish_many, namespace, pokes)

    def namespace_deleted(self, namespace: str) -> None:
        if self.loop is not None:
            self.loop.call_soon_threadsafe(self.hub.close_namespace, namespace)

    def connection_count(self) -> int:
        return sum(ns.connection_count() for ns in self.registry.all())

    # --- auth -------------------------------------------------------------------------------
    def caller(self, scope, query: dict[str, str]) -> tuple[str, bool]:
        """The request's namespace and whether it may manage namespaces (the admin role: the
        ``default`` namespace's token or ``--admin-token``; everyone in test mode)."""
        if self.admin_hash is not None and not self.test_mode:
            token = query.get("token") or ""
            if not token:
                header = _header(scope, b"authorization") or ""
                token = header[7:] if header.startswith("Bearer ") else ""
            if token and _same(hash_token(token), self.admin_hash):
                try:
                    return parse_token(token), True
                except TokenError:
                    pass
        namespace = self.authenticate(scope, query)
        return namespace, self.test_mode or namespace == "default"

    def authenticate(self, scope, query: dict[str, str]) -> str:
        """The request's namespace, or ``HttpError`` with the JSON 401/403 of PROTOCOL.md."""
        token = query.get("token") or ""
        if not token:
            header = _header(scope, b"authorization")
            if header is None or header == "":
                if self.test_mode:
                    return "default"
                raise HttpError(401, error_body("AUTH_REQUIRED",
                                                "Authorization header required"))
            if not header.startswith("Bearer "):
                if self.test_mode:
                    return "default"
                raise HttpError(401, error_body("AUTH_REQUIRED",
                                                "Authorization header must use Bearer scheme"))
            token = header[7:]
            if not token:
                if self.test_mode:
                    return "default"
                raise HttpError(401, error_body("AUTH_REQUIRED", "Token required"))
        known = self._tokens.get(token)
        if known is not None and not self.test_mode:
            ns = self.registry.get(known[0])
            if ns is not None and ns.token_hash == known[1]:
                return known[0]
        try:
            namespace = parse_token(token)
        except TokenError as e:
            if self.test_mode:
                return "default"
            raise HttpError(401, error_body("AUTH_INVALID_TOKEN", "Invalid token format",
                                            {"error": str(e)})) from None
        if self.test_mode:
            return namespace
        ns = self.registry.get(namespace)
        digest = hash_token(token)
        if ns is None or not _same(ns.token_hash, digest):
            raise HttpError(403, error_body("AUTH_UNAUTHORIZED",
                                            "Token not authorized for namespace",
                                            {"namespace": namespace}))
        # remembered with the hash it matched: a token replaced or a namespace deleted and
        # re-created no longer matches, and is checked in full again
        if len(self._tokens) >= 1024:
            self._tokens.clear()
        self._tokens[token] = (namespace, digest)
        return namespace

    # --- ASGI -------------------------------------------------------------------------------
    async def __call__(self, scope, receive, send):
        kind = scope["type"]
        if kind == "http":
            path = scope["path"]
            try:
                if path == "/rpc":
                    await self.rpc(scope, receive, send)
                elif path == "/health":
                    await send_response(send, 200, b'{"status":"ok"}')
                elif path == "/version":
                    await send_response(send, 200, '{"version":%s}\n' % jstr(__version__))
                elif path == "/subscribe":
                    await self.subscribe(scope, receive, send)
                elif path == "/import":
                    await self.import_(scope, receive, send)
                else:
                    await send_response(send, 404, error_body("NOT_FOUND",
                                                              "Endpoint not found"))
            except HttpError as e:
                await send_response(send, e.status, e.body, e.headers)
            except Disconnected:
                return
        elif kind == "lifespan":
            await self.lifespan(receive, send)

    async def lifespan(self, receive, send):
        while True:
            msg = await receive()
            if msg["type"] == "lifespan.startup":
                self.loop = asyncio.get_running_loop()
                await send({"type": "lifespan.startup.complete"})
            elif msg["type"] == "lifespan.shutdown":
                self.hub.close_all()
                await self.loop.run_in_executor(None, self.writes.close)
                self.executor.shutdown(wait=True, cancel_futures=True)
                from . import offload

                offload.shutdown()
                self.registry.close()
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def _admit(self, cost: int) -> int:
        held = await self.budget.acquire(cost)
        if not held:
            raise HttpError(503, error_body(
                "SERVER_BUSY", "Server busy: large request bodies in progress use the memory "
                "budget; retry later"))
        return held

    async def read_body(self, scope, receive, factor: int, held: list) -> bytes:
        """The whole body. A body over SMALL bytes is first admitted against the memory budget
        (``admission.py``); the cost held is appended to ``held`` for the caller to release."""
        limit = self.max_body
        length = _header(scope, b"content-length")
        declared = int(length) if length is not None and length.isdigit() else None
        if declared is not None and declared > limit:
            raise HttpError(413, error_body(
                "INVALID_REQUEST", f"Request body too large (limit {limit} bytes)"))
        if declared is not None and declared > SMALL:
            held.append(await self._admit(declared * factor))
        msg = await receive()
        if msg["type"] == "http.disconnect":
            raise Disconnected()
        body = msg.get("body", b"")
        if not msg.get("more_body"):
            if len(body) > limit:
                raise HttpError(413, error_body(
                    "INVALID_REQUEST", f"Request body too large (limit {limit} bytes)"))
            return body
        if declared is not None:  # filled in place: no copy when it grows
            buf = bytearray(declared)
            buf[:len(body)] = body
            size = len(body)
        else:
            buf = bytearray(body)
            size = len(buf)
        while True:
            msg = await receive()
            if msg["type"] == "http.disconnect":
                raise Disconnected()
            chunk = msg.get("body", b"")
            end = size + len(chunk)
            if end > limit:
                raise HttpError(413, error_body(
                    "INVALID_REQUEST", f"Request body too large (limit {limit} bytes)"))
            if not held and end > SMALL:  # no length given: held alone
                held.append(await self._admit(self.budget.total))
            if end <= len(buf):
                buf[size:end] = chunk
            else:
                del buf[size:]
                buf += chunk
            size = end
            if not msg.get("more_body"):
                if size < len(buf):
                    del buf[size:]
                return bytes(buf) if size <= SMALL else buf

    async def rpc(self, scope, receive, send):
        namespace, admin = self.caller(scope, _query(scope) if scope.get("query_string")
                                       else {})
        if scope["method"] != "POST":
            raise HttpError(405, error_body("INVALID_REQUEST", "Only POST method allowed"))
        held: list[int] = []
        try:
            body = await self.read_body(scope, receive, RPC_FACTOR, held)
            if len(body) > INLINE_DECODE:  # decoding a large body would stall the event loop
                status, out = await self._rpc_large(namespace, body, admin)
                await self.answer(send, status, out)
                return
        finally:
            for cost in held:
                self.budget.release(cost)
        try:
            req = decode_envelope(body)
            method = check_request(req)
            if method == "stream.write":
                status, out = await self.writes.submit(namespace, parse_write(req[1:]))
            else:
                status, out = await self.loop.run_in_executor(self.executor, dispatch, self,
                                                              namespace, method, req, admin)
        except RpcError as e:
            status, out = e.response()
        except Exception as e:  # e.g. data nested too deep to re-encode: still JSON
            status, out = 500, error_body("INTERNAL_ERROR", f"{type(e).__name__}: {e}")
        await self.answer(send, status, out)

    async def _rpc_large(self, namespace: str, body, admin: bool) -> tuple[int, str]:
        """A body over INLINE_DECODE bytes: decoded in the helper process (``offload.py``),
        or here in a worker thread if that is not possible or it is not a write."""
        from concurrent.futures.process import BrokenProcessPool

        from . import offload

        prepared = None
        pool = offload.pool()
        once = offload.Once(body)
        del body
        try:
            prepared = await self.loop.run_in_executor(pool, offload.prepare, once)
        except BrokenProcessPool:
            offload.reset(pool)
        except Exception:  # e.g. a value too deep to pickle: decoded below, same answer
            pass
        if prepared is not None:
            if prepared[0] == "answer":
                return prepared[1]
            if prepared[0] == "call":
                return await self.loop.run_in_executor(self.executor, dispatch, self,
                                                       namespace, prepared[1], prepared[2],
                                                       admin)
            return await self.writes.submit(namespace, prepared[1])
        body = once.data
        if body is None:  # given to a helper that failed
            return 500, error_body("INTERNAL_ERROR", "the process decoding large requests "
                                   "failed; retry")
        box = [body]
        del body  # handle_rpc takes the only reference and drops it once decoded
        return await self.loop.run_in_executor(self.executor, handle_rpc, self, namespace, box,
                                               admin)

    async def answer(self, send, status: int, out) -> None:
        """Send an RPC answer: a body, or a ``Paged`` one read and sent a page at a time (no
        Content-Length: chunked), so an unlimited read never holds the whole answer."""
        if not isinstance(out, Paged):
            await send_response(send, status, out)
            return
        await send({"type": "http.response.start", "status": status, "headers": JSON_HEADERS})
        chunk = out.first
        while chunk is not None:
            await send({"type": "http.response.body", "body": chunk.encode("utf-8"),
                        "more_body": True})
            chunk = await self.loop.run_in_executor(self.executor, out.next_chunk)
        await send({"type": "http.response.body", "body": b"", "more_body": False})

    # --- SSE ----------------------------------------------------------------------------------
    async def subscribe(self, scope, receive, send):
        query = _query(scope)
        namespace = self.authenticate(scope, query)
        stream = query.get("stream", "")
        category = query.get("category", "")
        all_ = query.get("all") == "true"

        def bad(text: str):
            return HttpError(400, text, TEXT_HEADERS)

        if not stream and not category and not all_:
            raise bad("Either 'stream', 'category', or 'all=true' parameter required")
        if all_ and (stream or category):
            raise bad("Cannot combine 'all' with 'stream' or 'category'")
        if stream and category:
            raise bad("Cannot specify both 'stream' and 'category'")
        position = _parse_int64(query.get("position", ""), 0, bad("Invalid position parameter"))
        member = size = 0
        if category:
            member = _parse_int64(query.get("consumer", ""), 0, bad("Invalid consumer parameter"))
            size = _parse_int64(query.get("size", ""), 0, bad("Invalid size parameter"))
            if (member > 0 or size > 0) and (size == 0 or member >= size):
                raise bad("Invalid consumer group: member must be < size")
        if size <= 0:
            member = size = 0
        kind = "stream" if stream else "category" if category else "all"
        sub = Subscriber(namespace, kind, stream or category or None, position, member, size)
        self.hub.add(sub)  # before the replay is read: no write falls between the two
        try:
            await send({"type": "http.response.start", "status": 200, "headers": SSE_HEADERS})
            await send({"type": "http.response.body", "body": b": ready\n\n", "more_body": True})
            watcher = asyncio.ensure_future(_watch_disconnect(receive, sub))
            try:
                await self._sse_loop(sub, position, send)
            finally:
                watcher.cancel()
        finally:
            self.hub.remove(sub)
        try:
            await send({"type": "http.response.body", "body": b"", "more_body": False})
        except Exception:  # the client is gone
            pass

    async def _sse_loop(self, sub: Subscriber, start: int, send):
        if sub.kind != "all":
            replay = await self.loop.run_in_executor(self.executor, self._replay, sub,
                                                     start)
            if replay:
                chunk = go_escape("".join(_poke(s, p, g) for s, p, g in replay))
                await send({"type": "http.response.body", "body": chunk.encode("utf-8"),
                            "more_body": True})
                last = replay[-1][1] if sub.kind == "stream" else replay[-1][2]
                sub.after_replay(last)
        keepalive = self.keepalive
        while True:
            if sub.closed or sub.overflow:
                return
            if sub.queue:
                q = sub.queue
                chunk = go_escape("".join(_poke(*q.popleft()) for _ in range(len(q))))
                await send({"type": "http.response.body", "body": chunk.encode("utf-8"),
                            "more_body": True})
                continue
            sub.event.clear()
            try:
                await asyncio.wait_for(sub.event.wait(), keepalive)
            except asyncio.TimeoutError:
                await send({"type": "http.response.body", "body": b": keep-alive\n\n",
                            "more_body": True})

    def _replay(self, sub: Subscriber, start: int) -> list[tuple[str, int, int]]:
        ns = self.registry.get(sub.namespace)
        if ns is None or ns.deleted:
            return []
        try:
            store = ns.reader()
            if sub.kind == "stream":
                msgs = store.stream_get(sub.name, start, None, REPLAY_CAP)
            else:
                msgs = store.category_get(sub.name, start, REPLAY_CAP, None,
                                          sub.member if sub.size else None,
                                          sub.size or None)
        except Exception:
            return []
        return [(m.stream_name, m.position, m.global_position) for m in msgs]

    # --- /import ------------------------------------------------------------------------------
    async def import_(self, scope, receive, send):
        query = _query(scope)
        namespace = self.authenticate(scope, query)
        force = query.get("force") == "true"
        held: list[int] = []
        try:
            await self._import(scope, receive, send, namespace, force, held)
        finally:
            for cost in held:
                self.budget.release(cost)

    async def _import(self, scope, receive, send, namespace, force, held):
        body = await self.read_body(scope, receive, IMPORT_FACTOR, held)
        from .imports import run_import

        loop = self.loop
        events: asyncio.Queue = asyncio.Queue()

        def emit(event):
            loop.call_soon_threadsafe(events.put_nowait, event)

        job = loop.run_in_executor(self.executor, run_import, self, namespace, body, force,
                                   emit)
        first = await events.get()
        if isinstance(first, tuple) and first[0] == "clear_failed":
            await job
            raise HttpError(500, error_body("CLEAR_FAILED", first[1]))
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", b"text/event-stream"),
                                (b"cache-control", b"no-cache"),
                                (b"x-accel-buffering", b"no"), SERVER_HEADER]})
        event = first
        while True:
            if isinstance(event, tuple):  # ("started",)
                event = await events.get()
                continue
            if event is None:
                break
            await send({"type": "http.response.body",
                        "body": b"data: " + event.encode("utf-8") + b"\n\n",
                        "more_body": True})
            event = await events.get()
        await job
        await send({"type": "http.response.body", "body": b"", "more_body": False})


def _poke(stream: str, position: int, gpos: int) -> str:
    return 'event: poke\ndata: {"stream":%s,"position":%d,"globalPosition":%d}\n\n' % (
        jstr(stream), position, gpos)


def _same(a: str, b: str) -> bool:
    import hmac

    return hmac.compare_digest(a, b)


def _parse_int64(text: str, default: int, error: Exception) -> int:
    """Go ``strconv.ParseInt(s, 10, 64)``: optional sign, decimal digits, in int64 range."""
    if text == "":
        return default
    body = text[1:] if text[0] in "+-" else text
    if not body or not body.isascii() or not body.isdigit():
        raise error
    v = int(text)
    if v < -(1 << 63) or v > (1 << 63) - 1:
        raise error
    return v


async def _watch_disconnect(receive, sub: Subscriber) -> None:
    while True:
        msg = await receive()
        if msg["type"] == "http.disconnect":
            sub.close()
            return
