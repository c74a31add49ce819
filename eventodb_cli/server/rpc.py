"""``POST /rpc``: the envelope and every method of PROTOCOL.md sections 5 and 6.

Handlers run in a worker thread (SQLite work), take the request's namespace id and the decoded
argument list, and return ``(status, body)`` with the body already encoded. Validation order and
message texts are the Go server's.
"""

from __future__ import annotations

import time
from typing import Callable

from .. import __version__
from ..domain import strictjson
from ..domain.message import Message as _Message
from ..domain.message import NewMessage, canonical_json, format_time
from ..errors import DiskFull, DuplicateMessageId, StoreError, VersionConflict
from .auth import TokenError, generate_token, hash_token, parse_token
from .paging import read_list
from .registry import NamespaceGone
from .uuids import go_uuid_error, uuid7
from .wire import dumps, error_body, go_escape, jstr

_INT64_MIN, _INT64_MAX = -(1 << 63), (1 << 63) - 1

STATUS = {
    "INVALID_REQUEST": 400,
    "METHOD_NOT_FOUND": 404,
    "AUTH_REQUIRED": 401,
    "AUTH_INVALID_TOKEN": 401,
    "AUTH_UNAUTHORIZED": 403,
    "NAMESPACE_NOT_FOUND": 404,
    "STREAM_NOT_FOUND": 404,
    "NAMESPACE_EXISTS": 409,
    "STREAM_VERSION_CONFLICT": 409,
}


class RpcError(Exception):
    def __init__(self, code: str, message: str, details: dict | None = None,
                 status: int | None = None):
        super().__init__(message)
        self.code = code
        self.message = message
        self.details = details
        self.status = status or STATUS.get(code, 500)

    def response(self) -> tuple[int, str]:
        return self.status, error_body(self.code, self.message, self.details)


def _invalid(message: str) -> RpcError:
    return RpcError("INVALID_REQUEST", message)


def _number(value, message: str) -> int:
    """A JSON number as Go's ``int64(float64)``: truncated toward zero (clamped to int64)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise _invalid(message)
    v = int(value)
    return _INT64_MIN if v < _INT64_MIN else _INT64_MAX if v > _INT64_MAX else v


def _string(value, message: str) -> str:
    if not isinstance(value, str):
        raise _invalid(message)
    return value


def _read_options(opts: dict | None, position: int) -> tuple[int, int | None, int]:
    """``position``, ``globalPosition`` and ``batchSize`` of stream.get / category.get."""
    gpos, batch = None, 1000
    if opts is not None:
        if "position" in opts:
            position = _number(opts["position"], "options.position must be a number")
        if "globalPosition" in opts:
            gpos = _number(opts["globalPosition"], "options.globalPosition must be a number")
        if "batchSize" in opts:
            batch = _batch_size(opts)
    return position, gpos, batch


def _options(args: list, index: int) -> dict | None:
    if len(args) <= index:
        return None
    opts = args[index]
    if not isinstance(opts, dict):
        raise _invalid("options must be an object")
    return opts


def _stream_name(args: list) -> str:
    name = args[0]
    if not isinstance(name, str) or not name:
        raise _invalid("streamName must be a non-empty string")
    return name


def _batch_size(opts: dict) -> int:
    bs = _number(opts["batchSize"], "options.batchSize must be a number")
    if bs > 10000 and bs != -1:
        raise _invalid("options.batchSize must be <= 10000 or -1 for unlimited")
    return bs


def _json_list(items) -> str:
    return "[" + ",".join(items) + "]"


class RpcContext:
    """What a handler needs: the registry, the request's namespace, the publish hook."""

    __slots__ = ("server", "namespace", "admin")

    def __init__(self, server, namespace: str, admin: bool = False):
        self.server = server
        self.namespace = namespace
        self.admin = admin

    def require_admin(self, method: str) -> None:
        """Namespace management is the admin's (docs/serve.md: a deliberate difference from
        the Go server, where any namespace's token could delete every other namespace)."""
        if not self.admin:
            raise RpcError("AUTH_UNAUTHORIZED", "Admin token required",
                           {"method": method, "namespace": self.namespace})

    def ns(self, what: str):
        ns = self.server.registry.get(self.namespace)
        if ns is None or ns.deleted:
            raise RpcError("BACKEND_ERROR", f"{what}: namespace not found")
        return ns

    def reader(self, what: str):
        try:
            return self.ns(what).reader()
        except NamespaceGone:
            raise RpcError("BACKEND_ERROR", f"{what}: namespace not found") from None

    def read(self, what: str, method: str, *args):
        """Call a read ``method`` of the namespace's store; a store failure is BACKEND_ERROR
        ``<what>: <reason>``, as the Go server words it."""
        store = self.reader(what)
        try:
            return getattr(store, method)(*args)
        except StoreError as e:
            raise RpcError("BACKEND_ERROR", f"{what}: {e.message}") from None


# --- stream and category methods -------------------------------------------------------------
def parse_write(args: list) -> NewMessage:
    """Validate ``stream.write`` arguments (Go order and texts); the id is chosen here."""
    if len(args) < 2:
        raise _invalid("stream.write requires at least 2 arguments: streamName and message")
    stream = _stream_name(args)
    msg = args[1]
    if not isinstance(msg, dict):
        raise _invalid("message must be an object")
    mtype = msg.get("type")
    if not isinstance(mtype, str) or not mtype:
        raise _invalid("message.type must be a non-empty string")
    data = msg.get("data")
    if not isinstance(data, dict):
        raise _invalid("message.data must be an object")
    metadata = None
    if "metadata" in msg:
        metadata = msg["metadata"]
        if not isinstance(metadata, dict):
            raise _invalid("message.metadata must be an object")
    mid = ""
    expected = None
    opts = _options(args, 2)
    if opts is not None:
        if "id" in opts:
            mid = _string(opts["id"], "options.id must be a string")
        if "expectedVersion" in opts:
            expected = _number(opts["expectedVersion"], "options.expectedVersion must be a number")
    if mid:
        err = go_uuid_error(mid)
        if err:
            raise RpcError("BACKEND_ERROR", f"{_WRITE}: invalid UUID format: {err}")
    else:
        mid = uuid7()
    return NewMessage(stream, mtype, canonical_json(data),
                      None if metadata is None else canonical_json(metadata), mid, expected)


_WRITE = "Failed to write message"


def disk_full(e: BaseException) -> bool:
    """A failure because the disk (or the data directory's quota) is full."""
    import errno

    return isinstance(e, DiskFull) or getattr(e, "errno", None) == errno.ENOSPC or \
        "database or disk is full" in str(e)


def _write_error(e: Exception) -> tuple[int, str]:
    if disk_full(e):  # the store is intact, reads go on; no server path in the answer
        return RpcError("BACKEND_ERROR", f"{_WRITE}: disk full").response()
    if isinstance(e, VersionConflict):
        return RpcError("STREAM_VERSION_CONFLICT", e.message, e.details).response()
    if isinstance(e, DuplicateMessageId):
        return RpcError("BACKEND_ERROR", f"{_WRITE}: failed to insert message: "
                        "UNIQUE constraint failed: messages.id").response()
    if isinstance(e, NamespaceGone):
        return RpcError("BACKEND_ERROR", f"{_WRITE}: namespace not found").response()
    if isinstance(e, StoreError):
        return RpcError("BACKEND_ERROR", f"{_WRITE}: {e.message}").response()
    return RpcError("INTERNAL_ERROR", f"{_WRITE}: {type(e).__name__}: {e}").response()


def _written(res) -> tuple[int, str]:
    return 200, '{"globalPosition":%d,"position":%d}\n' % (res.global_position, res.position)


def apply_writes(server, namespace: str, msgs: list[NewMessage]) -> list[tuple[int, str]]:
    """Write ``msgs`` (from concurrent requests, in arrival order) with the same outcome as
    writing them one by one: first as ONE transaction (the common case: one commit, one
    thread hop for the group); if any of them fails, nothing of that transaction is kept and
    each is written on its own, so each request gets its own result or error.
    Pokes are published under the write lock, in commit order."""
    ns = server.registry.get(namespace)
    if ns is None or ns.deleted:
        return [_write_error(NamespaceGone(namespace))] * len(msgs)
    out: list[tuple[int, str]] = []
    done: list = []
    with ns.lock:
        try:
            w = ns.writer()
        except Exception as e:
            return [_write_error(e)] * len(msgs)
        try:
            results = w.write_batch(msgs) if len(msgs) > 1 else [w.write(msgs[0])]
            out = [_written(r) for r in results]
            done = list(zip(msgs, results))
        except Exception as first:
            if len(msgs) == 1:
                return [_write_error(first)]
            for m in msgs:
                try:
                    r = w.write(m)
                except Exception as e:
                    out.append(_write_error(e))
                else:
                    out.append(_written(r))
                    done.append((m, r))
        if done:
            server.published(namespace, [(m.stream_name, r.position, r.global_position)
                                         for m, r in done])
    return out


def stream_write(ctx: RpcContext, args: list) -> tuple[int, str]:
    return apply_writes(ctx.server, ctx.namespace, [parse_write(args)])[0]


def stream_get(ctx: RpcContext, args: list) -> tuple[int, str]:
    if len(args) < 1:
        raise _invalid("stream.get requires at least 1 argument: streamName")
    stream = _stream_name(args)
    position, gpos, batch = _read_options(_options(args, 1), 0)
    if gpos is not None:  # pages follow positions; a globalPosition read is answered whole
        msgs = ctx.read("Failed to get messages", "stream_get", stream, position, gpos, batch)
        return 200, go_escape(_json_list(m.to_stream_wire() for m in msgs)) + "\n"
    return read_list(
        batch, lambda pos, n: ctx.read("Failed to get messages", "stream_get", stream, pos,
                                       None, n),
        _Message.to_stream_wire, lambda m: m.position + 1, position)


def stream_last(ctx: RpcContext, args: list) -> tuple[int, str]:
    if len(args) < 1:
        raise _invalid("stream.last requires at least 1 argument: streamName")
    stream = _stream_name(args)
    mtype = None
    opts = _options(args, 1)
    if opts is not None and "type" in opts:
        mtype = _string(opts["type"], "options.type must be a string")
    m = ctx.read("Failed to get last message", "stream_last", stream, mtype or None)
    return 200, ("null" if m is None else go_escape(m.to_stream_wire())) + "\n"


def stream_version(ctx: RpcContext, args: list) -> tuple[int, str]:
    if len(args) < 1:
        raise _invalid("stream.version requires 1 argument: streamName")
    stream = _stream_name(args)
    v = ctx.read("Failed to get stream version", "stream_version", stream)
    return 200, ("null" if v is None else str(v)) + "\n"


def category_get(ctx: RpcContext, args: list) -> tuple[int, str]:
    if len(args) < 1:
        raise _invalid("category.get requires at least 1 argument: categoryName")
    name = args[0]
    if not isinstance(name, str):
        raise _invalid("categoryName must be a string")
    correlation = None
    member = size = None
    opts = _options(args, 1)
    position, gpos, batch = _read_options(opts, 1)
    if opts is not None:
        if "correlation" in opts:
            correlation = _string(opts["correlation"], "options.correlation must be a string")
        if "consumerGroup" in opts:
            group = opts["consumerGroup"]
            if not isinstance(group, dict):
                raise _invalid("options.consumerGroup must be an object")
            if "member" in group:
                member = _number(group["member"], "options.consumerGroup.member must be a number")
            if "size" in group:
                size = _number(group["size"], "options.consumerGroup.size must be a number")
            if member is not None and size is not None:
                if member < 0:
                    raise _invalid("options.consumerGroup.member must be non-negative")
                if size <= 0:
                    raise _invalid("options.consumerGroup.size must be positive")
                if member >= size:
                    raise _invalid("options.consumerGroup.member must be < size")
            elif member is not None or size is not None:
                raise _invalid("options.consumerGroup requires both member and size")
    if gpos is not None:
        position = gpos
    return read_list(
        batch, lambda pos, n: ctx.read("Failed to get category messages", "category_get", name,
                                       pos, n, correlation or None, member, size),
        _Message.to_category_wire, lambda m: m.global_position + 1, position)


# --- namespace and system methods ------------------------------------------------------------
def _namespace_id(args: list, missing: str) -> str:
    if len(args) < 1:
        raise _invalid(missing)
    nid = args[0]
    if not isinstance(nid, str) or not nid:
        raise _invalid("namespace ID must be a non-empty string")
    return nid


def ns_create(ctx: RpcContext, args: list) -> tuple[int, str]:
    ctx.require_admin("ns.create")
    nid = _namespace_id(args, "ns.create requires at least 1 argument: namespace ID")
    description = ""
    token = ""
    opts = _options(args, 1)
    if opts is not None:
        if "description" in opts:
            description = _string(opts["description"], "options.description must be a string")
        if "token" in opts:
            token = _string(opts["token"], "options.token must be a string")
            try:
                token_ns = parse_token(token)
            except TokenError as e:
                raise _invalid(f"Invalid token format: {e}") from None
            if token_ns != nid:
                raise _invalid(f"Token is for namespace '{token_ns}', not '{nid}'")
        if "metadata" in opts and not isinstance(opts["metadata"], dict):
            raise _invalid("options.metadata must be an object")
    if not token:
        token = generate_token(nid)
        try:
            parse_token(token)
        except TokenError:
            # Go creates such a namespace and hands back a token that can never parse
            raise _invalid(
                f"namespace ID '{nid}' cannot be used: its base64url form contains '_', "
                "so no token for it can be parsed") from None
    registry = ctx.server.registry
    try:
        ns = registry.create(nid, hash_token(token), description)
    except KeyError:
        raise RpcError("NAMESPACE_EXISTS", f"Namespace '{nid}' already exists") from None
    except Exception as e:  # file system, SQLite
        reason = "disk full" if disk_full(e) else e
        raise RpcError("BACKEND_ERROR", f"Failed to create namespace: {reason}") from None
    return 200, dumps({"createdAt": format_time(ns.created_at), "namespace": nid,
                       "token": token}) + "\n"


def ns_delete(ctx: RpcContext, args: list) -> tuple[int, str]:
    ctx.require_admin("ns.delete")
    nid = _namespace_id(args, "ns.delete requires 1 argument: namespace ID")
    server = ctx.server
    if nid == "default" and server.registry.default_path:
        raise _invalid(f"Namespace 'default' is the --store file "
                       f"{server.registry.default_path} and cannot be deleted")
    try:
        count = server.registry.delete(nid)
    except KeyError:
        raise RpcError("NAMESPACE_NOT_FOUND", f"Namespace '{nid}' not found") from None
    except Exception as e:
        raise RpcError("BACKEND_ERROR", f"Failed to delete namespace: {e}") from None
    server.namespace_deleted(nid)
    return 200, dumps({"deletedAt": format_time(time.time_ns()), "messagesDeleted": count,
                       "namespace": nid}) + "\n"


def _counts(ns) -> tuple[int, int, int | None]:
    try:
        return ns.reader().conn.execute(
            "SELECT count(*), count(DISTINCT stream_name), max(time) FROM messages").fetchone()
    except Exception:
        return 0, 0, None


def ns_list(ctx: RpcContext, args: list) -> tuple[int, str]:
    ctx.require_admin("ns.list")
    rows = []
    for ns in ctx.server.registry.all():
        try:
            count = ns.reader().message_count()
        except Exception:
            count = 0
        rows.append({"createdAt": format_time(ns.created_at), "description": ns.description,
                     "messageCount": count, "namespace": ns.id})
    return 200, dumps(rows) + "\n"


def ns_info(ctx: RpcContext, args: list) -> tuple[int, str]:
    nid = _namespace_id(args, "ns.info requires 1 argument: namespace ID")
    if nid != ctx.namespace and not ctx.admin:  # a tenant sees only its own namespace
        raise RpcError("AUTH_UNAUTHORIZED", "Token not authorized for namespace",
                       {"namespace": nid})
    ns = ctx.server.registry.get(nid)
    if ns is None:
        raise RpcError("NAMESPACE_NOT_FOUND", f"Namespace '{nid}' not found")
    count, streams, last = _counts(ns)
    return 200, dumps({"createdAt": format_time(ns.created_at), "description": ns.description,
                       "lastActivity": None if last is None else format_time(last),
                       "messageCount": count, "namespace": ns.id,
                       "streamCount": streams}) + "\n"


def ns_streams(ctx: RpcContext, args: list) -> tuple[int, str]:
    prefix, cursor, limit = "", "", 100
    opts = _options(args, 0)
    if opts is not None:
        if "prefix" in opts:
            prefix = _string(opts["prefix"], "prefix must be a string")
        if "cursor" in opts:
            cursor = _string(opts["cursor"], "cursor must be a string")
        if "limit" in opts:
            limit = _number(opts["limit"], "limit must be a number")
            if limit < 1 or limit > 1000:
                raise _invalid("limit must be between 1 and 1000")
    rows = ctx.read("Failed to list streams", "list_streams", prefix, cursor, limit)
    return 200, dumps(rows) + "\n"


def ns_categories(ctx: RpcContext, args: list) -> tuple[int, str]:
    rows = ctx.read("Failed to list categories", "list_categories")
    return 200, dumps(rows) + "\n"


_VERSION_BODY = jstr(__version__) + "\n"


def sys_version(ctx: RpcContext, args: list) -> tuple[int, str]:
    return 200, _VERSION_BODY


def sys_health(ctx: RpcContext, args: list) -> tuple[int, str]:
    return 200, dumps({"backend": "sqlite", "connections": ctx.server.connection_count(),
                       "status": "ok"}) + "\n"


METHODS: dict[str, Callable[[RpcContext, list], tuple[int, str]]] = {
    "stream.write": stream_write,
    "stream.get": stream_get,
    "stream.last": stream_last,
    "stream.version": stream_version,
    "category.get": category_get,
    "ns.create": ns_create,
    "ns.delete": ns_delete,
    "ns.list": ns_list,
    "ns.info": ns_info,
    "ns.streams": ns_streams,
    "ns.categories": ns_categories,
    "sys.version": sys_version,
    "sys.health": sys_health,
}


# --- the envelope ----------------------------------------------------------------------------
_GO_KIND = {dict: "object", str: "string", bool: "bool", int: "number", float: "number"}


def decode_envelope(body: bytes) -> list:
    """The request array; raises ``RpcError`` with the Go server's envelope errors."""
    text = body.decode("utf-8", "replace").lstrip(" \t\r\n")
    del body  # a large body is not kept beside its text and its value
    if not text:
        raise RpcError("INVALID_REQUEST", "Malformed JSON request", {"error": "EOF"})
    try:
        # strict (no NaN/Infinity, no number overflowing a double, no lone surrogate: what
        # enters a store must read back as JSON everywhere); like Go's Decoder, trailing bytes
        # are ignored
        value, _end = strictjson.raw_decode(text)
    except ValueError as e:
        msg = getattr(e, "msg", None) or str(e)
        if msg == strictjson.TOO_DEEP:  # the Go server's words for it
            msg = "exceeded max depth"
        raise RpcError("INVALID_REQUEST", "Malformed JSON request", {"error": msg}) from None
    if value is None:
        value = []
    if not isinstance(value, list):
        kind = _GO_KIND.get(type(value), "value")
        raise RpcError("INVALID_REQUEST", "Malformed JSON request",
                       {"error": f"json: cannot unmarshal {kind} into Go value of type "
                                 "[]interface {}"})
    return value


def check_request(req: list) -> str:
    """The method name of a decoded request (envelope errors as ``RpcError``)."""
    if not req:
        raise _invalid("Missing method name")
    method = req[0]
    if not isinstance(method, str):
        raise _invalid("Method name must be a string")
    if method not in METHODS:
        raise RpcError("METHOD_NOT_FOUND", f"Unknown method: {method}")
    return method


def dispatch(server, namespace: str, method: str, req: list,
             admin: bool = False) -> tuple[int, str]:
    """Run one checked request. Runs in a worker thread."""
    try:
        return METHODS[method](RpcContext(server, namespace, admin), req[1:])
    except RpcError as e:
        return e.response()
    except Exception as e:  # a bug or an unexpected backend failure: still JSON
        return 500, error_body("INTERNAL_ERROR", f"{type(e).__name__}: {e}")


def handle_rpc(server, namespace: str, box: list, admin: bool = False) -> tuple[int, str]:
    """Decode, dispatch, encode (the whole request in a worker thread). ``box`` holds the only
    reference to the body, dropped as soon as it is decoded (a large body is not kept beside
    its decoded value)."""
    try:
        req = decode_envelope(box.pop())
        method = check_request(req)
    except RpcError as e:
        return e.response()
    return dispatch(server, namespace, method, req, admin)
