"""Start ``eventodb serve``: choose the data location, make sure ``default`` exists with the
right token, bind the socket, run uvicorn (httptools) until SIGINT/SIGTERM."""

from __future__ import annotations

import os
import signal
import socket
import sys
import tempfile

from ..errors import EventoError, UsageError
from .auth import TokenError, generate_token, hash_token, parse_token
from .registry import REGISTRY_NAME, Registry


def _log(text: str) -> None:
    print(f"eventodb serve: {text}", file=sys.stderr, flush=True)


def open_registry(data_dir: str | None, store: str | None) -> Registry:
    if store:
        store = os.path.abspath(store)
        if os.path.isdir(store):
            raise UsageError(f"--store names a directory: {store} (use --data-dir)")
        return Registry(store + ".namespaces.db", store + ".namespaces", default_path=store)
    data_dir = os.path.abspath(data_dir)
    if os.path.exists(data_dir) and not os.path.isdir(data_dir):
        raise UsageError(f"--data-dir is not a directory: {data_dir}")
    return Registry(os.path.join(data_dir, REGISTRY_NAME), data_dir)


def ensure_default(registry: Registry, token: str | None) -> None:
    """``default`` exists and (when ``token`` is given) answers to exactly that token.

    Unlike the Go server, a ``--token`` given for an existing ``default`` replaces its token,
    and no token is generated (or logged) when ``default`` already exists.
    """
    ns = registry.get("default")
    if token is not None:
        h = hash_token(token)
        if ns is None:
            registry.create("default", h, "Default namespace")
            _log("created namespace 'default' with the token given by --token/EVENTODB_TOKEN")
        elif ns.token_hash != h:
            registry.set_token_hash("default", h)
            _log("namespace 'default' now answers to the token given by --token/EVENTODB_TOKEN")
        return
    if ns is None:
        token = generate_token("default")
        registry.create("default", hash_token(token), "Default namespace")
        _log("created namespace 'default'")
        print(f"DEFAULT NAMESPACE TOKEN: {token}", file=sys.stderr, flush=True)
        _log("keep this token: it is shown only once (the server stores only its sha256)")
    else:
        _log("namespace 'default' exists; its token is unchanged")


def check_token(token: str) -> None:
    try:
        ns = parse_token(token)
    except TokenError as e:
        raise UsageError(f"--token is not a valid EventoDB token: {e}") from None
    if ns != "default":
        raise UsageError("--token must be a token of namespace 'default' "
                         f"(it is for namespace '{ns}')")


def bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # IPPROTO_TCP explicitly: asyncio sets TCP_NODELAY on accepted sockets only when their
    # proto says TCP; without it every response waits ~40 ms (Nagle + delayed ACK)
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as e:
        sock.close()
        raise EventoError(f"cannot listen on {host}:{port}: {e.strerror}") from None
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock


class _Terminated(Exception):
    pass


def _terminated(signum, frame):
    raise _Terminated()


def serve(*, data_dir: str | None, store: str | None, host: str, port: int, test_mode: bool,
          token: str | None, max_body: int, keepalive: float, workers: int,
          read_timeout: float = 30.0, idle_timeout: float = 120.0,
          max_connections: int = 0, memory_budget: int = 512 * 1024 * 1024,
          admin_token: str | None = None) -> None:
    import asyncio

    import uvicorn

    from .app import Server
    from .connections import ACCEPT_BURST, Limits, auto_max_connections, raise_file_limit
    from .fastpath import protocol_class

    if token is not None:
        check_token(token)
    if admin_token is not None:
        try:
            parse_token(admin_token)
        except TokenError as e:
            raise UsageError(f"--admin-token is not a valid EventoDB token: {e}") from None
    tmp = None
    if not data_dir and not store:
        if test_mode:
            tmp = tempfile.TemporaryDirectory(prefix="eventodb-serve-")
            data_dir = tmp.name
        else:
            from ..store.resolve import default_store_path

            store = default_store_path()
    sock = bind(host, port)  # first: a server that cannot listen changes nothing
    try:
        registry = open_registry(data_dir, store)
    except BaseException:
        sock.close()
        raise
    try:
        ensure_default(registry, token)
        app = Server(registry, test_mode=test_mode, max_body=max_body, keepalive=keepalive,
                     workers=workers, memory_budget=memory_budget, admin_token=admin_token)
        file_limit = raise_file_limit()
        limits = Limits(read_timeout=read_timeout, idle_timeout=idle_timeout,
                        max_connections=max_connections or auto_max_connections(file_limit),
                        log=_log)
        config = uvicorn.Config(app, http=protocol_class(limits, app), loop="asyncio",
                                lifespan="on", access_log=False, log_level="warning",
                                server_header=False, date_header=True,
                                # no X-Forwarded-* rewriting: nothing here reads the client's
                                # address, and the middleware is one more layer per request
                                proxy_headers=False,
                                timeout_keep_alive=idle_timeout, backlog=ACCEPT_BURST,
                                timeout_graceful_shutdown=5)

        class _Server(uvicorn.Server):
            async def startup(self, sockets=None):
                asyncio.get_running_loop().set_exception_handler(limits.exception_handler)
                await super().startup(sockets=sockets)

            async def shutdown(self, sockets=None):
                app.hub.close_all()  # end SSE streams so connections can drain
                await super().shutdown(sockets=sockets)

        bound = sock.getsockname()
        where = f"--store {store}" if store else f"--data-dir {data_dir}"
        if tmp is not None:
            where += " (temporary, removed at exit)"
        shown = f"[{bound[0]}]" if sock.family == socket.AF_INET6 else bound[0]
        _log(f"listening on http://{shown}:{bound[1]} ({where}"
             f"{', test mode: tokens are not checked' if test_mode else ''})")
        _log(f"limits: {limits.max_connections} connections (file limit {file_limit}), "
             f"read timeout {read_timeout:g} s, idle timeout {idle_timeout:g} s")
        if bound[0] not in ("127.0.0.1", "::1") and not bound[0].startswith("127."):
            _log(f"warning: {host} is not a loopback address; the API is reachable from "
                 "other machines")
        server = _Server(config)
        # uvicorn shuts down gracefully on SIGTERM, then re-raises the signal; with the default
        # handler that kills the process before the cleanup below. Ours ends it as an exception.
        previous = signal.signal(signal.SIGTERM, _terminated)
        try:
            asyncio.run(server.serve(sockets=[sock]))
        except _Terminated:
            _log("stopped (SIGTERM)")
        except KeyboardInterrupt:  # uvicorn re-raises SIGINT after its graceful shutdown
            _log("stopped (SIGINT)")
        finally:
            signal.signal(signal.SIGTERM, previous)
    finally:
        try:
            registry.close()
        except Exception:
            pass
        if tmp is not None:
            tmp.cleanup()
