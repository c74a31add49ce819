"""Scale plans: what changes when a consumer group goes from N to M members. Pure, no I/O.

Everything here is computed from (stream, cardinal hash, message count) triples with
``domain.hashing.member_of_hash`` (member = abs(hash) % size), the one assignment rule.

Because a stream's fate depends only on its old member ``o`` and its new member ``n``, the plan
keeps the exact old x new matrix of (streams, messages) and derives everything else from it:
moved streams, per-member loads, the double coverage and the gaps of each roll-out order.

Theory used in the report (exact for a hash spread evenly over the residues):
``abs(h) % N == abs(h) % M`` holds for ``gcd(N, M)`` residues of every ``lcm(N, M)``, so the
modulo hash keeps ``gcd(N, M) / max(N, M)`` of the streams in place, while the least any scheme
can move (jump consistent hashing reaches it) is ``|M - N| / max(N, M)``. The two agree exactly
when one size divides the other (doubling keeps half; 3 -> 4 keeps a quarter). An old member
``o`` can only hand streams to new members ``n`` with ``o = n (mod gcd(N, M))`` (CRT).
"""

from __future__ import annotations

from array import array
from dataclasses import dataclass, field
from math import gcd
from typing import Iterable, Mapping

from .hashing import member_of_hash

# Roll-out orders, each a sequence of steps (which old and new members are running).
DOCUMENTED = "start-new-then-stop-old"
STRATEGIES: dict[str, str] = {
    DOCUMENTED: "the seed's scaleConsumers(): start every new member, let them catch up, then "
                "stop the old members",
    "add-then-restart": "the seed's diagram: start the added members first, then restart members "
                        "0, 1, ... in place with the new size, then stop the removed members",
    "member-by-member": "new member i replaces old member i, for i = 0, 1, ... (stop old i and "
                        "start new i together)",
    "stop-old-then-start-new": "stop every old member, then start the new members",
}

FIRST_POSITION = 1  # where a member with no checkpoint starts (nothing processed yet)


def pct(part: int | float, whole: int | float) -> float:
    """``part / whole`` in percent, rounded to 4 decimals (0.0 when ``whole`` is 0)."""
    return round(100.0 * part / whole, 4) if whole else 0.0


def minimum_move_fraction(n: int, m: int) -> float:
    """The least fraction of streams any scheme must move from N to M members."""
    return abs(m - n) / max(n, m)


def modulo_kept_fraction(n: int, m: int) -> float:
    """Fraction of streams the modulo hash keeps on the same member index (theory)."""
    return gcd(n, m) / max(n, m)


def donors(n: int, m: int, new_member: int) -> list[int]:
    """Old members (group of ``n``) that can hand streams to ``new_member`` of a group of ``m``."""
    g = gcd(n, m)
    return [o for o in range(n) if (o - new_member) % g == 0]


def _check_sizes(n: int, m: int) -> None:
    if n < 1 or m < 1:
        raise ValueError("group sizes must be >= 1")


# --- the tally: one pass over streams -------------------------------------------------------------
class ScaleTally:
    """Accumulates streams for a plan from ``n`` to ``m`` members. Memory: one matrix of
    ``n * m`` cells plus one unsigned 64-bit word per stream (for the size comparison)."""

    def __init__(self, n: int, m: int, *, keep_hashes: bool = True):
        _check_sizes(n, m)
        self.n = n
        self.m = m
        self.cells = [[0] * m for _ in range(n)]  # streams
        self.cell_msgs = [[0] * m for _ in range(n)]  # messages
        self.unassigned_streams = 0
        self.unassigned_messages = 0
        self.abs_hashes = array("Q") if keep_hashes else None
        self.counts = array("q") if keep_hashes else None

    def add(self, h: int | None, messages: int = 1) -> tuple[int, int] | None:
        """Add one stream with cardinal hash ``h`` (``None``: no id). Returns (old, new) member."""
        if h is None:
            self.unassigned_streams += 1
            self.unassigned_messages += messages
            return None
        o = member_of_hash(h, self.n)
        nn = member_of_hash(h, self.m)
        self.cells[o][nn] += 1
        self.cell_msgs[o][nn] += messages
        if self.abs_hashes is not None:
            self.abs_hashes.append(abs(h))
            self.counts.append(messages)
        return o, nn

    def add_all(self, items: Iterable[tuple[int | None, int]]) -> "ScaleTally":
        for h, c in items:
            self.add(h, c)
        return self


# --- roll-out orders ----------------------------------------------------------------------------
@dataclass(frozen=True)
class Step:
    label: str
    old: frozenset
    new: frozenset


def rollout_steps(strategy: str, n: int, m: int) -> list[Step]:
    """The states a roll-out from ``n`` to ``m`` members passes through, after each action."""
    old = set(range(n))
    new: set[int] = set()
    steps: list[Step] = []

    def snap(label: str) -> None:
        steps.append(Step(label, frozenset(old), frozenset(new)))

    if strategy == DOCUMENTED:
        for i in range(m):
            new.add(i)
            snap(f"start new {i}")
        for i in range(n):
            old.discard(i)
            snap(f"stop old {i}")
    elif strategy == "add-then-restart":
        for i in range(n, m):
            new.add(i)
            snap(f"start new {i}")
        for i in range(min(n, m)):
            old.discard(i)
            new.add(i)
            snap(f"restart {i} with size {m}")
        for i in range(m, n):
            old.discard(i)
            snap(f"stop old {i}")
    elif strategy == "member-by-member":
        for i in range(max(n, m)):
            if i < n:
                old.discard(i)
            if i < m:
                new.add(i)
            if i < n and i < m:
                snap(f"replace {i}")
            elif i < m:
                snap(f"start new {i}")
            else:
                snap(f"stop old {i}")
    elif strategy == "stop-old-then-start-new":
        for i in range(n):
            old.discard(i)
            snap(f"stop old {i}")
        for i in range(m):
            new.add(i)
            snap(f"start new {i}")
    else:
        raise ValueError(f"unknown strategy {strategy!r}")
    return steps


# --- the plan -----------------------------------------------------------------------------------
def _load(streams: list[int], msgs: list[int]) -> tuple[list[dict], dict]:
    total = sum(msgs)
    rows = [{"streams": s, "messages": c, "share": pct(c, total)} for s, c in zip(streams, msgs)]
    k = len(msgs)
    mean = total / k if k else 0.0
    summary = {
        "min": min(msgs) if msgs else 0,
        "max": max(msgs) if msgs else 0,
        "mean": round(mean, 4),
        "imbalance": round(max(msgs) / mean, 4) if mean else None,  # max / mean, 1.0 = even
        "streamsMin": min(streams) if streams else 0,
        "streamsMax": max(streams) if streams else 0,
    }
    return rows, summary


def load_summary(messages: list[int]) -> dict:
    """min / max / mean (and max/mean) of a list of per-member loads."""
    k = len(messages)
    mean = sum(messages) / k if k else 0.0
    return {"min": min(messages) if messages else 0, "max": max(messages) if messages else 0,
            "mean": round(mean, 4), "imbalance": round(max(messages) / mean, 4) if mean else None}


def _switch_steps(strategy: str, n: int, m: int) -> tuple[list[Step], list[int], list[int]]:
    """The steps, the step at which each old member stops and each new member starts.

    Old member ``o`` runs in steps ``< stop[o]``, new member ``j`` in steps ``>= start[j]``, so a
    stream of cell (o, j) has two readers in steps ``[start[j], stop[o])`` and none in steps
    ``[stop[o], start[j])``."""
    steps = rollout_steps(strategy, n, m)
    stop = [len(steps)] * n
    start = [len(steps)] * m
    for k in range(len(steps) - 1, -1, -1):
        for o in range(n):
            if o not in steps[k].old:
                stop[o] = k
        for j in steps[k].new:
            start[j] = k
    return steps, stop, start


def exposure(strategy: str, n: int, m: int) -> tuple[list[list[bool]], list[list[bool]]]:
    """For every (old member, new member) cell: does a stream there meet an overlap (both
    owners running) or a gap (neither running) at some step of ``strategy``?"""
    _steps, stop, start = _switch_steps(strategy, n, m)
    overlap = [[start[j] < stop[o] for j in range(m)] for o in range(n)]
    gap = [[stop[o] < start[j] for j in range(m)] for o in range(n)]
    return overlap, gap


def _strategy(name: str, n: int, m: int, cells, cell_msgs, streams: int, messages: int) -> dict:
    steps, stop, start = _switch_steps(name, n, m)
    k = len(steps)
    # difference arrays over steps: a cell adds its streams where it overlaps or has a gap
    d_os, d_om, d_gs, d_gm = ([0] * (k + 1) for _ in range(4))
    ovs = ovm = gps = gpm = 0
    for o in range(n):
        row, rowm = cells[o], cell_msgs[o]
        for j in range(m):
            c = row[j]
            if not c:
                continue
            a, b = start[j], stop[o]
            if a < b:
                d_os[a] += c
                d_os[b] -= c
                d_om[a] += rowm[j]
                d_om[b] -= rowm[j]
                ovs += c
                ovm += rowm[j]
            elif b < a:
                d_gs[b] += c
                d_gs[a] -= c
                d_gm[b] += rowm[j]
                d_gm[a] -= rowm[j]
                gps += c
                gpm += rowm[j]
    rows = []
    os_ = om = gs = gm = 0
    for i, st in enumerate(steps):
        os_ += d_os[i]
        om += d_om[i]
        gs += d_gs[i]
        gm += d_gm[i]
        rows.append({"step": st.label, "oldRunning": len(st.old), "newRunning": len(st.new),
                     "overlapStreams": os_, "overlapMessages": om,
                     "gapStreams": gs, "gapMessages": gm})
    return {
        "name": name,
        "documented": name == DOCUMENTED,
        "description": STRATEGIES[name],
        "overlap": {"streams": ovs, "messages": ovm, "percent": pct(ovs, streams),
                    "messagesPercent": pct(ovm, messages)},
        "gaps": {"streams": gps, "messages": gpm, "percent": pct(gps, streams),
                 "messagesPercent": pct(gpm, messages)},
        "steps": rows,
    }


def best_sizes(n: int, abs_hashes, counts, sizes: Iterable[int]) -> list[dict]:
    """For each candidate size k: streams (and messages) kept on the same member index going from
    ``n`` to ``k``, measured on these streams and in theory, against the least any scheme moves."""
    total = len(abs_hashes)
    total_msgs = sum(counts)
    old = [a % n for a in abs_hashes]
    out = []
    for k in sizes:
        if k < 1 or k == n:
            continue
        kept = 0
        kept_msgs = 0
        for a, o, c in zip(abs_hashes, old, counts):
            if a % k == o:
                kept += 1
                kept_msgs += c
        out.append({
            "size": k,
            "keptStreams": kept,
            "keptPercent": pct(kept, total),
            "keptMessagesPercent": pct(kept_msgs, total_msgs),
            "theoryKeptPercent": round(100.0 * modulo_kept_fraction(n, k), 4),
            "optimalKeptPercent": round(100.0 * (1 - minimum_move_fraction(n, k)), 4),
            "matchesOptimum": gcd(n, k) == min(n, k),
        })
    return out


def candidate_sizes(n: int, m: int) -> list[int]:
    """Sizes around the target: 1 .. max(2M, 2N, 16) (at most 1 .. 64), plus M and 2N."""
    top = min(max(2 * m, 2 * n, 16), 64)
    return sorted({k for k in range(1, top + 1)} | {m, 2 * n} - {n})


def plan(tally: ScaleTally, *, sizes: Iterable[int] | None = None) -> dict:
    """The scale plan (the JSON contract of ``simulate-scale`` minus source details)."""
    n, m = tally.n, tally.m
    cells, cell_msgs = tally.cells, tally.cell_msgs
    streams = sum(map(sum, cells))
    messages = sum(map(sum, cell_msgs))
    moved = sum(cells[o][j] for o in range(n) for j in range(m) if o != j)
    moved_msgs = sum(cell_msgs[o][j] for o in range(n) for j in range(m) if o != j)

    before_s = [sum(cells[o]) for o in range(n)]
    before_m = [sum(cell_msgs[o]) for o in range(n)]
    after_s = [sum(cells[o][j] for o in range(n)) for j in range(m)]
    after_m = [sum(cell_msgs[o][j] for o in range(n)) for j in range(m)]
    before_rows, before_load = _load(before_s, before_m)
    after_rows, after_load = _load(after_s, after_m)
    members = []
    for i in range(max(n, m)):
        members.append({
            "member": i,
            "before": before_rows[i] if i < n else None,
            "after": after_rows[i] if i < m else None,
            "gainsStreams": sum(cells[o][i] for o in range(n) if o != i) if i < m else 0,
            "losesStreams": sum(cells[i][j] for j in range(m) if j != i) if i < n else 0,
        })
    transfers = [
        {"from": o, "to": j, "streams": cells[o][j], "messages": cell_msgs[o][j],
         "moved": o != j}
        for o in range(n) for j in range(m) if cells[o][j]
    ]
    strategies = [_strategy(s, n, m, cells, cell_msgs, streams, messages) for s in STRATEGIES]
    result = {
        "from": n,
        "to": m,
        "streams": streams,
        "messages": messages,
        "unassignedStreams": tally.unassigned_streams,
        "unassignedMessages": tally.unassigned_messages,
        "movedStreams": moved,
        "movedPercent": pct(moved, streams),
        "movedMessages": moved_msgs,
        "movedMessagesPercent": pct(moved_msgs, messages),
        "keptStreams": streams - moved,
        "minimumMovePercent": round(100.0 * minimum_move_fraction(n, m), 4),
        "theoryMovedPercent": round(100.0 * (1 - modulo_kept_fraction(n, m)), 4),
        "members": members,
        "load": {"before": before_load, "after": after_load},
        "transfers": transfers,
        "overlap": {s["name"]: s["overlap"] for s in strategies},
        "gaps": {s["name"]: s["gaps"] for s in strategies},
        "strategies": strategies,
    }
    if tally.abs_hashes is not None:
        result["bestSizes"] = best_sizes(n, tally.abs_hashes, tally.counts,
                                         candidate_sizes(n, m) if sizes is None else sizes)
    return result


# --- hand-over with checkpoints -----------------------------------------------------------------
@dataclass
class Handover:
    """Safe start positions for the new group, from the old group's checkpoints.

    New member ``j`` starts at the lowest checkpoint among its donors (every old member that can
    hand it a stream), so no message of its share is skipped; a donor without a checkpoint
    counts as ``FIRST_POSITION`` (it processed nothing)."""

    n: int
    m: int
    positions: Mapping[int, int]  # old member -> next global position to read
    starts: list[int] = field(init=False)
    donors: list[list[int]] = field(init=False)
    missing: list[int] = field(init=False)
    reread: list[int] = field(init=False)
    naive_skipped: list[int] = field(init=False)
    counted: bool = field(init=False, default=False)

    def __post_init__(self):
        _check_sizes(self.n, self.m)
        self.missing = [o for o in range(self.n) if o not in self.positions]
        self._pos = [self.positions.get(o, FIRST_POSITION) for o in range(self.n)]
        self.donors = [donors(self.n, self.m, j) for j in range(self.m)]
        self.starts = [min(self._pos[o] for o in d) for d in self.donors]
        self.reread = [0] * self.m
        self.naive_skipped = [0] * self.m

    def add(self, h: int | None, global_position: int) -> None:
        """Count one message (its stream's cardinal hash and its global position):
        re-read = at or after its new member's start but before its old member's checkpoint
        (processed twice); naive-skipped = what a new member ``j`` that simply reused old member
        ``j``'s checkpoint would never read (the old owner had not reached it either)."""
        if h is None:
            return
        a = abs(h)
        o = a % self.n
        j = a % self.m
        done_before = self._pos[o]
        if self.starts[j] <= global_position < done_before:
            self.reread[j] += 1
        if j < self.n and done_before <= global_position < self._pos[j]:
            self.naive_skipped[j] += 1
        self.counted = True

    def rows(self, *, counted: bool) -> list[dict]:
        out = []
        for j in range(self.m):
            d = self.donors[j]
            out.append({
                "member": j,
                "donors": [{"member": o, "position": self.positions.get(o)} for o in d],
                "position": self.starts[j],
                "rereadMessages": self.reread[j] if counted else None,
                "naiveSkippedMessages": (self.naive_skipped[j] if j < self.n else None)
                if counted else None,
            })
        return out
