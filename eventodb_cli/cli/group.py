"""``eventodb group list|describe|reset``: consumer groups seen from their position streams.

Flags and rendering only; the work is in services/group_view.py (list, describe),
services/group_reset.py (reset), services/positions.py (names, Recorded messages) and
services/metrics.py (--format prometheus).
"""

from __future__ import annotations

import math
import sys

import click

from ..errors import UsageError
from ..render import FORMATS
from .common import (INT64, NON_NEGATIVE, POSITIVE, _format_default, complete_category, examples,
                     format_option, get_store, out_format, target_options)


@click.group()
def group():
    """Consumer groups whose positions are kept in the store (Eventide position streams
    CATEGORY:position-GROUP-MEMBER): list them, describe a group's members and lag, reset
    their positions."""


def _category(name: str) -> str:
    if not name or "-" in name:
        raise UsageError(f"{name!r} is not a category name (a category is non-empty and has "
                         f"no '-')")
    return name


def _seconds(value: float | None, name: str) -> float | None:
    if value is not None and (not math.isfinite(value) or value < 0):
        raise UsageError(f"{name} must be a finite number >= 0 (got {value})")
    return value


# ===== list =====================================================================================
@group.command("list")
@format_option
@target_options
@examples(
    "eventodb group list",
    "eventodb group list --url http://localhost:8080 --format json",
)
def group_list(fmt):
    """Every consumer group found in the store's position streams: category, group, size,
    members seen, and when the newest position was written (and its age in seconds).

    An Eventide consumer outside a group (stream CATEGORY:position-ID) is listed with its
    identifier and no group.
    """
    fmt = out_format(fmt)
    from ..render import emit_rows
    from ..services import group_view as svc

    with get_store() as store:
        rows = svc.list_groups(store)
    if fmt == "table":
        for r in rows:
            if r["size"] is None and r["recordedSizes"]:
                r["size"] = "/".join(map(str, r["recordedSizes"]))  # mixed: mid hand-over
    emit_rows(rows, fmt, ["category", "group", "identifier", "size", "membersSeen",
                          "newestUpdate", "ageSeconds"])


# ===== describe =================================================================================
@group.command("describe")
@click.argument("category", metavar="CATEGORY", shell_complete=complete_category)
@click.option("--group", "-g", "group_name", metavar="NAME", help="Consumer group name.")
@click.option("--size", "-s", type=POSITIVE, default=None, metavar="N",
              help="Group size [default: the size the positions record].")
@click.option("--identifier", metavar="ID",
              help="One Eventide consumer outside a group: stream CATEGORY:position-ID.")
@click.option("--max-lag", type=NON_NEGATIVE, default=1000, show_default=True, metavar="K",
              help="A member with more than K unprocessed messages is lagging.")
@click.option("--max-lag-seconds", type=float, default=None, metavar="SECONDS",
              help="A member whose oldest unprocessed message is older is lagging.")
@click.option("--stalled-after", type=float, default=None, metavar="SECONDS",
              help="A member with lag and no new position for this long is stalled.")
@click.option("--format", "-o", "fmt", type=click.Choice(FORMATS + ("prometheus",)),
              default=None, callback=_format_default,
              help="Output format [default: table on a terminal, ndjson otherwise]; "
                   "prometheus: the gauges for a textfile collector.")
@target_options
@examples(
    "eventodb group describe account --group billing",
    "eventodb group describe account --group billing --size 4 --url http://localhost:8080",
    "eventodb group describe account --identifier someConsumer --max-lag 0",
    "eventodb group describe account --group billing --max-lag 500 --stalled-after 300 "
    "--format json || alert",
    "eventodb group describe account --group billing --format prometheus "
    "> /var/lib/node_exporter/billing.prom",
)
def group_describe(category, group_name, size, identifier, max_lag, max_lag_seconds,
                   stalled_after, fmt):
    """One consumer group of CATEGORY, or one Eventide consumer: a summary, then one row per
    member with its identifier, position stream, last processed global position, the category's
    head, unprocessed messages of its share (exact), age in seconds of the oldest of them, when
    its position was last written, and its status: healthy, lagging (over --max-lag or
    --max-lag-seconds), stalled (lag and no new position for --stalled-after), missing (no
    position stream). "-" is unknown.

    Exit 1 when any member is not healthy, 0 otherwise.
    """
    _category(category)
    _seconds(max_lag_seconds, "--max-lag-seconds")
    _seconds(stalled_after, "--stalled-after")
    fmt = out_format(fmt)
    from ..services import group_view as svc

    with get_store() as store:
        report = svc.describe(store, category, group=group_name, size=size,
                              identifier=identifier, max_lag=max_lag,
                              max_lag_seconds=max_lag_seconds, stalled_after=stalled_after)
    if fmt == "prometheus":
        from ..services.metrics import prometheus_text

        sys.stdout.write(prometheus_text(svc.metric_rows(report), svc.METRIC_LABELS))
    elif fmt == "table":
        _describe_table(report)
    else:
        from ..render import dumps

        sys.stdout.write(dumps(report) + "\n")
    click.get_current_context().exit(0 if report["ok"] else 1)


def _dash(v) -> str:
    return "-" if v is None else str(v)


def _describe_table(r: dict) -> None:
    """The summary block, then one row per member (as written: no markup, control characters
    escaped, through render.TableWriter)."""
    from ..render import TableWriter, safe_text

    counts = ", ".join(f"{n} {s}" for s, n in r["statusCounts"].items() if n)
    limits = [x for x in (
        f"max lag {r['maxLag']}" if r["maxLag"] is not None else None,
        f"max lag {r['maxLagSeconds']}s" if r["maxLagSeconds"] is not None else None,
        f"stalled after {r['stalledAfter']}s" if r["stalledAfter"] is not None else None) if x]
    who = ("GROUP    ", r["group"]) if r["group"] is not None else ("CONSUMER ", r["identifier"])
    lines = [
        f"CATEGORY  {r['category']}",
        f"{who[0]} {who[1]}",
        f"SIZE      {_dash(r['size'])}",
        f"HEAD      {_dash(r['head'])}",
        f"LAG       {r['lagMessages']} messages, oldest {r['lagSeconds']:.1f}s",
        f"STATUS    {counts}" + (f" ({', '.join(limits)})" if limits else ""),
    ]
    sys.stdout.write("".join(safe_text(line) + "\n" for line in lines))
    t = TableWriter(["member", "identifier", "position stream", "position", "head", "lag msgs",
                     "lag s", "updated (UTC)", "status"],
                    right=["member", "position", "head", "lag msgs", "lag s"])
    for m in r["members"]:
        upd = m["updatedAt"]
        t.add([_dash(m["member"]), m["identifier"], m["positionStream"], _dash(m["position"]),
               _dash(m["head"]), str(m["lagMessages"]), f"{m['lagSeconds']:.1f}",
               upd[:23].replace("T", " ") if upd else "-", m["status"]])
    t.close()


# ===== reset ====================================================================================
@group.command("reset")
@click.argument("category", metavar="CATEGORY", shell_complete=complete_category)
@click.option("--group", "-g", "group_name", required=True, metavar="NAME",
              help="Consumer group name.")
@click.option("--size", "-s", type=POSITIVE, required=True, metavar="N", help="Group size.")
@click.option("--member", "-m", type=NON_NEGATIVE, default=None, metavar="M",
              help="Reset only member M [default: every member].")
@click.option("--to-earliest", is_flag=True,
              help="Position 0: read the whole share again.")
@click.option("--to-latest", is_flag=True,
              help="The category's head: skip everything written so far.")
@click.option("--to-position", type=NON_NEGATIVE, default=None, metavar="GPOS",
              help="Last processed = GPOS: the next read is GPOS + 1.")
@click.option("--to-datetime", default=None, metavar="TIME",
              help="RFC 3339: the first message written at or after TIME is read next.")
@click.option("--shift-by", type=INT64, default=None, metavar="K",
              help="Move each position by K (negative: back), within 0..head.")
@click.option("--execute", is_flag=True, help="Write the new positions (default: only print "
                                              "the plan).")
@format_option
@target_options
@examples(
    "eventodb group reset account --group billing --size 3 --to-earliest",
    "eventodb group reset account --group billing --size 3 --to-datetime 2026-11-28T06:00:00Z "
    "--execute",
    "eventodb group reset account --group billing --size 3 --member 1 --shift-by -100 --execute",
)
def group_reset(category, group_name, size, member, to_earliest, to_latest, to_position,
                to_datetime, shift_by, execute, fmt):
    """Move the positions of a group's members (stop its consumers first).

    Prints the plan (member, old and new position) and changes nothing unless --execute; then
    each member gets a new Recorded message, so the history of positions stays in its stream.
    Positions are the last processed global position: the next read starts right after it.
    Give exactly one of --to-earliest, --to-latest, --to-position, --to-datetime, --shift-by.
    """
    _category(category)
    chosen = [(n, v) for n, v in (("to-earliest", to_earliest or None),
                                  ("to-latest", to_latest or None),
                                  ("to-position", to_position),
                                  ("to-datetime", to_datetime),
                                  ("shift-by", shift_by)) if v is not None]
    if len(chosen) != 1:
        raise UsageError("give exactly one of --to-earliest, --to-latest, --to-position GPOS, "
                         "--to-datetime TIME, --shift-by K")
    target, value = chosen[0]
    if target in ("to-earliest", "to-latest"):
        value = None
    elif target == "to-datetime":
        from ..domain.message import parse_time

        try:
            value = parse_time(value)
        except ValueError:
            raise UsageError(f"--to-datetime: not an RFC 3339 time: {value!r} "
                             f"(e.g. 2026-11-28T06:00:00Z)") from None
    fmt = out_format(fmt)
    from ..services import group_reset as svc

    with get_store() as store:
        report = svc.plan(store, category, group_name, size, target, value, member=member)
        if execute:
            svc.execute(store, report)
    if fmt == "table":
        from ..render import TableWriter, safe_text

        verb = "reset" if execute else "plan (nothing changed; --execute applies it)"
        sys.stdout.write(safe_text(
            f"{category}: group {group_name} of {size}, head {_dash(report['head'])}, {target}"
            f"{'' if value is None else ' ' + str(report['value'])}: {verb}") + "\n")
        t = TableWriter(["member", "position stream", "old", "new", "change"],
                        right=["member", "old", "new", "change"])
        for m in report["members"]:
            ch = m["change"]
            t.add([str(m["member"]), m["positionStream"], _dash(m["oldPosition"]),
                   str(m["newPosition"]), "-" if ch is None else f"{ch:+d}"])
        t.close()
    else:
        from ..render import dumps

        sys.stdout.write(dumps(report) + "\n")
