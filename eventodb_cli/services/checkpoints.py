"""Consumer checkpoints: one JSON file per group member.

A checkpoint is the NEXT global position to read (the seed's ``last globalPosition + 1``), stored
in the seed's JSON form plus who it belongs to::

    {"position": 1235, "updatedAt": "2026-11-28T06:30:00.123Z",
     "category": "account", "member": 0, "size": 4}

``consume --checkpoint PATH`` writes it, ``lag --checkpoints SOURCE`` and
``simulate-scale --checkpoints SOURCE`` read it. SOURCE is a directory (every ``*.json`` in it)
or one file. Files are replaced atomically (a killed process leaves the old file or the new
one). ``consume`` saves after each batch without fsync, keeps a durable copy at most
``--sync-interval`` old (1 s by default) next to the file, and makes the file itself durable at
the end of a run: a SIGKILL loses nothing (the page cache outlives the process), a power loss
can take the position back by at most the interval's saves (``FileKeeper``).
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


def load(path: str, *, log=None) -> Checkpoint | None:
    """The checkpoint at ``path``, or ``None`` when there is neither it nor its durable copy.
    Bad content: UsageError, unless a consumer's durable copy of it is readable (``FileKeeper``:
    after a power loss the file, written without fsync, can be empty, or missing after a first
    run): then that copy, and ``log`` says so."""
    bad: UsageError | None = None
    try:
        cp = _load_one(path)
        if cp is not None:
            return cp
        what = "is missing"  # a power loss in a consumer's first run can take the new file
    except UsageError as e:
        what, bad = "is unreadable", e
    copy = durable_copy_path(path)
    try:
        cp = _load_one(copy)
    except UsageError:
        cp = None
    if cp is None:
        if bad is not None:
            raise bad
        return None
    if log is not None:
        log(f"checkpoint {path} {what} (a power loss?); continuing from its durable "
            f"copy {copy} (position {cp.position})")
    cp.path = path
    return cp


def _load_one(path: str) -> Checkpoint | None:
    try:
        with open(path, encoding="utf-8") as fh:
            obj = json.load(fh)
    except FileNotFoundError:
        return None
    except (OSError, json.JSONDecodeError, UnicodeDecodeError, RecursionError) as e:
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


def save(path: str, cp: Checkpoint, *, durable: bool = True) -> None:
    """Write atomically: a crash leaves the old file or the new one, never a torn one.
    ``durable``: fsync the file and its directory (survives a power loss too)."""
    if cp.updated_at is None:
        cp.updated_at = time.time_ns()
    atomic_write_text(path, json.dumps(cp.to_json()), prefix=".ckpt-", durable=durable)


def _note(text: str) -> None:
    import sys

    print(f"eventodb: note: {text}", file=sys.stderr, flush=True)


def load_source(source: str, *, category: str | None = None,
                size: int | None = None, log=_note) -> list[Checkpoint]:
    """Every checkpoint in SOURCE (a directory of ``*.json`` or one file), keeping those of
    ``category``/``size`` when the file says whom it belongs to. Members come from the file, or
    from the conventional name ``<category>.member-<m>-of-<n>.json``. A checkpoint read from its
    durable copy (``load``) is said on stderr through ``log``."""
    if os.path.isdir(source):
        paths = sorted(glob.glob(os.path.join(source, "*.json")))
    elif os.path.exists(source):
        paths = [source]
    else:
        raise NotFound(f"checkpoint source not found: {source}")
    out = []
    for p in paths:
        cp = load(p, log=log)
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


def durable_copy_path(path: str) -> str:
    """Where a running consumer keeps the durable copy of its checkpoint (``FileKeeper``):
    ``DIR/.NAME.sync`` next to ``DIR/NAME`` (hidden, not ``*.json``)."""
    directory, name = os.path.split(path)
    return os.path.join(directory, f".{name}.sync")


class FileKeeper:
    """A consumer's position in a checkpoint file (the next global position to read).

    Every save replaces the file atomically without fsync (``fsutil.replace_quick``): a SIGKILL
    cannot undo it, the page cache outlives the process. The fsyncs that make a save survive a
    power loss or an OS crash cost a millisecond or more each, so they are made at most once per
    ``sync_interval`` seconds, and not to the file itself: ``sync()`` writes the position durably
    (temp file, fsync, rename, fsync of the directory) to a copy, ``durable_copy_path``, which
    ``load`` reads only when the file itself is unreadable (a power loss can leave a file written
    without fsync empty). ``sync()`` runs at the first save, whenever the last durable copy is
    ``sync_interval`` old, and when the consumer goes idle; ``finish()`` at the end of a run makes
    the file itself durable and removes the copy. A power loss thus takes the position back by at
    most ``sync_interval`` seconds of saves (those messages are handed over again: at least once,
    never a skip). ``sync_interval=0``: every save is durable, no copy."""

    def __init__(self, path: str, category: str, member: int, size: int, *,
                 from_position: int | None = None, log=None, sync_interval: float = 1.0):
        self.path = path
        self.category = category
        self.member = member
        self.size = size
        self.from_position = from_position
        self.sync_interval = sync_interval
        self._log = log or (lambda text: None)
        directory, name = os.path.split(os.path.abspath(path))
        self._tmp = os.path.join(directory, f".ckpt-{os.getpid()}-{name}.tmp")
        self._copy = durable_copy_path(path)
        self._synced_at: float | None = None  # monotonic time of the last durable copy
        self._unsynced: str | None = None  # the last save's text while no durable copy has it
        self._quick = False  # the file has had a save without fsync

    @property
    def where(self) -> str:
        return f"checkpoint {self.path}"

    def load(self) -> int:
        cp = load(self.path, log=self._log)
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

    def save(self, next_position: int, *, durable: bool = False) -> None:
        """Replace the file (atomic, no fsync); ``durable`` (or ``sync_interval`` 0): with the
        fsyncs. A durable copy is written when the last one is ``sync_interval`` old."""
        cp = Checkpoint(next_position, time.time_ns(), self.category, self.member, self.size)
        text = json.dumps(cp.to_json())
        if durable or self.sync_interval <= 0:
            atomic_write_text(self.path, text, prefix=".ckpt-")
            self._unsynced = None
            return
        from ..fsutil import replace_quick

        replace_quick(self.path, text.encode("utf-8"), self._tmp)
        self._quick = True
        self._unsynced = text
        if self._synced_at is None or time.monotonic() - self._synced_at >= self.sync_interval:
            self.sync()

    def sync(self) -> None:
        """Write the last save durably to the copy (nothing to do when it is there already)."""
        if self._unsynced is None:
            return
        atomic_write_text(self._copy, self._unsynced, prefix=".ckpt-")
        self._unsynced = None
        self._synced_at = time.monotonic()

    def finish(self) -> None:
        """End of a run: make the file itself durable (fsync it and its directory) and remove
        the durable copy."""
        if not self._quick:
            return
        from ..fsutil import make_durable

        make_durable(self.path)
        self._quick = False
        self._unsynced = None
        try:
            os.unlink(self._copy)
        except FileNotFoundError:
            pass
