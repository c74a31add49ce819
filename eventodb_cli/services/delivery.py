"""What the reader of ``eventodb consume``'s output has really taken: the one rule that says how
far a consumer's position may move.

A flushed write is not a delivered one. When stdout is a pipe, a flush only moves the bytes into
the kernel's pipe buffer (64 KiB on Linux); a reader that dies then (``| head -c N``) never sees
them. So the consumer keeps, for each message it hands over, the byte offset where the message's
line ends, and a message counts as taken only when ``end <= written - unread``, where ``unread``
is what still sits in the pipe (Linux: ``ioctl(FIONREAD)`` on our write end). For a regular
file or a terminal, what was written is taken. (A socket counts as written too: its peer's
unread bytes cannot be asked for portably.)

A handler that is not an output (``--exec``) takes a message when it returns: its offsets stay
at 0, so every message it handled is taken at once.

``Pending`` is the queue between "handled" and "taken": (end offset, next position to read,
ledger id) per message, in order. ``Output`` is stdout with the byte count and the questions
about the reader.
"""

from __future__ import annotations

import os
import stat
import sys
import time
from collections import deque

DRAIN_SECONDS = 5.0  # how long a finishing consumer waits for its reader to take the rest


class ReaderGone(Exception):
    """stdout was closed by its reader (EPIPE): nothing more can be delivered."""


class Output:
    """stdout as bytes, counting what was written and asking the pipe what is still unread."""

    def __init__(self, stream=None):
        self.stream = stream if stream is not None else sys.stdout
        self.written = 0
        self.gone = False
        self._fd: int | None = None
        self._pipe = False
        try:
            fd = self.stream.fileno()
            self._pipe = stat.S_ISFIFO(os.fstat(fd).st_mode)
            self._fd = fd
        except (AttributeError, OSError, ValueError):  # an in-memory stream (tests)
            pass

    @property
    def is_pipe(self) -> bool:
        return self._pipe

    def write(self, data: bytes) -> None:
        """Write and flush ``data``; ``ReaderGone`` when the reader has closed its end."""
        if self.gone:
            raise ReaderGone()
        try:
            buf = getattr(self.stream, "buffer", None)
            if buf is not None:
                self.stream.flush()
                buf.write(data)
                buf.flush()
            else:
                self.stream.write(data.decode("utf-8"))
                self.stream.flush()
        except (BrokenPipeError, ValueError) as e:  # ValueError: stdout already closed
            self._gone()
            raise ReaderGone() from e
        except OSError as e:
            import errno

            if e.errno in (errno.EPIPE, errno.EBADF):
                self._gone()
                raise ReaderGone() from e
            raise
        self.written += len(data)

    def _gone(self) -> None:
        """Point fd 1 at /dev/null so the interpreter's final flush cannot fail a second time."""
        self.gone = True
        try:
            buf = getattr(self.stream, "buffer", None)
            if buf is not None and self._fd is not None:
                devnull = os.open(os.devnull, os.O_WRONLY)
                os.dup2(devnull, self._fd)
                os.close(devnull)
        except OSError:
            pass

    def unread(self) -> int:
        """Bytes written to the pipe that its reader has not read yet (0 for files, terminals)."""
        if not self._pipe or self._fd is None:
            return 0
        import fcntl
        import struct
        import termios

        try:
            got = fcntl.ioctl(self._fd, termios.FIONREAD, b"\0\0\0\0")
        except OSError:
            return 0
        return struct.unpack("i", got)[0]

    def taken(self) -> int:
        """Bytes the reader has taken: written minus what is still unread in the pipe.

        Only a measurement made while the reader is there counts: once it has closed its end
        the pipe's count is not to be trusted (seen on Linux 6.18: after ``head -c N`` exited,
        FIONREAD reported kilobytes fewer than were left unread), so ``ReaderGone`` is raised
        and nothing newer than the last good measurement is saved."""
        if self.gone:
            raise ReaderGone()
        unread = self.unread()
        if self.reader_gone():  # checked after the count: the count was made with a reader
            raise ReaderGone()
        return max(0, self.written - unread)

    def reader_gone(self) -> bool:
        """True once the pipe's reader has closed its end (POLLERR on the write end)."""
        if self.gone:
            return True
        if not self._pipe or self._fd is None:
            return False
        import select

        p = select.poll()
        p.register(self._fd, select.POLLOUT)
        for _fd, ev in p.poll(0):
            if ev & (select.POLLERR | select.POLLHUP):
                self.gone = True
                return True
        return False

    def drain(self, timeout: float = DRAIN_SECONDS, on_progress=None) -> bool:
        """Wait (at most ``timeout`` seconds) until the reader has taken everything written.
        ``on_progress()`` is called as it reads. True when everything was taken, False at the
        timeout, ``ReaderGone`` when the reader closed its end meanwhile."""
        deadline = time.monotonic() + timeout
        last = -1
        while True:
            unread = self.unread()
            if self.reader_gone():
                raise ReaderGone()
            if unread != last and on_progress is not None:
                on_progress()
            last = unread
            if unread == 0:
                return True
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.01)


class Pending:
    """Messages handled but not yet taken, in order: (end offset, next position, ledger id)."""

    def __init__(self):
        self._q: deque = deque()

    def __len__(self) -> int:
        return len(self._q)

    def add(self, end: int, next_position: int, ledger_id: tuple[str, int] | None = None) -> None:
        self._q.append((end, next_position, ledger_id))

    def extend(self, ends, next_positions) -> None:
        """``add`` for many messages without ledger ids: their end offsets and next positions,
        in order."""
        self._q.extend(zip(ends, next_positions, [None] * len(next_positions)))

    def take(self, taken: int) -> tuple[int | None, list[tuple[str, int]], int]:
        """Pop every entry whose line ends at or before ``taken`` bytes: the next position after
        the last of them (None when none), their ledger ids (id, global position) and how many
        entries that was."""
        q = self._q
        position = None
        ids = []
        n = 0
        if q and q[-1][0] <= taken:  # everything was taken (offsets only grow)
            position = q[-1][1]
            ids = [lid for _e, _p, lid in q if lid is not None]
            n = len(q)
            q.clear()
            return position, ids, n
        while q and q[0][0] <= taken:
            _end, position, lid = q.popleft()
            n += 1
            if lid is not None:
                ids.append(lid)
        return position, ids, n
