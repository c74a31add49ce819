"""``write --file --resume`` on Message DB (PostgreSQL): a state file like a server's, derived
ids, and ``write_batch(existing_ok=True)``: an interrupted run finished with --resume holds every
line exactly once, in file order per stream."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time

from conftest import exe_path

from eventodb_cli.store.postgres import PostgresStore

N = 60_000  # a 200-line batch is one statement: enough lines that the kills land mid-run


def _make_file(path, n: int) -> None:
    with open(path, "w") as fh:
        for i in range(n):
            fh.write(json.dumps({"stream": f"pgres-{i % 30}", "type": "Line",
                                 "data": {"i": i}}) + "\n")


def _check(url: str, n: int) -> None:
    with PostgresStore(url) as s:
        msgs = list(s.iter_category("pgres", batch_size=5000))
    seen = sorted(json.loads(m.data)["i"] for m in msgs)
    assert seen == list(range(n)), (len(seen), n)
    for k in range(30):
        got = [json.loads(m.data)["i"] for m in msgs if m.stream_name == f"pgres-{k}"]
        assert got == sorted(got)


def test_resume_after_sigkill_on_message_db(mdb_url, tmp_path):
    f = tmp_path / "lines.ndjson"
    _make_file(f, N)
    env = dict(os.environ, XDG_STATE_HOME=str(tmp_path / "state"))
    args = [exe_path(), "write", "--file", str(f), "--resume", "--url", mdb_url,
            "--batch-size", "200", "--no-progress", "--format", "json"]
    killed = 0
    for delay in (0.8, 1.2, 1.6):
        p = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
        try:
            p.wait(delay)
        except subprocess.TimeoutExpired:
            p.send_signal(signal.SIGKILL)
            killed += 1
        out, err = p.communicate(timeout=60)
        assert p.returncode in (0, -signal.SIGKILL), err.decode()
    p = subprocess.run(args, capture_output=True, env=env, timeout=60)
    assert p.returncode == 0, p.stderr.decode()
    assert killed >= 1  # at least one run was really interrupted
    _check(mdb_url, N)


def test_resume_after_a_failing_line_on_message_db(mdb_url, tmp_path, cli, monkeypatch):
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    f = tmp_path / "lines.ndjson"
    _make_file(f, 1_000)
    text = f.read_text().splitlines()
    text[700] = "{not json"
    f.write_text("\n".join(text) + "\n")
    r = cli("write", "--file", str(f), "--url", mdb_url, "--batch-size", "100")
    assert r.exit_code == 2 and "line 701" in r.stderr and "--resume" in r.stderr, r
    text[700] = json.dumps({"stream": "pgres-10", "type": "Line", "data": {"i": 700}})
    f.write_text("\n".join(text) + "\n")
    started = time.monotonic()
    r = cli("write", "--file", str(f), "--url", mdb_url, "--resume", "--batch-size", "100",
            "--format", "json")
    assert r.exit_code == 0, r
    assert r.json()["resumedAfterLine"] == 700
    _check(mdb_url, 1_000)
    assert time.monotonic() - started < 60
