"""Group commit for ``stream.write``: requests that arrive while a namespace's writer is busy
are written together, in arrival order, by one writer-thread job (``rpc.apply_writes``: one
transaction when all succeed, else one by one, so every request gets exactly the result it
would have had alone). One thread hop and one commit per group instead of per request.

The jobs run on the queue's own writer threads (started as needed, at most ``threads``: one
namespace's queue is drained by one thread at a time, several namespaces in parallel), each
blocked on a ``SimpleQueue``: handing a job over is one C-level ``put``, where a
``ThreadPoolExecutor.submit`` costs a future, a work item, locks and a semaphore, and its thread
holds the GIL for that bookkeeping just when the event loop wakes up for the answer (about half
the CPU of a thread round trip, measured). The answer goes back with one
``call_soon_threadsafe`` per group: one wake-up of the event loop."""

from __future__ import annotations

import asyncio
import queue
import threading
from collections import deque

from ..domain.message import NewMessage
from .rpc import apply_writes
from .wire import error_body

MAX_GROUP = 256


class WriteQueue:
    def __init__(self, server, threads: int = 4):
        self.server = server
        self._lock = threading.Lock()
        self._queues: dict[str, deque] = {}
        self._running: set[str] = set()
        self._jobs: queue.SimpleQueue = queue.SimpleQueue()  # namespaces to drain; None: stop
        self._threads: list[threading.Thread] = []
        self._max_threads = max(1, threads)
        self._closed = False

    def submit(self, namespace: str, msg: NewMessage) -> asyncio.Future:
        """Called on the event loop; the future gets ``(status, body)``."""
        loop = self.server.loop
        fut = loop.create_future()
        with self._lock:
            if self._closed:
                fut.set_result((503, error_body("SERVER_BUSY", "Server shutting down; retry")))
                return fut
            q = self._queues.get(namespace)
            if q is None:
                q = self._queues[namespace] = deque()
            q.append((msg, fut))
            if namespace in self._running:
                return fut
            self._running.add(namespace)
            # one thread per namespace being drained, up to the limit (the rest wait their turn)
            if len(self._threads) < min(len(self._running), self._max_threads) \
                    and not self._start_thread():
                self.server.executor.submit(self._drain, namespace)  # no thread to be had
                return fut
        self._jobs.put(namespace)
        return fut

    def _start_thread(self) -> bool:
        t = threading.Thread(target=self._run, name=f"eventodb-write-{len(self._threads)}",
                             daemon=True)
        try:
            t.start()
        except RuntimeError:  # cannot start a thread: fall back on the shared pool
            return bool(self._threads)
        self._threads.append(t)
        return True

    def _run(self) -> None:
        jobs = self._jobs
        while True:
            namespace = jobs.get()
            if namespace is None:
                return
            self._drain(namespace)

    def _drain(self, namespace: str) -> None:
        """Writer thread: write groups until the namespace's queue is empty."""
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
                results = [(500, error_body("INTERNAL_ERROR", f"{type(e).__name__}: {e}"))] \
                    * len(group)
            loop.call_soon_threadsafe(_deliver, [f for _, f in group], results)

    def close(self) -> None:
        """Stop taking writes, let the writer threads finish what is queued, and join them."""
        with self._lock:
            self._closed = True
            threads = list(self._threads)
        for _ in threads:
            self._jobs.put(None)
        for t in threads:
            t.join()


def _deliver(futures, results) -> None:
    for fut, res in zip(futures, results):
        if not fut.done():
            fut.set_result(res)
