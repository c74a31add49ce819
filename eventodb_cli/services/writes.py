"""Bulk writes from NDJSON: parse a whole batch, then write it in one call to the store, and
record how far the file got so that an interrupted run can be finished exactly once
(``write --file F --resume``).

Lines are read by ``services/bulkparse.LineBatches``; on a local store, a regular file of 1 MiB
or more is read by a second process (``services/bulkproc.py``) that sends each batch's rows
ready to insert while this one writes, with the same results and errors.

A bad line (or a conflict inside a batch) stops the run and the error names the line. On a local
store nothing of the failing batch is written (one transaction); on a server (one request per
message, streams in parallel, no multi-message transaction) some lines of the failing batch may
have landed, and the error says how many and which were not.

Resuming. Each run of a regular file records, per target, how far it got:

- local store: table ``write_progress`` (``LocalStore.write_progress``), updated in the same
  transaction as each batch, so it is exactly what the store holds;
- server or Message DB: a state file (``$XDG_STATE_HOME/eventodb/write-resume/``) saved after
  each batch,
  and every line without its own id gets an id derived from the run's random salt and its line
  number. A resumed run re-sends the batch that was in flight: what already landed is
  recognised by its id (the server refuses a duplicate id) and counted as already written.

Both record the number of lines done, the byte length and an xxh3-128 digest of those lines: a
resume first checks that the file still starts with exactly those bytes (the lines after them
may have been fixed, e.g. after a version conflict). A finished record whose file has changed
starts a fresh run; a finished record of the same file writes only lines appended since.
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from dataclasses import dataclass, field
from typing import Callable, Iterable

from ..domain.message import AlreadyWritten, NewMessage
from ..errors import (EXIT_USAGE, BatchFailed, DuplicateMessageId, EventoError, UsageError,
                      VersionConflict)
from ..store.base import Store
from .bulkparse import digest_hex


@dataclass
class WriteSummary:
    written: int = 0
    batches: int = 0
    first_global_position: int | None = None
    last_global_position: int | None = None
    seconds: float = 0.0
    resumed: bool = False
    resumed_after_line: int = 0
    already_written: int = 0
    lines_done: int = 0  # lines of the file known to be in the store (skipped ones included)
    partial: list[int] = field(default_factory=list)  # landed lines of an unfinished batch

    def to_dict(self) -> dict:
        out = {
            "written": self.written,
            "batches": self.batches,
            "firstGlobalPosition": self.first_global_position,
            "lastGlobalPosition": self.last_global_position,
            "seconds": round(self.seconds, 3),
        }
        if self.resumed:
            out["resumedAfterLine"] = self.resumed_after_line
            out["alreadyWritten"] = self.already_written
        return out


# --- where progress is recorded ---------------------------------------------------------------
def _state_dir() -> str:
    base = os.environ.get("XDG_STATE_HOME") or os.path.join(os.path.expanduser("~"), ".local",
                                                            "state")
    return os.path.join(base, "eventodb", "write-resume")


class _LocalTracker:
    """Progress in the local store itself, committed with each batch."""

    def __init__(self, store, file: str):
        self.store = store
        self.file = file

    def load(self) -> dict | None:
        return self.store.write_progress(self.file)

    def start(self, record: dict) -> None:
        self.store.save_write_progress(record)

    def write(self, batch, record: dict, existing_ok: bool):
        try:
            return self.store.write_batch(batch, progress=record)
        except DuplicateMessageId:
            if not existing_ok:
                raise
        # a resumed run without a record of these lines (e.g. they carry their own ids and an
        # older eventodb wrote them): lines whose id is in the store are already written
        there = self.store.existing_ids([m.id for m in batch if m.id])
        rest = [m for m in batch if not (m.id and m.id in there)]
        done = iter(self.store.write_batch(rest, progress=record) if rest else ())
        if not rest:
            self.store.save_write_progress(record)
        return [AlreadyWritten(-1, -1) if m.id and m.id in there else next(done)
                for m in batch]

    def finish(self, record: dict) -> None:
        self.store.save_write_progress(record)


class _FileTracker:
    """Progress of a server target in a state file, saved after each batch."""

    def __init__(self, store, file: str):
        from xxhash import xxh3_64_hexdigest

        self.store = store
        self.file = file
        ident = f"{getattr(store, 'url', '')}|{getattr(store, 'namespace', '')}|{file}"
        self.path = os.path.join(_state_dir(), xxh3_64_hexdigest(ident.encode("utf-8")) + ".json")

    def load(self) -> dict | None:
        try:
            with open(self.path, encoding="utf-8") as fh:
                doc = json.load(fh)
        except (OSError, ValueError, RecursionError):
            return None
        if not isinstance(doc, dict) or doc.get("file") != self.file:
            return None
        try:
            return {"file": self.file, "lines": int(doc["lines"]), "bytes": int(doc["bytes"]),
                    "digest": str(doc["digest"]), "written": int(doc["written"]),
                    "done": bool(doc["done"]), "salt": str(doc["salt"])}
        except (KeyError, TypeError, ValueError):
            return None

    disabled = False
    warn: Callable[[str], None] | None = None

    def _save(self, record: dict) -> None:
        """Save the record; a state directory that cannot be written does not stop the writes
        (a warning, once: this run then cannot be resumed)."""
        if self.disabled:
            return
        from ..fsutil import atomic_write_text

        try:
            doc = dict(record, target=getattr(self.store, "url", None), updatedAt=time.time())
            atomic_write_text(self.path, json.dumps(doc) + "\n", prefix=".resume-")
        except OSError as e:
            self.disabled = True
            if self.warn:
                self.warn(f"cannot record the progress of {self.file} in {self.path} "
                          f"({e.strerror}): this run cannot be resumed")

    start = _save

    def finish(self, record: dict) -> None:
        self._save(record)
        _prune(os.path.dirname(self.path))

    def write(self, batch, record: dict, existing_ok: bool):
        results = self.store.write_batch(batch, existing_ok=existing_ok)
        self._save(record)
        return results


STATE_DAYS = 90  # state files of server runs untouched this long are removed


def _prune(directory: str) -> None:
    """Remove state files not updated for ``STATE_DAYS`` (a finished run's record only serves a
    later --resume of the same file, e.g. one appended to)."""
    cutoff = time.time() - STATE_DAYS * 86400
    try:
        with os.scandir(directory) as it:
            for entry in it:
                if entry.name.endswith(".json") and entry.stat().st_mtime < cutoff:
                    os.unlink(entry.path)
    except OSError:
        pass


def _resumable(tracker) -> bool:
    return tracker is not None and not getattr(tracker, "disabled", False)


def _tracker(store, file: str | None):
    if file is None:
        return None
    if hasattr(store, "write_progress"):
        return _LocalTracker(store, file)
    if getattr(store, "kind", "") in ("remote", "postgres"):
        # Message DB: a batch is one transaction and write_batch(existing_ok=True) recognises
        # the derived ids of a batch the state file had not recorded yet, as on a server
        return _FileTracker(store, file)
    return None  # a store that cannot record progress: no resume


def derived_id(salt: str, lineno: int) -> str:
    """The id of line ``lineno`` of a run with ``salt``: a version-8 UUID from xxh3-128, so a
    resumed run gives each line the id it had in the interrupted one."""
    from xxhash import xxh3_128_hexdigest

    h = xxh3_128_hexdigest(f"eventodb-write|{salt}|{lineno}".encode("ascii"))
    variant = "89ab"[int(h[16], 16) & 3]
    return f"{h[:8]}-{h[8:12]}-8{h[13:16]}-{variant}{h[17:20]}-{h[20:32]}"


class Interrupted(EventoError):
    """Ctrl-C or SIGTERM during a bulk write: carries what was written."""

    exit_code = 130
    code = "INTERRUPTED"


# --- the write loop ---------------------------------------------------------------------------
def write_ndjson(
    store: Store,
    lines: Iterable[bytes | str],
    batch_size: int = 10_000,
    on_progress: Callable[[int, int], None] | None = None,
    *,
    file: str | None = None,
    resume: bool = False,
    warn: Callable[[str], None] | None = None,
    parallel: bool | None = None,
) -> WriteSummary:
    """Write NDJSON records (``stream``, ``type``, ``data``, ``metadata``?, ``id``?,
    ``expectedVersion``?) in batches of ``batch_size``. ``on_progress(bytes, messages)`` is called
    after each batch. Blank lines are skipped.

    ``file`` (the real path of a regular file) records progress so that ``resume`` can finish an
    interrupted run exactly once. Errors carry ``summary`` and ``resumable``. ``warn(text)``
    hears about progress that cannot be recorded. ``parallel``: parse in a second process
    (``services/bulkproc.py``; a local store only); None decides by the file's size and the
    CPUs available."""
    from .bulkparse import BadLine, LineBatches, NoParser, ParserFailed

    summary = WriteSummary()
    started = time.perf_counter()
    tracker = _tracker(store, file)
    if tracker is not None:
        tracker.warn = warn
    prev = tracker.load() if tracker else None
    if resume and tracker is None:
        raise UsageError("--resume needs a file on a local store, a server or Message DB "
                         "(stdin cannot be resumed)")
    skip = 0
    base = 0  # messages the interrupted runs wrote (local record)
    existing_ok = False
    salt = os.urandom(12).hex()
    if resume and prev is not None and not _same_prefix(file, prev):
        if not prev["done"]:
            raise UsageError(f"{file} changed before line {prev['lines']} since the "
                             f"interrupted run (which wrote lines 1-{prev['lines']}): cannot "
                             "resume; nothing written")
        prev = None  # a finished run of another content: this is a new file
    if resume and prev is not None:
        skip = prev["lines"]
        base = prev["written"]
        salt = prev["salt"] or salt
        summary.resumed_after_line = skip
    existing_ok = resume and not (prev is not None and prev["done"])
    summary.resumed = resume
    summary.lines_done = skip
    derive = tracker is not None and not hasattr(store, "write_progress")
    if parallel is not False and isinstance(tracker, _LocalTracker):
        from .bulkproc import usable_store, wanted  # (a local store: sqlite3 is loaded)

        parallel = usable_store(store) if parallel else wanted(store, lines, file)
    else:
        parallel = False
    reader = LineBatches(lines, batch_size, skip=skip, prev=prev, file=file,
                         hash_lines=tracker is not None, salt=salt if derive else None,
                         derive=derived_id)
    # the batch being written; where the byte count and digest of the lines read come from
    cur = _Current(reader)

    def record(lines_done: int, extra: int = 0, done: bool = False) -> dict:
        return {"file": file, "lines": lines_done, "bytes": cur.nbytes,
                "digest": cur.digest(), "written": base + summary.written + extra,
                "done": done, "salt": salt}

    def fail(e: EventoError, partial) -> None:
        batch, batch_lines = cur.batch, cur.lines
        line = batch_lines[0]
        if isinstance(e, VersionConflict):
            for m, ln in zip(batch, batch_lines):
                if m.stream_name == e.stream and m.expected_version == e.expected:
                    line = ln
                    break
        done = [r for r in partial if r is not None] if partial else []
        _account(summary, done)
        landed = [ln for ln, r in zip(batch_lines, partial or ()) if r is not None]
        summary.partial = landed
        reason = getattr(e, "plain_message", e.message)
        err = BatchFailed(f"line {line}: {reason}; {describe_written(summary, batch_lines)}",
                          exit_code=e.exit_code, line=line, written=summary.written, code=e.code)
        err.summary = summary
        err.resumable = _resumable(tracker)
        if done:
            err.details["notWritten"] = len(batch_lines) - len(done)
        raise err from None

    def flush(lines_read: int) -> None:
        batch = cur.batch
        if not batch:
            return
        try:
            if tracker is not None:
                results = tracker.write(batch, record(lines_read, len(batch)), existing_ok)
            else:
                results = store.write_batch(batch)
        except EventoError as e:
            fail(e, getattr(e, "batch_results", None))
        _account(summary, results)
        done(lines_read)

    def done(lines_read: int) -> None:
        summary.batches += 1
        summary.lines_done = lines_read
        cur.batch.clear()
        cur.lines.clear()
        if on_progress:
            on_progress(cur.nbytes, summary.written)

    bulk = getattr(store, "bulk_writes", None)  # a local store: durable at the end
    with bulk() if bulk is not None else contextlib.nullcontext():
        try:
            if tracker is not None and not (resume and prev is not None):
                tracker.start(record(0))
            if parallel:
                try:
                    lineno = _write_parallel(store, reader, cur, record, flush, fail, done,
                                             summary, skip=skip, prev=prev, file=file)
                except NoParser:  # no fork to spare: nothing read yet, read it here
                    parallel = False
            if not parallel:
                for cur.batch, cur.lines in reader:
                    cur.nbytes = reader.nbytes
                    flush(reader.lineno)
                lineno = reader.lineno
                cur.nbytes = reader.nbytes
            if tracker is not None:
                summary.lines_done = max(lineno, summary.lines_done)
                tracker.finish(record(summary.lines_done, done=True))
        except BadLine as e:
            pending = getattr(e, "pending", None)
            raise _bad_line(e.lineno, e.reason, summary,
                            reader.pending if pending is None else pending,
                            _resumable(tracker)) from None
        except ParserFailed as e:
            e.message += f"; {describe_written(summary, cur.lines)}"
            e.summary = summary
            e.resumable = _resumable(tracker)
            raise
        except KeyboardInterrupt as e:
            batch_lines = cur.lines if parallel else reader.pending
            partial = getattr(e, "batch_results", None)
            if partial:
                done_ = [r for r in partial if r is not None]
                _account(summary, done_)
                summary.partial = [ln for ln, r in zip(batch_lines, partial) if r is not None]
            if isinstance(tracker, _LocalTracker):  # what the store committed, exactly
                got = tracker.load()
                if got is not None and got["salt"] == salt and got["lines"] > summary.lines_done:
                    summary.written = got["written"] - base  # committed just before the signal
                    summary.lines_done = got["lines"]
                    batch_lines = [ln for ln in batch_lines if ln > got["lines"]]
            err = Interrupted(f"interrupted: {describe_written(summary, batch_lines)}")
            err.summary = summary
            err.resumable = _resumable(tracker)
            raise err from None
    summary.seconds = time.perf_counter() - started
    return summary


class _Current:
    """The batch being written (messages, line numbers) and the bytes read with their digest."""

    def __init__(self, reader):
        self.batch: list[NewMessage] = []
        self.lines: list[int] = []
        self.nbytes = 0
        self.digest = reader.digest


def _write_parallel(store, reader, cur: _Current, record, flush, fail, done,
                    summary: WriteSummary, *, skip: int, prev: dict | None,
                    file: str | None) -> int:
    """The batches of a parser process (``services/bulkproc.py``), chunk by chunk: rows
    computed ahead are written by ``store/local_bulk`` while they hold; otherwise (and from
    then on) the batch goes through ``flush`` as messages, as on the in-process path. Returns
    the lines read."""
    from ..store.local_bulk import begin_rows, commit_rows, insert_rows, snapshot
    from .bulkproc import ParserProcess

    dv, head = snapshot(store)
    fast = True
    open_tx = False
    offsets: dict[str, int] = {}
    rows: list = []  # the batch so far
    expected: dict[int, int] = {}
    failed = None
    try:
        with ParserProcess(reader.lines, reader.batch_size, skip=skip, prev=prev, file=file,
                           head=head) as proc:
            for frame in proc:
                kind = frame[0]
                if kind == "E":
                    cur.nbytes, digest = frame[2], frame[3]
                    cur.digest = lambda: digest
                    return frame[1]
                chunk, lines, fresh, chunk_expected, predicted = frame[1:6]
                if fast and predicted and chunk:
                    try:
                        if not open_tx:
                            open_tx = begin_rows(store, dv, chunk[0][0])
                            fast = open_tx
                        if fast:
                            fast = open_tx = insert_rows(store, chunk, fresh, chunk_expected,
                                                         head == 0, offsets)
                    except EventoError as e:  # a full disk, an I/O error: nothing of it written
                        # reported once the whole batch is read, as the in-process path does
                        # (a bad line later in the batch is reported instead)
                        failed, fast, open_tx = e, False, False
                elif not predicted:
                    fast = False
                if chunk_expected:
                    expected.update((len(rows) + i, ev) for i, ev in chunk_expected.items())
                rows += chunk
                cur.lines += lines
                if kind == "C":
                    continue
                lines_read, cur.nbytes, digest = frame[6:9]
                cur.digest = lambda: digest
                if failed is not None:
                    cur.batch = rows
                    fail(failed, None)
                if fast and open_tx:
                    cur.batch = rows
                    try:
                        commit_rows(store, record(lines_read, len(rows)), rows[-1][0], dv)
                    except EventoError as e:
                        open_tx = False
                        fail(e, None)
                    open_tx = False
                    _account_range(summary, len(rows), rows[0][0], rows[-1][0])
                    done(lines_read)
                else:
                    fast = False
                    if predicted:
                        cur.batch = [NewMessage(r[2], r[3], r[5], r[6], r[1], expected.get(i))
                                     for i, r in enumerate(rows)]
                    else:
                        cur.batch = [NewMessage(*t) for t in rows]
                    flush(lines_read)
                rows = []
                expected = {}
                cur.lines = []
    finally:
        if open_tx:  # a bad line, an interruption: nothing of the open batch is written
            store._rollback()
    raise AssertionError("unreachable")


def _same_prefix(file: str, prev: dict) -> bool:
    """Does ``file`` still start with the bytes an earlier run recorded (length and digest)?"""
    from xxhash import xxh3_128

    h = xxh3_128()
    left = prev["bytes"]
    try:
        with open(file, "rb") as fh:
            while left > 0:
                chunk = fh.read(min(left, 1 << 20))
                if not chunk:
                    return False
                h.update(chunk)
                left -= len(chunk)
    except OSError:
        return False
    return digest_hex(h) == prev["digest"]


def describe_written(summary: WriteSummary, batch_lines: list[int]) -> str:
    """What is in the store, in words: the lines done, and which lines of the unfinished batch
    landed (a server has no multi-message transaction) or that none did."""
    done = summary.lines_done
    landed = summary.partial
    parts = []
    if done:
        parts.append(f"every line up to {done}")
    if landed:
        parts.append(f"{len(landed)} of lines {batch_lines[0]}-{batch_lines[-1]}")
    head = f"{summary.written} messages were written"
    if summary.resumed and summary.resumed_after_line:
        head += f" by this run (lines 1-{summary.resumed_after_line} by an earlier one)"
    if parts:
        head += ": " + " and ".join(parts)
    if not batch_lines:
        return head
    if not landed:
        return f"{head}; lines {batch_lines[0]}-{batch_lines[-1]} were not"
    landed_set = set(landed)
    missing = [ln for ln in batch_lines if ln not in landed_set]
    return f"{head}; not written: lines {_ranges(missing)}"


def _account(summary: WriteSummary, results) -> None:
    """Count written messages; first/last global position = lowest/highest written (a server
    store writes streams concurrently, so results are not in global-position order).
    ``AlreadyWritten`` results (a resumed run) are counted apart."""
    if not results:
        return
    fresh = [r for r in results if not isinstance(r, AlreadyWritten)]
    summary.already_written += len(results) - len(fresh)
    if not fresh:
        return
    _account_range(summary, len(fresh), min(r.global_position for r in fresh),
                   max(r.global_position for r in fresh))


def _account_range(summary: WriteSummary, n: int, lo: int, hi: int) -> None:
    """``n`` messages written at global positions ``lo``..``hi``."""
    summary.written += n
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


def _bad_line(lineno: int, reason: str, summary: WriteSummary, pending: list[int],
              resumable: bool) -> BatchFailed:
    tail = f" (lines {pending[0]}-{lineno} were not)" if pending else ""
    err = BatchFailed(
        f"line {lineno}: {reason}; {summary.written} messages were written before it{tail}",
        exit_code=EXIT_USAGE, line=lineno, written=summary.written, code="INVALID_RECORD",
    )
    err.summary = summary
    err.resumable = resumable
    return err
