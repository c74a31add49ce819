"""Named targets ("profiles", like rpk profiles or nats contexts) in the user's config file.

The file is ``$XDG_CONFIG_HOME/eventodb/config.json`` (``~/.config/eventodb/config.json``):

    {"current": "prod",
     "profiles": {"prod": {"url": "https://evento.example:8080", "token": "ns_..."},
                  "scratch": {"store": "/tmp/scratch.db"}}}

A profile names a server (``url`` with ``token`` or ``token_file``, optional ``timeout``) or a
local store (``store``). The file holds tokens, so it is written with mode 0600 (its directory
0700), atomically: a temp file in the same directory, fsync, rename.
"""

from __future__ import annotations

import json
import os
import re

from ..errors import NotFound, UsageError

CONFIG_NAME = "config.json"
PROFILE_KEYS = ("url", "token", "token_file", "store", "timeout", "description")
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")


def config_dir() -> str:
    base = os.environ.get("XDG_CONFIG_HOME") or os.path.join(os.path.expanduser("~"), ".config")
    return os.path.join(base, "eventodb")


def config_path() -> str:
    return os.path.join(config_dir(), CONFIG_NAME)


def load_config(path: str | None = None) -> dict:
    """The config as a dict (``{"current": None, "profiles": {}}`` when there is no file)."""
    path = path or config_path()
    try:
        with open(path, encoding="utf-8") as fh:
            cfg = json.load(fh)
    except FileNotFoundError:
        return {"current": None, "profiles": {}}
    except (OSError, ValueError, RecursionError) as e:
        raise UsageError(f"cannot read config {path}: {getattr(e, 'strerror', None) or e}") \
            from None
    if not isinstance(cfg, dict) or not isinstance(cfg.get("profiles", {}), dict):
        raise UsageError(f"config {path} is not an eventodb config (expected an object with "
                         "\"profiles\")")
    cfg.setdefault("profiles", {})
    cfg.setdefault("current", None)
    check_config(cfg, path)
    return cfg


def check_config(cfg: dict, path: str) -> None:
    """A config edited by hand is checked before use: every value of the type it must have
    (a usage error naming the file and the profile, never a crash later)."""
    import math

    def bad(what: str) -> UsageError:
        return UsageError(f"config {path}: {what} (fix or remove it; see 'eventodb profile')")

    if cfg["current"] is not None and not isinstance(cfg["current"], str):
        raise bad('"current" must be a profile name')
    for name, prof in cfg["profiles"].items():
        if not isinstance(prof, dict):
            raise bad(f"profile {name!r} must be an object")
        for key in ("url", "token", "token_file", "store", "description"):
            if prof.get(key) is not None and not isinstance(prof[key], str):
                raise bad(f"profile {name!r}: {key} must be a string")
        t = prof.get("timeout")
        if t is not None and (isinstance(t, bool) or not isinstance(t, (int, float))
                              or not math.isfinite(t) or t <= 0):
            raise bad(f"profile {name!r}: timeout must be a number of seconds > 0")
        if bool(prof.get("url")) == bool(prof.get("store")):
            raise bad(f"profile {name!r} must name either a server (url) or a store (store)")


def save_config(cfg: dict, path: str | None = None) -> str:
    """Write the config atomically with mode 0600; returns the path."""
    from ..fsutil import atomic_write_text

    path = path or config_path()
    atomic_write_text(path, json.dumps(cfg, indent=2, sort_keys=True) + "\n", mode=0o600,
                      dir_mode=0o700, prefix=".config-")
    return path


def check_name(name: str) -> str:
    if not _NAME_RE.match(name or ""):
        raise UsageError(f"invalid profile name {name!r}: use letters, digits, '.', '_' or '-' "
                         "(up to 64, starting with a letter or digit)")
    return name


def get_profile(name: str, cfg: dict | None = None) -> dict:
    cfg = cfg if cfg is not None else load_config()
    prof = cfg["profiles"].get(name)
    if prof is None:
        known = ", ".join(sorted(cfg["profiles"])) or "none"
        raise NotFound(f"no profile named {name!r} (profiles: {known}; see 'eventodb profile "
                       "list')")
    return prof


def current_name(cfg: dict | None = None) -> str | None:
    cfg = cfg if cfg is not None else load_config()
    cur = cfg.get("current")
    return cur if cur in cfg["profiles"] else None


def add_profile(name: str, prof: dict, *, use: bool = False, replace: bool = False) -> str:
    check_name(name)
    if bool(prof.get("url")) == bool(prof.get("store")):
        raise UsageError("a profile names either a server (--url) or a local store (--store)")
    if prof.get("store") and (prof.get("token") or prof.get("token_file")):
        raise UsageError("a local-store profile takes no token")
    if prof.get("token") and prof.get("token_file"):
        raise UsageError("give --token or --token-file, not both")
    cfg = load_config()
    if name in cfg["profiles"] and not replace:
        raise UsageError(f"profile {name!r} exists (use --replace to overwrite it)")
    cfg["profiles"][name] = {k: v for k, v in prof.items() if k in PROFILE_KEYS and v is not None}
    if use or not current_name(cfg):
        cfg["current"] = name
    return save_config(cfg)


def use_profile(name: str) -> None:
    cfg = load_config()
    get_profile(name, cfg)
    cfg["current"] = name
    save_config(cfg)


def remove_profile(name: str) -> bool:
    """Remove a profile; returns True when it was the current one (which is then unset)."""
    cfg = load_config()
    get_profile(name, cfg)
    del cfg["profiles"][name]
    was_current = cfg.get("current") == name
    if was_current:
        cfg["current"] = None
    save_config(cfg)
    return was_current


def _shown_url(url: str | None) -> str | None:
    """A profile's URL without any token in it (a config written by hand may hold one)."""
    if not url:
        return url
    from .resolve import is_postgres_url, split_postgres_password, split_url_credentials

    if is_postgres_url(url):
        clean, password = split_postgres_password(url)
        return clean if password is None else clean.replace("@", ":***@", 1)
    try:
        clean, token = split_url_credentials(url)
        return clean if token else url
    except UsageError:
        return "(malformed URL)"


def _kind(url: str | None) -> str:
    if not url:
        return "local"
    from .resolve import is_postgres_url

    return "messagedb" if is_postgres_url(url) else "server"


def describe(name: str, prof: dict, current: str | None) -> dict:
    """A profile as shown by ``profile list|show``: the token itself is never included."""
    token_src = None
    if prof.get("token"):
        token_src = "stored"
    elif prof.get("token_file"):
        token_src = f"file {prof['token_file']}"
    return {
        "name": name,
        "current": name == current,
        "kind": _kind(prof.get("url")),
        "target": _shown_url(prof.get("url")) or prof.get("store"),
        "token": token_src,
        "timeout": prof.get("timeout"),
        "description": prof.get("description"),
    }
