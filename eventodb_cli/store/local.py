"""The local store: one SQLite file.

Schema (version 1) is modelled on EventoDB's SQLite namespace schema (``messages`` with id,
stream_name, type, position, global_position, data, metadata, time) plus:

- ``category`` and ``cardinal_hash`` (Message DB ``hash64`` of the cardinal id, NULL without an
  id), with an index on (category, global_position, cardinal_hash): a consumer-group read is an
  index range scan in global-position order that stops at LIMIT, never a scan of the category;
- ``time`` as integer nanoseconds (sub-second precision kept);
- ``checksum``: xxh3-64 of the row, recorded at write time (``store check``).

WAL mode; every write is one ``BEGIN IMMEDIATE`` transaction; the unique indexes on ``id`` and on
``(stream_name, position)`` keep concurrent writers safe.
"""

from __future__ import annotations

import os
import sqlite3
import time as _time
from contextlib import contextmanager
from typing import Iterator, Sequence

from ..domain.hashing import stream_hash
from ..domain.integrity import row_checksum
from ..domain.message import Message, NewMessage, WriteResult
from ..domain.streams import category as category_of
from ..errors import DiskFull, DuplicateMessageId, NotFound, StoreError, VersionConflict
from .base import Store

SCHEMA_VERSION = 1
APPLICATION_ID = 0x45564442  # "EVDB"

_COLS = "id, stream_name, type, position, global_position, data, metadata, time"
_INSERT = (
    "INSERT INTO messages (global_position, id, stream_name, type, position, data, metadata, "
    "time, category, cardinal_hash, checksum) VALUES (?,?,?,?,?,?,?,?,?,?,?)"
)


def new_ids(n: int) -> list[str]:
    """``n`` random (version 4) UUIDs, several times faster than ``uuid.uuid4()`` in a loop."""
    if not n:
        return []
    raw = os.urandom(16 * n).hex()
    out = []
    for i in range(0, 32 * n, 32):
        h = raw[i:i + 32]
        out.append(f"{h[:8]}-{h[8:12]}-4{h[13:16]}-{'89ab'[int(h[16], 16) & 3]}{h[17:20]}-{h[20:]}")
    return out


_I64_MIN, _I64_MAX = -(1 << 63), (1 << 63) - 1


def _fit(params) -> tuple:
    """Integer parameters clamped to SQLite's signed 64-bit range: a position or limit beyond
    it (``--position 99999999999999999999``) reads as the nearest value SQLite can hold (there
    is nothing past the last one), instead of raising OverflowError."""
    return tuple(min(max(p, _I64_MIN), _I64_MAX) if type(p) is int else p for p in params)


def _unlimited(batch_size: int | None) -> int:
    return -1 if batch_size is None or batch_size <= 0 else batch_size


def create_schema(conn: sqlite3.Connection) -> None:
    """Create the version-1 schema with sqlite-utils (only ever called on an empty file)."""
    import sqlite_utils

    db = sqlite_utils.Database(conn)
    db["messages"].create(
        {
            "global_position": int,
            "id": str,
            "stream_name": str,
            "type": str,
            "position": int,
            "data": str,
            "metadata": str,
            "time": int,
            "category": str,
            "cardinal_hash": int,
            "checksum": int,
        },
        pk="global_position",
        not_null={"id", "stream_name", "type", "position", "time", "category"},
    )
    db["messages"].create_index(["id"], unique=True, index_name="messages_id")
    db["messages"].create_index(["stream_name", "position"], unique=True,
                                index_name="messages_stream")
    db["messages"].create_index(["category", "global_position", "cardinal_hash"],
                                index_name="messages_category")
    db["store_meta"].create({"key": str, "value": str}, pk="key")
    db["store_meta"].insert_all(
        [
            {"key": "schema_version", "value": str(SCHEMA_VERSION)},
            {"key": "created_at", "value": str(_time.time_ns())},
            {"key": "created_by", "value": "eventodb-cli"},
        ]
    )
    conn.execute(f"PRAGMA application_id = {APPLICATION_ID}")
    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")


class LocalStore(Store):
    kind = "local"

    def __init__(self, path: str | os.PathLike, *, create: bool = False):
        self.path = os.fspath(path)
        exists = os.path.exists(self.path)
        if not exists and not create:
            raise NotFound(
                f"store not found: {self.path} (a store is created by the first write)"
            )
        if exists and os.path.isdir(self.path):
            raise StoreError(f"store path is a directory: {self.path}")
        if not exists:
            parent = os.path.dirname(os.path.abspath(self.path))
            os.makedirs(parent, exist_ok=True)
        self.read_only = False
        try:
            self.conn = sqlite3.connect(self.path, isolation_level=None, timeout=60,
                                        check_same_thread=False)
            self._prepare(create)
        except sqlite3.OperationalError as e:
            if self._write_error(e, None).__class__ is DiskFull:
                if not exists:  # the store this write was creating: leave nothing behind
                    self._remove_empty()
                    raise DiskFull(f"disk full: cannot create the store {self.path}; nothing "
                                   "written", written=0) from None
                raise self._write_error(e, 0) from None
            if not self._may_open_read_only(e):
                raise StoreError(f"not a usable SQLite store: {self.path}: {e}") from None
            if create:  # a write
                raise StoreError(f"cannot write to {self.path}: the store is read-only (a "
                                 "read-only file, directory or mount); reads work") from None
            self._open_read_only(e)
        except sqlite3.DatabaseError as e:
            raise StoreError(f"not a usable SQLite store: {self.path}: {e}") from None

    def _remove_empty(self) -> None:
        try:
            self.conn.close()
            for suffix in ("-wal", "-shm", "-journal", ""):
                p = self.path + suffix
                if os.path.exists(p) and (suffix or os.path.getsize(p) == 0):
                    os.unlink(p)
        except (OSError, sqlite3.Error):
            pass

    def _may_open_read_only(self, e: sqlite3.OperationalError) -> bool:
        """A store on a read-only mount, or in a directory or file we may not write: SQLite
        cannot create the WAL's -shm file there, and a plain open fails. Reads must still work."""
        if not ("unable to open" in str(e) or "readonly" in str(e).replace(" ", "")):
            return False
        d = os.path.dirname(os.path.abspath(self.path))
        return not os.access(self.path, os.W_OK) or not os.access(d, os.W_OK)

    def _open_read_only(self, first: sqlite3.OperationalError) -> None:
        """Open read-only: ``mode=ro`` (works while a -shm file exists), else ``immutable=1``,
        which is exact only when no write-ahead log holds unmerged commits."""
        from urllib.parse import quote

        try:
            self.conn.close()
        except sqlite3.Error:
            pass
        uri = "file:" + quote(os.path.abspath(self.path))
        wal = self.path + "-wal"
        modes = ["?mode=ro"]
        if not (os.path.exists(wal) and os.path.getsize(wal) > 0):
            modes.append("?immutable=1")
        err: sqlite3.Error = first
        for mode in modes:
            try:
                self.conn = sqlite3.connect(uri + mode, uri=True, isolation_level=None,
                                            timeout=60, check_same_thread=False)
                self._prepare(False)
                self.read_only = True
                return
            except sqlite3.OperationalError as e:
                err = e
        raise StoreError(f"cannot open the read-only store {self.path}: {err}"
                         + (" (its write-ahead log holds commits not yet merged; open it once "
                            "where it is writable)" if len(modes) == 1 else "")) from None

    _cache_dv = None
    _head: int | None = None

    def _prepare(self, create: bool) -> None:
        self._versions: dict[str, int] = {}
        self._hashes: dict[str, tuple[str, int | None]] = {}
        c = self.conn
        c.execute("PRAGMA busy_timeout = 60000")
        version = c.execute("PRAGMA user_version").fetchone()[0]
        if version == 0:
            has_tables = c.execute("SELECT count(*) FROM sqlite_master").fetchone()[0]
            if has_tables:
                raise StoreError(f"not an eventodb store (unknown SQLite database): {self.path}")
            if not create:
                raise NotFound(f"store is empty: {self.path} (created by the first write)")
            c.execute("PRAGMA journal_mode = WAL")
            c.execute("BEGIN IMMEDIATE")
            try:
                if c.execute("PRAGMA user_version").fetchone()[0] == 0:
                    create_schema(c)
                c.execute("COMMIT")
            except BaseException:
                self._rollback()
                raise
        elif version > SCHEMA_VERSION:
            raise StoreError(
                f"store schema version {version} is newer than this eventodb supports "
                f"({SCHEMA_VERSION}); upgrade eventodb-cli"
            )
        c.execute("PRAGMA synchronous = NORMAL")

    def close(self) -> None:
        self.conn.close()

    # --- writes -------------------------------------------------------------------------------
    def _begin(self) -> None:
        try:
            self.conn.execute("BEGIN IMMEDIATE")
        except sqlite3.OperationalError as e:
            raise self._write_error(e, None) from None

    def _commit(self) -> None:
        self.conn.execute("COMMIT")

    def _rollback(self) -> None:
        """Roll back if a transaction is still open: SQLite itself already rolled back after a
        full disk or an I/O error, and a second ROLLBACK would hide the real error behind
        ``cannot rollback - no transaction is active``."""
        if self.conn.in_transaction:
            try:
                self.conn.execute("ROLLBACK")
            except sqlite3.OperationalError:
                pass

    @contextmanager
    def _undo_on_error(self):
        """Around work in an open write transaction: any error rolls it back; SQLite's
        operational errors (full disk, read-only, I/O) become the typed write error."""
        try:
            yield
        except sqlite3.OperationalError as e:
            self._rollback()
            raise self._write_error(e, None) from None
        except BaseException:
            self._rollback()
            raise

    def _write_error(self, e: sqlite3.Error, written: int | None) -> StoreError:
        """The typed error for a failed write transaction (nothing of it was written)."""
        text = str(e)
        code = getattr(e, "sqlite_errorcode", None)
        if code == sqlite3.SQLITE_FULL or "database or disk is full" in text:
            before = "" if written is None else f"; {written} written before it"
            return DiskFull(f"disk full: cannot write to {self.path} (nothing of the failing "
                            f"transaction was written{before}; the store is intact)",
                            written=written)
        if "readonly" in text.replace(" ", "") or code == getattr(sqlite3, "SQLITE_READONLY", 8):
            return StoreError(f"cannot write to {self.path}: the store is read-only")
        return StoreError(f"cannot write to {self.path}: {e}")

    def write_batch(self, msgs: Sequence[NewMessage], *, progress=None) -> list[WriteResult]:
        """Write ``msgs`` in one transaction: all of them, or (on any error) none.

        ``progress``: ``(key, path, lines, written)`` recorded in table ``write_progress`` in
        the same transaction (``write --file --resume``: what a re-run skips)."""
        if not msgs:
            return []
        c = self.conn
        self._begin()
        try:
            with self._undo_on_error():
                results, rows, pending, head, dv = self._prepare_rows(c, msgs)
                c.executemany(_INSERT, rows)
                if progress is not None:
                    self._record_progress(progress)
                self._commit()
        except sqlite3.IntegrityError as e:  # rolled back
            if "messages.id" in str(e):
                raise DuplicateMessageId(self._first_duplicate(msgs) or "?") from None
            raise StoreError(f"write failed: {e}") from None
        if len(self._versions) + len(pending) > 100_000:
            self._versions.clear()
        self._versions.update(pending)
        self._head = head
        # read inside our write transaction: no other commit came between it and ours,
        # and our own commits do not change this connection's data_version
        self._cache_dv = dv
        return results

    # --- bulk runs (write --file) ------------------------------------------------------------
    BULK_CACHE_KIB = 65_536  # page cache during a bulk run: the indexes' hot pages stay in memory
    BULK_WAL_PAGES = 16_384  # checkpoint (and fsync) about every 64 MiB of WAL, not every 4 MiB

    @contextmanager
    def bulk_writes(self) -> Iterator[None]:
        """A run of many write transactions (``write --file``), durable when it ends.

        During the run: WAL with ``synchronous=NORMAL`` (a commit writes the WAL, no fsync), a
        64 MiB page cache and a checkpoint every ~64 MiB of WAL, so a batch costs its inserts,
        not an fsync. At the end (also after an error or an interruption): ``make_durable``.
        A power loss during the run can lose the commits since the last checkpoint, never
        part of one; ``write_progress`` is committed with each batch, so ``--resume`` continues
        from exactly what survived."""
        c = self.conn
        if self.read_only:
            yield
            return
        c.execute(f"PRAGMA cache_size = -{self.BULK_CACHE_KIB}")
        c.execute(f"PRAGMA wal_autocheckpoint = {self.BULK_WAL_PAGES}")
        ok = False
        try:
            yield
            ok = True
        finally:
            try:
                self.make_durable()
            except (sqlite3.Error, OSError) as e:
                if ok:  # the run itself succeeded: its exit status must not claim durability
                    raise StoreError(f"cannot make the writes to {self.path} durable: {e}") \
                        from None
            finally:
                try:
                    c.execute("PRAGMA cache_size = -2000")
                    c.execute("PRAGMA wal_autocheckpoint = 1000")
                except sqlite3.Error:
                    pass

    def make_durable(self) -> None:
        """Everything committed so far is on disk (``local_admin.make_durable``)."""
        from .local_admin import make_durable

        make_durable(self)

    # --- write --file progress (write --file --resume) -------------------------------------
    # One row per file written with ``write --file``, keyed by the file's real path, updated in
    # the same transaction as each batch: after any interruption the row says exactly which
    # lines are in the store. Created on first use (an older eventodb ignores the table).
    _PROGRESS_DDL = ("CREATE TABLE IF NOT EXISTS write_progress (file TEXT PRIMARY KEY, "
                     "lines INTEGER NOT NULL, bytes INTEGER NOT NULL, digest TEXT NOT NULL, "
                     "written INTEGER NOT NULL, done INTEGER NOT NULL, salt TEXT NOT NULL, "
                     "updated_at INTEGER NOT NULL)")

    def _record_progress(self, p: dict) -> None:
        c = self.conn
        c.execute(self._PROGRESS_DDL)
        c.execute("INSERT OR REPLACE INTO write_progress (file, lines, bytes, digest, written, "
                  "done, salt, updated_at) VALUES (?,?,?,?,?,?,?,?)",
                  (p["file"], p["lines"], p["bytes"], p["digest"], p["written"],
                   int(p.get("done", False)), p.get("salt", ""), _time.time_ns()))

    def write_progress(self, file: str) -> dict | None:
        """The recorded progress of ``write --file`` for ``file`` (a real path), or None."""
        try:
            row = self.conn.execute(
                "SELECT lines, bytes, digest, written, done, salt FROM write_progress "
                "WHERE file = ?", (file,)).fetchone()
        except sqlite3.OperationalError:  # no such table: nothing recorded yet
            return None
        if row is None:
            return None
        keys = ("lines", "bytes", "digest", "written", "done", "salt")
        return {"file": file, **dict(zip(keys, row)), "done": bool(row[4])}

    def save_write_progress(self, progress: dict) -> None:
        """Record progress outside a batch (a fresh start, or a finished file)."""
        self._begin()
        with self._undo_on_error():
            self._record_progress(progress)
            self._commit()

    def _prepare_rows(self, c: sqlite3.Connection, msgs: Sequence[NewMessage]):
        # Stream versions and the head are cached between our own transactions, and trusted
        # only while PRAGMA data_version says no other connection has committed since.
        dv = c.execute("PRAGMA data_version").fetchone()[0]
        if self._cache_dv != dv:
            self._versions.clear()
            self._head = None
        if self._head is None:
            self._head = c.execute(
                "SELECT coalesce(max(global_position), 0) FROM messages").fetchone()[0]
        gpos = self._head
        cached = self._versions
        pending: dict[str, int] = {}  # this batch's versions: into the cache after COMMIT
        hashes = self._hashes
        now = _time.time_ns()
        rows = []
        results = []
        version_q = "SELECT max(position) FROM messages WHERE stream_name = ?"
        ids = new_ids(sum(1 for m in msgs if not m.id))
        k = 0
        for m in msgs:
            stream = m.stream_name
            v = pending.get(stream)
            if v is None:
                v = cached.get(stream)
                if v is None:
                    got = c.execute(version_q, (stream,)).fetchone()[0]
                    v = -1 if got is None else got
            if m.expected_version is not None and m.expected_version != v:
                raise VersionConflict(stream, m.expected_version, v)
            v += 1
            pending[stream] = v
            gpos += 1
            mid = m.id
            if not mid:
                mid = ids[k]
                k += 1
            ch = hashes.get(stream)
            if ch is None:
                if len(hashes) > 100_000:
                    hashes.clear()
                ch = hashes[stream] = (category_of(stream), stream_hash(stream))
            rows.append((gpos, mid, stream, m.type, v, m.data, m.metadata, now, ch[0], ch[1],
                         row_checksum(mid, stream, m.type, v, gpos, m.data, m.metadata, now)))
            results.append(WriteResult(v, gpos))
        return results, rows, pending, gpos, dv

    def existing_ids(self, ids: Sequence[str]) -> set[str]:
        """Which of ``ids`` are already in the store."""
        found: set[str] = set()
        ids = [i for i in ids if i]
        for k in range(0, len(ids), 500):
            chunk = ids[k:k + 500]
            q = f"SELECT id FROM messages WHERE id IN ({','.join('?' * len(chunk))})"
            found.update(r[0] for r in self.conn.execute(q, chunk))
        return found

    def _first_duplicate(self, msgs: Sequence[NewMessage]) -> str | None:
        seen: set[str] = set()
        for m in msgs:
            if m.id is None:
                continue
            if m.id in seen:
                return m.id
            seen.add(m.id)
            if self.conn.execute("SELECT 1 FROM messages WHERE id = ?", (m.id,)).fetchone():
                return m.id
        return None

    # --- reads --------------------------------------------------------------------------------
    def _messages(self, sql: str, params: tuple) -> list[Message]:
        try:
            return list(map(Message._make, self.conn.execute(sql, _fit(params))))
        except sqlite3.DatabaseError as e:
            raise StoreError(f"read failed on {self.path}: {e}") from None

    def stream_get(self, stream, position=0, global_position=None, batch_size=1000):
        limit = _unlimited(batch_size)
        if global_position is not None:
            return self._messages(
                f"SELECT {_COLS} FROM messages WHERE stream_name = ? AND global_position >= ? "
                "ORDER BY position LIMIT ?",
                (stream, global_position, limit),
            )
        return self._messages(
            f"SELECT {_COLS} FROM messages WHERE stream_name = ? AND position >= ? "
            "ORDER BY position LIMIT ?",
            (stream, position, limit),
        )

    def stream_last(self, stream, type=None):
        if type:
            rows = self._messages(
                f"SELECT {_COLS} FROM messages WHERE stream_name = ? AND type = ? "
                "ORDER BY position DESC LIMIT 1",
                (stream, type),
            )
        else:
            rows = self._messages(
                f"SELECT {_COLS} FROM messages WHERE stream_name = ? "
                "ORDER BY position DESC LIMIT 1",
                (stream,),
            )
        return rows[0] if rows else None

    def stream_version(self, stream):
        return self.conn.execute(
            "SELECT max(position) FROM messages WHERE stream_name = ?", (stream,)
        ).fetchone()[0]

    def category_get(self, category, position=1, batch_size=1000, correlation=None,
                     member=None, size=None):
        where = []
        params: list = []
        if category != "":
            where.append("category = ?")
            params.append(category)
        where.append("global_position >= ?")
        params.append(position)
        if member is not None and size is not None:
            # abs(h % size) == abs(h) % size for every int64 h, INT64_MIN included
            where.append("cardinal_hash IS NOT NULL AND abs(cardinal_hash % ?) = ?")
            params += [size, member]
        if correlation:
            # Message DB semantics: category(metadata.correlationStreamName) == correlation
            where.append(
                "(SELECT CASE WHEN instr(c, '-') > 0 THEN substr(c, 1, instr(c, '-') - 1) "
                "ELSE c END FROM (SELECT json_extract(metadata, '$.correlationStreamName') AS c)"
                ") = ?"
            )
            params.append(correlation)
        params.append(_unlimited(batch_size))
        return self._messages(
            f"SELECT {_COLS} FROM messages WHERE {' AND '.join(where)} "
            "ORDER BY global_position LIMIT ?",
            tuple(params),
        )

    def category_head(self, category):
        if category == "":
            return self.conn.execute("SELECT max(global_position) FROM messages").fetchone()[0]
        return self.conn.execute(
            "SELECT max(global_position) FROM messages WHERE category = ?", (category,)
        ).fetchone()[0]

    # --- listings (ns.streams / ns.categories / counts) --------------------------------------
    def list_streams(self, prefix: str = "", cursor: str = "", limit: int = 100) -> list[dict]:
        """Streams sorted by name (byte order) after ``cursor``, names starting with ``prefix``
        (exact, case-sensitive prefix: no LIKE wildcards). Rows: stream, version, lastActivity."""
        from ..domain.message import format_time

        sql = ("SELECT stream_name, max(position), max(time) FROM messages "
               "WHERE stream_name > ?")
        params: list = [cursor]
        if prefix:
            sql += " AND substr(stream_name, 1, ?) = ?"
            params += [len(prefix), prefix]
        sql += " GROUP BY stream_name ORDER BY stream_name LIMIT ?"
        params.append(limit)
        params = _fit(params)
        return [
            {"lastActivity": format_time(t), "stream": s, "version": v}
            for s, v, t in self.conn.execute(sql, params)
        ]

    def list_categories(self) -> list[dict]:
        """Rows: category, messageCount, streamCount; sorted by category."""
        return [
            {"category": c, "messageCount": n, "streamCount": s}
            for c, n, s in self.conn.execute(
                "SELECT category, count(*), count(DISTINCT stream_name) FROM messages "
                "GROUP BY category ORDER BY category"
            )
        ]

    def message_count(self) -> int:
        return self.conn.execute("SELECT count(*) FROM messages").fetchone()[0]

    # --- import keeping positions (eventodb import, /import) ---------------------------------
    def import_records(self, records, *, force: bool = False, batch_size: int = 1000,
                       on_batch=None, atomic: bool = False) -> int:
        """Insert ``Message`` records as given (ids, positions, global positions, times kept),
        in transactions of ``batch_size``. ``force`` first deletes every message. A unique
        violation raises ``StoreError`` naming the clash; earlier batches stay committed (as the
        server's /import does). ``on_batch(imported, last_gpos)`` after each full batch.

        ``atomic``: the whole import (the ``force`` delete included) is one transaction, so any
        error (a bad record raised by ``records``, a clash, a full disk, Ctrl-C) leaves the store
        exactly as it was; ``on_batch`` then reports rows inserted, not yet committed."""
        c = self.conn
        self._cache_dv = None  # writes below bypass the version cache
        total = 0
        batch: list = []

        def flush():
            nonlocal total
            rows = []
            for m in batch:
                rows.append((m.global_position, m.id, m.stream_name, m.type, m.position, m.data,
                             m.metadata, m.time, category_of(m.stream_name),
                             stream_hash(m.stream_name),
                             row_checksum(m.id, m.stream_name, m.type, m.position,
                                          m.global_position, m.data, m.metadata, m.time)))
            if not atomic:
                self._begin()
            try:
                c.executemany(_INSERT, rows)
                if not atomic:
                    self._commit()
            except sqlite3.IntegrityError as e:
                self._rollback()
                raise StoreError(f"import clashes with stored messages: {e}") from None
            except BaseException:
                self._rollback()
                raise
            total += len(rows)
            last = batch[-1].global_position
            batch.clear()
            return last

        if force or atomic:
            self._begin()
        try:
            if force:
                c.execute("DELETE FROM messages")
                if not atomic:
                    self._commit()
            for m in records:
                batch.append(m)
                if len(batch) >= batch_size:
                    last = flush()
                    if on_batch:
                        on_batch(total, last)
            if batch:
                flush()
            if atomic:
                self._commit()
        except sqlite3.OperationalError as e:
            self._rollback()
            raise self._write_error(e, total if not atomic else 0) from None
        except BaseException:
            self._rollback()
            raise
        return total
