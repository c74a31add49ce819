"""JSON as the EventoDB server writes it: sorted keys (Go maps), compact, a trailing newline,
``<`` ``>`` ``&`` U+2028 U+2029 escaped like Go's encoder, other UTF-8 raw."""

from __future__ import annotations

import json
import re

_enc = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), sort_keys=True,
                        allow_nan=False).encode
_str = json.JSONEncoder(ensure_ascii=False).encode
_GO_ESCAPES = {"<": "\\u003c", ">": "\\u003e", "&": "\\u0026", "\u2028": "\\u2028",
               "\u2029": "\\u2029"}
_GO_RE = re.compile("[<>&\u2028\u2029]")


def go_escape(text: str) -> str:
    """Apply Go's HTML-safe escapes. Safe on whole JSON documents: these characters can only
    occur inside JSON strings, where the escape means the same character."""
    if _GO_RE.search(text) is None:
        return text
    return _GO_RE.sub(lambda m: _GO_ESCAPES[m.group()], text)


def dumps(value) -> str:
    """One JSON value, sorted keys, Go escapes (no newline)."""
    return go_escape(_enc(value))


def jstr(value: str) -> str:
    return _str(value)


def error_body(code: str, message: str, details: dict | None = None) -> str:
    """``{"error":{"code":..,"message":..,"details":{..}}}`` + newline (the Go struct order:
    code, message, details; details left out when empty)."""
    inner = '{"code":%s,"message":%s' % (_str(code), _str(message))
    if details:
        inner += ',"details":' + _enc(details)
    return go_escape('{"error":' + inner + "}}") + "\n"
