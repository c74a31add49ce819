"""Consumer groups seen from the store: ``group list`` and ``group describe`` (and ``lag --group``).

Everything here is read from the position streams (services/positions.py) and the category
itself, through the Store interface, so it answers the same from any machine and any target.

One snapshot per report: the positions are read first, then the category's head, then each
member's unprocessed messages are counted among ``position < gpos <= head``. A position can only
name a message that existed when it was written and the head is read after it, so no lag comes
out negative.

Per member (``describe``):

- ``position``: the global position of the last message processed (Eventide's ``Recorded``);
  ``None`` (shown ``-``) without a position stream, and the member then reads from the start.
- ``lagMessages``: the EXACT number of the member's messages after its position, up to the head.
- ``lagSeconds``: age of the oldest of them (0 when none).
- ``status``: ``missing`` (no position stream), else ``stalled`` (it has lag and no new position
  for ``stalled_after`` seconds), else ``lagging`` (over ``max_lag`` messages or
  ``max_lag_seconds``), else ``healthy``. A threshold left at ``None`` is not checked.
"""

from __future__ import annotations

import time
from typing import Iterable

from ..domain.message import format_time
from ..errors import NotFound, UsageError
from ..store.base import Store
from . import positions as P

PAGE = 10_000  # the server's largest batchSize
STATUSES = ("healthy", "lagging", "stalled", "missing")


# --- counting a member's share ------------------------------------------------------------------
def share_lag(store: Store, category: str, member: int | None, size: int | None, after: int,
              head: int | None) -> tuple[int, int | None]:
    """``(count, oldest_time_ns)`` of the share's messages with ``after < gpos <= head``, exact.

    A store may offer a faster ``share_lag`` with the same arguments (an SQL count); the generic
    version pages through the member's read."""
    fast = getattr(store, "share_lag", None)
    if fast is not None:
        return fast(category, member, size, after, head)
    if head is None or after >= head:
        return 0, None
    count, oldest = 0, None
    for batch, _reached in store.category_pages(category, after + 1, PAGE, member=member,
                                                size=size, until=head):
        if batch and oldest is None:
            oldest = batch[0].time
        count += len(batch)
    return count, oldest


# --- the group's size ---------------------------------------------------------------------------
def _group_positions(store: Store, category: str, group: str) -> dict[int, P.Position]:
    """Every member position of ``group`` on ``category`` found in the store."""
    out: dict[int, P.Position] = {}
    for _cat, ident, _stream in P.list_position_streams(store, category):
        split = P.split_group_identifier(ident)
        if split is None or split[0] != group:
            continue
        pos = P.read_position(store, category, ident)
        if pos is not None:
            out[split[1]] = pos
    return out


def size_from_positions(found: dict[int, P.Position], where: str) -> int | None:
    """The group size the positions record: all the same, or (after a resize down) the size of
    the newest position when every member below it agrees; ``None`` when nothing records one."""
    sizes = {p.size for p in found.values() if p.size is not None}
    if not sizes:
        return None
    if len(sizes) == 1:
        return sizes.pop()
    newest = max((p for p in found.values() if p.size is not None),
                 key=lambda p: p.global_position or 0)
    s = newest.size
    if all(p.size == s for m, p in found.items() if m < s and p.size is not None):
        return s  # members >= s are left over from a larger size
    by_size: dict[int, list[int]] = {}
    for m, p in sorted(found.items()):
        if p.size is not None:
            by_size.setdefault(p.size, []).append(m)
    detail = "; ".join(f"size {s}: member{'s' if len(ms) > 1 else ''} "
                       f"{', '.join(map(str, ms))}" for s, ms in sorted(by_size.items()))
    raise UsageError(f"the positions of {where} record different group sizes ({detail}): "
                     f"give --size N, or finish the hand-over with `eventodb simulate-scale`")


# --- describe -----------------------------------------------------------------------------------
def _status(pos, lag: int, lag_s: float, now: int, max_lag, max_lag_seconds,
            stalled_after) -> str:
    if pos is None:
        return "missing"
    if (stalled_after is not None and lag > 0 and pos.time_ns is not None
            and (now - pos.time_ns) / 1e9 > stalled_after):
        return "stalled"
    if (max_lag is not None and lag > max_lag) or \
            (max_lag_seconds is not None and lag_s > max_lag_seconds):
        return "lagging"
    return "healthy"


def _check_thresholds(size, max_lag, max_lag_seconds, stalled_after) -> None:
    if size is not None and size < 1:
        raise UsageError(f"--size must be >= 1 (got {size})")
    for name, v in (("--max-lag", max_lag), ("--max-lag-seconds", max_lag_seconds),
                    ("--stalled-after", stalled_after)):
        if v is not None and v < 0:
            raise UsageError(f"{name} must be >= 0 (got {v})")


def describe(store: Store, category: str, *, group: str | None = None, size: int | None = None,
             identifier: str | None = None, max_lag: int | None = None,
             max_lag_seconds: float | None = None, stalled_after: float | None = None,
             now_ns: int | None = None) -> dict:
    """One report (the ``--format json`` object): the summary, then ``members``, one row each."""
    if (group is None) == (identifier is None):
        raise UsageError("give exactly one of --group NAME or --identifier ID")
    if identifier is not None and not identifier.strip():
        raise UsageError("--identifier: empty value")
    if identifier is not None and size is not None:
        raise UsageError("--size is for a --group; an --identifier is one consumer")
    _check_thresholds(size, max_lag, max_lag_seconds, stalled_after)
    P.position_stream_name(category, None)  # validates the category
    if group is not None:
        P.check_group(group)
        if size is None:
            size = size_from_positions(_group_positions(store, category, group),
                                       f"group {group} on {category}")
            if size is None:
                raise NotFound(f"no positions of group {group} on {category} with a recorded "
                               f"size: give --size N to see its members")
        idents = [(m, P.group_identifier(group, m)) for m in range(size)]
    else:
        idents = [(None, identifier)]
    found = [(m, ident, P.read_position(store, category, ident)) for m, ident in idents]
    head = store.category_head(category)
    now = time.time_ns() if now_ns is None else now_ns
    rows = []
    for m, ident, pos in found:
        after = pos.position if pos is not None else 0
        if group is not None:
            lag, oldest = share_lag(store, category, m, size, after, head)
        else:
            lag, oldest = share_lag(store, category, None, None, after, head)
        lag_s = 0.0 if oldest is None else max(0.0, round((now - oldest) / 1e9, 3))
        rows.append({
            "member": m,
            "identifier": ident,
            "positionStream": P.position_stream_name(category, ident),
            "position": None if pos is None else pos.position,
            "head": head,
            "lagMessages": lag,
            "lagSeconds": lag_s,
            "updatedAt": None if pos is None or pos.time_ns is None else format_time(pos.time_ns),
            "recordedSize": None if pos is None else pos.size,
            "status": _status(pos, lag, lag_s, now, max_lag, max_lag_seconds, stalled_after),
        })
    counts = {s: sum(1 for r in rows if r["status"] == s) for s in STATUSES}
    return {
        "category": category,
        "group": group,
        "identifier": identifier,
        "size": size,
        "head": head,
        "time": format_time(now),
        "membersSeen": sum(1 for r in rows if r["position"] is not None),
        "lagMessages": sum(r["lagMessages"] for r in rows),
        "lagSeconds": max((r["lagSeconds"] for r in rows), default=0.0),
        "maxLag": max_lag,
        "maxLagSeconds": max_lag_seconds,
        "stalledAfter": stalled_after,
        "statusCounts": counts,
        "ok": counts["healthy"] == len(rows),
        "members": rows,
    }


def metric_rows(report: dict) -> list[dict]:
    """The report's members as rows for ``metrics.prometheus_text`` (labels category, group,
    member, size, and identifier for a consumer outside a group)."""
    return [{"category": report["category"], "group": report["group"], "member": r["member"],
             "size": report["size"],
             "identifier": report["identifier"],
             "position": r["position"], "head": r["head"], "lagMessages": r["lagMessages"],
             "lagSeconds": r["lagSeconds"]} for r in report["members"]]


METRIC_LABELS = ("category", "group", "member", "size", "identifier")


# --- list ---------------------------------------------------------------------------------------
def list_groups(store: Store, *, now_ns: int | None = None) -> list[dict]:
    """Every group (and every Eventide consumer outside a group) found in the store's position
    streams: category, group, size, members seen, newest position and its age."""
    now = time.time_ns() if now_ns is None else now_ns
    groups: dict[tuple, dict[int, P.Position]] = {}
    singles: list[tuple[str, str | None, P.Position]] = []
    for cat, ident, _stream in P.list_position_streams(store):
        pos = P.read_position(store, cat, ident)
        if pos is None:
            continue  # a position stream without a Recorded message
        split = P.split_group_identifier(ident)
        if pos.group is not None and pos.member is not None:
            key, member = (cat, pos.group), pos.member
        elif split is not None:
            key, member = (cat, split[0]), split[1]
        else:
            singles.append((cat, ident, pos))
            continue
        groups.setdefault(key, {})[member] = pos
    rows = []
    for (cat, group), members in groups.items():
        try:
            size = size_from_positions(members, f"group {group} on {cat}")
        except UsageError:
            size = None
        rows.append(_list_row(cat, group, None, size, members.values(), now))
    for cat, ident, pos in singles:
        rows.append(_list_row(cat, None, ident, None, [pos], now))
    rows.sort(key=lambda r: (r["category"], r["group"] or "", r["identifier"] or ""))
    return rows


def _list_row(category, group, identifier, size, positions: Iterable[P.Position],
              now: int) -> dict:
    positions = list(positions)
    newest = max((p.time_ns for p in positions if p.time_ns is not None), default=None)
    sizes = sorted({p.size for p in positions if p.size is not None})
    return {
        "category": category,
        "group": group,
        "identifier": identifier,
        "size": size,
        "recordedSizes": sizes,
        "membersSeen": len(positions),
        "newestUpdate": None if newest is None else format_time(newest),
        "ageSeconds": None if newest is None else max(0.0, round((now - newest) / 1e9, 3)),
    }
