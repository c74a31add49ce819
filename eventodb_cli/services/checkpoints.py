"""Consumer checkpoints: one JSON file per group member.

A checkpoint is the NEXT global position to read (the seed's ``last globalPosition + 1``), stored
in the seed's JSON form plus who it belongs to::

    {"position": 1235, "updatedAt": "2026-11-28T06:30:00.123Z",
     "category": "account", "member": 0, "size": 4}

``consume --checkpoint PATH`` writes it, ``lag --checkpoints SOURCE`` and
``simulate-scale --checkpoints SOURCE`` read it. SOURCE is a directory (every ``*.json`` in it)
or one file. Files are written atomically: temp file, fsync, rename, fsync of the directory.
"""

from __future__ import annotations

import glob
import json
import os
import time
from dataclasses import dataclass

from ..domain.message import format_time, parse_time
from ..errors import NotFound, UsageError
from ..fsutil import atomic_write_text


@dataclass
class Checkpoint:
    position: int  # next global position to read
    updated_at: int | None = None  # ns since epoch
    category: str | None = None
    member: int | None = None
    size: int | None = None
    path: str | None = None

    def to_json(self) -> dict:
        d: dict = {"position": self.position,
                   "updatedAt": None if self.updated_at is None else format_time(self.updated_at)}
        if self.category is not None:
            d["category"] = self.category
        if self.member is not None:
            d["member"] = self.member
        if self.size is not None:
            d["size"] = self.size
        return d


def default_name(category: str, member: int, size: int) -> str:
    """Conventional file name: ``account.member-0-of-4.json``."""
    return f"{category}.member-{member}-of-{size}.json"


def load(path: str) -> Checkpoint | None:
    """The checkpoint at ``path``, or ``None`` when there is no file. Bad content: UsageError."""
    try:
        with open(path, encoding="utf-8") as fh:
            obj = json.load(fh)
    except FileNotFoundError:
        return None
    except (OSError, json.JSONDecodeError, UnicodeDecodeError) as e:
        raise UsageError(f"checkpoint {path} is unreadable: {e}") from None
    if not isinstance(obj, dict) or isinstance(obj.get("position"), bool) \
            or not isinstance(obj.get("position"), int) or obj["position"] < 0:
        raise UsageError(f"checkpoint {path} has no valid 'position'")
    upd = obj.get("updatedAt")
    try:
        updated = parse_time(upd) if isinstance(upd, str) else None
    except ValueError:
        updated = None
    member, size = obj.get("member"), obj.get("size")
    return Checkpoint(obj["position"], updated, obj.get("category"),
                      member if isinstance(member, int) else None,
                      size if isinstance(size, int) else None, path)


def save(path: str, cp: Checkpoint) -> None:
    """Write atomically: a crash leaves the old file or the new one, never a torn one."""
    if cp.updated_at is None:
        cp.updated_at = time.time_ns()
    atomic_write_text(path, json.dumps(cp.to_json()), prefix=".ckpt-")


def load_source(source: str, *, category: str | None = None,
                size: int | None = None) -> list[Checkpoint]:
    """Every checkpoint in SOURCE (a directory of ``*.json`` or one file), keeping those of
    ``category``/``size`` when the file says whom it belongs to. Members come from the file, or
    from the conventional name ``<category>.member-<m>-of-<n>.json``."""
    if os.path.isdir(source):
        paths = sorted(glob.glob(os.path.join(source, "*.json")))
    elif os.path.exists(source):
        paths = [source]
    else:
        raise NotFound(f"checkpoint source not found: {source}")
    out = []
    for p in paths:
        cp = load(p)
        if cp is None:
            continue
        if cp.member is None or cp.size is None or cp.category is None:
            _fill_from_name(cp, os.path.basename(p))
        if category is not None and cp.category not in (None, category):
            continue
        if size is not None and cp.size not in (None, size):
            continue
        out.append(cp)
    return out


def _fill_from_name(cp: Checkpoint, name: str) -> None:
    import re

    m = re.match(r"^(?P<cat>.*)\.member-(?P<m>\d+)-of-(?P<n>\d+)\.json$", name)
    if not m:
        return
    if cp.category is None:
        cp.category = m.group("cat")
    if cp.member is None:
        cp.member = int(m.group("m"))
    if cp.size is None:
        cp.size = int(m.group("n"))


def check_writable(path: str) -> None:
    """A checkpoint path the consumer can save to, checked before any message is handled: not a
    directory, in a directory that exists and is writable. UsageError otherwise."""
    if not path:
        raise UsageError("--checkpoint needs a file path (got an empty one)")
    if path.endswith(os.sep) or os.path.isdir(path):
        raise UsageError(f"--checkpoint {path} is a directory; give a file path such as "
                         f"{os.path.join(path, 'CATEGORY.member-M-of-N.json')}")
    parent = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(parent):
        what = "is not a directory" if os.path.exists(parent) else "does not exist"
        raise UsageError(f"--checkpoint {path}: directory {parent} {what}"
                         + ("" if os.path.exists(parent) else f" (create it: mkdir -p {parent})"))
    if not os.access(parent, os.W_OK | os.X_OK):
        raise UsageError(f"--checkpoint {path}: directory {parent} is not writable")
    if os.path.exists(path) and not os.access(path, os.R_OK):
        raise UsageError(f"--checkpoint {path} is not readable")


class FileKeeper:
    """A consumer's position in a checkpoint file (the next global position to read)."""

    def __init__(self, path: str, category: str, member: int, size: int, *,
                 from_position: int | None = None, log=None):
        self.path = path
        self.category = category
        self.member = member
        self.size = size
        self.from_position = from_position
        self._log = log or (lambda text: None)

    @property
    def where(self) -> str:
        return f"checkpoint {self.path}"

    def load(self) -> int:
        cp = load(self.path)
        if cp is None:
            return self.from_position if self.from_position is not None else 1
        for what, mine, theirs in (("category", self.category, cp.category),
                                   ("member", self.member, cp.member),
                                   ("size", self.size, cp.size)):
            if theirs is not None and theirs != mine:
                raise UsageError(
                    f"checkpoint {self.path} belongs to {what} {theirs}, not {mine} "
                    f"(category {cp.category}, member {cp.member} of {cp.size})")
        if self.from_position is not None and self.from_position != cp.position:
            self._log(f"checkpoint {self.path} (position {cp.position}) wins over "
                      f"--from-position {self.from_position}")
        return max(cp.position, 1)

    def save(self, next_position: int) -> None:
        save(self.path, Checkpoint(next_position, None, self.category, self.member, self.size))
