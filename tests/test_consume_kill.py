"""Acceptance: a consumer killed with SIGKILL at random points and restarted hands every message
of its share to the handler at least once and loses none; with the idempotency ledger a message
is handled twice only when it was in flight at a kill (at most one extra handling per kill).

The real executable runs in its own process group with ``--exec`` a shell handler that appends the
message id to a file and fsyncs it; the whole group (consumer and handler) is killed with SIGKILL
at random points (after a random number of handlings plus a random instant, or during start-up);
the consumer is restarted until it is caught up."""

from __future__ import annotations

import os
import random
import signal
import time
from collections import Counter

import pytest
from helpers_consume import fill_store, lines, read_checkpoint, share, start_exe

from conftest import exe_path

SIZE = 5
MEMBER = 2
MESSAGES = 3000


@pytest.fixture(scope="module")
def kill_store(tmp_path_factory):
    path = str(tmp_path_factory.mktemp("kill") / "store.db")
    store = fill_store(path, MESSAGES, streams=400, seed=11)
    expected = [m.id for m in share(store, "account", MEMBER, SIZE)]
    store.close()
    assert len(expected) > 400
    return path, expected


def _run_with_kills(store_path, tmp_path, rnd, *, ledger: bool, kills: int):
    handled = str(tmp_path / "handled.txt")
    cp = str(tmp_path / "checkpoint.json")
    cmd = f'printf "%s\\n" "$EVENTODB_MESSAGE_ID" >> {handled} && sync {handled}'
    args = ["consume", "account", "--member", MEMBER, "--size", SIZE, "--checkpoint", cp,
            "--store", store_path, "--exec", cmd, "--batch-size", rnd.choice([1, 10, 50]),
            "--retries", 0]
    if ledger:
        args += ["--idempotency", str(tmp_path / "ledger.db")]
    in_flight = []  # the last id in the file at each kill: the only ones that may repeat
    done_kills = 0
    for _ in range(kills):
        p = start_exe(exe_path(), *args)
        if rnd.random() < 0.2:  # sometimes during start-up or the first read
            time.sleep(rnd.uniform(0.0, 0.15))
        else:  # else after a random number of further handlings, plus a random instant
            target = len(lines(handled)) + rnd.randint(1, 120)
            deadline = time.monotonic() + 60
            while len(lines(handled)) < target and p.poll() is None \
                    and time.monotonic() < deadline:
                time.sleep(0.002)
            time.sleep(rnd.uniform(0.0, 0.02))
        if p.poll() is not None:  # finished before the kill
            out, err = p.communicate()
            assert p.returncode == 0, err
            break
        os.killpg(p.pid, signal.SIGKILL)
        p.wait()
        p.stdout.close()
        p.stderr.close()
        done_kills += 1
        got = lines(handled)
        if got:
            in_flight.append(got[-1])
    restarts = 0
    while True:  # restart until caught up
        p = start_exe(exe_path(), *args)
        out, err = p.communicate(timeout=300)
        assert p.returncode == 0, err
        restarts += 1
        if b": 0 handled" in err or restarts > 3:
            break
    return lines(handled), in_flight, done_kills, read_checkpoint(cp)


@pytest.mark.parametrize("trial", range(10))
def test_sigkill_with_ledger_loses_nothing_and_repeats_only_in_flight(trial, kill_store,
                                                                      tmp_path):
    store_path, expected = kill_store
    rnd = random.Random(1000 + trial)
    planned = rnd.randint(2, 4)
    got, in_flight, kills, cp = _run_with_kills(store_path, tmp_path, rnd, ledger=True,
                                                kills=planned)
    assert kills == planned  # every kill landed before the consumer was done
    counts = Counter(got)
    assert set(counts) == set(expected)  # every message of the share, nothing else
    assert [i for i in dict.fromkeys(got)] == expected  # first handlings in order
    extra = {i: c - 1 for i, c in counts.items() if c > 1}
    assert sum(extra.values()) <= kills, (extra, kills)
    assert set(extra) <= set(in_flight), (extra, in_flight)
    assert cp["position"] > 0 and cp["member"] == MEMBER and cp["size"] == SIZE
    print(f"trial {trial}: {kills} kills, {len(got)} handlings of {len(expected)} messages, "
          f"{sum(extra.values())} repeated")


@pytest.mark.parametrize("trial", range(3))
def test_sigkill_without_ledger_is_at_least_once(trial, kill_store, tmp_path):
    store_path, expected = kill_store
    rnd = random.Random(2000 + trial)
    got, _in_flight, kills, _cp = _run_with_kills(store_path, tmp_path, rnd, ledger=False,
                                                  kills=3)
    assert kills == 3
    assert set(got) == set(expected)
    # repeats are bounded by what one batch (plus the in-flight message) can hold per kill
    assert len(got) - len(expected) <= kills * 51
    print(f"no ledger, trial {trial}: {kills} kills, {len(got) - len(expected)} repeated")
