"""Message ids as the EventoDB server handles them: Go ``uuid.Parse`` acceptance (ids are
stored exactly as sent) and UUIDv7 generation for writes without an id."""

from __future__ import annotations

import os
import threading
import time

from ..domain.message import uuid_error as go_uuid_error  # noqa: F401  (one check for all)


_pool = bytearray()
_pool_lock = threading.Lock()


def _random10() -> int:
    """10 bytes from os.urandom, drawn from a pool refilled 4 KiB at a time (one getrandom
    call per ~400 ids instead of one per id)."""
    with _pool_lock:
        if len(_pool) < 10:
            _pool.extend(os.urandom(4090))
        chunk = bytes(_pool[-10:])
        del _pool[-10:]
    return int.from_bytes(chunk, "big")


def uuid7() -> str:
    """A random UUIDv7 (RFC 9562), canonical lower case."""
    ms = time.time_ns() // 1_000_000
    rand = _random10()
    rand_a = rand >> 68 & 0xFFF
    rand_b = rand & ((1 << 62) - 1)
    value = (ms & ((1 << 48) - 1)) << 80 | 0x7 << 76 | rand_a << 64 | 0b10 << 62 | rand_b
    return _canonical(value)


def _canonical(value: int) -> str:
    """``str(uuid.UUID(int=value))`` without building the object (a third of the cost)."""
    h = "%032x" % value
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"
