"""Bulk writes from NDJSON: parse a whole batch, then write it in one call to the store.

A bad line (or a conflict inside a batch) stops the run: every batch before it stays written,
nothing of the failing batch is written, and the error names the line.
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
            written = summary.written
            raise BatchFailed(
                f"line {line}: {e.message}; {written} messages were written before it "
                f"(lines {batch_lines[0]}-{batch_lines[-1]} were not)",
                exit_code=e.exit_code, line=line, written=written, code=e.code,
            ) from None
        summary.written += len(results)
        summary.batches += 1
        if summary.first_global_position is None:
            summary.first_global_position = results[0].global_position
        summary.last_global_position = results[-1].global_position
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


def _bad_line(lineno: int, reason: str, summary: WriteSummary, pending: list[int]) -> None:
    tail = f" (lines {pending[0]}-{lineno} were not)" if pending else ""
    raise BatchFailed(
        f"line {lineno}: {reason}; {summary.written} messages were written before it{tail}",
        exit_code=EXIT_USAGE, line=lineno, written=summary.written, code="INVALID_RECORD",
    )
