"""Export and import in EventoDB's NDJSON export format (PROTOCOL.md section 9), with manifests.

Export reads through the Store interface (``iter_category``), so it works on a local store and on
a server alike; a local store's export of every message or of one category has its lines made
in SQLite instead (``store/local_export``: the same bytes, one read transaction). Several categories are merged by global position (not one after the other like
EventoDB's Go exporter): a file is then always in global-position order, which is the order an
import must insert in, and the same selection gives the same bytes whatever the category order
on the command line.

An export file ``F`` gets a manifest ``F.manifest.json``::

    {"format": "eventodb-export", "version": 1, "file": "F", "count": N,
     "firstGlobalPosition": 1, "lastGlobalPosition": N, "categories": [], "since": 1,
     "until": null, "order": "globalPosition", "digestAlgorithm": "xxh3-64", "digest": "<hex>",
     "bytes": B, "compression": null|"gzip", "createdAt": "...", "source": {...},
     "tool": "eventodb-cli X"}

``digest`` and ``bytes`` are of the exact record bytes (the uncompressed NDJSON, newlines
included), so a gzip file is verified by what it decompresses to. ``import --verify`` checks the
whole file against the manifest before it imports anything.

Import keeps ids, positions, global positions and times: into a local store through
``LocalStore.import_records``, into a server through ``RemoteStore.import_stream`` (``/import``).
"""

from __future__ import annotations

import gzip as _gzip
import heapq
import json
import os
import sys
import tempfile
import time
import zlib
from dataclasses import dataclass
from typing import BinaryIO, Callable, Iterable, Iterator

from ..domain.message import Message, format_time
from ..domain.records import from_record, to_record_line
from ..domain.streams import category as category_of
from ..domain.streams import is_category
from ..errors import (EXIT_USAGE, BatchFailed, DiskFull, EventoError, StoreError,
                      UsageError)
from .exportfile import (_CHUNK, DIGEST_ALGORITHM, GZIP_MAGIC, MANIFEST_FORMAT,  # noqa: F401
                         MANIFEST_VERSION, _hasher, check_strict_lines, manifest_path_for,
                         open_export, read_manifest, verify)

# EventoDB's /import reads the whole body into memory with a 100 MiB limit: larger files go to a
# server in several requests, split at line boundaries (positions are kept, so this is the same).
REMOTE_REQUEST_BYTES = 64 * 1024 * 1024


# --- export -------------------------------------------------------------------------------------
def select_messages(store, categories: Iterable[str] = (), since: int = 1,
                    until: int | None = None, batch_size: int = 1000) -> Iterator[Message]:
    """The messages an export holds, in global-position order: every message (no categories), or
    those of the given categories merged by global position; ``since`` inclusive, ``until``
    exclusive."""
    cats = list(dict.fromkeys(categories))  # de-duplicated, order kept
    if not cats:
        source = store.iter_category("", since, batch_size)
    elif len(cats) == 1:
        source = store.iter_category(cats[0], since, batch_size)
    else:
        source = heapq.merge(*(store.iter_category(c, since, batch_size) for c in cats),
                             key=lambda m: m.global_position)
    if until is None:
        return source
    return _until(source, until)


def _until(source: Iterator[Message], until: int) -> Iterator[Message]:
    for m in source:
        if m.global_position >= until:
            return
        yield m


@dataclass
class ExportResult:
    count: int = 0
    first: int | None = None
    last: int | None = None
    digest: str = ""
    nbytes: int = 0
    seconds: float = 0.0


def write_records(messages: Iterable[Message], sink: BinaryIO,
                  on_progress: Callable[[int, int], None] | None = None,
                  flush_every: int = 1000) -> ExportResult:
    """Write export lines to ``sink`` (binary), hashing the exact bytes written."""
    from itertools import islice

    started = time.perf_counter()
    h = _hasher()
    res = ExportResult()
    line = to_record_line
    last = None
    it = iter(messages)
    while True:  # chunks of flush_every: one join, encode, hash and write each
        chunk = list(islice(it, flush_every))
        if not chunk:
            break
        if res.first is None:
            res.first = chunk[0].global_position
        last = chunk[-1].global_position
        _flush_lines(list(map(line, chunk)), sink, h, res)
        res.count += len(chunk)
        if on_progress and len(chunk) == flush_every:
            on_progress(res.count, last)
    res.last = last
    if on_progress and res.count:
        on_progress(res.count, last)
    res.digest = h.hexdigest()
    res.seconds = time.perf_counter() - started
    return res


def write_chunks(chunks: Iterable[tuple[bytes, int, int, int]], sink: BinaryIO,
                 on_progress: Callable[[int, int], None] | None = None) -> ExportResult:
    """``write_records`` for lines already made: chunks of ``(bytes, count, first gpos, last
    gpos)`` (``store/local_export.record_chunks``), written and hashed as they come."""
    started = time.perf_counter()
    h = _hasher()
    res = ExportResult()
    it = iter(chunks)
    try:
        for data, k, first, last in it:
            if res.first is None:
                res.first = first
            sink.write(data)
            h.update(data)
            res.nbytes += len(data)
            res.count += k
            res.last = last
            if on_progress:
                on_progress(res.count, last)
    finally:
        close = getattr(it, "close", None)
        if close:
            close()  # a stopped export ends its read transaction now
    res.digest = h.hexdigest()
    res.seconds = time.perf_counter() - started
    return res


def _records_writer(store, cats: list[str], since: int, until: int | None, batch_size: int,
                    on_progress) -> Callable[[BinaryIO], ExportResult]:
    """How this export writes its records: a local store of one category or all of them makes
    its lines in SQLite (``store/local_export``, the same bytes); anything else formats the
    messages of ``select_messages``."""
    if getattr(store, "kind", "") == "local" and getattr(store, "conn", None) is not None \
            and len(cats) <= 1:
        from ..store.local_export import record_chunks

        return lambda sink: write_chunks(
            record_chunks(store, cats[0] if cats else "", since, until, batch_size), sink,
            on_progress)
    msgs = select_messages(store, cats, since, until, batch_size)
    return lambda sink: write_records(msgs, sink, on_progress)


def _flush_lines(buf: list[str], sink: BinaryIO, h, res: ExportResult) -> None:
    data = ("\n".join(buf) + "\n").encode("utf-8")
    sink.write(data)
    h.update(data)
    res.nbytes += len(data)
    buf.clear()


def describe_source(store) -> dict:
    if getattr(store, "kind", "") == "local" and getattr(store, "path", None):
        return {"kind": "local", "store": os.path.abspath(store.path)}
    url = getattr(store, "url", None) or getattr(store, "base_url", None)
    return {"kind": getattr(store, "kind", "remote"), "url": None if url is None else str(url)}


def build_manifest(res: ExportResult, *, file: str | None, categories: list[str], since: int,
                   until: int | None, compression: str | None, source: dict) -> dict:
    from .. import __version__

    return {
        "format": MANIFEST_FORMAT,
        "version": MANIFEST_VERSION,
        "file": None if file is None else os.path.basename(file),
        "count": res.count,
        "firstGlobalPosition": res.first,
        "lastGlobalPosition": res.last,
        "categories": list(dict.fromkeys(categories)),
        "since": since,
        "until": until,
        "order": "globalPosition",
        "digestAlgorithm": DIGEST_ALGORITHM,
        "digest": res.digest,
        "bytes": res.nbytes,
        "compression": compression,
        "createdAt": format_time(time.time_ns()),
        "source": source,
        "tool": f"eventodb-cli {__version__}",
    }


def _unlink(path: str) -> None:
    try:
        os.unlink(path)
    except OSError:
        pass


def export(store, output: str | None, *, categories: Iterable[str] = (), since: int = 1,
           until: int | None = None, gzip: bool = False, manifest: str | None = None,
           batch_size: int = 10_000,
           on_progress: Callable[[int, int], None] | None = None) -> dict:
    """Export to ``output`` (``None`` or ``-``: stdout) and write the manifest (to ``manifest``,
    default ``output + '.manifest.json'``; none for stdout unless ``manifest`` is given).

    A file is written under a temporary name and renamed when complete, so a failed export never
    leaves a plausible-looking partial file. Returns the manifest."""
    cats = list(dict.fromkeys(categories))
    for c in cats:
        if not is_category(c):
            raise UsageError(f"--category {c!r} is a stream name, not a category (a category "
                             f"has no '-'; this stream's category is {category_of(c)!r})")
    if since < 1:
        raise UsageError(f"--since must be >= 1 (got {since})")
    if until is not None and until <= since:
        raise UsageError(f"--until must be greater than --since (got since {since}, "
                         f"until {until})")
    to_stdout = output in (None, "-")
    if not to_stdout and manifest is None:
        manifest = manifest_path_for(output)
    write = _records_writer(store, cats, since, until, batch_size, on_progress)
    compression = "gzip" if gzip else None
    if to_stdout:
        raw = sys.stdout.buffer
        sys.stdout.flush()
        sink = _gzip.GzipFile(fileobj=raw, mode="wb", compresslevel=6, mtime=0) if gzip else raw
        try:
            res = write(sink)
        finally:
            if gzip:
                sink.close()
            raw.flush()
    else:
        d = os.path.dirname(os.path.abspath(output))
        if not os.path.isdir(d):
            raise UsageError(f"--output: directory does not exist: {d}")
        fd, tmp = tempfile.mkstemp(prefix=".export-", suffix=".part", dir=d)
        try:
            with os.fdopen(fd, "wb") as raw:
                if gzip:
                    # mtime=0 and no file name: the same records give the same gzip bytes
                    with _gzip.GzipFile(filename="", fileobj=raw, mode="wb", compresslevel=6,
                                        mtime=0) as gz:
                        res = write(gz)
                else:
                    res = write(raw)
                raw.flush()
                os.fsync(raw.fileno())
            os.chmod(tmp, 0o644)
            os.replace(tmp, output)
        except BaseException:
            _unlink(tmp)
            raise
    doc = build_manifest(res, file=None if to_stdout else output, categories=cats, since=since,
                         until=until, compression=compression, source=describe_source(store))
    if manifest:
        from ..fsutil import atomic_write_text

        atomic_write_text(manifest, json.dumps(doc, indent=2, ensure_ascii=False) + "\n",
                          prefix=".manifest-")
    doc["seconds"] = round(res.seconds, 3)
    return doc


def export_total(store, categories: Iterable[str], since: int, until: int | None) -> int | None:
    """The highest global position an export can reach (a progress bar's end), or None."""
    try:
        cats = list(categories) or [""]
        heads = [h for h in (store.category_head(c) for c in cats) if h is not None]
    except EventoError:
        return None
    if not heads:
        return None
    top = max(heads)
    if until is not None:
        top = min(top, until - 1)
    return max(top - since + 1, 0)


# --- import -------------------------------------------------------------------------------------
_FORCE_HINT = " (the target already holds these positions or ids; --force replaces everything)"

@dataclass
class ImportResult:
    imported: int = 0
    last_global_position: int | None = None
    seconds: float = 0.0


def parse_lines(fh: BinaryIO, state: dict,
                on_bytes: Callable[[int], None] | None = None) -> Iterator[Message]:
    """Export records from a binary line source. ``state["line"]`` is the physical line being
    read (1-based); blank lines are skipped. A bad record raises ``ValueError`` naming its line."""
    from ..domain.strictjson import error_text, loads

    n = 0
    nbytes = 0
    for raw in fh:
        n += 1
        state["line"] = n
        nbytes += len(raw)
        if on_bytes and n % 1000 == 0:
            on_bytes(nbytes)
        if not raw.strip():
            continue
        try:
            rec = loads(raw)
        except json.JSONDecodeError as e:
            raise ValueError(f"line {n}: not valid JSON: {e.msg} (column {e.colno})") from None
        except UnicodeDecodeError:
            raise ValueError(f"line {n}: not valid UTF-8") from None
        except ValueError as e:  # NaN, Infinity, 1e999, a lone surrogate, a 5000-digit int
            raise ValueError(f"line {n}: not valid JSON: {error_text(e)}") from None
        try:
            m = from_record(rec)
        except ValueError as e:
            raise ValueError(f"line {n}: {e}") from None
        state["gpos"] = m.global_position
        yield m
    if on_bytes:
        on_bytes(nbytes)


def import_local(store, fh: BinaryIO, *, force: bool = False, batch_size: int = 1000,
                 on_progress: Callable[[int, int], None] | None = None,
                 on_bytes: Callable[[int], None] | None = None) -> ImportResult:
    """Import into a local store, keeping positions, in ONE transaction (the ``--force`` delete
    included): a bad line (exit 2), a clash, a read error, a full disk or Ctrl-C leaves the store
    exactly as it was, and the error names the line."""
    res = ImportResult()
    state = {"line": 0}
    started = time.perf_counter()
    if getattr(store, "conn", None) is not None:
        from ..store.local_admin import tune_for_bulk_import

        tune_for_bulk_import(store.conn)

    def batch_done(imported: int, last: int) -> None:
        res.imported = imported
        res.last_global_position = last
        if on_progress:
            on_progress(imported, last)

    nothing = "nothing imported (the store is as it was)"
    try:
        res.imported = store.import_records(parse_lines(fh, state, on_bytes), force=force,
                                            batch_size=batch_size, on_batch=batch_done,
                                            atomic=True)
    except DiskFull:
        raise DiskFull(f"import stopped near line {state['line']}: disk full; {nothing}") \
            from None
    except ValueError as e:
        raise BatchFailed(f"import stopped at {e}; {nothing}", exit_code=EXIT_USAGE,
                          line=state["line"], written=0, code="INVALID_RECORD") from None
    except StoreError as e:
        raise BatchFailed(f"import stopped in the batch ending at line {state['line']}: "
                          f"{e.message}; {nothing}{_FORCE_HINT if not force else ''}",
                          exit_code=1, line=state["line"], written=0,
                          code="POSITION_EXISTS") from None
    except (OSError, EOFError, zlib.error) as e:
        raise BatchFailed(f"import stopped at line {state['line']}: cannot read the file ({e}); "
                          f"{nothing}", exit_code=1, line=state["line"], written=0,
                          code="READ_ERROR") from None
    except KeyboardInterrupt:
        raise BatchFailed(f"import interrupted at line {state['line']}; {nothing}",
                          exit_code=130, line=state["line"], written=0,
                          code="INTERRUPTED") from None
    res.last_global_position = state.get("gpos")
    res.seconds = time.perf_counter() - started
    return res


def _request_bodies(fh: BinaryIO, limit: int, on_bytes: Callable[[int], None] | None):
    """Split the file at line boundaries into request bodies of at most ~``limit`` bytes.
    Yields (first line number, list of lines)."""
    body: list[bytes] = []
    size = 0
    first = 1
    line = 0
    nbytes = 0
    for raw in fh:
        line += 1
        nbytes += len(raw)
        if body and size + len(raw) > limit:
            yield first, body
            if on_bytes:
                on_bytes(nbytes - len(raw))
            body, size, first = [], 0, line
        body.append(raw)
        size += len(raw)
    if body:
        yield first, body
    if on_bytes:
        on_bytes(nbytes)


def _chunks(lines: list[bytes]) -> Iterator[bytes]:
    buf: list[bytes] = []
    size = 0
    for raw in lines:
        buf.append(raw)
        size += len(raw)
        if size >= _CHUNK:
            yield b"".join(buf)
            buf, size = [], 0
    if buf:
        yield b"".join(buf)


def _gpos_of(raw: bytes, default):
    """The ``gpos`` of one record line (what the server just accepted), else ``default``."""
    try:
        v = json.loads(raw).get("gpos")
    except (ValueError, AttributeError):
        return default
    return v if isinstance(v, int) and not isinstance(v, bool) else default


def import_remote(store, fh: BinaryIO, *, force: bool = False,
                  request_bytes: int = REMOTE_REQUEST_BYTES,
                  on_progress: Callable[[int, int], None] | None = None,
                  on_bytes: Callable[[int], None] | None = None) -> ImportResult:
    """Import into a server through ``/import`` (``store.import_stream(chunks, force)`` yields
    its events). An error event stops the import with the server's code and line."""
    res = ImportResult()
    started = time.perf_counter()
    first_request = True
    for first_line, lines in _request_bodies(fh, request_bytes, on_bytes):
        base = res.imported
        try:
            events = store.import_stream(_chunks(lines), force=force and first_request)
            done = False
            for ev in events:
                if not isinstance(ev, dict):
                    continue
                if ev.get("error"):
                    line = ev.get("line")
                    at = first_line - 1 + line if isinstance(line, int) else None
                    where = f" at line {at}" if at else ""
                    hint = _FORCE_HINT if ev.get("error") == "POSITION_EXISTS" and not force \
                        else ""
                    bad_record = ev.get("error") in ("INVALID_JSON", "INVALID_RECORD")
                    raise BatchFailed(
                        f"import stopped{where}: {ev.get('error')}: {ev.get('message', '')}; "
                        f"{res.imported} messages imported before it (a server's /import "
                        f"commits in batches){hint}",
                        exit_code=EXIT_USAGE if bad_record else 1, line=at or 0,
                        written=res.imported, code=str(ev.get("error")))
                if "imported" in ev:
                    res.imported = base + int(ev["imported"])
                if ev.get("gpos") is not None:
                    res.last_global_position = ev["gpos"]
                    if on_progress:
                        on_progress(res.imported, ev["gpos"])
                if ev.get("done"):
                    done = True
            if not done:
                raise StoreError("the server ended /import without reporting done; "
                                 f"{res.imported} messages confirmed imported")
        except BatchFailed:
            raise
        except EventoError as e:
            if first_line > 1:  # a later request of a split file: say where it started
                e.message = f"{e.message} (request starting at line {first_line}; " \
                            f"{res.imported} messages imported before it)"
                e.args = (e.message,)
            raise
        first_request = False
        last_line = next((ln for ln in reversed(lines) if ln.strip()), None)
        if last_line is not None:
            res.last_global_position = _gpos_of(last_line, res.last_global_position)
    if first_request and force:  # an empty file still clears with --force
        for _ev in store.import_stream(iter(()), force=True):
            pass
    res.seconds = time.perf_counter() - started
    return res


def import_file(open_store, path: str, *, force: bool = False, verify_manifest: bool = False,
                manifest: str | None = None, batch_size: int = 1000,
                on_progress: Callable[[int, int], None] | None = None,
                on_bytes: Callable[[int], None] | None = None,
                on_verify: Callable[[int], None] | None = None,
                before_import: Callable[[object], None] | None = None) -> dict:
    """Import an export file into the store ``open_store()`` opens (local or server).

    ``verify_manifest`` checks the whole file against its manifest first: when it does not
    match, nothing is imported and the target is not even opened (no store file is created).
    ``before_import(store)`` runs once the target is open (e.g. to confirm --force)."""
    checked = None
    if verify_manifest:
        if path == "-":
            raise UsageError("--verify needs a file, not stdin (the file is read twice)")
        doc = read_manifest(manifest or manifest_path_for(path))
        checked = verify(path, doc, on_verify)
    with open_store() as store, open_export(path) as fh:
        if before_import:
            before_import(store)
        if hasattr(store, "import_records"):
            res = import_local(store, fh, force=force, batch_size=batch_size,
                               on_progress=on_progress, on_bytes=on_bytes)
        elif hasattr(store, "import_stream"):
            if path != "-":
                check_strict_lines(path)
            res = import_remote(store, fh, force=force, on_progress=on_progress,
                                on_bytes=on_bytes)
        else:
            raise UsageError(f"this target ({getattr(store, 'kind', '?')}) cannot import")
    out = {
        "imported": res.imported,
        "lastGlobalPosition": res.last_global_position,
        "verified": checked is not None,
        "forced": force,
        "seconds": round(res.seconds, 3),
    }
    if checked is not None:
        out["digest"] = checked["digest"]
    return out
