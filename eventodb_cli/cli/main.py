"""The ``eventodb`` command: a lazily loaded click group and the error boundary.

Command modules are imported only when their command runs, so ``eventodb stream version X``
pays for click, sqlite3 and the local store, nothing more.
"""

from __future__ import annotations

import importlib
import os
import sys

import click

from .. import __version__

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

    def get_command(self, ctx, name):
        entry = COMMANDS.get(name)
        if entry is None or not _module_exists(entry[0]):
            return None
        module = importlib.import_module(f"{__package__}.{entry[0]}")
        return getattr(module, entry[1])

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


def _global_flag(var: str):
    def callback(ctx, param, value):
        if value:
            os.environ[var] = "1"
        return value

    return callback


@click.group(cls=LazyGroup, invoke_without_command=True,
             context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, "-V", "--version", prog_name="eventodb")
@click.option("--no-color", is_flag=True, expose_value=False, is_eager=True,
              callback=_global_flag("NO_COLOR"), help="No colours (also: NO_COLOR=1).")
@click.option("-q", "--quiet", is_flag=True, expose_value=False, is_eager=True,
              callback=_global_flag("EVENTODB_QUIET"),
              help="No progress bars or notes on stderr (also: EVENTODB_QUIET=1).")
@click.pass_context
def cli(ctx):
    """Operations toolkit for EventoDB, the Message DB-compatible message store.

    Works on a local store (one SQLite file, the default) or on an EventoDB server (--url).
    """
    if ctx.invoked_subcommand is None:
        click.echo(ctx.get_help())
        click.echo()
        click.echo(OVERVIEW, nl=False)


def main(argv=None) -> None:
    """Entry point of the ``eventodb`` executable."""
    cli.main(args=argv, prog_name="eventodb")


def run_guarded(group: click.Group, args, prog_name, standalone_mode: bool, **extra) -> int:
    """Run click, turn our errors into one line on stderr and the documented exit code."""
    from ..errors import EXIT_FAILED, EventoError

    try:
        rv = click.Group.main(group, args=args, prog_name=prog_name, standalone_mode=False,
                              **extra)
        code = rv if isinstance(rv, int) else 0
    except click.exceptions.Abort:
        click.echo("eventodb: aborted", err=True)
        code = 130
    except click.ClickException as e:
        e.show()
        code = e.exit_code
    except click.exceptions.Exit as e:
        code = e.exit_code
    except EventoError as e:
        click.echo(f"eventodb: error: {e.message}", err=True)
        code = e.exit_code
    except BrokenPipeError:
        _silence_stdout()
        code = 0
    except KeyboardInterrupt:
        click.echo("eventodb: interrupted", err=True)
        code = 130
    except Exception as e:  # a bug: one line, the trace only when asked for
        if os.environ.get("EVENTODB_DEBUG"):
            raise
        click.echo(f"eventodb: internal error: {type(e).__name__}: {e} "
                   "(set EVENTODB_DEBUG=1 for a traceback)", err=True)
        code = EXIT_FAILED
    try:
        sys.stdout.flush()
    except BrokenPipeError:
        _silence_stdout()
    if standalone_mode:
        sys.exit(code)
    return code


def _silence_stdout() -> None:
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except OSError:
        pass
