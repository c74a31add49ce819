"""``eventodb assign``: the member of each stream, with the working shown."""

from __future__ import annotations

import sys

import click

from ..errors import UsageError
from .common import POSITIVE, examples, format_option, out_format


@click.command()
@click.argument("streams", nargs=-1, metavar="[STREAM ... | -]")
@click.option("--size", "-s", type=POSITIVE, required=True, metavar="N", help="Consumer-group size.")
@format_option
@examples(
    "eventodb assign account-123 account-123+retry account-456 --size 4",
    "eventodb ns streams --format ndjson | jq -r .stream | eventodb assign - --size 8",
)
def assign(streams, size, fmt):
    """Show which member of a group of N reads each STREAM, and why.

    member = abs(hash64(cardinal id)) % N, where hash64 is the first 8 bytes of MD5 read as a
    signed big-endian integer (Message DB). Streams come from the arguments or, with -, one per
    line on stdin. A stream without an id belongs to no member.
    """
    if size < 1:
        raise UsageError(f"--size must be >= 1 (got {size})")
    names = list(streams)
    if names == ["-"] or not names:
        if not names and sys.stdin.isatty():
            raise UsageError("give STREAM arguments, or - to read stream names from stdin")
        names = [line.rstrip("\r\n") for line in sys.stdin if line.rstrip("\r\n")]
    elif "-" in names:
        raise UsageError("- (stdin) cannot be mixed with STREAM arguments")
    fmt = out_format(fmt)
    from ..render import emit_rows
    from ..services.assignment import explain

    rows = (explain(n, size) for n in names)
    if fmt == "table":
        rows = [dict(r, why=_why(r)) for r in rows]
        emit_rows(rows, fmt, ["stream", "category", "cardinalId", "hash64", "member", "why"])
    else:
        emit_rows(rows, fmt)


def _why(r: dict) -> str:
    if r["cardinalId"] is None:
        return "no id: no member"
    return f"abs({r['hash64']}) % {r['size']} = {r['member']}"
