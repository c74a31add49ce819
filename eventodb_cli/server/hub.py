"""Live pokes for ``GET /subscribe`` (PROTOCOL.md section 7).

Every method here runs on the event loop thread. ``stream.write`` (in a worker thread, while it
holds the namespace's write lock) hands each committed write to ``publish`` through
``loop.call_soon_threadsafe``, so pokes arrive in commit order.

A subscriber is registered BEFORE its replay is read, and keeps the pokes that arrive meanwhile
in its buffer; after the replay, buffered pokes already covered by it are dropped (exact dedup
by key: stream position for ``stream=``, global position otherwise). So nothing written around
connect time is lost or sent twice.

Consumer groups use ``domain.hashing.member_for``: the same MD5 rule as ``category.get``.
"""

from __future__ import annotations

import asyncio
from collections import deque

from ..domain.hashing import member_for
from ..domain.streams import category as category_of

BUFFER = 1000  # pokes a subscriber may have waiting; beyond that its stream is ended


class Subscriber:
    __slots__ = ("namespace", "kind", "name", "next", "member", "size", "queue", "event",
                 "overflow", "closed")

    def __init__(self, namespace: str, kind: str, name: str | None, position: int,
                 member: int = 0, size: int = 0):
        self.namespace = namespace
        self.kind = kind  # "stream" | "category" | "all"
        self.name = name
        self.next = position  # smallest key still to be sent
        self.member = member
        self.size = size
        self.queue: deque[tuple[str, int, int]] = deque()
        self.event = asyncio.Event()
        self.overflow = False
        self.closed = False

    def push(self, stream: str, position: int, gpos: int) -> None:
        key = position if self.kind == "stream" else gpos
        if key < self.next:
            return
        if self.size > 0 and member_for(stream, self.size) != self.member:
            return
        self.next = key + 1
        if len(self.queue) >= BUFFER:
            self.overflow = True
        else:
            self.queue.append((stream, position, gpos))
        self.event.set()

    def after_replay(self, last_key: int | None) -> None:
        """Drop buffered pokes the replay already covered."""
        if last_key is None:
            return
        q = self.queue
        keyed = 1 if self.kind == "stream" else 2
        while q and q[0][keyed] <= last_key:
            q.popleft()
        if self.next <= last_key:
            self.next = last_key + 1

    def close(self) -> None:
        self.closed = True
        self.event.set()


class Hub:
    def __init__(self):
        # namespace -> {("s", stream) | ("c", category) | ("a", None): set of subscribers}
        self._subs: dict[str, dict[tuple, set[Subscriber]]] = {}
        self.counts: dict[str, int] = {}  # read from worker threads: any subscriber at all?

    def add(self, sub: Subscriber) -> None:
        key = ("s" if sub.kind == "stream" else "c" if sub.kind == "category" else "a",
               sub.name)
        self._subs.setdefault(sub.namespace, {}).setdefault(key, set()).add(sub)
        self.counts[sub.namespace] = self.counts.get(sub.namespace, 0) + 1

    def remove(self, sub: Subscriber) -> None:
        key = ("s" if sub.kind == "stream" else "c" if sub.kind == "category" else "a",
               sub.name)
        by_key = self._subs.get(sub.namespace)
        if not by_key:
            return
        subs = by_key.get(key)
        if subs and sub in subs:
            subs.discard(sub)
            if not subs:
                del by_key[key]
            n = self.counts.get(sub.namespace, 1) - 1
            if n <= 0:
                self.counts.pop(sub.namespace, None)
                self._subs.pop(sub.namespace, None)
            else:
                self.counts[sub.namespace] = n

    def publish(self, namespace: str, stream: str, position: int, gpos: int) -> None:
        by_key = self._subs.get(namespace)
        if not by_key:
            return
        for key in (("s", stream), ("c", category_of(stream)), ("a", None)):
            subs = by_key.get(key)
            if subs:
                for sub in subs:
                    sub.push(stream, position, gpos)

    def publish_many(self, namespace: str, pokes: list[tuple[str, int, int]]) -> None:
        for stream, position, gpos in pokes:
            self.publish(namespace, stream, position, gpos)

    def close_namespace(self, namespace: str) -> None:
        for subs in list(self._subs.get(namespace, {}).values()):
            for sub in list(subs):
                sub.close()

    def close_all(self) -> None:
        for namespace in list(self._subs):
            self.close_namespace(namespace)

    def subscriber_count(self) -> int:
        return sum(self.counts.values())
