"""Stream names: category, id and cardinal id, with Message DB semantics.

Only the first ``-`` splits a name; the cardinal id is the id up to its first ``+``.
Nothing is normalised (case, whitespace and Unicode forms are kept as given).
"""

from __future__ import annotations


def category(stream_name: str) -> str:
    """The part before the first ``-``, or the whole name when there is none."""
    i = stream_name.find("-")
    return stream_name if i < 0 else stream_name[:i]


def stream_id(stream_name: str) -> str | None:
    """The part after the first ``-``; ``None`` when the name has no ``-``."""
    i = stream_name.find("-")
    return None if i < 0 else stream_name[i + 1 :]


def cardinal_id(stream_name: str) -> str | None:
    """The id up to its first ``+`` (``account-123+retry`` -> ``123``); ``None`` without an id."""
    sid = stream_id(stream_name)
    if sid is None:
        return None
    j = sid.find("+")
    return sid if j < 0 else sid[:j]


def is_category(name: str) -> bool:
    """A name is a category name when it contains no ``-``."""
    return "-" not in name
