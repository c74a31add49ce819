"""Issue 8 item 12: simulate-scale costs O(streams + from + to), never O(from x to)."""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import time

import pytest

from conftest import exe_path
from eventodb_cli.domain import scale


def _child_run(args: list[str]) -> tuple[dict, float, int]:
    """Run the executable; its JSON report, wall time and peak RSS (KB, this child only)."""
    code = (
        "import json, resource, subprocess, sys, time\n"
        "t = time.perf_counter()\n"
        "p = subprocess.run(sys.argv[1:], capture_output=True)\n"
        "dt = time.perf_counter() - t\n"
        "rss = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss\n"
        "sys.stderr.write(p.stderr.decode())\n"
        "print(json.dumps({'rc': p.returncode, 'dt': dt, 'rss': rss}))\n"
        "sys.stdout.write(p.stdout.decode())\n")
    p = subprocess.run([sys.executable, "-c", code, exe_path(), *args], capture_output=True,
                       text=True, timeout=120)
    head, _, body = p.stdout.partition("\n")
    meta = json.loads(head)
    assert meta["rc"] == 0, p.stderr
    return json.loads(body), meta["dt"], meta["rss"]


@pytest.mark.parametrize("n,m", [(2, 100_000), (99_999, 100_000)])
def test_huge_target_sizes_stay_linear(n, m):
    """--from 2 --to 100000 was OOM-killed at 24 GB; it now needs O(streams + N + M)."""
    rep, dt, rss = _child_run(["simulate-scale", "account", "--from", str(n), "--to", str(m),
                               "--synthetic", "2000", "--seed", "3", "--format", "json"])
    print(f"{n} -> {m}: {dt:.1f}s, peak RSS {rss / 1024:.0f} MB")
    assert rss < 600 * 1024  # an N x M matrix of Python ints alone would be > 50 GB
    assert rep["from"] == n and rep["to"] == m and rep["streams"] == 2000
    assert len(rep["members"]) == max(n, m)
    # transfers: only the non-empty cells, each stream in exactly one
    assert sum(x["streams"] for x in rep["transfers"]) == 2000
    assert all(x["streams"] > 0 for x in rep["transfers"])
    assert rep["membersWithoutStreams"] >= m - 2000
    for s in rep["strategies"]:
        assert s["stepCount"] == len(scale._switch_steps(s["name"], n, m)[0])
        assert len(s["steps"]) <= 4 * 2000 + 2  # only the steps where something changes
        assert s["steps"][0]["index"] == 0 and s["steps"][-1]["index"] == s["stepCount"] - 1


def test_long_rollouts_list_the_changing_steps_exactly():
    """Above STEP_ROWS steps only the steps whose overlap/gap figures change are listed; every
    listed row equals the full row-by-row computation."""
    import random

    rng = random.Random(5)
    n, m = 1100, 1300  # more steps than STEP_ROWS in every order
    t = scale.ScaleTally(n, m, keep_hashes=False)
    t.add_all((rng.getrandbits(64) - 2**63, rng.randint(1, 3)) for _ in range(300))
    p = scale.plan(t)
    for s in p["strategies"]:
        labels, stop, start = scale._switch_steps(s["name"], n, m)
        assert s["stepCount"] == len(labels) > scale.STEP_ROWS
        k = len(labels)
        old_left = [n - sum(1 for x in stop if x <= i) for i in range(0, k, 97)]
        full = []
        for i in range(k):
            ov = sum(c for (o, j), c in t.cells.items() if start[j] <= i < stop[o])
            gp = sum(c for (o, j), c in t.cells.items() if stop[o] <= i < start[j])
            full.append((ov, gp))
        for r in s["steps"]:
            if r["index"] % 97 == 0:
                assert r["oldRunning"] == old_left[r["index"] // 97]
        listed = {r["index"]: r for r in s["steps"]}
        for i, r in listed.items():
            assert (r["overlapStreams"], r["gapStreams"]) == full[i], (s["name"], i)
            assert r["newRunning"] == sum(1 for x in start if x <= i)
        # nothing changes between two listed steps
        for i in range(1, len(full)):
            if i not in listed:
                assert full[i] == full[i - 1]


def test_handover_starts_use_residues_not_donor_lists():
    """19,999 -> 20,000 share no factor: every new member has every old member as donor (4e8
    pairs); the start is the lowest of them, and a row lists at most DONOR_LIMIT donors plus
    the one that set the start."""
    hv = scale.Handover(19_999, 20_000, {o: 1000 + (o * 7919) % 19_999 for o in range(19_999)})
    assert hv.starts == [1000] * 20_000
    rows = hv.rows(counted=False)
    assert len(rows) == 20_000
    assert rows[5]["donorCount"] == 19_999 and len(rows[5]["donors"]) == scale.DONOR_LIMIT
    assert rows[5]["donors"][0] == {"member": 0, "position": 1000}
    hv = scale.Handover(19_999, 20_000, {o: 5000 - o for o in range(19_999)})
    row = hv.rows(counted=False)[7]
    assert row["position"] == 5000 - 19_998
    assert row["donors"][-1] == {"member": 19_998, "position": 5000 - 19_998}  # the lowest
    small = scale.Handover(3, 4, {0: 10, 1: 20, 2: 30})
    assert [r["donorCount"] for r in small.rows(counted=False)] == [3, 3, 3, 3]
    assert small.starts == [10, 10, 10, 10]


def test_table_of_a_huge_plan_is_short(exe):
    r = exe("simulate-scale", "account", "--from", "2", "--to", "100000", "--synthetic", "500",
            "--seed", "1", "--format", "table")
    assert r.exit_code == 0, r
    assert len(r.stdout.splitlines()) < 200
    assert "more members (--format json lists all)" in r.stdout
    assert "new members would have no stream today" in r.stdout
