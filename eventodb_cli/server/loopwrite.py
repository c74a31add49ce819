"""``stream.write`` on the event loop itself, when it cannot block: no thread hop for a write
that nothing else is competing with (the common single sequential writer).

A write request reaches ``WriteQueue.submit_call``; when none of its namespace's writes are
queued or being written, ``write_now`` tries it here, on the event loop, and otherwise (or when
it cannot be done without waiting) the write queue's threads write it as before. What could
make the event loop wait, and what happens instead:

- **another writer holds the namespace's lock** (a writer thread's group, an import, a
  namespace being deleted): ``ns.lock`` is only tried (``acquire(False)``); busy means the
  write queue takes the request.
- **another process holds SQLite's write lock** (e.g. ``eventodb write --store`` on the same
  file): the loop's connection (``Namespace.loop_writer``) has ``busy_timeout`` 0, so its
  ``BEGIN IMMEDIATE`` fails at once; any failure of the attempt sends the request to the write
  queue, whose connection waits for the lock (up to 60 s) and gives the answer. An attempt that
  failed wrote nothing (``LocalStore.write_batch``: one transaction, rolled back on any error),
  so the retry is the first write; a validation failure (version conflict, duplicate id) gets
  its answer from the write queue exactly as it always did.
- **a checkpoint**: the loop's connection does not checkpoint (its ``wal_autocheckpoint`` is
  only a safety net at 4x the interval, for when a writer thread cannot run the job). It
  counts the WAL pages its commits add (estimated: ~4 per small message, measured, plus the
  data's pages); past ``CHECKPOINT_PAGES`` (SQLite's own default interval) a writer thread runs
  ``PRAGMA wal_checkpoint(PASSIVE)`` (copy and fsync) and then restarts the WAL with one tiny
  transaction, so the WAL header's fsync that the first commit after a checkpoint does under
  ``synchronous=NORMAL`` is done there too, not on the loop (strace: none on the loop in 3,000
  sequential writes; a namespace's first write goes to a writer thread, which makes the WAL
  if the last close removed it; a checkpoint made by another connection, e.g. the writer
  thread's own automatic one after a large group, can leave one header fsync to the loop's
  next commit).
- **a large message**: only messages up to ``LOOP_MAX_BYTES`` of data and metadata are written
  here (a commit of a few pages, written to the WAL without fsync).

Durability is unchanged: WAL with ``synchronous=NORMAL``, committed before answered. Pokes are
published under the namespace lock in commit order, as ``rpc.apply_writes`` does.
"""

from __future__ import annotations

from ..domain.message import NewMessage
from .rpc import _written

LOOP_MAX_BYTES = 16 * 1024
CHECKPOINT_PAGES = 1000  # SQLite's default wal_autocheckpoint
PAGES_PER_WRITE = 5  # WAL pages of a small message's commit (table + index leaves, header)


def write_now(server, namespace: str, msg: NewMessage) -> tuple[int, str] | None:
    """Write ``msg`` now, on the event loop, and return its answer; ``None`` when it cannot be
    done without waiting (the caller hands it to the write queue)."""
    size = len(msg.data) + (len(msg.metadata) if msg.metadata is not None else 0)
    if size > LOOP_MAX_BYTES:
        return None
    ns = server.registry.get(namespace)
    if ns is None:
        return None
    if not ns.loop_started:
        # the namespace's first write goes to a writer thread: a WAL that the last close
        # removed is made anew by that commit, with its header fsync there
        ns.loop_started = True
        return None
    if not ns.lock.acquire(False):
        return None
    try:
        if ns.deleted:
            return None
        try:
            w = ns.loop_writer()
            res = w.write(msg)
        except Exception:  # busy, full, conflict...: the write queue's answer, as before
            return None
        server.published(namespace, [(msg.stream_name, res.position, res.global_position)],
                         on_loop=True)
    finally:
        ns.lock.release()
    pages = ns.loop_wal_pages + PAGES_PER_WRITE + size // 4096
    if pages >= CHECKPOINT_PAGES:
        pages = 0
        try:
            server.writes.run_job(checkpoint, server, namespace)
        except Exception:  # no thread to be had: the write is committed, its answer stands
            pass  # (the loop connection's safety-net autocheckpoint bounds the WAL)
    ns.loop_wal_pages = pages
    return _written(res)


def checkpoint(server, namespace: str) -> None:
    """Writer thread: checkpoint the namespace's WAL (``PASSIVE``: never waits for readers or
    writers), then restart it with one tiny transaction (the WAL header's fsync)."""
    ns = server.registry.get(namespace)
    if ns is None:
        return
    with ns.lock:
        if ns.deleted:
            return
        try:
            conn = ns.writer().conn
            busy, log, done = conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
            if busy or log != done or log <= 0:
                return  # a reader still needs the WAL: the next checkpoint goes on
            conn.execute("BEGIN IMMEDIATE")
            try:
                version = conn.execute("PRAGMA user_version").fetchone()[0]
                conn.execute(f"PRAGMA user_version = {int(version)}")  # one page: the restart
                conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise
        except Exception:  # e.g. a full disk: the next writes report it; try again later
            return
