"""Issue 12 item "local writes at the raw limit, durable at exit": a bulk ``write --file`` on a
local store runs with ``synchronous=NORMAL`` and few checkpoints, and ends with everything in
the database file itself (checkpointed and synced), not only in the write-ahead log.

(``kill -9`` mid-run plus ``--resume`` holding every line once is
tests/test_resume.py::test_resume_after_sigkill_local_store_10_times, which runs the same bulk
path.)"""

from __future__ import annotations

import json
import os
import sqlite3
from urllib.parse import quote

from eventodb_cli.domain.message import _dumps, _dumps_parsed, new_message_from_record
from eventodb_cli.services.writes import write_ndjson
from eventodb_cli.store.local import LocalStore


def _lines(n: int) -> list[bytes]:
    return [json.dumps({"stream": f"bulk-{i % 997}", "type": "T",
                        "data": {"i": i, "pad": "x" * 200}}).encode() + b"\n"
            for i in range(n)]


def _rows_in_main_file(path: str) -> int:
    """Rows the database file holds by itself (``immutable=1`` ignores the WAL)."""
    uri = "file:" + quote(os.path.abspath(path)) + "?immutable=1"
    conn = sqlite3.connect(uri, uri=True)
    try:
        return conn.execute("SELECT count(*) FROM messages").fetchone()[0]
    finally:
        conn.close()


def test_bulk_write_is_in_the_database_file_when_it_returns(tmp_path):
    path = str(tmp_path / "s.db")
    f = tmp_path / "in.ndjson"
    lines = _lines(20_001)  # the last batch: one message, too small for an autocheckpoint
    f.write_bytes(b"".join(lines))
    store = LocalStore(path, create=True)
    try:
        with open(f, "rb") as fh:
            summary = write_ndjson(store, fh, file=str(f))
        assert summary.written == 20_001
        assert summary.batches == 3  # the default batch is 10,000 messages
        # the store is still open (no close-time checkpoint): the run itself made it durable
        assert _rows_in_main_file(path) == 20_001
        # and the connection is back to its everyday settings
        assert store.conn.execute("PRAGMA synchronous").fetchone()[0] == 1  # NORMAL
        assert store.conn.execute("PRAGMA wal_autocheckpoint").fetchone()[0] == 1000
    finally:
        store.close()


def test_bulk_write_stopped_by_a_bad_line_keeps_earlier_batches_durable(tmp_path):
    path = str(tmp_path / "s.db")
    f = tmp_path / "in.ndjson"
    f.write_bytes(b"".join(_lines(2_500)) + b"{not json\n")
    store = LocalStore(path, create=True)
    try:
        with open(f, "rb") as fh:
            try:
                write_ndjson(store, fh, batch_size=1_000, file=str(f))
            except Exception as e:  # BatchFailed: the bad line
                assert "line 2501" in str(e)
            else:
                raise AssertionError("the bad line was accepted")
        assert _rows_in_main_file(path) == 2_000
    finally:
        store.close()


def test_the_fast_encoder_is_byte_identical():
    values = [
        {"b": 1, "a": [1.5, 1e16, -0.0, 2**63, None, True, False]},
        {"é": "\u2028\x7f\x01\n\"\\", "z": {"y": {"x": []}}, "": ""},
        {"f": 1e-7, "g": 123456789.123456789, "big": 10**40},
    ]
    for v in values:
        assert _dumps_parsed(v) == _dumps(v)
    m = new_message_from_record({"stream": "s-1", "type": "T", "data": values[1]})
    assert m.data == _dumps(values[1])
