"""``eventodb consume`` on a local store: catch-up, checkpoints, resume, handlers, errors,
signals, health, follow, idempotency."""

from __future__ import annotations

import json
import os
import signal
import sys
import time
import urllib.request

import pytest
from helpers_consume import (fill_store, lines, read_checkpoint, share, start_exe, wait_for,
                             write_checkpoint)

from eventodb_cli.domain.hashing import member_for
from eventodb_cli.domain.message import new_message

from conftest import exe_path, free_port


@pytest.fixture
def filled(store_path):
    store = fill_store(store_path, 600, streams=80)
    yield store
    store.close()


def _consume(run, store_path, cp, *extra, member=0, size=3):
    return run("consume", "account", "--member", member, "--size", size, "--checkpoint", cp,
               "--store", store_path, *extra)


def test_catch_up_prints_the_share_and_saves_the_checkpoint(cli, filled, store_path, tmp_path):
    cp = str(tmp_path / "c.json")
    r = _consume(cli, store_path, cp, "--batch-size", 7)
    assert r.exit_code == 0, r
    got = r.ndjson()
    expected = share(filled, "account", 0, 3)
    assert [m["id"] for m in got] == [m.id for m in expected]
    assert got[0] == json.loads(expected[0].to_json())
    assert all(member_for(m["streamName"], 3) == 0 for m in got)
    c = read_checkpoint(cp)
    assert c["position"] == expected[-1].global_position + 1
    assert (c["category"], c["member"], c["size"]) == ("account", 0, 3)
    assert c["updatedAt"].endswith("Z")
    # nothing new: nothing printed, checkpoint unchanged
    again = _consume(cli, store_path, cp)
    assert again.exit_code == 0 and again.stdout == ""
    assert read_checkpoint(cp)["position"] == c["position"]
    # new messages (one of the share, one not): only the share's is printed
    mine = next(f"account-x{i}" for i in range(100) if member_for(f"account-x{i}", 3) == 0)
    theirs = next(f"account-y{i}" for i in range(100) if member_for(f"account-y{i}", 3) == 1)
    res = filled.write_batch([new_message(theirs, "Late", {}), new_message(mine, "Late", {})])
    third = _consume(cli, store_path, cp)
    assert [m["streamName"] for m in third.ndjson()] == [mine]
    assert read_checkpoint(cp)["position"] == res[1].global_position + 1


def test_resume_after_max_messages(cli, exe, filled, store_path, tmp_path):
    cp = str(tmp_path / "c.json")
    expected = [m.id for m in share(filled, "account", 2, 3)]
    seen = []
    first = _consume(cli, store_path, cp, "--max-messages", 25, "--batch-size", 10, member=2)
    seen += [m["id"] for m in first.ndjson()]
    assert len(seen) == 25
    second = _consume(exe, store_path, cp, "--max-messages", 30, member=2)
    seen += [m["id"] for m in second.ndjson()]
    rest = _consume(exe, store_path, cp, member=2)
    seen += [m["id"] for m in rest.ndjson()]
    assert seen == expected


def test_from_position_only_without_checkpoint(cli, filled, store_path, tmp_path):
    cp = str(tmp_path / "c.json")
    mine = share(filled, "account", 1, 3)
    start = mine[10].global_position
    r = _consume(cli, store_path, cp, "--from-position", start, member=1)
    assert [m["id"] for m in r.ndjson()] == [m.id for m in mine[10:]]
    # with a checkpoint, the checkpoint wins
    write_checkpoint(cp, mine[-3].global_position, member=1, size=3)
    r = _consume(cli, store_path, cp, "--from-position", 1, member=1)
    assert [m["id"] for m in r.ndjson()] == [m.id for m in mine[-3:]]
    assert "wins over --from-position" in r.stderr


def test_checkpoint_of_another_member_is_refused(exe, filled, store_path, tmp_path):
    cp = str(tmp_path / "c.json")
    write_checkpoint(cp, 5, member=1, size=3)
    r = _consume(exe, store_path, cp, member=0)
    assert r.exit_code == 2 and "belongs to member 1, not 0" in r.stderr
    write_checkpoint(cp, 5, member=0, size=4)
    assert _consume(exe, store_path, cp, member=0).exit_code == 2
    with open(cp, "w") as fh:
        fh.write("{not json")
    r = _consume(exe, store_path, cp)
    assert r.exit_code == 2 and "unreadable" in r.stderr and "Traceback" not in r.stderr
    assert _consume(exe, store_path, cp, member=3).exit_code == 2  # member >= size


def _handler(tmp_path, body: str) -> str:
    path = tmp_path / "handler.py"
    path.write_text(body)
    return f"{sys.executable} {path}"


def test_exec_handler_gets_json_on_stdin_and_env(exe, filled, store_path, tmp_path):
    out = tmp_path / "seen.ndjson"
    cmd = _handler(tmp_path, f"""
import json, os, sys
msg = json.loads(sys.stdin.read())
with open({str(out)!r}, "a") as fh:
    fh.write(json.dumps({{"msg": msg, "env": [os.environ["EVENTODB_MESSAGE_ID"],
        os.environ["EVENTODB_STREAM"], os.environ["EVENTODB_GLOBAL_POSITION"]]}}) + "\\n")
""")
    cp = str(tmp_path / "c.json")
    r = _consume(exe, store_path, cp, "--exec", cmd, "--max-messages", 12, member=1)
    assert r.exit_code == 0, r
    assert r.stdout == ""
    got = [json.loads(x) for x in lines(str(out))]
    expected = share(filled, "account", 1, 3)[:12]
    assert [g["msg"] for g in got] == [json.loads(m.to_json()) for m in expected]
    assert [g["env"] for g in got] == [[m.id, m.stream_name, str(m.global_position)]
                                       for m in expected]
    assert read_checkpoint(cp)["position"] == expected[-1].global_position + 1


@pytest.fixture
def failing_handler(tmp_path):
    """A handler that records every attempt and fails on one message id."""
    def make(bad_id: str) -> tuple[str, str]:
        log = str(tmp_path / "attempts.txt")
        cmd = (f'echo "$EVENTODB_MESSAGE_ID" >> {log}; '
               f'test "$EVENTODB_MESSAGE_ID" != "{bad_id}"')
        return cmd, log
    return make


def test_on_error_stop_saves_the_failed_message_as_next(exe, filled, store_path, tmp_path,
                                                        failing_handler):
    mine = share(filled, "account", 0, 3)
    bad = mine[15]
    cmd, log = failing_handler(bad.id)
    cp = str(tmp_path / "c.json")
    t0 = time.monotonic()
    r = _consume(exe, store_path, cp, "--exec", cmd, "--retries", 2, "--retry-delay", 0.05,
                 "--batch-size", 10)
    elapsed = time.monotonic() - t0
    assert r.exit_code == 1, r
    attempts = lines(log)
    assert attempts == [m.id for m in mine[:15]] + [bad.id] * 3  # 1 try + 2 retries
    assert read_checkpoint(cp)["position"] == bad.global_position
    assert "retry 2 of 2" in r.stderr and "--on-error stop" in r.stderr
    assert elapsed >= 0.05 + 0.1  # backoff 0.05 then 0.1
    # restarting retries the same message first (it is the next to read)
    r2 = _consume(exe, store_path, cp, "--exec", cmd, "--retries", 0)
    assert r2.exit_code == 1
    assert lines(log)[-1] == bad.id and len(lines(log)) == 19


def test_on_error_skip_moves_on(exe, filled, store_path, tmp_path, failing_handler):
    mine = share(filled, "account", 0, 3)
    bad = mine[3]
    cmd, log = failing_handler(bad.id)
    cp = str(tmp_path / "c.json")
    r = _consume(exe, store_path, cp, "--exec", cmd, "--retries", 1, "--retry-delay", 0,
                 "--on-error", "skip")
    assert r.exit_code == 0, r
    attempts = lines(log)
    assert attempts == [m.id for m in mine[:3]] + [bad.id] * 2 + [m.id for m in mine[4:]]
    assert read_checkpoint(cp)["position"] == mine[-1].global_position + 1
    assert f"skipping message {bad.id}" in r.stderr


def test_idempotency_ledger_skips_handled_ids(exe, filled, store_path, tmp_path):
    log = str(tmp_path / "h.txt")
    cmd = f'echo "$EVENTODB_MESSAGE_ID" >> {log}'
    ledger = str(tmp_path / "ledger.db")
    cp = str(tmp_path / "c.json")
    mine = [m.id for m in share(filled, "account", 2, 3)]
    r = _consume(exe, store_path, cp, "--exec", cmd, "--idempotency", ledger, member=2)
    assert r.exit_code == 0, r
    assert lines(log) == mine
    os.unlink(cp)  # lose the checkpoint: everything is read again, nothing handled again
    r = _consume(exe, store_path, cp, "--exec", cmd, "--idempotency", ledger, member=2)
    assert r.exit_code == 0 and lines(log) == mine
    assert read_checkpoint(cp)["position"] == share(filled, "account", 2, 3)[-1].global_position + 1
    # members of another group size sharing the ledger skip what was handled: the identity is
    # the category. A different --consumer-id is another consumer.
    r = _consume(exe, store_path, str(tmp_path / "c6.json"), "--exec", cmd, "--idempotency",
                 ledger, member=0, size=1)
    others = [m.id for m in share(filled, "account", 0, 1) if m.id not in set(mine)]
    assert lines(log) == mine + others
    r = _consume(exe, store_path, str(tmp_path / "cx.json"), "--exec", cmd, "--idempotency",
                 ledger, "--consumer-id", "projection-b", member=2)
    assert lines(log) == mine + others + mine
    import sqlite3

    with sqlite3.connect(ledger) as db:
        rows = dict(db.execute("SELECT consumer, count(*) FROM processed GROUP BY consumer"))
    assert rows == {"account": len(mine) + len(others), "projection-b": len(mine)}


def test_ledger_with_ndjson_output(cli, filled, store_path, tmp_path):
    ledger = str(tmp_path / "ledger.db")
    cp = str(tmp_path / "c.json")
    first = _consume(cli, store_path, cp, "--idempotency", ledger, "--max-messages", 5)
    assert len(first.ndjson()) == 5
    os.unlink(cp)
    second = _consume(cli, store_path, cp, "--idempotency", ledger)
    ids = [m["id"] for m in second.ndjson()]
    assert ids == [m.id for m in share(filled, "account", 0, 3)][5:]


def test_sigterm_finishes_the_message_saves_and_exits_0(filled, store_path, tmp_path):
    log = str(tmp_path / "h.txt")
    cmd = f'sleep 0.05; echo "$EVENTODB_MESSAGE_ID $EVENTODB_GLOBAL_POSITION" >> {log}'
    cp = str(tmp_path / "c.json")
    p = start_exe(exe_path(), "consume", "account", "--member", 0, "--size", 3,
                  "--checkpoint", cp, "--store", store_path, "--exec", cmd, "--follow",
                  "--batch-size", 50)
    try:
        wait_for(lambda: len(lines(log)) >= 8, what="some messages handled")
        os.kill(p.pid, signal.SIGTERM)
        out, err = p.communicate(timeout=20)
    finally:
        if p.poll() is None:
            p.kill()
    assert p.returncode == 0, err
    handled = lines(log)
    mine = share(filled, "account", 0, 3)
    assert 8 <= len(handled) < len(mine)
    assert [h.split()[0] for h in handled] == [m.id for m in mine[:len(handled)]]
    # the checkpoint is right after the last handled message (mid-batch)
    assert read_checkpoint(cp)["position"] == int(handled[-1].split()[1]) + 1
    assert b"stopped at position" in err


def test_sigint_while_idle_in_follow(filled, store_path, tmp_path):
    cp = str(tmp_path / "c.json")
    p = start_exe(exe_path(), "consume", "account", "--member", 1, "--size", 3,
                  "--checkpoint", cp, "--store", store_path, "--follow", "--poll-interval",
                  "30")
    try:
        n = len(share(filled, "account", 1, 3))
        got = [p.stdout.readline() for _ in range(n)]
        assert all(g for g in got)
        wait_for(lambda: os.path.exists(cp), what="checkpoint")
        time.sleep(0.3)
        os.kill(p.pid, signal.SIGINT)
        out, err = p.communicate(timeout=10)  # wakes up from a 30 s wait at once
    finally:
        if p.poll() is None:
            p.kill()
    assert p.returncode == 0, err
    assert out == b""
    assert read_checkpoint(cp)["position"] == json.loads(got[-1])["globalPosition"] + 1


def test_follow_picks_up_new_messages_by_polling(filled, store_path, tmp_path):
    cp = str(tmp_path / "c.json")
    p = start_exe(exe_path(), "consume", "account", "--member", 2, "--size", 3,
                  "--checkpoint", cp, "--store", store_path, "--follow", "--poll-interval",
                  "0.1")
    try:
        n = len(share(filled, "account", 2, 3))
        for _ in range(n):
            assert p.stdout.readline()
        mine = next(f"account-new{i}" for i in range(100) if member_for(f"account-new{i}", 3) == 2)
        theirs = next(f"account-z{i}" for i in range(100) if member_for(f"account-z{i}", 3) == 0)
        t0 = time.monotonic()
        res = filled.write_batch([new_message(theirs, "Late", {}),
                                  new_message(mine, "Late", {"late": True})])
        line = json.loads(p.stdout.readline())
        latency = time.monotonic() - t0
        assert line["streamName"] == mine and line["data"] == {"late": True}
        assert line["globalPosition"] == res[1].global_position
        assert latency < 5
        wait_for(lambda: read_checkpoint(cp)["position"] == res[1].global_position + 1,
                 what="checkpoint after the new message")
        os.kill(p.pid, signal.SIGTERM)
        p.communicate(timeout=10)
        assert p.returncode == 0
    finally:
        if p.poll() is None:
            p.kill()


def _get_health(port):
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=5) as r:
        assert r.headers["Content-Type"] == "application/json"
        return json.loads(r.read())


def test_health_endpoint(filled, store_path, tmp_path):
    port = free_port()
    log = str(tmp_path / "h.txt")
    cp = str(tmp_path / "c.json")
    # a slow handler keeps a backlog: lagging with --max-lag 5
    cmd = f'sleep 0.1; echo "$EVENTODB_GLOBAL_POSITION" >> {log}'
    p = start_exe(exe_path(), "consume", "account", "--member", 0, "--size", 3,
                  "--checkpoint", cp, "--store", store_path, "--exec", cmd, "--follow",
                  "--batch-size", 5, "--health-port", port, "--max-lag", 5)
    mine = share(filled, "account", 0, 3)
    try:
        h = wait_for(lambda: _try_health(port), what="health endpoint")
        h = wait_for(lambda: (lambda x: x if x["lag"] is not None else None)(_get_health(port)),
                     what="a lag figure")
        assert h["status"] == "lagging"
        assert h["consumer"] == {"member": 0, "size": 3}
        assert h["category"] == "account"
        assert h["lag"] > 5
        assert h["head"] == filled.category_head("account")
        assert isinstance(h["throughput"], float)
        assert h["position"] <= mine[-1].global_position
        os.kill(p.pid, signal.SIGTERM)
        p.communicate(timeout=20)
        assert p.returncode == 0
    finally:
        if p.poll() is None:
            p.kill()
    # fast handler: caught up -> healthy, lag 0, position = checkpoint
    os.unlink(cp)
    p = start_exe(exe_path(), "consume", "account", "--member", 0, "--size", 3,
                  "--checkpoint", cp, "--store", store_path, "--follow", "--poll-interval",
                  "0.1", "--health-port", port, stdout=subprocess_devnull())
    try:
        h = wait_for(lambda: (lambda x: x if x and x["lag"] == 0 and x["handled"] == len(mine)
                              else None)(_try_health(port)), what="caught up health")
        assert h["status"] == "healthy"
        assert h["position"] == mine[-1].global_position + 1
        assert h["position"] == read_checkpoint(cp)["position"]
        assert h["lagPositions"] == max(0, filled.category_head("account") - h["position"] + 1)
        assert h["throughput"] > 0
        with pytest.raises(urllib.error.HTTPError) as e:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/nope", timeout=5)
        assert e.value.code == 404
        os.kill(p.pid, signal.SIGTERM)
        p.communicate(timeout=20)
        assert p.returncode == 0
    finally:
        if p.poll() is None:
            p.kill()


def subprocess_devnull():
    import subprocess

    return subprocess.DEVNULL


def _try_health(port):
    try:
        return _get_health(port)
    except OSError:
        return None


def test_usage_errors(exe, filled, store_path, tmp_path):
    cp = str(tmp_path / "c.json")
    assert _consume(exe, store_path, cp, "--batch-size", 0).exit_code == 2
    assert _consume(exe, store_path, cp, "--on-error", "explode").exit_code == 2
    r = exe("consume", "account", "--member", 0, "--size", 2, "--store", store_path)
    assert r.exit_code == 2  # no --checkpoint
    r = _consume(exe, str(tmp_path / "missing.db"), cp)
    assert r.exit_code == 4 and "Traceback" not in r.stderr
    assert not os.path.exists(tmp_path / "missing.db")
    r = exe("consume", "--help")
    assert r.exit_code == 0 and "Examples:" in r.stdout


def test_stdout_is_flushed_per_batch(filled, store_path, tmp_path):
    """A pipe sees each batch as soon as it is handled (the consumer is still running)."""
    cp = str(tmp_path / "c.json")
    p = start_exe(exe_path(), "consume", "account", "--member", 0, "--size", 3,
                  "--checkpoint", cp, "--store", store_path, "--follow", "--batch-size", 3,
                  "--poll-interval", "30")
    try:
        first = json.loads(p.stdout.readline())
        assert first["id"] == share(filled, "account", 0, 3)[0].id
        assert p.poll() is None
    finally:
        os.kill(p.pid, signal.SIGTERM)
        p.communicate(timeout=10)


def test_sigterm_during_backoff_leaves_the_failed_message_next(filled, store_path, tmp_path):
    mine = share(filled, "account", 1, 3)
    bad = mine[4]
    log = str(tmp_path / "attempts.txt")
    cmd = f'echo "$EVENTODB_MESSAGE_ID" >> {log}; test "$EVENTODB_MESSAGE_ID" != "{bad.id}"'
    cp = str(tmp_path / "c.json")
    p = start_exe(exe_path(), "consume", "account", "--member", 1, "--size", 3,
                  "--checkpoint", cp, "--store", store_path, "--exec", cmd, "--retries", 5,
                  "--retry-delay", 30)
    try:
        wait_for(lambda: bad.id in lines(log), what="the failing message")
        time.sleep(0.3)  # now in a 30 s backoff
        t0 = time.monotonic()
        os.kill(p.pid, signal.SIGTERM)
        out, err = p.communicate(timeout=20)
        assert time.monotonic() - t0 < 5
    finally:
        if p.poll() is None:
            p.kill()
    assert p.returncode == 0, err
    assert lines(log) == [m.id for m in mine[:5]]
    assert read_checkpoint(cp)["position"] == bad.global_position
