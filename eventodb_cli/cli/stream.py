"""``eventodb stream get|last|version``."""

from __future__ import annotations

import click

from ..errors import UsageError
from .common import (INT64, NON_NEGATIVE, check_batch_size, complete_stream, examples,
                     format_option, get_store, out_format, target_options)


@click.group()
def stream():
    """Read a stream: its messages, its last message, its version."""


@stream.command("get")
@click.argument("name", metavar="STREAM", shell_complete=complete_stream)
@click.option("--position", "-p", type=NON_NEGATIVE, default=None, metavar="N",
              help="First stream position to read (default 0).")
@click.option("--global-position", "-g", type=NON_NEGATIVE, default=None, metavar="N",
              help="Only messages with global position >= N.")
@click.option("--batch-size", "-n", type=INT64, default=1000, show_default=True,
              help="Messages to read (-1: unlimited).")
@click.option("--all", "read_all", is_flag=True, help="Page until the end of the stream.")
@format_option
@target_options
@examples(
    "eventodb stream get account-123",
    "eventodb stream get account-123 --position 10 --batch-size 5 --format json",
    "eventodb stream get account-123 --all --format ndjson | jq .data",
)
def stream_get(name, position, global_position, batch_size, read_all, fmt):
    """Print the messages of STREAM in position order."""
    if position is not None and global_position is not None:
        raise UsageError("give --position or --global-position, not both")
    limit = check_batch_size(batch_size)
    fmt = out_format(fmt)
    from ..render import emit_messages

    with get_store() as store:
        if read_all:
            msgs = store.iter_stream(name, position or 0, global_position, limit or 1000)
        else:
            msgs = store.stream_get(name, position or 0, global_position, limit)
        emit_messages(msgs, fmt, wire="stream")


@stream.command("last")
@click.argument("name", metavar="STREAM", shell_complete=complete_stream)
@click.option("--type", "-t", "mtype", metavar="TYPE", help="Last message of this type.")
@format_option
@target_options
@examples(
    "eventodb stream last account-123",
    "eventodb stream last account-123 --type Deposited --format json",
)
def stream_last(name, mtype, fmt):
    """Print the last message of STREAM (json: the message object, or null)."""
    fmt = out_format(fmt)
    from ..render import emit_message_or_null

    with get_store() as store:
        emit_message_or_null(store.stream_last(name, mtype or None), fmt, wire="stream")


@stream.command("version")
@click.argument("name", metavar="STREAM", shell_complete=complete_stream)
@format_option
@target_options
@examples(
    "eventodb stream version account-123",
    "v=$(eventodb stream version account-123 --format json)  # a number, or null",
)
def stream_version(name, fmt):
    """Print the version of STREAM: its last position (json: a number, or null)."""
    fmt = out_format(fmt)
    from ..render import emit_value

    with get_store() as store:
        v = store.stream_version(name)
    emit_value(v, fmt, text="(no stream)" if v is None and fmt == "table" else None)
