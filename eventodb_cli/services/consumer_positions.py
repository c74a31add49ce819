"""``consume --group NAME``: a member's position kept in the store it reads, as an Eventide
position stream (services/positions.py names it and converts it; this module only plugs it into
the consumer, next to the checkpoint file's ``checkpoints.FileKeeper``).

The consumer keeps "the next global position to read" in memory, moved only past what the handler
has taken (services/delivery.py); a save writes a ``Recorded`` message with the LAST processed
global position (``positions.recorded_from_next``) and the group, member and size in its metadata.

A member whose last position was recorded for another group size refuses to start (exit 2,
nothing handled: ``positions.check_size``), and says how to hand over; ``force_size`` starts it
anyway from that position, with a warning.
"""

from __future__ import annotations

from . import positions as P


class StoreKeeper:
    """A consumer group member's position in the store: ``CATEGORY:position-GROUP-MEMBER``."""

    skip_unchanged = True  # a position already in the store is not written again unchanged
    must_write = False  # ...unless it was recorded for another size (--force-size)

    def __init__(self, store, category: str, group: str, member: int, size: int, *,
                 from_position: int | None = None, force_size: bool = False, log=None):
        P.check_group(group)
        self.store = store
        self.category = category
        self.group = group
        self.member = member
        self.size = size
        self.identifier = P.group_identifier(group, member)
        self.stream = P.position_stream_name(category, self.identifier)
        self.from_position = from_position
        self.force_size = force_size
        self.found: P.Position | None = None
        self._log = log or (lambda text: None)

    @property
    def where(self) -> str:
        return f"position stream {self.stream}"

    def load(self) -> int:
        """The next global position to read: after the last recorded position, or
        ``from_position`` (default 1) when the member has none yet."""
        pos = self.found = P.read_position(self.store, self.category, self.identifier)
        if pos is None:
            return self.from_position if self.from_position is not None else 1
        if self.force_size:
            if pos.size is not None and pos.size != self.size:
                self.must_write = True  # record the size it now runs at, even unmoved
                self._log(f"warning: {self.stream} was recorded for a group of size {pos.size}; "
                          f"starting member {self.member} of {self.size} from it anyway "
                          "(--force-size): streams that moved between members may be skipped "
                          "or handled twice")
        else:
            P.check_size(pos, self.size)
        if self.from_position is not None and self.from_position != pos.next:
            self._log(f"{self.stream} (last processed {pos.position}) wins over "
                      f"--from-position {self.from_position}")
        return max(pos.next, 1)

    def save(self, next_position: int) -> None:
        P.write_position(self.store, self.category, self.identifier,
                         P.recorded_from_next(next_position), group=self.group,
                         member=self.member, size=self.size)
