"""The remote store: an EventoDB server (or ``eventodb serve``) over its HTTP API, on httpx.

- One pooled keep-alive ``httpx.Client`` per store; ``timeout`` per request attempt.
- Retries with exponential backoff and jitter on connection errors, timeouts and HTTP 5xx, for
  reads and for writes; never on 4xx. Writes are safe to retry because every message carries a
  client-chosen UUID: when a retry meets the server's duplicate-id error (500 BACKEND_ERROR
  ``UNIQUE constraint failed: messages.id``, PROTOCOL.md 5 and 11.4), or a version conflict
  caused by its own earlier attempt, the id is looked up in the stream and the write is reported
  with its real position.
- Options the caller did not give are left out of requests (the server rejects ``null``).
- Server error codes become the typed errors of ``errors.py``.
- The token is sent only as an ``Authorization: Bearer`` header and never appears in an error,
  a log line or a repr: every text that leaves this module goes through ``_redact``.

This is the only module that imports httpx.
"""

from __future__ import annotations

import base64
import json
import random
import re
import secrets
import sys
import threading
import time
import uuid
from typing import Any, Iterable, Iterator, Sequence



def _import_httpx():
    """httpx, imported on first use: a command whose requests all go over ``rpc_conn`` (every
    ``POST /rpc`` to a plain http:// URL) never pays for it (~70 ms of a ~190 ms start).

    httpx's __init__ imports httpx._main, its own command line client, which pulls in rich and
    click's extras (~80 ms more); a None in sys.modules makes that import fail and httpx falls
    back to a stub ``main`` (httpx/__init__.py: ``except ImportError``)."""
    global _httpx_module
    if _httpx_module is None:
        with _httpx_lock:  # threads of a bulk write may fail at the same moment
            if _httpx_module is None:
                had_main = "httpx._main" in sys.modules or "httpx" in sys.modules
                if not had_main:
                    sys.modules["httpx._main"] = None  # type: ignore[assignment]
                try:
                    import httpx as mod  # waits for another thread's import to finish
                finally:
                    if not had_main and sys.modules.get("httpx._main", 0) is None:
                        del sys.modules["httpx._main"]
                _httpx_module = mod
    return _httpx_module


_httpx_module = None
_httpx_lock = threading.Lock()


class _LazyHttpx:
    """Stands for the httpx module in this file; imports it at the first attribute read."""

    def __getattr__(self, name: str):
        return getattr(_import_httpx(), name)


httpx = _LazyHttpx()

from .. import __version__
from ..domain.message import AlreadyWritten, Message, NewMessage, WriteResult
from ..errors import (DuplicateMessageId, EventoError, NotFound, Unreachable, UsageError,
                      VersionConflict)
from .base import Store
from .sse import BadEvent, event_json, parse_events, poke_from

MAX_BATCH = 10000  # the server rejects larger batchSize values; larger reads are paged here
_DUP_ID = re.compile(r"UNIQUE constraint failed: messages\.id|duplicate key value.*messages_pkey",
                     re.I)
_CONFLICT_RE = re.compile(r"[Ee]xpected version (-?\d+), stream is at version (-?\d+)")
_TOKEN_PARAM = re.compile(r"(token=)[^&\s\"']+", re.I)
_BEARER = re.compile(r"(Bearer\s+)\S+", re.I)
_ANY_TOKEN = re.compile(r"\bns_[A-Za-z0-9_-]*_[0-9A-Fa-f]{64}\b")
_dumps = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode
_dump_str = json.JSONEncoder(ensure_ascii=False).encode


def _mask_token(text: str, token: str) -> str:
    """``text`` with the token as ``***``. A token of 8 characters or more is masked wherever
    it occurs; a shorter one only where it stands alone (not inside a word), so ``--token t``
    leaves ``cannot connect`` readable while ``t`` itself is never printed."""
    if len(token) >= 8:
        return text.replace(token, "***")
    return re.sub(r"(?<![\w-])" + re.escape(token) + r"(?![\w-])", "***", text)


def namespace_of_token(token: str | None) -> str | None:
    """The namespace a token is for (``ns_<base64url(ns)>_<64 hex>``), or None."""
    if not token or not token.startswith("ns_"):
        return None
    parts = token[3:].split("_")
    if len(parts) != 2:
        return None
    b = parts[0]
    try:
        return base64.urlsafe_b64decode(b + "=" * (-len(b) % 4)).decode("utf-8") or None
    except (ValueError, UnicodeDecodeError):
        return None


def new_token(namespace: str) -> str | None:
    """A token in the server's format for ``namespace`` (32 random bytes), or None when the
    server's parser could never accept one (its base64url form contains ``_``)."""
    b = base64.urlsafe_b64encode(namespace.encode("utf-8")).decode("ascii").rstrip("=")
    if "_" in b or not b:
        return None
    return f"ns_{b}_{secrets.token_hex(32)}"


class _Transient(Exception):
    """An attempt that may be retried: carries what to say if no retry is left."""

    def __init__(self, error: EventoError, maybe_applied: bool):
        super().__init__(error.message)
        self.error = error
        self.maybe_applied = maybe_applied


class RemoteStore(Store):
    kind = "remote"

    def __init__(self, url: str, token: str | None = None, *, timeout: float = 30.0,
                 verbose: bool = False, retries: int = 3, backoff: float = 0.1,
                 max_backoff: float = 5.0, concurrency: int = 8,
                 transport: "httpx.BaseTransport | None" = None, log=None):
        self.url = url.rstrip("/")
        self._token = token or None
        self.timeout = float(timeout)
        self.verbose = verbose
        self.retries = retries
        self.backoff = backoff
        self.max_backoff = max_backoff
        self.concurrency = concurrency
        self.import_read_timeout = max(self.timeout, 600.0)
        self.requests = 0  # HTTP requests sent (every attempt counts)
        self._transport = transport
        self._log = log or sys.stderr
        self._lock = threading.Lock()
        self._client: httpx.Client | None = None
        self._conns = None  # rpc_conn.RpcConnections, once decided (False: not for this URL)
        self._rpc_url = self.url + "/rpc"  # this very object marks a POST /rpc (_attempt)

    def __repr__(self) -> str:
        return f"RemoteStore({self.url!r})"

    @property
    def namespace(self) -> str:
        """The namespace of the token (``default`` without one: the server's test mode)."""
        return namespace_of_token(self._token) or "default"

    # --- plumbing -----------------------------------------------------------------------------
    @property
    def client(self) -> httpx.Client:
        if self._client is None:
            with self._lock:
                if self._client is None:
                    n = max(self.concurrency, 4) + 4
                    headers = self._headers()
                    self._client = httpx.Client(
                        base_url=self.url, headers=headers, transport=self._transport,
                        # plain http:// has no TLS to verify: without this httpx loads the
                        # certifi bundle into an SSL context (~50 ms) it never uses
                        verify=not self.url.lower().startswith("http://"),
                        timeout=httpx.Timeout(self.timeout),
                        limits=httpx.Limits(max_connections=n, max_keepalive_connections=n),
                    )
        return self._client

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None
        if self._conns:
            self._conns.close()

    def _headers(self) -> dict[str, str]:
        headers = {"User-Agent": f"eventodb-cli/{__version__}",
                   "Content-Type": "application/json"}
        if self._token:
            headers["Authorization"] = f"Bearer {self._token}"
        return headers

    def _rpc_conns(self):
        """``POST /rpc`` over http.client (store/rpc_conn.py: ~3x less client CPU a request)
        for a plain http:// URL without a proxy in the environment or an injected transport;
        None: through httpx."""
        if self._conns is None:
            with self._lock:
                if self._conns is None:
                    self._conns = self._make_conns() or False
        return self._conns or None

    def _make_conns(self):
        import os
        from urllib.parse import urlsplit

        if self._transport is not None or any(
                os.environ.get(v) for v in ("HTTP_PROXY", "http_proxy", "ALL_PROXY",
                                            "all_proxy")):
            return None
        u = urlsplit(self.url)
        if u.scheme.lower() != "http" or u.query or u.username or u.password or not u.hostname:
            return None
        try:
            port = u.port or 80
        except ValueError:
            return None
        from .rpc_conn import RpcConnections

        return RpcConnections(u.hostname, port, (u.path or "") + "/rpc", self._headers(),
                              self.timeout)

    def _redact(self, text: str) -> str:
        if self._token:
            text = _mask_token(text, self._token)
        text = _TOKEN_PARAM.sub(r"\1***", text)
        text = _BEARER.sub(r"\1***", text)
        return _ANY_TOKEN.sub("***", text)

    def _say(self, line: str) -> None:
        if self.verbose:
            try:
                self._log.write(self._redact(f"eventodb: {line}") + "\n")
                self._log.flush()
            except (OSError, ValueError):
                pass

    def _count(self) -> None:
        with self._lock:
            self.requests += 1

    def _sleep(self, attempt: int) -> None:
        delay = min(self.max_backoff, self.backoff * (2 ** (attempt - 1)))
        time.sleep(random.uniform(delay / 2, delay))

    def _transport_error(self, e: Exception, what: str, attempts: int) -> Unreachable:
        tries = f"{attempts} attempt{'s' if attempts != 1 else ''}"
        if isinstance(e, httpx.TimeoutException):
            msg = f"no answer from {self.url} within {self.timeout:g} s ({what}; {tries})"
        elif isinstance(e, httpx.ConnectError):
            msg = f"cannot connect to {self.url}: {_reason(e)} ({what}; {tries})"
        else:
            msg = f"connection to {self.url} failed: {_reason(e)} ({what}; {tries})"
        err = Unreachable(self._redact(msg))
        err.code = "NETWORK_ERROR"
        return err

    def _attempt(self, method: str, path, what: str, attempt: int, **kw) -> httpx.Response:
        """One HTTP request (``path`` relative, or a full httpx.URL); transport failures become
        ``_Transient``."""
        self._count()
        started = time.perf_counter()
        try:
            conns = self._rpc_conns() if path is self._rpc_url else None
            if conns is not None and method == "POST":
                resp = conns.post(kw["content"])
            else:
                resp = self.client.request(method, path, **kw)
        except Exception as e:  # noqa: BLE001 - anything but a transport failure is re-raised
            if getattr(e, "httpx_type", None):  # rpc_conn's: the httpx error it stands for
                e = getattr(httpx, e.httpx_type)(str(e))
            if not isinstance(e, httpx.TransportError):
                raise
            sent = not isinstance(e, (httpx.ConnectError, httpx.ConnectTimeout,
                                      httpx.PoolTimeout))
            shown = path if path is self._rpc_url else self.url + path
            self._say(f"{method} {shown} {what} (attempt {attempt}) -> "
                      f"{type(e).__name__}: {_reason(e)}")
            raise _Transient(self._transport_error(e, what, attempt), sent) from None
        if self.verbose:
            shown = path if path is self._rpc_url else self.url + path
            self._say(f"{method} {shown} {what} (attempt {attempt}) -> "
                      f"{resp.status_code} ({(time.perf_counter() - started) * 1000:.1f} ms)")
        return resp

    def _exchange(self, body: bytes, what: str, *, idempotent: bool = True
                  ) -> tuple[httpx.Response, bool]:
        """POST /rpc with retries. Returns the final response (2xx, 4xx, a non-retryable 5xx,
        or the last 5xx) and whether an earlier attempt may have been applied by the server."""
        maybe_applied = False
        attempt = 0
        while True:
            attempt += 1
            try:
                resp = self._attempt("POST", self._rpc_url, what, attempt, content=body)
            except _Transient as t:
                if t.maybe_applied and not idempotent:
                    t.error.message += " (the request may or may not have been applied)"
                    raise t.error from None
                maybe_applied = maybe_applied or t.maybe_applied
                if attempt > self.retries:
                    raise t.error from None
            else:
                if resp.status_code < 500 or attempt > self.retries or not idempotent \
                        or _is_duplicate_id(resp):
                    return resp, maybe_applied
                maybe_applied = True
            self._sleep(attempt)

    def _error(self, resp: httpx.Response, what: str) -> EventoError:
        """The typed error for a non-2xx response."""
        status = resp.status_code
        try:
            body = resp.json()
            err = body["error"]
            code = str(err["code"])
            message = str(err.get("message", ""))
            details = err.get("details") or {}
            if not isinstance(details, dict):
                details = {"details": details}
        except (ValueError, KeyError, TypeError):
            snippet = " ".join(resp.text[:200].split())
            e = EventoError(self._redact(
                f"server answered HTTP {status} to {what} with a body that is not an EventoDB "
                f"error{': ' + repr(snippet) if snippet else ''}"))
            if status in (401, 403):
                e = Unreachable(e.message)
            e.code = f"HTTP_{status}"
            return e
        extra = f" ({details['error']})" if isinstance(details.get("error"), str) else ""
        text = self._redact(f"{message}{extra}")
        if code.startswith("AUTH_"):
            hint = ("give a token with --token, --token-file or EVENTODB_TOKEN"
                    if code == "AUTH_REQUIRED" else "check the token")
            e = Unreachable(f"authentication failed at {self.url}: {code}: {text} ({hint})")
        elif code in ("NAMESPACE_NOT_FOUND", "STREAM_NOT_FOUND"):
            e = NotFound(text, details=details)
        elif code == "INVALID_REQUEST":
            e = UsageError(f"server rejected {what}: {text}", details=details)
        elif code == "NOT_FOUND" and status == 404:
            e = Unreachable(f"{self.url} does not serve the EventoDB API ({text})")
        else:
            e = EventoError(f"{code}: {text}", details=details)
        e.code = code
        e.http_status = status
        return e

    def _value(self, resp: httpx.Response, what: str) -> Any:
        try:
            return json.loads(resp.content)
        except ValueError as e:
            snippet = " ".join(resp.text[:120].split())
            err = EventoError(self._redact(
                f"malformed JSON in the server's answer to {what} (HTTP {resp.status_code}): "
                f"{e}; body starts {snippet!r}"))
            err.code = "MALFORMED_RESPONSE"
            raise err from None

    def _rpc(self, method: str, *args: Any, what: str | None = None,
             idempotent: bool = True) -> Any:
        what = what or method
        body = _dumps([method, *args]).encode("utf-8")
        resp, _ = self._exchange(body, what, idempotent=idempotent)
        if resp.status_code != 200:
            raise self._error(resp, what)
        return self._value(resp, what)

    def rpc(self, method: str, *args: Any) -> Any:
        """Call any RPC method (positional args as given); errors become typed errors."""
        return self._rpc(method, *args)

    # --- writes -------------------------------------------------------------------------------
    def write_batch(self, msgs: Sequence[NewMessage], *,
                    existing_ok: bool = False) -> list[WriteResult]:
        """Write messages, one ``stream.write`` each, in input order per stream. With
        ``concurrency`` > 1, different streams are written in parallel (each stream's messages
        one after another). On a failure nothing more is started; the error raised (the first
        failing message's) carries ``batch_written`` (how many of ``msgs`` were written) and
        ``batch_results`` (a list with a WriteResult or None per message); so does a
        KeyboardInterrupt, once the requests already sent have ended.

        ``existing_ok``: a message whose id is already in the store (an earlier, interrupted
        run wrote it) is not an error: its result is an ``AlreadyWritten``."""
        if not msgs:
            return []
        msgs = [m if m.id else m._replace(id=str(uuid.uuid4())) for m in msgs]
        results: list[WriteResult | None] = [None] * len(msgs)
        groups: dict[str, list[int]] = {}
        for i, m in enumerate(msgs):
            groups.setdefault(m.stream_name, []).append(i)
        failures: list[tuple[int, BaseException]] = []
        stop = threading.Event()

        def run(indices: list[int]) -> None:
            for i in indices:
                if stop.is_set():
                    return
                try:
                    results[i] = self._write_one(msgs[i], existing_ok)
                except BaseException as e:  # noqa: BLE001 - re-raised below
                    failures.append((i, e))
                    stop.set()
                    return

        workers = min(max(1, int(self.concurrency or 1)), len(groups))
        try:
            if workers <= 1:  # one request at a time, in input order
                for i in range(len(msgs)):
                    run([i])
                    if stop.is_set():
                        break
            else:
                from concurrent.futures import ThreadPoolExecutor

                with ThreadPoolExecutor(workers, thread_name_prefix="eventodb-write") as ex:
                    try:
                        for f in [ex.submit(run, idx) for idx in groups.values()]:
                            f.result()
                    except BaseException:  # Ctrl-C: start nothing more, let running ones end
                        stop.set()
                        raise
        except BaseException as e:  # Ctrl-C, SIGTERM: say what landed
            e.batch_results = results
            e.batch_written = sum(r is not None for r in results)
            raise
        if failures:
            _i, err = min(failures, key=lambda f: f[0])
            err.batch_written = sum(r is not None for r in results)
            err.batch_results = results
            if len(msgs) > 1 and isinstance(err, EventoError):
                err.plain_message = err.message
                err.message += (f" ({err.batch_written} of the {len(msgs)} messages of this "
                                "batch were written)")
            raise err
        return results  # type: ignore[return-value]

    def _write_body(self, m: NewMessage) -> bytes:
        msg = '{"type":%s,"data":%s%s}' % (
            _dump_str(m.type), m.data, "" if m.metadata is None else ',"metadata":' + m.metadata)
        opts = ['"id":' + _dump_str(m.id)] if m.id else []
        if m.expected_version is not None:
            opts.append('"expectedVersion":%d' % m.expected_version)
        tail = ",{%s}" % ",".join(opts) if opts else ""
        return ('["stream.write",%s,%s%s]' % (_dump_str(m.stream_name), msg, tail)).encode()

    def _write_one(self, m: NewMessage, existing_ok: bool = False) -> WriteResult:
        what = f"stream.write {m.stream_name}"
        resp, maybe_applied = self._exchange(self._write_body(m), what)
        if resp.status_code == 200:
            v = self._value(resp, what)
            try:
                return WriteResult(int(v["position"]), int(v["globalPosition"]))
            except (TypeError, KeyError, ValueError):
                raise self._bad_shape(what, v) from None
        err = self._error(resp, what)
        if err.code == "STREAM_VERSION_CONFLICT":
            if (maybe_applied or existing_ok) and m.id:
                found = self._find_written(m)
                if found is not None:
                    return AlreadyWritten(*found) if existing_ok and not maybe_applied \
                        else found
            raise self._conflict(m, err) from None
        if _is_duplicate_id(resp) and m.id:
            if existing_ok and not maybe_applied:
                return AlreadyWritten(-1, -1)
            if maybe_applied:
                found = self._find_written(m)
                if found is not None:
                    self._say(f"{what}: an earlier attempt wrote message {m.id} at position "
                              f"{found.position}; not written again")
                    return found
            raise DuplicateMessageId(m.id) from None
        raise err

    def _find_written(self, m: NewMessage) -> WriteResult | None:
        """Position of message ``m.id`` in its stream, if an earlier attempt wrote it."""
        last = self.stream_last(m.stream_name)
        if last is not None and last.id == m.id:
            return WriteResult(last.position, last.global_position)
        start = 0 if m.expected_version is None else m.expected_version + 1
        for got in self.iter_stream(m.stream_name, start, batch_size=MAX_BATCH):
            if got.id == m.id:
                return WriteResult(got.position, got.global_position)
        return None

    def _conflict(self, m: NewMessage, err: EventoError) -> VersionConflict:
        d = err.details
        expected = d.get("expected", m.expected_version)
        actual = d.get("actual")
        if actual is None:
            mm = _CONFLICT_RE.search(err.message)
            if mm:
                expected, actual = int(mm.group(1)), int(mm.group(2))
            else:
                v = self.stream_version(m.stream_name)
                actual = -1 if v is None else v
        return VersionConflict(m.stream_name, int(expected if expected is not None else -1),
                               int(actual))

    def _bad_shape(self, what: str, value: Any) -> EventoError:
        text = _dumps(value)
        err = EventoError(self._redact(f"unexpected answer to {what}: {text[:160]}"))
        err.code = "MALFORMED_RESPONSE"
        return err

    # --- reads --------------------------------------------------------------------------------
    def _messages(self, items: Any, what: str, stream: str | None) -> list[Message]:
        if not isinstance(items, list):
            raise self._bad_shape(what, items)
        try:
            if stream is None:
                return [Message.from_category_wire(x) for x in items]
            return [Message.from_stream_wire(stream, x) for x in items]
        except (TypeError, ValueError, IndexError, AttributeError):
            raise self._bad_shape(what, items[:2]) from None

    def stream_get(self, stream, position=0, global_position=None, batch_size=1000):
        if batch_size is not None and batch_size > MAX_BATCH:
            out: list[Message] = []
            while len(out) < batch_size:
                want = min(MAX_BATCH, batch_size - len(out))
                page = self.stream_get(stream, position, global_position, want)
                out += page
                if len(page) < want:
                    break
                if global_position is not None:
                    global_position = page[-1].global_position + 1
                else:
                    position = page[-1].position + 1
            return out
        opts: dict[str, Any] = {}
        if global_position is not None:
            opts["globalPosition"] = global_position
        elif position:
            opts["position"] = position
        if batch_size is None or batch_size <= 0:
            opts["batchSize"] = -1
        elif batch_size != 1000:
            opts["batchSize"] = batch_size
        args = [stream, opts] if opts else [stream]
        what = f"stream.get {stream}"
        return self._messages(self._rpc("stream.get", *args, what=what), what, stream)

    def stream_last(self, stream, type=None):
        args = [stream, {"type": type}] if type else [stream]
        what = f"stream.last {stream}"
        v = self._rpc("stream.last", *args, what=what)
        if v is None:
            return None
        return self._messages([v], what, stream)[0]

    def stream_version(self, stream):
        what = f"stream.version {stream}"
        v = self._rpc("stream.version", stream, what=what)
        if v is None:
            return None
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            raise self._bad_shape(what, v)
        return int(v)

    def category_pages(self, category, position=1, batch_size=1000, correlation=None,
                       member=None, size=None, until=None):
        """Pages of a category, as ``Store.category_pages``, except that a short page is never
        taken for the end: a server's backend may return one mid-category (EventoDB's Pebble
        backend does), so the read goes on from the next position and only an empty page (or
        reaching ``until``) ends it. That costs one empty read at the end of an open read."""
        while True:
            batch = self.category_get(category, position, batch_size, correlation, member, size)
            if not batch:
                return
            last = batch[-1].global_position
            if until is not None and last > until:  # written after the snapshot
                batch = [m for m in batch if m.global_position <= until]
            yield batch, last if until is None else min(last, until)
            if until is not None and last >= until:
                return
            if batch_size is None or batch_size <= 0:  # unlimited: the server gave everything
                return
            position = last + 1

    def category_get(self, category, position=1, batch_size=1000, correlation=None,
                     member=None, size=None):
        if batch_size is not None and batch_size > MAX_BATCH:
            out: list[Message] = []
            while len(out) < batch_size:
                want = min(MAX_BATCH, batch_size - len(out))
                page = self.category_get(category, position, want, correlation, member, size)
                out += page
                if len(page) < want:
                    break
                position = page[-1].global_position + 1
            return out
        opts: dict[str, Any] = {}
        if position != 1:
            opts["position"] = position
        if batch_size is None or batch_size <= 0:
            opts["batchSize"] = -1
        elif batch_size != 1000:
            opts["batchSize"] = batch_size
        if correlation:
            opts["correlation"] = correlation
        if member is not None or size is not None:
            group = {}
            if member is not None:
                group["member"] = member
            if size is not None:
                group["size"] = size
            opts["consumerGroup"] = group
        args = [category, opts] if opts else [category]
        what = f"category.get {category}"
        return self._messages(self._rpc("category.get", *args, what=what), what, None)

    # --- namespace listings (both stores) -----------------------------------------------------
    def list_streams(self, prefix: str = "", cursor: str = "", limit: int = 100) -> list[dict]:
        opts: dict[str, Any] = {}
        if prefix:
            opts["prefix"] = prefix
        if cursor:
            opts["cursor"] = cursor
        if limit != 100:
            opts["limit"] = limit
        rows = self._rpc("ns.streams", *([opts] if opts else []))
        if not isinstance(rows, list):
            raise self._bad_shape("ns.streams", rows)
        return rows

    def list_categories(self) -> list[dict]:
        rows = self._rpc("ns.categories")
        if not isinstance(rows, list):
            raise self._bad_shape("ns.categories", rows)
        return rows

    def message_count(self) -> int:
        info = self.ns_info()
        try:
            return int(info["messageCount"])
        except (TypeError, KeyError, ValueError):
            raise self._bad_shape("ns.info", info) from None

    # --- namespaces and the server ------------------------------------------------------------
    def ns_create(self, namespace: str, *, description: str | None = None,
                  token: str | None = None) -> dict:
        """Create a namespace; the answer holds its token (the only time it is shown).

        Without ``token`` the client picks one in the server's format, so a retried create
        whose first answer was lost is recognised (the namespace exists and our token opens it)
        instead of losing the token."""
        chosen = token or new_token(namespace)
        opts: dict[str, Any] = {}
        if description is not None:
            opts["description"] = description
        if chosen:
            opts["token"] = chosen
        args = [namespace, opts] if opts else [namespace]
        what = f"ns.create {namespace}"
        resp, maybe_applied = self._exchange(_dumps(["ns.create", *args]).encode(), what,
                                             idempotent=chosen is not None)
        if resp.status_code == 200:
            return self._value(resp, what)
        err = self._error(resp, what)
        if err.code == "NAMESPACE_EXISTS" and maybe_applied and chosen:
            probe = RemoteStore(self.url, chosen, timeout=self.timeout, retries=self.retries,
                                transport=self._transport)
            try:
                probe.stream_version("$eventodb-probe")
                info = self.ns_info(namespace)
                return {"createdAt": info.get("createdAt"), "namespace": namespace,
                        "token": chosen}
            except Unreachable:
                pass
            finally:
                self.requests += probe.requests
                probe.close()
        raise err

    def ns_delete(self, namespace: str) -> dict:
        return self._rpc("ns.delete", namespace, idempotent=False)

    def ns_list(self) -> list[dict]:
        rows = self._rpc("ns.list")
        if not isinstance(rows, list):
            raise self._bad_shape("ns.list", rows)
        return rows

    def ns_info(self, namespace: str | None = None) -> dict:
        info = self._rpc("ns.info", namespace or self.namespace)
        if not isinstance(info, dict):
            raise self._bad_shape("ns.info", info)
        return info

    def _get(self, path: str) -> Any:
        attempt = 0
        while True:
            attempt += 1
            try:
                resp = self._attempt("GET", path, "GET " + path, attempt)
            except _Transient as t:
                if attempt > self.retries:
                    raise t.error from None
            else:
                if resp.status_code < 500 or attempt > self.retries:
                    break
            self._sleep(attempt)
        if resp.status_code != 200:
            raise self._error(resp, path)
        return self._value(resp, path)

    def server_version(self) -> dict:
        v = self._get("/version")
        return v if isinstance(v, dict) else {"version": v}

    def server_health(self) -> dict:
        v = self._get("/health")
        return v if isinstance(v, dict) else {"status": v}

    # --- SSE ----------------------------------------------------------------------------------
    def pokes(self, *, stream: str | None = None, category: str | None = None,
              all: bool = False, position: int = 0, member: int | None = None,
              size: int | None = None, max_reconnects: int | None = None,
              on_connect=None) -> Iterator[dict]:
        """Pokes ``{"stream","position","globalPosition"}`` from ``GET /subscribe``.

        On a dropped connection: reconnect with backoff and resume after the last poke yielded
        (stream: stream position + 1; category/all: global position + 1), then read the messages
        written while disconnected and poke for them (the server replays only up to 1000 and
        ``all`` replays nothing), dropping any poke at or below the last one yielded: no gap, no
        repeat. The first connection fails after ``retries`` attempts; once connected, it
        reconnects without limit (or ``max_reconnects`` times in a row). ``on_connect(n)`` is
        called each time the server accepts the subscription (n = 1, 2, ...)."""
        kinds = (stream is not None) + (category is not None) + bool(all)
        if kinds != 1:
            raise UsageError("subscribe to one of: a stream, a category, or all")
        if (member is None) != (size is None):
            raise UsageError("member and size must be given together")
        if member is not None and stream is not None:
            raise UsageError("a consumer group (member/size) applies to a category only")
        by_stream_pos = stream is not None
        last: int | None = None
        connected = False
        connects = 0
        failures = 0
        what = "subscribe " + (f"stream {stream}" if stream is not None else
                               f"category {category}" if category is not None else "all")
        while True:
            params: dict[str, Any] = {}
            if stream is not None:
                params["stream"] = stream
            elif category is not None:
                params["category"] = category
                if member is not None:
                    params["consumer"] = member
                    params["size"] = size
            else:
                params["all"] = "true"
            start = position if last is None else last + 1
            if start:
                params["position"] = start
            error: EventoError | None = None
            try:
                failures += 1
                with self._open_sse(params, what, failures) as resp:
                    if resp.status_code != 200:
                        resp.read()
                        error = self._sse_error(resp, what)
                        if resp.status_code < 500:
                            raise error
                    else:
                        failures = 0
                        reconnect = connected
                        connected = True
                        connects += 1
                        if on_connect is not None:
                            on_connect(connects)
                        if reconnect and last is not None:
                            for p in self._catch_up(stream, category, all, last + 1, member,
                                                    size):
                                key = p["position"] if by_stream_pos else p["globalPosition"]
                                if key > last:
                                    last = key
                                    yield p
                        for ev in parse_events(resp.iter_lines()):
                            try:
                                p = poke_from(ev)
                            except BadEvent as e:
                                err = EventoError(self._redact(f"malformed poke from "
                                                               f"{self.url}: {e}"))
                                err.code = "MALFORMED_RESPONSE"
                                raise err from None
                            if p is None:
                                continue
                            key = p["position"] if by_stream_pos else p["globalPosition"]
                            if last is not None and key <= last:
                                continue
                            last = key
                            yield p
                        self._say(f"{what}: the server ended the stream; reconnecting")
            except _Transient as t:
                error = t.error
            except httpx.TransportError as e:
                error = self._transport_error(e, what, failures)
                self._say(f"{what}: connection lost ({_reason(e)}); reconnecting")
            if not connected and failures > self.retries:
                raise error or Unreachable(f"cannot subscribe at {self.url}")
            if max_reconnects is not None and failures > max_reconnects:
                raise error or Unreachable(f"{what}: connection lost at {self.url}")
            self._sleep(max(failures, 1))

    def _open_sse(self, params: dict, what: str, attempt: int):
        self._count()
        self._say(f"GET {self.url}/subscribe {what} position={params.get('position', 0)} "
                  f"(attempt {attempt})")
        try:
            return self.client.stream("GET", "/subscribe", params=params,
                                      headers={"Accept": "text/event-stream"},
                                      timeout=httpx.Timeout(self.timeout, read=None))
        except httpx.TransportError as e:  # pragma: no cover - stream() connects lazily
            raise _Transient(self._transport_error(e, what, attempt), False) from None

    def _sse_error(self, resp: httpx.Response, what: str) -> EventoError:
        ctype = resp.headers.get("content-type", "")
        if "json" in ctype:
            return self._error(resp, what)
        text = self._redact(" ".join(resp.text.split())[:200])
        if resp.status_code == 400:
            e: EventoError = UsageError(f"server rejected {what}: {text}")
        elif resp.status_code in (401, 403):
            e = Unreachable(f"authentication failed at {self.url}: {text}")
        else:
            e = EventoError(f"{what}: HTTP {resp.status_code}: {text}")
        e.code = f"HTTP_{resp.status_code}"
        return e

    def _catch_up(self, stream, category, all_, start, member, size) -> Iterator[dict]:
        if stream is not None:
            msgs = self.iter_stream(stream, start)
        else:
            msgs = self.iter_category("" if all_ else category, start, member=member, size=size)
        for m in msgs:
            yield {"stream": m.stream_name, "position": m.position,
                   "globalPosition": m.global_position}

    # --- bulk import --------------------------------------------------------------------------
    def import_stream(self, chunks: Iterable[bytes], force: bool = False) -> Iterator[dict]:
        """``POST /import`` with the NDJSON ``chunks`` streamed as the body; yields each
        ``data:`` event (``{"imported","gpos"}``, ``{"done",...}``, ``{"error",...}``). Not
        retried: the body is consumed once."""
        params = {"force": "true"} if force else None
        self._count()
        self._say(f"POST {self.url}/import{'?force=true' if force else ''}")
        try:
            with self.client.stream(
                "POST", "/import", params=params, content=_chunks(chunks),
                headers={"Content-Type": "application/x-ndjson"},
                timeout=httpx.Timeout(self.timeout, read=self.import_read_timeout),
            ) as resp:
                if resp.status_code != 200:
                    resp.read()
                    raise self._error(resp, "import")
                for ev in parse_events(resp.iter_lines()):
                    try:
                        yield event_json(ev)
                    except BadEvent as e:
                        err = EventoError(self._redact(f"malformed import event: {e}"))
                        err.code = "MALFORMED_RESPONSE"
                        raise err from None
        except httpx.TransportError as e:
            raise self._transport_error(e, "import", 1) from None


def _chunks(chunks: Iterable[bytes]) -> Iterator[bytes]:
    for c in chunks:
        if c:
            yield c if isinstance(c, bytes) else c.encode("utf-8")


def _is_duplicate_id(resp: httpx.Response) -> bool:
    if resp.status_code < 500:
        return False
    try:
        err = resp.json()["error"]
        return bool(_DUP_ID.search(str(err.get("message", "")))) or \
            "messages.id" in _dumps(err.get("details", ""))
    except (ValueError, KeyError, TypeError, AttributeError):
        return False


def _reason(e: Exception) -> str:
    text = " ".join(str(e).split()) or type(e).__name__
    return text[:200]
