"""Options shared by commands, and the one way a command gets its Store and format."""

from __future__ import annotations

import sys

import click

from ..errors import UsageError
from ..render import FORMATS, resolve_format
from ..store.resolve import Target

_TARGET_KEY = "eventodb.target"

# Integer options: every number a store or server takes is a signed 64-bit integer, so a value
# outside that range is a usage error (exit 2) at parse time, never an OverflowError later.
# Use these (or a narrower IntRange) for every integer option, never a bare ``type=int``.
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1


def _shown(value) -> str:
    text = str(value)
    return text if len(text) <= 40 else text[:37] + "..."


class IntRange(click.IntRange):
    """click.IntRange with our wording: ``--size must be >= 1 (got 0)``, and a value that does
    not fit in 64 bits says so (never an OverflowError later)."""

    def convert(self, value, param, ctx):
        if isinstance(value, bool) or not isinstance(value, int):
            try:
                value = int(str(value).strip())
            except ValueError:
                self.fail(f"{_shown(value)!r} is not a valid integer", param, ctx)
        lo, hi = self.min, self.max
        if (lo is not None and value < lo) or (hi is not None and value > hi):
            if (lo == INT64_MIN and value < lo) or (hi == INT64_MAX and value > hi):
                self.fail(f"does not fit in a signed 64-bit integer (got {_shown(value)})",
                          param, ctx)
            if hi is None or hi == INT64_MAX:
                self.fail(f"must be >= {lo} (got {_shown(value)})", param, ctx)
            if lo is None or lo == INT64_MIN:
                self.fail(f"must be <= {hi} (got {_shown(value)})", param, ctx)
            self.fail(f"must be between {lo} and {hi} (got {_shown(value)})", param, ctx)
        return value


INT64 = IntRange(INT64_MIN, INT64_MAX)
NON_NEGATIVE = IntRange(0, INT64_MAX)
POSITIVE = IntRange(1, INT64_MAX)

# --timeout: a finite number of seconds, more than 0 and at most a day (NaN, inf, 1e999 and
# negative values are usage errors; a socket cannot wait longer than a C timeval anyway).
MAX_TIMEOUT = 86400.0


def check_seconds(value: float, what: str) -> float:
    """A timeout in seconds: finite, > 0, <= MAX_TIMEOUT; a UsageError naming ``what``."""
    import math

    if not math.isfinite(value) or not 0 < value <= MAX_TIMEOUT:
        raise UsageError(f"{what} must be a number of seconds > 0 and <= {MAX_TIMEOUT:g} "
                         f"(got {_shown(value)})")
    return value


class Seconds(click.ParamType):
    name = "seconds"

    def convert(self, value, param, ctx):
        if isinstance(value, float):
            f = value
        else:
            try:
                f = float(str(value).strip())
            except ValueError:
                self.fail(f"{_shown(value)!r} is not a number of seconds", param, ctx)
        import math

        if not math.isfinite(f) or not 0 < f <= MAX_TIMEOUT:
            self.fail(f"must be a number of seconds > 0 and <= {MAX_TIMEOUT:g} "
                      f"(got {_shown(value)})", param, ctx)
        return f


SECONDS = Seconds()


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


def check_not_empty(param, value):
    """An empty flag value (``--store ""``, an unset shell variable) is a usage error naming the
    flag, never "not given": it would silently pick another target."""
    if isinstance(value, str) and not value.strip():
        name = param.opts[-1] if param is not None and param.opts else "option"
        for o in (param.opts if param is not None else ()):
            if o.startswith("--"):
                name = o
                break
        raise UsageError(f"{name}: empty value (give a value, or leave the option out)")
    return value


def _set(attr: str):
    def callback(ctx, param, value):
        check_not_empty(param, value)
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
        click.option("--timeout", "timeout", type=SECONDS, metavar="SECONDS", expose_value=False,
                     callback=_set("timeout"), help="Server request timeout per attempt [env: EVENTODB_TIMEOUT; default 30]."),
        click.option("-v", "--verbose", "verbose", is_flag=True, expose_value=False,
                     callback=_set("verbose"), help="Log requests to stderr (never tokens)."),
    ]
    for o in reversed(opts):
        f = o(f)
    return f


FORMAT_KEY = "eventodb.format"


def _format_default(ctx, param, value):
    """``eventodb --format json stream get X`` is ``eventodb stream get X --format json``."""
    if value is None:
        value = ctx.find_root().meta.get(FORMAT_KEY)
    return value


def format_option(f):
    return click.option(
        "--format", "-o", "fmt", type=click.Choice(FORMATS), default=None,
        callback=_format_default,
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
