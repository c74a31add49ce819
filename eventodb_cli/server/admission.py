"""The memory budget of ``eventodb serve``: large request bodies are admitted one by one against
it, so memory stays bounded whatever the number of clients sending 100 MiB at once.

A body's cost is its length times what handling it costs per byte (``RPC_FACTOR`` for
``/rpc``: the bytes, the decoded text, the parsed value, the canonical JSON and SQLite's copy of
it; ``IMPORT_FACTOR`` for ``/import``, read line by line). A request is admitted when its cost
fits in what is left of the budget; otherwise it waits, first come first served, before its body
is read (the socket is not read meanwhile, so the waiting body costs nothing here) and after
``ADMIT_WAIT`` seconds it gets ``503`` with ``Retry-After``. A cost above the whole budget is
admitted alone. Bodies up to ``SMALL`` bytes (every ordinary write) never wait: at most one
connection's worth each, bounded by the connection limit.

This module is the only place that decides whether a body may be read now.
"""

from __future__ import annotations

import asyncio
from collections import deque

SMALL = 64 * 1024
RPC_FACTOR = 5
IMPORT_FACTOR = 2
ADMIT_WAIT = 10.0
RETRY_AFTER = "2"


class MemoryBudget:
    def __init__(self, total: int):
        self.total = max(1, total)
        self.used = 0
        self._waiters: deque[tuple[int, asyncio.Future]] = deque()

    async def acquire(self, cost: int, timeout: float = ADMIT_WAIT) -> int:
        """Hold ``cost`` (at most the whole budget); return what is held, 0 after ``timeout``
        seconds without room. Every non-zero return must be given back with ``release``."""
        cost = max(1, min(cost, self.total))
        if not self._waiters and self.used + cost <= self.total:
            self.used += cost
            return cost
        fut = asyncio.get_running_loop().create_future()
        self._waiters.append((cost, fut))
        try:
            await asyncio.wait_for(fut, timeout)
        except asyncio.TimeoutError:
            self._wake()  # its place in the queue is gone: the next may fit now
            return 0
        except asyncio.CancelledError:
            if fut.done() and not fut.cancelled():
                self.release(cost)
            self._wake()
            raise
        return cost

    def release(self, cost: int) -> None:
        if cost:
            self.used -= cost
            self._wake()

    def _wake(self) -> None:
        while self._waiters:
            cost, fut = self._waiters[0]
            if fut.done():  # timed out or cancelled
                self._waiters.popleft()
                continue
            if self.used + cost > self.total:
                return
            self._waiters.popleft()
            self.used += cost
            fut.set_result(None)
