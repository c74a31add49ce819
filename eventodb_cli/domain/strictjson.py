"""Strict JSON in: the one parser every path that lets a JSON value into a store goes through.

Python's ``json`` accepts what no other parser of the Message DB family does: ``NaN``,
``Infinity`` and ``-Infinity``, numbers that overflow a double (``1e999`` becomes ``inf``) and
lone UTF-16 surrogates (``"\\ud800"``), none of which can be written back out as JSON that Go or
JavaScript parse. ``loads`` refuses all of them with ``StrictJSONError`` (a ``ValueError``), so a
command line (``--data``, ``--metadata``, NDJSON lines, import records) and ``eventodb serve``
(``/rpc``, ``/import``) refuse the same values with the same words. Integers too long for
Python's int parser (over 4300 digits) are refused the same way.

This module is the only place that decides what JSON may enter a store.
"""

from __future__ import annotations

import json
import math
import re
from typing import Any

__all__ = ["StrictJSONError", "loads", "raw_decode", "check_value"]


TOO_DEEP = "nested too deeply (more levels of arrays and objects than Python can parse)"


class StrictJSONError(ValueError):
    """JSON that is valid for Python but not for the other parsers of the family."""

    def __init__(self, msg: str, pos: int | None = None):
        super().__init__(msg)
        self.msg = msg
        self.pos = pos


def _constant(name: str):
    raise StrictJSONError(f"{name} is not a JSON number")


def _float(text: str) -> float:
    value = float(text)
    if math.isinf(value):
        raise StrictJSONError(f"number {text[:40]} is out of range for a double")
    return value


def _int(text: str) -> int:
    try:
        return int(text)
    except ValueError:  # Python's limit on the digits of an int
        raise StrictJSONError(f"integer of {len(text)} digits is out of range") from None


_decoder = json.JSONDecoder(parse_constant=_constant, parse_float=_float, parse_int=_int)
# A surrogate escape (\ud800-\udfff) anywhere in the text: only then is the value walked.
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89abcdefABCDEF]")


def _has_lone_surrogate(s: str) -> bool:
    try:
        s.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def check_value(value: Any) -> None:
    """Raise ``StrictJSONError`` if a decoded value holds a lone surrogate (in a key or a string)
    or a non-finite float. For values that did not come through ``loads``."""
    stack = [value]
    while stack:
        v = stack.pop()
        if isinstance(v, str):
            if _has_lone_surrogate(v):
                raise StrictJSONError("lone surrogate in a string (not valid Unicode)")
        elif isinstance(v, float):
            if not math.isfinite(v):
                raise StrictJSONError(f"{v} is not a JSON number")
        elif isinstance(v, dict):
            for k, item in v.items():
                if isinstance(k, str) and _has_lone_surrogate(k):
                    raise StrictJSONError("lone surrogate in a key (not valid Unicode)")
                stack.append(item)
        elif isinstance(v, list):
            stack.extend(v)




def loads(text: str | bytes) -> Any:
    """``json.loads``, strict: raises ``json.JSONDecodeError`` for malformed JSON and
    ``StrictJSONError`` for what the family's other parsers refuse (both are ``ValueError``)."""
    if isinstance(text, (bytes, bytearray)):
        text = text.decode("utf-8")
    try:
        if _SURROGATE_ESCAPE.search(text) is None:
            return _decoder.decode(text)
        return check_value(v := _decoder.decode(text)) or v
    except RecursionError:
        raise StrictJSONError(TOO_DEEP) from None


def raw_decode(text: str, idx: int = 0) -> tuple[Any, int]:
    """``JSONDecoder.raw_decode``, strict (trailing text is the caller's business)."""
    try:
        value, end = _decoder.raw_decode(text, idx)
        if _SURROGATE_ESCAPE.search(text, idx, end):  # no copy of a (maybe 90 MiB) body
            check_value(value)
    except RecursionError:
        raise StrictJSONError(TOO_DEEP) from None
    return value, end


def error_text(e: ValueError) -> str:
    """The short reason of a parse failure, for a one-line message."""
    if isinstance(e, json.JSONDecodeError):
        return f"{e.msg} (line {e.lineno} column {e.colno})"
    if isinstance(e, UnicodeDecodeError):
        return "not UTF-8"
    return getattr(e, "msg", None) or str(e)
