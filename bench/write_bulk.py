"""Bulk write: `eventodb write --file` of 200,000 messages vs a plain sqlite3 executemany of the
same rows into the same schema (goal: at least 0.5x the raw rate).

The raw baseline inserts rows whose every column (ids, positions, category, hash, checksum) was
computed before the clock started; the tool parses NDJSON, validates, hashes, checksums and
assigns positions inside its time, and includes its process startup.
"""

from __future__ import annotations

import json
import sqlite3
import sys
import time

from _common import WORK, exe, machine, run

N = int(sys.argv[1]) if len(sys.argv) > 1 else 200_000
STREAMS = 2_000


def main() -> None:
    WORK.mkdir(parents=True, exist_ok=True)
    src = WORK / "bulk.ndjson"
    with open(src, "w") as fh:
        for i in range(N):
            fh.write(json.dumps({"stream": f"account-{i % STREAMS}", "type": "Deposited",
                                 "data": {"amount": i, "note": "bench"}}) + "\n")

    # --- the tool
    tool_times = []
    for rep in range(3):
        db = WORK / f"bulk-tool-{rep}.db"
        for p in WORK.glob(db.name + "*"):
            p.unlink()
        t = time.perf_counter()
        run("write", "--file", src, "--batch-size", 10_000, "--store", db, "--no-progress",
            "--format", "json")
        tool_times.append(time.perf_counter() - t)

    # --- raw sqlite3 executemany of the same rows into the same schema
    from eventodb_cli.domain.integrity import row_checksum
    from eventodb_cli.domain.hashing import stream_hash
    from eventodb_cli.domain.message import canonical_json
    import uuid

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
    raw_times = []
    for rep in range(3):
        db = WORK / f"bulk-raw-{rep}.db"
        for p in WORK.glob(db.name + "*"):
            p.unlink()
        run("write", "schema-0", "--type", "Init", "--store", db)  # same schema, same pragmas
        conn = sqlite3.connect(db, isolation_level=None)
        conn.execute("DELETE FROM messages")
        conn.execute("PRAGMA synchronous = NORMAL")
        t = time.perf_counter()
        for i in range(0, len(rows), 10_000):
            conn.execute("BEGIN IMMEDIATE")
            conn.executemany(
                "INSERT INTO messages (global_position, id, stream_name, type, position, data, "
                "metadata, time, category, cardinal_hash, checksum) VALUES (?,?,?,?,?,?,?,?,?,?,?)",
                rows[i:i + 10_000])
            conn.execute("COMMIT")
        raw_times.append(time.perf_counter() - t)
        conn.close()

    tool = min(tool_times)
    raw = min(raw_times)
    print(f"bulk write, {N:,} messages, {STREAMS:,} streams, batch 10,000 ({machine()})")
    print(f"  eventodb write --file : best {tool:.2f}s  ({N / tool:,.0f} msg/s)  runs "
          + ", ".join(f"{x:.2f}" for x in tool_times))
    print(f"  raw sqlite3 executemany: best {raw:.2f}s  ({N / raw:,.0f} msg/s)  runs "
          + ", ".join(f"{x:.2f}" for x in raw_times))
    print(f"  ratio tool/raw rate   : {raw / tool:.2f}x  (goal >= 0.5x)")
    print(f"  executable: {exe()}")


if __name__ == "__main__":
    main()
