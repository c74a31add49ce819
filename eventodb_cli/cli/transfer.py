"""``eventodb export`` and ``eventodb import``: EventoDB's NDJSON export format, with manifests."""

from __future__ import annotations

import os
import sys

import click

from ..errors import UsageError
from .common import (POSITIVE, complete_category, examples, format_option, get_store,
                     out_format, target_options)

MAX_BATCH_SIZE = 1_000_000  # messages per read or per transaction: beyond this, a typo


def _split_categories(values) -> list[str]:
    out: list[str] = []
    for v in values:
        out += [c.strip() for c in v.split(",") if c.strip()]
    return out


def _progress_wanted(flag):
    return sys.stderr.isatty() if flag is None else flag


def _bar(label: str):
    from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

    from ..render import console

    return Progress(TextColumn(label), BarColumn(), TextColumn("{task.fields[n]} messages"),
                    TimeRemainingColumn(), console=console(stderr=True), transient=True)


@click.command()
@click.option("--category", "-c", "categories", multiple=True, metavar="CATEGORY",
              shell_complete=complete_category,
              help="Export only this category (repeat, or a,b,c). Default: every message.")
@click.option("--since", type=POSITIVE, default=1, show_default=True, metavar="GPOS",
              help="First global position (inclusive).")
@click.option("--until", type=POSITIVE, default=None, metavar="GPOS",
              help="Stop before this global position (exclusive).")
@click.option("--output", "-O", "output", metavar="FILE", type=click.Path(dir_okay=False),
              help="Write to FILE (and FILE.manifest.json) instead of stdout.")
@click.option("--gzip", "use_gzip", is_flag=True, help="Compress the records with gzip.")
@click.option("--manifest", metavar="PATH", type=click.Path(dir_okay=False),
              help="Manifest path [default: FILE.manifest.json; none for stdout].")
@click.option("--batch-size", type=click.IntRange(1, MAX_BATCH_SIZE), default=10_000,
              show_default=True, help="Messages per read (10000: a server's largest page).")
@click.option("--progress/--no-progress", default=None,
              help="Progress bar on stderr [default: on when stderr is a terminal].")
@format_option
@target_options
@examples(
    "eventodb export --output all.ndjson",
    "eventodb export --category account --category order --since 1001 -O part.ndjson.gz --gzip",
    "eventodb export --url https://evento.example.com --token $T | gzip > backup.ndjson.gz",
)
def export(categories, since, until, output, use_gzip, manifest, batch_size, progress, fmt):
    """Export messages as EventoDB NDJSON export records, in global-position order.

    One record per line: {"id","stream","type","pos","gpos","data","meta","time"} (times keep
    their fraction). Several categories are merged by global position (EventoDB's own exporter
    writes them one after the other), so an import inserts in order. With --output, a manifest
    FILE.manifest.json records the count, first/last global position and an xxh3-64 digest of
    the record bytes, which `eventodb import --verify` checks. Works on a local store and on a
    server. Prints a summary with --output (the manifest, in json).
    """
    cats = _split_categories(categories)
    fmt = out_format(fmt)
    from ..services import transfer

    with get_store() as store:
        if _progress_wanted(progress):
            total = transfer.export_total(store, cats, since, until)
            with _bar("exporting") as bar:
                task = bar.add_task("export", total=total, n=0)

                def tick(count, gpos):
                    bar.update(task, completed=gpos - since + 1, n=count)

                doc = transfer.export(store, output, categories=cats, since=since, until=until,
                                      gzip=use_gzip, manifest=manifest, batch_size=batch_size,
                                      on_progress=tick)
        else:
            doc = transfer.export(store, output, categories=cats, since=since, until=until,
                                  gzip=use_gzip, manifest=manifest, batch_size=batch_size)
    if output in (None, "-"):
        return  # stdout holds the records
    if fmt == "table":
        span = ("" if doc["count"] == 0 else
                f" (global positions {doc['firstGlobalPosition']}..{doc['lastGlobalPosition']})")
        mpath = manifest or output + ".manifest.json"
        click.echo(f"exported {doc['count']} messages{span} to {output} in {doc['seconds']:.2f}s;"
                   f" manifest {mpath}")
    else:
        from ..render import emit_object

        emit_object(doc, fmt)


@click.command("import")
@click.argument("file", metavar="FILE", type=click.Path(dir_okay=False, allow_dash=True))
@click.option("--force", is_flag=True,
              help="First delete EVERY message in the target (store or namespace); asks, or "
                   "needs --yes.")
@click.option("--yes", "-y", is_flag=True, help="Do not ask before --force deletes.")
@click.option("--verify/--no-verify", "verify", default=None,
              help="Check FILE against its manifest first; import nothing if it does not "
                   "match [default: verify when the manifest is there].")
@click.option("--manifest", metavar="PATH", type=click.Path(dir_okay=False),
              help="Manifest to verify against [default: FILE.manifest.json].")
@click.option("--batch-size", type=click.IntRange(1, MAX_BATCH_SIZE), default=10000,
              show_default=True,
              help="Messages per insert (local store: the whole import is one transaction; a "
                   "server's /import uses 1000).")
@click.option("--progress/--no-progress", default=None,
              help="Progress bar on stderr [default: on when stderr is a terminal].")
@format_option
@target_options
@examples(
    "eventodb import all.ndjson --verify --store ./restored.db",
    "eventodb import part.ndjson.gz --url http://localhost:8080 --token $T",
    "eventodb export --store a.db | eventodb import - --store b.db",
)
def import_(file, force, yes, verify, manifest, batch_size, progress, fmt):
    """Import an EventoDB NDJSON export (FILE, or - for stdin; gzip is recognised).

    Ids, positions, global positions and times are kept, into a local store or a server
    (/import). When the manifest is there (FILE.manifest.json, or --manifest) the whole file is
    first checked against it (length, xxh3-64 digest, count): a damaged, cut or shortened file
    is refused (exit 1) before anything is imported (--no-verify skips the check). A bad line
    (not JSON, NaN, not a record) stops the import with its line number (exit 2). A local
    import is one transaction: on any error the store is left exactly as it was. A server's
    /import commits in batches: the error says how many were imported.
    """
    if verify and file == "-":
        raise UsageError("--verify needs a file, not stdin (the file is read twice)")
    if file != "-" and not os.path.exists(file):
        raise UsageError(f"cannot read {file}: no such file")
    from ..services import transfer

    if verify is None:  # verify whenever there is a manifest to verify against
        verify = file != "-" and (manifest is not None or
                                  os.path.exists(transfer.manifest_path_for(file)))
    if force and not yes and (file == "-" or not _isatty(sys.stdin)):
        raise UsageError("refusing to --force (delete every message in the target first) "
                         "without --yes")
    fmt = out_format(fmt)

    def confirm(store):
        if force and not yes:
            click.confirm(f"--force deletes every message in {_describe(store)} first. Go on?",
                          abort=True, err=True)

    def open_target():
        return get_store(create=True)

    kwargs = dict(force=force, verify_manifest=verify, manifest=manifest, batch_size=batch_size,
                  before_import=confirm)
    if _progress_wanted(progress):
        summary = _import_with_progress(transfer, open_target, file, kwargs)
    else:
        summary = transfer.import_file(open_target, file, **kwargs)
    from .write import output_after_write

    with output_after_write(f"{summary['imported']} messages were imported"):
        if fmt == "table":
            v = " (verified against its manifest)" if summary["verified"] else ""
            click.echo(f"imported {summary['imported']} messages{v} in "
                       f"{summary['seconds']:.2f}s")
        else:
            from ..render import emit_object

            emit_object(summary, fmt)


def _isatty(fh) -> bool:
    try:
        return fh is not None and fh.isatty()
    except (ValueError, OSError):
        return False


def _describe(store) -> str:
    path = getattr(store, "path", None)
    if path:
        return path
    return str(getattr(store, "url", None) or "the server namespace")


def _import_with_progress(transfer, open_target, file, kwargs):
    total = None
    verify = kwargs["verify_manifest"]
    if file != "-":
        if verify:
            total = transfer.read_manifest(kwargs["manifest"] or
                                           transfer.manifest_path_for(file))["bytes"]
        else:
            with open(file, "rb") as fh:
                if fh.read(2) != transfer.GZIP_MAGIC:
                    total = os.path.getsize(file)
    with _bar("importing") as bar:
        vtask = bar.add_task("verify", total=total, n="verifying", visible=verify)
        task = bar.add_task("import", total=total, n=0, visible=not verify)

        def on_verify(nbytes):
            bar.update(vtask, completed=nbytes)

        def on_bytes(nbytes):
            bar.update(vtask, visible=False)
            bar.update(task, completed=nbytes, visible=True)

        def on_progress(imported, gpos):
            bar.update(task, n=imported)

        return transfer.import_file(open_target, file, on_progress=on_progress,
                                    on_bytes=on_bytes, on_verify=on_verify, **kwargs)
