"""``eventodb store info|check|compact``: look after a local store file."""

from __future__ import annotations

import click

from ..errors import CheckFailed, UsageError
from .common import examples, format_option, get_target, out_format, target_options


def _open_local():
    """The local store of the current target; a server target is a usage error."""
    from ..store.resolve import default_store_path, resolve_target

    t = resolve_target(get_target())
    if t.url:
        raise UsageError(f"store commands work on a local store file, not on a server ({t.url}, "
                         f"from {t.origin or 'the target'}); give --store PATH")
    from ..store.local import LocalStore

    return LocalStore(t.store or default_store_path())


@click.group()
def store():
    """Look after a local store file: what it holds, whether it is intact, compaction."""


@store.command("info")
@format_option
@target_options
@examples(
    "eventodb store info",
    "eventodb store info --store ./orders.db --format json",
    "eventodb store info --format json | jq .headPosition",
)
def store_info(fmt):
    """Print the store's path, size, schema version, counts and head position.

    Keys in json: path, fileSize, walSize, schemaVersion, messages, streams, categories,
    headPosition, createdAt, journalMode, walMode, pageSize, pages, freePages.
    """
    fmt = out_format(fmt)
    from ..render import emit_object
    from ..store import local_admin

    with _open_local() as s:
        emit_object(local_admin.info(s), fmt)


@store.command("check")
@click.option("--progress/--no-progress", default=None,
              help="Progress on stderr [default: on when stderr is a terminal].")
@format_option
@target_options
@examples(
    "eventodb store check",
    "eventodb store check --store ./orders.db --format json",
    "eventodb store check || echo 'store damaged' >&2",
)
def store_check(progress, fmt):
    """Check the store: SQLite's integrity_check plus every row's checksum.

    Each row's xxh3-64 checksum, recorded when it was written, is recomputed and compared; the
    derived category and consumer-group hash columns must match the stream name. Exit 1 with
    the damaged rows listed (global position, id, stream) when anything was changed behind the
    tool's back. json: {"ok", "rows", "damaged": [{"globalPosition", "id", "streamName",
    "reason"}], "integrity", "seconds"}.
    """
    fmt = out_format(fmt)
    from ..services.storecheck import check_store

    import sys

    with _open_local() as s:
        if sys.stderr.isatty() if progress is None else progress:
            report = _check_with_progress(s)
        else:
            report = check_store(s)
    if fmt == "table":
        _print_check(report)
    else:
        from ..render import emit_object

        emit_object(report.to_dict(), fmt)
    if not report.ok:
        what = []
        if report.damaged:
            what.append(f"{len(report.damaged)} damaged row(s)")
        if report.integrity:
            what.append("SQLite integrity_check failed")
        raise CheckFailed(f"store check: {' and '.join(what)} in {report.rows} rows")


def _check_with_progress(s):
    from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

    from ..render import console
    from ..services.storecheck import check_store

    head = s.category_head("") or 0
    with Progress(TextColumn("{task.description}"), BarColumn(),
                  TextColumn("{task.fields[n]} rows"), TimeRemainingColumn(),
                  console=console(stderr=True), transient=True) as bar:
        task = bar.add_task("SQLite integrity_check", total=None, n=0)

        def phase(name):
            if name == "rows":
                bar.update(task, description="checking rows", total=head, completed=0)

        return check_store(s, on_progress=lambda n, gpos: bar.update(task, completed=gpos, n=n),
                           on_phase=phase)


def _print_check(report, limit: int = 50) -> None:
    if report.ok:
        click.echo(f"ok: {report.rows} rows, every checksum matches; SQLite integrity_check ok "
                   f"({report.seconds:.2f}s)")
        return
    from ..render import safe_text

    for line in report.integrity:
        click.echo(f"integrity_check: {safe_text(str(line))}")
    if report.damaged:
        click.echo(f"{len(report.damaged)} damaged row(s) of {report.rows}:")
        for d in report.damaged[:limit]:
            click.echo(safe_text(f"  gpos {d['globalPosition']}  id {d['id']}  stream "
                                 f"{d['streamName']}: {d['reason']}"))
        if len(report.damaged) > limit:
            click.echo(f"  ... and {len(report.damaged) - limit} more (--format json lists all)")


@store.command("compact")
@format_option
@target_options
@examples(
    "eventodb store compact",
    "eventodb store compact --store ./orders.db --format json",
)
def store_compact(fmt):
    """Checkpoint the write-ahead log into the file and VACUUM it; print bytes before/after.

    Readers may stay open; a writer that holds the store blocks compaction until it is done.
    """
    fmt = out_format(fmt)
    from ..store import local_admin

    with _open_local() as s:
        r = local_admin.compact(s)
    if fmt == "table":
        click.echo(f"{r['path']}: {r['bytesBefore']} -> {r['bytesAfter']} bytes "
                   f"({r['saved']} saved)")
    else:
        from ..render import emit_object

        emit_object(r, fmt)
