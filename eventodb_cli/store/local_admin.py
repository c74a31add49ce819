"""Administration SQL for the local store: info, row scans for ``store check``, compaction, and a
fast listing of category names for shell completion.

Everything here works on an open ``LocalStore`` (its connection and path); the schema itself is
``store/local.py``'s.
"""

from __future__ import annotations

import os
import sqlite3
from typing import Iterator

from ..errors import StoreError

# Columns of a row as ``store check`` needs them: the checksummed fields, the stored checksum and
# the two derived columns consumer-group reads depend on.
CHECK_COLS = ("global_position, id, stream_name, type, position, data, metadata, time, checksum, "
              "category, cardinal_hash")


def file_sizes(path: str) -> dict[str, int]:
    """Bytes on disk: the database file, its WAL and shared-memory files (0 when absent)."""
    out = {}
    for key, suffix in (("file", ""), ("wal", "-wal"), ("shm", "-shm")):
        try:
            out[key] = os.path.getsize(path + suffix)
        except OSError:
            out[key] = 0
    return out


def _one(conn: sqlite3.Connection, sql: str, params: tuple = ()):
    row = conn.execute(sql, params).fetchone()
    return None if row is None else row[0]


def meta(conn: sqlite3.Connection) -> dict[str, str]:
    try:
        return dict(conn.execute("SELECT key, value FROM store_meta"))
    except sqlite3.DatabaseError:
        return {}


def count_distinct_skip(conn: sqlite3.Connection, column: str, index_order: str) -> int:
    """Number of distinct values of an indexed leading column, by skip-scan (one index seek per
    value), so counting 4 categories in a million rows costs 4 seeks, not a million-row scan."""
    n = 0
    last = None
    q_first = f"SELECT {column} FROM messages ORDER BY {index_order} LIMIT 1"
    q_next = f"SELECT {column} FROM messages WHERE {column} > ? ORDER BY {index_order} LIMIT 1"
    row = conn.execute(q_first).fetchone()
    while row is not None:
        n += 1
        last = row[0]
        row = conn.execute(q_next, (last,)).fetchone()
    return n


def _distinct_prefixed(conn: sqlite3.Connection, column: str, prefix: str,
                       limit: int) -> list[str]:
    """Distinct values of an indexed leading ``column`` starting with ``prefix``, in byte order,
    by skip-scan (one index seek per value): cheap on a large store, which is what shell
    completion needs."""
    out: list[str] = []
    first = f"SELECT {column} FROM messages WHERE {column} >= ? ORDER BY {column} LIMIT 1"
    after = f"SELECT {column} FROM messages WHERE {column} > ? ORDER BY {column} LIMIT 1"
    cur = conn.execute(first, (prefix,)).fetchone()
    while cur is not None and len(out) < limit:
        name = cur[0]
        if not name.startswith(prefix):
            break
        out.append(name)
        cur = conn.execute(after, (name,)).fetchone()
    return out


def category_names(conn: sqlite3.Connection, prefix: str = "", limit: int = 200) -> list[str]:
    """Category names starting with ``prefix`` (index ``messages_category``)."""
    return _distinct_prefixed(conn, "category", prefix, limit)


def stream_names(conn: sqlite3.Connection, prefix: str = "", limit: int = 200) -> list[str]:
    """Stream names starting with ``prefix`` (index ``messages_stream``)."""
    return _distinct_prefixed(conn, "stream_name", prefix, limit)


BULK_CACHE_KIB = 131072  # 128 MiB of page cache for a bulk import


def tune_for_bulk_import(conn: sqlite3.Connection) -> None:
    """A larger page cache for this connection: an import inserts ids (random UUIDs) into a
    unique index spread over the whole file; with SQLite's default 2 MB cache most inserts
    re-read index pages (about 25% slower on 1,000,000 rows, bench/RESULTS-transfer.md)."""
    conn.execute(f"PRAGMA cache_size = -{BULK_CACHE_KIB}")


def info(store) -> dict:
    """``store info``: what the file is and what it holds."""
    conn = store.conn
    try:
        m = meta(conn)
        sizes = file_sizes(store.path)
        messages = _one(conn, "SELECT count(*) FROM messages")
        streams = count_distinct_skip(conn, "stream_name", "stream_name, position")
        categories = count_distinct_skip(conn, "category", "category, global_position")
        head = _one(conn, "SELECT max(global_position) FROM messages")
        journal = _one(conn, "PRAGMA journal_mode")
        user_version = _one(conn, "PRAGMA user_version")
        page_size = _one(conn, "PRAGMA page_size")
        page_count = _one(conn, "PRAGMA page_count")
        freelist = _one(conn, "PRAGMA freelist_count")
    except sqlite3.DatabaseError as e:
        raise StoreError(f"cannot read {store.path}: {e}") from None
    from ..domain.message import format_time

    created = m.get("created_at")
    try:
        created_s = format_time(int(created)) if created else None
    except ValueError:
        created_s = None
    return {
        "path": os.path.abspath(store.path),
        "fileSize": sizes["file"],
        "walSize": sizes["wal"],
        "schemaVersion": int(m.get("schema_version", user_version) or user_version),
        "messages": messages,
        "streams": streams,
        "categories": categories,
        "headPosition": head,
        "createdAt": created_s,
        "journalMode": journal,
        "walMode": journal == "wal",
        "pageSize": page_size,
        "pages": page_count,
        "freePages": freelist,
    }


def integrity_check(conn: sqlite3.Connection) -> list[str]:
    """SQLite's own ``PRAGMA integrity_check``: ``[]`` when it says ``ok``, else its messages."""
    try:
        rows = [r[0] for r in conn.execute("PRAGMA integrity_check")]
    except sqlite3.DatabaseError as e:
        return [str(e)]
    return [] if rows == ["ok"] else rows


def scan_rows(conn: sqlite3.Connection, batch: int = 10_000) -> Iterator[tuple]:
    """Every row in global position order as a tuple of ``CHECK_COLS``, read in pages."""
    sql = f"SELECT {CHECK_COLS} FROM messages WHERE global_position > ? " \
          "ORDER BY global_position LIMIT ?"
    last = -(1 << 63)
    while True:
        rows = conn.execute(sql, (last, batch)).fetchall()
        yield from rows
        if len(rows) < batch:
            return
        last = rows[-1][0]


def compact(store) -> dict:
    """Checkpoint the WAL into the database (TRUNCATE) and VACUUM; bytes before and after."""
    conn = store.conn
    before = file_sizes(store.path)
    try:
        busy, _log, _ckpt = conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
        conn.execute("VACUUM")
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    except sqlite3.OperationalError as e:
        raise StoreError(f"cannot compact {store.path}: {e}") from None
    after = file_sizes(store.path)
    b = before["file"] + before["wal"]
    a = after["file"] + after["wal"]
    return {
        "path": os.path.abspath(store.path),
        "bytesBefore": b,
        "bytesAfter": a,
        "saved": b - a,
        "walBytesBefore": before["wal"],
        "checkpointBusy": bool(busy),
    }


# --- the end of a bulk run (LocalStore.bulk_writes) -------------------------------------------
def _fsync_path(path: str, flags: int) -> None:
    fd = os.open(path, flags)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def make_durable(store) -> None:
    """Everything ``store`` committed so far is on disk: a checkpoint that does not wait for
    readers (it syncs the WAL, copies it into the database and syncs that), then an fsync of the
    WAL for what a reader kept it from copying, and of the directory (a new store)."""
    c = store.conn
    c.execute("PRAGMA synchronous = FULL")
    try:
        busy, log, done = c.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
    finally:
        c.execute("PRAGMA synchronous = NORMAL")
    wal = store.path + "-wal"
    if (busy or done < log) and os.path.exists(wal):
        _fsync_path(wal, os.O_RDWR)
    try:
        _fsync_path(os.path.dirname(os.path.abspath(store.path)), os.O_RDONLY)
    except OSError:  # a file system that cannot sync a directory: nothing more to do
        pass
