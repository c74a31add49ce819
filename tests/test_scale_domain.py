"""domain/scale.py on its own: theory against brute force over residues, roll-out steps,
donors, and the hand-over counters."""

from __future__ import annotations

from math import gcd

import pytest

from eventodb_cli.domain import scale


@pytest.mark.parametrize("n", range(1, 13))
def test_modulo_theory_equals_a_count_over_residues(n):
    for m in range(1, 25):
        lcm = n * m // gcd(n, m)
        kept = sum(1 for a in range(lcm) if a % n == a % m)
        assert scale.modulo_kept_fraction(n, m) == kept / lcm
        # donors: every old member sharing a residue with new member j
        for j in range(m):
            assert scale.donors(n, m, j) == sorted({a % n for a in range(lcm) if a % m == j})


def test_named_cases():
    assert scale.modulo_kept_fraction(2, 4) == 0.5  # doubling keeps half
    assert 1 - scale.modulo_kept_fraction(3, 4) == 0.75  # 3 -> 4 moves three quarters
    assert scale.minimum_move_fraction(3, 4) == 0.25
    assert scale.minimum_move_fraction(8, 4) == 0.5


def test_rollout_steps_end_with_exactly_the_new_group():
    for name in scale.STRATEGIES:
        for n, m in [(2, 3), (3, 2), (4, 8), (1, 1)]:
            steps = scale.rollout_steps(name, n, m)
            assert steps[-1].old == frozenset() and steps[-1].new == frozenset(range(m))
    steps = scale.rollout_steps("add-then-restart", 2, 4)
    assert [s.label for s in steps] == ["start new 2", "start new 3", "restart 0 with size 4",
                                        "restart 1 with size 4"]
    assert steps[2].old == {1} and steps[2].new == {0, 2, 3}  # the seed's diagram
    with pytest.raises(ValueError):
        scale.rollout_steps("big-bang", 2, 3)


def test_plan_from_a_hand_made_matrix():
    t = scale.ScaleTally(2, 4)
    # abs(h) values chosen for their residues: (old, new) = (0,0), (0,2), (1,1), (1,3)
    for h, c in [(4, 1), (-2, 2), (5, 3), (-7, 4), (None, 9)]:
        t.add(h, c)
    p = scale.plan(t, sizes=[3, 4])
    assert p["streams"] == 4 and p["messages"] == 10
    assert p["unassignedStreams"] == 1 and p["unassignedMessages"] == 9
    assert p["movedStreams"] == 2 and p["movedMessages"] == 6
    assert [(x["from"], x["to"], x["streams"], x["messages"]) for x in p["transfers"]] == \
        [(0, 0, 1, 1), (0, 2, 1, 2), (1, 1, 1, 3), (1, 3, 1, 4)]
    assert p["gaps"]["member-by-member"] == {"streams": 2, "messages": 6, "percent": 50.0,
                                             "messagesPercent": 60.0}
    assert p["overlap"]["add-then-restart"]["streams"] == 2
    assert p["gaps"]["add-then-restart"]["streams"] == 0
    assert [b["size"] for b in p["bestSizes"]] == [3, 4]


def test_handover_counts():
    hv = scale.Handover(2, 4, {0: 10, 1: 20})
    assert hv.starts == [10, 20, 10, 20] and hv.donors == [[0], [1], [0], [1]]
    # abs(h)=2: old 0 (checkpoint 10), new 2 (start 10)
    hv.add(2, 9)  # before the start: neither
    hv.add(2, 12)  # processed? no: 12 >= old checkpoint 10 -> not re-read
    hv.add(1, 15)  # old 1 (20), new 1 (start 20): 15 < start -> not re-read
    hv3 = scale.Handover(3, 4, {0: 10, 1: 20, 2: 30})
    assert hv3.starts == [10, 10, 10, 10]
    hv3.add(5, 15)  # abs 5: old 2 (done up to 30), new 1 (start 10): re-read
    hv3.add(4, 25)  # old 1 (20), new 0: 25 >= 20, not re-read; naive: new 0 kept 10 -> read
    hv3.add(1, 12)  # old 1 (20), new 1: re-read; naive: new 1 kept old 1's 20: fine
    hv3.add(6, 22)  # old 0 (10), new 2: naive: new 2 kept old 2's 30: 22 skipped
    assert hv3.reread == [0, 2, 0, 0]
    assert hv3.naive_skipped == [0, 0, 1, 0]
    rows = hv3.rows(counted=True)
    assert rows[3]["naiveSkippedMessages"] is None  # no old member 3 to copy from
    assert scale.Handover(2, 3, {1: 50}).missing == [0]


@pytest.mark.parametrize("n,m", [(2, 3), (3, 4), (4, 8), (5, 3), (6, 4)])
def test_step_counts_equal_a_state_by_state_count(n, m):
    import random

    rng = random.Random(n * 31 + m)
    t = scale.ScaleTally(n, m)
    hashes = [rng.getrandbits(64) - 2**63 for _ in range(2000)]
    counts = [rng.randint(1, 5) for _ in hashes]
    t.add_all(zip(hashes, counts))
    p = scale.plan(t, sizes=[])
    for s in p["strategies"]:
        steps = scale.rollout_steps(s["name"], n, m)
        assert len(steps) == len(s["steps"])
        ever_ov, ever_gap = set(), set()
        for st, row in zip(steps, s["steps"]):
            ov = [(i, c) for i, (h, c) in enumerate(zip(hashes, counts))
                  if abs(h) % n in st.old and abs(h) % m in st.new]
            gp = [(i, c) for i, (h, c) in enumerate(zip(hashes, counts))
                  if abs(h) % n not in st.old and abs(h) % m not in st.new]
            assert row["overlapStreams"] == len(ov) and row["gapStreams"] == len(gp)
            assert row["overlapMessages"] == sum(c for _i, c in ov)
            assert row["gapMessages"] == sum(c for _i, c in gp)
            assert row["oldRunning"] == len(st.old) and row["newRunning"] == len(st.new)
            ever_ov |= {i for i, _c in ov}
            ever_gap |= {i for i, _c in gp}
        assert s["overlap"]["streams"] == len(ever_ov)
        assert s["gaps"]["streams"] == len(ever_gap)
        assert s["overlap"]["messages"] == sum(counts[i] for i in ever_ov)


def test_large_groups_stay_fast():
    import time

    t = scale.ScaleTally(200, 300)
    t.add_all((h * 7919, 1) for h in range(20_000))
    t0 = time.perf_counter()
    p = scale.plan(t)
    assert time.perf_counter() - t0 < 10
    assert len(p["strategies"][0]["steps"]) == 500
    assert max(b["size"] for b in p["bestSizes"]) == 400  # 2N
