"""Messages and their forms: the wire arrays, the JSON object, the write request.

A read ``Message`` keeps ``data``/``metadata`` as canonical JSON text (keys sorted, compact, UTF-8
as is), so renderers splice it into output without decoding it. ``time`` is integer nanoseconds
since the Unix epoch (UTC); it is written as RFC 3339 with up to nine fraction digits, trailing
zeros removed (Go's RFC3339Nano, the server's format).
"""

from __future__ import annotations

import json
import re
from datetime import datetime, timezone
from functools import lru_cache
from typing import Any, NamedTuple

from .strictjson import check_value

# allow_nan=False: a NaN or an infinity built in Python raises instead of becoming output that
# is not JSON (strictjson keeps them out of parsed input; this keeps them out of everything else)
_dumps = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), sort_keys=True,
                          allow_nan=False).encode
_dump_str = json.JSONEncoder(ensure_ascii=False).encode


def _parsed_dumps():
    """``_dumps`` for values that came out of a JSON parser (never circular): the same C
    encoder ``_dumps`` builds on every call, built once and without the circularity check,
    about 3x faster per message and byte-identical (one encoder, the same options)."""
    from json.encoder import c_make_encoder, encode_basestring

    if c_make_encoder is None:  # a Python without the C accelerator
        return _dumps
    enc = c_make_encoder(None, json.JSONEncoder().default, encode_basestring, None, ":", ",",
                         True, False, False)
    join = "".join
    return lambda value: join(enc(value, 0))


_dumps_parsed = _parsed_dumps()


def canonical_json(value: Any) -> str:
    """Canonical JSON text: sorted keys, no spaces, UTF-8 characters kept."""
    return _dumps(value)


class Message(NamedTuple):
    id: str
    stream_name: str
    type: str
    position: int
    global_position: int
    data: str  # canonical JSON text
    metadata: str | None  # canonical JSON text, or None when the write left it out
    time: int  # nanoseconds since the epoch, UTC

    @property
    def data_obj(self) -> Any:
        return json.loads(self.data)

    @property
    def metadata_obj(self) -> Any:
        return None if self.metadata is None else json.loads(self.metadata)

    @property
    def time_str(self) -> str:
        return format_time(self.time)

    # --- serialised forms -------------------------------------------------------------------
    def to_json(self) -> str:
        """The JSON object form (``--format json|ndjson``)."""
        return (
            '{"id":%s,"streamName":%s,"type":%s,"position":%d,"globalPosition":%d,'
            '"data":%s,"metadata":%s,"time":"%s"}'
            % (
                _dump_str(self.id),
                _dump_str(self.stream_name),
                _dump_str(self.type),
                self.position,
                self.global_position,
                self.data,
                "null" if self.metadata is None else self.metadata,
                format_time(self.time),
            )
        )

    def to_stream_wire(self) -> str:
        """``[id, type, position, globalPosition, data, metadata, time]`` (stream.get item)."""
        return '[%s,%s,%d,%d,%s,%s,"%s"]' % (
            _dump_str(self.id),
            _dump_str(self.type),
            self.position,
            self.global_position,
            self.data,
            "null" if self.metadata is None else self.metadata,
            format_time(self.time),
        )

    def to_category_wire(self) -> str:
        """``[id, streamName, type, position, globalPosition, data, metadata, time]``."""
        return '[%s,%s,%s,%d,%d,%s,%s,"%s"]' % (
            _dump_str(self.id),
            _dump_str(self.stream_name),
            _dump_str(self.type),
            self.position,
            self.global_position,
            self.data,
            "null" if self.metadata is None else self.metadata,
            format_time(self.time),
        )

    def to_dict(self) -> dict:
        return {
            "id": self.id,
            "streamName": self.stream_name,
            "type": self.type,
            "position": self.position,
            "globalPosition": self.global_position,
            "data": self.data_obj,
            "metadata": self.metadata_obj,
            "time": format_time(self.time),
        }

    @classmethod
    def from_stream_wire(cls, stream_name: str, item: list) -> "Message":
        mid, mtype, pos, gpos, data, meta, t = item[:7]
        return cls(mid, stream_name, mtype, int(pos), int(gpos), _dumps_parsed(data),
                   None if meta is None else _dumps_parsed(meta), parse_time(t))

    @classmethod
    def from_category_wire(cls, item: list) -> "Message":
        mid, stream, mtype, pos, gpos, data, meta, t = item[:8]
        return cls(mid, stream, mtype, int(pos), int(gpos), _dumps_parsed(data),
                   None if meta is None else _dumps_parsed(meta), parse_time(t))


# --- time -------------------------------------------------------------------------------------
_NS = 1_000_000_000


@lru_cache(maxsize=4096)
def _second(secs: int) -> str:
    return datetime.fromtimestamp(secs, tz=timezone.utc).strftime("%Y-%m-%dT%H:%M:%S")


def format_time(ns: int) -> str:
    """RFC 3339 UTC with up to nine fraction digits, trailing zeros removed (Go RFC3339Nano).

    Messages written together share their second, so its text is cached (a strftime per
    message was half the cost of an export)."""
    secs, frac = divmod(ns, _NS)
    base = _second(secs)
    if frac:
        return base + "." + ("%09d" % frac).rstrip("0") + "Z"
    return base + "Z"


_TIME_RE = re.compile(
    r"^(\d{4})-(\d{2})-(\d{2})[Tt ](\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,9}))?([Zz]|[+-]\d{2}:\d{2})$"
)


@lru_cache(maxsize=4096)
def _utc_second(y: str, mo: str, d: str, h: str, mi: str, s: str) -> int:
    """Seconds since the epoch of a UTC wall-clock time (messages read together share it)."""
    dt = datetime(int(y), int(mo), int(d), int(h), int(mi), int(s), tzinfo=timezone.utc)
    return int(dt.timestamp())


def parse_time(text: str) -> int:
    """Parse RFC 3339 (0-9 fraction digits, ``Z`` or an offset) into UTC nanoseconds."""
    m = _TIME_RE.match(text)
    if not m:
        raise ValueError(f"not an RFC 3339 time: {text!r}")
    y, mo, d, h, mi, s, frac, tz = m.groups()
    if tz in ("Z", "z"):  # the server's own form: the second's value is cached
        ns = _utc_second(y, mo, d, h, mi, s) * _NS
        return ns + int(frac.ljust(9, "0")) if frac else ns
    else:
        sign = 1 if tz[0] == "+" else -1
        from datetime import timedelta

        tzinfo = timezone(sign * timedelta(hours=int(tz[1:3]), minutes=int(tz[4:6])))
    dt = datetime(int(y), int(mo), int(d), int(h), int(mi), int(s), tzinfo=tzinfo)
    ns = int(dt.timestamp()) * _NS
    if frac:
        ns += int(frac.ljust(9, "0"))
    return ns


# --- writes -----------------------------------------------------------------------------------
class NewMessage(NamedTuple):
    """A message to write. ``data``/``metadata`` are canonical JSON text."""

    stream_name: str
    type: str
    data: str
    metadata: str | None = None
    id: str | None = None
    expected_version: int | None = None


_HEXCHARS = frozenset("0123456789abcdefABCDEF")


def uuid_error(s: str) -> str | None:
    """``None`` when Go's ``uuid.Parse`` (what the EventoDB server runs) accepts ``s``, else its
    error text: 36-char canonical, ``{...}``, ``urn:uuid:...`` or 32 hex digits, either case."""
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
        if i not in (8, 13, 18, 23) and c not in _HEXCHARS:
            return "invalid UUID format"
    return None


def check_uuid(value: str) -> str:
    """Accept exactly what the server's ``uuid.Parse`` accepts; return the id as given."""
    err = uuid_error(value) if isinstance(value, str) else "invalid UUID format"
    if err:
        raise ValueError(f"invalid UUID format: {value!r} ({err})")
    return value


def new_message(
    stream_name: Any,
    type: Any,
    data: Any = None,
    metadata: Any = None,
    id: Any = None,
    expected_version: Any = None,
    *,
    has_metadata: bool | None = None,
) -> NewMessage:
    """Validate a write the way the server does and return a ``NewMessage``.

    ``data`` defaults to ``{}``; ``metadata`` left out stays ``None`` (stored as null).
    Raises ``ValueError`` with the server's wording on bad input.
    """
    if not isinstance(stream_name, str) or not stream_name:
        raise ValueError("streamName must be a non-empty string")
    if not isinstance(type, str) or not type:
        raise ValueError("message.type must be a non-empty string")
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ValueError("message.data must be an object")
    if metadata is not None and not isinstance(metadata, dict):
        raise ValueError("message.metadata must be an object")
    # values built in Python (not parsed by strictjson): no NaN, infinity or lone surrogate
    for what, value in (("message.data", data), ("message.metadata", metadata)):
        try:
            check_value(value)
        except ValueError as e:
            raise ValueError(f"{what}: {e}") from None
    if id is not None:
        if not isinstance(id, str):
            raise ValueError("options.id must be a string")
        id = check_uuid(id) if id else None
    if expected_version is not None:
        if isinstance(expected_version, bool) or not isinstance(expected_version, (int, float)):
            raise ValueError("options.expectedVersion must be a number")
        expected_version = int(expected_version)
        if expected_version < -1:
            raise ValueError("expectedVersion must be >= -1")
    return NewMessage(
        stream_name,
        type,
        canonical_json(data),
        None if metadata is None else canonical_json(metadata),
        id,
        expected_version,
    )


_MISSING = object()


def new_message_from_record(obj: Any) -> NewMessage:
    """An NDJSON write record: ``stream``, ``type``, ``data``, optional ``metadata``, ``id``,
    ``expectedVersion``."""
    if type(obj) is dict and len(obj) <= 3:  # fast path: {"stream", "type", "data"}
        stream, mtype, data = obj.get("stream"), obj.get("type"), obj.get("data", _MISSING)
        if (type(stream) is str and stream and type(mtype) is str and mtype
                and type(data) is dict and len(obj) == 3):
            return NewMessage(stream, mtype, _dumps_parsed(data))
    if not isinstance(obj, dict):
        raise ValueError("record must be a JSON object")
    if "stream" not in obj:
        raise ValueError("record has no 'stream'")
    return new_message(
        obj.get("stream"),
        obj.get("type"),
        obj.get("data"),
        obj.get("metadata"),
        obj.get("id"),
        obj.get("expectedVersion"),
    )


class WriteResult(NamedTuple):
    position: int
    global_position: int

    def to_json(self) -> str:
        return '{"position":%d,"globalPosition":%d}' % (self.position, self.global_position)


class AlreadyWritten(WriteResult):
    """A write found already in the store (a resumed ``write --file`` re-sending a line that an
    interrupted run wrote). ``position``/``global_position`` are -1 when not looked up."""

    __slots__ = ()
