"""``eventodb verify-groups`` and ``eventodb simulate-scale``: flags and rendering only; the work
is in services/groups.py, services/scale.py and domain/scale.py."""

from __future__ import annotations

import sys

import click

from ..errors import NotFound, UsageError
from ..domain.scale import MAX_GROUP_SIZE
from .common import (INT64, complete_category, examples, format_option, get_store, out_format,
                     target_options)

MAX_TEST_DATA = 10_000_000  # --write-test-data: streams written in one go
MAX_SYNTHETIC = 10_000_000  # --synthetic: streams generated (one 64-bit word each is kept)
TABLE_ROWS = 50  # member rows and transfer cells shown in a table (JSON lists every one)

TABLE_VIOLATIONS = 25  # violations listed in a table (JSON lists every one)


def _check_category(name: str, *, allow_all: bool = True) -> None:
    if "-" in name:
        raise UsageError(f"{name!r} is a stream name, not a category (a category has no '-')")
    if not name and not allow_all:
        raise UsageError("a category name is needed here (\"\" means every stream)")


def _progress_bar(enabled: bool | None):
    """A rich progress callback on stderr (only when stderr is a terminal), or None."""
    if enabled is None:
        enabled = sys.stderr.isatty()
    if not enabled:
        return None, None
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    from ..render import console

    bar = Progress(TextColumn("{task.description:<18}"), BarColumn(),
                   TextColumn("{task.completed:>12,.0f} / {task.total:,.0f} gpos"),
                   TimeElapsedColumn(), console=console(stderr=True), transient=True)
    tasks: dict[str, int] = {}

    def update(phase: str, done: int, total: int | None) -> None:
        if phase not in tasks:
            tasks[phase] = bar.add_task(phase, total=total or 1)
        bar.update(tasks[phase], completed=done, total=total or 1)

    return bar, update


# ===== verify-groups ============================================================================
@click.command("verify-groups")
@click.argument("category", metavar="CATEGORY", shell_complete=complete_category)
@click.option("--size", "-s", type=click.IntRange(1, MAX_GROUP_SIZE), required=True, metavar="N",
              help="Consumer-group size.")
@click.option("--write-test-data", "test_data", type=click.IntRange(1, MAX_TEST_DATA),
              default=None, metavar="K",
              help="First write K test streams CATEGORY-<uuid> (one Test message each), so an "
                   "empty server can be checked.")
@click.option("--progress/--no-progress", default=None,
              help="Progress on stderr [default: on when stderr is a terminal].")
@format_option
@target_options
@examples(
    "eventodb verify-groups account --size 4",
    "eventodb verify-groups account --size 3 --url http://localhost:8080 --write-test-data 1000",
    "eventodb verify-groups account --size 8 --format json | jq '.violations[:5]'",
)
def verify_groups(category, size, test_data, progress, fmt):
    """Check that a consumer group of N members partitions CATEGORY exactly.

    Reads the category once unfiltered and each member's share once (category.get with its
    consumer group), then checks: no stream is returned to two members; every stream with an
    id is returned to exactly one member, the one Message DB's hash predicts
    (abs(hash64(cardinal id)) % N, so a server with another hash is caught); account-1+retry goes
    with account-1; a stream without an id goes to no member; each member returns as many
    messages of a stream as the unfiltered read holds. Reports each member's streams, messages
    and share of the load, and every violation.

    Exit 0 when every check holds, 1 otherwise.
    """
    if size < 1:
        raise UsageError(f"--size must be >= 1 (got {size})")
    _check_category(category)
    if test_data is not None:
        if test_data < 1:
            raise UsageError(f"--write-test-data must be >= 1 (got {test_data})")
        if not category:
            raise UsageError("--write-test-data needs a category name")
    fmt = out_format(fmt)
    from ..services import groups as svc

    with get_store(create=test_data is not None) as store:
        if test_data:
            svc.write_test_data(store, category, test_data)
            click.echo(f"eventodb: wrote {test_data} test streams {category}-<uuid>", err=True)
        bar, update = _progress_bar(progress)
        if bar is not None:
            with bar:
                report = svc.verify(store, category, size, on_progress=update)
        else:
            report = svc.verify(store, category, size)
    if report["streams"] == 0 and report["messages"] == 0:
        # nothing verified is not a pass: a mistyped category must not look like a healthy one
        raise NotFound(f"no messages in category {category!r}: nothing to verify "
                       "(--write-test-data K writes some)")
    if fmt == "table":
        _verify_table(report)
    else:
        from ..render import dumps

        sys.stdout.write(dumps(report) + "\n")
    click.get_current_context().exit(0 if report["ok"] else 1)


def _verify_table(r: dict) -> None:
    from rich.table import Table

    from ..render import console

    c = console()
    c.soft_wrap = True  # plain lines are never folded; tables keep the width
    c.print(f"{r['category'] or '(all streams)'}: group of {r['size']}, {r['streams']:,} "
            f"streams, {r['messages']:,} messages", soft_wrap=True)
    t = Table(box=None, header_style="bold", pad_edge=False)
    for col in ("member", "streams", "messages", "share"):
        t.add_column(col, justify="right")
    for m in r["members"][:TABLE_ROWS]:
        t.add_row(str(m["member"]), f"{m['streams']:,}", f"{m['messages']:,}",
                  f"{m['share']:.2f}%")
    c.print(t)
    if len(r["members"]) > TABLE_ROWS:
        c.print(f"... and {len(r['members']) - TABLE_ROWS:,} more members (--format json lists "
                "all)")
    ld = r["load"]
    c.print(f"load (messages per member): min {ld['min']:,}  max {ld['max']:,}  "
            f"mean {ld['mean']:,.1f}" + (f"  max/mean {ld['imbalance']:.3f}"
                                         if ld["imbalance"] else ""))
    if r["unassignedStreams"]:
        c.print(f"{r['unassignedStreams']:,} stream(s) without an id belong to no member")
    vs = r["violations"]
    if vs:
        c.print("violations:")
        vt = Table(box=None, header_style="bold", pad_edge=False)
        for col in ("kind", "stream", "members", "expected", "detail"):
            vt.add_column(col, overflow="fold")
        for v in vs[:TABLE_VIOLATIONS]:
            vt.add_row(v["kind"], v["stream"], ",".join(map(str, v["members"])) or "-",
                       "-" if v["expected"] is None else str(v["expected"]), v["detail"])
        c.print(vt)
        if len(vs) > TABLE_VIOLATIONS:
            c.print(f"... and {len(vs) - TABLE_VIOLATIONS:,} more (--format json lists all)")
        kinds = ", ".join(f"{n:,} {k}" for k, n in r["violationCounts"].items())
        c.print(f"FAILED: {len(vs):,} violation(s): {kinds}")
    else:
        c.print(f"OK: the {r['size']} members partition {r['category'] or 'every stream'} "
                f"exactly: no overlap, no gap, every stream with the member the hash predicts",
                soft_wrap=True)


# ===== simulate-scale ===========================================================================
@click.command("simulate-scale")
@click.argument("category", metavar="CATEGORY", shell_complete=complete_category)
@click.option("--from", "from_size", type=click.IntRange(1, MAX_GROUP_SIZE), required=True,
              metavar="N", help="Current group size (1..100,000).")
@click.option("--to", "to_size", type=click.IntRange(1, MAX_GROUP_SIZE), required=True,
              metavar="M", help="New group size (1..100,000).")
@click.option("--streams-from", "streams_from", metavar="PATH|-",
              help="Stream names, one per line (name, or name<TAB>message count) instead of "
                   "reading the category from the store.")
@click.option("--synthetic", type=click.IntRange(0, MAX_SYNTHETIC), default=None, metavar="K",
              help="K generated streams CATEGORY-1..K or CATEGORY-<uuid> (see --ids).")
@click.option("--ids", type=click.Choice(["sequential", "uuid"]), default=None,
              help="Ids of --synthetic streams [default: uuid].")
@click.option("--seed", type=INT64, default=None, help="Seed for reproducible --synthetic uuids.")
@click.option("--checkpoints", "checkpoints", metavar="SOURCE",
              help="Checkpoint files of the old group (directory or file): plan the hand-over.")
@click.option("--write-checkpoints", "write_dir", metavar="DIR",
              help="Write the new group's checkpoint files into DIR (dry run without --execute).")
@click.option("--group", "-g", "group", metavar="NAME",
              help="Plan the hand-over of consumer group NAME's positions in the store "
                   "(consume --group NAME); with --execute write the new members' starting "
                   "positions.")
@click.option("--execute", is_flag=True,
              help="Really write the --write-checkpoints files, or the --group positions.")
@click.option("--owners", "owners_path", metavar="PATH",
              help="Also write every stream's owner before and after as NDJSON to PATH.")
@click.option("--progress/--no-progress", default=None,
              help="Progress on stderr [default: on when stderr is a terminal].")
@format_option
@target_options
@examples(
    "eventodb simulate-scale account --from 3 --to 4",
    "eventodb simulate-scale account --from 2 --to 3 --synthetic 10000 --ids uuid --seed 7",
    "eventodb simulate-scale account --from 4 --to 8 --checkpoints ./ckpt "
    "--write-checkpoints ./ckpt --execute",
)
def simulate_scale(category, from_size, to_size, streams_from, synthetic, ids, seed, checkpoints,
                   write_dir, group, execute, owners_path, progress, fmt):
    """Plan a change of consumer-group size from N to M members on CATEGORY, exactly.

    For every stream its member before and after (the modulo hash); streams and messages that
    move, and to whom (old -> new matrix); load per member before and after; for each roll-out
    order, the streams two consumers may process at once and the streams no consumer reads at
    some step; the least movement any scheme could reach (|M-N|/max(N,M)) and which sizes keep
    most streams in place. Streams come from the store (message counts per stream), from
    --streams-from, or --synthetic.

    With --checkpoints (the old group's files) it plans the hand-over: each new member starts at
    the lowest checkpoint among the old members that hand it streams, so nothing is skipped, and
    says how many messages that re-reads. --write-checkpoints DIR writes those files
    (CATEGORY.member-<m>-of-<M>.json), a dry run unless --execute is given.
    """
    for flag, v in (("--from", from_size), ("--to", to_size)):
        if v < 1:
            raise UsageError(f"{flag} must be >= 1 (got {v})")
    _check_category(category, allow_all=False)
    if streams_from is not None and synthetic is not None:
        raise UsageError("--streams-from and --synthetic are two sources; give one")
    if synthetic is None and (ids is not None or seed is not None):
        raise UsageError("--ids and --seed go with --synthetic")
    if synthetic is not None and synthetic < 0:
        raise UsageError(f"--synthetic must be >= 0 (got {synthetic})")
    if write_dir is not None and checkpoints is None:
        raise UsageError("--write-checkpoints needs --checkpoints (the old group's files)")
    if group is not None and checkpoints is not None:
        raise UsageError("--group (positions in the store) and --checkpoints (files) are two "
                         "hand-overs; give one")
    if group is not None and (streams_from is not None or synthetic is not None):
        raise UsageError("--group reads its positions and the category from the store: no "
                         "--streams-from or --synthetic")
    if group is not None and from_size == to_size:
        raise UsageError(f"--from and --to are both {from_size}: nothing to hand over")
    if execute and write_dir is None and group is None:
        raise UsageError("--execute goes with --write-checkpoints DIR or --group NAME")
    fmt = out_format(fmt)
    from ..services import scale as svc

    handover = svc.load_handover(checkpoints, category, from_size, to_size) \
        if checkpoints else None
    if group is not None:
        with get_store() as store:
            handover = svc.load_group_handover(store, category, group, from_size, to_size)
    owners = None
    if owners_path:
        try:
            owners = open(owners_path, "w", encoding="utf-8")
        except OSError as e:
            raise UsageError(f"--owners: cannot write {owners_path}: {e.strerror}") from None
    try:
        if synthetic is not None:
            ids = ids or "uuid"
            report = svc.simulate(category, from_size, to_size,
                                  svc.synthetic_streams(category, synthetic, ids, seed),
                                  handover=handover, owners=owners, source="synthetic",
                                  extra={"synthetic": {"streams": synthetic, "ids": ids,
                                                       "seed": seed}})
        elif streams_from is not None:
            counts, ignored = _read_names(streams_from, category)
            if ignored:
                click.echo(f"eventodb: note: {ignored} name(s) outside category {category!r} "
                           "left out", err=True)
            report = svc.simulate(category, from_size, to_size, counts.items(),
                                  handover=handover, owners=owners, source="names",
                                  extra={"ignoredNames": ignored})
        else:
            bar, update = _progress_bar(progress)
            with get_store() as store:
                if bar is not None:
                    with bar:
                        counts, head = svc.category_counts(store, category, handover=handover,
                                                           on_progress=update)
                else:
                    counts, head = svc.category_counts(store, category, handover=handover)
            report = svc.simulate(category, from_size, to_size, counts.items(),
                                  handover=handover, owners=owners, source="store",
                                  extra={"head": head})
    finally:
        if owners is not None:
            owners.close()
    if group is not None:
        actions = svc.position_actions(category, group, to_size, report["handover"])
        if execute:
            with get_store() as store:
                svc.write_positions(store, category, group, to_size, actions)
        report["writePositions"] = {"group": group, "execute": bool(execute),
                                    "positions": actions}
    if handover is not None and handover.missing:
        click.echo(f"eventodb: note: no {'position' if group else 'checkpoint'} for old member(s) "
                   f"{', '.join(map(str, handover.missing))}: counted as position 1 (nothing "
                   "processed), so the members they hand streams to start from the beginning",
                   err=True)
    if write_dir is not None:
        actions = svc.checkpoint_actions(category, to_size, report["handover"], write_dir)
        if execute:
            svc.write_checkpoints(category, to_size, actions)
        report["writeCheckpoints"] = {"directory": write_dir, "execute": bool(execute),
                                      "files": actions}
    if fmt == "table":
        _scale_text(report)
    else:
        from ..render import dumps

        sys.stdout.write(dumps(report) + "\n")


def _read_names(source: str, category: str):
    from ..services.scale import parse_stream_lines

    if source == "-":
        return parse_stream_lines(sys.stdin, category)
    try:
        with open(source, encoding="utf-8") as fh:
            return parse_stream_lines(fh, category)
    except OSError as e:
        raise UsageError(f"--streams-from: cannot read {source}: {e.strerror}") from None


def _transfers_text(c, transfers: list[dict], n: int, m: int) -> None:
    """The old x new matrix for small groups; for larger ones its non-empty cells, the largest
    first (the matrix itself would be N x M)."""
    from rich.table import Table

    c.print("streams (messages) from old member to new member:")
    mt = Table(box=None, header_style="bold", pad_edge=False)
    if n <= 16 and m <= 16:
        cells = {(x["from"], x["to"]): x for x in transfers}
        mt.add_column("old\\new", justify="right")
        for j in range(m):
            mt.add_column(str(j), justify="right")
        for o in range(n):
            row = []
            for j in range(m):
                x = cells.get((o, j))
                row.append("." if x is None else f"{x['streams']:,} ({x['messages']:,})")
            mt.add_row(str(o), *row)
        c.print(mt)
        return
    for col in ("old", "new", "streams", "messages"):
        mt.add_column(col, justify="right")
    top = sorted(transfers, key=lambda x: (-x["streams"], x["from"], x["to"]))[:TABLE_ROWS]
    for x in top:
        mt.add_row(str(x["from"]), str(x["to"]), f"{x['streams']:,}", f"{x['messages']:,}")
    c.print(mt)
    if len(transfers) > TABLE_ROWS:
        c.print(f"... {len(transfers):,} non-empty cells in all (--format json lists them)")


def _scale_text(r: dict) -> None:
    from rich.table import Table

    from ..render import console

    c = console()
    c.soft_wrap = True
    n, m = r["from"], r["to"]
    src = {"store": "the store", "names": "the given names",
           "synthetic": "synthetic streams"}[r["source"]]
    if r["source"] == "synthetic":
        src += f" ({r['synthetic']['ids']} ids)"
    c.print(f"{r['category']}: {n} -> {m} members, {r['streams']:,} streams, "
            f"{r['messages']:,} messages from {src}")
    if r["unassignedStreams"]:
        c.print(f"({r['unassignedStreams']:,} stream(s) without an id belong to no member and "
                "are left out)")
    c.print(f"moved: {r['movedStreams']:,} streams ({r['movedPercent']:.2f}%), "
            f"{r['movedMessages']:,} messages ({r['movedMessagesPercent']:.2f}%)")
    c.print(f"least any scheme could move: {r['minimumMovePercent']:.2f}% (jump consistent hash); "
            f"modulo hash in theory: {r['theoryMovedPercent']:.2f}%")
    c.print()

    c.print("load per member:")
    t = Table(box=None, header_style="bold", pad_edge=False)
    for col in ("member", "streams before", "msgs before", "share", "streams after",
                "msgs after", "share "):
        t.add_column(col, justify="right")
    for row in r["members"][:TABLE_ROWS]:
        b, a = row["before"], row["after"]
        t.add_row(str(row["member"]),
                  *(("-", "-", "-") if b is None else
                    (f"{b['streams']:,}", f"{b['messages']:,}", f"{b['share']:.2f}%")),
                  *(("-", "-", "-") if a is None else
                    (f"{a['streams']:,}", f"{a['messages']:,}", f"{a['share']:.2f}%")))
    c.print(t)
    if len(r["members"]) > TABLE_ROWS:
        c.print(f"... and {len(r['members']) - TABLE_ROWS:,} more members (--format json lists "
                "all)")
    if r.get("membersWithoutStreams"):
        c.print(f"note: {r['membersWithoutStreams']:,} of the {m:,} new members would have no "
                f"stream today (more members than streams with an id)")
    lb, la = r["load"]["before"], r["load"]["after"]
    for label, ld in (("before", lb), ("after", la)):
        c.print(f"messages per member {label + ':':<7} min {ld['min']:,}  max {ld['max']:,}  "
                f"mean {ld['mean']:,.1f}  max/mean {ld['imbalance'] or 0:.3f}")
    c.print()

    _transfers_text(c, r["transfers"], n, m)
    c.print()

    c.print("roll-out orders: overlap = streams two consumers may process at once, gap = "
            "streams no consumer reads at some step:", soft_wrap=True)
    st = Table(box=None, header_style="bold", pad_edge=False)
    for col, just in (("order", "left"), ("overlap streams", "right"), ("msgs", "right"),
                      ("gap streams", "right"), ("msgs ", "right")):
        st.add_column(col, justify=just)
    for s in r["strategies"]:
        st.add_row(s["name"] + (" (seed)" if s["documented"] else ""),
                   f"{s['overlap']['streams']:,}", f"{s['overlap']['messages']:,}",
                   f"{s['gaps']['streams']:,}", f"{s['gaps']['messages']:,}")
    c.print(st)
    if r["strategies"][0]["overlap"]["streams"]:
        c.print("(in the seed's order the old and the new group both run while the new one "
                "catches up: every stream has two readers then; --checkpoints shows how much "
                "the hand-over re-reads)")
    c.print()

    best = r.get("bestSizes") or []
    if best:
        up = m >= n
        side = [b for b in best if (b["size"] > n) == up]
        top = sorted(side, key=lambda b: (-b["keptStreams"], b["size"]))[:5]
        if not any(b["size"] == m for b in top):
            top += [b for b in side if b["size"] == m]
        c.print(f"sizes that keep the most streams on their member (from {n}):")
        bt = Table(box=None, header_style="bold", pad_edge=False)
        for col in ("size", "kept", "theory", "best any scheme keeps", ""):
            bt.add_column(col, justify="right" if col else "left")
        for b in top:
            note = []
            if b["size"] == m:
                note.append("target")
            if b["matchesOptimum"]:
                note.append("as good as any scheme")
            bt.add_row(str(b["size"]), f"{b['keptPercent']:.2f}%",
                       f"{b['theoryKeptPercent']:.2f}%", f"{b['optimalKeptPercent']:.2f}%",
                       ", ".join(note))
        c.print(bt)
    if "handover" in r:
        c.print()
        c.print("hand-over: each new member starts at the lowest checkpoint of its donors:",
                soft_wrap=True)
        ht = Table(box=None, header_style="bold", pad_edge=False)
        for col, just in (("new member", "right"), ("donors (old member@checkpoint)", "left"),
                          ("start", "right"), ("re-read msgs", "right"),
                          ("skipped if it kept its own checkpoint", "right")):
            ht.add_column(col, justify=just)
        for h in r["handover"][:TABLE_ROWS]:
            donors = ", ".join(f"{d['member']}@{'-' if d['position'] is None else d['position']}"
                               for d in h["donors"])
            if h.get("donorCount", 0) > len(h["donors"]):
                donors += f", ... ({h['donorCount']:,} in all)"
            ht.add_row(str(h["member"]), donors, str(h["position"]),
                       "-" if h["rereadMessages"] is None else f"{h['rereadMessages']:,}",
                       "-" if h["naiveSkippedMessages"] is None
                       else f"{h['naiveSkippedMessages']:,}")
        c.print(ht)
        if len(r["handover"]) > TABLE_ROWS:
            c.print(f"... and {len(r['handover']) - TABLE_ROWS:,} more new members (--format "
                    "json lists all)")
    wp = r.get("writePositions")
    if wp:
        c.print()
        for a in wp["positions"][:TABLE_ROWS]:
            c.print(f"{'written' if a['action'] == 'written' else 'write':<8} {a['stream']}  "
                    f"Recorded position {a['position']} (next read {a['next']}), size "
                    f"{a['size']}", markup=False)
        if len(wp["positions"]) > TABLE_ROWS:
            c.print(f"... and {len(wp['positions']) - TABLE_ROWS:,} more")
        if not wp["execute"]:
            c.print("dry run: nothing written (add --execute to write these positions; stop "
                    "the old members first)")
    wc = r.get("writeCheckpoints")
    if wc:
        c.print()
        for f in wc["files"]:
            c.print(f"{f['action']:<9} {f['path']}  position {f['position']}"
                    + (f" (file has {f['existingPosition']})"
                       if f["action"] == "conflict" else ""))
        if not wc["execute"]:
            c.print("dry run: nothing written (add --execute to write these files)")
