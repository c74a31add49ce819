"""Turn --store / --url / --token / --profile / the environment into one Store.

Precedence (docs/remote.md "Choosing a target"), highest first:

1. flags: ``--url URL`` or ``--store PATH`` (both: a usage error), else ``--profile NAME``;
2. environment: ``EVENTODB_URL`` or ``EVENTODB_STORE`` (both set: ``EVENTODB_URL`` wins), else
   ``EVENTODB_PROFILE``;
3. the current profile (``eventodb profile use NAME``);
4. the local default store ``$XDG_DATA_HOME/eventodb/store.db`` (``~/.local/share/...``).

The token of a server target: ``--token`` > ``--token-file`` > ``EVENTODB_TOKEN`` >
``EVENTODB_TOKEN_FILE`` > the profile's token, and a profile's token is only ever sent to that
profile's own URL (``--url other`` never gets the current profile's token). ``--timeout`` >
``EVENTODB_TIMEOUT`` > the profile's timeout > 30 seconds.

httpx is imported only when a server target is opened.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from ..errors import UsageError
from .base import Store

DEFAULT_TIMEOUT = 30.0


def default_store_path() -> str:
    env = os.environ.get("EVENTODB_STORE")
    if env:
        return env
    base = os.environ.get("XDG_DATA_HOME") or os.path.join(os.path.expanduser("~"), ".local",
                                                            "share")
    return os.path.join(base, "eventodb", "store.db")


def _xdg_default_store() -> str:
    base = os.environ.get("XDG_DATA_HOME") or os.path.join(os.path.expanduser("~"), ".local",
                                                            "share")
    return os.path.join(base, "eventodb", "store.db")


@dataclass
class Target:
    """What the user asked for, before anything is opened (flags only: see resolve_target)."""

    store: str | None = None
    url: str | None = None
    token: str | None = None
    token_file: str | None = None
    profile: str | None = None
    timeout: float | None = None
    verbose: bool = False
    # filled in by resolve_target: where the target came from ("--url", "EVENTODB_URL",
    # "profile prod", "default"), for messages
    origin: str | None = None

    @property
    def is_remote(self) -> bool:
        return bool(self.url)

    def __repr__(self) -> str:  # never show the token
        tok = "***" if self.token else None
        return (f"Target(store={self.store!r}, url={self.url!r}, token={tok!r}, "
                f"profile={self.profile!r}, timeout={self.timeout!r}, origin={self.origin!r})")


def _read_token_file(path: str) -> str:
    try:
        with open(os.path.expanduser(path), encoding="utf-8") as fh:
            tok = fh.read().strip()
    except OSError as e:
        raise UsageError(f"cannot read token file {path}: {e.strerror}") from None
    if not tok:
        raise UsageError(f"token file {path} is empty")
    return tok


def _split_url_token(url: str) -> tuple[str, str | None]:
    """``http://h:8080/?token=X`` -> (``http://h:8080``, ``X``): a token never stays in a URL."""
    from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

    parts = urlsplit(url)
    if not parts.query:
        return url.rstrip("/"), None
    query = parse_qsl(parts.query, keep_blank_values=True)
    token = None
    kept = []
    for k, v in query:
        if k == "token":
            token = v or None
        else:
            kept.append((k, v))
    return urlunsplit(parts._replace(query=urlencode(kept))).rstrip("/"), token


def _env_float(name: str) -> float | None:
    v = os.environ.get(name)
    if not v:
        return None
    try:
        return float(v)
    except ValueError:
        raise UsageError(f"{name} must be a number of seconds (got {v!r})") from None


def resolve_target(target: Target) -> Target:
    """Apply the precedence above: returns a Target with either ``store`` or ``url`` set (and,
    for a server, ``token``/``timeout``), ``profile`` naming the profile used, ``origin`` saying
    where the location came from."""
    from . import profiles as P

    t = Target(**vars(target))
    if t.store and t.url:
        raise UsageError("--store and --url name two targets; give one")
    if t.profile and (t.store or t.url):
        raise UsageError("--profile and --url/--store name two targets; give one")
    prof: dict | None = None
    prof_name: str | None = None
    if t.url:
        t.origin = "--url"
    elif t.store:
        t.origin = "--store"
    elif t.profile:
        prof_name = t.profile
    elif os.environ.get("EVENTODB_URL"):
        t.url, t.origin = os.environ["EVENTODB_URL"], "EVENTODB_URL"
    elif os.environ.get("EVENTODB_STORE"):
        t.store, t.origin = os.environ["EVENTODB_STORE"], "EVENTODB_STORE"
    elif os.environ.get("EVENTODB_PROFILE"):
        prof_name = os.environ["EVENTODB_PROFILE"]
    else:
        prof_name = P.current_name(P.load_config())
        if prof_name is None:
            t.store, t.origin = _xdg_default_store(), "default"
    if prof_name is not None:
        prof = P.get_profile(prof_name)
        t.profile = prof_name
        t.origin = f"profile {prof_name}"
        if prof.get("url"):
            t.url = prof["url"]
        else:
            t.store = prof.get("store")
    else:
        t.profile = None

    if t.store:
        t.store = os.path.expanduser(t.store)
        return t

    # --- a server: URL, token, timeout ---
    if is_postgres_url(t.url):  # Message DB: store/postgres.py resolves its own credentials
        return t
    t.url, url_token = _split_url_token(t.url)
    if not t.url.startswith(("http://", "https://")):
        raise UsageError(f"server URL must start with http:// or https:// (got {t.url!r}, "
                         f"from {t.origin})")
    if t.token:
        pass
    elif t.token_file:
        t.token = _read_token_file(t.token_file)
    elif os.environ.get("EVENTODB_TOKEN"):
        t.token = os.environ["EVENTODB_TOKEN"]
    elif os.environ.get("EVENTODB_TOKEN_FILE"):
        t.token = _read_token_file(os.environ["EVENTODB_TOKEN_FILE"])
    elif url_token:
        t.token = url_token
    elif prof is not None and prof.get("token"):
        t.token = prof["token"]
    elif prof is not None and prof.get("token_file"):
        t.token = _read_token_file(prof["token_file"])
    t.token_file = None
    if t.timeout is None:
        t.timeout = _env_float("EVENTODB_TIMEOUT")
    if t.timeout is None and prof is not None and prof.get("timeout") is not None:
        t.timeout = float(prof["timeout"])
    if t.timeout is None:
        t.timeout = DEFAULT_TIMEOUT
    if t.timeout <= 0:
        raise UsageError(f"--timeout must be > 0 seconds (got {t.timeout:g})")
    return t


POSTGRES_SCHEMES = ("postgresql://", "postgres://")


def is_postgres_url(url: str | None) -> bool:
    """A Message DB (PostgreSQL) URL: the scheme picks the kind of store."""
    return bool(url) and url.lower().startswith(POSTGRES_SCHEMES)


def open_store(target: Target, *, create: bool = False) -> Store:
    """Open the store the target names: a LocalStore, a RemoteStore for a server, or a
    PostgresStore for Message DB. ``create`` only for writes: reads never create a local store
    (a server needs no creating)."""
    t = resolve_target(target)
    if is_postgres_url(t.url):
        from .postgres import open_postgres  # psycopg is imported only for this target

        return open_postgres(t)
    if t.url:
        from .remote import RemoteStore

        return RemoteStore(t.url, t.token, timeout=t.timeout, verbose=t.verbose)
    from .local import LocalStore

    return LocalStore(t.store, create=create)


def require_remote(target: Target, what: str):
    """Open a RemoteStore, or raise a usage error naming the command that needs a server."""
    t = resolve_target(target)
    if not t.url:
        raise UsageError(f"{what} needs a server: give --url URL (and --token), or a server "
                         f"profile (the target is the local store {t.store}, from {t.origin})")
    from .remote import RemoteStore

    return RemoteStore(t.url, t.token, timeout=t.timeout, verbose=t.verbose)
