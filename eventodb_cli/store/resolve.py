"""Turn --store / --url / --token / --profile / the environment into one Store.

Precedence (README "Choosing a target"): flag > environment > profile > local default.
The local default is ``$EVENTODB_STORE``, else ``$XDG_DATA_HOME/eventodb/store.db``
(``~/.local/share/eventodb/store.db``).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from ..errors import UsageError
from .base import Store


def default_store_path() -> str:
    env = os.environ.get("EVENTODB_STORE")
    if env:
        return env
    base = os.environ.get("XDG_DATA_HOME") or os.path.join(os.path.expanduser("~"), ".local",
                                                            "share")
    return os.path.join(base, "eventodb", "store.db")


@dataclass
class Target:
    """What the user asked for, before anything is opened."""

    store: str | None = None
    url: str | None = None
    token: str | None = None
    token_file: str | None = None
    profile: str | None = None
    timeout: float | None = None
    verbose: bool = False

    @property
    def is_remote(self) -> bool:
        return bool(self.url)


def resolve_target(target: Target) -> Target:
    """Fill in the environment for what flags left out (flag > environment)."""
    t = Target(**vars(target))
    if not t.store and not t.url:
        t.url = os.environ.get("EVENTODB_URL") or None
        if not t.url:
            t.store = None  # local default, resolved at open
    return t


def open_store(target: Target, *, create: bool = False) -> Store:
    """Open the store the target names. ``create`` only for writes: reads never create."""
    t = resolve_target(target)
    if t.store and t.url:
        raise UsageError("--store and --url name two targets; give one")
    if t.url:
        raise UsageError("remote targets (--url) are not supported yet")
    from .local import LocalStore

    return LocalStore(t.store or default_store_path(), create=create)
