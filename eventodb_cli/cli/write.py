"""``eventodb write``: one message, or many from NDJSON (``--file``)."""

from __future__ import annotations

import os
import sys

import click

from ..errors import EventoError, UsageError
from .common import INT64, complete_stream, examples, format_option, get_store, get_target, \
    out_format, target_options

# Bounds of the --file options: one batch is parsed in memory and written in one transaction
# (local) or as that many requests (server); beyond these a value is a typo, not a plan.
MAX_BATCH_SIZE = 1_000_000
MAX_CONCURRENCY = 256
# a local batch is one transaction: 10,000 makes the commit cost a fraction of the inserts
DEFAULT_BATCH_SIZE = 10_000


@click.command()
@click.argument("stream", required=False, shell_complete=complete_stream)
@click.option("--type", "-t", "mtype", metavar="TYPE", help="Message type (single write).")
@click.option("--data", "-d", metavar="JSON", help="Message data: JSON, @file or - (stdin). "
              "Default {}.")
@click.option("--metadata", "-m", metavar="JSON", help="Message metadata: JSON, @file or -.")
@click.option("--id", "mid", metavar="UUID", help="Message id (default: a new UUID).")
@click.option("--expected-version", type=click.IntRange(-1, INT64.max), metavar="N",
              help="Write only if the stream is at version N (-1: stream must not exist). "
                   "Exit 3 on conflict.")
@click.option("--file", "-f", "file", metavar="PATH",
              help="Write NDJSON records from PATH (- for stdin): keys stream, type, data, "
                   "metadata?, id?, expectedVersion?.")
@click.option("--resume", is_flag=True,
              help="With --file PATH: finish an interrupted run of the same file, writing "
                   "each line exactly once (not for stdin).")
@click.option("--batch-size", type=click.IntRange(1, MAX_BATCH_SIZE), default=DEFAULT_BATCH_SIZE,
              show_default=True, help="Messages per transaction with --file.")
@click.option("--concurrency", type=click.IntRange(1, MAX_CONCURRENCY), default=8,
              show_default=True, help="Concurrent requests with --file on a server.")
@click.option("--progress/--no-progress", default=None,
              help="Progress bar with --file [default: on when stderr is a terminal].")
@format_option
@target_options
@examples(
    "eventodb write account-123 --type Deposited --data '{\"amount\":100}'",
    "eventodb write account-123 -t Withdrawn -d @withdrawal.json --expected-version 0",
    "eventodb write --file messages.ndjson --batch-size 5000",
    "eventodb write --file messages.ndjson --resume      # after an interruption",
)
def write(stream, mtype, data, metadata, mid, expected_version, file, resume, batch_size,
          concurrency, progress, fmt):
    """Write a message to STREAM, or many messages from NDJSON with --file.

    Prints the position and global position of the message (with --file, a summary).
    Every message gets a client-chosen UUID, so a retried write is never duplicated.
    An interrupted --file run (Ctrl-C, a kill, a lost connection) is finished by running it
    again with --resume: every line is then written exactly once.
    """
    fmt = out_format(fmt)
    if file is not None:
        if stream or mtype or data or metadata or mid or expected_version is not None:
            raise UsageError("--file takes no STREAM, --type, --data, --metadata, --id or "
                             "--expected-version (they come from each record)")
        if resume and file == "-":
            raise UsageError("--resume needs a file: stdin cannot be read again")
        return _write_file(file, resume, batch_size, concurrency, progress, fmt)
    if resume:
        raise UsageError("--resume goes with --file PATH")
    if not stream:
        raise UsageError("missing STREAM (or --file PATH)")
    if not mtype:
        raise UsageError("missing --type")
    from ..domain.message import new_message

    try:
        msg = new_message(stream, mtype, _json_arg(data, "--data"),
                          _json_arg(metadata, "--metadata"), mid, expected_version)
    except ValueError as e:
        raise UsageError(str(e)) from None
    with get_store(create=True) as store:
        result = store.write(msg)
    from ..render import emit_object

    what = (f"the message was written ({stream} position {result.position}, global position "
            f"{result.global_position})")
    with output_after_write(what):
        if fmt == "table":
            click.echo(f"{stream}: position {result.position}, global position "
                       f"{result.global_position}")
        else:
            emit_object({"position": result.position,
                         "globalPosition": result.global_position}, fmt)


class output_after_write:
    """Printing the result of a write that has happened: if stdout fails (a full disk,
    ``>/dev/full``, an I/O error), say on stderr in one line that the write happened and exit 0,
    so a script that retries on failure does not write it twice. A closed pipe stays quiet."""

    def __init__(self, what: str):
        self.what = what

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        if exc is None:
            try:
                sys.stdout.flush()
                return False
            except BrokenPipeError:
                raise
            except OSError as e:
                exc = e
        if isinstance(exc, BrokenPipeError) or not isinstance(exc, OSError):
            return False
        _drop_stdout()
        click.echo(f"eventodb: warning: {self.what}, but printing the result failed: "
                   f"{exc.strerror or exc}", err=True)
        return True


def _drop_stdout() -> None:
    """After stdout failed: discard what is buffered so no later flush fails again."""
    try:
        fd = sys.stdout.fileno()
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, fd)
        os.close(devnull)
        sys.stdout.flush()
    except (OSError, ValueError, AttributeError):
        pass


def _json_arg(value, what):
    """A JSON argument (literal, ``@file`` or ``-``) parsed by domain/strictjson: NaN, Infinity,
    1e999, lone surrogates and over-long integers are usage errors (exit 2), like bad JSON."""
    if value is None:
        return None
    from ..domain import strictjson

    text = value
    if value == "-":
        if sys.stdin is None:
            raise UsageError(f"{what} -: stdin is closed")
        try:
            text = sys.stdin.read()
        except (OSError, ValueError) as e:
            raise UsageError(f"{what} -: cannot read stdin: {e}") from None
    elif value.startswith("@"):
        path = value[1:]
        try:
            with open(path, "rb") as fh:
                text = fh.read()
        except OSError as e:
            raise UsageError(f"{what}: cannot read {path}: {e.strerror}") from None
    try:
        return strictjson.loads(text)
    except ValueError as e:
        raise UsageError(f"{what} is not valid JSON: {strictjson.error_text(e)}") from None


def resume_command(file: str, batch_size: int, concurrency: int) -> str:
    """The command line that finishes this run (the target as given; never the token)."""
    import shlex

    from ..store.resolve import is_postgres_url, split_postgres_password, split_url_credentials

    t = get_target()
    words = ["eventodb", "write", "--file", file, "--resume"]
    secret = bool(t.token)
    if t.store:
        words += ["--store", t.store]
    if t.url:  # a password or token inside the URL is never printed
        if is_postgres_url(t.url):
            url, in_url = split_postgres_password(t.url)
            url = _masked_query_password(url)
        else:
            url, in_url = split_url_credentials(t.url)
        secret = secret or bool(in_url) or url != t.url
        words += ["--url", url]
    if t.profile:
        words += ["--profile", t.profile]
    if t.token_file:
        words += ["--token-file", t.token_file]
    if batch_size != DEFAULT_BATCH_SIZE:
        words += ["--batch-size", str(batch_size)]
    if concurrency != 8:
        words += ["--concurrency", str(concurrency)]
    text = shlex.join(words)
    return text + (" (with the same --token or password)" if secret else "")


def _masked_query_password(url: str) -> str:
    import re

    return re.sub(r"([?&]password=)[^&#]*", r"\1***", url, flags=re.I)


def _write_file(path, resume, batch_size, concurrency, progress, fmt):
    from ..render import emit_object

    if path == "-":
        fh = sys.stdin.buffer if sys.stdin is not None else None
        if fh is None:
            raise UsageError("--file -: stdin is closed")
        total = None
        real = None
        # read the first line before the store is opened (a write creates it): a closed or
        # unreadable stdin fails here, leaving no empty store behind
        import itertools

        first = fh.readline()
        fh = itertools.chain([first], fh) if first else iter(())
    else:
        try:
            fh = open(path, "rb")
        except OSError as e:
            raise UsageError(f"cannot read {path}: {e.strerror}") from None
        st = os.fstat(fh.fileno())
        import stat

        total = st.st_size
        # only a regular file can be read again: a pipe or a device has no resume
        real = os.path.realpath(path) if stat.S_ISREG(st.st_mode) else None
        if resume and real is None:
            raise UsageError(f"--resume needs a regular file ({path} is not)")
    if progress is None:
        from ..render import show_progress

        progress = show_progress()
    box: list = []  # the summary, once the write loop has returned
    try:
        _run_file(fh, path, total, real, resume, batch_size, concurrency, progress, box)
    except KeyboardInterrupt:  # outside the write loop: opening the store, the final fsync
        raise _interrupted_outside(box, path, real, batch_size, concurrency) from None
    summary = box[0]
    what = f"{summary.written} messages were written"
    with output_after_write(what):
        if fmt == "table":
            extra = (f" ({summary.already_written} already written, after line "
                     f"{summary.resumed_after_line})" if summary.resumed else "")
            click.echo(f"wrote {summary.written} messages in {summary.batches} batches "
                       f"(global positions {summary.first_global_position}.."
                       f"{summary.last_global_position}) in {summary.seconds:.2f}s{extra}")
        else:
            emit_object(summary.to_dict(), fmt)


def _run_file(fh, path, total, real, resume, batch_size, concurrency, progress, box) -> None:
    from ..services.writes import write_ndjson

    with _signals_interrupt(), get_store(create=True) as store:
        if hasattr(store, "concurrency"):
            store.concurrency = concurrency
        try:
            if progress:
                summary = _with_progress(store, fh, batch_size, total, real, resume)
            else:
                summary = write_ndjson(store, fh, batch_size, file=real, resume=resume,
                                       warn=_warn)
        except EventoError as e:
            if getattr(e, "resumable", False) and getattr(e, "summary", None) is not None:
                e.message += f"; to write the rest exactly once: " \
                             f"{resume_command(path, batch_size, concurrency)}"
            elif getattr(e, "summary", None) is not None:
                e.message += ("; stdin cannot be resumed" if real is None else
                              "; this run cannot be resumed (its progress was not recorded)")
            if e.code == "INTERRUPTED" and _signals_interrupt.received:
                e.exit_code = 128 + _signals_interrupt.received  # 143 SIGTERM, 129 SIGHUP
            raise
        box.append(summary)


def _interrupted_outside(box, path, real, batch_size, concurrency):
    """A signal that came while the store was opened or, after every line was written, while it
    was made durable: say so, and how to finish (a resume of a finished file writes nothing and
    makes the store durable)."""
    from ..services.writes import Interrupted

    if box:
        text = (f"interrupted: all {box[0].written} messages were written, but the run ended "
                "before the store was made durable")
    else:
        text = "interrupted: 0 messages were written (the run ended before the first line)"
    if real is not None:
        text += f"; to finish exactly once: {resume_command(path, batch_size, concurrency)}"
    err = Interrupted(text)
    if _signals_interrupt.received:
        err.exit_code = 128 + _signals_interrupt.received
    return err


def _warn(text: str) -> None:
    click.echo(f"eventodb: warning: {text}", err=True)


class _signals_interrupt:
    """SIGTERM (and SIGHUP) raise KeyboardInterrupt during a bulk write, as Ctrl-C does, so the
    run ends between two statements and says what it wrote."""

    received: int | None = None  # the signal number, when one arrived

    def __enter__(self):
        import signal
        import threading

        self._old = {}
        type(self).received = None
        if threading.current_thread() is not threading.main_thread():
            return self

        def handler(signum, frame):
            type(self).received = int(signum)
            raise KeyboardInterrupt

        for sig in (signal.SIGTERM, signal.SIGHUP):
            try:
                self._old[sig] = signal.signal(sig, handler)
            except (ValueError, OSError):
                pass
        return self

    def __exit__(self, *exc):
        import signal

        for sig, old in self._old.items():
            try:
                signal.signal(sig, old)
            except (ValueError, OSError):
                pass
        return False


def _with_progress(store, fh, batch_size, total, real, resume):
    from rich.progress import (BarColumn, DownloadColumn, Progress, TextColumn,
                               TimeRemainingColumn)

    from ..render import console
    from ..services.writes import write_ndjson

    with Progress(TextColumn("writing"), BarColumn(), DownloadColumn(),
                  TextColumn("{task.fields[n]} messages"), TimeRemainingColumn(),
                  console=console(stderr=True), transient=True) as bar:
        task = bar.add_task("write", total=total, n=0)
        return write_ndjson(store, fh, batch_size,
                            on_progress=lambda b, n: bar.update(task, completed=b, n=n),
                            file=real, resume=resume, warn=_warn)
