"""``eventodb consume --pipe CMD`` end to end, through the installed executable on real SQLite
stores (and one against ``eventodb serve``): the acceptance test kills the handler mid-stream and
shows every message of the member's share acknowledged at least once, and the saved position never
past a message that was not acknowledged when it was saved."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time

from conftest import exe_path
from helpers_consume import fill_store, share

# Appends "ack-time id global-position" to $ACKED before answering ok, and its pid to $PIDS.
HANDLER = r'''
import json, os, sys, time
env = os.environ
acked = open(env["ACKED"], "a")
with open(env["PIDS"], "a") as f:
    f.write(f"{os.getpid()}\n")
sleep = float(env.get("SLEEP", "0"))
fail_id = env.get("FAIL_ID")
for line in sys.stdin:
    m = json.loads(line)
    if sleep:
        time.sleep(sleep)
    if m["id"] == fail_id:
        print("error no such account", flush=True)
        continue
    acked.write(f"{time.time()} {m['id']} {m['globalPosition']}\n"); acked.flush()
    print("ok", flush=True)
'''


def _rig(tmp_path, **env):
    script = tmp_path / "handler.py"
    script.write_text(HANDLER)
    acked, pids = tmp_path / "acked", tmp_path / "pids"
    acked.write_text("")
    pids.write_text("")
    full = dict(os.environ, ACKED=str(acked), PIDS=str(pids),
                **{k: str(v) for k, v in env.items()})
    return f"exec {sys.executable} {script}", full, acked, pids


def _acks(path) -> list[tuple[float, str, int]]:
    rows = []
    for line in path.read_text().splitlines():
        t, mid, gpos = line.split()
        rows.append((float(t), mid, int(gpos)))
    return rows


def test_pipe_handles_the_share_and_saves_the_position(exe, store_path, tmp_path):
    fill_store(store_path, 400).close()
    cmd, env, acked, _pids = _rig(tmp_path)
    cp = tmp_path / "cp.json"
    r = exe("consume", "account", "--member", 1, "--size", 3, "--checkpoint", cp,
            "--store", store_path, "--pipe", cmd, "--batch-size", 50, env=env)
    assert r.exit_code == 0, r.stderr
    assert r.stdout == ""
    from eventodb_cli.store.local import LocalStore

    with LocalStore(store_path) as st:
        mine = share(st, "account", 1, 3)
    assert [row[1] for row in _acks(acked)] == [m.id for m in mine]  # once each, in order
    assert json.loads(cp.read_text())["position"] == mine[-1].global_position + 1
    assert f"{len(mine)} handled" in r.stderr


def test_killing_the_handler_mid_stream_loses_nothing(store_path, tmp_path):
    """The acceptance test: the handler is SIGKILLed twice mid-stream. Every message of the
    member's share is acknowledged at least once, and every checkpoint seen while it ran points
    only past messages acknowledged before it was read."""
    fill_store(store_path, 1500).close()
    from eventodb_cli.store.local import LocalStore

    with LocalStore(store_path) as st:
        mine = share(st, "account", 0, 2)
    cmd, env, acked, pids = _rig(tmp_path, SLEEP=0.0005)
    cp = tmp_path / "cp.json"
    proc = subprocess.Popen([exe_path(), "consume", "account", "--member", "0", "--size", "2",
                             "--checkpoint", str(cp), "--store", store_path, "--pipe", cmd,
                             "--batch-size", "25", "--retry-delay", "0.05"],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    samples: list[tuple[float, int]] = []  # (read after this time, position read)
    kills = []
    done = threading.Event()

    def watch():
        while not done.is_set():
            try:
                position = json.loads(cp.read_text())["position"]
                samples.append((time.time(), position))
            except (OSError, ValueError):
                pass
            n = len(acked.read_text().splitlines())
            if len(kills) < 2 and n >= (len(mine) // 3) * (len(kills) + 1):
                pid = int(pids.read_text().split()[-1])
                os.kill(pid, signal.SIGKILL)
                kills.append((pid, n))
            time.sleep(0.002)

    t = threading.Thread(target=watch)
    t.start()
    try:
        out, err = proc.communicate(timeout=50)
    finally:
        done.set()
        t.join()
    err = err.decode()
    assert proc.returncode == 0, err
    assert len(kills) == 2, (kills, err)
    assert err.count("handler ended (killed by signal 9)") == 2, err
    rows = _acks(acked)
    first_ack = {}
    for when, mid, _gpos in rows:
        first_ack.setdefault(mid, when)
    # every message of the share acknowledged at least once, and nothing else
    assert set(first_ack) == {m.id for m in mine}
    assert json.loads(cp.read_text())["position"] == mine[-1].global_position + 1
    # the position never past a message not acknowledged yet when the checkpoint was read
    assert len(samples) > 5
    for read_at, position in samples:
        late = [m for m in mine if m.global_position < position
                and first_ack[m.id] > read_at]
        assert not late, f"position {position} read at {read_at} passed unacknowledged {late[0]}"
    repeats = len(rows) - len(mine)
    assert 0 <= repeats <= 2 * 1000  # at most what was in flight at each kill


def test_on_error_stop_exits_1_at_the_failed_message(exe, store_path, tmp_path):
    fill_store(store_path, 200).close()
    from eventodb_cli.store.local import LocalStore

    with LocalStore(store_path) as st:
        mine = share(st, "account", 0, 1)
    bad = mine[70]
    cmd, env, acked, _pids = _rig(tmp_path, FAIL_ID=bad.id)
    cp = tmp_path / "cp.json"
    r = exe("consume", "account", "--member", 0, "--size", 1, "--checkpoint", cp,
            "--store", store_path, "--pipe", cmd, "--retries", 1, "--retry-delay", 0.01,
            env=env)
    assert r.exit_code == 1, r
    last = r.stderr.strip().splitlines()[-1]
    assert last == (f"eventodb: error: handler failed message {bad.id} at global position "
                    f"{bad.global_position} (2 attempts): no such account; stopping at it "
                    "(--on-error stop)"), last
    assert "Traceback" not in r.stderr
    assert json.loads(cp.read_text())["position"] == mine[69].global_position + 1
    assert [row[1] for row in _acks(acked)][:70] == [m.id for m in mine[:70]]
    # skip: the rest is handled, the failed one counted
    cp2 = tmp_path / "cp2.json"
    r = exe("consume", "account", "--member", 0, "--size", 1, "--checkpoint", cp2,
            "--store", store_path, "--pipe", cmd, "--retries", 0, "--on-error", "skip",
            env=env)
    assert r.exit_code == 0, r
    assert "1 failed and skipped" in r.stderr
    assert json.loads(cp2.read_text())["position"] == mine[-1].global_position + 1


def test_pipe_usage_errors(exe, store_path, tmp_path):
    fill_store(store_path, 10).close()
    cp = tmp_path / "cp.json"
    r = exe("consume", "account", "--member", 0, "--size", 1, "--checkpoint", cp, "--store",
            store_path, "--pipe", "cat", "--exec", "true")
    assert r.exit_code == 2 and "exclusive" in r.stderr
    r = exe("consume", "account", "--member", 0, "--size", 1, "--checkpoint", cp, "--store",
            store_path, "--pipe", " ")
    assert r.exit_code == 2 and "--pipe needs a command" in r.stderr
    assert not cp.exists()


def test_a_handler_that_cannot_start_exits_1(exe, store_path, tmp_path):
    fill_store(store_path, 10).close()
    cp = tmp_path / "cp.json"
    r = exe("consume", "account", "--member", 0, "--size", 1, "--checkpoint", cp, "--store",
            store_path, "--pipe", "no-such-handler-xyz", "--retries", 1, "--retry-delay", 0.01)
    assert r.exit_code == 1, r
    assert "exit status 127" in r.stderr.splitlines()[-1]
    assert json.loads(cp.read_text())["position"] == 1  # nothing passed


def test_sigterm_stops_quickly_and_saves_only_what_was_acknowledged(store_path, tmp_path):
    fill_store(store_path, 300).close()
    cmd, env, acked, _pids = _rig(tmp_path, SLEEP=0.05)
    cp = tmp_path / "cp.json"
    proc = subprocess.Popen([exe_path(), "consume", "account", "--member", "0", "--size", "1",
                             "--checkpoint", str(cp), "--store", store_path, "--pipe", cmd,
                             "--batch-size", "10", "--follow"],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 20
    while len(acked.read_text().splitlines()) < 15 and time.monotonic() < deadline:
        time.sleep(0.02)
    t0 = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    _out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    assert time.monotonic() - t0 < 12  # 5 s for the answers in flight, 1 s for the handler
    rows = _acks(acked)
    acked_gpos = {gpos for _t, _mid, gpos in rows}
    position = json.loads(cp.read_text())["position"]
    assert 15 <= len(rows) < 300
    from eventodb_cli.store.local import LocalStore

    with LocalStore(store_path) as st:
        mine = share(st, "account", 0, 1)
    assert all(m.global_position in acked_gpos for m in mine if m.global_position < position)


def test_pipe_against_a_server_with_a_group(exe, server, tmp_path):
    cat = f"pipe{os.getpid()}x{int(time.time() * 1000) % 100000}"
    lines = "".join(json.dumps({"stream": f"{cat}-{i % 9}", "type": "T", "data": {"i": i}})
                    + "\n" for i in range(120))
    src = tmp_path / "in.ndjson"
    src.write_text(lines)
    target = ["--url", server.url, "--token", server.token]
    r = exe("write", "--file", src, *target)
    assert r.exit_code == 0, r
    cmd, env, acked, _pids = _rig(tmp_path)
    r = exe("consume", cat, "--member", 0, "--size", 1, "--group", "billing", "--pipe", cmd,
            *target, env=env)
    assert r.exit_code == 0, r
    assert len(_acks(acked)) == 120
    r = exe("group", "describe", cat, "--group", "billing", "--format", "json", *target)
    assert r.exit_code == 0, r
    assert r.json()["members"][0]["lagMessages"] == 0


def test_follow_ends_with_exit_1_when_the_last_message_fails(exe, store_path, tmp_path):
    """A stop found while the --follow loop is idle ends the consumer (exit 1), not a hang."""
    fill_store(store_path, 30).close()
    from eventodb_cli.store.local import LocalStore

    with LocalStore(store_path) as st:
        mine = share(st, "account", 0, 1)
    cmd, env, _acked, _pids = _rig(tmp_path, FAIL_ID=mine[-1].id)
    cp = tmp_path / "cp.json"
    r = exe("consume", "account", "--member", 0, "--size", 1, "--checkpoint", cp, "--store",
            store_path, "--pipe", cmd, "--follow", "--poll-interval", 0.05, "--retries", 2,
            "--retry-delay", 0.05, env=env, timeout=30)
    assert r.exit_code == 1, r
    assert "stopping at it (--on-error stop)" in r.stderr.splitlines()[-1]
    assert json.loads(cp.read_text())["position"] == mine[-2].global_position + 1


def test_idempotency_ledger_records_acknowledged_not_skipped(exe, store_path, tmp_path):
    fill_store(store_path, 120).close()
    from eventodb_cli.store.local import LocalStore

    with LocalStore(store_path) as st:
        mine = share(st, "account", 0, 1)
    bad = mine[30]
    cmd, env, acked, _pids = _rig(tmp_path, FAIL_ID=bad.id)
    ledger = tmp_path / "ledger.db"
    base = ["consume", "account", "--member", 0, "--size", 1, "--store", store_path, "--pipe",
            cmd, "--idempotency", ledger, "--retries", 0, "--on-error", "skip"]
    r = exe(*base, "--checkpoint", tmp_path / "a.json", env=env)
    assert r.exit_code == 0, r
    assert len(_acks(acked)) == len(mine) - 1
    # a replay from the start: every acknowledged id is a duplicate, the skipped one comes again
    r = exe(*base, "--checkpoint", tmp_path / "b.json", env=dict(env, FAIL_ID="none"))
    assert r.exit_code == 0, r
    assert f"{len(mine) - 1} duplicates skipped" in r.stderr
    assert [row[1] for row in _acks(acked)][len(mine) - 1:] == [bad.id]
