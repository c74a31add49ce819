"""``consume --pipe CMD``: one long-running handler process fed like a pipe, that answers each
message. This module is the one place the pipe handler protocol lives.

The protocol (docs/consume.md, "Persistent handlers"):

- The consumer starts CMD once, through the shell, in a session of its own (Ctrl-C on the
  terminal reaches the consumer, which ends the handler itself). CMD gets one message per line on
  its stdin: ``Message.to_json()``, the line ``consume`` prints.
- CMD answers ONE line per message on its stdout, in the order it got them, and flushes it:
  ``ok`` or ``{"ok": true}`` acknowledges the message; ``error``, ``error REASON``,
  ``{"error": "REASON"}`` or ``{"ok": false, ...}`` fails it. Spaces and ``\\r`` around an
  answer are ignored, other keys of a JSON answer too. Its stderr is the consumer's.
- Anything else (an empty line, a debug print, more answers than messages, bytes that are not
  UTF-8) is a protocol error: the answers can no longer be paired with messages, so the process
  is ended (SIGTERM to its process group, SIGKILL 2 s later) and restarted, and the line counts as
  a failed attempt of the first message it had not answered.
- Pipelining: the consumer writes up to ``window`` messages (and 16 MiB) ahead of the first
  one not yet settled and reads the answers as they come; it never waits for one answer before
  sending the next message.

What the consumer does with the answers (the handler interface of services/consumer.py):
``offset()`` is the number of messages handed over, ``taken()`` the number whose fate is settled
in order (acknowledged, or failed and skipped): the position moves only past those.

- An error answer is retried: the message is sent again after ``backoff``, then twice that, and
  so on, ``retries`` times; it goes out after the messages already sent, so a handler can see up
  to ``window - 1`` later messages before the retry of a failed one. Then ``on_error``:
  ``skip`` logs it and counts it as taken; ``stop`` ends the consumer with ``HandlerStopped``
  (exit 1) and the position stays AT the failed message (later messages acknowledged meanwhile
  are handed over again by the next run). Only ``handle()`` raises it, so the consumer's final
  flush, drain and save run as usual; ``reader_gone()`` turns true so that an idle ``--follow``
  loop ends too, and ``check()`` raises it after the run (what ``consume`` calls).
- A handler that dies (exits, crashes, closes its stdout or stdin) is restarted, and the new
  process gets every message the old one had not answered, in order. A restart is immediate when
  the dead process had answered something; otherwise it waits ``backoff`` (doubling) and the
  death counts as a failed attempt of the first unanswered message, so a handler that dies on one
  message ends by ``on_error`` like one that answers errors, and a crash loop cannot spin.

Delivery is at least once. What can repeat: a message the handler processed but whose answer
had not been read when it died (or when the consumer was killed or stopped), and with ``stop``
the acknowledged messages after the failed one. Nothing is lost: the position never moves past
a message without its ``ok`` (or, with ``skip``, its final failure).
"""

from __future__ import annotations

import os
import select
import signal
import subprocess
import sys
import time
from collections import deque

from ..domain.message import Message
from ..errors import EXIT_FAILED, EventoError

# states of a message between handed over and settled (ACKED and SKIPPED are settled)
SENT, WAIT, ACKED, SKIPPED = 0, 1, 2, 3
KILL_GRACE = 2.0  # seconds between SIGTERM and SIGKILL of a handler being ended
CLOSE_GRACE = 5.0  # seconds a handler has to exit after its stdin is closed (1 s after a signal)
MAX_AHEAD_BYTES = 16 << 20  # unsettled bytes ahead (the window in bytes, for large messages)
WRITE_AHEAD = 65536  # buffered bytes that are written at once, without waiting for a flush()
MAX_ANSWER = 1 << 20  # an answer line longer than this is a protocol error


class HandlerStopped(EventoError):
    """A message failed every attempt with ``on_error="stop"``: the position stays at it."""

    exit_code = EXIT_FAILED
    code = "HANDLER_FAILED"


class _Entry:
    __slots__ = ("line", "id", "gpos", "state", "attempts")

    def __init__(self, line: bytes, m: Message):
        self.line = line
        self.id = m.id
        self.gpos = m.global_position
        self.state = SENT
        self.attempts = 0


def parse_answer(line: bytes) -> tuple[bool, str] | None:
    """One answer line (without its newline): ``(True, "")`` for an ack, ``(False, reason)`` for
    an error, None for anything else (a protocol error)."""
    s = line.strip(b" \t\r")
    if s == b"ok":
        return True, ""
    if s == b"error" or s.startswith((b"error ", b"error\t")):
        try:
            return False, s[6:].strip().decode("utf-8") or "error"
        except UnicodeDecodeError:
            return None
    if s.startswith(b"{"):
        import json

        try:
            obj = json.loads(s)
        except (ValueError, UnicodeDecodeError, RecursionError):
            return None
        if not isinstance(obj, dict):
            return None
        if obj.get("error") not in (None, False):
            why = obj["error"]
            return False, why if isinstance(why, str) else json.dumps(why)
        if obj.get("ok") is True:
            return True, ""
        if obj.get("ok") is False:
            return False, "error"
    return None


def _delay(backoff: float, attempts: int) -> float:
    """The wait before attempt ``attempts + 1``: ``backoff``, doubled after each failure."""
    return min(backoff * 2 ** min(max(attempts - 1, 0), 30), 3600.0)


class PipeHandler:
    """The persistent handler process behind ``consume --pipe CMD`` (see the module text)."""

    def __init__(self, command: str, *, window: int = 1000, retries: int = 3,
                 backoff: float = 0.5, on_error: str = "stop", log=None, env=None):
        if on_error not in ("stop", "skip"):
            raise ValueError(on_error)
        self.command = command
        self.window = max(1, window)
        self.retries = retries
        self.backoff = backoff
        self.on_error = on_error
        self.env = env
        self._log = log or (lambda text: print(f"eventodb: consume: {text}", file=sys.stderr,
                                               flush=True))
        self._seq = 0  # messages handed over
        self._done = 0  # settled in order (acked or skipped): what taken() says
        self._q: deque[_Entry] = deque()  # not settled in order: messages _done+1 .. _seq
        self._qbytes = 0  # their lines' bytes
        self._proc: subprocess.Popen | None = None
        self._stdin = self._stdout = None  # our ends of its stdin and stdout
        self._win = self._rout = -1  # their file descriptors
        self._out = bytearray()  # written to its stdin, not yet accepted by the pipe
        self._expect: deque[_Entry] = deque()  # sent to this process, answers due, in order
        self._partial = b""
        self._answered = 0  # answers from the current process
        self._restart_at = 0.0  # the next process may start then
        self._retry: list[tuple[float, _Entry]] = []  # error answers waiting for their backoff
        self._stopped: str | None = None
        self._interrupted = False
        self.acked = 0  # messages acknowledged (what the consumer reports as handled)
        self.last_acked_at: int | None = None  # ns since epoch, when the last ack was read
        self.failed = 0  # skipped after the retries
        self.skipped_ids: set[str] = set()  # failed and skipped, not yet past the ledger
        self.failures = 0  # failed attempts: error answers, protocol errors, deaths
        self.starts = 0  # processes started

    # --- the handler interface (services/consumer.py) ---------------------------------------
    def handle(self, m: Message) -> None:
        """Hand ``m`` over (buffered; written once ``WRITE_AHEAD`` bytes wait, or at flush()).
        Waits only while ``window`` messages are unsettled."""
        if self._stopped is not None:
            self.check()
        if len(self._q) >= self.window or self._qbytes >= MAX_AHEAD_BYTES:
            self._wait_for_room()
        line = (m.to_json() + "\n").encode("utf-8")
        e = _Entry(line, m)
        self._seq += 1
        self._q.append(e)
        self._qbytes += len(line)
        if self._proc is None:
            self._maybe_start()
        else:
            out = self._out
            out += line
            self._expect.append(e)
            if len(out) >= WRITE_AHEAD:
                self._io(0)

    def _wait_for_room(self) -> None:
        """Wait while the window is full (not after an interruption)."""
        while (len(self._q) >= self.window or self._qbytes >= MAX_AHEAD_BYTES) and \
                self._waiting():
            self._io(0.1)
            self.check()

    def offset(self) -> int:
        return self._seq

    def taken(self) -> int:
        """Messages settled in order: acknowledged, or failed and skipped."""
        if self._q:
            self._io(0)
        return self._done

    def flush(self) -> None:
        """Write what is buffered (reading answers meanwhile); does not wait for answers."""
        while self._out and self._proc is not None and self._waiting():
            self._io(0.1)

    def drain(self, timeout: float, on_progress=None) -> bool:
        """Wait until every message handed over is settled, then True. Without an interruption
        there is no time limit (the handler's answers are the work; a message that keeps
        failing ends by ``on_error``); after ``interrupt()``, at most ``timeout`` more seconds."""
        deadline = None
        while self._q and self._stopped is None:
            if self._interrupted and deadline is None:
                deadline = time.monotonic() + timeout
            if deadline is not None and time.monotonic() >= deadline:
                return False
            before = self._done
            self._io(0.1)
            if self._done != before and on_progress is not None:
                on_progress()
        return not self._q

    def reader_gone(self) -> bool:
        """True once a message failed for good with ``on_error="stop"`` (a dead handler is
        restarted, never a reason to end)."""
        return self._stopped is not None

    def discard(self) -> None:
        pass

    @property
    def stopped(self) -> str | None:
        """Why the handler stopped for good (``on_error="stop"``), else None."""
        return self._stopped

    def check(self) -> None:
        """Raise ``HandlerStopped`` when a message failed for good with ``on_error="stop"``."""
        if self._stopped is not None:
            raise HandlerStopped(self._stopped)

    def _waiting(self) -> bool:
        """Whether a wait for the handler may go on (not stopped, not interrupted)."""
        return self._stopped is None and not self._interrupted

    # --- control ------------------------------------------------------------------------------
    def interrupt(self) -> None:
        """SIGINT/SIGTERM: stop waiting for the window; drain() waits at most its timeout."""
        self._interrupted = True

    def close(self, grace: float | None = None, kill_grace: float = KILL_GRACE) -> None:
        """End the handler: close its stdin, give it ``grace`` seconds to exit (default
        ``CLOSE_GRACE``, 1 s after ``interrupt()``: what it still works on is handed over again
        anyway), then SIGTERM its process group, and SIGKILL after ``kill_grace`` seconds.
        (Answers it still writes are read and dropped: the position was saved before.)"""
        if self._proc is None:
            return
        if grace is None:
            grace = 1.0 if self._interrupted else CLOSE_GRACE
        self._stdin.close()
        self._out.clear()
        deadline = time.monotonic() + grace
        while time.monotonic() < deadline:  # what it still says is not saved any more
            if select.select([self._rout], [], [], 0.1)[0]:
                try:
                    if not os.read(self._rout, 65536):
                        break
                except BlockingIOError:
                    pass
        self._end_process(kill_grace)

    # --- the process ----------------------------------------------------------------------------
    def _maybe_start(self) -> None:
        """Start a process when one is due and some message waits for it; it gets every unsettled
        message not waiting for a retry, in order."""
        if self._proc is not None or self._stopped is not None:
            return
        if time.monotonic() < self._restart_at:
            return
        todo = [e for e in self._q if e.state == SENT]
        if not todo:
            return
        try:
            proc = subprocess.Popen(self.command, shell=True, stdin=subprocess.PIPE,
                                    stdout=subprocess.PIPE, bufsize=0, start_new_session=True,
                                    env=self.env)
        except OSError as e:  # no /bin/sh, no process slots: like a death without an answer
            self._log(f"cannot start the handler: {e.strerror or e}")
            self._blame(todo[0], f"cannot start the handler ({e.strerror or e})")
            return
        self.starts += 1
        self._proc = proc
        self._stdin, self._stdout = proc.stdin, proc.stdout
        self._win = proc.stdin.fileno()
        self._rout = proc.stdout.fileno()
        os.set_blocking(self._win, False)
        os.set_blocking(self._rout, False)
        self._answered = 0
        self._partial = b""
        self._expect = deque(todo)
        self._out = bytearray(b"".join(e.line for e in todo))

    def _end_process(self, kill_grace: float = KILL_GRACE) -> str:
        """Reap the process (SIGTERM its group if it still runs, SIGKILL after KILL_GRACE) and
        close our ends. Returns how it ended, for the log."""
        proc = self._proc
        self._proc = None
        for f in (self._stdin, self._stdout):
            try:
                f.close()
            except OSError:  # a write of ours it never took (EPIPE)
                pass
        self._stdin = self._stdout = None
        self._win = self._rout = -1
        rc = proc.poll()
        if rc is None:
            for sig, wait in ((signal.SIGTERM, kill_grace), (signal.SIGKILL, 5.0)):
                try:
                    os.killpg(proc.pid, sig)
                except OSError:
                    pass
                try:
                    rc = proc.wait(wait)
                    break
                except subprocess.TimeoutExpired:
                    continue
        if rc is None:
            return "did not end"
        return f"killed by signal {-rc}" if rc < 0 else f"exit status {rc}"

    def _died(self, why: str, *, protocol: bool = False, salvage: bool = False) -> None:
        """The process is gone (or ended for a protocol error): blame the first unanswered message
        when nothing was answered (or for a protocol error), schedule the restart. With
        ``salvage`` (it closed its stdin: it may be exiting), first read the answers it still
        wrote, for up to a second, so that they are not handed over again."""
        if salvage:
            ended = self._salvage()
            if ended is None:
                return  # it died of something it said meanwhile
            if ended:
                why = ""  # it exited: its stdin closed with it
        answered = self._answered
        unanswered = len(self._expect)
        first = self._expect[0] if self._expect else None
        how = self._end_process()
        self._expect.clear()
        self._out.clear()
        text = f"handler {why} ({how})" if why else f"handler ended ({how})"
        again = f"{unanswered} messages unanswered, sent again to a new process"
        if first is not None and (protocol or answered == 0):
            self._log(f"{text}; {again}")
            self._blame(first, text)
        else:
            self._restart_at = 0.0
            self._log(f"{text}; {again}" if unanswered
                      else f"{text}; a new one starts with the next message")

    def _salvage(self) -> bool | None:
        """Read what the process still writes until its stdout ends (at most a second): True
        when it ended, False when it is still open, None when an answer ended the process
        meanwhile (a protocol error)."""
        deadline = time.monotonic() + 1.0
        while self._proc is not None:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([self._rout], [], [], left)[0]:
                return False
            try:
                chunk = os.read(self._rout, 65536)
            except BlockingIOError:
                continue
            if not chunk:
                if self._partial:
                    self._answers([self._partial])
                    self._partial = b""
                return True if self._proc is not None else None
            lines = (self._partial + chunk).split(b"\n")
            self._partial = lines.pop()
            self._answers(lines)
        return None

    def _blame(self, e: _Entry, why: str) -> None:
        """A failed attempt of ``e`` that ended its process: the next process waits the backoff;
        after the retries, ``on_error``."""
        e.attempts += 1
        self.failures += 1
        self._restart_at = time.monotonic() + _delay(self.backoff, e.attempts)
        if e.attempts > self.retries:
            self._give_up(e, why)

    def _failed(self, e: _Entry, why: str) -> None:
        """An error answer for ``e``: retried after the backoff, then ``on_error``."""
        e.attempts += 1
        self.failures += 1
        if e.attempts > self.retries:
            self._give_up(e, why)
            return
        wait = _delay(self.backoff, e.attempts)
        self._log(f"message {e.id} (global position {e.gpos}): handler error: {why}; retry "
                  f"{e.attempts} of {self.retries} in {wait:g}s")
        e.state = WAIT
        self._retry.append((time.monotonic() + wait, e))

    def _give_up(self, e: _Entry, why: str) -> None:
        tries = e.attempts
        if self.on_error == "skip":
            e.state = SKIPPED
            self.failed += 1
            self.skipped_ids.add(e.id)
            self._log(f"skipping message {e.id} at global position {e.gpos} after {tries} "
                      f"attempts (--on-error skip): {why}")
            self._settle()
        else:
            self._stopped = (f"handler failed message {e.id} at global position {e.gpos} "
                             f"({tries} attempts): {why}; stopping at it (--on-error stop)")

    def _settle(self) -> None:
        q = self._q
        while q and q[0].state >= ACKED:
            self._qbytes -= len(q.popleft().line)
            self._done += 1

    # --- I/O ------------------------------------------------------------------------------------
    def _io(self, wait: float) -> None:
        """One round: start a due process, send due retries, write what is buffered, read the
        answers that are there (waiting up to ``wait`` seconds for something to happen)."""
        if self._stopped is not None:
            return
        now = time.monotonic()
        if self._retry:
            due = [r for r in self._retry if r[0] <= now]
            if due:
                self._retry = [r for r in self._retry if r[0] > now]
                for _t, e in sorted(due, key=lambda r: r[1].gpos):
                    e.state = SENT
                    if self._proc is not None:
                        self._out += e.line
                        self._expect.append(e)
        if self._proc is None:
            self._maybe_start()
        if self._proc is None:
            if wait > 0:  # until the next retry or restart that is due to happen
                times = [t for t, _e in self._retry]
                if self._restart_at > now and any(e.state == SENT for e in self._q):
                    times.append(self._restart_at)
                time.sleep(max(0.001, min([wait] + [t - now for t in times])))
            return
        if self._out:
            self._write()
            if self._proc is None:
                return
        p = select.poll()
        p.register(self._rout, select.POLLIN)
        if self._out:
            p.register(self._win, select.POLLOUT)
        if self._retry:
            wait = max(0.0, min(wait, min(t for t, _e in self._retry) - now))
        events = p.poll(wait * 1000)
        for fd, ev in events:
            if self._proc is None:
                return
            if fd == self._rout:
                self._read()
            elif ev & (select.POLLERR | select.POLLHUP):
                self._died("closed its stdin", salvage=True)
            elif ev & select.POLLOUT:
                self._write()

    def _write(self) -> None:
        try:
            n = os.write(self._win, self._out)
        except BlockingIOError:
            return
        except (BrokenPipeError, ConnectionResetError):
            self._died("closed its stdin", salvage=True)
            return
        del self._out[:n]

    def _read(self) -> None:
        try:
            chunk = os.read(self._rout, 65536)
        except BlockingIOError:
            return
        if not chunk:  # its stdout is closed: it ended (or closed it)
            if self._partial:
                acked = self.acked
                self._answers([self._partial])
                if self.acked != acked:
                    self.last_acked_at = time.time_ns()
                if self._proc is None:
                    return
            self._died("")
            return
        lines = (self._partial + chunk).split(b"\n")
        self._partial = lines.pop()
        if lines:
            acked = self.acked
            self._answers(lines)
            if self.acked != acked:
                self.last_acked_at = time.time_ns()
        if len(self._partial) > MAX_ANSWER and self._proc is not None:
            self._died(f"protocol error: an answer of more than {MAX_ANSWER} bytes",
                       protocol=True)

    def _answers(self, lines: list[bytes]) -> None:
        expect = self._expect
        q = self._q
        for line in lines:
            if line == b"ok" and expect:  # the common case, fast
                e = expect.popleft()
                e.state = ACKED
                self.acked += 1
                self._answered += 1
                if q[0] is e:
                    q.popleft()
                    self._qbytes -= len(e.line)
                    self._done += 1
                    continue
                self._settle()
                continue
            answer = parse_answer(line)
            if answer is None or not expect:
                shown = line[:200].decode("utf-8", "replace")
                what = "more answers than messages" if answer is not None else "protocol error"
                self._died(f"{what}: {shown!r}", protocol=True)
                return
            e = expect.popleft()
            self._answered += 1
            if answer[0]:
                e.state = ACKED
                self.acked += 1
                self._settle()
            else:
                self._failed(e, answer[1])
                if self._stopped is not None:
                    return
                self._settle()


class SkipAwareLedger:
    """The idempotency ledger (services/ledger.py) as ``consume --pipe`` uses it: the consumer
    records every message the handler settled, and this leaves out the ones it failed and
    skipped, so that, as with ``--exec``, only handled messages are in the ledger."""

    def __init__(self, ledger, handler: PipeHandler):
        self._ledger = ledger
        self._handler = handler

    def record(self, message_id: str, global_position: int) -> None:
        skipped = self._handler.skipped_ids
        if message_id in skipped:
            skipped.discard(message_id)
            return
        self._ledger.record(message_id, global_position)

    def __getattr__(self, name):
        return getattr(self._ledger, name)
