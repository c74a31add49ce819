"""``eventodb consume``: one member of a consumer group, with checkpoints, retries, an idempotency
ledger and follow mode. Written once against the Store interface.

The loop (the seed's CheckpointedConsumer and RealtimeConsumer, done carefully):

1. Load the position through the keeper: a checkpoint file (services/checkpoints.py) or, with
   ``--group``, a position stream in the store (services/consumer_positions.py), as the NEXT
   global position to read (absent: ``from_position``, default 1).
2. Read ahead: ``category_get(category, position, max(batch_size, READ_AHEAD), member=M,
   size=N)``, one page that is handed out in batches of ``batch_size``; hand each message to the
   handler; after each batch, flush the handler's output and save the position past the
   messages the handler has TAKEN (services/delivery.py: on a pipe, what its reader has read).
   The save replaces the checkpoint file atomically; its fsyncs come at most once per
   ``sync_interval`` and at the end (services/checkpoints.py ``FileKeeper``). A page holds what
   the store has now, so reading ahead never waits for messages to arrive.
3. Only an EMPTY read means caught up: a short page is not the end (a server's backend may return
   one mid-category, EventoDB's Pebble backend does), the next read starts after it. Without
   ``follow``, stop. With it, wait for a wake-up and read again from the own position: on a server (a store with ``pokes``) an SSE poke on the category
   wakes the loop, with a fallback read every ``10 x poll_interval`` (pokes can be dropped or
   missed: PROTOCOL.md section 7); on a local store, every ``poll_interval``. Pokes are never
   used as data. The SSE subscription has no consumer-group filter because the production server
   filters live pokes with a different hash from its reads (PROTOCOL.md section 7); the reads
   carry the group.

A failing handler is retried ``retries`` times with exponential backoff; then ``on_error="stop"``
saves the checkpoint AT the failed message (it is the next one to read) and returns exit code 1,
``"skip"`` logs it and moves on. With a ledger, ids already handled are skipped and each id is
recorded once the handler has taken it, so a kill repeats at most the message in flight.
``request_stop()`` (SIGINT/SIGTERM) finishes the current message, saves and returns 0.
"""

from __future__ import annotations

import sys
import threading
import time
from collections import deque
from dataclasses import dataclass

from ..domain.message import Message, format_time
from ..errors import EventoError, StoreError, Unreachable, UsageError
from ..store.base import Store
from . import checkpoints as cps
from .delivery import DRAIN_SECONDS, Pending, ReaderGone
from .handlers import ExecHandler, HandlerFailed, PrintHandler  # noqa: F401 (re-exported)


@dataclass
class ConsumerOptions:
    category: str
    member: int
    size: int
    checkpoint_path: str | None = None
    batch_size: int = 100
    poll_interval: float = 1.0
    follow: bool = False
    from_position: int | None = None
    retries: int = 3
    backoff: float = 0.5  # first retry delay, doubled each time
    on_error: str = "stop"  # stop | skip
    max_messages: int | None = None
    max_lag: int = 1000  # health status threshold (messages)
    sse_fallback_factor: float = 10.0
    drain_timeout: float = DRAIN_SECONDS  # at the end, wait this long for the reader to take all
    position_every: int | None = None  # save at most every K messages (None: after each batch)
    sync_interval: float = 1.0  # a checkpoint file is fsync'd at most this often (0: every save)


READ_AHEAD = 1000  # the smallest page read from the store (batches are handed out of it)


class Consumer:
    """One member's loop. Two positions: ``read_position`` (the next global position to read
    from the store) runs ahead; ``position`` (the next one to read after what the handler has
    really taken, services/delivery.py) is the only one ever saved, through ``keeper``
    (a checkpoint file, or a position stream in the store)."""

    def __init__(self, store: Store, opts: ConsumerOptions, handler, *, ledger=None,
                 log=None, keeper=None):
        if opts.on_error not in ("stop", "skip"):
            raise UsageError(f"--on-error must be stop or skip (got {opts.on_error})")
        self.store = store
        self.opts = opts
        self.handler = handler
        self.ledger = ledger
        self._log = log or (lambda text: print(f"eventodb: consume: {text}", file=sys.stderr,
                                               flush=True))
        if keeper is None:
            keeper = cps.FileKeeper(opts.checkpoint_path, opts.category, opts.member, opts.size,
                                    from_position=opts.from_position, log=self._log,
                                    sync_interval=opts.sync_interval)
        self.keeper = keeper
        self.position = 1  # next to read after what was taken: what is saved
        self.read_position = 1  # next to read from the store
        self._saved: int | None = None
        self._loaded: int | None = None  # where this run started
        self._since_save = 0
        self._pending = Pending()
        self.reader_gone = False
        self._handled = 0  # the handler took them (a pipe handler: handed over)
        self.duplicates = 0  # skipped by the ledger
        self.failed = 0  # skipped after failing (on_error=skip)
        self.handler_failures = 0  # failed attempts, retries included
        self.started = time.monotonic()
        self.last_handled_at: int | None = None
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._pokes_alive = False
        self._rate: deque = deque()  # (monotonic time, handled so far) per batch
        self._lag = {"head": None, "lag": None, "lagExact": True, "lagPositions": None,
                     "lagSeconds": None, "checkedAt": None}
        self._lag_checked = 0.0
        self._read_once = False
        self.loaded = False  # the position has been loaded (run() started)
        self.track_lag = False

    # --- control --------------------------------------------------------------------------
    def request_stop(self) -> None:
        """Finish the current message, save the position, return 0 (signal-safe)."""
        self._stop.set()
        self._wake.set()

    @property
    def handled(self) -> int:
        """Messages handled: a --pipe handler's acknowledged ones, else those its handler
        succeeded on (printed, or --exec exited 0)."""
        acked = getattr(self.handler, "acked", None)
        return self._handled if acked is None else acked

    @property
    def last_handled(self) -> int | None:
        """When the last message was handled (ns since epoch; a --pipe handler's last ack)."""
        if hasattr(self.handler, "acked"):
            return getattr(self.handler, "last_acked_at", None)
        return self.last_handled_at

    @property
    def failed_skipped(self) -> int:
        """Messages failed and skipped: here (--exec), or by the handler itself (--pipe)."""
        return self.failed + getattr(self.handler, "failed", 0)

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    # --- position -------------------------------------------------------------------------
    def load_position(self) -> int:
        return self.keeper.load()

    def save(self) -> None:
        self.keeper.save(self.position)
        self._saved = self.position
        self._since_save = 0

    def sync(self) -> None:
        """Make the last save durable (a checkpoint file's durable copy,
        services/checkpoints.py ``FileKeeper``)."""
        sync = getattr(self.keeper, "sync", None)
        if sync is not None:
            sync()

    def finish(self) -> None:
        """End of a run: the saved position made durable where it is kept."""
        finish = getattr(self.keeper, "finish", None)
        if finish is not None:
            finish()
        else:
            self.sync()

    def _commit(self, *, save: bool) -> None:
        """Move ``position`` past every message the handler has taken (their ids go into the
        ledger now); with ``save``, save it when it moved (every ``position_every`` messages
        at most, when set)."""
        if len(self._pending):
            moved, ids, n = self._pending.take(self.handler.taken())
            if self.ledger is not None:
                for message_id, gpos in ids:
                    self.ledger.record(message_id, gpos)
            if moved is not None:
                self._since_save += n
                self.position = moved
        if save and self.position != self._saved:
            every = self.opts.position_every
            if save == "force" or ((every is None or self._since_save >= every)
                                   and self.position != self._loaded):
                self.save()

    def _settle(self) -> None:
        """Wait (bounded) for the reader to take what was handed over, then save what it took."""
        self.handler.drain(self.opts.drain_timeout,
                           on_progress=lambda: self._commit(save=False))
        self._commit(save="force")

    # --- the loop -------------------------------------------------------------------------
    def run(self) -> int:
        """Consume until caught up (or, with ``follow``, until stopped). Returns the exit code."""
        o = self.opts
        self.position = self.read_position = self._loaded = self.load_position()
        self.loaded = True
        # a position already kept in the store is not written again until it moves
        self._saved = self.position if getattr(self.keeper, "skip_unchanged", False) and \
            getattr(self.keeper, "found", None) is not None and \
            not getattr(self.keeper, "must_write", False) else None
        self._log(f"{o.category} member {o.member} of {o.size} from position {self.position}"
                  f" ({self.keeper.where})")
        try:
            rc = self._loop()
        except ReaderGone:
            rc = 0
            self.reader_gone = True
            self._stop.set()
        finally:
            try:
                self._final_save()
            finally:
                self.finish()
        if rc is not None:
            return rc
        if not self.reader_gone:
            self._log(f"stopped at position {self.position}: {self.handled} handled, "
                      f"{self.duplicates} duplicates skipped, {self.failed_skipped} failed and "
                      "skipped")
        return 0

    def _loop(self) -> int | None:
        o = self.opts
        poker = None
        caught_up_logged = False
        failures = 0
        page_size = None if o.batch_size is None else max(o.batch_size, READ_AHEAD)
        ahead: list[Message] = []  # read, not handed out yet (from read_position on)
        at = 0
        while not self._stop.is_set():
            self._wake.clear()
            if at >= len(ahead):
                try:
                    ahead = self.store.category_get(o.category, self.read_position, page_size,
                                                    member=o.member, size=o.size)
                except (Unreachable, StoreError) as e:
                    if not o.follow or not self._read_once:
                        raise  # a wrong URL, token or store fails fast; later outages wait
                    failures += 1
                    delay = min(30.0, o.poll_interval * 2 ** min(failures, 5))
                    self._log(f"read failed ({e.message}); retrying in {delay:.1f}s")
                    self._stop.wait(delay)
                    continue
                at = 0
                failures = 0
                self._read_once = True
            if ahead:
                batch = ahead[at:at + o.batch_size] if o.batch_size is not None else ahead
                at += len(batch)
                rc = self._process(batch)
                if rc is not None:
                    return rc
                caught_up_logged = False
                if self._stop.is_set():
                    break
                self._maybe_refresh_lag(caught_up=False)
                continue  # the next batch, or the next read: only an empty read is the end
            # caught up
            self._maybe_refresh_lag(caught_up=True)
            if not o.follow:
                break
            if not caught_up_logged:
                self._log(f"caught up at position {self.read_position}; following")
                caught_up_logged = True
            if poker is None and hasattr(self.store, "pokes"):
                # subscribed once caught up, from the own position: the server's replay
                # covers what is written between the last read and the subscription
                poker = threading.Thread(target=self._poke_loop, args=(self.read_position,),
                                         name="eventodb-pokes", daemon=True)
                self._pokes_alive = True
                poker.start()
                continue  # read once more: a write may have landed before the subscription
            timeout = o.poll_interval
            if self._pokes_alive:
                timeout = o.poll_interval * o.sse_fallback_factor
            self._idle(timeout)
        return None

    def _idle(self, timeout: float) -> None:
        """Wait for a wake-up; meanwhile move the position as the reader takes what it was
        given, and stop when the reader is gone."""
        deadline = time.monotonic() + timeout
        while True:
            if len(self._pending) or self._saved != self.position:
                self._commit(save="force")
            self.sync()  # idle: the last save is made durable now
            if self.handler.reader_gone():
                raise ReaderGone()
            left = deadline - time.monotonic()
            if left <= 0:
                return
            step = min(left, 0.05) if len(self._pending) else min(left, 0.5)
            if self._wake.wait(step):
                return

    def _final_save(self) -> None:
        """Save the position reached (only ever moved past messages the handler took); not when
        the store was never read (a wrong target leaves no position behind). When the reader
        is gone, nothing it did not take is saved."""
        if not self._read_once:
            return
        if not self.reader_gone:
            try:
                self.handler.flush()
            except ReaderGone:
                self.reader_gone = True
        if not self.reader_gone:
            try:
                self._settle()
                return
            except ReaderGone:
                self.reader_gone = True
        if self.position != self._saved:
            self.save()  # what was measured taken while the reader was there

    def _process(self, batch: list[Message]) -> int | None:
        """Handle a batch. Returns an exit code when the consumer must end now, else None.
        Each message is queued with the offset where its output ends; the position moves past
        it once the reader has taken that much (``_commit``)."""
        o = self.opts
        done = 0
        pending = self._pending
        handler = self.handler
        if self.ledger is None and o.max_messages is None and \
                hasattr(handler, "handle_batch") and not self._stop.is_set():
            handler.handle_batch(batch, pending)  # cannot fail: no retries, no skips
            done = len(batch)
            self._handled += done
            self.last_handled_at = time.time_ns()
            self.read_position = batch[-1].global_position + 1
            batch = ()
        for m in batch:
            if self._stop.is_set():
                break
            if self.ledger is not None and self.ledger.seen(m.id):
                self.duplicates += 1
                pending.add(handler.offset(), m.global_position + 1)
            else:
                outcome = self._handle(m)
                if outcome == "stopped":  # not handled: it is the next message to read
                    pending.add(handler.offset(), m.global_position)
                    self.read_position = m.global_position
                    break
                if outcome == "ok":
                    self._handled += 1
                    self.last_handled_at = time.time_ns()
                    pending.add(handler.offset(), m.global_position + 1,
                                (m.id, m.global_position) if self.ledger is not None else None)
                    if self.ledger is not None:
                        handler.flush()  # the output is out before the id is recorded
                        self._commit(save=False)
                elif o.on_error == "stop":
                    # the failed message is the next to read, once what came before is taken
                    pending.add(handler.offset(), m.global_position)
                    self.read_position = m.global_position
                    handler.flush()
                    self._settle()
                    self._log(f"stopping at position {self.position} (--on-error stop)")
                    return 1
                else:
                    self.failed += 1
                    pending.add(handler.offset(), m.global_position + 1)
                    self._log(f"skipping message {m.id} at global position "
                              f"{m.global_position} (--on-error skip)")
            self.read_position = m.global_position + 1
            done += 1
            if o.max_messages is not None and \
                    self._handled + self.duplicates + self.failed >= o.max_messages:
                self._stop.set()
                break
        handler.flush()
        self._commit(save=True)
        if done:
            now = time.monotonic()
            self._rate.append((now, self.handled))
            while len(self._rate) > 1 and self._rate[1][0] < now - 60:
                self._rate.popleft()  # the newest sample older than that stays: the base
        return None

    def _handle(self, m: Message) -> str:
        """``ok``, ``failed`` (after the retries) or ``stopped`` (a stop came during a failure
        or a backoff: the message is left for the next run)."""
        o = self.opts
        for attempt in range(o.retries + 1):
            try:
                self.handler.handle(m)
                return "ok"
            except HandlerFailed as e:
                self.handler_failures += 1
                if self._stop.is_set():
                    return "stopped"
                left = o.retries - attempt
                self._log(f"message {m.id} (global position {m.global_position}): {e}"
                          + (f"; retry {attempt + 1} of {o.retries}" if left else ""))
                if left:
                    if self._stop.wait(min(o.backoff * 2 ** min(attempt, 30), 3600.0)):
                        return "stopped"
        return "failed"

    # --- follow: SSE wake-ups -------------------------------------------------------------
    def _poke_loop(self, position: int) -> None:
        try:
            for _poke in self.store.pokes(category=self.opts.category, position=position):
                self._wake.set()
                if self._stop.is_set():
                    return
        except Exception as e:  # the fallback timer keeps the consumer going
            if not self._stop.is_set():
                self._log(f"SSE subscription ended ({e}); polling every "
                          f"{self.opts.poll_interval}s")
        finally:
            self._pokes_alive = False

    # --- health -----------------------------------------------------------------------------
    def _maybe_refresh_lag(self, *, caught_up: bool) -> None:
        """Refresh the health figures: at every idle moment (caught up: the share's lag is 0,
        only the head is read), and at most once a second while working through a backlog."""
        if not self.track_lag:
            return
        now = time.monotonic()
        if not caught_up and now - self._lag_checked < 1.0:
            head = self._lag["head"]
            if head is not None:
                self._lag["lagPositions"] = max(0, head - self.position + 1)
            return
        self._lag_checked = now
        from .lag import count_share

        o = self.opts
        try:
            head = self.store.category_head(o.category)
            if caught_up:
                lag, exact = 0, True
            else:
                share = count_share(self.store, o.category, o.member, o.size, self.position,
                                    head, o.max_lag + 1)
                lag, exact = share.messages, share.exact
        except EventoError:
            return
        self._lag.update(head=head, lag=lag, lagExact=exact,
                         lagPositions=0 if head is None else max(0, head - self.position + 1),
                         checkedAt=format_time(time.time_ns()))

    def metric_row(self, store=None) -> dict:
        """This member for ``metrics.prometheus_text``: the position (last processed, Eventide's
        meaning), handled and failure counters, and, read from ``store`` now, the head and the
        exact lag of the share after the position (what ``group describe`` computes)."""
        from .positions import recorded_from_next

        o = self.opts
        row = {"category": o.category, "group": getattr(self.keeper, "group", None),
               "member": o.member, "size": o.size,
               "messagesHandled": self.handled, "handlerFailures": self.handler_failures}
        if not self.loaded:  # the position is not known yet: no made-up figures
            return row
        position = row["position"] = recorded_from_next(self.position)
        if store is not None:
            from .group_view import share_lag

            head = store.category_head(o.category)
            lag, oldest = share_lag(store, o.category, o.member, o.size, position, head)
            row.update(head=head, lagMessages=lag,
                       lagSeconds=0.0 if oldest is None
                       else max(0.0, round((time.time_ns() - oldest) / 1e9, 3)))
        return row

    def throughput(self, window: float = 10.0) -> float:
        """Messages handled (``handled``: a --pipe handler's acknowledged ones) per second over
        the last ``window`` seconds (safe from another thread: it reads a copy; the consumer
        thread alone trims the deque of (time, handled so far) samples)."""
        now = time.monotonic()
        base = 0
        for t, total in list(self._rate):
            if t >= now - window:
                break
            base = total
        n = self.handled - base
        span = min(window, max(now - self.started, 1e-3))
        return round(n / span, 1)

    def health(self) -> dict:
        """The seed's health JSON, with the lag measured from the category's head."""
        o = self.opts
        lag = self._lag["lag"]
        return {
            "status": "lagging" if lag is not None and lag > o.max_lag else "healthy",
            "consumer": {"member": o.member, "size": o.size},
            "category": o.category,
            "position": self.position,
            "lag": lag,
            "lagExact": self._lag["lagExact"],
            "lagPositions": self._lag["lagPositions"],
            "head": self._lag["head"],
            "throughput": self.throughput(),
            "handled": self.handled,
            "duplicatesSkipped": self.duplicates,
            "failedSkipped": self.failed_skipped,
            "lastProcessed": None if self.last_handled is None
            else format_time(self.last_handled),
            "uptimeSeconds": round(time.monotonic() - self.started, 1),
        }
