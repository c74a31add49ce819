"""Large ``/rpc`` bodies are decoded in a helper process, so the event loop keeps answering.

Decoding a 90 MiB request and writing its data back as canonical JSON are single C calls that
hold Python's GIL for about a second each; in a worker thread they would stall the event loop
(and ``/health``) as long. One helper process (started on the first large body, through
``forkserver``) runs ``prepare`` for bodies over ``admission.SMALL`` bytes: the envelope is
decoded and checked with the same functions as on the event loop, a ``stream.write`` comes back
as its ``NewMessage`` (canonical JSON text, id chosen), an envelope or argument error as its
answer, and any other method as its decoded request (dispatched in a thread as before).
Large bodies are already admitted one at a time by the memory budget: one helper is enough.
"""

from __future__ import annotations

import threading

from .rpc import RpcError, check_request, decode_envelope, parse_write

_lock = threading.Lock()
_pool = None


class Once:
    """The body, handed to the helper process without a copy staying here: pickling it (in the
    pool's feeder thread) gives the bytes away, so the server does not keep 90 MiB while the
    helper works. ``data`` is ``None`` afterwards."""

    __slots__ = ("data",)

    def __init__(self, data):
        self.data = data

    def __reduce__(self):
        data, self.data = self.data, None
        return (_as_is, (data,))  # a bytearray stays one: no copy in the helper either


def _as_is(value):
    return value


def prepare(body: bytes):
    """In the helper process: ``("write", NewMessage)``, ``("call", method, request)`` for
    another method (dispatched by the server), or ``("answer", (status, body))``."""
    try:
        req = decode_envelope(body)
        del body
        method = check_request(req)
        if method != "stream.write":
            return ("call", method, req)
        return ("write", parse_write(req[1:]))
    except RpcError as e:
        return ("answer", e.response())


def _ignore_sigint() -> None:
    """In the helper: Ctrl-C reaches the whole process group; the server stops the helper
    itself, without a KeyboardInterrupt traceback from here."""
    import signal

    signal.signal(signal.SIGINT, signal.SIG_IGN)


def pool():
    """The helper process pool (one process), started on first use."""
    global _pool
    with _lock:
        if _pool is None:
            import multiprocessing
            from concurrent.futures import ProcessPoolExecutor

            _pool = ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("forkserver"),
                                        initializer=_ignore_sigint)
        return _pool


def reset(broken) -> None:
    """Forget a pool whose process died (the next large body starts a new one)."""
    global _pool
    with _lock:
        if _pool is broken:
            _pool = None
    try:
        broken.shutdown(wait=False, cancel_futures=True)
    except Exception:
        pass


def shutdown() -> None:
    global _pool
    with _lock:
        p, _pool = _pool, None
    if p is not None:
        p.shutdown(wait=True, cancel_futures=True)
