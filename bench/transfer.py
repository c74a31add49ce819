#!/usr/bin/env python
"""Export and import throughput on a 1,000,000-message local store, against plain sqlite3.

    python bench/transfer.py [--messages 1000000] [--streams 10000] [--dir DIR] [--runs 1]

Builds the source store once (LocalStore.write_batch in batches of 10,000; reused when it already
holds the right number of messages), then, in one run, alternating:

- export: ``eventodb export --store SRC -O FILE --no-progress`` through the installed executable
  (EventoDB NDJSON records, the xxh3-64 digest and the manifest included; process start, fsync
  and rename included too). From a local store the lines are made in SQLite
  (``store/local_export.py``) by a helper thread while the main thread finishes the chunk
  before, so on an idle 2-core machine it may use both cores where the baseline read uses one;
- baseline read: plain ``sqlite3``: ``SELECT`` the same columns of every row in global-position
  order and fetch them all (no formatting, nothing written);
- context: a naive Python exporter (plain sqlite3 rows, ``json.dumps`` per row, to a file);
- import: ``eventodb import FILE --store NEW --no-progress`` (parse each line, keep ids,
  positions, global positions and times, compute category, consumer-group hash and row checksum,
  10,000-row transactions: the import's default);
- import --verify: the same after reading the whole file once against its manifest;
- baseline insert: plain ``sqlite3``: read the same rows (all stored columns, checksums
  included, nothing computed) from SRC and ``executemany`` them into an empty store of the same
  schema in 10,000-row transactions, with the same connection settings the import uses
  (synchronous=NORMAL, a 128 MiB page cache), so the ratio measures the tool's own work.

Prints messages/s for each and the ratios to the plain sqlite3 rates measured in the same run.
"""

from __future__ import annotations

import argparse
import os
import platform
import random
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import uuid

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))

from eventodb_cli.domain.message import NewMessage  # noqa: E402
from eventodb_cli.store.local import LocalStore  # noqa: E402
from eventodb_cli.store.local_admin import BULK_CACHE_KIB  # noqa: E402

CATEGORIES = ("account", "order", "payment", "shipment")
COLS = "id, stream_name, type, position, global_position, data, metadata, time"
ALL_COLS = ("global_position, id, stream_name, type, position, data, metadata, time, category, "
            "cardinal_hash, checksum")


def build(path: str, messages: int, streams: int, seed: int = 7) -> None:
    if os.path.exists(path):
        with LocalStore(path) as st:
            if st.message_count() == messages:
                print(f"store: reusing {path} ({messages:,} messages)", flush=True)
                return
        os.remove(path)
    rng = random.Random(seed)
    names = [f"{CATEGORIES[i % len(CATEGORIES)]}-{uuid.UUID(int=rng.getrandbits(128), version=4)}"
             for i in range(streams)]
    t0 = time.perf_counter()
    with LocalStore(path, create=True) as st:
        done = 0
        while done < messages:
            k = min(10_000, messages - done)
            batch = []
            for j in range(k):
                n = done + j
                data = '{"amount":%d,"currency":"EUR","note":"benchmark message"}' % (n % 1000)
                meta = None if n % 4 else '{"correlationStreamName":"saga-%d"}' % (n % 97)
                batch.append(NewMessage(names[rng.randrange(streams)], "Deposited", data, meta))
            st.write_batch(batch)
            done += k
    print(f"store: built {path}: {messages:,} messages in {streams:,} streams in "
          f"{time.perf_counter() - t0:.1f}s", flush=True)


def exe() -> str:
    found = shutil.which("eventodb") or os.path.join(os.path.dirname(sys.executable), "eventodb")
    if not os.path.exists(found):
        sys.exit("the eventodb executable is not installed (pip install -e .)")
    return found


def run(cmd: list[str]) -> float:
    t0 = time.perf_counter()
    p = subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    dt = time.perf_counter() - t0
    if p.returncode != 0:
        sys.exit(f"{' '.join(cmd)} failed: {p.stderr}")
    return dt


def drop(path: str) -> None:
    for suffix in ("", "-wal", "-shm"):
        if os.path.exists(path + suffix):
            os.remove(path + suffix)


def baseline_read(src: str) -> float:
    t0 = time.perf_counter()
    conn = sqlite3.connect(src)
    n = 0
    for _row in conn.execute(f"SELECT {COLS} FROM messages ORDER BY global_position"):
        n += 1
    conn.close()
    return time.perf_counter() - t0


def baseline_dump(src: str, out: str) -> float:
    """A naive exporter for context: plain sqlite3 rows, ``json.dumps`` of a dict per row with
    the export keys (data/metadata decoded and re-encoded), written to a file. No digest, no
    fsync, no time formatting (the integer is written as is)."""
    import json

    t0 = time.perf_counter()
    conn = sqlite3.connect(src)
    dumps = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode
    loads = json.loads
    with open(out, "w", encoding="utf-8") as fh:
        for mid, stream, mtype, pos, gpos, data, meta, t in conn.execute(
                f"SELECT {COLS} FROM messages ORDER BY global_position"):
            fh.write(dumps({"id": mid, "stream": stream, "type": mtype, "pos": pos, "gpos": gpos,
                            "data": loads(data), "meta": None if meta is None else loads(meta),
                            "time": t}) + "\n")
    conn.close()
    return time.perf_counter() - t0


def baseline_insert(src: str, dst: str, batch: int = 10_000) -> float:
    drop(dst)
    LocalStore(dst, create=True).close()  # the same schema, created outside the timing
    t0 = time.perf_counter()
    s = sqlite3.connect(src)
    d = sqlite3.connect(dst, isolation_level=None)
    d.execute("PRAGMA synchronous = NORMAL")  # LocalStore's settings, for the same work
    d.execute(f"PRAGMA cache_size = -{BULK_CACHE_KIB}")
    sql = f"INSERT INTO messages ({ALL_COLS}) VALUES (?,?,?,?,?,?,?,?,?,?,?)"
    cur = s.execute(f"SELECT {ALL_COLS} FROM messages ORDER BY global_position")
    while True:
        rows = cur.fetchmany(batch)
        if not rows:
            break
        d.execute("BEGIN IMMEDIATE")
        d.executemany(sql, rows)
        d.execute("COMMIT")
    s.close()
    d.close()
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--messages", type=int, default=1_000_000)
    ap.add_argument("--streams", type=int, default=10_000)
    ap.add_argument("--dir", default=None, help="work directory (default: a temp dir)")
    ap.add_argument("--runs", type=int, default=1)
    args = ap.parse_args()
    work = args.dir or tempfile.mkdtemp(prefix="eventodb-bench-transfer-")
    os.makedirs(work, exist_ok=True)
    src = os.path.join(work, "src.db")
    out = os.path.join(work, "export.ndjson")
    dst = os.path.join(work, "dst.db")
    raw = os.path.join(work, "raw.db")
    build(src, args.messages, args.streams)
    n = args.messages
    e = exe()
    times: dict[str, list[float]] = {k: [] for k in
                                      ("read", "dump", "export", "insert", "import",
                                       "import-verify")}
    for r in range(args.runs):
        times["read"].append(baseline_read(src))
        times["dump"].append(baseline_dump(src, os.path.join(work, "naive.ndjson")))
        times["export"].append(run([e, "export", "--store", src, "-O", out, "--no-progress"]))
        times["insert"].append(baseline_insert(src, raw))
        drop(dst)
        times["import"].append(run([e, "import", out, "--store", dst, "--no-progress"]))
        drop(dst)
        times["import-verify"].append(run([e, "import", out, "--verify", "--store", dst,
                                           "--no-progress"]))
        print(f"run {r + 1}: " + ", ".join(f"{k} {v[-1]:.2f}s" for k, v in times.items()),
              flush=True)
    # the imported store is the source, row for row
    with LocalStore(src) as a, LocalStore(dst) as b:
        assert list(a.iter_category("", 1, 10_000)) == list(b.iter_category("", 1, 10_000))
    med = {k: statistics.median(v) for k, v in times.items()}
    rate = {k: n / v for k, v in med.items()}
    size = os.path.getsize(out)
    print()
    print(f"machine: {platform.machine()}, {os.cpu_count()} cpu, Python "
          f"{platform.python_version()}, SQLite {sqlite3.sqlite_version}")
    print(f"messages: {n:,}; export file {size / 1e6:.1f} MB; runs: {args.runs} (medians)")
    print(f"{'':34}{'seconds':>9}{'messages/s':>14}{'ratio':>8}")
    rows = [
        ("plain sqlite3 read", "read", None),
        ("(context) sqlite3 + json.dumps", "dump", "read"),
        ("eventodb export", "export", "read"),
        ("plain sqlite3 read+insert", "insert", None),
        ("eventodb import", "import", "insert"),
        ("eventodb import --verify", "import-verify", "insert"),
    ]
    for label, k, base in rows:
        ratio = "" if base is None else f"{rate[k] / rate[base]:.2f}x"
        print(f"{label:34}{med[k]:9.2f}{rate[k]:14,.0f}{ratio:>8}")
    if args.dir:
        os.remove(os.path.join(work, "naive.ndjson"))
    else:
        shutil.rmtree(work)


if __name__ == "__main__":
    main()
