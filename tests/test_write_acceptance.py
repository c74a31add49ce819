"""Issue 2 acceptance: concurrent writers with --expected-version, and a failed batch."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import textwrap

from conftest import exe_path

from eventodb_cli.store.local import LocalStore

# One writer process: ``n`` writes to one stream, each ``stream version`` then ``write
# --expected-version``, retrying on a conflict. ``exe`` runs each command through the installed
# executable (a process per command); ``inproc`` runs the same click entry point inside this
# process (the same code path, exit codes and stderr, without ~2,000 process starts: the suite
# used to spend minutes here and hit the timeout on a busy machine).
WRITER = textwrap.dedent(
    """
    import json, subprocess, sys
    mode, exe, store, stream, n, tag = (sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4],
                                        int(sys.argv[5]), sys.argv[6])
    if mode == "inproc":
        from click.testing import CliRunner
        from eventodb_cli.cli.main import cli
        try:
            runner = CliRunner(mix_stderr=False)
        except TypeError:
            runner = CliRunner()

        def run(args):
            r = runner.invoke(cli, args, prog_name="eventodb")
            return r.exit_code, r.stdout, r.stderr
    else:
        def run(args):
            p = subprocess.run([exe, *args], capture_output=True, text=True)
            return p.returncode, p.stdout, p.stderr
    conflicts = other = 0
    written = 0
    while written < n:
        code, out, err = run(["stream", "version", stream, "--store", store, "--format", "json"])
        if code not in (0, 4):
            sys.exit("version failed: " + err)
        version = json.loads(out) if code == 0 else None
        expected = -1 if version is None else version
        code, out, err = run(["write", stream, "--type", "Counted", "--data",
                              json.dumps({"writer": tag, "n": written}),
                              "--expected-version", str(expected), "--store", store,
                              "--format", "json"])
        if code == 0:
            written += 1
        elif code == 3 and "Expected version" in err and err.count("\\n") == 1:
            conflicts += 1
        else:
            other += 1
            sys.exit(f"unexpected exit {code}: {err}")
    print(json.dumps({"conflicts": conflicts, "other": other}))
    """
)


def _race(tmp_path, mode: str, per_writer: int) -> list[int]:
    """4 processes x ``per_writer`` writes to one stream, retrying on conflict: positions
    0..4*per_writer-1 exactly, no duplicate ids, every conflict reported as exit 3 in one line."""
    store = str(tmp_path / "conc.db")
    # the first write creates the store; the race is on the stream, not on the file
    LocalStore(store, create=True).close()
    script = tmp_path / "writer.py"
    script.write_text(WRITER)
    procs = [subprocess.Popen([sys.executable, str(script), mode, exe_path(), store,
                               "counter-1", str(per_writer), f"w{i}"],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for i in range(4)]
    results = []
    for p in procs:
        out, err = p.communicate(timeout=120)
        assert p.returncode == 0, err
        results.append(json.loads(out))
    total = 4 * per_writer
    conn = sqlite3.connect(store)
    positions = [r[0] for r in conn.execute(
        "SELECT position FROM messages WHERE stream_name='counter-1' ORDER BY position")]
    assert positions == list(range(total))
    ids = [r[0] for r in conn.execute("SELECT id FROM messages")]
    assert len(ids) == len(set(ids)) == total
    per = dict(conn.execute(
        "SELECT json_extract(data,'$.writer'), count(*) FROM messages GROUP BY 1"))
    assert per == {f"w{i}": per_writer for i in range(4)}
    assert all(r["other"] == 0 for r in results)
    conflicts = [r["conflicts"] for r in results]
    print("conflicts per writer:", conflicts)
    return conflicts


def test_four_processes_expected_version(tmp_path):
    """4 processes x 250 writes through the CLI entry point: positions 0..999 exactly."""
    conflicts = _race(tmp_path, "inproc", 250)
    assert sum(conflicts) > 0  # 4 racing writers on one stream must have collided


def test_four_processes_expected_version_executable(tmp_path):
    """The same race through the installed executable, at 4 x 5 writes."""
    _race(tmp_path, "exe", 5)


def _ndjson_file(path, n, bad_line=None):
    with open(path, "w") as fh:
        for i in range(1, n + 1):
            if i == bad_line:
                fh.write('{"stream": "bulk-1", "type": "T", "data": {"i": \n')
            else:
                fh.write(json.dumps({"stream": f"bulk-{i % 17}", "type": "T",
                                     "data": {"i": i}}) + "\n")


def test_failed_batch_leaves_previous_batches(tmp_path, cli):
    """Bad JSON on line 5,001 of 10,000 with batch size 1,000: exactly the first 5,000 messages
    stay, and the error names line 5001."""
    store = str(tmp_path / "bulk.db")
    src = tmp_path / "in.ndjson"
    _ndjson_file(src, 10_000, bad_line=5001)
    r = cli("write", "--file", src, "--batch-size", 1000, "--store", store)
    assert r.exit_code == 2, r
    assert "line 5001" in r.stderr and "5000 messages were written" in r.stderr
    assert r.stderr.count("\n") == 1  # one line, no traceback
    conn = sqlite3.connect(store)
    assert conn.execute("SELECT count(*), min(global_position), max(global_position) "
                        "FROM messages").fetchone() == (5000, 1, 5000)
    got = [r[0] for r in conn.execute(
        "SELECT json_extract(data,'$.i') FROM messages ORDER BY global_position")]
    assert got == list(range(1, 5001))


def test_failed_batch_mid_batch_line(tmp_path, cli):
    """A bad record in the middle of a batch: that whole batch is left out."""
    store = str(tmp_path / "bulk.db")
    src = tmp_path / "in.ndjson"
    with open(src, "w") as fh:
        for i in range(1, 2501):
            rec = {"stream": f"s-{i}", "type": "T", "data": {"i": i}}
            if i == 2345:
                rec["data"] = [1, 2]  # data must be an object
            fh.write(json.dumps(rec) + "\n")
    r = cli("write", "--file", src, "--batch-size", 1000, "--store", store)
    assert r.exit_code == 2, r
    assert "line 2345: message.data must be an object" in r.stderr
    assert "lines 2001-2345 were not" in r.stderr
    assert LocalStore(store).message_count() == 2000


def test_conflict_inside_batch_rolls_back_batch(tmp_path, cli):
    store = str(tmp_path / "bulk.db")
    src = tmp_path / "in.ndjson"
    recs = [{"stream": "acct-1", "type": "T", "expectedVersion": -1},
            {"stream": "acct-1", "type": "T", "expectedVersion": 0},
            {"stream": "acct-2", "type": "T"},
            {"stream": "acct-1", "type": "T", "expectedVersion": 5}]
    src.write_text("".join(json.dumps(r) + "\n" for r in recs))
    r = cli("write", "--file", src, "--batch-size", 2, "--store", store)
    assert r.exit_code == 3, r
    assert "line 4:" in r.stderr and "Expected version 5, stream is at version 1" in r.stderr
    assert LocalStore(store).message_count() == 2


def test_stdin_bulk_and_summary(tmp_path, exe):
    store = str(tmp_path / "bulk.db")
    lines = "".join(json.dumps({"stream": f"cart-{i % 3}", "type": "Added", "data": {"i": i},
                                "metadata": {"m": i}}) + "\n" for i in range(2500))
    r = exe("write", "--file", "-", "--batch-size", 1000, "--store", store, "--format", "json",
            input=lines + "\n   \n")
    assert r.exit_code == 0, r
    summary = r.json()
    assert summary["written"] == 2500 and summary["batches"] == 3
    assert summary["firstGlobalPosition"] == 1 and summary["lastGlobalPosition"] == 2500
    v = exe("stream", "version", "cart-0", "--store", store, "--format", "json")
    assert v.stdout.strip() == "833"


def test_duplicate_id_in_bulk_is_rejected_whole(tmp_path, cli):
    store = str(tmp_path / "bulk.db")
    mid = "0195d4a4-0000-7000-8000-000000000001"
    src = tmp_path / "in.ndjson"
    src.write_text(json.dumps({"stream": "a-1", "type": "T", "id": mid}) + "\n"
                   + json.dumps({"stream": "a-2", "type": "T", "id": mid}) + "\n")
    r = cli("write", "--file", src, "--store", store)
    assert r.exit_code == 1, r
    assert "message id already exists" in r.stderr and mid in r.stderr
    assert not os.path.exists(store) or LocalStore(store).message_count() == 0
