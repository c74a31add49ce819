"""Output formats: ``table`` (rich, only on a terminal), ``json``, ``ndjson``, ``raw``.

Machine-readable output is a contract (README "Output formats"). rich is imported only when a
table is drawn.
"""

from __future__ import annotations

import json
import os
import sys
from typing import Any, Iterable, Sequence

from .domain.message import Message

FORMATS = ("table", "json", "ndjson", "raw")


def resolve_format(fmt: str | None) -> str:
    """``None`` -> a table on a terminal, ``ndjson`` when stdout is not a terminal."""
    if fmt:
        return fmt
    return "table" if sys.stdout.isatty() else "ndjson"


def _out():
    return sys.stdout


def dumps(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def quiet() -> bool:
    """``--quiet`` / ``EVENTODB_QUIET=1``: no progress bars or notes on stderr."""
    return os.environ.get("EVENTODB_QUIET") == "1"


def show_progress() -> bool:
    """Progress bars only on a terminal stderr, and not with --quiet."""
    return sys.stderr.isatty() and not quiet()


def no_color() -> bool:
    return bool(os.environ.get("NO_COLOR")) or os.environ.get("EVENTODB_NO_COLOR") == "1"


def console(stderr: bool = False):
    from rich.console import Console

    stream = sys.stderr if stderr else sys.stdout
    # on a terminal rich fits the screen; into a pipe or file a table keeps its natural width
    width = None if stream.isatty() else 10_000
    return Console(stderr=stderr, no_color=no_color(), highlight=False, soft_wrap=False,
                   width=width)


def _truncate(text: str, width: int = 60) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"


# --- messages -----------------------------------------------------------------------------------
def emit_messages(messages: Iterable[Message], fmt: str, *, wire: str = "category") -> int:
    """Write messages in ``fmt``; ``wire`` picks the raw array form (``stream``/``category``).
    Returns how many were written."""
    out = _out()
    n = 0
    if fmt == "ndjson":
        for m in messages:
            out.write(m.to_json() + "\n")
            n += 1
    elif fmt == "raw":
        conv = Message.to_category_wire if wire == "category" else Message.to_stream_wire
        for m in messages:
            out.write(conv(m) + "\n")
            n += 1
    elif fmt == "json":
        out.write("[")
        for m in messages:
            out.write(("\n" if n == 0 else ",\n") + m.to_json())
            n += 1
        out.write("\n]\n" if n else "]\n")
    else:
        rows = list(messages)
        n = len(rows)
        _message_table(rows, wire)
    return n


def _message_table(rows: Sequence[Message], wire: str) -> None:
    from rich.table import Table

    t = Table(box=None, header_style="bold", pad_edge=False)
    t.add_column("gpos", justify="right")
    if wire == "category":
        t.add_column("stream")
    t.add_column("pos", justify="right")
    t.add_column("type")
    t.add_column("data", overflow="ellipsis", no_wrap=True)
    t.add_column("time")
    for m in rows:
        cells = [str(m.global_position)]
        if wire == "category":
            cells.append(m.stream_name)
        cells += [str(m.position), m.type, _truncate(m.data), m.time_str]
        t.add_row(*cells)
    c = console()
    if rows:
        c.print(t)
    else:
        c.print("(no messages)", style="dim")


def emit_message_or_null(m: Message | None, fmt: str, *, wire: str = "stream") -> None:
    """``stream last``: the message object, or ``null``."""
    if fmt in ("json", "ndjson"):
        _out().write(("null" if m is None else m.to_json()) + "\n")
    elif fmt == "raw":
        conv = Message.to_category_wire if wire == "category" else Message.to_stream_wire
        _out().write(("null" if m is None else conv(m)) + "\n")
    elif m is None:
        console().print("(no message)", style="dim")
    else:
        _message_table([m], "category")


# --- generic values and rows --------------------------------------------------------------------
def emit_value(value: Any, fmt: str, *, text: str | None = None) -> None:
    """A single value (number, object, null). Tables print ``text`` (or the value) plainly."""
    if fmt in ("json", "ndjson", "raw"):
        _out().write(dumps(value) + "\n")
    else:
        _out().write((text if text is not None else ("" if value is None else str(value))) + "\n")


def emit_rows(rows: Iterable[dict], fmt: str, columns: Sequence[str] | None = None,
              *, title: str | None = None) -> None:
    """A list of objects: ndjson/raw one per line, json one array, table with ``columns``."""
    out = _out()
    if fmt in ("ndjson", "raw"):
        for r in rows:
            out.write(dumps(r) + "\n")
    elif fmt == "json":
        rows = list(rows)
        out.write(dumps(rows) + "\n")
    else:
        from rich.table import Table

        rows = list(rows)
        cols = list(columns or (rows[0].keys() if rows else []))
        t = Table(box=None, header_style="bold", pad_edge=False, title=title)
        for col in cols:
            t.add_column(col)
        for r in rows:
            t.add_row(*["-" if r.get(col) is None else _truncate(_cell(r.get(col)))
                        for col in cols])
        console().print(t)


def _cell(v: Any) -> str:
    if isinstance(v, (dict, list)):
        return dumps(v)
    if isinstance(v, bool):
        return "yes" if v else "no"
    return str(v)


def emit_object(obj: dict, fmt: str) -> None:
    """One object: json/ndjson one line; a table shows key/value pairs."""
    if fmt in ("json", "ndjson", "raw"):
        _out().write(dumps(obj) + "\n")
    else:
        width = max((len(k) for k in obj), default=0)
        for k, v in obj.items():
            _out().write(f"{k.ljust(width)}  {'-' if v is None else _cell(v)}\n")
