"""A parser process for large ``write --file`` runs on a local store.

The writing process spends most of a bulk run inside SQLite; reading, parsing, validating and
encoding the lines, and building each row (id, positions, checksum), is as much work again. A
thread cannot take it over (the GIL: a busy parser thread starves the writer between SQLite
steps), so a forked child does it and sends each batch's finished rows through a pipe while the
parent writes the previous batch (``store/local_bulk.py`` checks that the rows still hold and
otherwise writes the batch the ordinary way).

The child reads with the same loop as the in-process path (``services/bulkparse.LineBatches``)
and reports what it met in file order: batches, then the end, a bad line or another error, which
the parent turns into the same errors as the in-process path. The child ignores SIGINT, SIGTERM
and SIGHUP (the parent handles them and kills it), dies with the parent (``PR_SET_PDEATHSIG``,
and a write to the closed pipe) and is always reaped by the parent.

Frames: 8 bytes little-endian length, then a ``marshal`` dump of a tuple whose first item says
what it is: ``C`` a chunk of a batch, ``B`` its last chunk (with the lines read, their bytes and
digest), ``E`` the end, ``X`` a bad line, ``U`` a usage error, ``O`` an OS error, ``R`` anything
else. A chunk carries rows, or (once the child stopped predicting) plain messages.
"""

from __future__ import annotations

import marshal
import os
import signal
import struct
import time

from ..domain.hashing import stream_hash
from ..domain.integrity import row_checksum
from ..domain.streams import category as category_of
from ..errors import UsageError
from ..store.local import new_ids
from .bulkparse import BadLine, LineBatches, NoParser, ParserFailed

# (what the child runs is imported here, before the fork: a progress bar's thread may hold a
# lock at that instant)

# smaller files take the in-process path (a fork and a pipe cost more than they save)
MIN_BYTES = 1 << 20
CHUNK = 2_000  # rows a frame carries: a batch's first rows are written while the rest is parsed
MAX_STREAMS = 2_000_000  # streams the child keeps positions of; beyond, it sends messages only
_LEN = struct.Struct("<Q")


def wanted(store, lines, file: str | None) -> bool:
    """Use a parser process? A regular file of at least ``MIN_BYTES`` written to a writable
    local store, with 2 or more CPUs to run on."""
    if file is None or not hasattr(os, "fork") or not usable_store(store):
        return False
    try:
        size = os.fstat(lines.fileno()).st_size
    except (AttributeError, OSError, ValueError):
        return False
    if size < MIN_BYTES:
        return False
    try:
        cpus = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cpus = os.cpu_count() or 1
    return cpus >= 2


def usable_store(store) -> bool:
    return (getattr(store, "kind", None) == "local" and hasattr(store, "write_progress")
            and not getattr(store, "read_only", False))


class ParserProcess:
    """``with ParserProcess(...) as p: for frame in p: ...`` (see the module's doc)."""

    def __init__(self, lines, batch_size: int, *, skip: int, prev: dict | None,
                 file: str | None, head: int):
        self.args = (lines, batch_size, skip, prev, file, head)
        self.pid = 0
        self.rf = None

    def __enter__(self) -> "ParserProcess":
        try:
            r, w = os.pipe()
        except OSError as e:
            raise NoParser(str(e)) from None
        parent = os.getpid()
        try:
            pid = os.fork()
        except OSError as e:  # no process to spare (EAGAIN, ENOMEM): the in-process path
            os.close(r)
            os.close(w)
            raise NoParser(str(e)) from None
        if pid == 0:  # the child: never returns
            code = 1
            try:
                os.close(r)
                _child_setup(parent)
                _child_main(w, *self.args)
                code = 0
            except BaseException:
                pass
            finally:
                os._exit(code)
        self.pid = pid
        os.close(w)
        self.rf = open(r, "rb", buffering=1 << 16)
        return self

    def __iter__(self):
        read = self.rf.read
        unpack = _LEN.unpack
        loads = marshal.loads
        while True:
            head = read(8)
            if len(head) < 8:
                raise ParserFailed(f"the parser process ended unexpectedly ({self._status()})")
            (n,) = unpack(head)
            data = read(n)
            if len(data) < n:
                raise ParserFailed(f"the parser process ended unexpectedly ({self._status()})")
            frame = loads(data)
            kind = frame[0]
            if kind == "C" or kind == "B":
                yield frame
                continue
            if kind == "E":
                yield frame
                return
            if kind == "X":
                err = BadLine(frame[1], frame[2])
                err.pending = frame[3]  # the lines of the batch it stopped
                raise err
            if kind == "U":
                raise UsageError(frame[1])
            if kind == "O":
                raise OSError(frame[1], frame[2], frame[3])
            raise ParserFailed(f"the parser process failed: {frame[1]}")

    def _status(self) -> str:
        self._reap()
        st = getattr(self, "status", None)
        if st is None:
            return "still running"
        if os.WIFSIGNALED(st):
            return f"killed by signal {os.WTERMSIG(st)}"
        return f"exit status {os.WEXITSTATUS(st)}"

    def __exit__(self, *exc) -> None:
        if self.rf is not None:
            self.rf.close()
            self.rf = None
        try:
            os.kill(self.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        late = self._reap()
        if late is not None and exc[0] is None:
            raise late

    def _reap(self):
        """Wait for the child (it has been killed or has ended); a Ctrl-C meanwhile is kept
        for the caller, the wait goes on (no zombie)."""
        late = None
        while getattr(self, "status", None) is None:
            try:
                _, self.status = os.waitpid(self.pid, 0)
            except ChildProcessError:
                self.status = 0
            except KeyboardInterrupt as e:
                late = e
        return late


def _child_setup(parent: int) -> None:
    import sys

    sys.setprofile(None)  # a profiled parent (cProfile) measures itself, not its parser
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, signal.SIG_IGN)
    try:
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass
    if os.getppid() != parent:  # the parent died before prctl
        os._exit(1)
    import gc

    gc.disable()  # no reference cycles are made here; collections only cost time


def _child_main(w: int, lines, batch_size: int, skip: int, prev: dict | None, file: str | None,
                head: int) -> None:
    def send(frame) -> None:
        data = marshal.dumps(frame)
        _write_all(w, _LEN.pack(len(data)))
        _write_all(w, data)

    reader = LineBatches(lines, min(batch_size, CHUNK), skip=skip, prev=prev, file=file,
                         hash_lines=True)
    sent: list[int] = []  # lines of the batch sent so far in chunks
    try:
        _batches(reader, batch_size, head, send, sent)
        send(("E", reader.lineno, reader.nbytes, reader.digest()))
    except BadLine as e:
        send(("X", e.lineno, e.reason, sent + reader.pending))
    except UsageError as e:
        send(("U", e.message))
    except OSError as e:
        send(("O", e.errno, e.strerror, None if e.filename is None else str(e.filename)))
    except Exception as e:  # reported by the parent
        send(("R", f"{type(e).__name__}: {e}"))


def _batches(reader: LineBatches, batch_size: int, head: int, send, sent: list[int]) -> None:
    """Each batch as rows: ``(global_position, id, stream, type, position, data, metadata,
    time, category, cardinal_hash, checksum)``, positions counted from the run's start, sent
    in chunks of up to ``CHUNK`` rows (``C``) and a last chunk with the batch's progress
    (``B``), so the parent writes the first rows of a batch while the rest is parsed."""
    known: dict[str, list] = {}  # stream -> [last position in this run, category, hash]
    g = head
    predict = True
    in_batch = 0
    for batch, lines in reader:
        asked = reader.batch_size
        in_batch += len(batch)
        last = in_batch >= batch_size or len(batch) < asked  # the batch is full, or the file ended
        if predict and in_batch == len(batch) and len(known) > MAX_STREAMS:
            predict = False  # from this batch on (a batch is all rows or all messages)
        if not predict:
            frame = ("M", [tuple(m) for m in batch], lines, None, None)
        else:
            now = time.time_ns()
            ids = new_ids(sum(1 for m in batch if not m.id))
            k = 0
            rows = []
            append = rows.append
            fresh: list[str] = []
            expected = None
            for i, m in enumerate(batch):
                stream, mtype, data, meta, mid, ev = m
                st = known.get(stream)
                if st is None:
                    st = known[stream] = [-1, category_of(stream), stream_hash(stream)]
                    fresh.append(stream)
                if ev is not None:
                    if expected is None:
                        expected = {}
                    expected[i] = ev
                v = st[0] = st[0] + 1
                g += 1
                if not mid:
                    mid = ids[k]
                    k += 1
                append((g, mid, stream, mtype, v, data, meta, now, st[1], st[2],
                        row_checksum(mid, stream, mtype, v, g, data, meta, now)))
            frame = ("R", rows, lines, fresh, expected)
        if last:
            send(("B", *frame[1:], frame[0] == "R", reader.lineno, reader.nbytes,
                  reader.digest()))
            in_batch = 0
            sent.clear()
        else:
            send(("C", *frame[1:], frame[0] == "R"))
            sent.extend(lines)
        reader.batch_size = min(CHUNK, batch_size - in_batch)
    if in_batch:  # the file ended right after a chunk: the batch ends with no more rows
        send(("B", [], [], None, None, predict, reader.lineno, reader.nbytes, reader.digest()))


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]
