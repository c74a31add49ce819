"""Issue 8 item 8: a lost connection (the server killed mid-run) is an interruption like any
other: exit 5, one line saying how many messages were written and the command that resumes; with
the server back, that command writes every line exactly once."""

from __future__ import annotations

import json
import os
import re
import shlex
import signal
import subprocess
import time

import httpx
from conftest import exe_path, free_port, make_token

from eventodb_cli.store.remote import RemoteStore


def _serve(data_dir, port: int, token: str, log) -> subprocess.Popen:
    proc = subprocess.Popen([exe_path(), "serve", "--data-dir", str(data_dir), "--host",
                             "127.0.0.1", "--port", str(port), "--token", token],
                            stdout=log, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 30
    while True:
        assert proc.poll() is None, "eventodb serve exited"
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code == 200:
                return proc
        except httpx.HTTPError:
            pass
        assert time.monotonic() < deadline, "eventodb serve did not start"
        time.sleep(0.1)


def _written(db) -> int:
    """Messages the server has committed so far (read beside it: WAL readers do not block)."""
    import sqlite3

    if not db.exists():
        return 0
    try:
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5) as c:
            return c.execute("SELECT count(*) FROM messages").fetchone()[0]
    except sqlite3.OperationalError:  # not made yet
        return 0


def test_lost_connection_says_what_was_written_and_resume_finishes(tmp_path):
    # remote bulk writes reach ~10,000 messages a second (issue 12): the server is killed
    # after the first 500 are in, well before the end
    n = 8000
    f = tmp_path / "lines.ndjson"
    with open(f, "w") as fh:
        for i in range(n):
            fh.write(json.dumps({"stream": f"lost-{i % 30}", "type": "T", "data": {"i": i}})
                     + "\n")
    port, token = free_port(), make_token("default")
    url = f"http://127.0.0.1:{port}"
    data = tmp_path / "data"
    data.mkdir()
    env = dict(os.environ, XDG_STATE_HOME=str(tmp_path / "state"), EVENTODB_TOKEN=token)
    with open(tmp_path / "serve.log", "wb") as log:
        srv = _serve(data, port, token, log)
        try:
            w = subprocess.Popen([exe_path(), "write", "--file", str(f), "--url", url,
                                  "--batch-size", "300", "--timeout", "5", "--no-progress"],
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                 env=env)
            # kill the server once the run is under way (not after a fixed time: with a fast
            # client and server the whole file could be written first)
            deadline = time.monotonic() + 30
            while _written(data / "default.db") < 500:
                assert w.poll() is None, w.communicate()
                assert time.monotonic() < deadline, "the write made no progress"
                time.sleep(0.005)
            srv.send_signal(signal.SIGKILL)
            srv.wait()
            out, err = w.communicate(timeout=60)
            assert w.returncode == 5, (w.returncode, out, err)
            err = err.strip()
            assert len(err.splitlines()) == 1, err
            assert "cannot connect" in err or "connection" in err
            assert re.search(r"\d+ messages were written", err), err
            cmd = err.split("to write the rest exactly once: ", 1)[1]
            assert cmd.startswith("eventodb write --file") and "--resume" in cmd
            srv = _serve(data, port, token, log)
            args = shlex.split(cmd)
            p = subprocess.run([exe_path(), *args[1:], "--format", "json"], capture_output=True,
                               text=True, env=env, timeout=60)
            assert p.returncode == 0, p.stderr
            with RemoteStore(url, token) as s:
                msgs = list(s.iter_category("lost", batch_size=5000))
            got = sorted(json.loads(m.data)["i"] for m in msgs)
            assert got == list(range(n))
            for k in range(30):
                order = [json.loads(m.data)["i"] for m in msgs if m.stream_name == f"lost-{k}"]
                assert order == sorted(order)
        finally:
            if srv.poll() is None:
                srv.terminate()
                srv.wait(10)
