"""Message ids as the EventoDB server handles them: Go ``uuid.Parse`` acceptance (ids are
stored exactly as sent) and UUIDv7 generation for writes without an id."""

from __future__ import annotations

import os
import threading
import time
import uuid

_HEXCHARS = frozenset("0123456789abcdefABCDEF")


def go_uuid_error(s: str) -> str | None:
    """``None`` when Go's ``uuid.Parse`` accepts ``s``, else its error text."""
    n = len(s.encode("utf-8", "surrogateescape"))
    if n == 36:
        body = s
    elif n == 38:
        if s[0] != "{" or s[-1] != "}":
            return "invalid UUID format"
        body = s[1:-1]
    elif n == 45:
        if s[:9].lower() != "urn:uuid:":
            return f"invalid urn prefix: {s[:9]!r}".replace("'", '"')
        body = s[9:]
    elif n == 32:
        return None if all(c in _HEXCHARS for c in s) else "invalid UUID format"
    else:
        return f"invalid UUID length: {n}"
    if len(body) != 36 or any(body[i] != "-" for i in (8, 13, 18, 23)):
        return "invalid UUID format"
    for i, c in enumerate(body):
        if i in (8, 13, 18, 23):
            continue
        if c not in _HEXCHARS:
            return "invalid UUID format"
    return None


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
    return str(uuid.UUID(int=value))
