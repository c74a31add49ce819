"""A member's batch costs O(batch), not O(category): `category get account --member 0 --size 4
--batch-size 100` on a 1,000,000-message store vs on a 10,000-message store (goal <= 1.3x).

Measured two ways: the whole command (a fresh process, as a shell script calls it) and the
store read alone inside one process; each at the start of the category and at a position near
the end (the last 10% of the category)."""

from __future__ import annotations

import statistics
import sys
import time

from _common import WORK, build_store, machine, run

SMALL, LARGE = 10_000, 1_000_000


def in_process(path, position, repeat=200):
    from eventodb_cli.store.local import LocalStore

    s = LocalStore(path)
    samples = []
    for _ in range(repeat):
        t = time.perf_counter()
        got = s.category_get("account", position, 100, None, 0, 4)
        samples.append(time.perf_counter() - t)
    assert len(got) == 100, len(got)
    s.close()
    return statistics.median(samples)


def command(path, position, repeat=15):
    samples = []
    for _ in range(repeat):
        t = time.perf_counter()
        p = run("category", "get", "account", "--member", 0, "--size", 4, "--batch-size", 100,
                "--position", position, "--store", path, "--format", "ndjson")
        samples.append(time.perf_counter() - t)
    assert p.stdout.count(b"\n") == 100
    return statistics.median(samples)


def main() -> None:
    WORK.mkdir(parents=True, exist_ok=True)
    small, large = WORK / "read-10k.db", WORK / "read-1m.db"
    rebuild = "--rebuild" in sys.argv
    for path, n, streams in ((small, SMALL, 1_000), (large, LARGE, 10_000)):
        if rebuild or not path.exists():
            t = time.perf_counter()
            build_store(path, n, streams)
            print(f"built {path.name}: {n:,} messages, {streams:,} streams in "
                  f"{time.perf_counter() - t:.1f}s")
    print(f"member read, --member 0 --size 4 --batch-size 100 ({machine()})")
    for label, ps, pl in (("from the start", 1, 1), ("near the end", SMALL * 9 // 10,
                                                      LARGE * 9 // 10)):
        a, b = in_process(small, ps), in_process(large, pl)
        print(f"  store read, {label:14}: 10k {a * 1e3:.3f} ms, 1M {b * 1e3:.3f} ms, "
              f"ratio {b / a:.2f}x (goal <= 1.3x)")
        a, b = command(small, ps), command(large, pl)
        print(f"  whole command, {label:11}: 10k {a * 1e3:.1f} ms, 1M {b * 1e3:.1f} ms, "
              f"ratio {b / a:.2f}x (goal <= 1.3x)")


if __name__ == "__main__":
    main()
