"""The HTTP layer of the remote store: one EventoDB server over ``POST /rpc`` and ``GET``.

- One pooled keep-alive ``httpx.Client`` per store (``POST /rpc`` to a plain http:// URL goes
  over ``rpc_conn``'s http.client pool instead); ``timeout`` per request attempt.
- Retries with exponential backoff and jitter on connection errors, timeouts and HTTP 5xx, for
  reads and for idempotent writes; never on 4xx. A ``503 SERVER_BUSY`` (``eventodb serve``'s
  admission control) is retried after its ``Retry-After`` (capped at ``max_backoff``, within the
  same number of attempts, never waiting past ``timeout`` from the first attempt) and does not
  count as possibly applied.
- Server error codes become the typed errors of ``errors.py``.
- The token is sent only as an ``Authorization: Bearer`` header and never appears in an error,
  a log line or a repr: every text that leaves the remote store goes through ``_redact``.

This is the only module that imports httpx (the other remote modules use its ``httpx``).
"""

from __future__ import annotations

import base64
import json
import random
import re
import sys
import threading
import time
from typing import Any

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
from ..errors import EventoError, NotFound, Unreachable, UsageError

MAX_BATCH = 10000  # the server rejects larger batchSize values; larger reads are paged here
_DUP_ID = re.compile(r"UNIQUE constraint failed: messages\.id|duplicate key value.*messages_pkey",
                     re.I)
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
    import secrets  # only namespace creation needs it (hmac/hashlib: ~3 ms of every remote start)
    return f"ns_{b}_{secrets.token_hex(32)}"


class _Transient(Exception):
    """An attempt that may be retried: carries what to say if no retry is left."""

    def __init__(self, error: EventoError, maybe_applied: bool):
        super().__init__(error.message)
        self.error = error
        self.maybe_applied = maybe_applied



class RemoteHttp:
    """Connections, retries, errors and redaction; ``RemoteStore`` adds the methods."""

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
        started = time.monotonic()
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
                busy = self._busy_wait(resp, what, started)
                if busy is False:
                    return resp, maybe_applied
                if busy:
                    continue  # refused before it was read: not applied, no backoff on top
                maybe_applied = True
            self._sleep(attempt)

    def _busy_wait(self, resp, what: str, started: float) -> bool | None:
        """For a ``503 SERVER_BUSY`` (``eventodb serve``'s admission control: the body was not
        read, nothing was applied): sleep the ``Retry-After`` it asks for (capped at
        ``max_backoff``) and return True, or return False when that wait would end past
        ``timeout`` seconds after the first attempt. None: not such an answer."""
        if resp.status_code != 503 or _error_code(resp) != "SERVER_BUSY":
            return None
        try:
            delay = float(resp.headers.get("retry-after") or "")
        except ValueError:  # absent, or an HTTP date: the ordinary backoff
            delay = self.backoff
        delay = min(max(delay, 0.0), self.max_backoff)
        if time.monotonic() - started + delay > self.timeout:
            return False
        self._say(f"{what}: server busy (503 SERVER_BUSY); retrying in {delay:g} s")
        time.sleep(delay)
        return True

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

    def _get(self, path: str) -> Any:
        attempt = 0
        started = time.monotonic()
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
                busy = self._busy_wait(resp, "GET " + path, started)
                if busy is False:
                    break
                if busy:
                    continue
            self._sleep(attempt)
        if resp.status_code != 200:
            raise self._error(resp, path)
        return self._value(resp, path)


    def _bad_shape(self, what: str, value: Any) -> EventoError:
        text = _dumps(value)
        err = EventoError(self._redact(f"unexpected answer to {what}: {text[:160]}"))
        err.code = "MALFORMED_RESPONSE"
        return err


def _is_duplicate_id(resp: httpx.Response) -> bool:
    if resp.status_code < 500:
        return False
    try:
        err = resp.json()["error"]
        return bool(_DUP_ID.search(str(err.get("message", "")))) or \
            "messages.id" in _dumps(err.get("details", ""))
    except (ValueError, KeyError, TypeError, AttributeError):
        return False


def _error_code(resp) -> str | None:
    """The ``error.code`` of an EventoDB error answer, or None."""
    try:
        return str(resp.json()["error"]["code"])
    except (ValueError, KeyError, TypeError, AttributeError):
        return None


def _reason(e: Exception) -> str:
    text = " ".join(str(e).split()) or type(e).__name__
    return text[:200]
