"""``eventodb category get``: a category, or one consumer-group member's share of it."""

from __future__ import annotations

import click

from .common import (INT64, NON_NEGATIVE, POSITIVE, check_batch_size, check_group,
                     complete_category, examples, format_option, get_store, out_format,
                     target_options)


@click.group()
def category():
    """Read a category, or a consumer-group member's share of it."""


@category.command("get")
@click.argument("name", metavar="CATEGORY", shell_complete=complete_category)
@click.option("--position", "-p", type=NON_NEGATIVE, default=1, show_default=True, metavar="N",
              help="First global position to read.")
@click.option("--batch-size", "-n", type=INT64, default=1000, show_default=True,
              help="Messages to read (-1: unlimited).")
@click.option("--correlation", metavar="CATEGORY",
              help="Only messages whose metadata.correlationStreamName is in CATEGORY.")
@click.option("--member", type=NON_NEGATIVE, default=None, metavar="M", help="Consumer-group member.")
@click.option("--size", type=POSITIVE, default=None, metavar="N", help="Consumer-group size.")
@click.option("--all", "read_all", is_flag=True, help="Page until the end of the category.")
@format_option
@target_options
@examples(
    "eventodb category get account",
    "eventodb category get account --member 0 --size 3 --batch-size 100",
    "eventodb category get account --member 1 --size 4 --all --format ndjson > share-1.ndjson",
)
def category_get(name, position, batch_size, correlation, member, size, read_all, fmt):
    """Print messages of CATEGORY in global position order ("" = every stream).

    With --member M --size N, only the streams that member M of a group of N reads: Message
    DB's hash of the cardinal id (account-123+retry goes with account-123).
    """
    check_group(member, size)
    limit = check_batch_size(batch_size)
    fmt = out_format(fmt)
    from ..render import emit_messages

    with get_store() as store:
        if read_all:
            msgs = store.iter_category(name, position, limit or 1000, correlation or None,
                                       member, size)
        else:
            msgs = store.category_get(name, position, limit, correlation or None, member, size)
        emit_messages(msgs, fmt, wire="category")
