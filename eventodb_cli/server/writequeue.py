"""Group commit for ``stream.write``: requests that arrive while a namespace's writer is busy
are written together, in arrival order, by one worker-thread job (``rpc.apply_writes``: one
transaction when all succeed, else one by one, so every request gets exactly the result it
would have had alone). One thread hop and one commit per group instead of per request."""

from __future__ import annotations

import asyncio
import threading
from collections import deque

from ..domain.message import NewMessage
from .rpc import apply_writes

MAX_GROUP = 256


class WriteQueue:
    def __init__(self, server):
        self.server = server
        self._lock = threading.Lock()
        self._queues: dict[str, deque] = {}
        self._running: set[str] = set()

    def submit(self, namespace: str, msg: NewMessage) -> asyncio.Future:
        """Called on the event loop; the future gets ``(status, body)``."""
        loop = self.server.loop
        fut = loop.create_future()
        with self._lock:
            q = self._queues.get(namespace)
            if q is None:
                q = self._queues[namespace] = deque()
            q.append((msg, fut))
            if namespace in self._running:
                return fut
            self._running.add(namespace)
        # executor.submit, not loop.run_in_executor: nothing awaits the job itself (each
        # request's future is answered by _deliver), and an asyncio future chained to it would
        # cost a second wake-up of the event loop (a self-pipe write) per group
        self.server.executor.submit(self._drain, namespace)
        return fut

    def _drain(self, namespace: str) -> None:
        """Worker thread: write groups until the namespace's queue is empty."""
        loop = self.server.loop
        while True:
            with self._lock:
                q = self._queues.get(namespace)
                if not q:
                    self._running.discard(namespace)
                    self._queues.pop(namespace, None)
                    return
                group = [q.popleft() for _ in range(min(len(q), MAX_GROUP))]
            try:
                results = apply_writes(self.server, namespace, [m for m, _ in group])
            except BaseException as e:  # never leave a request without an answer
                from .wire import error_body

                results = [(500, error_body("INTERNAL_ERROR", f"{type(e).__name__}: {e}"))] \
                    * len(group)
            loop.call_soon_threadsafe(_deliver, [f for _, f in group], results)


def _deliver(futures, results) -> None:
    for fut, res in zip(futures, results):
        if not fut.done():
            fut.set_result(res)
