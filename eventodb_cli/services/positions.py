"""Consumer positions: in a checkpoint file and in the store, and the one conversion between them.

A position means two different numbers, depending on where it is kept:

- **In a checkpoint file** (``services/checkpoints.py``) it is the NEXT global position to read,
  the seed's ``last globalPosition + 1``: ``{"position": N, "updatedAt": ...}``.
- **In the store** it is Eventide's: a ``Recorded`` message with data ``{"position": P}``, P the
  global position of the LAST message the consumer processed (inclusive), in the position stream
  ``CATEGORY:position-IDENTIFIER``. A member of a consumer group has the identifier
  ``GROUP-MEMBER`` (``billing-0``). A category that already has types gets ``+position``
  (``account:command`` -> ``account:command+position-billing-0``), as Eventide's
  ``Consumer::Postgres::PositionStore::StreamName`` names it. The metadata of our ``Recorded``
  messages says whom the position belongs to: ``{"group": "billing", "member": 0, "size": 3}``;
  Eventide's own carry none, and are read all the same.

This module is the only place that converts between the two (``next_from_recorded`` and
``recorded_from_next``), names position streams and reads or writes ``Recorded`` messages:
consume, lag, the group commands and the scale hand-over all go through it.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Iterator

from ..domain.message import NewMessage, canonical_json
from ..domain.streams import is_category
from ..errors import StoreError, UsageError
from ..store.base import Store

RECORDED = "Recorded"
READ_TYPES = (RECORDED, "Updated")  # Updated: older Eventide consumer-postgres, same data
POSITION_TYPE = "position"
_TYPE_SEP = ":"
_COMPOUND_TYPE_SEP = "+"


# --- names --------------------------------------------------------------------------------------
def _check_category(category: str) -> None:
    if not isinstance(category, str) or not category:
        raise UsageError("category must be a non-empty string")
    if not is_category(category):
        raise UsageError(f"not a category name (it contains '-'): {category!r}")


def position_stream_name(category: str, identifier: str | None) -> str:
    """``account`` + ``billing-0`` -> ``account:position-billing-0``;
    ``account:command`` -> ``account:command+position-billing-0``. Without an identifier the
    stream is the position category itself (what Eventide does without a consumer identifier)."""
    _check_category(category)
    entity, sep, types = category.partition(_TYPE_SEP)
    type_list = types.split(_COMPOUND_TYPE_SEP) if sep else []
    if POSITION_TYPE not in type_list:
        type_list.append(POSITION_TYPE)
    name = entity + _TYPE_SEP + _COMPOUND_TYPE_SEP.join(type_list)
    if identifier is None or identifier == "":
        return name
    return f"{name}-{identifier}"


def parse_position_stream(stream: str) -> tuple[str, str | None] | None:
    """The inverse of ``position_stream_name``: ``(category, identifier)``, or ``None`` when
    ``stream`` is not a position stream. ``account:position-billing-0`` -> (``account``,
    ``billing-0``)."""
    cat, dash, ident = stream.partition("-")
    entity, sep, types = cat.partition(_TYPE_SEP)
    if not sep:
        return None
    type_list = types.split(_COMPOUND_TYPE_SEP)
    if POSITION_TYPE not in type_list:
        return None
    type_list = [t for t in type_list if t != POSITION_TYPE]
    category = entity + (_TYPE_SEP + _COMPOUND_TYPE_SEP.join(type_list) if type_list else "")
    return category, (ident if dash else None)


def is_position_category(category: str) -> bool:
    """``account:position``, ``account:command+position``: a category of position streams."""
    return "-" not in category and parse_position_stream(category) is not None


def group_identifier(group: str, member: int) -> str:
    """The identifier of member ``member`` of group ``group``: ``billing-0``."""
    check_group(group)
    if isinstance(member, bool) or not isinstance(member, int) or member < 0:
        raise UsageError(f"member must be a non-negative integer, not {member!r}")
    return f"{group}-{member}"


def split_group_identifier(identifier: str | None) -> tuple[str, int] | None:
    """``billing-0`` -> (``billing``, 0); ``None`` when the identifier does not end in
    ``-DIGITS`` (an Eventide consumer's own identifier)."""
    if not identifier:
        return None
    group, dash, member = identifier.rpartition("-")
    if not dash or not group or not member.isascii() or not member.isdigit():
        return None
    return group, int(member)


def check_group(group: str) -> None:
    if not isinstance(group, str) or not group or group != group.strip():
        raise UsageError(f"group must be a non-empty name without surrounding spaces: {group!r}")


# --- the one conversion -------------------------------------------------------------------------
def next_from_recorded(p: int) -> int:
    """Store form (last processed) -> file form (next to read)."""
    return p + 1


def recorded_from_next(n: int) -> int:
    """File form (next to read) -> store form (last processed). Next 1 -> 0: nothing processed."""
    return n - 1


# --- reading and writing ------------------------------------------------------------------------
@dataclass
class Position:
    position: int  # global position of the last message processed (Eventide's meaning)
    group: str | None = None
    member: int | None = None
    size: int | None = None
    time_ns: int | None = None  # when the Recorded message was written
    stream: str | None = None
    global_position: int | None = None  # of the Recorded message itself

    @property
    def next(self) -> int:
        """The next global position to read (the checkpoint file's meaning)."""
        return next_from_recorded(self.position)


def _position_from(msg) -> Position:
    try:
        data = msg.data_obj
    except ValueError:
        data = None
    p = data.get("position") if isinstance(data, dict) else None
    if isinstance(p, float) and p.is_integer():
        p = int(p)  # a JSON 5.0 from another writer
    if isinstance(p, bool) or not isinstance(p, int) or p < 0:
        raise StoreError(f"position stream {msg.stream_name}: the last {msg.type} message "
                         f"(global position {msg.global_position}) has no valid "
                         f"'position': {msg.data}")
    try:
        meta = msg.metadata_obj
    except ValueError:
        meta = None
    meta = meta if isinstance(meta, dict) else {}
    group = meta.get("group")
    member, size = meta.get("member"), meta.get("size")
    return Position(
        p,
        group if isinstance(group, str) else None,
        member if isinstance(member, int) and not isinstance(member, bool) else None,
        size if isinstance(size, int) and not isinstance(size, bool) else None,
        msg.time, msg.stream_name, msg.global_position)


def read_position(store: Store, category: str, identifier: str | None) -> Position | None:
    """The last position of ``CATEGORY:position-IDENTIFIER``, or ``None``: its last message when
    that is a ``Recorded`` (or ``Updated``, what consumer-postgres before ``Recorded`` wrote, with
    the same data), else its last ``Recorded`` (other types are ignored)."""
    stream = position_stream_name(category, identifier)
    msg = store.stream_last(stream)
    if msg is not None and msg.type not in READ_TYPES:
        msg = store.stream_last(stream, type=RECORDED)
    return None if msg is None else _position_from(msg)


def write_position(store: Store, category: str, identifier: str | None, position: int, *,
                   group: str | None = None, member: int | None = None,
                   size: int | None = None) -> Position:
    """Append a ``Recorded`` message with ``{"position": position}`` (last processed). The history
    of positions stays in the stream; readers take the last one."""
    if isinstance(position, bool) or not isinstance(position, int) or position < 0:
        raise UsageError(f"a position must be a non-negative integer, not {position!r}")
    stream = position_stream_name(category, identifier)
    meta = {k: v for k, v in (("group", group), ("member", member), ("size", size))
            if v is not None}
    msg = NewMessage(stream, RECORDED, canonical_json({"position": position}),
                     canonical_json(meta) if meta else None, str(uuid.uuid4()))
    res = store.write(msg)
    return Position(position, group, member, size, None, stream, res.global_position)


# --- group size ---------------------------------------------------------------------------------
class SizeMismatch(UsageError):
    """A member's last position was recorded for another group size."""

    def __init__(self, message: str, *, recorded: int, size: int):
        super().__init__(message, details={"recordedSize": recorded, "size": size})
        self.recorded = recorded
        self.size = size


def check_size(pos: Position | None, size: int) -> None:
    """Refuse to start a member at ``size`` when its position was recorded for another size.
    No position, or one without a size (Eventide's own), is accepted."""
    if pos is None or pos.size is None or pos.size == size:
        return
    parsed = parse_position_stream(pos.stream) if pos.stream else None
    category = parsed[0] if parsed else "CATEGORY"
    group = pos.group or (split_group_identifier(parsed[1])[0]
                          if parsed and split_group_identifier(parsed[1]) else "NAME")
    raise SizeMismatch(
        f"{pos.stream or 'the position'} was recorded for a group of size {pos.size}, not "
        f"{size}: hand the positions over first with `eventodb simulate-scale {category} "
        f"--from {pos.size} --to {size} --group {group} --execute`, or start with --force-size",
        recorded=pos.size, size=size)


# --- discovery ----------------------------------------------------------------------------------
_PAGE = 1000


def list_position_streams(store: Store, category: str | None = None
                          ) -> Iterator[tuple[str, str | None, str]]:
    """Every position stream in the store (or of ``category`` only) as ``(category, identifier,
    stream)``, found through the categories named ``...:position`` or ``...+position``.

    Uses the store's ``list_categories`` and ``list_streams`` (StoreExtras). A store without
    ``list_streams`` is read through the position category itself (``category_get``, every
    store has it); one without ``list_categories`` can only answer for a given ``category``."""
    if category is not None:
        pcats = [position_stream_name(category, None)]
    else:
        lister = getattr(store, "list_categories", None)
        if lister is None:
            raise UsageError(f"this target ({store.kind}) cannot list its categories: name the "
                             f"category (group describe CATEGORY --group NAME --size N)")
        pcats = [row.get("category") for row in lister() if isinstance(row, dict)]
        pcats = [c for c in pcats if isinstance(c, str) and is_position_category(c)]
    for pcat in pcats:
        for stream in _streams_of(store, pcat):
            parsed = parse_position_stream(stream)
            if parsed is not None:
                yield parsed[0], parsed[1], stream


def _streams_of(store: Store, pcat: str) -> Iterator[str]:
    """The streams of category ``pcat``, in name order."""
    lister = getattr(store, "list_streams", None)
    if lister is None:
        seen = sorted({m.stream_name for m in store.iter_category(pcat)})
        yield from seen
        return
    cursor = ""
    while True:
        rows = lister(prefix=pcat, cursor=cursor, limit=_PAGE)
        for r in rows:
            stream = r.get("stream") if isinstance(r, dict) else None
            # a server's prefix match is case-insensitive and has wildcards: filter exactly
            if isinstance(stream, str) and stream.partition("-")[0] == pcat:
                yield stream
        if len(rows) < _PAGE:
            return
        cursor = rows[-1]["stream"]
