"""EventoDB's NDJSON export record (PROTOCOL.md section 9), to and from ``Message``.

``{"id":..,"stream":..,"type":..,"pos":0,"gpos":47,"data":{..},"meta":null,"time":".."}`` with the
keys in that order. Unlike EventoDB's Go exporter, ``time`` keeps its fraction (RFC3339Nano), so
an export of a store that keeps sub-second times round-trips exactly; EventoDB's importer accepts
fractions.
"""

from __future__ import annotations

import json

from .message import Message, canonical_json, format_time, parse_time

# what JSONEncoder(ensure_ascii=False).encode does with a str, without its per-call checks
_dump_str = getattr(json.encoder, "c_encode_basestring", None) or json.encoder.encode_basestring

# An export writes the same stream names and types again and again, and messages written in
# one batch share their time: their JSON text is kept (bounded) instead of made per message.
_CACHE_MAX = 50_000
_texts: dict[str, str] = {}
_last_time: list = [None, ""]


def _text(s: str) -> str:
    t = _texts.get(s)
    if t is None:
        if len(_texts) >= _CACHE_MAX:
            _texts.clear()
        t = _texts[s] = _dump_str(s)
    return t


def to_record_line(m: Message) -> str:
    """One export line (no trailing newline)."""
    t = m.time
    last = _last_time
    if t == last[0]:
        when = last[1]
    else:
        when = format_time(t)
        last[0], last[1] = t, when
    texts = _texts
    return '{"id":%s,"stream":%s,"type":%s,"pos":%d,"gpos":%d,"data":%s,"meta":%s,"time":"%s"}' % (
        _dump_str(m.id), texts.get(m.stream_name) or _text(m.stream_name),
        texts.get(m.type) or _text(m.type), m.position, m.global_position, m.data,
        "null" if m.metadata is None else m.metadata, when,
    )


def _int(obj: dict, key: str) -> int:
    v = obj.get(key, 0)
    if isinstance(v, bool) or not isinstance(v, int):
        if isinstance(v, float) and v.is_integer():
            return int(v)
        raise ValueError(f"'{key}' must be an integer")
    return v


def _str(obj: dict, key: str) -> str:
    v = obj.get(key, "")
    if not isinstance(v, str):
        raise ValueError(f"'{key}' must be a string")
    return v


def from_record(obj: object) -> Message:
    """Parse one decoded export record. Raises ``ValueError`` (a wrong type: the server's
    INVALID_JSON; a bad time: INVALID_RECORD)."""
    if not isinstance(obj, dict):
        raise ValueError("record must be a JSON object")
    data = obj.get("data")
    meta = obj.get("meta")
    if data is not None and not isinstance(data, dict):
        raise ValueError("'data' must be an object or null")
    if meta is not None and not isinstance(meta, dict):
        raise ValueError("'meta' must be an object or null")
    t = _str(obj, "time")
    try:
        ns = parse_time(t)
    except ValueError:
        raise ValueError(f"'time' is not RFC 3339: {t!r}") from None
    return Message(
        _str(obj, "id"), _str(obj, "stream"), _str(obj, "type"), _int(obj, "pos"),
        _int(obj, "gpos"), "null" if data is None else canonical_json(data),
        None if meta is None else canonical_json(meta), ns,
    )
