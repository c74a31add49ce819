"""Namespaces of ``eventodb serve``: one SQLite store file per namespace, plus a registry.

The registry (a small SQLite file) keeps, per namespace: id, sha256 of its token, description,
creation time (ns) and the store file name. File names are derived from the id by
percent-encoding everything but ``[a-z0-9_-]`` (upper case too, so case-insensitive file systems
cannot merge two namespaces), with a hash suffix for very long ids: any id maps to a safe name
and two ids never share a file. Encoded names end in ``.db``; the registry's own name does not,
so no namespace can collide with it.

Concurrency: each namespace has ONE write connection guarded by a ``threading.Lock`` (the Go
server has one write mutex per namespace), so two requests never interleave inside one
transaction; reads use one connection per worker thread (SQLite WAL lets them run beside the
writer).
"""

from __future__ import annotations

import hashlib
import os
import sqlite3
import threading
import time

from ..store.local import LocalStore

REGISTRY_NAME = "namespaces.registry"
LOOP_AUTOCHECKPOINT = 4000  # pages: 4x the writer threads' interval (loopwrite.CHECKPOINT_PAGES)
_SAFE = "abcdefghijklmnopqrstuvwxyz0123456789_-"


def namespace_file_name(namespace: str) -> str:
    """A file name for ``namespace`` that is safe for any id (never the raw id)."""
    enc = "".join(ch if ch in _SAFE else
                  "".join("%%%02X" % b for b in ch.encode("utf-8", "surrogateescape"))
                  for ch in namespace)
    if len(enc) > 120:
        enc = enc[:80] + "~" + hashlib.sha256(namespace.encode("utf-8", "surrogateescape")) \
            .hexdigest()[:32]
    return enc + ".db"


class NamespaceGone(Exception):
    """The namespace was deleted (or never existed) while a request was using it."""


class Namespace:
    """One namespace: its store file, the write lock and connections."""

    def __init__(self, id: str, token_hash: str, description: str, created_at: int, path: str):
        self.id = id
        self.token_hash = token_hash
        self.description = description
        self.created_at = created_at
        self.path = path
        self.lock = threading.Lock()
        self.deleted = False
        self._writer: LocalStore | None = None
        self._loop_writer: LocalStore | None = None  # loopwrite.py's connection
        self.loop_wal_pages = 0  # WAL pages its commits added since a checkpoint (estimated)
        self.loop_started = False  # loopwrite: the first write is a writer thread's
        self._local = threading.local()
        self._readers: list[LocalStore] = []
        self._readers_lock = threading.Lock()

    def writer(self) -> LocalStore:
        """The write connection; call only while holding ``self.lock``."""
        if self.deleted:
            raise NamespaceGone(self.id)
        w = self._writer
        if w is None:
            w = self._writer = LocalStore(self.path, create=True)
        return w

    def loop_writer(self) -> LocalStore:
        """The connection for writes made on the event loop (``loopwrite.py``): it never waits
        for SQLite's write lock (``busy_timeout`` 0) and never checkpoints
        (``wal_autocheckpoint`` only as a safety net, 4x the writer threads' interval); call only
        on the event loop, holding ``self.lock``."""
        if self.deleted:
            raise NamespaceGone(self.id)
        w = self._loop_writer
        if w is None:
            w = LocalStore(self.path, create=True)
            try:
                w.conn.execute("PRAGMA busy_timeout = 0")
                # checkpoints are a writer thread's job (loopwrite.checkpoint); this is only the
                # safety net for when those jobs cannot run (a writer thread waiting on another
                # namespace's lock): without it the WAL grew without bound (1.6 GB in 15 s)
                w.conn.execute(f"PRAGMA wal_autocheckpoint = {LOOP_AUTOCHECKPOINT}")
            except BaseException:
                w.close()
                raise
            self._loop_writer = w
        return w

    def reader(self) -> LocalStore:
        """This thread's read connection."""
        if self.deleted:
            raise NamespaceGone(self.id)
        r = getattr(self._local, "store", None)
        if r is None:
            r = LocalStore(self.path, create=True)
            self._local.store = r
            with self._readers_lock:
                self._readers.append(r)
        return r

    def connection_count(self) -> int:
        """Open SQLite connections to the store file (``sys.health``)."""
        return (self._writer is not None) + (self._loop_writer is not None) + len(self._readers)

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None
        if self._loop_writer is not None:
            self._loop_writer.close()
            self._loop_writer = None
        with self._readers_lock:
            for r in self._readers:
                try:
                    r.close()
                except sqlite3.ProgrammingError:  # pragma: no cover - closed elsewhere
                    pass
            self._readers.clear()


class Registry:
    """Namespaces kept in memory, persisted in the registry file.

    ``store_dir`` holds the namespace files; ``default_path`` (``--store FILE``) overrides where
    the ``default`` namespace lives.
    """

    def __init__(self, registry_path: str, store_dir: str, default_path: str | None = None):
        self.registry_path = registry_path
        self.store_dir = store_dir
        self.default_path = default_path
        os.makedirs(store_dir, exist_ok=True)
        os.makedirs(os.path.dirname(os.path.abspath(registry_path)), exist_ok=True)
        self._conn = sqlite3.connect(registry_path, isolation_level=None,
                                     check_same_thread=False, timeout=60)
        self._conn.execute("PRAGMA journal_mode = WAL")
        self._conn.execute(
            "CREATE TABLE IF NOT EXISTS namespaces (id TEXT PRIMARY KEY, "
            "token_hash TEXT NOT NULL UNIQUE, description TEXT NOT NULL DEFAULT '', "
            "created_at INTEGER NOT NULL, file TEXT NOT NULL)")
        self._lock = threading.Lock()
        self._ns: dict[str, Namespace] = {}
        for id, th, desc, created, file in self._conn.execute(
                "SELECT id, token_hash, description, created_at, file FROM namespaces"):
            self._ns[id] = Namespace(id, th, desc, created, self._path_for(id, file))

    def _path_for(self, id: str, file: str) -> str:
        if id == "default" and self.default_path:
            return self.default_path
        return os.path.join(self.store_dir, file)

    # --- lookups (lock-free: dict reads are atomic) ---------------------------------------
    def get(self, id: str) -> Namespace | None:
        return self._ns.get(id)

    def all(self) -> list[Namespace]:
        return sorted(self._ns.values(), key=lambda n: (-n.created_at, n.id))

    # --- changes ----------------------------------------------------------------------------
    def create(self, id: str, token_hash: str, description: str = "") -> Namespace:
        """Create a namespace and its store file; ``KeyError`` when it exists."""
        with self._lock:
            if id in self._ns:
                raise KeyError(id)
            file = namespace_file_name(id)
            created = time.time_ns()
            ns = Namespace(id, token_hash, description, created, self._path_for(id, file))
            if not (id == "default" and self.default_path):
                # a leftover file of a deleted namespace must not come back to life
                for suffix in ("", "-wal", "-shm"):
                    try:
                        os.remove(ns.path + suffix)
                    except FileNotFoundError:
                        pass
            try:
                LocalStore(ns.path, create=True).close()
                self._conn.execute(
                    "INSERT INTO namespaces (id, token_hash, description, created_at, file) "
                    "VALUES (?,?,?,?,?)", (id, token_hash, description, created, file))
            except BaseException:  # e.g. a full disk: no half-made namespace file stays
                if not (id == "default" and self.default_path):
                    for suffix in ("", "-wal", "-shm"):
                        try:
                            os.remove(ns.path + suffix)
                        except OSError:
                            pass
                raise
            self._ns[id] = ns
            return ns

    def set_token_hash(self, id: str, token_hash: str) -> None:
        with self._lock:
            ns = self._ns[id]
            self._conn.execute("UPDATE namespaces SET token_hash = ? WHERE id = ?",
                               (token_hash, id))
            ns.token_hash = token_hash

    def token_hash_taken(self, token_hash: str) -> bool:
        return any(n.token_hash == token_hash for n in self._ns.values())

    def delete(self, id: str, *, keep_file: bool = False) -> int:
        """Delete a namespace and its files; returns the number of messages it held.
        ``KeyError`` when it does not exist."""
        with self._lock:
            ns = self._ns.get(id)
            if ns is None:
                raise KeyError(id)
            with ns.lock:
                try:
                    count = ns.writer().message_count()
                except Exception:
                    count = 0
                ns.deleted = True
                ns.close()
                self._conn.execute("DELETE FROM namespaces WHERE id = ?", (id,))
                del self._ns[id]
                if not keep_file:
                    for suffix in ("", "-wal", "-shm"):
                        try:
                            os.remove(ns.path + suffix)
                        except FileNotFoundError:
                            pass
            return count

    def close(self) -> None:
        with self._lock:
            for ns in self._ns.values():
                with ns.lock:
                    ns.close()
            self._conn.close()
