"""Output formats: ``table`` (rich, only on a terminal), ``json``, ``ndjson``, ``raw``.

Machine-readable output is a contract (README "Output formats"). rich is imported only when a
table is drawn.
"""

from __future__ import annotations

import json
import os
import sys
from typing import TYPE_CHECKING, Any, Iterable, Sequence

if TYPE_CHECKING:
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
    """A rich console (progress bars, other commands' tables). It parses no markup and escapes
    control characters in every string it renders (``safe_text``); a reader that goes away raises BrokenPipeError (cli/main.py
    ends the command quietly), not rich's own ``SystemExit(1)``."""
    from rich.console import Console

    class _Console(Console):
        def on_broken_pipe(self) -> None:
            self.quiet = True
            raise BrokenPipeError(32, "Broken pipe")

        def render_str(self, text: str, **kw):
            # every string a table or print shows: no markup parsed, control characters escaped
            return super().render_str(safe_text(text), **kw)

    stream = sys.stderr if stderr else sys.stdout
    # on a terminal rich fits the screen; into a pipe or file a table keeps its natural width
    width = None if stream.isatty() else 10_000
    return _Console(stderr=stderr, no_color=no_color(), highlight=False, soft_wrap=False,
                    width=width, markup=False)


# --- what a terminal is shown -------------------------------------------------------------------
# Control characters (ESC, CR, BEL, C1, bidi overrides, line separators) in names or data would
# drive the terminal; they are shown escaped (\x1b, \u202e) instead, everything else as written.
_INVISIBLE = [*range(0x00, 0x20), 0x7F, *range(0x80, 0xA0), 0xAD, 0x061C, 0x180E,
              *range(0x200B, 0x2010), *range(0x2028, 0x202F), *range(0x2060, 0x2070), 0xFEFF,
              *range(0xFFF9, 0xFFFC)]
_ESCAPES = {c: (f"\\x{c:02x}" if c < 0x100 else f"\\u{c:04x}") for c in _INVISIBLE}
_ESCAPES.update({0x09: "\\t", 0x0A: "\\n", 0x0D: "\\r"})


def safe_text(text: str) -> str:
    """``text`` as it may reach a terminal: control and invisible format characters escaped
    (``\x1b``, ``\n``, ``\u202e``), everything else as written (no markup is ever parsed)."""
    if text.isascii() and text.isprintable():
        return text
    out = text.translate(_ESCAPES)
    if not out.isprintable():  # lone surrogates and other unprintable code points
        out = "".join(ch if ch.isprintable() or ch == " " else
                      (f"\\u{ord(ch):04x}" if ord(ch) < 0x10000 else f"\\U{ord(ch):08x}")
                      for ch in out)
    return out


def markup_safe(text: str) -> str:
    """``safe_text`` with rich markup escaped: for data printed through a rich console."""
    from rich.markup import escape

    return escape(safe_text(text))


def cell_width(text: str) -> int:
    """Terminal columns ``text`` takes (wide East Asian characters 2, combining marks 0)."""
    if text.isascii():
        return len(text)
    import unicodedata

    w = 0
    for ch in text:
        if unicodedata.combining(ch):
            continue
        w += 2 if unicodedata.east_asian_width(ch) in "WF" else 1
    return w


def _cut(text: str, width: int) -> str:
    """``text`` cut to ``width`` terminal columns, with an ellipsis when cut."""
    if cell_width(text) <= width:
        return text
    out, w = [], 0
    for ch in text:
        cw = cell_width(ch)
        if w + cw > width - 1:
            break
        out.append(ch)
        w += cw
    return "".join(out) + "…"


class TableWriter:
    """A table that streams: column widths come from the first page of rows and only grow after
    it, so the first rows are shown at once and memory stays flat however many rows follow.
    Cells are shown as written (no markup) with control characters escaped; on a terminal a
    line is cut at the screen width."""

    PAGE = 100

    def __init__(self, columns: Sequence[str], *, right: Sequence[str] = (),
                 title: str | None = None, flex: str | None = None):
        self.columns = list(columns)
        self.right = [c in right for c in self.columns]
        # on a terminal the ``flex`` column (message data) gives up width so the row fits
        self.flex = self.columns.index(flex) if flex in self.columns else None
        self.flex_max: int | None = None
        self.title = title
        self.out = _out()
        self.tty = self.out.isatty()
        self.screen = None
        if self.tty:
            import shutil

            self.screen = shutil.get_terminal_size((10_000, 24)).columns
        self.widths: list[int] | None = None
        self.page: list[list[str]] = []
        self.rows = 0

    def add(self, cells: Sequence[Any]) -> None:
        row = [safe_text(c if isinstance(c, str) else str(c)) for c in cells]
        self.rows += 1
        if self.widths is None:
            self.page.append(row)
            if len(self.page) >= self.PAGE:
                self._start()
        else:
            self._line(row)

    def _start(self) -> None:
        self.widths = [cell_width(c) for c in self.columns]
        for row in self.page:
            self.widths = [max(w, cell_width(c)) for w, c in zip(self.widths, row)]
        if self.screen and self.flex is not None:
            others = sum(w for i, w in enumerate(self.widths) if i != self.flex)
            room = self.screen - 1 - others - 2 * (len(self.widths) - 1)
            if room < self.widths[self.flex]:
                self.flex_max = max(room, len(self.columns[self.flex]), 8)
                self.widths[self.flex] = self.flex_max
        if self.title:
            self.out.write(safe_text(self.title) + "\n")
        self._line(self.columns, header=True)
        for row in self.page:
            self._line(row)
        self.page = []

    def _line(self, row: Sequence[str], header: bool = False) -> None:
        parts = []
        last = len(row) - 1
        for i, (cell, w) in enumerate(zip(row, self.widths)):
            if i == self.flex and self.flex_max is not None:
                cell = _cut(cell, self.flex_max)
            cw = cell_width(cell)
            if cw > w:
                self.widths[i] = w = cw
            pad = " " * (w - cw)
            if self.right[i]:
                parts.append(pad + cell)
            else:
                parts.append(cell if i == last else cell + pad)
        line = "  ".join(parts)
        if self.screen:
            line = _cut(line, self.screen)
        if header and self.tty and not no_color():
            line = f"\x1b[1m{line}\x1b[0m"
        self.out.write(line + "\n")

    def close(self, empty: str | None = None) -> int:
        """Write what is left; ``empty`` is shown instead of a table without rows."""
        if self.widths is None:
            if not self.page and empty is not None:
                self.out.write(empty + "\n")
                return 0
            self._start()
        return self.rows


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
        from .domain.message import Message

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
        n = _message_table(messages, wire)
    return n


def _message_table(messages: Iterable[Message], wire: str) -> int:
    cat = wire == "category"
    cols = ["gpos", "stream", "pos", "type", "data", "time"] if cat else \
        ["gpos", "pos", "type", "data", "time"]
    t = TableWriter(cols, right=("gpos", "pos"), flex="data")
    for m in messages:
        if cat:
            t.add((str(m.global_position), m.stream_name, str(m.position), m.type,
                   _truncate(m.data), m.time_str))
        else:
            t.add((str(m.global_position), str(m.position), m.type, _truncate(m.data),
                   m.time_str))
    return t.close(empty="(no messages)")


def emit_message_or_null(m: Message | None, fmt: str, *, wire: str = "stream") -> None:
    """``stream last``: the message object, or ``null``."""
    if fmt in ("json", "ndjson"):
        _out().write(("null" if m is None else m.to_json()) + "\n")
    elif fmt == "raw":
        from .domain.message import Message

        conv = Message.to_category_wire if wire == "category" else Message.to_stream_wire
        _out().write(("null" if m is None else conv(m)) + "\n")
    elif m is None:
        _out().write("(no message)\n")
    else:
        _message_table([m], "category")


# --- generic values and rows --------------------------------------------------------------------
def emit_value(value: Any, fmt: str, *, text: str | None = None) -> None:
    """A single value (number, object, null). Tables print ``text`` (or the value) plainly."""
    if fmt in ("json", "ndjson", "raw"):
        _out().write(dumps(value) + "\n")
    else:
        _out().write(safe_text(text if text is not None else ("" if value is None else str(value)))
                     + "\n")


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
        t = None
        for r in rows:
            if t is None:
                t = TableWriter(list(columns or r.keys()), title=title)
            t.add(["-" if r.get(col) is None else _truncate(_cell(r.get(col)))
                   for col in t.columns])
        if t is None:
            t = TableWriter(list(columns or []), title=title)
        t.close()


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
        keys = [safe_text(k) for k in obj]
        width = max((cell_width(k) for k in keys), default=0)
        for k, v in zip(keys, obj.values()):
            pad = " " * (width - cell_width(k))
            _out().write(f"{k}{pad}  {'-' if v is None else safe_text(_cell(v))}\n")
