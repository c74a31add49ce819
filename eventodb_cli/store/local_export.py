"""Export records straight from a local store's SQLite file: the fast path of ``export``.

The lines are the ones ``domain/records.to_record_line`` makes, byte for byte; this module only
makes them faster for a ``LocalStore`` (read-only use of its connection). SQLite builds each
line with one ``printf`` and joins a chunk of them with ``group_concat`` (C, and the GIL is
released while it steps); Python then only puts the time text in (cached per distinct time:
messages written together share it) and checks the chunk. Stream names and types need no
escaping in nearly every store, so SQLite splices them as they are and the chunk is checked
instead: a name or type holding a quote, a backslash or a control character, a NULL ``data``,
text that is not UTF-8, or anything else that does not check out exactly sends that chunk
through the ordinary path (the same rows as ``Message`` + ``to_record_line``), so every byte is
the same as the ordinary export's.

The whole export reads one snapshot: writers go on, and what they commit after the export
began is not part of the file. Two helper threads make the chunks (``j`` and ``j + 1`` at once;
SQLite releases the GIL while it steps), each on its own connection: the store's, in a read
transaction, and a second read-only one whose read transaction is taken right after it and
used only when ``PRAGMA data_version`` shows no commit in between (the same snapshot; else, and
for a read-only store, the store's connection makes every chunk). Chunk ``j`` is the
``chunk`` messages from its first global position; the reader finds where the next chunk
starts first (an index step), so the other reader can go on at once.
"""

from __future__ import annotations

import os
import queue
import sqlite3
import threading
from typing import Iterator

from ..domain.message import Message, format_time
from ..domain.records import to_record_line
from ..errors import StoreError

_I64_MIN, _I64_MAX = -(1 << 63), (1 << 63) - 1
_COLS = "id, stream_name, type, position, global_position, data, metadata, time"  # local.py's
_DONE = object()
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


def _second_reader(store, conn: sqlite3.Connection) -> sqlite3.Connection | None:
    """A second read-only connection whose snapshot is exactly ``conn``'s, or None. Started
    after ``conn``'s (already open) read transaction; ``PRAGMA data_version`` read before and
    after says whether any other connection committed in between (then: one reader)."""
    if getattr(store, "read_only", False) or not conn.in_transaction:
        return None
    from urllib.parse import quote

    try:
        other = sqlite3.connect("file:" + quote(os.path.abspath(store.path)) + "?mode=ro",
                                uri=True, isolation_level=None, check_same_thread=False)
    except sqlite3.Error:
        return None
    try:
        before = other.execute("PRAGMA data_version").fetchone()[0]
        conn.execute("SELECT 1 FROM messages LIMIT 1").fetchall()  # conn's snapshot is taken
        other.execute("BEGIN")
        other.execute("SELECT 1 FROM messages LIMIT 1").fetchall()
        if other.execute("PRAGMA data_version").fetchone()[0] == before:
            return other
    except sqlite3.Error:
        pass
    other.close()
    return None


class _Reader(threading.Thread):
    """Makes chunks ``j, j + n, j + 2n, ...`` on its own connection, in order, one ahead."""

    def __init__(self, job: "_Job", conn: sqlite3.Connection, first: int, step: int):
        super().__init__(daemon=True, name=f"export-read-{first}")
        self.job, self.conn, self.first, self.step = job, conn, first, step
        self.out: queue.Queue = queue.Queue(maxsize=1)

    def run(self) -> None:
        job = self.job
        try:
            j = self.first
            while True:
                start = job.start_of(j)
                if start is None or job.stopped:
                    break
                made = job.make(self.conn, j, start)
                if made is not None:
                    self._put(made)
                j += self.step
        except BaseException as e:  # handed to the main thread, in its place
            self._put(e)
        self._put(_DONE)

    def _put(self, item) -> None:
        while not self.job.stopped:
            try:
                self.out.put(item, timeout=0.05)
                return
            except queue.Full:
                continue


class _Job:
    """One export's chunks: chunk ``j`` is ``[start(j), start(j + 1))`` (``width`` messages;
    the boundary is found first, so the next reader can go on at once)."""

    def __init__(self, store, category: str, since: int, end: int, width: int):
        self.store, self.category, self.end, self.width = store, category, end, width
        self.times = _TimeTexts()
        self.stopped = False
        self.starts: dict[int, int] = {0: since}
        self.count: int | None = None  # of chunks, once the last one's end is found
        self.cond = threading.Condition()
        cat = "category = ? AND " if category else ""
        self.head = (category,) if category else ()
        self.bound_sql = (f"SELECT global_position FROM messages WHERE {cat}global_position >= ?"
                          f" AND global_position < ? ORDER BY global_position LIMIT 1 OFFSET ?")
        self.chunk_sql = (
            f"SELECT CAST(group_concat(line, X'0a') AS BLOB), count(*), min(gp), max(gp) FROM "
            f"(SELECT {_LINE} AS line, global_position AS gp FROM messages "
            f"WHERE {cat}global_position >= ? AND global_position < ? ORDER BY global_position)")
        self.plain_sql = (f"SELECT {_COLS} FROM messages WHERE {cat}global_position >= ? "
                          f"AND global_position < ? ORDER BY global_position")

    def start_of(self, j: int) -> int | None:
        with self.cond:
            while j not in self.starts and not self.stopped:
                if self.count is not None and j >= self.count:
                    return None
                self.cond.wait(0.05)
            return self.starts.get(j)

    def make(self, conn: sqlite3.Connection, j: int, start: int):
        """Chunk ``j``: ``(bytes, count, first, last)``, or None when it holds no message."""
        try:
            row = conn.execute(self.bound_sql, (*self.head, start, self.end,
                                                self.width)).fetchone()
            stop = self.end if row is None else row[0]
            with self.cond:
                if row is None:
                    self.count = j + 1
                else:
                    self.starts[j + 1] = stop
                self.cond.notify_all()
            blob, k, first, last = conn.execute(self.chunk_sql,
                                                (*self.head, start, stop)).fetchone()
            if not k:
                return None
            data = _lines(blob, k, self.times)
            if data is None:  # something to escape, or to say as the ordinary path says it
                msgs = map(Message._make, conn.execute(self.plain_sql, (*self.head, start, stop)))
                data = ("\n".join(map(to_record_line, msgs)) + "\n").encode("utf-8")
            return data, k, first, last
        except sqlite3.DatabaseError as e:  # said as LocalStore's own reads say it
            raise StoreError(f"read failed on {self.store.path}: {e}") from None


def record_chunks(store, category: str = "", since: int = 1, until: int | None = None,
                  chunk: int = 10_000) -> Iterator[tuple[bytes, int, int, int]]:
    """The export lines of ``category`` (``""``: every message) from global position ``since``
    (inclusive) to ``until`` (exclusive), in global-position order, as chunks of at most
    ``chunk`` lines: ``(bytes, count, first gpos, last gpos)``, each chunk's bytes ending with a
    newline. One snapshot from the first chunk to the last."""
    conn = store.conn
    began = not conn.in_transaction
    if began:
        conn.execute("BEGIN")  # deferred: the snapshot is taken by the first read
    conns = [conn]
    readers: list[_Reader] = []
    job = None
    done = False  # every chunk made: no read is running any more
    try:
        other = _second_reader(store, conn) if began else None
        if other is not None:
            conns.append(other)
        end = _clamp(until) if until is not None else _I64_MAX
        job = _Job(store, category, _clamp(since), end, max(1, min(chunk, 10_000)))
        readers = [_Reader(job, c, i, len(conns)) for i, c in enumerate(conns)]
        for r in readers:
            r.start()
        j = 0
        while True:  # chunk j comes from reader j % n; the first to be done: all are
            item = readers[j % len(readers)].out.get()
            j += 1
            if item is _DONE:
                done = True
                return
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        if job is not None:
            job.stopped = True
            if not done:  # stopped early (Ctrl-C, a full disk, an error): stop the reads
                for c in conns:
                    c.interrupt()
            for r in readers:
                r.join()
        for c in conns[1:]:
            c.close()
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
