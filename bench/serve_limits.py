"""Memory of ``eventodb serve`` under big requests (issue 9, item 2), measured as the server
process's peak RSS (``VmHWM`` in /proc/<pid>/status; reset between phases through
/proc/<pid>/clear_refs, which needs root or the same user).

Phase 1: WRITES concurrent ``stream.write`` requests of SIZE MiB each (one message, one string
of SIZE MiB in ``data``), while a thread asks ``GET /health`` every 0.1 s: the status of each
write (200, or 503 with Retry-After), the slowest /health answer, the peak RSS.
Phase 2: MESSAGES messages in category ``big`` (written straight into the namespace's store
file), then READS concurrent ``category.get ["big", {"batchSize": -1}]``: every answer
complete, the peak RSS.

    python bench/serve_limits.py [--size-mib 90] [--writes 8] [--messages 100000] [--reads 4]
                                 [--exe eventodb] [-- extra serve flags]
"""

from __future__ import annotations

import argparse
import http.client
import json
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def make_token(namespace="default"):
    import base64
    import secrets

    b = base64.urlsafe_b64encode(namespace.encode()).decode().rstrip("=")
    return f"ns_{b}_{secrets.token_hex(32)}"


def status_kib(pid: int, field: str) -> int:
    with open(f"/proc/{pid}/status") as fh:
        for line in fh:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return -1


def family(pid: int) -> list[int]:
    """``pid`` and its descendants (the helper process that decodes large bodies)."""
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        try:
            for task in Path(f"/proc/{p}/task").iterdir():
                todo += [int(c) for c in (task / "children").read_text().split()]
        except OSError:
            pass
    return out


def reset_peak(pid: int) -> None:
    for p in family(pid):
        try:
            with open(f"/proc/{p}/clear_refs", "w") as fh:
                fh.write("5")
        except OSError:
            pass


def peaks(pid: int) -> str:
    """Peak RSS of the server and of each helper process, and their sum, in MiB."""
    rows = [(p, status_kib(p, "VmHWM")) for p in family(pid)]
    rows = [(p, k) for p, k in rows if k > 0]
    parts = ", ".join(f"{'server' if p == pid else 'helper'} {k / 1024:.0f}" for p, k in rows)
    return f"{parts}; sum {sum(k for _, k in rows) / 1024:.0f} MiB"


def start(exe: str, data_dir: Path, token: str, extra: list[str]):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen([exe, "serve", "--data-dir", str(data_dir), "--port", str(port),
                             "--token", token, *extra], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    for _ in range(300):
        try:
            c = http.client.HTTPConnection("127.0.0.1", port, timeout=1)
            c.request("GET", "/health")
            if c.getresponse().status == 200:
                return proc, port
        except OSError:
            time.sleep(0.1)
    proc.kill()
    raise SystemExit("eventodb serve did not start")


def post(port: int, token: str, body: bytes, timeout=600):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    c.request("POST", "/rpc", body=body, headers={"Authorization": f"Bearer {token}",
                                                  "Content-Type": "application/json"})
    r = c.getresponse()
    data = r.read()
    c.close()
    return r.status, r.getheader("Retry-After"), data


class HealthWatch(threading.Thread):
    def __init__(self, port: int):
        super().__init__(daemon=True)
        self.port = port
        self.worst = 0.0
        self.failures = 0
        self.count = 0
        self.stop = threading.Event()

    def run(self):
        while not self.stop.is_set():
            t0 = time.perf_counter()
            try:
                c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=5)
                c.request("GET", "/health")
                ok = c.getresponse().status == 200
                c.close()
            except OSError:
                ok = False
            self.worst = max(self.worst, time.perf_counter() - t0)
            self.count += 1
            self.failures += not ok
            self.stop.wait(0.1)


def phase_writes(pid, port, token, size_mib, writes):
    reset_peak(pid)
    base = status_kib(pid, "VmRSS")
    filler = "x" * (size_mib * 1024 * 1024)
    body = ('["stream.write","bigwrite-1",{"type":"Big","data":{"s":"%s"}}]' % filler).encode()
    del filler
    watch = HealthWatch(port)
    watch.start()
    results: list = [None] * writes

    def one(i):
        t0 = time.perf_counter()
        status, retry, data = post(port, token, body)
        results[i] = (status, retry, time.perf_counter() - t0, data[:120])

    t0 = time.perf_counter()
    ts = [threading.Thread(target=one, args=(i,)) for i in range(writes)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    elapsed = time.perf_counter() - t0
    watch.stop.set()
    watch.join()
    peak = peaks(pid)
    print(f"phase 1: {writes} concurrent stream.write of {size_mib} MiB: {elapsed:.1f} s")
    for i, (status, retry, secs, data) in enumerate(results):
        extra = f" Retry-After: {retry}" if retry else ""
        print(f"  write {i + 1}: HTTP {status}{extra} after {secs:.1f} s"
              f"{'' if status == 200 else ' ' + data.decode(errors='replace')[:100]}")
    answered = all(s == 200 or (s == 503 and r) for s, r, _, _ in results)
    print(f"  every request answered 200 or 503+Retry-After: {answered}")
    print(f"  /health: {watch.count} requests, {watch.failures} failed, slowest "
          f"{watch.worst * 1000:.0f} ms")
    print(f"  server RSS before {base / 1024:.0f} MiB; peak RSS (VmHWM): {peak}")
    return peak


def phase_reads(pid, port, token, data_dir: Path, messages, reads):
    from eventodb_cli.domain.message import NewMessage, canonical_json
    from eventodb_cli.store.local import LocalStore

    t0 = time.perf_counter()
    store = LocalStore(data_dir / "default.db")
    batch = []
    for i in range(messages):
        batch.append(NewMessage(f"big-{i % 1000}", "Filled",
                                canonical_json({"i": i, "pad": "p" * 100})))
        if len(batch) == 5000:
            store.write_batch(batch)
            batch.clear()
    if batch:
        store.write_batch(batch)
    store.close()
    print(f"phase 2: {messages} messages written in {time.perf_counter() - t0:.1f} s")
    reset_peak(pid)
    base = status_kib(pid, "VmRSS")
    body = json.dumps(["category.get", "big", {"batchSize": -1}]).encode()
    results: list = [None] * reads

    def one(i):
        t1 = time.perf_counter()
        status, _, data = post(port, token, body)
        n = len(json.loads(data)) if status == 200 else data[:100]
        results[i] = (status, n, len(data), time.perf_counter() - t1)

    t0 = time.perf_counter()
    ts = [threading.Thread(target=one, args=(i,)) for i in range(reads)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    peak = peaks(pid)
    print(f"  {reads} concurrent category.get batchSize -1: {time.perf_counter() - t0:.1f} s")
    for i, (status, n, size, secs) in enumerate(results):
        print(f"  read {i + 1}: HTTP {status}, {n} messages, {size / 1e6:.1f} MB in {secs:.1f} s")
    print(f"  all complete: {all(r[0] == 200 and r[1] == messages for r in results)}")
    print(f"  server RSS before {base / 1024:.0f} MiB; peak RSS (VmHWM): {peak}")
    return peak


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size-mib", type=int, default=90)
    ap.add_argument("--writes", type=int, default=8)
    ap.add_argument("--messages", type=int, default=100_000)
    ap.add_argument("--reads", type=int, default=4)
    ap.add_argument("--exe", default=shutil.which("eventodb")
                    or str(Path(sys.executable).parent / "eventodb"))
    ap.add_argument("--skip-writes", action="store_true")
    ap.add_argument("extra", nargs="*", help="extra `eventodb serve` flags (after --)")
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="eventodb-limits-"))
    token = make_token()
    try:
        if not args.skip_writes:
            proc, port = start(args.exe, tmp / "w", token, args.extra)
            try:
                phase_writes(proc.pid, port, token, args.size_mib, args.writes)
            finally:
                proc.terminate()
                proc.wait(30)
        proc, port = start(args.exe, tmp / "r", token, args.extra)
        try:
            phase_reads(proc.pid, port, token, tmp / "r", args.messages, args.reads)
        finally:
            proc.terminate()
            proc.wait(30)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
