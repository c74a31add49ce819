"""Consumer-group assignment, bit for bit Message DB's.

``hash64(s)`` is the first 8 bytes of MD5 over the UTF-8 bytes of ``s``, read as a big-endian
signed 64-bit integer (Message DB's ``hash_64``). A stream's member in a group of ``size`` is
``abs(hash64(cardinal_id)) % size``. A stream without an id belongs to no member. An empty
cardinal id (``x-``, ``account-+1``) is hashed as ``''`` like Message DB and EventoDB's Postgres
backend do (EventoDB's Go SQLite backend gives such streams to no member instead).

This module is the one place the assignment is computed: the local store, the services and
``eventodb serve`` all call ``member_for``/``hash64``.
"""

from __future__ import annotations

from hashlib import md5

from .streams import cardinal_id


def hash64(value: str) -> int:
    """Message DB ``hash_64``: signed big-endian int64 of the first 8 MD5 bytes of UTF-8 ``value``."""
    return int.from_bytes(md5(value.encode("utf-8")).digest()[:8], "big", signed=True)


def stream_hash(stream_name: str) -> int | None:
    """``hash64`` of the stream's cardinal id, ``None`` when the stream has no id."""
    cid = cardinal_id(stream_name)
    return None if cid is None else hash64(cid)


def member_of_hash(h: int | None, size: int) -> int | None:
    """The member for a stored cardinal hash (``None`` hash: no member)."""
    return None if h is None else abs(h) % size


def member_for(stream_name: str, size: int) -> int | None:
    """Which member of a group of ``size`` reads ``stream_name`` (``None``: no member)."""
    if size < 1:
        raise ValueError("consumer group size must be >= 1")
    return member_of_hash(stream_hash(stream_name), size)
