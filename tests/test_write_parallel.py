"""Issue 12 acceptance 4: ``write --file`` on a local store with a parser process
(services/bulkproc.py) writes what the in-process path writes, fails the same way, and falls
back to the ordinary write when another connection writes meanwhile. Real SQLite files, real
forks. (kill -9 of the parent, no child left behind and --resume exactly once:
tests/test_resume.py::test_resume_after_sigkill_local_store_10_times.)"""

from __future__ import annotations

import json
import os
import sqlite3
import uuid

import pytest

from eventodb_cli.domain.integrity import row_checksum
from eventodb_cli.domain.message import new_message
from eventodb_cli.errors import BatchFailed
from eventodb_cli.services.writes import write_ndjson
from eventodb_cli.store.local import LocalStore

STREAMS = 37


def _lines(n: int) -> list[str]:
    out = []
    for i in range(n):
        rec: dict = {"stream": f"par-{i % STREAMS}", "type": "T",
                     "data": {"i": i, "é": "ü\u2028"}}
        if i % 5 == 0:
            rec["id"] = str(uuid.UUID(int=i + 1))
        if i % 7 == 0:
            rec["metadata"] = {"correlationStreamName": "other-1", "n": 1.5}
        if i % 11 == 0:
            rec["type"] = "U"
        out.append(json.dumps(rec))
        if i % 13 == 0:
            out.append("   ")  # a blank line is skipped
    return out


def _seed(path: str) -> None:
    """A store that already holds messages of some of the streams (positions continue)."""
    with LocalStore(path, create=True) as s:
        s.write_batch([new_message(f"par-{k}", "Seed", {"k": k}) for k in range(0, STREAMS, 3)]
                      + [new_message("par-1", "Seed", {})])


def _rows(path: str) -> list[tuple]:
    conn = sqlite3.connect(path)
    try:
        rows = conn.execute("SELECT global_position, id, stream_name, type, position, data, "
                            "metadata, time, category, cardinal_hash, checksum FROM messages "
                            "ORDER BY global_position").fetchall()
        progress = conn.execute("SELECT lines, bytes, digest, written, done FROM "
                                "write_progress").fetchall()
    finally:
        conn.close()
    for r in rows:  # every checksum is the row's own
        assert r[10] == row_checksum(r[1], r[2], r[3], r[4], r[0], r[5], r[6], r[7])
    return rows, progress


def _comparable(rows):
    """Rows without what is random or a clock (ids the tool made up, time, checksum)."""
    own = {str(uuid.UUID(int=i + 1)) for i in range(0, 100_000, 5)}
    return [(g, mid if mid in own else None, s, t, p, d, m, c, h)
            for g, mid, s, t, p, d, m, _time, c, h, _sum in rows]


def _write(path: str, f, parallel: bool, **kw):
    with LocalStore(path, create=True) as s, open(f, "rb") as fh:
        return write_ndjson(s, fh, file=str(f), parallel=parallel, **kw)


@pytest.mark.parametrize("seeded,chunk", [(False, 2_000), (True, 2_000), (True, 150)])
def test_both_paths_write_the_same_rows(tmp_path, monkeypatch, seeded, chunk):
    from eventodb_cli.services import bulkproc

    monkeypatch.setattr(bulkproc, "CHUNK", chunk)  # 150: batches of 400 in 3 chunks
    f = tmp_path / "in.ndjson"
    f.write_text("\n".join(_lines(3_000)) + "\n\n")
    got = {}
    for parallel in (False, True):
        path = str(tmp_path / f"{parallel}.db")
        if seeded:
            _seed(path)
        summary = _write(path, f, parallel, batch_size=400)
        rows, progress = _rows(path)
        got[parallel] = (summary.to_dict() | {"seconds": 0}, _comparable(rows), progress)
    assert got[True] == got[False]
    summary, rows, progress = got[True]
    assert summary["written"] == 3_000 and summary["batches"] == 8
    assert progress == [(3_000 + 3_000 // 13 + 2, f.stat().st_size, progress[0][2], 3_000, 1)]
    assert len({r[0] for r in rows}) == len(rows)


@pytest.mark.parametrize("chunk", [2_000, 120])  # 120: the bad line comes after 2 chunks
@pytest.mark.parametrize("bad,reason", [
    ('{"stream":"par-1","type":"T","data":{"a":NaN}}', "NaN is not a JSON number"),
    ('{"stream":"par-1","type":"T","data":{"a":1}', "invalid JSON"),
    ('{"type":"T","data":{}}', "record has no 'stream'"),
    ('{"stream":"par-1","type":"T","data":{},"expectedVersion":0}', "version"),
    ('{"stream":"par-1","type":"T","data":' + "[" * 3000 + "]" * 3000 + "}",
     "nested too deeply"),  # a RecursionError: exit 1, and differently worded on each path
])
def test_a_bad_line_mid_run_fails_the_same_on_both_paths(tmp_path, monkeypatch, bad, reason,
                                                         chunk):
    from eventodb_cli.services import bulkproc

    monkeypatch.setattr(bulkproc, "CHUNK", chunk)  # the forked child inherits it
    lines = _lines(2_600)
    lines.insert(2_300, bad)  # line 2,301 of the file (after 177 blank lines of _lines)
    f = tmp_path / "in.ndjson"
    f.write_text("\n".join(lines) + "\n")
    got = {}
    for parallel in (False, True):
        path = str(tmp_path / f"{parallel}.db")
        with pytest.raises(BatchFailed) as e:
            _write(path, f, parallel, batch_size=500)
        rows, progress = _rows(path)
        got[parallel] = (e.value.message, e.value.exit_code, e.value.summary.written,
                         e.value.summary.lines_done, _comparable(rows), progress)
    assert got[True] == got[False]
    message, code, written, _lines_done, rows, _ = got[True]
    assert "line 2301:" in message and reason in message, message
    assert code == (3 if "expectedVersion" in bad else 2)
    assert written == len(rows) and written % 500 == 0 and 0 < written < 2_300


def test_another_writer_during_the_run_sends_batches_the_ordinary_way(tmp_path):
    """A second connection commits between two batches: the rows computed ahead no longer
    hold, the run writes the rest through write_batch (positions read from the store), and
    the store ends with every line once, positions gapless per stream."""
    f = tmp_path / "in.ndjson"
    f.write_text("\n".join(_lines(2_000)) + "\n")
    path = str(tmp_path / "s.db")
    other = LocalStore(path, create=True)
    calls = []

    def meanwhile(_bytes, _written):
        calls.append(1)
        if len(calls) in (2, 3):
            other.write(new_message("par-5", "Other", {}))

    try:
        with LocalStore(path) as s, open(f, "rb") as fh:
            summary = write_ndjson(s, fh, 300, on_progress=meanwhile, file=str(f), parallel=True)
    finally:
        other.close()
    assert summary.written == 2_000 and summary.batches == 7
    rows, progress = _rows(path)
    assert len(rows) == 2_002 and [r[0] for r in rows] == list(range(1, 2_003))
    assert progress[0][3] == 2_000 and progress[0][4] == 1
    seen = sorted(json.loads(r[5])["i"] for r in rows if r[3] != "Other")
    assert seen == list(range(2_000))
    for k in range(STREAMS):
        positions = [r[4] for r in rows if r[2] == f"par-{k}"]
        assert positions == list(range(len(positions))), k


TRICKY = [
    b'{"stream":"a-1","type":"T","data":{}}\n',
    b'  {"stream":"a-1","type":"T","data":{}}\n',
    b'{"stream":"a-1","type":"T","data":{}} \t\r\n',
    b'{"stream":"a-1","type":"T","data":{}}\r\n',
    b'{"stream":"a-1","type":"T","data":{}} x\n',
    b'{"stream":"a-1","type":"T","data":{}}{}\n',
    b'{"stream":"a-1","type":"T","data":{"s":"\\u00e9\\ud83d\\ude00"}}\n',
    b'{"stream":"a-1","type":"T","data":{"s":"\\ud800"}}\n',
    b'{"stream":"a-1","type":"T","data":{"\\udfff":1}}\n',
    b'{"stream":"a-1","type":"T","data":{"n":NaN}}\n',
    b'{"stream":"a-1","type":"T","data":{"n":-Infinity}}\n',
    b'{"stream":"a-1","type":"T","data":{"n":1e999}}\n',
    b'{"stream":"a-1","type":"T","data":{"n":' + b"9" * 5000 + b'}}\n',
    b'{"stream":"a-1","type":"T","data":{"n":1.5e-400,"m":-0,"k":12345678901234567890}}\n',
    b'\xef\xbb\xbf{"stream":"a-1","type":"T","data":{}}\n',
    b'{"stream":"a-1","type":"T","data":{"s":"\xff"}}\n',
    b'{"stream":"a-1","type":"T","data":{"a":1,"a":2}}\n',
    b'[{"stream":"a-1","type":"T","data":{}}]\n',
    b'{"stream":"a-1","type":"T","data":{"s":"tab\there"}}\n',
    b'"just a string"\n',
    b'\x0c\n',
    b'{"stream":"a-1","type":"T","data":{}',
]


@pytest.mark.parametrize("line", TRICKY)
def test_each_line_is_read_as_strictjson_reads_it(line):
    """The reading loop's shortcut past strictjson.loads gives the same message or the same
    refusal for every kind of line (bytes from a file, and the same line as text)."""
    from eventodb_cli.domain import strictjson
    from eventodb_cli.domain.message import new_message_from_record
    from eventodb_cli.services.bulkparse import BadLine, LineBatches

    def reference(raw):
        if not raw.strip():
            return "blank"
        try:
            rec = strictjson.loads(raw)
        except ValueError as e:
            return f"invalid JSON: {strictjson.error_text(e)}"
        try:
            return new_message_from_record(rec)
        except ValueError as e:
            return str(e)

    variants = [line]
    try:
        variants.append(line.decode("utf-8"))
    except UnicodeDecodeError:
        pass
    for raw in variants:
        try:
            got = [m for batch, _ in LineBatches([raw], 1) for m in batch] or ["blank"]
        except BadLine as e:
            got = [e.reason]
        assert got == [reference(raw)], raw


def test_a_parser_process_that_dies_is_reported_and_resume_finishes(tmp_path):
    """The parser process killed mid-run (the OOM killer, a stray kill): the run stops with one
    line saying what was written and how to resume, the parent reaps it, --resume finishes."""
    import signal
    import subprocess
    import time

    from conftest import exe_path

    f = tmp_path / "in.ndjson"
    f.write_text("\n".join(_lines(150_000)) + "\n")
    store = str(tmp_path / "s.db")
    args = [exe_path(), "write", "--file", str(f), "--store", store, "--batch-size", "1000",
            "--no-progress"]
    p = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    kids: list[str] = []
    deadline = time.monotonic() + 20
    while not kids and p.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
        try:
            with open(f"/proc/{p.pid}/task/{p.pid}/children") as fh:
                kids = fh.read().split()
        except OSError:
            pass
    assert kids, "no parser process"
    time.sleep(0.3)
    os.kill(int(kids[0]), signal.SIGKILL)
    out, err = p.communicate(timeout=60)
    assert p.returncode == 1, (out, err)
    err = err.strip()
    assert len(err.splitlines()) == 1 and "parser process ended unexpectedly" in err, err
    assert "killed by signal 9" in err and "messages were written" in err, err
    assert f"eventodb write --file {f} --resume --store {store}" in err, err
    assert not os.path.exists(f"/proc/{kids[0]}")  # reaped
    r = subprocess.run([*args, "--resume"], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    rows, progress = _rows(store)
    assert sorted(json.loads(r[5])["i"] for r in rows) == list(range(150_000))
    assert progress[0][3:] == (150_000, 1)


def test_expected_versions_and_own_ids_on_a_resumed_run_match_the_in_process_path(tmp_path):
    """Lines with a (right) expectedVersion are checked against the positions computed ahead;
    a resumed run whose lines carry ids an earlier run wrote skips them (the batch falls back
    to the ordinary write, which recognises them), on both paths alike."""
    counts: dict[str, int] = {}
    lines = []
    for i in range(3_000):
        stream = f"par-{i % STREAMS}"
        rec = {"stream": stream, "type": "T", "data": {"i": i}, "id": str(uuid.UUID(int=i + 1))}
        if i % 10 == 0 and i >= 1_500:  # (a written line's expected version is stale)
            rec["expectedVersion"] = counts.get(stream, 0) - 1
        counts[stream] = counts.get(stream, 0) + 1
        lines.append(json.dumps(rec))
    f = tmp_path / "in.ndjson"
    f.write_text("\n".join(lines) + "\n")
    head = tmp_path / "head.ndjson"
    head.write_text("\n".join(lines[:1_234]) + "\n")
    got = {}
    for parallel in (False, True):
        path = str(tmp_path / f"{parallel}.db")
        assert _write(path, head, False).written == 1_234
        summary = _write(path, f, parallel, batch_size=500, resume=True)
        rows, _ = _rows(path)
        got[parallel] = (summary.to_dict() | {"seconds": 0}, _comparable(rows))
    assert got[True] == got[False]
    assert got[True][0]["written"] == 3_000 - 1_234 and got[True][0]["alreadyWritten"] == 1_234
    assert [json.loads(r[5])["i"] for r in got[True][1]] == list(range(3_000))


@pytest.mark.parametrize("how", ["many streams", "no fork"])
def test_the_ways_around_rows_computed_ahead_write_the_same_rows(tmp_path, monkeypatch, how):
    """Past MAX_STREAMS streams the parser process sends messages, not rows (its memory stays
    bounded) and the parent writes them the ordinary way; when no process can be forked the
    run reads the file itself. Either way: the rows of the in-process path."""
    import errno

    from eventodb_cli.services import bulkproc

    f = tmp_path / "in.ndjson"
    f.write_text("\n".join(_lines(2_000)) + "\n")
    got = {}
    for parallel in (False, True):
        if parallel and how == "many streams":
            monkeypatch.setattr(bulkproc, "MAX_STREAMS", 5)  # the forked child inherits it
        if parallel and how == "no fork":
            def no_fork():
                raise OSError(errno.EAGAIN, "Resource temporarily unavailable")
            monkeypatch.setattr(os, "fork", no_fork)
        path = str(tmp_path / f"{parallel}.db")
        summary = _write(path, f, parallel, batch_size=300)
        rows, progress = _rows(path)
        got[parallel] = (summary.to_dict() | {"seconds": 0}, _comparable(rows), progress)
    assert got[True] == got[False]
    assert got[True][0]["written"] == 2_000


def test_a_full_disk_mid_batch_names_the_whole_batch(tmp_path, monkeypatch):
    """A full disk while a batch written in chunks of 100 rows is inserted or committed: the
    batch is rolled back and the error names all its lines (as the in-process path does)."""
    import re
    import subprocess

    from eventodb_cli.errors import BatchFailed
    from eventodb_cli.services import bulkproc

    tiny = tmp_path / "tiny"
    tiny.mkdir()
    p = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(tiny)],
                       capture_output=True, text=True)
    if p.returncode != 0:
        pytest.skip(f"cannot mount a 2 MB tmpfs here: {p.stderr.strip()}")
    try:
        monkeypatch.setattr(bulkproc, "CHUNK", 100)
        f = tmp_path / "in.ndjson"
        f.write_text("".join(json.dumps({"stream": f"full-{i % 20}", "type": "T",
                                         "data": {"i": i, "pad": "x" * 200}}) + "\n"
                             for i in range(20_000)))
        path = str(tiny / "s.db")
        with pytest.raises(BatchFailed) as e:
            _write(path, f, True, batch_size=500)
        msg = e.value.message
        assert "disk full" in msg and "the store is intact" in msg, msg
        done = int(re.search(r"every line up to (\d+)", msg).group(1))
        assert done % 500 == 0 and f"lines {done + 1}-{done + 500} were not" in msg, msg
        with LocalStore(path) as s:
            assert s.message_count() == done == e.value.summary.written
    finally:
        subprocess.run(["umount", str(tiny)], capture_output=True)


def test_the_executable_reports_a_bad_line_of_a_large_file_and_resumes(tmp_path):
    """End to end on a file large enough for the parser process: exit 2, one line naming the
    bad line, what was written and the resume command; the fixed file resumes exactly once."""
    import subprocess

    from conftest import exe_path

    lines = [json.dumps({"stream": f"par-{i % STREAMS}", "type": "T",
                         "data": {"i": i, "note": "a line of about a hundred bytes"}})
             for i in range(14_000)]
    lines[9_499] = '{"stream":"par-1","type":"T","data":{"i":9499}'
    f = tmp_path / "in.ndjson"
    f.write_text("\n".join(lines) + "\n")
    assert f.stat().st_size >= (1 << 20)  # services/bulkproc.MIN_BYTES
    store = str(tmp_path / "s.db")
    args = [exe_path(), "write", "--file", str(f), "--store", store, "--batch-size", "4000"]
    p = subprocess.run(args, capture_output=True, text=True, timeout=60)
    assert p.returncode == 2, p
    err = p.stderr.strip()
    assert len(err.splitlines()) == 1, err
    assert err.startswith("eventodb: error: line 9500: invalid JSON: "), err
    assert "8000 messages were written before it (lines 8001-9500 were not)" in err, err
    assert f"to write the rest exactly once: eventodb write --file {f} --resume" in err, err
    lines[9_499] = json.dumps({"stream": "par-1", "type": "T", "data": {"i": 9_499}})  # fixed
    f.write_text("\n".join(lines) + "\n")
    p = subprocess.run([*args, "--resume", "--format", "json"], capture_output=True, text=True,
                       timeout=60)
    assert p.returncode == 0, p.stderr
    assert json.loads(p.stdout)["written"] == 6_000
    rows, _ = _rows(store)
    assert [json.loads(r[5])["i"] for r in rows] == list(range(14_000))
