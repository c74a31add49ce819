"""Message DB on PostgreSQL (issue 11): the CLI against the floor a Message DB user has today.

On a private PostgreSQL cluster with the real Message DB (tests/pg_fixture.py: the machine's
PostgreSQL binaries, Message DB from npm), one category of N messages (default 1,000,000, over
10,000 streams, loaded with PostgresStore.import_records: a COPY per 50,000):

1. a member's read (``--member 1 --size 4 --batch-size 1000``) at the start, the middle and the
   head of the category: ``eventodb category get ... --format ndjson`` (a fresh process, as a
   script calls it) vs a plain ``psql -c "SELECT * FROM get_category_messages(...)"`` (also a
   fresh process and connection) - medians of 7;
2. ``verify-groups --size 4``: the command as shipped (services/groups.py reads the category and
   every member's share through get_category_messages) vs the one statement Message DB can
   answer it with (PostgresStore.stream_members: messages per stream and each stream's member by
   Message DB's own hash_64(cardinal_id()), hashed once per stream) - one run each;
3. lag of a group of 4 positioned at the middle: ``eventodb lag --group`` (uses
   PostgresStore.share_lag, one count per member) vs the generic path (paging each member's
   share through get_category_messages) - one run each.

Usage: python bench/messagedb.py [N [reads] [verify] [lag]]
"""

from __future__ import annotations

import json
import os
import shutil
import statistics
import subprocess
import sys
import time
import uuid
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests"))

from _common import exe, machine  # noqa: E402

CATEGORY = "bench"
STREAMS = 10_000
BATCH = 1000


def load(url: str, n: int) -> float:
    from eventodb_cli.domain.message import Message
    from eventodb_cli.store.postgres import PostgresStore

    names = [f"{CATEGORY}-{uuid.UUID(int=12345 + i * 7919)}" for i in range(STREAMS)]
    versions = [0] * STREAMS
    t0 = 1_700_000_000 * 10**9

    def records():
        for g in range(1, n + 1):
            k = (g * 2654435761) % STREAMS
            pos = versions[k]
            versions[k] += 1
            yield Message(str(uuid.UUID(int=g)), names[k], "Deposited", pos, g,
                          '{"amount":%d}' % g, None, t0 + g * 1000)

    t = time.perf_counter()
    with PostgresStore(url) as s:
        s.import_records(records(), batch_size=50_000)
        s._query_none("ANALYZE messages", "analyze")
    return time.perf_counter() - t


def median_run(argv: list[str], env: dict | None = None, repeat: int = 7
               ) -> tuple[float, bytes]:
    samples = []
    out = b""
    for _ in range(repeat):
        t = time.perf_counter()
        p = subprocess.run(argv, capture_output=True, env=env)
        samples.append(time.perf_counter() - t)
        if p.returncode != 0:
            raise SystemExit(f"{argv[0]} failed: {p.stderr.decode()[-500:]}")
        out = p.stdout
    return statistics.median(samples), out


def member_reads(url: str, n: int) -> None:
    psql = shutil.which("psql")
    # Message DB's functions call each other unqualified: its users put message_store on the
    # search_path (PGOPTIONS, or the role's setting)
    env = dict(os.environ, PGOPTIONS="-c search_path=message_store,public")
    print(f"1. member read --member 1 --size 4 --batch-size {BATCH}, medians of 7 "
          "(fresh process each)")
    # the fixed cost of one call: process start, imports (psycopg for eventodb), connection
    base_cli, _ = median_run([exe(), "stream", "version", f"{CATEGORY}-none", "--url", url])
    base_psql, _ = median_run([psql, "-X", "-A", "-t", "-d", url, "-c",
                               f"SELECT message_store.stream_version('{CATEGORY}-none')"],
                              env=env)
    print(f"   fixed cost (stream version of an empty stream): eventodb {base_cli * 1e3:.1f} ms,"
          f" psql {base_psql * 1e3:.1f} ms")
    for label, pos in (("start", 1), ("middle", n // 2), ("head", max(1, n - 4 * BATCH + 1))):
        cli_t, out = median_run([exe(), "category", "get", CATEGORY, "--member", "1", "--size",
                                 "4", "--position", str(pos), "--batch-size", str(BATCH),
                                 "--format", "ndjson", "--url", url])
        got = out.count(b"\n")
        sql = (f"SELECT * FROM message_store.get_category_messages('{CATEGORY}', {pos}, "
               f"{BATCH}, NULL, 1, 4)")
        psql_t, pout = median_run([psql, "-X", "-A", "-t", "-d", url, "-c", sql], env=env)
        assert pout.count(b"\n") >= got, (pout.count(b"\n"), got)
        store_t, raw_t = in_process(url, pos)
        print(f"   {label:6} (position {pos:>9,}): eventodb {cli_t * 1e3:7.1f} ms, "
              f"psql {psql_t * 1e3:7.1f} ms, ratio {cli_t / psql_t:.2f}x  ({got} messages); "
              f"in one process: store read {store_t * 1e3:.1f} ms, the bare function call "
              f"{raw_t * 1e3:.1f} ms, ratio {store_t / raw_t:.2f}x")


def in_process(url: str, pos: int, repeat: int = 15) -> tuple[float, float]:
    """PostgresStore.category_get (Message objects, canonical JSON) vs fetching the function's
    rows with psycopg on the same connection: the cost the store adds to Message DB's."""
    from eventodb_cli.store.postgres import PostgresStore

    with PostgresStore(url) as s:
        a, b = [], []
        for _ in range(repeat):
            t = time.perf_counter()
            s.category_get(CATEGORY, pos, BATCH, None, 1, 4)
            a.append(time.perf_counter() - t)
            t = time.perf_counter()
            s._query("SELECT * FROM get_category_messages(%s, %s, %s, NULL, 1, 4)",
                     (CATEGORY, pos, BATCH), "raw")
            b.append(time.perf_counter() - t)
    return statistics.median(a), statistics.median(b)


def verify(url: str) -> None:
    from eventodb_cli.store.postgres import PostgresStore

    print("2. verify-groups --size 4, one run each")
    t = time.perf_counter()
    p = subprocess.run([exe(), "verify-groups", CATEGORY, "--size", "4", "--format", "json",
                        "--url", url], capture_output=True)
    cli_t = time.perf_counter() - t
    rep = json.loads(p.stdout)
    t = time.perf_counter()
    with PostgresStore(url) as s:
        head = s.category_head(CATEGORY)
        every = s.stream_members(CATEGORY, head, 4)
    fast_t = time.perf_counter() - t
    shares = [0] * 4
    for n, m in every.values():
        if m is not None:
            shares[m] += n
    assert shares == [m["messages"] for m in rep["members"]], (shares, rep["members"])
    assert sum(n for n, _m in every.values()) == rep["messages"] and rep["ok"]
    print(f"   eventodb verify-groups (generic reads)  : {cli_t:7.2f} s  ok={rep['ok']} "
          f"messages={rep['messages']:,}")
    print(f"   one statement (stream_members)          : {fast_t:7.2f} s  "
          f"same per-member counts; ratio generic/SQL {cli_t / fast_t:.1f}x")


def lag(url: str, n: int) -> None:
    from eventodb_cli.services import group_view
    from eventodb_cli.store.base import Store
    from eventodb_cli.store.postgres import PostgresStore

    class Generic(Store):
        def __init__(self, inner):
            self.inner = inner

        def category_get(self, *a, **k):
            return self.inner.category_get(*a, **k)

    print("3. lag of a group of 4 positioned at the middle, one run each")
    subprocess.run([exe(), "group", "reset", CATEGORY, "--group", "g", "--size", "4",
                    "--to-position", str(n // 2), "--execute", "--url", url],
                   capture_output=True, check=True)
    t = time.perf_counter()
    p = subprocess.run([exe(), "lag", CATEGORY, "--group", "g", "--max-lag", str(n),
                        "--format", "json", "--url", url], capture_output=True)
    cli_t = time.perf_counter() - t
    rep = json.loads(p.stdout)
    t = time.perf_counter()
    with PostgresStore(url) as s:
        head = s.category_head(CATEGORY)
        generic = [group_view.share_lag(Generic(s), CATEGORY, m, 4, n // 2, head)[0]
                   for m in range(4)]
    gen_t = time.perf_counter() - t
    assert generic == [m["lagMessages"] for m in rep["members"]], (generic, rep["members"])
    print(f"   eventodb lag --group (share_lag, SQL)   : {cli_t:7.2f} s  lag "
          f"{sum(generic):,} messages")
    print(f"   generic paging of each share            : {gen_t:7.2f} s  "
          f"ratio generic/SQL {gen_t / cli_t:.1f}x")


def main() -> None:
    from pg_fixture import remove_cluster, start_cluster

    n = int(sys.argv[1]) if len(sys.argv) > 1 else 1_000_000
    c = start_cluster()
    try:
        url = c.url(c.create_db())
        os.environ.pop("PGPASSWORD", None)
        secs = load(url, n)
        print(f"Message DB {c.version} on PostgreSQL {c.bindir.parent.name}, {n:,} messages in "
              f"{STREAMS:,} streams of '{CATEGORY}' (loaded in {secs:.1f}s); {machine()}")
        parts = sys.argv[2:] or ["reads", "verify", "lag"]
        if "reads" in parts:
            member_reads(url, n)
        if "verify" in parts:
            verify(url)
        if "lag" in parts:
            lag(url, n)
    finally:
        remove_cluster(c)


if __name__ == "__main__":
    main()
