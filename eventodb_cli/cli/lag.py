"""``eventodb lag``: per member checkpoint, head, lag in messages/positions/seconds, status."""

from __future__ import annotations

import sys
import time

import click

from .common import complete_category, examples, format_option, get_store, out_format, target_options


@click.command()
@click.argument("category", metavar="CATEGORY", shell_complete=complete_category)
@click.option("--size", type=int, required=True, metavar="N", help="Consumer-group size.")
@click.option("--checkpoints", "source", required=True, metavar="SOURCE",
              help="Checkpoint directory (every *.json) or one checkpoint file, as written by "
                   "`eventodb consume --checkpoint`.")
@click.option("--max-lag", type=int, default=1000, show_default=True, metavar="K",
              help="A member with more than K unprocessed messages is lagging (exit 1).")
@click.option("--cap", type=int, default=10_000, show_default=True, metavar="C",
              help="Count unprocessed messages exactly up to C; beyond, report 'at least C'.")
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
    "eventodb lag account --size 4 --checkpoints ./checkpoints --watch --interval 5",
)
def lag(category, size, source, max_lag, cap, watch, interval, fmt):
    """How far behind each member of a consumer group of size N on CATEGORY is.

    For each member 0..N-1: its checkpoint (the next global position to read; a member without
    one reads from 1), the category's head (its highest global position), unprocessed messages
    of the member's share, global positions not yet passed, age in seconds of the oldest
    unprocessed message, when the checkpoint was last saved, and healthy/lagging by --max-lag.
    Exit 1 when any member is lagging, 0 otherwise.
    """
    from ..errors import UsageError
    from ..services import lag as svc

    if size < 1:
        raise UsageError(f"--size must be >= 1 (got {size})")
    if interval <= 0:
        raise UsageError(f"--interval must be > 0 (got {interval})")
    fmt = out_format(fmt)
    ctx = click.get_current_context()

    ignored = svc.ignored_sources(source, category, size)
    if ignored:
        click.echo(f"eventodb: note: {len(ignored)} checkpoint file(s) in {source} belong to "
                   f"another category or group size and are left out", err=True)

    with get_store() as store:
        def take():
            cps = svc.checkpoints_by_member(source, category, size)
            return svc.snapshot(store, category, size, cps, max_lag=max_lag, cap=cap)

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

    head = report["head"]
    title = (f"{report['category']}: group of {report['size']}, head "
             f"{'-' if head is None else head}, max lag {report['maxLag']}")
    t = Table(box=None, header_style="bold", pad_edge=False, title=title, title_justify="left")
    for col, just in (("member", "right"), ("position", "right"), ("lag msgs", "right"),
                      ("lag pos", "right"), ("lag s", "right"), ("checkpoint saved (UTC)", "left"),
                      ("status", "left")):
        t.add_column(col, justify=just)
    missing = False
    for m in report["members"]:
        msgs = str(m["lagMessages"]) if m["lagMessagesExact"] else f">={m['lagMessages']}"
        pos = str(m["position"])
        if not m["checkpoint"]:
            pos += "*"
            missing = True
        saved = m["checkpointUpdatedAt"]
        saved = saved[:19].replace("T", " ") if saved else "-"
        status = "[green]healthy[/]" if m["status"] == "healthy" else "[red]lagging[/]"
        t.add_row(str(m["member"]), pos, msgs, str(m["lagPositions"]), f"{m['lagSeconds']:.1f}",
                  saved, status)
    if missing:
        t.caption = "* no checkpoint: reads from position 1"
        t.caption_justify = "left"
    return t
