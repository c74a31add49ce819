"""Issue 12 export: a local store's lines are made in SQLite (``store/local_export``) and must be
byte for byte what the ordinary path (``select_messages`` + ``to_record_line``) writes, for every
awkward value a store can hold; one snapshot; an export stopped early ends its read."""

from __future__ import annotations

import io
import sqlite3
import threading

import pytest

from eventodb_cli.domain.message import Message
from eventodb_cli.errors import StoreError
from eventodb_cli.services import transfer
from eventodb_cli.store import local_export
from eventodb_cli.store.local import LocalStore

ODD = ['quote " in', "back\\slash", "new\nline", "tab\t", "\x01 sep", "\x1f unit", "\x7f del",
       "\u2028\u2029", "é ☃ \U0001f600", "solidus /", "{\"id\":\"fake\"}"]
TIMES = [0, 1, -1, -1_000_000_000, -1_500_000_000, -86_400 * 10**9 * 365 * 200 - 123,
         1_700_000_000 * 10**9, 1_700_000_000_123_456_789, 1_700_000_000_120_000_000,
         1_700_000_000 * 10**9 + 100, 9_000_000_000 * 10**9 + 999_999_999]
DATA = ['{"a":1}', '{"big":123456789012345678901234567890,"neg":-9223372036854775809}',
        '{"s":"é \\" \\\\ \\n \\u0001 \\u2028 ☃","n":{"x":[1,2.5,null,true,{"y":[]}]}}',
        '{}', '{"f":1e+300,"g":-0.0}']


def _messages(n: int, odd_every: int = 0) -> list[Message]:
    """Clean messages, with an awkward one every ``odd_every`` (0: none)."""
    out = []
    for i in range(n):
        gpos = 3 * i + 2  # gaps: global positions are not dense
        odd = ODD[(i // max(odd_every, 1)) % len(ODD)] if odd_every and i % odd_every == 0 \
            else ""
        stream = f"cat{i % 3}-{i % 5}{odd if i % 2 else ''}"
        mtype = f"Type{odd if i % 4 == 0 else ''}"
        mid = f"id-{i}{odd if i % 3 == 0 else ''}"
        meta = None if i % 2 else ('{"correlationStreamName":"saga-1"}' if i % 4 else "null")
        out.append(Message(mid, stream, mtype, i, gpos, DATA[i % len(DATA)], meta,
                           TIMES[(i // 2) % len(TIMES)]))
    return out


def _store(path, msgs: list[Message]) -> str:
    with LocalStore(path, create=True) as s:
        s.import_records(iter(msgs), batch_size=500)
    return str(path)


def _ordinary(store, cats=(), since=1, until=None, batch=1000) -> tuple[bytes, object]:
    buf = io.BytesIO()
    res = transfer.write_records(transfer.select_messages(store, cats, since, until, batch), buf)
    return buf.getvalue(), res


def _fast(store, cats=(), since=1, until=None, batch=1000) -> tuple[bytes, object]:
    buf = io.BytesIO()
    res = transfer._records_writer(store, list(cats), since, until, batch, None)(buf)
    return buf.getvalue(), res


def _same(a, b):
    (ba, ra), (bb, rb) = a, b
    assert ba == bb  # every byte
    assert (ra.count, ra.first, ra.last, ra.nbytes, ra.digest) == \
        (rb.count, rb.first, rb.last, rb.nbytes, rb.digest)


@pytest.fixture
def counted(monkeypatch):
    """How many chunks took SQLite's lines and how many the ordinary path."""
    seen = {"fast": 0, "ordinary": 0}
    lines, ordinary = local_export._lines, local_export._ordinary

    def _lines(blob, k, times):
        out = lines(blob, k, times)
        seen["fast" if out is not None else "ordinary"] += 1
        return out

    def _ordinary_(store, category, first, k):
        return ordinary(store, category, first, k)

    monkeypatch.setattr(local_export, "_lines", _lines)
    monkeypatch.setattr(local_export, "_ordinary", _ordinary_)
    return seen


@pytest.mark.parametrize("batch", [1, 7, 100, 10_000])
def test_awkward_values_give_the_same_bytes(tmp_path, batch, counted):
    msgs = _messages(700, odd_every=50)
    with LocalStore(_store(tmp_path / "s.db", msgs)) as st:
        _same(_fast(st, batch=batch), _ordinary(st, batch=batch))
        for cats, since, until in ((["cat1"], 1, None), ([], 40, 1000), (["cat2"], 5, 6),
                                   (["nothing"], 1, None), ([], 10**30, None)):
            _same(_fast(st, cats, since, until, batch), _ordinary(st, cats, since, until, batch))
    assert counted["ordinary"]
    assert counted["fast"] or batch == 10_000  # small chunks: both kinds were made


def test_every_awkward_value_on_its_own(tmp_path):
    """One awkward value per message, each alone in its chunk: no escape goes unnoticed."""
    msgs = []
    for i, odd in enumerate(ODD):
        for field in range(3):
            g = len(msgs) + 1
            names = ["id-%d" % g, "cat-1", "T"]
            names[field] = names[field] + odd
            msgs.append(Message(*names, g, g, '{"x":1}', None, 1_700_000_000 * 10**9 + g))
    with LocalStore(_store(tmp_path / "s.db", msgs)) as st:
        for batch in (1, 2, 1000):
            _same(_fast(st, batch=batch), _ordinary(st, batch=batch))


def test_the_clean_path_is_taken_and_exact(tmp_path, counted):
    msgs = _messages(3_000)
    with LocalStore(_store(tmp_path / "s.db", msgs)) as st:
        fast = _fast(st, batch=1000)
        _same(fast, _ordinary(st))
    assert counted == {"fast": 3, "ordinary": 0}
    assert fast[0].count(b"\n") == 3_000 and b"\x01" not in fast[0]


def test_stored_values_the_writers_never_make(tmp_path, counted):
    """A NULL data, text that is not UTF-8 and a time SQLite holds as text: the chunk goes the
    ordinary way (same bytes, or the same error)."""
    path = _store(tmp_path / "s.db", _messages(30))
    with LocalStore(path) as st:
        st.conn.execute("UPDATE messages SET data = NULL WHERE global_position = 11")
        _same(_fast(st, batch=4), _ordinary(st, batch=4))
        st.conn.execute("UPDATE messages SET stream_name = CAST(X'6361742D31FF' AS TEXT) "
                        "WHERE global_position = 20")
        with pytest.raises(StoreError) as ordinary_error:
            _ordinary(st, batch=4)
        with pytest.raises(StoreError) as fast_error:
            _fast(st, batch=4)
        assert str(fast_error.value) == str(ordinary_error.value)
        assert not st.conn.in_transaction
    assert counted["ordinary"] >= 2


def test_one_snapshot_while_writers_go_on(tmp_path):
    msgs = _messages(250)
    path = _store(tmp_path / "s.db", msgs)
    with LocalStore(path) as st:
        chunks = local_export.record_chunks(st, "", 1, None, 100)
        data, k, first, last = next(chunks)
        assert (k, first) == (100, 2) and st.conn.in_transaction
        other = sqlite3.connect(path, timeout=5, isolation_level=None)
        other.execute("INSERT INTO messages (global_position, id, stream_name, type, position, "
                      "data, metadata, time, category) VALUES (1000, 'late', 'cat0-1', 'T', 99,"
                      " '{}', NULL, 5, 'cat0')")  # a writer is not blocked
        other.execute("DELETE FROM messages WHERE global_position = 500")  # nor this
        rest = list(chunks)
        other.close()
        assert not st.conn.in_transaction
        body = data + b"".join(c[0] for c in rest)
        assert body.count(b"\n") == 250 and b'"late"' not in body
        assert b'"gpos":500,' in body
        assert sum(c[1] for c in rest) == 150 and rest[-1][3] == msgs[-1].global_position


def test_a_stopped_export_ends_its_read(tmp_path):
    path = _store(tmp_path / "s.db", _messages(5_000))
    before = threading.active_count()
    with LocalStore(path) as st:
        chunks = local_export.record_chunks(st, "", 1, None, 1000)
        next(chunks)  # the helper is reading the next chunk now
        chunks.close()
        assert not st.conn.in_transaction and threading.active_count() == before

        def stop(count, gpos):
            if count >= 2000:
                raise KeyboardInterrupt

        out = tmp_path / "x.ndjson"
        with pytest.raises(KeyboardInterrupt):
            transfer.export(st, str(out), batch_size=1000, on_progress=stop)
        assert not st.conn.in_transaction and threading.active_count() == before
        assert sorted(p.name for p in tmp_path.iterdir()) == ["s.db", "s.db-shm", "s.db-wal"] \
            or not out.exists()
        doc = transfer.export(st, str(out), batch_size=1000)  # the store reads on as before
        assert doc["count"] == 5_000
        assert out.read_bytes() == _ordinary(st)[0]


def test_time_texts_are_format_time():
    import random

    from eventodb_cli.domain.message import format_time

    rng = random.Random(12)
    values = [0, 1, 9, 10, 999_999_999, 1_000_000_000, 1_000_000_001, 9_999_999_999,
              10_000_000_000, 10**18, 1_700_000_000_100_000_000, 253_402_300_799_999_999_999,
              -1, -999_999_999, -1_000_000_000, -1_000_000_001, -62_135_596_800 * 10**9]
    values += [rng.randrange(-10**19, 10**19) for _ in range(5_000)]
    values += [rng.randrange(10**9) * 10**rng.randrange(10) for _ in range(2_000)]
    texts = local_export._TimeTexts()
    for _ in range(2):  # misses, then hits
        for v in values:
            assert texts[str(v).encode()] == (format_time(v) + '"}').encode(), v
