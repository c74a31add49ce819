"""Integrity checksums (xxhash): one per stored row, recorded at write time.

Partitioning never uses these; they let ``store check`` and ``import --verify`` prove that
nothing was lost or changed.
"""

from __future__ import annotations

from xxhash import xxh3_64_intdigest

_SEP = "\x1f"


def row_checksum(id: str, stream_name: str, type: str, position: int, global_position: int,
                 data: str, metadata: str | None, time: int) -> int:
    """xxh3-64 of the row's canonical fields, as a signed 64-bit integer (fits SQLite INTEGER)."""
    text = _SEP.join((id, stream_name, type, str(position), str(global_position), data,
                      "\x00" if metadata is None else metadata, str(time)))
    v = xxh3_64_intdigest(text.encode("utf-8"))
    return v - (1 << 64) if v >= (1 << 63) else v
