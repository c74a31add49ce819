"""``/import``: EventoDB NDJSON export records into a namespace, keeping ids, positions,
global positions and times (PROTOCOL.md section 8).

Runs in a worker thread holding the namespace's write lock for the whole import (no
``stream.write`` can take a global position the import is about to use). Events go back to the
event loop through ``emit``; unlike the Go server, each event is sent as soon as it happens.
Records are parsed by ``domain.records.from_record`` and stored by ``LocalStore.import_records``.
Imports publish no pokes.
"""

from __future__ import annotations

import time

from ..domain import strictjson
from ..domain.records import from_record
from ..errors import StoreError
from ..store.local import LocalStore
from .app_events import done_event, error_event, progress_event
from .rpc import disk_full

MAX_LINE = 1024 * 1024
BATCH = 1000


class ImportFailed(Exception):
    def __init__(self, code: str, message: str, line: int):
        super().__init__(message)
        self.code = code
        self.message = message
        self.line = line


def _lines(body: bytes):
    """(line number, text) of each non-blank line, like Go's bufio.Scanner (ScanLines)."""
    n = 0
    start = 0
    end = len(body)
    while start < end:
        nl = body.find(b"\n", start)
        stop = end if nl < 0 else nl
        n += 1
        if stop - start > MAX_LINE:
            raise ImportFailed("READ_ERROR", "bufio.Scanner: token too long", n)
        raw = body[start:stop]
        start = stop + 1
        if raw.endswith(b"\r"):
            raw = raw[:-1]
        if not raw.strip():
            continue
        yield n, raw


def run_import(server, namespace: str, body: bytes, force: bool, emit) -> None:
    started = time.monotonic()
    ns = server.registry.get(namespace)
    try:
        if ns is None or ns.deleted:
            if force:
                emit(("clear_failed", "Failed to clear namespace: namespace not found"))
                return
            emit(("started",))
            emit(error_event("IMPORT_FAILED", "namespace not found", 0))
            return
        with ns.lock:
            ns.writer()  # raises NamespaceGone after a delete
            # A connection of its own: the namespace's write connection may cache the head
            # and stream versions between its own transactions; a commit from another
            # connection is what tells it to look again.
            store = LocalStore(ns.path)
            try:
                if force:
                    try:
                        store.import_records((), force=True)
                    except Exception as e:
                        emit(("clear_failed", f"Failed to clear namespace: {e}"))
                        return
                emit(("started",))
                _import(store, body, emit, started)
            finally:
                store.close()
    except Exception as e:  # never leave the response hanging
        emit(error_event("IMPORT_FAILED", f"{type(e).__name__}: {e}", 0))
    finally:
        emit(None)


def _import(store, body: bytes, emit, started: float) -> None:
    pending: list = []  # the records of the batch not yet committed
    state = {"line": 0}

    def records():
        for n, raw in _lines(body):
            state["line"] = n
            try:
                obj = strictjson.loads(raw)  # the store's one strict parser
            except (ValueError, UnicodeDecodeError) as e:
                raise ImportFailed("INVALID_JSON", str(e), n) from None
            try:
                m = from_record(obj)
            except ValueError as e:
                code = "INVALID_RECORD" if "'time'" in str(e) else "INVALID_JSON"
                raise ImportFailed(code, str(e), n) from None
            if len(pending) >= BATCH:
                pending.clear()
            pending.append(m)
            yield m

    def on_batch(total: int, last_gpos: int) -> None:
        pending.clear()
        emit(progress_event(total, last_gpos))

    try:
        total = store.import_records(records(), batch_size=BATCH, on_batch=on_batch)
    except ImportFailed as e:
        emit(error_event(e.code, e.message, e.line))
        return
    except StoreError as e:
        if disk_full(e):  # earlier batches stay committed, the store is intact
            emit(error_event("IMPORT_FAILED", "disk full", state["line"]))
        elif "UNIQUE" in e.message or "constraint" in e.message:
            emit(error_event("POSITION_EXISTS", _clash(store, pending) or e.message,
                             state["line"]))
        else:
            emit(error_event("IMPORT_FAILED", e.message, state["line"]))
        return
    emit(done_event(total, time.monotonic() - started))


def _clash(store, batch: list) -> str | None:
    """Name the record of ``batch`` that collides (with the store or within the batch)."""
    c = store.conn
    seen_g: set = set()
    seen_id: set = set()
    seen_sp: set = set()
    for m in batch:
        if m.global_position in seen_g or c.execute(
                "SELECT 1 FROM messages WHERE global_position = ?",
                (m.global_position,)).fetchone():
            return f"global position already exists: {m.global_position}"
        if m.id in seen_id or c.execute("SELECT 1 FROM messages WHERE id = ?",
                                        (m.id,)).fetchone():
            return f"message id already exists: {m.id}"
        sp = (m.stream_name, m.position)
        if sp in seen_sp or c.execute(
                "SELECT 1 FROM messages WHERE stream_name = ? AND position = ?", sp).fetchone():
            return f"stream position already exists: {m.stream_name} at position {m.position}"
        seen_g.add(m.global_position)
        seen_id.add(m.id)
        seen_sp.add(sp)
    return None
