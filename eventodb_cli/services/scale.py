"""``simulate-scale``: gather streams (store, stdin names, or synthetic), compute the plan with
``domain.scale``, and plan (or write) the new group's checkpoints.

Reading the store: one unfiltered pass over the category, up to the head found at the start
(a snapshot: messages written meanwhile are left out), keeping one counter per stream.
"""

from __future__ import annotations

import json
import os
import random
import uuid
from typing import Callable, Iterable, Iterator, TextIO

from ..domain import scale as dscale
from ..domain.hashing import stream_hash
from ..domain.streams import category as category_of
from ..errors import CheckFailed, NotFound, UsageError

READ_BATCH = 10_000
_MISSING = object()

Progress = Callable[[str, int, int | None], None]  # (phase, done, total)


# --- stream sources ---------------------------------------------------------------------------
def synthetic_streams(category: str, k: int, ids: str, seed: int | None = None
                      ) -> Iterator[tuple[str, int]]:
    """K names ``category-1..K`` (sequential) or ``category-<uuid4>`` (uuid; ``seed`` makes them
    reproducible), one message each."""
    if k < 0:
        raise UsageError(f"--synthetic must be >= 0 (got {k})")
    if ids == "sequential":
        for i in range(1, k + 1):
            yield f"{category}-{i}", 1
    elif ids == "uuid":
        rng = random.Random(seed) if seed is not None else None
        for _ in range(k):
            u = uuid.UUID(int=rng.getrandbits(128), version=4) if rng else uuid.uuid4()
            yield f"{category}-{u}", 1
    else:
        raise UsageError(f"--ids must be sequential or uuid (got {ids!r})")


def parse_stream_lines(lines: Iterable[str], category: str) -> tuple[dict[str, int], int]:
    """``name`` (1 message) or ``name<TAB>count`` per line. Names outside ``category`` are
    ignored and counted; a repeated name adds its counts. A bad count is a usage error."""
    counts: dict[str, int] = {}
    ignored = 0
    for lineno, raw in enumerate(lines, 1):
        line = raw.rstrip("\r\n")
        if not line.strip():
            continue
        name, sep, cnt = line.partition("\t")
        c = 1
        if sep:
            try:
                c = int(cnt.strip())
            except ValueError:
                raise UsageError(f"line {lineno}: message count is not an integer: "
                                 f"{cnt.strip()!r}") from None
            if c < 0:
                raise UsageError(f"line {lineno}: message count must be >= 0 (got {c})")
        if category and category_of(name) != category:
            ignored += 1
            continue
        counts[name] = counts.get(name, 0) + c
    return counts, ignored


def category_counts(store, category: str, *, handover: dscale.Handover | None = None,
                    on_progress: Progress | None = None) -> tuple[dict[str, int], int | None]:
    """Messages per stream of ``category`` in one unfiltered read up to the current head.
    With ``handover``, also counts each message's re-read / skip figures. Returns
    (counts, head)."""
    head = store.category_head(category)
    counts: dict[str, int] = {}
    if head is None:
        return counts, None
    hashes: dict[str, int | None] = {}
    for batch, reached in store.category_pages(category, 1, READ_BATCH, until=head):
        if handover is None:
            get = counts.get
            for x in batch:
                s = x.stream_name
                counts[s] = get(s, 0) + 1
        else:
            for x in batch:
                s = x.stream_name
                h = hashes.get(s, _MISSING)
                if h is _MISSING:
                    h = hashes[s] = stream_hash(s)
                counts[s] = counts.get(s, 0) + 1
                handover.add(h, x.global_position)
        if on_progress:
            on_progress("reading", reached, head)
    return counts, head


# --- the plan ----------------------------------------------------------------------------------
def simulate(category: str, n: int, m: int, streams: Iterable[tuple[str, int]], *,
             handover: dscale.Handover | None = None, owners: TextIO | None = None,
             source: str = "store", extra: dict | None = None) -> dict:
    """The simulate-scale report for ``streams`` ((name, messages) pairs)."""
    tally = dscale.ScaleTally(n, m)
    if owners is not None:
        flags = {name: dscale.exposure(name, n, m) for name in dscale.STRATEGIES}
    for name, c in streams:
        h = stream_hash(name)
        got = tally.add(h, c)
        if owners is not None:
            row = {"stream": name, "messages": c, "before": None, "after": None,
                   "moved": False, "overlapIn": [], "gapIn": []}
            if got is not None:
                o, j = got
                cell = {s: f(o, j) for s, f in flags.items()}
                row.update(before=o, after=j, moved=o != j,
                           overlapIn=[s for s, (ov, _g) in cell.items() if ov],
                           gapIn=[s for s, (_o, gp) in cell.items() if gp])
            owners.write(json.dumps(row, ensure_ascii=False) + "\n")
    result = {"category": category, "source": source}
    result.update(dscale.plan(tally))
    if extra:
        result.update(extra)
    if handover is not None:
        result["handover"] = handover.rows(counted=handover.counted or source == "store")
        result["handoverMissing"] = handover.missing
        if source == "store":
            result["rereadMessages"] = sum(handover.reread)
            result["naiveSkippedMessages"] = sum(handover.naive_skipped)
    return result


def load_handover(source: str, category: str, n: int, m: int) -> dscale.Handover:
    """The old group's checkpoints (size ``n``) -> a ``Handover`` for the new size ``m``."""
    from .checkpoints import load_source

    cps = load_source(source, category=category, size=n)
    positions: dict[int, int] = {}
    for cp in cps:
        if cp.member is None:
            raise UsageError(f"checkpoint {cp.path} does not say which member it belongs to "
                             f"(name it {category}.member-<m>-of-{n}.json or add \"member\")")
        if not 0 <= cp.member < n:
            raise UsageError(f"checkpoint {cp.path}: member {cp.member} is not in a group of {n}")
        if cp.member in positions and positions[cp.member] != cp.position:
            raise UsageError(f"two checkpoints for member {cp.member} of {n} disagree "
                             f"({positions[cp.member]} and {cp.position}, {cp.path})")
        positions[cp.member] = cp.position
    if not positions:
        raise UsageError(f"no checkpoints of {category!r} with size {n} in {source}")
    return dscale.Handover(n, m, positions)


def checkpoint_actions(category: str, m: int, handover_rows: list[dict], directory: str
                       ) -> list[dict]:
    """What --write-checkpoints would do: one file per new member. A file already there with a
    different position is a conflict (nothing is written then)."""
    from .checkpoints import default_name, load

    actions = []
    for row in handover_rows:
        path = os.path.join(directory, default_name(category, row["member"], m))
        existing = load(path) if os.path.exists(path) else None
        if existing is None:
            action = "create"
        elif existing.position == row["position"]:
            action = "unchanged"
        else:
            action = "conflict"
        actions.append({"member": row["member"], "path": path, "position": row["position"],
                        "action": action,
                        "existingPosition": None if existing is None else existing.position})
    return actions


def write_checkpoints(category: str, m: int, actions: list[dict]) -> None:
    """Write the planned files atomically (checkpoints.save); refuse all on any conflict."""
    from .checkpoints import Checkpoint, save

    clashes = [a for a in actions if a["action"] == "conflict"]
    if clashes:
        a = clashes[0]
        raise CheckFailed(f"{a['path']} exists with position {a['existingPosition']} "
                          f"(plan: {a['position']}); {len(clashes)} file(s) clash, nothing "
                          "written: remove them or choose another directory")
    for a in actions:
        if a["action"] == "create":
            save(a["path"], Checkpoint(a["position"], category=category, member=a["member"],
                                       size=m))
            a["action"] = "created"


# --- hand-over of positions kept in the store (consume --group) -------------------------------
def load_group_handover(store, category: str, group: str, n: int, m: int) -> dscale.Handover:
    """The old group's positions (size ``n``, in the store: services/positions.py) -> a
    ``Handover`` for the new size ``m``, in the checkpoint file's meaning (next to read)."""
    from . import positions as P

    P.check_group(group)
    found: dict[int, int] = {}
    for o in range(n):
        pos = P.read_position(store, category, P.group_identifier(group, o))
        if pos is None:
            continue
        if pos.size is not None and pos.size != n:
            raise UsageError(f"{pos.stream} was recorded for a group of size {pos.size}, not "
                             f"--from {n}" + (" (this hand-over was already written)"
                                               if pos.size == m else ""))
        found[o] = pos.next
    if not found:
        raise NotFound(f"no positions of group {group} on {category} for members 0..{n - 1} "
                       f"(consume --group {group} writes them)")
    return dscale.Handover(n, m, found)


def position_actions(category: str, group: str, m: int, handover_rows: list[dict]) -> list[dict]:
    """What --group --execute writes: one Recorded position per new member, the last processed
    global position (``recorded_from_next`` of the planned start)."""
    from . import positions as P

    out = []
    for row in handover_rows:
        ident = P.group_identifier(group, row["member"])
        out.append({"member": row["member"], "identifier": ident,
                    "stream": P.position_stream_name(category, ident),
                    "position": P.recorded_from_next(row["position"]), "next": row["position"],
                    "size": m, "action": "plan"})
    return out


def write_positions(store, category: str, group: str, m: int, actions: list[dict]) -> None:
    """Write the new members' starting positions (Recorded messages with size ``m``)."""
    from . import positions as P

    for a in actions:
        P.write_position(store, category, a["identifier"], a["position"], group=group,
                         member=a["member"], size=m)
        a["action"] = "written"
