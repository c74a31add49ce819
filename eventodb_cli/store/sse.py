"""Server-sent events: a line parser (no I/O) for ``/subscribe`` pokes and ``/import`` progress.

EventoDB sends ``event: poke`` + ``data: {json}`` + a blank line per poke, ``: ready`` comments,
and ``/import`` sends bare ``data: {json}`` events (PROTOCOL.md sections 7 and 8). The parser
follows the SSE rules that matter here: ``field: value`` (one optional space after the colon),
lines starting with ``:`` are comments, multi-line ``data`` is joined with newlines, an event is
dispatched at a blank line, and an event cut off before its blank line is dropped.
"""

from __future__ import annotations

import json
from typing import Iterable, Iterator, NamedTuple


class Event(NamedTuple):
    event: str | None  # the ``event:`` field, None when absent ("message")
    data: str


def parse_events(lines: Iterable[str]) -> Iterator[Event]:
    """Events from SSE lines (without their line endings)."""
    name: str | None = None
    data: list[str] = []
    for line in lines:
        if line.endswith("\r"):
            line = line[:-1]
        if not line:
            if data:
                yield Event(name, "\n".join(data))
            name, data = None, []
            continue
        if line.startswith(":"):
            continue
        field, sep, value = line.partition(":")
        if sep and value.startswith(" "):
            value = value[1:]
        if field == "event":
            name = value
        elif field == "data":
            data.append(value)
        # id:, retry: and unknown fields are ignored (EventoDB sends none)


class BadEvent(ValueError):
    """An event whose data is not the JSON object it should be."""


def event_json(ev: Event) -> dict:
    try:
        obj = json.loads(ev.data)
    except ValueError as e:
        raise BadEvent(f"event data is not JSON ({e}): {ev.data[:120]!r}") from None
    if not isinstance(obj, dict):
        raise BadEvent(f"event data is not a JSON object: {ev.data[:120]!r}")
    return obj


def poke_from(ev: Event) -> dict | None:
    """A poke ``{"stream","position","globalPosition"}`` (that key order, other keys after), or
    None for an event that is not a poke."""
    if ev.event not in (None, "poke", "message"):
        return None
    obj = event_json(ev)
    pos, gpos = obj.get("position"), obj.get("globalPosition")
    if not isinstance(pos, int) or isinstance(pos, bool) or not isinstance(gpos, int) \
            or isinstance(gpos, bool) or not isinstance(obj.get("stream"), str):
        raise BadEvent(f"poke without stream/position/globalPosition: {ev.data[:120]!r}")
    out = {"stream": obj["stream"], "position": pos, "globalPosition": gpos}
    for k, v in obj.items():
        if k not in out:
            out[k] = v
    return out
