"""Which member owns a stream, and why: the rows of ``eventodb assign``."""

from __future__ import annotations

from ..domain.hashing import hash64, member_of_hash
from ..domain.streams import cardinal_id, category, stream_id


def explain(stream_name: str, size: int) -> dict:
    cid = cardinal_id(stream_name)
    h = None if cid is None else hash64(cid)
    return {
        "stream": stream_name,
        "category": category(stream_name),
        "id": stream_id(stream_name),
        "cardinalId": cid,
        "hash64": None if h is None else str(h),
        "size": size,
        "member": member_of_hash(h, size),
    }
