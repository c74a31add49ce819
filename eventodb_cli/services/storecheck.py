"""``store check``: prove that nothing in a local store was changed behind the tool's back.

Two layers of evidence:

1. SQLite's own ``PRAGMA integrity_check`` (pages, indexes, free lists);
2. every row's xxh3-64 checksum (``domain.integrity.row_checksum``, recorded at write time)
   recomputed from the row and compared with the stored one, plus the derived columns that
   consumer-group reads depend on (``category`` and ``cardinal_hash`` must match the stream name,
   or a member would silently read the wrong share), and data/metadata that is not strict JSON
   (``NaN``/``Infinity``, which older versions let in: no other parser reads them back).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable

from ..domain.hashing import stream_hash
from ..domain.integrity import row_checksum
from ..domain.streams import category as category_of


@dataclass
class CheckReport:
    rows: int = 0
    damaged: list[dict] = field(default_factory=list)
    integrity: list[str] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return not self.damaged and not self.integrity

    def to_dict(self) -> dict:
        return {
            "ok": self.ok,
            "rows": self.rows,
            "damaged": self.damaged,
            "integrity": self.integrity or ["ok"],
            "seconds": round(self.seconds, 3),
        }


def _strict(text: str) -> bool:
    from ..domain.strictjson import loads

    try:
        loads(text)
    except ValueError:
        return False
    return True


def check_rows(rows, on_progress: Callable[[int, int], None] | None = None,
               progress_every: int = 50_000) -> tuple[int, list[dict]]:
    """Check rows shaped like ``local_admin.CHECK_COLS``. Returns (rows seen, damaged rows)."""
    damaged: list[dict] = []
    derived: dict[str, tuple[str, int | None]] = {}
    n = 0
    for gpos, mid, stream, mtype, pos, data, meta, t, stored, cat, chash in rows:
        n += 1
        reasons = []
        try:
            actual = row_checksum(mid, stream, mtype, pos, gpos, data, meta, t)
        except (TypeError, AttributeError):  # a column set to a value of the wrong type
            actual = None
        if stored is None:
            reasons.append("checksum missing")
        elif actual != stored:
            reasons.append("checksum mismatch")
        if isinstance(stream, str):
            d = derived.get(stream)
            if d is None:
                d = derived[stream] = (category_of(stream), stream_hash(stream))
            if cat != d[0]:
                reasons.append("category does not match the stream name")
            if chash != d[1]:
                reasons.append("cardinal_hash does not match the stream name")
        for what, text in (("data", data), ("metadata", meta)):
            if isinstance(text, str) and ("NaN" in text or "Infinity" in text) \
                    and not _strict(text):
                reasons.append(f"{what} is not strict JSON (NaN or Infinity, written by an "
                               "older eventodb)")
        if reasons:
            damaged.append({"globalPosition": gpos, "id": mid, "streamName": stream,
                            "reason": "; ".join(reasons)})
        if on_progress and n % progress_every == 0:
            on_progress(n, gpos)
    return n, damaged


def check_store(store, on_progress: Callable[[int, int], None] | None = None,
                on_phase: Callable[[str], None] | None = None) -> CheckReport:
    """Run both checks on an open ``LocalStore``. ``on_phase("integrity"|"rows")`` announces
    each part; ``on_progress(rows checked, last global position)`` follows the row scan."""
    from ..store import local_admin

    started = time.perf_counter()
    report = CheckReport()
    if on_phase:
        on_phase("integrity")
    report.integrity = local_admin.integrity_check(store.conn)
    if on_phase:
        on_phase("rows")
    import sqlite3

    try:
        report.rows, report.damaged = check_rows(local_admin.scan_rows(store.conn), on_progress)
    except sqlite3.DatabaseError as e:
        report.integrity.append(f"reading rows failed: {e}")
    report.seconds = time.perf_counter() - started
    return report
