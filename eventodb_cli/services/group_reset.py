"""``group reset``: move a group's positions, planned first, applied only on request.

Like ``kafka-consumer-groups --reset-offsets``: ``plan`` computes, for each member, the old and
the new position and changes nothing; ``execute`` appends one ``Recorded`` message per member
(so the history of positions stays in each stream). Positions are Eventide's: the global position
of the LAST message processed, so the member's next read starts right after it.

Targets (exactly one):

- ``to-earliest``: position 0, the member reads its whole share again from global position 1.
- ``to-latest``: the category's head when the plan is made: everything written so far is
  skipped, the next read is head + 1 (0 on an empty category).
- ``to-position G``: position G, as ``group describe`` will show it: the next read is G + 1
  (to process the message at G again, reset to G - 1). G beyond the head is refused.
- ``to-datetime T``: the first message of the category written at or after T (in global
  position order) is the next read: position = its global position - 1; the head when none is.
- ``shift-by K``: old position + K (K may be negative), kept within 0..head; a member without a
  position counts as 0.

Stop the group's consumers first: a running member writes its own position after its next batch
and overwrites the reset.
"""

from __future__ import annotations

from ..domain.message import format_time
from ..errors import UsageError
from ..store.base import Store
from . import positions as P

TARGETS = ("to-earliest", "to-latest", "to-position", "to-datetime", "shift-by")


def first_at_or_after(store: Store, category: str, time_ns: int, head: int | None) -> int | None:
    """Global position of the first message of ``category`` (in global position order) written
    at or after ``time_ns``, up to ``head``; ``None`` when there is none."""
    if head is None:
        return None
    for batch, _reached in store.category_pages(category, 1, 10_000, until=head):
        for m in batch:
            if m.time >= time_ns:
                return m.global_position
    return None


def plan(store: Store, category: str, group: str, size: int, target: str, value=None, *,
         member: int | None = None) -> dict:
    """The reset plan (the ``--format json`` object); nothing is written."""
    if target not in TARGETS:
        raise UsageError(f"unknown reset target {target!r}")
    if size < 1:
        raise UsageError(f"--size must be >= 1 (got {size})")
    if member is not None and not 0 <= member < size:
        raise UsageError(f"--member {member} is outside a group of size {size} (0..{size - 1})")
    members = range(size) if member is None else [member]
    idents = [(m, P.group_identifier(group, m)) for m in members]
    old = {m: P.read_position(store, category, ident) for m, ident in idents}
    for pos in old.values():
        if pos is not None and pos.size is not None and pos.size != size:
            raise P.SizeMismatch(
                f"{pos.stream} was recorded for a group of size {pos.size}, not {size}: reset "
                f"with --size {pos.size}, or hand the positions over first with `eventodb "
                f"simulate-scale {category} --from {pos.size} --to {size} --group {group} "
                f"--execute`", recorded=pos.size, size=size)
    head = store.category_head(category)
    top = head or 0
    fixed = None
    if target == "to-earliest":
        fixed = 0
    elif target == "to-latest":
        fixed = top
    elif target == "to-position":
        if value < 0:
            raise UsageError(f"--to-position must be >= 0 (got {value})")
        if value > top:
            raise UsageError(f"--to-position {value} is beyond the head of {category} ({top}): "
                             f"the member would skip messages not written yet")
        fixed = value
    elif target == "to-datetime":
        first = first_at_or_after(store, category, value, head)
        fixed = top if first is None else P.recorded_from_next(first)
    rows = []
    for m, ident in idents:
        pos = old[m]
        was = None if pos is None else pos.position
        new = fixed if fixed is not None else min(max((was or 0) + value, 0), top)
        rows.append({"member": m, "identifier": ident,
                     "positionStream": P.position_stream_name(category, ident),
                     "oldPosition": was, "newPosition": new,
                     "change": None if was is None else new - was})
    return {"category": category, "group": group, "size": size, "head": head,
            "target": target,
            "value": format_time(value) if target == "to-datetime" else value,
            "executed": False, "members": rows}


def execute(store: Store, report: dict) -> dict:
    """Write the plan: one ``Recorded`` message per member; returns the report, executed."""
    for r in report["members"]:
        P.write_position(store, report["category"], r["identifier"], r["newPosition"],
                         group=report["group"], member=r["member"], size=report["size"])
    report["executed"] = True
    return report
