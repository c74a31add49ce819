"""Startup: `eventodb stream version X` on a local store vs `python -c "import click, sqlite3"`
(goal <= 1.5x), and proof that httpx and rich are not imported on that path."""

from __future__ import annotations

import statistics
import subprocess
import sys
import time

from _common import WORK, exe, machine, run


def median_run(cmd, repeat=30):
    samples = []
    for _ in range(repeat):
        t = time.perf_counter()
        subprocess.run(cmd, check=True, capture_output=True)
        samples.append(time.perf_counter() - t)
    return statistics.median(samples)


def main() -> None:
    WORK.mkdir(parents=True, exist_ok=True)
    store = WORK / "startup.db"
    if not store.exists():
        run("write", "x-1", "--type", "T", "--store", store)
    tool_cmd = [exe(), "stream", "version", "x-1", "--store", str(store), "--format", "json"]
    base_cmd = [sys.executable, "-c", "import click, sqlite3"]
    # interleave so both see the same machine load
    tool, base = [], []
    for _ in range(5):
        base.append(median_run(base_cmd, 6))
        tool.append(median_run(tool_cmd, 6))
    t, b = statistics.median(tool), statistics.median(base)
    print(f"startup ({machine()})")
    print(f"  python -c 'import click, sqlite3'   : {b * 1e3:.1f} ms")
    print(f"  eventodb stream version x-1 (local) : {t * 1e3:.1f} ms")
    print(f"  ratio: {t / b:.2f}x (goal <= 1.5x)")
    imp = subprocess.run([sys.executable, "-X", "importtime", "-c",
                          "import sys; sys.argv=['eventodb','stream','version','x-1','--store',"
                          f"'{store}','--format','json']; from eventodb_cli.cli.main import main;"
                          " main()"], capture_output=True, text=True)
    mods = {line.split("|")[-1].strip() for line in imp.stderr.splitlines() if "|" in line}
    heavy = sorted(m for m in mods if m.split(".")[0] in ("httpx", "rich", "sqlite_utils",
                                                          "httpcore", "anyio", "starlette"))
    print(f"  modules imported: {len(mods)}; httpx/rich/sqlite_utils among them: "
          f"{heavy or 'none'}")


if __name__ == "__main__":
    main()
