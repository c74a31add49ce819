"""Bulk writes from NDJSON: parse a whole batch, then write it in one call to the store.

A bad line (or a conflict inside a batch) stops the run: every batch before it stays written and
the error names the line. On a local store nothing of the failing batch is written (one
transaction); on a server (one request per message, streams in parallel) the error says which
lines of the failing batch were written and which were not.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Callable, Iterable

from ..domain.message import NewMessage, new_message_from_record
from ..errors import EXIT_USAGE, BatchFailed, EventoError, VersionConflict
from ..store.base import Store


@dataclass
class WriteSummary:
    written: int = 0
    batches: int = 0
    first_global_position: int | None = None
    last_global_position: int | None = None
    seconds: float = 0.0

    def to_dict(self) -> dict:
        return {
            "written": self.written,
            "batches": self.batches,
            "firstGlobalPosition": self.first_global_position,
            "lastGlobalPosition": self.last_global_position,
            "seconds": round(self.seconds, 3),
        }


def write_ndjson(
    store: Store,
    lines: Iterable[bytes | str],
    batch_size: int = 1000,
    on_progress: Callable[[int, int], None] | None = None,
) -> WriteSummary:
    """Write NDJSON records (``stream``, ``type``, ``data``, ``metadata``?, ``id``?,
    ``expectedVersion``?) in batches of ``batch_size``. ``on_progress(bytes, messages)`` is called
    after each batch. Blank lines are skipped."""
    summary = WriteSummary()
    started = time.perf_counter()
    batch: list[NewMessage] = []
    batch_lines: list[int] = []
    nbytes = 0

    def flush() -> None:
        if not batch:
            return
        try:
            results = store.write_batch(batch)
        except EventoError as e:
            line = batch_lines[0]
            if isinstance(e, VersionConflict):
                for m, ln in zip(batch, batch_lines):
                    if m.stream_name == e.stream and m.expected_version == e.expected:
                        line = ln
                        break
            # a server store writes a batch as many requests: some may have landed
            partial = getattr(e, "batch_results", None)
            done = [r for r in partial if r is not None] if partial else []
            _account(summary, done)
            written = summary.written
            if done:
                missing = [ln for ln, r in zip(batch_lines, partial) if r is None]
                where = (f"{len(done)} of lines {batch_lines[0]}-{batch_lines[-1]} were written, "
                         f"{len(missing)} were not: lines {_ranges(missing)}")
            else:
                where = f"lines {batch_lines[0]}-{batch_lines[-1]} were not"
            reason = getattr(e, "plain_message", e.message)
            err = BatchFailed(
                f"line {line}: {reason}; {written} messages were written before it "
                f"({where})",
                exit_code=e.exit_code, line=line, written=written, code=e.code,
            )
            err.summary = summary
            if done:
                err.details["notWritten"] = len(batch_lines) - len(done)
            raise err from None
        _account(summary, results)
        summary.batches += 1
        batch.clear()
        batch_lines.clear()
        if on_progress:
            on_progress(nbytes, summary.written)

    for lineno, line in enumerate(lines, 1):
        nbytes += len(line)
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            msg = e.msg if isinstance(e, json.JSONDecodeError) else "not UTF-8"
            _bad_line(lineno, f"invalid JSON: {msg}", summary, batch_lines)
        try:
            batch.append(new_message_from_record(rec))
        except ValueError as e:
            _bad_line(lineno, str(e), summary, batch_lines)
        batch_lines.append(lineno)
        if len(batch) >= batch_size:
            flush()
    flush()
    summary.seconds = time.perf_counter() - started
    return summary


def _account(summary: WriteSummary, results) -> None:
    """Count written messages; first/last global position = lowest/highest written (a server
    store writes streams concurrently, so results are not in global-position order)."""
    if not results:
        return
    summary.written += len(results)
    lo = min(r.global_position for r in results)
    hi = max(r.global_position for r in results)
    if summary.first_global_position is None or lo < summary.first_global_position:
        summary.first_global_position = lo
    if summary.last_global_position is None or hi > summary.last_global_position:
        summary.last_global_position = hi


def _ranges(lines: list[int], limit: int = 6) -> str:
    """``[3, 4, 5, 9]`` -> ``3-5, 9`` (at most ``limit`` ranges, then ``...``)."""
    out: list[str] = []
    i = 0
    while i < len(lines) and len(out) < limit:
        j = i
        while j + 1 < len(lines) and lines[j + 1] == lines[j] + 1:
            j += 1
        out.append(str(lines[i]) if i == j else f"{lines[i]}-{lines[j]}")
        i = j + 1
    return ", ".join(out) + (", ..." if i < len(lines) else "")


def _bad_line(lineno: int, reason: str, summary: WriteSummary, pending: list[int]) -> None:
    tail = f" (lines {pending[0]}-{lineno} were not)" if pending else ""
    raise BatchFailed(
        f"line {lineno}: {reason}; {summary.written} messages were written before it{tail}",
        exit_code=EXIT_USAGE, line=lineno, written=summary.written, code="INVALID_RECORD",
    )
