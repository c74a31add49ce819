"""Export records straight from a local store's SQLite file: the fast path of ``export``.

The lines are the ones ``domain/records.to_record_line`` makes, byte for byte; this module only
makes them faster for a ``LocalStore`` (read-only use of its connection). SQLite builds each
line with one ``printf`` and joins a chunk of them with ``group_concat`` (C, and the GIL is
released while it steps); Python then only puts the time text in (cached per distinct time:
messages written together share it) and checks the chunk. Stream names and types need no
escaping in nearly every store, so SQLite splices them as they are and the chunk is checked
instead: a name or type holding a quote, a backslash or a control character, a NULL ``data``,
text that is not UTF-8, or anything else that does not check out exactly sends that chunk
through the ordinary path (``LocalStore.category_get`` + ``to_record_line``), so every byte is
the same as the ordinary export's.

The whole export is one read transaction (one snapshot): writers go on, and what they commit
after the first chunk is not part of the file. While Python finishes a chunk, a helper thread
already has SQLite build the next one on the same connection (never two at a time).
"""

from __future__ import annotations

import sqlite3
import threading
from typing import Iterator

from ..domain.message import format_time
from ..domain.records import to_record_line
from ..errors import StoreError

_I64_MIN, _I64_MAX = -(1 << 63), (1 << 63) - 1
SEP = b"\x01"  # splits a line into: names | the rest up to '"time":"' | the time's integer

# One line, in SQLite. "%s" of id, stream name and type with no escaping: checked in Python.
_LINE = ("printf('{\"id\":\"%s\",\"stream\":\"%s\",\"type\":\"%s\"\x01,\"pos\":%d,\"gpos\":%d,"
         "\"data\":%s,\"meta\":%s,\"time\":\"\x01%d\x01', id, stream_name, type, position, "
         "global_position, coalesce(data, X'01'), coalesce(metadata, 'null'), time)")
# What the names part of a line may not hold unescaped; each line's names part holds exactly
# 12 quotes of its own, and every line but the first starts with the newline between lines.
_ESCAPED = bytes(range(0x20)) + b'"\\'
_OWN_QUOTES = 12


def _clamp(n: int) -> int:
    return min(max(n, _I64_MIN), _I64_MAX)


class _TimeTexts(dict):
    """The text that ends a line for the time integer as SQLite printed it (``b"17...."``):
    ``2026-12-04T04:25:04.5206358Z"}``, bounded. The second's text comes from ``format_time``
    (the one formatter) once per second; the fraction is the token's last nine digits, which
    are ``"%09d" % fraction`` already (messages written one by one have a time each)."""

    def __init__(self):
        super().__init__()
        self.seconds: dict[bytes, bytes] = {}

    def __missing__(self, token: bytes) -> bytes:
        if len(self) >= 100_000:
            self.clear()
        if len(token) > 9 and token[0] != 45:  # 45: "-"
            secs = token[:-9]
            base = self.seconds.get(secs)
            if base is None:
                if len(self.seconds) >= 10_000:
                    self.seconds.clear()
                base = self.seconds[secs] = format_time(int(secs) * 1_000_000_000)[:-1].encode()
            frac = token[-9:].rstrip(b"0")
            text = base + b"." + frac + b'Z"}' if frac else base + b'Z"}'
        else:  # before 1970-01-01T00:00:01Z
            text = (format_time(int(token)) + '"}').encode()
        self[token] = text
        return text


class _Ahead:
    """``fn(arg)`` in a helper thread; ``get()`` waits for it (a Ctrl-C interrupts the wait)."""

    def __init__(self, fn, arg):
        self.value = self.error = None
        self.thread = threading.Thread(target=self._run, args=(fn, arg), daemon=True,
                                       name="export-read")
        self.thread.start()

    def _run(self, fn, arg) -> None:
        try:
            self.value = fn(arg)
        except BaseException as e:  # handed to the waiting thread
            self.error = e

    def get(self):
        self.thread.join()
        if self.error is not None:
            raise self.error
        return self.value


def record_chunks(store, category: str = "", since: int = 1, until: int | None = None,
                  chunk: int = 10_000) -> Iterator[tuple[bytes, int, int, int]]:
    """The export lines of ``category`` (``""``: every message) from global position ``since``
    (inclusive) to ``until`` (exclusive), in global-position order, as chunks of at most
    ``chunk`` lines: ``(bytes, count, first gpos, last gpos)``, each chunk's bytes ending with a
    newline. One read transaction from the first chunk to the last."""
    conn = store.conn
    where, head, tail = ["global_position >= ?"], [], [max(1, min(chunk, 10_000))]
    if category:
        where.insert(0, "category = ?")
        head.append(category)
    if until is not None:
        where.append("global_position < ?")
        tail.insert(0, _clamp(until))
    sql = (f"SELECT CAST(group_concat(line, X'0a') AS BLOB), count(*), min(gp), max(gp) FROM "
           f"(SELECT {_LINE} AS line, global_position AS gp FROM messages "
           f"WHERE {' AND '.join(where)} ORDER BY global_position LIMIT ?)")
    full = tail[-1]

    def fetch(pos: int):
        try:
            return conn.execute(sql, (*head, _clamp(pos), *tail)).fetchone()
        except sqlite3.DatabaseError as e:  # said as the ordinary read says it
            raise StoreError(f"read failed on {store.path}: {e}") from None

    began = not conn.in_transaction
    if began:
        conn.execute("BEGIN")  # deferred: the snapshot is taken by the first read
    times = _TimeTexts()
    ahead: _Ahead | None = None
    try:
        row = fetch(since)
        while row is not None and row[1]:
            blob, k, first, last = row
            if k == full:  # SQLite builds the next chunk while this one is finished
                ahead = _Ahead(fetch, last + 1)
            data = _lines(blob, k, times)
            if data is None:  # something to escape, or to say as the ordinary path says it
                if ahead is not None:
                    ahead.thread.join()  # the connection is free again
                data = _ordinary(store, category, first, k)
            yield data, k, first, last
            row = None
            if ahead is not None:
                row = ahead.get()
                ahead = None
    finally:
        if ahead is not None:  # stopped early (Ctrl-C, a full disk): stop the read first
            conn.interrupt()
            ahead.thread.join()
        if began and conn.in_transaction:
            try:
                conn.execute("COMMIT")  # a read: nothing to keep or undo
            except sqlite3.Error:
                pass


def _lines(blob: bytes, k: int, times: _TimeTexts) -> bytes | None:
    """A chunk's bytes from SQLite's text, or None when the chunk must take the ordinary path."""
    if not blob.isascii():
        try:
            blob.decode("utf-8")  # what the ordinary read would refuse, it says itself
        except UnicodeDecodeError:
            return None
    parts = blob.split(SEP)
    if len(parts) != 3 * k + 1:  # a separator byte inside a value, or a NULL data
        return None
    names = b"".join(parts[0::3])
    if len(names) - len(names.translate(None, _ESCAPED)) != _OWN_QUOTES * k + (k - 1):
        return None  # a name, type or id holding a quote, a backslash or a control character
    parts[2::3] = map(times.__getitem__, parts[2::3])
    parts[-1] = b"\n"
    return b"".join(parts)


def _ordinary(store, category: str, first: int, k: int) -> bytes:
    """The same ``k`` lines from ``first`` the ordinary way (the same read transaction)."""
    msgs = store.category_get(category, first, k)
    return ("\n".join(map(to_record_line, msgs)) + "\n").encode("utf-8")
