"""Bulk write: `eventodb write --file` of 200,000 messages (default batch size, uuid stream
names) vs a plain sqlite3 executemany of the same rows into the same schema (goal, issue 12
acceptance 4: at least 1.0x the raw rate).

The raw baseline inserts rows whose every column (ids, positions, category, hash, checksum) was
computed before the clock started; the tool parses NDJSON, validates, hashes, checksums and
assigns positions inside its time, and includes its process startup. The tool runs its parser
in a second process (services/bulkproc.py) on files of 1 MiB or more with 2+ CPUs: its wall time
needs both cores; the CPU line adds both processes' time (a busy machine pays that).
"""

from __future__ import annotations

import json
import resource
import sqlite3
import sys
import time

from _common import WORK, exe, machine, run

N = int(sys.argv[1]) if len(sys.argv) > 1 else 200_000
STREAMS = int(sys.argv[2]) if len(sys.argv) > 2 else 20_000
RAW_BATCH = 10_000


def main() -> None:
    import random
    import uuid

    WORK.mkdir(parents=True, exist_ok=True)
    src = WORK / "bulk.ndjson"
    rng = random.Random(7)
    names = [f"account-{uuid.UUID(int=rng.getrandbits(128), version=4)}" for _ in range(STREAMS)]
    with open(src, "w") as fh:
        for i in range(N):
            fh.write(json.dumps({"stream": names[rng.randrange(STREAMS)], "type": "Deposited",
                                 "data": {"amount": i, "note": "bench"}}) + "\n")

    # --- the rows of the raw baseline, every column computed before its clock starts
    from eventodb_cli.domain.integrity import row_checksum
    from eventodb_cli.domain.hashing import stream_hash
    from eventodb_cli.domain.message import canonical_json

    rows = []
    versions: dict[str, int] = {}
    now = time.time_ns()
    with open(src) as fh:
        for g, line in enumerate(fh, 1):
            r = json.loads(line)
            s = r["stream"]
            v = versions.get(s, -1) + 1
            versions[s] = v
            data = canonical_json(r["data"])
            mid = str(uuid.uuid4())
            rows.append((g, mid, s, r["type"], v, data, None, now, "account", stream_hash(s),
                         row_checksum(mid, s, r["type"], v, g, data, None, now)))

    def fresh(name: str):
        db = WORK / name
        for p in WORK.glob(db.name + "*"):
            p.unlink()
        return db

    def raw(db, pragmas: tuple[str, ...]) -> float:
        run("write", "schema-0", "--type", "Init", "--store", db)  # same schema, same pragmas
        conn = sqlite3.connect(db, isolation_level=None)
        conn.execute("DELETE FROM messages")
        conn.execute("PRAGMA synchronous = NORMAL")
        for p in pragmas:
            conn.execute("PRAGMA " + p)
        t = time.perf_counter()
        cpu = time.process_time()
        for i in range(0, len(rows), RAW_BATCH):
            conn.execute("BEGIN IMMEDIATE")
            conn.executemany(
                "INSERT INTO messages (global_position, id, stream_name, type, position, data, "
                "metadata, time, category, cardinal_hash, checksum) VALUES (?,?,?,?,?,?,?,?,?,?,?)",
                rows[i:i + RAW_BATCH])
            conn.execute("COMMIT")
        took = time.perf_counter() - t
        raw_cpu.append(time.process_time() - cpu)
        conn.close()
        return took

    # rounds alternate the three, so a busy machine slows them alike
    tool_times, raw_times, raw2_times = [], [], []
    tool_cpu: list[float] = []
    raw_cpu: list[float] = []

    def children_cpu() -> float:
        r = resource.getrusage(resource.RUSAGE_CHILDREN)  # the tool and its parser process
        return r.ru_utime + r.ru_stime

    for rep in range(3):
        db = fresh(f"bulk-tool-{rep}.db")
        c0 = children_cpu()
        t = time.perf_counter()
        run("write", "--file", src, "--store", db, "--no-progress", "--format", "json")
        tool_times.append(time.perf_counter() - t)
        tool_cpu.append(children_cpu() - c0)
        raw_times.append(raw(fresh(f"bulk-raw-{rep}.db"), ()))
        raw2_times.append(raw(fresh(f"bulk-raw2-{rep}.db"),
                              ("cache_size = -65536", "wal_autocheckpoint = 16384")))
    for p in WORK.glob("bulk-*.db*"):
        p.unlink()

    tool = min(tool_times)
    raw = min(raw_times)
    raw2 = min(raw2_times)
    print(f"bulk write, {N:,} messages, {STREAMS:,} uuid streams; the tool at its default batch "
          f"size, raw executemany in transactions of {RAW_BATCH:,} ({machine()})")
    print(f"  eventodb write --file : best {tool:.2f}s  ({N / tool:,.0f} msg/s)  runs "
          + ", ".join(f"{x:.2f}" for x in tool_times))
    print(f"  raw sqlite3 executemany: best {raw:.2f}s  ({N / raw:,.0f} msg/s)  runs "
          + ", ".join(f"{x:.2f}" for x in raw_times))
    print(f"  raw, the tool's pragmas: best {raw2:.2f}s  ({N / raw2:,.0f} msg/s)  runs "
          + ", ".join(f"{x:.2f}" for x in raw2_times)
          + "  (64 MiB cache, checkpoint every 16,384 pages)")
    print(f"  ratio tool/raw rate   : {raw / tool:.2f}x  (goal >= 1.0x); median of rounds "
          f"{sorted(r / t for r, t in zip(raw_times, tool_times))[1]:.2f}x")
    print(f"  ratio tool/raw with the tool's pragmas: {raw2 / tool:.2f}x (the tool also parses, "
          "validates and fsyncs at the end)")
    print(f"  CPU (user+sys), best: tool {min(tool_cpu):.2f}s (both of its processes), raw "
          f"executemany {min(raw_cpu[0::2]):.2f}s, raw with the tool's pragmas "
          f"{min(raw_cpu[1::2]):.2f}s")
    print(f"  executable: {exe()}")


if __name__ == "__main__":
    main()
