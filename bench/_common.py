"""Shared helpers for the bench scripts: medians, the executable, fast store building."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
WORK = ROOT / "bench" / "work"


def exe() -> str:
    found = shutil.which("eventodb") or str(Path(sys.executable).parent / "eventodb")
    return found


def run(*args, **kw) -> subprocess.CompletedProcess:
    p = subprocess.run([exe(), *map(str, args)], capture_output=True, **kw)
    if p.returncode != 0:
        raise SystemExit(f"eventodb {' '.join(map(str, args))} failed: {p.stderr.decode()}")
    return p


def build_store(path: Path, n: int, streams: int, category: str = "account") -> None:
    """A store of ``n`` messages over ``streams`` uuid streams, through LocalStore.import_records
    (the real schema, checksums and hashes), fast enough for millions of rows."""
    from eventodb_cli.domain.message import Message
    from eventodb_cli.store.local import LocalStore

    if path.exists():
        path.unlink()
    for suffix in ("-wal", "-shm"):
        p = Path(str(path) + suffix)
        if p.exists():
            p.unlink()
    rng = uuid.UUID(int=12345)
    names = [f"{category}-{uuid.UUID(int=rng.int + i * 7919)}" for i in range(streams)]
    versions = [0] * streams
    t0 = 1_700_000_000 * 10**9
    s = LocalStore(path, create=True)

    def records():
        for g in range(1, n + 1):
            k = (g * 2654435761) % streams
            pos = versions[k]
            versions[k] += 1
            yield Message(str(uuid.UUID(int=g)), names[k], "Deposited", pos, g,
                          '{"amount":%d}' % g, None, t0 + g * 1000)

    s.import_records(records(), batch_size=20_000)
    s.close()


def machine() -> str:
    return f"{os.cpu_count()} cores, Python {sys.version.split()[0]}"
