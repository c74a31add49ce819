"""``eventodb lag``: per member checkpoint, head, lag in messages/positions/seconds, status."""

from __future__ import annotations

import sys
import time

import click

from ..domain.scale import MAX_GROUP_SIZE
from .common import (NON_NEGATIVE, POSITIVE, complete_category, examples, format_option,
                     get_store, out_format, target_options)


@click.command()
@click.argument("category", metavar="CATEGORY", shell_complete=complete_category)
@click.option("--size", type=click.IntRange(1, MAX_GROUP_SIZE), default=None, metavar="N",
              help="Consumer-group size (with --group: default the size its positions record).")
@click.option("--checkpoints", "source", metavar="SOURCE",
              help="Checkpoint directory (every *.json) or one checkpoint file, as written by "
                   "`eventodb consume --checkpoint`.")
@click.option("--group", "-g", "group_name", metavar="NAME",
              help="The group's positions in the store (`consume --group NAME`): the same "
                   "report as `eventodb group describe`.")
@click.option("--max-lag", type=NON_NEGATIVE, default=1000, show_default=True, metavar="K",
              help="A member with more than K unprocessed messages is lagging (exit 1).")
@click.option("--max-lag-seconds", type=float, default=None, metavar="SECONDS",
              help="A member whose oldest unprocessed message is older than this is lagging "
                   "(exit 1).")
@click.option("--stalled-after", type=float, default=None, metavar="SECONDS",
              help="With --group: a member with lag and no new position for this long is "
                   "stalled (exit 1).")
@click.option("--allow-missing", is_flag=True,
              help="A member without a checkpoint (or position) of this size is reported "
                   "missing but does not fail the check.")
@click.option("--cap", type=POSITIVE, default=10_000, show_default=True, metavar="C",
              help="Count unprocessed messages exactly up to C; beyond, report 'at least C' "
                   "(--group counts exactly).")
@click.option("--watch", is_flag=True,
              help="Refresh until Ctrl-C (a live table on a terminal, NDJSON otherwise).")
@click.option("--interval", type=float, default=2.0, show_default=True, metavar="SECONDS",
              help="Refresh interval with --watch.")
@format_option
@target_options
@examples(
    "eventodb lag account --size 4 --checkpoints ./checkpoints",
    "eventodb lag account --size 4 --checkpoints ./checkpoints --max-lag 500 --format json "
    "|| alert 'consumers behind'",
    "eventodb lag account --group billing --max-lag-seconds 60",
    "eventodb lag account --size 4 --checkpoints ./checkpoints --watch --interval 5",
)
def lag(category, size, source, group_name, max_lag, max_lag_seconds, stalled_after,
        allow_missing, cap, watch, interval, fmt):
    """How far behind each member of a consumer group of size N on CATEGORY is.

    For each member 0..N-1: its checkpoint (the next global position to read), the category's
    head (its highest global position), unprocessed messages of the member's share, global
    positions not yet passed, age in seconds of the oldest unprocessed message, when the
    checkpoint was last saved, and its status: missing (no checkpoint of this category and
    size: counted from position 1), lagging (over --max-lag or --max-lag-seconds), or healthy.
    With --group the positions come from the store, as `eventodb group describe` reports them.
    Exit 1 when any member is not healthy (missing is allowed with --allow-missing), 0
    otherwise.
    """
    import math

    from ..errors import UsageError
    from ..services import lag as svc

    if (source is None) == (group_name is None):
        raise UsageError("give exactly one of --checkpoints SOURCE or --group NAME")
    if source is not None and size is None:
        raise UsageError("--checkpoints needs --size N")
    if group_name is None and stalled_after is not None:
        raise UsageError("--stalled-after goes with --group")
    for name, v in (("--max-lag-seconds", max_lag_seconds), ("--stalled-after", stalled_after)):
        if v is not None and not (math.isfinite(v) and v >= 0):
            raise UsageError(f"{name} must be a finite number >= 0 (got {v})")
    if not (math.isfinite(interval) and 0 < interval <= 86400):
        raise UsageError(f"--interval must be > 0 and <= 86400 seconds (got {interval})")
    fmt = out_format(fmt)
    ctx = click.get_current_context()

    if source is not None:
        ignored = svc.ignored_sources(source, category, size)
        if ignored:
            click.echo(f"eventodb: note: {len(ignored)} checkpoint file(s) in {source} belong "
                       f"to another category or group size and are left out", err=True)

    with get_store() as store:
        def take():
            if group_name is not None:
                return svc.group_snapshot(store, category, group_name, size, max_lag=max_lag,
                                          max_lag_seconds=max_lag_seconds,
                                          stalled_after=stalled_after,
                                          allow_missing=allow_missing)
            cps = svc.checkpoints_by_member(source, category, size)
            return svc.snapshot(store, category, size, cps, max_lag=max_lag, cap=cap,
                                max_lag_seconds=max_lag_seconds, allow_missing=allow_missing)

        if not watch:
            report = take()
            _emit(report, fmt)
            ctx.exit(0 if report["ok"] else 1)
        report = None
        try:
            if fmt == "table" and sys.stdout.isatty():
                from rich.live import Live

                from ..render import console

                report = take()
                with Live(_table(report), console=console(), auto_refresh=False) as live:
                    while True:
                        time.sleep(interval)
                        report = take()
                        live.update(_table(report), refresh=True)
            else:
                while True:
                    report = take()
                    _emit(report, "ndjson" if fmt == "table" else fmt)
                    sys.stdout.flush()
                    time.sleep(interval)
        except KeyboardInterrupt:
            pass
        ctx.exit(0 if report is None or report["ok"] else 1)


def _emit(report: dict, fmt: str) -> None:
    from ..render import dumps

    if fmt == "table":
        from ..render import console

        console().print(_table(report))
    else:
        sys.stdout.write(dumps(report) + "\n")


def _table(report: dict):
    from rich.table import Table
    from rich.text import Text

    grouped = "group" in report
    head = report["head"]
    who = (f"group {report['group']} of {report['size']}" if grouped
           else f"group of {report['size']}")
    limits = f"max lag {report['maxLag']}"
    if report.get("maxLagSeconds") is not None:
        limits += f", max lag {report['maxLagSeconds']}s"
    title = f"{report['category']}: {who}, head {'-' if head is None else head}, {limits}"
    t = Table(box=None, header_style="bold", pad_edge=False, title=title, title_justify="left")
    cols = [("member", "right"), ("position", "right"), ("lag msgs", "right")]
    if not grouped:
        cols.append(("lag pos", "right"))
    cols += [("lag s", "right"),
             ("position saved (UTC)" if grouped else "checkpoint saved (UTC)", "left"),
             ("status", "left")]
    for col, just in cols:
        t.add_column(col, justify=just)
    colour = {"healthy": "green", "lagging": "yellow", "stalled": "red", "missing": "red"}
    for m in report["members"]:
        if grouped:
            pos = "-" if m["position"] is None else str(m["position"])
            msgs = str(m["lagMessages"])
            saved = m["updatedAt"]
        else:
            pos = str(m["position"]) + ("*" if not m["checkpoint"] else "")
            msgs = str(m["lagMessages"]) if m["lagMessagesExact"] else f">={m['lagMessages']}"
            saved = m["checkpointUpdatedAt"]
        saved = saved[:19].replace("T", " ") if saved else "-"
        row = [str(m["member"]), pos, msgs]
        if not grouped:
            row.append(str(m["lagPositions"]))
        row += [f"{m['lagSeconds']:.1f}", saved, Text(m["status"], style=colour[m["status"]])]
        t.add_row(*row)
    if not grouped and any(not m["checkpoint"] for m in report["members"]):
        t.caption = "* no checkpoint of this size: missing, counted from position 1"
        t.caption_justify = "left"
    elif grouped:
        t.caption = "position: the last global position processed (Eventide's Recorded)"
        t.caption_justify = "left"
    return t
