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

from ..errors import UsageError
from .base import Store

DEFAULT_TIMEOUT = 30.0
MAX_TIMEOUT = 86400.0  # a day; longer cannot be a request timeout (and overflows a timeval)


def default_store_path() -> str:
    env = _env("EVENTODB_STORE")
    if env:
        return env
    base = os.environ.get("XDG_DATA_HOME") or os.path.join(os.path.expanduser("~"), ".local",
                                                            "share")
    return os.path.join(base, "eventodb", "store.db")


def _xdg_default_store() -> str:
    base = os.environ.get("XDG_DATA_HOME") or os.path.join(os.path.expanduser("~"), ".local",
                                                            "share")
    return os.path.join(base, "eventodb", "store.db")


def check_store_path(path: str, origin: str | None = None) -> str:
    """A local store path that can be a store file: not a directory, and no part of the way to
    it a file (``/etc/passwd/x.db``). A usage error before anything is opened or created."""
    src = f" (from {origin})" if origin else ""
    if len(os.fsencode(os.path.abspath(path))) >= 4096:
        raise UsageError(f"store path is too long ({len(path)} characters){src}")
    if os.path.isdir(path):
        raise UsageError(f"store path is a directory: {path}{src}; give a file path")
    head = os.path.dirname(os.path.abspath(path))
    while head and not os.path.exists(head):
        parent = os.path.dirname(head)
        if parent == head:
            break
        head = parent
    if head and os.path.exists(head) and not os.path.isdir(head):
        raise UsageError(f"store path {path}{src}: {head} is not a directory")
    if os.path.exists(path) and not os.access(path, os.R_OK):
        raise UsageError(f"store path {path}{src}: permission denied")
    return path


class Target:
    """What the user asked for, before anything is opened (flags only: see resolve_target).

    A plain class, not a dataclass: ``dataclasses`` and the code it generates cost every command
    about a millisecond of start (issue 12, acceptance 6)."""

    FIELDS = ("store", "url", "token", "token_file", "profile", "timeout", "verbose", "origin")

    def __init__(self, store: str | None = None, url: str | None = None,
                 token: str | None = None, token_file: str | None = None,
                 profile: str | None = None, timeout: float | None = None,
                 verbose: bool = False, origin: str | None = None) -> None:
        self.store = store
        self.url = url
        self.token = token
        self.token_file = token_file
        self.profile = profile
        self.timeout = timeout
        self.verbose = verbose
        # filled in by resolve_target: where the target came from ("--url", "EVENTODB_URL",
        # "profile prod", "default"), for messages
        self.origin = origin

    def as_dict(self) -> dict:
        return {k: getattr(self, k) for k in self.FIELDS}

    def __eq__(self, other):
        if other.__class__ is not self.__class__:
            return NotImplemented
        return self.as_dict() == other.as_dict()

    __hash__ = None  # mutable, as the dataclass was

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
    except UnicodeDecodeError:
        raise UsageError(f"token file {path} is not text (a token is printable ASCII)") \
            from None
    if not tok:
        raise UsageError(f"token file {path} is empty")
    return tok


def split_url_credentials(url: str) -> tuple[str, str | None]:
    """``http://u:TOKEN@h:8080/?token=X`` -> (``http://h:8080``, token): no token ever stays in
    a URL, so no message, log or profile listing that shows the URL can show it. The token is
    ``?token=``, else the userinfo's password, else its user name. A URL that cannot be parsed is
    a usage error that does not repeat the URL (it may hold a token)."""
    from urllib.parse import parse_qsl, unquote, urlencode, urlsplit, urlunsplit

    try:
        parts = urlsplit(url)
        user, password = parts.username, parts.password
    except ValueError as e:
        raise UsageError(f"malformed server URL ({e})") from None
    token = unquote(password or user or "") or None  # userinfo is percent-encoded
    if "@" in parts.netloc:
        parts = parts._replace(netloc=parts.netloc.rpartition("@")[2])
    if parts.query:
        kept = []
        for k, v in parse_qsl(parts.query, keep_blank_values=True):
            if k == "token":
                token = v or token
            else:
                kept.append((k, v))
        parts = parts._replace(query=urlencode(kept))
    return urlunsplit(parts).rstrip("/"), token


def check_server_url(url: str, origin: str | None) -> str:
    """An ``http(s)://host[:port][/path]`` URL the HTTP client can use; anything else is a usage
    error naming where the URL came from (checked before any network access)."""
    from urllib.parse import urlsplit

    src = f", from {origin}" if origin else ""

    def bad(reason: str) -> UsageError:
        return UsageError(f"malformed server URL {url!r}: {reason}{src}")

    if url.lower() in ("http:", "https:"):
        raise bad("no host")
    if not url.lower().startswith(("http://", "https://")):
        raise UsageError(f"server URL must start with http:// or https:// (got {url!r}{src})")
    if any(ord(c) <= 0x20 or ord(c) == 0x7F for c in url):
        raise bad("spaces or control characters")
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError for a port out of range or not a number
        host = parts.hostname
    except ValueError as e:
        raise bad(str(e)) from None
    if not host:
        raise bad("no host")
    if parts.netloc.endswith(":"):
        raise bad("empty port")
    if parts.netloc.startswith("[") or ":" in host:
        import ipaddress

        try:
            ipaddress.IPv6Address(host.split("%", 1)[0])
        except ValueError:
            raise bad(f"{host!r} is not an IPv6 address") from None
    elif not _valid_host(host):
        raise bad(f"{host[:70]!r} is not a valid host name")
    return url


def _valid_host(host: str) -> bool:
    """A host name the HTTP client (IDNA 2008) and the resolver accept: labels of 1-63."""
    if not host.isascii():
        try:
            import idna  # httpx's own dependency: the same check httpx makes

            host = idna.encode(host).decode("ascii")
        except (ImportError, UnicodeError, ValueError):
            return False
    return len(host) <= 253 and all(0 < len(label) <= 63 for label in
                                    host.removesuffix(".").split("."))


def check_token(token: str) -> str:
    """A token is printable ASCII without spaces (it travels in an HTTP header): anything else is
    a usage error that never repeats the token."""
    if not all("\x21" <= ch <= "\x7e" for ch in token):
        raise UsageError("the token holds characters a token cannot have (spaces, control "
                         "characters or non-ASCII): check --token / EVENTODB_TOKEN / the token "
                         "file")
    return token


def _env(name: str) -> str | None:
    """An environment variable; empty (or blank) counts as unset, as ``VAR= cmd`` means."""
    v = os.environ.get(name)
    return v if v and v.strip() else None


def _env_float(name: str) -> float | None:
    v = _env(name)
    if v is None:
        return None
    try:
        f = float(v)
    except ValueError:
        raise UsageError(f"{name} must be a number of seconds (got {v[:40]!r})") from None
    return _check_timeout(f, name)


def _check_timeout(value: float, what: str) -> float:
    import math

    if not math.isfinite(value) or not 0 < value <= MAX_TIMEOUT:
        raise UsageError(f"{what} must be a number of seconds > 0 and <= {MAX_TIMEOUT:g} "
                         f"(got {value:g})")
    return value


def resolve_target(target: Target) -> Target:
    """Apply the precedence above: returns a Target with either ``store`` or ``url`` set (and,
    for a server, ``token``/``timeout``), ``profile`` naming the profile used, ``origin`` saying
    where the location came from."""
    t = Target(**target.as_dict())
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
    elif _env("EVENTODB_URL"):
        t.url, t.origin = _env("EVENTODB_URL"), "EVENTODB_URL"
    elif _env("EVENTODB_STORE"):
        t.store, t.origin = _env("EVENTODB_STORE"), "EVENTODB_STORE"
    elif _env("EVENTODB_PROFILE"):
        prof_name = _env("EVENTODB_PROFILE")
    else:
        from . import profiles as P  # only when no flag or variable names the target

        prof_name = P.current_name(P.load_config())
        if prof_name is None:
            t.store, t.origin = _xdg_default_store(), "default"
    if prof_name is not None:
        from . import profiles as P

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
        t.store = check_store_path(os.path.expanduser(t.store), t.origin)
        return t

    # --- a server: URL, token, timeout ---
    if is_postgres_url(t.url):  # Message DB: store/postgres.py resolves its own credentials
        return t
    t.url, url_token = split_url_credentials(t.url)
    check_server_url(t.url, t.origin)
    if t.token:
        pass
    elif t.token_file:
        t.token = _read_token_file(t.token_file)
    elif _env("EVENTODB_TOKEN"):
        t.token = _env("EVENTODB_TOKEN")
    elif _env("EVENTODB_TOKEN_FILE"):
        t.token = _read_token_file(_env("EVENTODB_TOKEN_FILE"))
    elif url_token:
        t.token = url_token
    elif prof is not None and prof.get("token"):
        t.token = prof["token"]
    elif prof is not None and prof.get("token_file"):
        t.token = _read_token_file(prof["token_file"])
    t.token_file = None
    if t.token is not None:
        check_token(t.token)
    if t.timeout is None:
        t.timeout = _env_float("EVENTODB_TIMEOUT")
    if t.timeout is None and prof is not None and prof.get("timeout") is not None:
        try:
            t.timeout = _check_timeout(float(prof["timeout"]), f"profile {prof_name} timeout")
        except (TypeError, ValueError):
            raise UsageError(f"profile {prof_name}: timeout is not a number") from None
    if t.timeout is None:
        t.timeout = DEFAULT_TIMEOUT
    _check_timeout(t.timeout, "--timeout")
    return t


POSTGRES_SCHEMES = ("postgresql://", "postgres://")


def is_postgres_url(url: str | None) -> bool:
    """A Message DB (PostgreSQL) URL: the scheme picks the kind of store."""
    return bool(url) and url.lower().startswith(POSTGRES_SCHEMES)


def split_postgres_password(url: str) -> tuple[str, str | None]:
    """``postgresql://u:PW@h/db`` -> (``postgresql://u@h/db``, ``PW``) (percent-decoded): a
    profile keeps a Message DB password as its token, never in the URL it shows."""
    from urllib.parse import unquote, urlsplit, urlunsplit

    parts = urlsplit(url)
    userinfo, at, hostport = parts.netloc.rpartition("@")
    if not at or ":" not in userinfo:
        return url, None
    user, _, password = userinfo.partition(":")
    return urlunsplit(parts._replace(netloc=f"{user}@{hostport}")), unquote(password) or None


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
    if is_postgres_url(t.url):  # Message DB answers server version/health itself;
        from .postgres import open_postgres  # ns commands are refused by the store

        return open_postgres(t)
    if not t.url:
        raise UsageError(f"{what} needs a server: give --url URL (and --token), or a server "
                         f"profile (the target is the local store {t.store}, from {t.origin})")
    from .remote import RemoteStore

    return RemoteStore(t.url, t.token, timeout=t.timeout, verbose=t.verbose)
