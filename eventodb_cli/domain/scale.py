"""Scale plans: what changes when a consumer group goes from N to M members. Pure, no I/O.

Everything here is computed from (stream, cardinal hash, message count) triples with
``domain.hashing.member_of_hash`` (member = abs(hash) % size), the one assignment rule.

Because a stream's fate depends only on its old member ``o`` and its new member ``n``, the plan
keeps the exact old x new matrix of (streams, messages) and derives everything else from it:
moved streams, per-member loads, the double coverage and the gaps of each roll-out order. The
matrix is kept sparse (only cells that hold a stream), and every roll-out order is computed from
two arrays (the step at which each old member stops, each new member starts), so a plan costs
O(streams + N + M) in time and memory, never O(N x M): ``--from 2 --to 100000`` is as cheap as
the streams it reads.

Theory used in the report (exact for a hash spread evenly over the residues):
``abs(h) % N == abs(h) % M`` holds for ``gcd(N, M)`` residues of every ``lcm(N, M)``, so the
modulo hash keeps ``gcd(N, M) / max(N, M)`` of the streams in place, while the least any scheme
can move (jump consistent hashing reaches it) is ``|M - N| / max(N, M)``. The two agree exactly
when one size divides the other (doubling keeps half; 3 -> 4 keeps a quarter). An old member
``o`` can only hand streams to new members ``n`` with ``o = n (mod gcd(N, M))`` (CRT).
"""

from __future__ import annotations

from array import array
from bisect import bisect_right
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

# A roll-out of more steps than this lists only the steps where its overlap or gap changes
# (plus the first and the last; ``index`` numbers them), so the report stays O(streams).
STEP_ROWS = 1000

# The largest consumer group the tools plan or check: per-member reports and plans are
# O(size), and a group of more than 100,000 consumers has no use (a usage error above it).
MAX_GROUP_SIZE = 100_000


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
    """Accumulates streams for a plan from ``n`` to ``m`` members. Memory: one entry per
    non-empty cell of the old x new matrix (at most one per stream, at most ``n * m``) plus one
    unsigned 64-bit word per stream (for the size comparison)."""

    def __init__(self, n: int, m: int, *, keep_hashes: bool = True):
        _check_sizes(n, m)
        self.n = n
        self.m = m
        self.cells: dict[tuple[int, int], int] = {}  # (old, new) -> streams
        self.cell_msgs: dict[tuple[int, int], int] = {}  # (old, new) -> messages
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
        key = (o, nn)
        self.cells[key] = self.cells.get(key, 0) + 1
        self.cell_msgs[key] = self.cell_msgs.get(key, 0) + messages
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


def _switch_steps(strategy: str, n: int, m: int) -> tuple[list[str], list[int], list[int]]:
    """The step labels, the step at which each old member stops and each new member starts,
    in closed form (the same states ``rollout_steps`` lists, without listing them: O(N + M)).

    Old member ``o`` runs in steps ``< stop[o]``, new member ``j`` in steps ``>= start[j]``, so a
    stream of cell (o, j) has two readers in steps ``[start[j], stop[o])`` and none in steps
    ``[stop[o], start[j])``."""
    if strategy == DOCUMENTED:
        labels = [f"start new {i}" for i in range(m)] + [f"stop old {i}" for i in range(n)]
        start = list(range(m))
        stop = [m + o for o in range(n)]
    elif strategy == "add-then-restart":
        added = max(0, m - n)
        both = min(n, m)
        labels = ([f"start new {i}" for i in range(n, m)]
                  + [f"restart {i} with size {m}" for i in range(both)]
                  + [f"stop old {i}" for i in range(m, n)])
        start = [j - n if j >= n else added + j for j in range(m)]
        stop = [added + o if o < both else added + both + (o - m) for o in range(n)]
    elif strategy == "member-by-member":
        labels = [("replace" if i < n and i < m else "start new" if i < m else "stop old")
                  + f" {i}" for i in range(max(n, m))]
        start = list(range(m))
        stop = list(range(n))
    elif strategy == "stop-old-then-start-new":
        labels = [f"stop old {i}" for i in range(n)] + [f"start new {i}" for i in range(m)]
        stop = list(range(n))
        start = [n + j for j in range(m)]
    else:
        raise ValueError(f"unknown strategy {strategy!r}")
    return labels, stop, start


def exposure(strategy: str, n: int, m: int):
    """For a stream of cell (old member ``o``, new member ``j``): does it meet an overlap (both
    owners running) or a gap (neither running) at some step of ``strategy``? Returns a function
    ``(o, j) -> (overlap, gap)`` (O(N + M) memory, not a matrix)."""
    _labels, stop, start = _switch_steps(strategy, n, m)

    def cell(o: int, j: int) -> tuple[bool, bool]:
        return start[j] < stop[o], stop[o] < start[j]

    return cell


def _strategy(name: str, n: int, m: int, cells: dict, cell_msgs: dict, streams: int,
              messages: int) -> dict:
    labels, stop, start = _switch_steps(name, n, m)
    k = len(labels)
    # difference maps over steps: a cell adds its streams where it overlaps or has a gap
    d_os: dict[int, int] = {}
    d_om: dict[int, int] = {}
    d_gs: dict[int, int] = {}
    d_gm: dict[int, int] = {}
    ovs = ovm = gps = gpm = 0
    for (o, j), c in cells.items():
        cm = cell_msgs[(o, j)]
        a, b = start[j], stop[o]
        if a < b:
            d_os[a] = d_os.get(a, 0) + c
            d_os[b] = d_os.get(b, 0) - c
            d_om[a] = d_om.get(a, 0) + cm
            d_om[b] = d_om.get(b, 0) - cm
            ovs += c
            ovm += cm
        elif b < a:
            d_gs[b] = d_gs.get(b, 0) + c
            d_gs[a] = d_gs.get(a, 0) - c
            d_gm[b] = d_gm.get(b, 0) + cm
            d_gm[a] = d_gm.get(a, 0) - cm
            gps += c
            gpm += cm
    # members running after step i: old ones whose stop is after i, new ones started by i
    stops_sorted = sorted(stop)
    starts_sorted = sorted(start)
    changes = sorted({i for d in (d_os, d_om, d_gs, d_gm) for i in d})
    if k <= STEP_ROWS:
        points: Iterable[int] = range(k)
    else:  # a long roll-out lists the steps where its figures change, the first and the last
        points = sorted({i for i in changes if i < k} | {0, k - 1})
    rows = []
    os_ = om = gs = gm = 0
    c = 0  # changes[:c] are applied
    for i in points:
        while c < len(changes) and changes[c] <= i:
            x = changes[c]
            os_ += d_os.get(x, 0)
            om += d_om.get(x, 0)
            gs += d_gs.get(x, 0)
            gm += d_gm.get(x, 0)
            c += 1
        rows.append({"index": i, "step": labels[i],
                     "oldRunning": n - bisect_right(stops_sorted, i),
                     "newRunning": bisect_right(starts_sorted, i),
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
        "stepCount": k,
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
    """The scale plan (the JSON contract of ``simulate-scale`` minus source details).
    O(non-empty cells + N + M): ``transfers`` lists only the non-empty cells."""
    n, m = tally.n, tally.m
    cells, cell_msgs = tally.cells, tally.cell_msgs
    before_s, before_m = [0] * n, [0] * n
    after_s, after_m = [0] * m, [0] * m
    gains, loses = [0] * m, [0] * n
    streams = messages = moved = moved_msgs = 0
    for (o, j), c in cells.items():
        cm = cell_msgs[(o, j)]
        streams += c
        messages += cm
        before_s[o] += c
        before_m[o] += cm
        after_s[j] += c
        after_m[j] += cm
        if o != j:
            moved += c
            moved_msgs += cm
            gains[j] += c
            loses[o] += c
    before_rows, before_load = _load(before_s, before_m)
    after_rows, after_load = _load(after_s, after_m)
    members = []
    for i in range(max(n, m)):
        members.append({
            "member": i,
            "before": before_rows[i] if i < n else None,
            "after": after_rows[i] if i < m else None,
            "gainsStreams": gains[i] if i < m else 0,
            "losesStreams": loses[i] if i < n else 0,
        })
    transfers = [
        {"from": o, "to": j, "streams": cells[(o, j)], "messages": cell_msgs[(o, j)],
         "moved": o != j}
        for o, j in sorted(cells) if cells[(o, j)]
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
        "membersWithoutStreams": sum(1 for c in after_s if not c),
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
DONOR_LIMIT = 16  # donors listed per new member in a hand-over row
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
    missing: list[int] = field(init=False)
    reread: list[int] = field(init=False)
    naive_skipped: list[int] = field(init=False)
    counted: bool = field(init=False, default=False)

    def __post_init__(self):
        _check_sizes(self.n, self.m)
        self.missing = [o for o in range(self.n) if o not in self.positions]
        self._pos = [self.positions.get(o, FIRST_POSITION) for o in range(self.n)]
        # new member j's donors are the old members o = j (mod g): the lowest position of each
        # residue gives every start in O(N + M), whatever the number of donors
        g = self.g = gcd(self.n, self.m)
        lowest = [None] * g
        for o, p in enumerate(self._pos):
            r = o % g
            if lowest[r] is None or p < lowest[r]:
                lowest[r] = p
        self.starts = [lowest[j % g] for j in range(self.m)]
        self.reread = [0] * self.m
        self.naive_skipped = [0] * self.m

    @property
    def donors(self) -> list[list[int]]:
        """Every new member's donors (``donors()``); N x M / g entries: for small groups."""
        return [donors(self.n, self.m, j) for j in range(self.m)]

    def donors_of(self, j: int, limit: int | None = None) -> list[int]:
        """New member ``j``'s donors (old members ``o = j (mod g)``), the first ``limit``."""
        g = self.g
        count = (self.n - 1 - j % g) // g + 1
        k = count if limit is None else min(limit, count)
        return [j % g + i * g for i in range(k)]

    def donor_count(self, j: int) -> int:
        return (self.n - 1 - j % self.g) // self.g + 1

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

    def rows(self, *, counted: bool, donor_limit: int = DONOR_LIMIT) -> list[dict]:
        """One row per new member. ``donors`` lists at most ``donor_limit`` old members (then
        ``donorCount`` says how many there are, and the one whose position set the start is
        listed too), so the rows stay O(M) when N and M share no factor."""
        out = []
        for j in range(self.m):
            count = self.donor_count(j)
            d = self.donors_of(j, donor_limit)
            if count > len(d):
                lowest = min(self.donors_of(j), key=lambda o: self._pos[o]) \
                    if count <= 10 * donor_limit else self._lowest_donor(j)
                if lowest not in d:
                    d.append(lowest)
            out.append({
                "member": j,
                "donorCount": count,
                "donors": [{"member": o, "position": self.positions.get(o)} for o in d],
                "position": self.starts[j],
                "rereadMessages": self.reread[j] if counted else None,
                "naiveSkippedMessages": (self.naive_skipped[j] if j < self.n else None)
                if counted else None,
            })
        return out

    def _lowest_donor(self, j: int) -> int:
        """The donor of new member ``j`` with the lowest position (the one that sets its start);
        cached per residue, so all rows together cost O(N + M)."""
        cache = self.__dict__.setdefault("_lowest_cache", {})
        r = j % self.g
        if r not in cache:
            cache[r] = min(range(r, self.n, self.g), key=lambda o: self._pos[o])
        return cache[r]
