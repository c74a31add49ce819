"""Rows computed ahead of the write, for ``write --file`` on a local store with a parser process
(``services/bulkproc.py``).

The parser process builds every column of a batch's rows (global positions from the head read
when the run started, stream positions counted from the start of the run, time, checksum)
while this process writes the previous batch. Those rows are exactly what
``LocalStore.write_batch`` would have built as long as no other connection has committed since
the run read the head: this module checks that (``PRAGMA data_version``, inside the write
lock: ``begin_rows``) and otherwise writes nothing and returns False, and the caller writes the
batch the ordinary way (``write_batch``: positions read from the store, the same errors).

Stream positions: a stream the run has not seen before starts at position 0 in the parser
process's count; on a store that was not empty when the run started, the stream's position in
the store is looked up here (one statement for the batch's new streams) and added.
"""

from __future__ import annotations

import json
import sqlite3

from ..domain.integrity import row_checksum
from .local import _INSERT

# the highest position of each stream of a JSON array (an index seek each)
_VERSIONS = ("SELECT j.value, (SELECT max(position) FROM messages WHERE stream_name = j.value) "
             "FROM json_each(?) AS j")


def snapshot(store) -> tuple[int, int]:
    """``(data_version, head)`` when the run starts; the store's own caches agree with them."""
    c = store.conn
    dv = c.execute("PRAGMA data_version").fetchone()[0]
    head = c.execute("SELECT coalesce(max(global_position), 0) FROM messages").fetchone()[0]
    store._versions.clear()
    store._head = head
    store._cache_dv = dv
    return dv, head


def begin_rows(store, snap_dv: int, first: int) -> bool:
    """Open the write transaction of a batch computed ahead starting at global position
    ``first``; False (no transaction) when another connection committed since ``snap_dv``."""
    c = store.conn
    store._begin()
    with store._undo_on_error():
        if c.execute("PRAGMA data_version").fetchone()[0] != snap_dv or store._head != first - 1:
            store._rollback()
            return False
    return True


def insert_rows(store, rows: list, new_streams: list[str], expected: dict | None, empty: bool,
                offsets: dict) -> bool:
    """Insert a chunk of the open batch; False (the batch rolled back) when an expected version
    does not match or a row clashes: the caller then writes the batch with ``write_batch``,
    which raises the exact error. ``offsets`` (stream -> its position in the store before the
    run plus one, for streams that had messages) grows with each chunk."""
    c = store.conn
    try:
        with store._undo_on_error():
            if new_streams and not empty:
                for s, got in c.execute(_VERSIONS, (json.dumps(new_streams),)):
                    if got is not None:
                        offsets[s] = got + 1
            if offsets:
                rows = [_shifted(r, offsets[r[2]]) if r[2] in offsets else r for r in rows]
            if expected:
                for i, ev in expected.items():
                    if rows[i][4] - 1 != ev:
                        store._rollback()
                        return False
            c.executemany(_INSERT, rows)
    except sqlite3.IntegrityError:  # rolled back
        return False
    return True


def commit_rows(store, progress: dict | None, last: int, snap_dv: int) -> None:
    """Commit the open batch (with ``progress``) whose last global position is ``last``."""
    with store._undo_on_error():
        if progress is not None:
            store._record_progress(progress)
        store._commit()
    store._versions.clear()  # positions of this batch are not in the cache: read them again
    store._head = last
    store._cache_dv = snap_dv  # checked inside this transaction's write lock


def _shifted(r: tuple, off: int) -> tuple:
    pos = r[4] + off
    return (r[0], r[1], r[2], r[3], pos, r[5], r[6], r[7], r[8], r[9],
            row_checksum(r[1], r[2], r[3], pos, r[0], r[5], r[6], r[7]))
