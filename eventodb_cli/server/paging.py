"""Unlimited reads of ``eventodb serve`` (``stream.get`` / ``category.get`` with ``batchSize``
-1 or 0), answered a page at a time so that memory does not grow with the answer.

The one place that decides when an answer is streamed: only when it is longer than one page;
shorter answers are whole (with their Content-Length), as before.
"""

from __future__ import annotations

from .wire import go_escape

PAGE = 1000  # rows per page of an unlimited read


class Paged:
    """The answer of an unlimited read (``batchSize`` -1 or 0) longer than one page: the JSON
    array is read and encoded ``PAGE`` rows at a time, each page its own query from where the
    last ended, so memory does not grow with the answer. ``first`` is the first chunk;
    ``next_chunk`` (in a worker thread) the next, ``None`` after the closing bracket.
    Messages written while the answer is sent may appear at its end (a later snapshot)."""

    __slots__ = ("first", "_fetch", "_encode", "_next", "_done", "_pos")

    def __init__(self, rows: list, fetch, encode, next_position):
        self._fetch = fetch  # position -> up to PAGE rows from there
        self._encode = encode
        self._next = next_position  # row -> where the page after it starts
        self._done = False
        self.first = "[" + self._chunk(rows)

    def _chunk(self, rows: list) -> str:
        self._pos = self._next(rows[-1])
        return go_escape(",".join(map(self._encode, rows)))

    def next_chunk(self) -> str | None:
        if self._done:
            return None
        rows = self._fetch(self._pos)
        if len(rows) < PAGE:
            self._done = True
            return ("," + go_escape(",".join(map(self._encode, rows))) if rows else "") + "]\n"
        return "," + self._chunk(rows)


def read_list(batch: int, read, encode, next_position, position: int):
    """The answer of a list read: whole when ``batch`` is limited or it fits in a page, else
    ``Paged`` (``read(position, limit)`` does one query)."""
    if batch > 0:
        return 200, go_escape("[" + ",".join(map(encode, read(position, batch))) + "]\n")
    rows = read(position, PAGE)
    if len(rows) < PAGE:
        return 200, go_escape("[" + ",".join(map(encode, rows)) + "]\n")
    return 200, Paged(rows, lambda pos: read(pos, PAGE), encode, next_position)
