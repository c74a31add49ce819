"""``eventodb write``: one message, or many from NDJSON (``--file``)."""

from __future__ import annotations

import os
import sys

import click

from ..errors import UsageError
from .common import (complete_stream, examples, format_option, get_store, out_format,
                     read_json_arg, target_options)


@click.command()
@click.argument("stream", required=False, shell_complete=complete_stream)
@click.option("--type", "-t", "mtype", metavar="TYPE", help="Message type (single write).")
@click.option("--data", "-d", metavar="JSON", help="Message data: JSON, @file or - (stdin). "
              "Default {}.")
@click.option("--metadata", "-m", metavar="JSON", help="Message metadata: JSON, @file or -.")
@click.option("--id", "mid", metavar="UUID", help="Message id (default: a new UUID).")
@click.option("--expected-version", type=int, metavar="N",
              help="Write only if the stream is at version N (-1: stream must not exist). "
                   "Exit 3 on conflict.")
@click.option("--file", "-f", "file", metavar="PATH",
              help="Write NDJSON records from PATH (- for stdin): keys stream, type, data, "
                   "metadata?, id?, expectedVersion?.")
@click.option("--batch-size", type=int, default=1000, show_default=True,
              help="Messages per transaction with --file.")
@click.option("--concurrency", type=int, default=8, show_default=True,
              help="Concurrent requests with --file on a server.")
@click.option("--progress/--no-progress", default=None,
              help="Progress bar with --file [default: on when stderr is a terminal].")
@format_option
@target_options
@examples(
    "eventodb write account-123 --type Deposited --data '{\"amount\":100}'",
    "eventodb write account-123 -t Withdrawn -d @withdrawal.json --expected-version 0",
    "eventodb write --file messages.ndjson --batch-size 5000",
)
def write(stream, mtype, data, metadata, mid, expected_version, file, batch_size, concurrency,
          progress, fmt):
    """Write a message to STREAM, or many messages from NDJSON with --file.

    Prints the position and global position of the message (with --file, a summary).
    Every message gets a client-chosen UUID, so a retried write is never duplicated.
    """
    fmt = out_format(fmt)
    if file is not None:
        if stream or mtype or data or metadata or mid or expected_version is not None:
            raise UsageError("--file takes no STREAM, --type, --data, --metadata, --id or "
                             "--expected-version (they come from each record)")
        if batch_size < 1:
            raise UsageError(f"--batch-size must be >= 1 (got {batch_size})")
        if concurrency < 1:
            raise UsageError(f"--concurrency must be >= 1 (got {concurrency})")
        return _write_file(file, batch_size, concurrency, progress, fmt)
    if not stream:
        raise UsageError("missing STREAM (or --file PATH)")
    if not mtype:
        raise UsageError("missing --type")
    from ..domain.message import new_message

    try:
        msg = new_message(stream, mtype, read_json_arg(data, "--data"),
                          read_json_arg(metadata, "--metadata"), mid, expected_version)
    except ValueError as e:
        raise UsageError(str(e)) from None
    with get_store(create=True) as store:
        result = store.write(msg)
    from ..render import emit_object

    if fmt == "table":
        click.echo(f"{stream}: position {result.position}, global position "
                   f"{result.global_position}")
    else:
        emit_object({"position": result.position, "globalPosition": result.global_position}, fmt)


def _write_file(path, batch_size, concurrency, progress, fmt):
    from ..render import emit_object
    from ..services.writes import write_ndjson

    if path == "-":
        fh = sys.stdin.buffer
        total = None
    else:
        try:
            fh = open(path, "rb")
        except OSError as e:
            raise UsageError(f"cannot read {path}: {e.strerror}") from None
        total = os.fstat(fh.fileno()).st_size
    if progress is None:
        from ..render import show_progress

        progress = show_progress()
    with get_store(create=True) as store:
        if hasattr(store, "concurrency"):
            store.concurrency = concurrency
        if progress:
            summary = _with_progress(store, fh, batch_size, total)
        else:
            summary = write_ndjson(store, fh, batch_size)
    if fmt == "table":
        click.echo(f"wrote {summary.written} messages in {summary.batches} batches "
                   f"(global positions {summary.first_global_position}.."
                   f"{summary.last_global_position}) in {summary.seconds:.2f}s")
    else:
        emit_object(summary.to_dict(), fmt)


def _with_progress(store, fh, batch_size, total):
    from rich.progress import (BarColumn, DownloadColumn, Progress, TextColumn,
                               TimeRemainingColumn)

    from ..render import console
    from ..services.writes import write_ndjson

    with Progress(TextColumn("writing"), BarColumn(), DownloadColumn(),
                  TextColumn("{task.fields[n]} messages"), TimeRemainingColumn(),
                  console=console(stderr=True), transient=True) as bar:
        task = bar.add_task("write", total=total, n=0)
        return write_ndjson(store, fh, batch_size,
                            on_progress=lambda b, n: bar.update(task, completed=b, n=n))
