"""``eventodb subscribe``: print a server's SSE pokes as NDJSON."""

from __future__ import annotations

import inspect
import sys

import click

from ..errors import UsageError
from .common import NON_NEGATIVE, POSITIVE, check_group, examples, get_target, target_options


@click.command()
@click.option("--stream", "-s", metavar="STREAM", help="Pokes for one stream.")
@click.option("--category", "-c", metavar="CATEGORY", help="Pokes for a category.")
@click.option("--member", type=NON_NEGATIVE, default=None, metavar="M",
              help="Consumer-group member (with --category and --size).")
@click.option("--size", type=POSITIVE, default=None, metavar="N", help="Consumer-group size.")
@click.option("--all", "all_", is_flag=True, help="Pokes for every stream of the namespace.")
@click.option("--position", "-p", type=NON_NEGATIVE, default=0, show_default=True, metavar="P",
              help="Start at P: a stream position (--stream), else a global position.")
@click.option("--count", "-n", type=POSITIVE, default=None, metavar="N",
              help="Stop after N pokes.")
@click.option("--max-reconnects", type=NON_NEGATIVE, default=None, metavar="N",
              help="Give up (exit 5) after N failed reconnects in a row [default: never].")
@target_options
@examples(
    "eventodb subscribe --category account --member 0 --size 4",
    "eventodb subscribe --stream account-123 --position 5 --count 1",
    "eventodb subscribe --all | jq -r .stream",
)
@(lambda f: setattr(f, "__doc__", inspect.cleandoc(f.__doc__)) or f)  # before examples()
def subscribe(stream, category, member, size, all_, position, count, max_reconnects):
    """Print pokes {"stream","position","globalPosition"} as NDJSON, one per line.

    Pokes are wake-up calls: read the messages with 'stream get' / 'category get'. When the
    connection drops, it reconnects with backoff and resumes after the last poke printed: no
    gap, no repeat.
    """
    if (stream is not None) + (category is not None) + all_ != 1:
        raise UsageError("give one of --stream, --category or --all")
    if (member is not None or size is not None) and category is None:
        raise UsageError("--member/--size go with --category")
    check_group(member, size)
    if count is not None and count < 1:
        raise UsageError(f"--count must be >= 1 (got {count})")
    if position < 0:
        raise UsageError(f"--position must be >= 0 (got {position})")
    from ..render import dumps
    from ..store.resolve import require_remote

    out = sys.stdout
    with require_remote(get_target(), "subscribe") as store:
        pokes = store.pokes(stream=stream, category=category, all=all_, position=position,
                            member=member, size=size, max_reconnects=max_reconnects)
        try:
            n = 0
            for poke in pokes:
                out.write(dumps(poke) + "\n")
                out.flush()
                n += 1
                if count is not None and n >= count:
                    break
        finally:
            pokes.close()
