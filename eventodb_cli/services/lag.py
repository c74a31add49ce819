"""``eventodb lag``: how far behind each member of a consumer group is.

One snapshot per report: the checkpoints are read first, then the category's head (its highest
global position: ``Store.category_head``, an SQL ``max`` on a local store and a logarithmic search
on a server), then each member's unprocessed messages are counted among those with
``position <= gpos <= head``. Because a checkpoint can only point past messages that existed when
it was saved, and the head is read after the checkpoints, no lag can come out negative (and every
figure is clamped at 0 anyway, for checkpoints that come from another store).

A checkpoint is the NEXT global position to read (services/checkpoints.py). A member without a
checkpoint of this category and size (none at all, or only one written for another group size) is
``missing``: its figures are counted from position 1 (where it would start), the report says
``"checkpoint": null``, and it fails the check unless ``allow_missing``.

Per member:

- ``lagMessages``: messages of the member's share not yet processed, counted exactly up to
  ``cap``; beyond that the report says "at least ``cap``" (``lagMessagesExact: false``).
- ``lagPositions``: ``head - position + 1`` (global positions not yet passed, all members'),
  never below 0.
- ``lagSeconds``: age of the oldest message of the share not yet processed (0 when none).
- ``status``: ``missing`` (no checkpoint), else ``lagging`` when ``lagMessages > max_lag`` or
  ``lagSeconds > max_lag_seconds``, else ``healthy``. ``ok``: every member healthy (or missing,
  with ``allow_missing``).

(The seed's health check reads the category's FIRST message as "latest" and so reports a lag
that shrinks as the category grows; the head here is the last one.)
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from ..domain.message import format_time
from ..errors import UsageError
from ..store.base import Store
from . import checkpoints as cps

DEFAULT_CAP = 10_000
DEFAULT_MAX_LAG = 1000
MAX_PAGE = 10_000  # the server's largest batchSize


@dataclass
class ShareLag:
    messages: int  # unprocessed messages of the share with gpos <= head (at most the limit)
    exact: bool
    oldest_time: int | None  # ns, the first unprocessed message of the share


def count_share(store: Store, category: str, member: int, size: int, position: int,
                head: int | None, cap: int) -> ShareLag:
    """Count the member's messages with ``position <= gpos <= head``, exact up to ``cap``.

    Pages through the share with ``category_get`` (pages of at most ``cap + 1`` messages), so the
    cost is bounded by the cap, not by the backlog."""
    if head is None:
        return ShareLag(0, True, None)
    fast = getattr(store, "share_lag", None)  # one SQL count (Message DB), same answer
    if fast is not None:
        n, oldest = fast(category, member, size, max(position, 1) - 1, head)
        return ShareLag(min(n, cap), n <= cap, oldest)
    pos = max(position, 1)
    counted = 0
    oldest = None
    while pos <= head:
        want = min(cap + 1 - counted, MAX_PAGE)
        batch = store.category_get(category, pos, want, member=member, size=size)
        for m in batch:
            if m.global_position > head:
                return ShareLag(counted, True, oldest)
            if oldest is None:
                oldest = m.time
            counted += 1
            if counted > cap:
                return ShareLag(cap, False, oldest)
        if len(batch) < want:
            break
        pos = batch[-1].global_position + 1
    return ShareLag(counted, True, oldest)


def checkpoints_by_member(source: str, category: str, size: int) -> dict[int, cps.Checkpoint]:
    """The checkpoint of each member from SOURCE (a directory or one file)."""
    found = cps.load_source(source, category=category, size=size)
    out: dict[int, cps.Checkpoint] = {}
    for cp in found:
        if cp.member is None:
            raise UsageError(
                f"checkpoint {cp.path} does not say which member it belongs to (add "
                f"\"member\"/\"size\" or name it {cps.default_name(category, 0, size)})")
        if not 0 <= cp.member < size:
            raise UsageError(f"checkpoint {cp.path} is for member {cp.member}, "
                             f"outside a group of {size}")
        if cp.member in out:
            raise UsageError(f"two checkpoints for member {cp.member}: {out[cp.member].path} "
                             f"and {cp.path}")
        out[cp.member] = cp
    return out


def ignored_sources(source: str, category: str, size: int) -> list[cps.Checkpoint]:
    """Checkpoints in SOURCE that belong to another category or group size (for a warning)."""
    everything = cps.load_source(source)
    return [cp for cp in everything
            if (cp.category not in (None, category)) or (cp.size not in (None, size))]


def member_status(has_position: bool, lag_messages: int, lag_seconds: float, max_lag: int,
                  max_lag_seconds: float | None) -> str:
    """missing / lagging / healthy: the one rule for a member's status."""
    if not has_position:
        return "missing"
    if lag_messages > max_lag or (max_lag_seconds is not None and lag_seconds > max_lag_seconds):
        return "lagging"
    return "healthy"


def snapshot(store: Store, category: str, size: int, checkpoints: dict[int, cps.Checkpoint], *,
             max_lag: int = DEFAULT_MAX_LAG, cap: int = DEFAULT_CAP,
             max_lag_seconds: float | None = None, allow_missing: bool = False,
             now_ns: int | None = None) -> dict:
    """One lag report (the ``--format json`` object)."""
    if size < 1:
        raise UsageError(f"--size must be >= 1 (got {size})")
    if cap < 1:
        raise UsageError(f"--cap must be >= 1 (got {cap})")
    if max_lag < 0:
        raise UsageError(f"--max-lag must be >= 0 (got {max_lag})")
    # the status must be decidable: count at least one message past the threshold
    cap = max(cap, max_lag + 1)
    head = store.category_head(category)
    now = time.time_ns() if now_ns is None else now_ns
    members = []
    for member in range(size):
        cp = checkpoints.get(member)
        position = cp.position if cp is not None else 1
        share = count_share(store, category, member, size, position, head, cap)
        lag_positions = 0 if head is None else max(0, head - max(position, 1) + 1)
        lag_seconds = 0.0
        if share.oldest_time is not None:
            lag_seconds = max(0.0, round((now - share.oldest_time) / 1e9, 3))
        members.append({
            "member": member,
            "position": position,
            "head": head,
            "lagMessages": share.messages,
            "lagMessagesExact": share.exact,
            "lagPositions": lag_positions,
            "lagSeconds": lag_seconds,
            "checkpointUpdatedAt": None if cp is None or cp.updated_at is None
            else format_time(cp.updated_at),
            "checkpoint": None if cp is None else cp.path,
            "status": member_status(cp is not None, share.messages, lag_seconds, max_lag,
                                    max_lag_seconds),
        })
    return {
        "category": category,
        "size": size,
        "head": head,
        "time": format_time(now),
        "maxLag": max_lag,
        "maxLagSeconds": max_lag_seconds,
        "allowMissing": allow_missing,
        "cap": cap,
        "members": members,
        "ok": all(m["status"] == "healthy" or (allow_missing and m["status"] == "missing")
                  for m in members),
    }


def group_snapshot(store: Store, category: str, group: str, size: int | None, *,
                   max_lag: int = DEFAULT_MAX_LAG, max_lag_seconds: float | None = None,
                   stalled_after: float | None = None, allow_missing: bool = False) -> dict:
    """``lag --group``: exactly ``group describe``'s report (services/group_view.py), with
    ``allow_missing`` letting members without a position pass the check."""
    from .group_view import describe

    report = describe(store, category, group=group, size=size, max_lag=max_lag,
                      max_lag_seconds=max_lag_seconds, stalled_after=stalled_after)
    report["allowMissing"] = allow_missing
    if allow_missing:
        report["ok"] = all(m["status"] in ("healthy", "missing") for m in report["members"])
    return report
