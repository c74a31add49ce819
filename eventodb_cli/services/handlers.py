"""The handlers of ``eventodb consume`` besides ``--pipe`` (services/pipehandler.py): NDJSON on
stdout (``PrintHandler``) and one process per message (``ExecHandler``). The handler interface
the consumer (services/consumer.py) uses: ``handle(m)`` (raises ``HandlerFailed``), ``offset()``,
``taken()``, ``flush()``, ``drain()``, ``reader_gone()``, ``discard()``; optionally
``handle_batch(batch, pending)`` for a handler that cannot fail."""

from __future__ import annotations

import os
import subprocess
import sys
from itertools import accumulate

from ..domain.message import Message
from .delivery import Output, Pending


class HandlerFailed(Exception):
    pass


class PrintHandler:
    """Each message as one NDJSON line (``Message.to_json()``) on ``out``, written per batch.
    ``offset()`` is where the last handled message's line ends in the output, ``taken()`` how
    many bytes the reader has really taken (services/delivery.py)."""

    def __init__(self, out=None):
        self.output = Output(out)
        self._buf: list[bytes] = []
        self._size = 0

    def handle(self, m: Message) -> None:
        line = (m.to_json() + "\n").encode("utf-8")
        self._buf.append(line)
        self._size += len(line)

    def handle_batch(self, batch: list[Message], pending: Pending) -> None:
        """``handle`` for every message of ``batch`` at once, each queued in ``pending`` with
        the offset where its line ends (the same bytes and offsets, fewer Python steps)."""
        lines = [m.to_json() for m in batch]
        text = "\n".join(lines)
        data = (text + "\n").encode("utf-8")
        if len(data) == len(text) + 1:  # ASCII: a character is a byte
            sizes = [len(line) + 1 for line in lines]
        else:
            sizes = [len(line.encode("utf-8")) + 1 for line in lines]
        ends = accumulate(sizes, initial=self.offset())
        next(ends)
        pending.extend(ends, [m.global_position + 1 for m in batch])
        self._buf.append(data)
        self._size += len(data)

    def offset(self) -> int:
        return self.output.written + self._size

    def flush(self) -> None:
        """Write what is buffered; ``ReaderGone`` when stdout's reader has closed it."""
        if self._buf:
            data = b"".join(self._buf)
            self._buf.clear()
            self._size = 0
            self.output.write(data)

    def taken(self) -> int:
        return self.output.taken()

    def drain(self, timeout: float, on_progress=None) -> bool:
        return self.output.drain(timeout, on_progress)

    def reader_gone(self) -> bool:
        return self.output.reader_gone()

    def discard(self) -> None:
        self._buf.clear()
        self._size = 0


class ExecHandler:
    """Run ``command`` through the shell for each message: the message JSON on stdin and
    ``EVENTODB_MESSAGE_ID``, ``EVENTODB_STREAM``, ``EVENTODB_TYPE``, ``EVENTODB_POSITION``,
    ``EVENTODB_GLOBAL_POSITION`` in its environment. A nonzero exit is a failure."""

    def __init__(self, command: str, timeout: float | None = None):
        self.command = command
        self.timeout = timeout
        self._env = dict(os.environ)

    def handle(self, m: Message) -> None:
        env = self._env
        env["EVENTODB_MESSAGE_ID"] = m.id
        env["EVENTODB_STREAM"] = m.stream_name
        env["EVENTODB_TYPE"] = m.type
        env["EVENTODB_POSITION"] = str(m.position)
        env["EVENTODB_GLOBAL_POSITION"] = str(m.global_position)
        try:
            p = subprocess.run(self.command, shell=True, input=(m.to_json() + "\n").encode(),
                               env=env, timeout=self.timeout)
        except subprocess.TimeoutExpired:
            raise HandlerFailed(f"handler timed out after {self.timeout}s") from None
        if p.returncode != 0:
            how = (f"killed by signal {-p.returncode}" if p.returncode < 0
                   else f"exit status {p.returncode}")
            raise HandlerFailed(f"handler failed ({how})")

    # a handler that returned has taken its message: no output offsets to wait for
    def offset(self) -> int:
        return 0

    def taken(self) -> int:
        return 0

    def flush(self) -> None:
        try:
            sys.stdout.flush()
        except (BrokenPipeError, ValueError):
            pass

    def drain(self, timeout: float, on_progress=None) -> bool:
        return True

    def reader_gone(self) -> bool:
        return False

    def discard(self) -> None:
        pass
