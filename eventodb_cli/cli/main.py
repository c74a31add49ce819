"""The ``eventodb`` command: a lazily loaded click group and the error boundary.

Command modules are imported only when their command runs, so ``eventodb stream version X``
pays for click, sqlite3 and the local store, nothing more.
"""

from __future__ import annotations

import errno
import importlib
import io
import os
import sys

import click

from .. import __version__
from ..render import FORMATS
from .common import target_options

# name -> (module, attribute, section, one-line help). One entry per command; a module that does
# not exist yet is left out of the listing.
COMMANDS: dict[str, tuple[str, str, str, str]] = {
    "write": ("write", "write", "Messages", "Write a message, or many from NDJSON."),
    "stream": ("stream", "stream", "Messages", "Read a stream: get, last, version."),
    "category": ("category", "category", "Messages", "Read a category, or a member's share."),
    "subscribe": ("subscribe", "subscribe", "Messages", "Print SSE pokes as NDJSON."),
    "assign": ("assign", "assign", "Consumer groups", "Which member owns each stream, and why."),
    "verify-groups": ("groups", "verify_groups", "Consumer groups",
                      "Check a group partitions a category."),
    "simulate-scale": ("groups", "simulate_scale", "Consumer groups",
                       "Plan a change of group size."),
    "lag": ("lag", "lag", "Consumer groups", "How far behind each member is."),
    "consume": ("consume", "consume", "Consumer groups",
                "Run a member: checkpoints, idempotency, follow."),
    "group": ("group", "group", "Consumer groups",
              "Groups' positions in the store: list, describe, reset."),
    "export": ("transfer", "export", "Data", "Export messages as EventoDB NDJSON."),
    "import": ("transfer", "import_", "Data", "Import an EventoDB NDJSON export."),
    "store": ("store", "store", "Data", "Local store: info, check, compact."),
    "serve": ("serve", "serve", "Servers", "Run the EventoDB HTTP API over local stores."),
    "ns": ("ns", "ns", "Servers", "Namespaces on a server."),
    "server": ("server", "server", "Servers", "Server version and health."),
    "profile": ("profile", "profile", "Setup", "Named targets (url, token)."),
    "completion": ("completion", "completion", "Setup", "Print shell completion scripts."),
}


def _module_exists(mod: str) -> bool:
    here = os.path.dirname(__file__)
    return os.path.exists(os.path.join(here, mod + ".py"))


class LazyGroup(click.Group):
    def main(self, args=None, prog_name=None, complete_var=None, standalone_mode=True, **extra):
        if complete_var is not None:
            extra["complete_var"] = complete_var
        return run_guarded(self, args, prog_name, standalone_mode, **extra)

    def list_commands(self, ctx):
        return [n for n, (mod, *_rest) in COMMANDS.items() if _module_exists(mod)]

    def get_help_option(self, ctx):
        return _help_option(self, ctx)

    def get_command(self, ctx, name):
        entry = COMMANDS.get(name)
        if entry is None or not _module_exists(entry[0]):
            return None
        module = importlib.import_module(f"{__package__}.{entry[0]}")
        return _with_output_options(getattr(module, entry[1]))

    def invoke(self, ctx):
        # click turns a broken pipe into ``sys.exit(1)`` even outside standalone mode: hand it
        # to run_guarded as its own type instead (a reader that stopped early is no failure)
        try:
            return super().invoke(ctx)
        except OSError as e:
            if e.errno == errno.EPIPE:
                raise StdoutClosed() from None
            raise

    def format_commands(self, ctx, formatter):
        sections: dict[str, list[tuple[str, str]]] = {}
        for name in self.list_commands(ctx):
            _mod, _attr, section, short = COMMANDS[name]
            sections.setdefault(section, []).append((name, short))
        for section, rows in sections.items():
            with formatter.section(section):
                formatter.write_dl(rows)


OVERVIEW = """\
Common tasks:
  eventodb write account-123 --type Deposited --data '{"amount":100}'
  eventodb category get account --member 0 --size 3      read as a group member
  eventodb assign account-123 --size 3                   who owns a stream, and why
  eventodb verify-groups account --size 3                no overlap, no gaps
  eventodb simulate-scale account --from 3 --to 4        what moves when you scale
  eventodb lag account --size 3 --checkpoints ckpt/      how far behind each member is
  eventodb serve                                         an EventoDB server on 127.0.0.1

Targets: a local store (--store PATH, the default) or a server (--url URL --token T, or
--profile NAME). Run 'eventodb COMMAND --help' for a command's options and examples.
"""


class StdoutClosed(Exception):
    """Standard output was closed by its reader (``| head -1``) or never open (``>&-``)."""


def _global_flag(var: str):
    def callback(ctx, param, value):
        if value:
            os.environ[var] = "1"
        return value

    return callback


def _output_options() -> list[click.Option]:
    """--no-color and -q: accepted by the root and by every command (before or after it)."""
    return [
        click.Option(["--no-color"], is_flag=True, expose_value=False, is_eager=True,
                     callback=_global_flag("NO_COLOR"), help="No colours (also: NO_COLOR=1)."),
        click.Option(["-q", "--quiet"], is_flag=True, expose_value=False, is_eager=True,
                     callback=_global_flag("EVENTODB_QUIET"),
                     help="No progress bars or notes on stderr (also: EVENTODB_QUIET=1)."),
    ]


def _with_output_options(cmd: click.Command) -> click.Command:
    """Give ``cmd`` (and every subcommand of a group) --no-color and -q, once."""
    if not getattr(cmd, "_eventodb_output_options", False):
        have = {o for p in cmd.params for o in getattr(p, "opts", [])}
        cmd.params.extend(p for p in _output_options() if not have & set(p.opts))
        cmd._eventodb_output_options = True
        _name_context_in_usage_errors(cmd)
        cmd.get_help_option = lambda ctx, cmd=cmd: _help_option(cmd, ctx)
    for sub in getattr(cmd, "commands", {}).values():
        _with_output_options(sub)
    return cmd


HELP_TEXT = "Show this message and exit."


def _show_help(ctx, param, value):
    if value and not ctx.resilient_parsing:
        click.echo(ctx.get_help(), color=ctx.color)
        ctx.exit()


def _help_option(cmd: click.Command, ctx: click.Context) -> click.Option | None:
    """``cmd``'s -h/--help option, as ``click.Command.get_help_option`` makes it (same names,
    same text, after every other parameter, built once per command) but without passing its
    text through gettext: the first gettext call imports ``locale`` and looks for message
    catalogs (~0.8 ms of every start) for a text nothing translates (click ships no catalogs
    and this program binds none)."""
    names = cmd.get_help_option_names(ctx)
    if not names or not cmd.add_help_option:
        return None
    opt = cmd.__dict__.get("_eventodb_help_option")
    if opt is None:
        opt = click.Option([*names, "_eventodb_help"], is_flag=True, expose_value=False,
                           is_eager=True, help=HELP_TEXT, callback=_show_help)
        cmd._eventodb_help_option = opt
    return opt


def _name_context_in_usage_errors(cmd: click.Command) -> None:
    """Some of click's parser errors (``--position`` without a value) carry no context; give
    them the command's, so the one-line error can point at its --help."""
    parse = cmd.parse_args

    def parse_args(ctx, args):
        try:
            return parse(ctx, args)
        except click.UsageError as e:
            if e.ctx is None:
                e.ctx = ctx
            raise

    cmd.parse_args = parse_args


def _show_version(ctx, param, value):
    """``eventodb --version``: what ``click.version_option`` prints, without its gettext calls
    (see _help_option)."""
    if value and not ctx.resilient_parsing:
        click.echo(f"eventodb, version {__version__}", color=ctx.color)
        ctx.exit()


def _root_format(ctx, param, value):
    if value is not None:
        from .common import FORMAT_KEY

        ctx.meta[FORMAT_KEY] = value
    return value


@click.group(cls=LazyGroup, invoke_without_command=True,
             context_settings={"help_option_names": ["-h", "--help"]})
@click.option("-V", "--version", is_flag=True, expose_value=False, is_eager=True,
              callback=_show_version, help="Show the version and exit.")
@target_options
@click.option("--format", "-o", "fmt", type=click.Choice(FORMATS), default=None,
              expose_value=False, callback=_root_format,
              help="Output format of commands that take --format.")
@click.pass_context
def cli(ctx):
    """Operations toolkit for EventoDB, the Message DB-compatible message store.

    Works on a local store (one SQLite file, the default) or on an EventoDB server (--url).
    """
    if ctx.invoked_subcommand is None:
        click.echo(ctx.get_help())
        click.echo()
        click.echo(OVERVIEW, nl=False)


cli.params.extend(_output_options())
_name_context_in_usage_errors(cli)


def main(argv=None) -> None:
    """Entry point of the ``eventodb`` executable."""
    _skip_collection_at_exit()
    cli.main(args=argv, prog_name="eventodb")


def _skip_collection_at_exit() -> None:
    """The interpreter's shutdown runs full garbage collections over every object still alive
    (click's, typing's, ours): ~4-5 ms of a ~45 ms command, more than all our own imports.
    ``gc.freeze()`` from an atexit handler moves them out of the collector's reach first.
    Registered when main() starts, it runs after the atexit handlers the command registers
    (LIFO); those registered earlier still run after it. weakref.finalize callbacks (temporary
    directories) run, stdout/stderr are flushed and objects freed by reference counting are
    finalized as before; what is skipped are finalizers of objects left in reference cycles at
    exit, which Python does not promise to run. Only the executable's entry point does this:
    ``cli.main`` (CliRunner, library callers) leaves the collector alone."""
    global _exit_hook_registered
    if _exit_hook_registered:  # main() called again in one process (a test, a wrapper)
        return
    import atexit
    import gc

    atexit.register(gc.freeze)
    _exit_hook_registered = True


_exit_hook_registered = False


def run_guarded(group: click.Group, args, prog_name, standalone_mode: bool, **extra) -> int:
    """Run click, turn our errors into one line on stderr and the documented exit code."""
    from ..errors import EXIT_FAILED, EXIT_USAGE, EventoError

    _guard_std_streams()
    try:
        rv = click.Group.main(group, args=args, prog_name=prog_name, standalone_mode=False,
                              **extra)
        code = rv if isinstance(rv, int) else 0
    except click.exceptions.Abort:
        click.echo("eventodb: aborted", err=True)
        code = 130
    except click.UsageError as e:
        if type(e).__name__ == "NoArgsIsHelpError":  # ``eventodb stream``: the group's help
            e.show()
        else:
            _error(usage_message(e))
        code = EXIT_USAGE
    except click.ClickException as e:
        _error(e.format_message())
        code = e.exit_code
    except click.exceptions.Exit as e:
        code = e.exit_code
    except EventoError as e:
        _error(e.message)
        code = e.exit_code
    except (BrokenPipeError, StdoutClosed):
        _silence_stdout()
        code = 0  # the reader stopped early (| head): quietly done
    except KeyboardInterrupt:
        click.echo("eventodb: interrupted", err=True)
        code = 130
    except OSError as e:  # a path the user gave that cannot be used
        if e.errno == errno.EPIPE:
            _silence_stdout()
            code = 0
        else:
            _error(os_error_text(e))
            code = EXIT_USAGE if e.filename is not None and e.errno in _PATH_ERRNOS \
                else EXIT_FAILED
    except UnicodeError as e:  # a byte that is not UTF-8 in an argument (surrogateescape)
        _error(_unicode_text(e))
        code = EXIT_USAGE if _argv_has_surrogates(args) else EXIT_FAILED
    except ValueError as e:
        if "embedded null" not in str(e):  # a NUL in a path (from a config, a file, CliRunner)
            code = _internal_error(e)
        else:
            _error("a path or name contains a NUL character")
            code = EXIT_USAGE
    except Exception as e:  # a bug: one line, the trace only when asked for
        code = _internal_error(e)
    code = _flush_stdout(code)
    if standalone_mode:
        sys.exit(code)
    return code


# a path the user gave that cannot be used (exit 2); a full disk, an I/O error... are exit 1
_PATH_ERRNOS = {errno.ENOENT, errno.ENOTDIR, errno.EISDIR, errno.EACCES, errno.EPERM,
                errno.ENAMETOOLONG, errno.EEXIST, errno.ELOOP, errno.EINVAL, errno.EROFS}


def _unicode_text(e: UnicodeError) -> str:
    if isinstance(e, UnicodeEncodeError):
        bad = e.object[e.start:e.end]
        try:
            return f"not valid UTF-8: bytes {bad.encode('utf-8', 'surrogateescape')!r} (a name, " \
                   "value or path must be UTF-8 text)"
        except UnicodeError:
            return f"not valid UTF-8: lone surrogate {bad!r}"
    return f"not valid UTF-8: {e}"


def _argv_has_surrogates(args) -> bool:
    argv = sys.argv[1:] if args is None else args
    return any(isinstance(a, str) and any("\ud800" <= ch <= "\udfff" for ch in a)
               for a in argv)


def _internal_error(e: Exception) -> int:
    """A bug: one line, the trace only when asked for (EVENTODB_DEBUG=1)."""
    from ..errors import EXIT_FAILED
    from ..render import safe_text

    if os.environ.get("EVENTODB_DEBUG"):
        raise e
    click.echo(safe_text(f"eventodb: internal error: {type(e).__name__}: {e} ")
               + "(set EVENTODB_DEBUG=1 for a traceback)", err=True)
    return EXIT_FAILED


def _error(message: str) -> None:
    """The one error line: what the user typed or a server said is shown with its control
    characters escaped, so the error stays one line and cannot drive the terminal."""
    from ..render import safe_text

    click.echo(f"eventodb: error: {safe_text(str(message))}", err=True)


def usage_message(e: click.UsageError) -> str:
    """click's three-line usage error as one line, with the hint to --help:
    ``--size must be >= 1 (got 0) (see 'eventodb category get --help')``."""
    if isinstance(e, click.BadParameter) and not isinstance(e, click.MissingParameter):
        hint = e.param_hint
        if hint is None and e.param is not None:
            opts = [o for o in getattr(e.param, "opts", []) if o.startswith("--")] or \
                getattr(e.param, "opts", None) or [e.param.name or "value"]
            hint = opts[0] if e.param.param_type_name == "option" else \
                (e.param.human_readable_name or "").upper()
        elif isinstance(hint, (list, tuple)):
            hint = hint[0]
        text = e.message.rstrip(".")
        sep = " " if text.startswith(("must ", "does not ")) else ": "
        msg = f"{hint}{sep}{text}" if hint else text
    else:
        msg = e.format_message().rstrip(".")
    msg = " ".join(msg.split())  # one line, whatever click put in
    if e.ctx is not None:
        msg += f" (see '{e.ctx.command_path} --help')"
    return msg


def os_error_text(e: OSError) -> str:
    """``cannot use /etc/passwd/x.db: Not a directory`` (one line, no errno noise)."""
    what = e.strerror or type(e).__name__
    if e.errno == errno.ENOSPC:
        return "disk full: " + (f"{e.filename}" if e.filename else what)
    if e.filename is not None:
        return f"cannot use {e.filename}: {what}"
    return what


# --- standard streams ----------------------------------------------------------------------------
class _ClosedInput(io.TextIOBase):
    """sys.stdin when standard input is closed (``<&-``): reading is a usage error."""

    def readable(self):
        return True

    def isatty(self):
        return False

    def _closed(self, *args, **kw):
        from ..errors import UsageError

        raise UsageError("standard input is closed (nothing to read from -)")

    read = readline = readlines = read1 = readinto = _closed

    def __iter__(self):
        return self

    def __next__(self):
        self._closed()

    @property
    def buffer(self):
        return self

    def fileno(self):
        return 0


class _ClosedOutput(io.TextIOBase):
    """sys.stdout when standard output is closed (``>&-``): writing is a broken pipe."""

    def writable(self):
        return True

    def isatty(self):
        return False

    def write(self, data):
        raise BrokenPipeError(errno.EPIPE, "standard output is closed")

    writelines = write

    def flush(self):
        pass

    @property
    def buffer(self):
        return self

    def fileno(self):
        return 1


def _fd_closed(fd: int) -> bool:
    try:
        os.fstat(fd)
        return False
    except OSError:
        return True


def _hold_fd(fd: int, flags: int) -> None:
    """Put /dev/null on a closed descriptor so no file the command opens can take its place
    (a store opened as fd 1 would receive the output)."""
    try:
        null = os.open(os.devnull, flags)
        if null != fd:
            os.dup2(null, fd)
            os.close(null)
    except OSError:
        pass


def _guard_std_streams() -> None:
    """Closed standard streams get stand-ins: no AttributeError on None, ever."""
    if sys.stdin is None or _fd_closed(0) and _is_real(sys.stdin, 0):
        _hold_fd(0, os.O_RDONLY)
        sys.stdin = _ClosedInput()
    if sys.stdout is None or _fd_closed(1) and _is_real(sys.stdout, 1):
        _hold_fd(1, os.O_WRONLY)
        sys.stdout = _ClosedOutput()
    if sys.stderr is None or _fd_closed(2) and _is_real(sys.stderr, 2):
        _hold_fd(2, os.O_WRONLY)
        sys.stderr = open(os.devnull, "w", encoding="utf-8")


def _is_real(stream, fd: int) -> bool:
    """Is ``stream`` the process's own descriptor ``fd`` (not a test runner's stand-in)?"""
    try:
        return stream.fileno() == fd
    except (OSError, ValueError, AttributeError):
        return False


def _flush_stdout(code: int) -> int:
    """Flush what is left. A reader that went away meanwhile is no failure; an output that cannot
    be written (``>/dev/full``) is. Either way stdout becomes /dev/null, so Python's own flush at
    exit cannot print a traceback."""
    try:
        sys.stdout.flush()
    except (BrokenPipeError, StdoutClosed):
        _silence_stdout()
    except OSError as e:
        _silence_stdout()
        if e.errno != errno.EPIPE:
            _error(f"cannot write the output: {e.strerror}")
            if code == 0:
                code = 1
    except ValueError:  # stdout was closed by the command
        pass
    return code


def _silence_stdout() -> None:
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError, io.UnsupportedOperation):
        pass
