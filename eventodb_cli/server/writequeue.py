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
``call_soon_threadsafe`` per group: one wake-up of the event loop.

A write that nothing competes with (none of its namespace's writes queued or being written)
is first tried on the event loop itself (``loopwrite.write_now``: no thread hop at all); only
what cannot be written there without waiting comes to the threads. The threads also run the
WAL checkpoints of those loop writes (``run_job``)."""

from __future__ import annotations

import asyncio
import queue
import threading
from collections import deque

from ..domain.message import NewMessage
from .loopwrite import write_now
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
        self.loop_writes = True  # loopwrite.write_now first (tests turn it off)

    def submit(self, namespace: str, msg: NewMessage) -> asyncio.Future:
        """Called on the event loop; the future gets ``(status, body)``."""
        fut = self.server.loop.create_future()
        self.submit_call(namespace, msg, fut)
        return fut

    def submit_call(self, namespace: str, msg: NewMessage, waiter) -> None:
        """Called on the event loop. ``waiter``: an asyncio future that gets ``(status, body)``,
        or a plain callable called with it on the event loop (``fastpath``: no future, no task,
        one loop turn less per answer). Called at once when the queue is closed, or when the
        write could be done on the event loop at once (``loopwrite``: nothing of the namespace
        queued or being written, no lock to wait for)."""
        if self.loop_writes and namespace not in self._running and not self._closed:
            result = write_now(self.server, namespace, msg)
            if result is not None:
                _deliver([waiter], [result])
                return
        with self._lock:
            if self._closed:
                _deliver([waiter], [(503, error_body("SERVER_BUSY",
                                                     "Server shutting down; retry"))])
                return
            q = self._queues.get(namespace)
            if q is None:
                q = self._queues[namespace] = deque()
            q.append((msg, waiter))
            if namespace in self._running:
                return
            self._running.add(namespace)
            # one thread per namespace being drained, up to the limit (the rest wait their turn)
            if len(self._threads) < min(len(self._running), self._max_threads) \
                    and not self._start_thread():
                self.server.executor.submit(self._drain, namespace)  # no thread to be had
                return
        self._jobs.put(namespace)

    def run_job(self, fn, *args) -> None:
        """Run ``fn(*args)`` on a writer thread (``loopwrite.checkpoint``); dropped when the
        queue is closed."""
        with self._lock:
            if self._closed:
                return
            if not self._threads and not self._start_thread():
                self.server.executor.submit(fn, *args)
                return
        self._jobs.put((fn, args))

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
            job = jobs.get()
            if job is None:
                return
            if type(job) is tuple:
                try:
                    job[0](*job[1])
                except BaseException:  # pragma: no cover - the jobs catch their own errors
                    pass
                continue
            self._drain(job)

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
            # Done with the namespace before the answers go out: the client's next write (sent
            # as soon as it has this answer) must find it idle and take the loop path; released
            # after delivering, it raced the answer and a sequential writer could stay on the
            # threads for good (seen as a flaky test_serve_fast under load).
            with self._lock:
                done = not self._queues.get(namespace)
                if done:
                    self._running.discard(namespace)
                    self._queues.pop(namespace, None)
            loop.call_soon_threadsafe(_deliver, [f for _, f in group], results)
            if done:
                return

    def close(self) -> None:
        """Stop taking writes, let the writer threads finish what is queued, and join them."""
        with self._lock:
            self._closed = True
            threads = list(self._threads)
        for _ in threads:
            self._jobs.put(None)
        for t in threads:
            t.join()


def _deliver(waiters, results) -> None:
    for w, res in zip(waiters, results):
        if isinstance(w, asyncio.Future):
            if not w.done():
                w.set_result(res)
        else:
            w(res)  # never raises (fastpath catches its own errors)
