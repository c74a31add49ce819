"""The ``data:`` payloads of ``/import`` (key order as the Go server writes them)."""

from __future__ import annotations

from .wire import go_escape, jstr


def progress_event(imported: int, gpos: int) -> str:
    return '{"imported":%d,"gpos":%d}' % (imported, gpos)


def done_event(imported: int, elapsed: float) -> str:
    return '{"done":true,"imported":%d,"elapsed":"%.1fs"}' % (imported, elapsed)


def error_event(code: str, message: str, line: int) -> str:
    text = '{"error":%s,"message":%s' % (jstr(code), jstr(message))
    if line:
        text += ',"line":%d' % line
    return go_escape(text + "}")
