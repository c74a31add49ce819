"""The Store interface every target implements (local SQLite file, remote server).

Batch sizes: ``None`` means unlimited. Positions follow PROTOCOL.md: ``stream_get`` positions are
stream positions, ``category_get`` positions are global positions (inclusive).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Iterator, Sequence

if TYPE_CHECKING:  # annotations only: a store imports the message module when it needs it
    from ..domain.message import Message, NewMessage, WriteResult


class Store:
    """Abstract message store. Subclasses implement the primitive reads and writes."""

    kind = "abstract"

    # --- writes ---------------------------------------------------------------------------------
    def write(self, msg: NewMessage) -> WriteResult:
        return self.write_batch([msg])[0]

    def write_batch(self, msgs: Sequence[NewMessage]) -> list[WriteResult]:
        """Write messages atomically where the target allows it (local: one transaction)."""
        raise NotImplementedError

    # --- reads ----------------------------------------------------------------------------------
    def stream_get(self, stream: str, position: int = 0, global_position: int | None = None,
                   batch_size: int | None = 1000) -> list[Message]:
        raise NotImplementedError

    def stream_last(self, stream: str, type: str | None = None) -> Message | None:
        raise NotImplementedError

    def stream_version(self, stream: str) -> int | None:
        raise NotImplementedError

    def category_get(self, category: str, position: int = 1, batch_size: int | None = 1000,
                     correlation: str | None = None, member: int | None = None,
                     size: int | None = None) -> list[Message]:
        raise NotImplementedError

    def category_head(self, category: str) -> int | None:
        """Highest global position in the category (``None`` when empty).

        Generic version: exponential then binary search with one-message reads, so the number
        of reads grows with log2(head), not with the category's size.
        """
        first = self.category_get(category, position=1, batch_size=1)
        if not first:
            return None
        lo = first[0].global_position  # a position known to hold a message
        step = 1
        hi = None
        while hi is None:  # find a probe with nothing at or after it
            probe = lo + step
            got = self.category_get(category, position=probe, batch_size=1)
            if got:
                lo = got[0].global_position
                step *= 2
            else:
                hi = probe
        # invariant: a message at lo, nothing at >= hi
        while hi - lo > 1:
            mid = (lo + hi) // 2
            got = self.category_get(category, position=mid, batch_size=1)
            if got:
                lo = got[0].global_position
            else:
                hi = mid
        return lo

    def iter_stream(self, stream: str, position: int = 0, global_position: int | None = None,
                    batch_size: int = 1000) -> Iterator[Message]:
        """Every message of a stream from ``position``, paging with ``batch_size``."""
        while True:
            batch = self.stream_get(stream, position, global_position, batch_size)
            yield from batch
            if len(batch) < batch_size:
                return
            position = batch[-1].position + 1
            global_position = None

    def category_pages(self, category: str, position: int = 1, batch_size: int = 1000,
                       correlation: str | None = None, member: int | None = None,
                       size: int | None = None, until: int | None = None
                       ) -> Iterator[tuple[list[Message], int]]:
        """Pages of a category (or a member's share) from ``position``, each with the highest
        global position the read has reached. ``until`` (inclusive) is a snapshot's head: pages
        stop there and messages written after it are left out."""
        while True:
            batch = self.category_get(category, position, batch_size, correlation, member, size)
            if not batch:
                return
            full = len(batch) == batch_size
            last = batch[-1].global_position
            if until is not None and last > until:  # written after the snapshot
                batch = [m for m in batch if m.global_position <= until]
            yield batch, last if until is None else min(last, until)
            if not full or (until is not None and last >= until):
                return
            position = last + 1

    def iter_category(self, category: str, position: int = 1, batch_size: int = 1000,
                      correlation: str | None = None, member: int | None = None,
                      size: int | None = None, until: int | None = None) -> Iterator[Message]:
        """Every message of a category (or a member's share) from ``position``, paging."""
        for batch, _reached in self.category_pages(category, position, batch_size, correlation,
                                                   member, size, until):
            yield from batch

    def close(self) -> None:
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


class StoreExtras:
    """Documentation of the optional methods some stores add (not a base class).

    Both stores:
      list_streams(prefix="", cursor="", limit=100) -> list[dict]   # ns.streams rows
      list_categories() -> list[dict]                               # ns.categories rows
      message_count() -> int
    Remote store only:
      pokes(*, stream=None, category=None, all=False, position=0, member=None, size=None)
          -> Iterator[dict]   # SSE pokes {"stream","position","globalPosition"}, reconnecting
    Local store only:
      import_records(records, *, force=False, atomic=False) -> int   # keeps positions;
          # atomic: the whole import one transaction
      write_batch(msgs, *, progress=None)   # progress: a write --file record, same transaction
      write_progress(file) -> dict | None; save_write_progress(record)   # write --file --resume
      existing_ids(ids) -> set[str]
    Remote store only:
      write_batch(msgs, *, existing_ok=False)   # an id already stored -> AlreadyWritten result
    Errors: a full disk raises errors.DiskFull (a StoreError) from LocalStore writes.
    """
