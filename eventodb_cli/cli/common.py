"""Options shared by commands, and the one way a command gets its Store and format."""

from __future__ import annotations

import json
import sys
from typing import Any

import click

from ..errors import UsageError
from ..render import FORMATS, resolve_format
from ..store.resolve import Target

_TARGET_KEY = "eventodb.target"

# Integer options: every number a store or server takes is a signed 64-bit integer, so a value
# outside that range is a usage error (exit 2) at parse time, never an OverflowError later.
# Use these (or a narrower click.IntRange) for every integer option, never a bare ``type=int``.
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1
INT64 = click.IntRange(INT64_MIN, INT64_MAX)
NON_NEGATIVE = click.IntRange(0, INT64_MAX)
POSITIVE = click.IntRange(1, INT64_MAX)


def _lazy_complete(name: str):
    """A ``shell_complete=`` callback that imports cli/completion.py only when completing."""

    def callback(ctx, param, incomplete):
        from . import completion

        return getattr(completion, name)(ctx, param, incomplete)

    return callback


complete_category = _lazy_complete("complete_category")
complete_stream = _lazy_complete("complete_stream")
complete_profile = _lazy_complete("complete_profile")


def _target(ctx: click.Context) -> Target:
    root = ctx.find_root()
    t = root.meta.get(_TARGET_KEY)
    if t is None:
        t = root.meta[_TARGET_KEY] = Target()
    return t


def _set(attr: str):
    def callback(ctx, param, value):
        if value is not None and value is not False:
            setattr(_target(ctx), attr, value)
        return value

    return callback


def target_options(f):
    """--store / --url / --token / --token-file / --profile / --timeout / --verbose."""
    opts = [
        click.option("--store", "store", metavar="PATH", expose_value=False,
                     callback=_set("store"), help="Local store file [env: EVENTODB_STORE]."),
        click.option("--url", "url", metavar="URL", expose_value=False, callback=_set("url"),
                     help="EventoDB server URL [env: EVENTODB_URL]."),
        click.option("--token", "token", metavar="TOKEN", expose_value=False,
                     callback=_set("token"), help="Server token [env: EVENTODB_TOKEN]."),
        click.option("--token-file", "token_file", metavar="PATH", expose_value=False,
                     callback=_set("token_file"), help="Read the server token from a file [env: EVENTODB_TOKEN_FILE]."),
        click.option("--profile", "profile", metavar="NAME", expose_value=False,
                     callback=_set("profile"), shell_complete=complete_profile,
                     help="Named target [env: EVENTODB_PROFILE]."),
        click.option("--timeout", "timeout", type=float, metavar="SECONDS", expose_value=False,
                     callback=_set("timeout"), help="Server request timeout per attempt [env: EVENTODB_TIMEOUT; default 30]."),
        click.option("-v", "--verbose", "verbose", is_flag=True, expose_value=False,
                     callback=_set("verbose"), help="Log requests to stderr (never tokens)."),
    ]
    for o in reversed(opts):
        f = o(f)
    return f


def format_option(f):
    return click.option(
        "--format", "-o", "fmt", type=click.Choice(FORMATS), default=None,
        help="Output format [default: table on a terminal, ndjson otherwise].",
    )(f)


def get_target(ctx: click.Context | None = None) -> Target:
    return _target(ctx or click.get_current_context())


def get_store(*, create: bool = False):
    """Open the store of the current command's target (reads never create a local store)."""
    from ..store.resolve import open_store

    return open_store(get_target(), create=create)


def out_format(fmt: str | None) -> str:
    return resolve_format(fmt)


# --- argument helpers -----------------------------------------------------------------------------
def read_json_arg(value: str | None, what: str) -> Any:
    """A JSON argument: literal JSON, ``@file`` or ``-`` (stdin). Bad JSON is a usage error."""
    if value is None:
        return None
    text = value
    if value == "-":
        text = sys.stdin.read()
    elif value.startswith("@"):
        path = value[1:]
        try:
            with open(path, encoding="utf-8") as fh:
                text = fh.read()
        except OSError as e:
            raise UsageError(f"{what}: cannot read {path}: {e.strerror}") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        raise UsageError(f"{what} is not valid JSON: {e.msg} (line {e.lineno} column {e.colno})") \
            from None


def check_group(member: int | None, size: int | None) -> None:
    """--member and --size come together, 0 <= member < size, size >= 1 (exit 2 otherwise)."""
    if member is None and size is None:
        return
    if member is None or size is None:
        raise UsageError("--member and --size must be given together")
    if size < 1:
        raise UsageError(f"--size must be >= 1 (got {size})")
    if member < 0:
        raise UsageError(f"--member must be >= 0 (got {member})")
    if member >= size:
        raise UsageError(f"--member must be < --size (got member {member}, size {size})")


def check_batch_size(batch_size: int) -> int | None:
    """>= 1, or -1 for unlimited (returned as None). Anything else is a usage error."""
    if batch_size == -1:
        return None
    if batch_size < 1:
        raise UsageError(f"--batch-size must be >= 1, or -1 for unlimited (got {batch_size})")
    return batch_size


def examples(*lines: str):
    """Append an Examples section to a command's help."""

    def deco(f):
        import inspect

        text = "\n\n\b\nExamples:\n" + "\n".join(f"  {line}" for line in lines)
        f.__doc__ = inspect.cleandoc(f.__doc__ or "") + text
        return f

    return deco
