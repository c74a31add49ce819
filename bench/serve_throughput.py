"""Throughput of ``eventodb serve`` for single ``stream.write`` requests.

Starts a real ``eventodb serve`` on 127.0.0.1 (fresh data dir), then, for each run:

- baseline A: ``GET /health`` requests/s from the same concurrent client (HTTP + client cost);
- the figure: ``stream.write`` requests/s, one message per request, from THREADS threads, each
  with its own keep-alive client, every thread writing its own streams (``bench-<t>-<i%50>``);
- baseline B (once): raw ``LocalStore.write`` rate in this process (no HTTP).

Clients: ``httpx`` (one ``httpx.Client`` per thread) and ``http.client`` (stdlib, one
persistent connection per thread, much cheaper per request, so the server's share shows).
Prints every run and the medians. Besides requests/s (which on a shared 2-core machine moves
with whatever else runs), it prints the server process's CPU time per request (user + system,
from /proc/<pid>/stat), which is far less sensitive to that noise.

    python bench/serve_throughput.py [--runs 3] [--requests 4000] [--threads 8]
        [--clients httpx,http.client] [--tree DIR]

``--threads 1`` measures single sequential writes; ``--tree DIR`` runs the server from another
copy of the package (``git archive COMMIT eventodb_cli | tar -x -C DIR``), so a before/after
pair runs on the same machine minutes apart.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import platform
import shutil
import statistics
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


def start(data_dir: Path, token: str, tree: str | None = None):
    """Start ``eventodb serve``: the installed one, or (``tree``) the package in that directory
    (e.g. an older commit's ``git archive``), to compare two versions in one run."""
    import socket

    import httpx

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    exe = shutil.which("eventodb") or str(Path(sys.executable).parent / "eventodb")
    cmd = [exe]
    env = None
    if tree:
        # -P: without it ``-c`` puts the current directory first on sys.path, and run from
        # the repository's root the server would import ./eventodb_cli, not the tree's
        cmd = [sys.executable, "-P", "-c", "from eventodb_cli.cli.main import main; main()"]
        env = dict(os.environ, PYTHONPATH=os.path.abspath(tree))
    proc = subprocess.Popen(cmd + ["serve", "--data-dir", str(data_dir), "--port", str(port),
                                   "--token", token], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, env=env)
    url = f"http://127.0.0.1:{port}"
    for _ in range(300):
        try:
            if httpx.get(url + "/health", timeout=1).status_code == 200:
                return proc, port
        except httpx.HTTPError:
            time.sleep(0.1)
    proc.kill()
    raise SystemExit("eventodb serve did not start")


def server_cpu(pid: int) -> float:
    """User + system CPU seconds of process ``pid`` (Linux)."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            fields = fh.read().rsplit(")", 1)[1].split()
    except OSError:
        return float("nan")
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def run_threads(threads: int, total: int, make_worker) -> float:
    """Run ``total`` requests split over ``threads``; return requests per second."""
    per = total // threads
    barrier = threading.Barrier(threads + 1)
    errors: list = []

    def body(t):
        try:
            work = make_worker(t)
            barrier.wait()
            for i in range(per):
                work(i)
        except Exception as e:  # pragma: no cover - reported below
            errors.append(e)
            try:
                barrier.abort()
            except Exception:
                pass

    ts = [threading.Thread(target=body, args=(t,)) for t in range(threads)]
    for t in ts:
        t.start()
    barrier.wait()
    t0 = time.perf_counter()
    for t in ts:
        t.join()
    elapsed = time.perf_counter() - t0
    if errors:
        raise errors[0]
    return per * threads / elapsed


def httpx_worker(port, token, kind, run):
    import httpx

    def make(t):
        c = httpx.Client(base_url=f"http://127.0.0.1:{port}",
                         headers={"Authorization": f"Bearer {token}"}, timeout=60)
        if kind == "health":
            return lambda i: c.get("/health").raise_for_status()

        def w(i):
            r = c.post("/rpc", content=json.dumps(
                ["stream.write", f"bench{run}-{t}-{i % 50}",
                 {"type": "Bench", "data": {"i": i, "t": t}}]))
            if r.status_code != 200:
                raise RuntimeError(r.text)
        return w
    return make


def stdlib_worker(port, token, kind, run):
    def make(t):
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}

        def health(i):
            conn.request("GET", "/health")
            r = conn.getresponse()
            r.read()
            if r.status != 200:
                raise RuntimeError(r.status)

        def w(i):
            conn.request("POST", "/rpc", body=json.dumps(
                ["stream.write", f"bench{run}-{t}-{i % 50}",
                 {"type": "Bench", "data": {"i": i, "t": t}}]), headers=headers)
            r = conn.getresponse()
            data = r.read()
            if r.status != 200:
                raise RuntimeError(data)
        return health if kind == "health" else w
    return make


def local_store_rate(path: Path, n: int) -> float:
    from eventodb_cli.domain.message import NewMessage, canonical_json
    from eventodb_cli.store.local import LocalStore

    store = LocalStore(path, create=True)
    t0 = time.perf_counter()
    c0 = time.process_time()
    for i in range(n):
        store.write(NewMessage(f"raw-{i % 50}", "Bench", canonical_json({"i": i})))
    cpu_us = (time.process_time() - c0) / n * 1e6
    rate = n / (time.perf_counter() - t0)
    store.close()
    return rate, cpu_us


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--requests", type=int, default=4000)
    ap.add_argument("--threads", type=int, default=8,
                    help="client threads (1: single sequential writes)")
    ap.add_argument("--clients", default="httpx,http.client",
                    help="comma-separated: httpx, http.client")
    ap.add_argument("--tree", help="run the server from the package in this directory "
                    "(PYTHONPATH), not the installed one")
    args = ap.parse_args()
    clients = [(c, {"httpx": httpx_worker, "http.client": stdlib_worker}[c])
               for c in args.clients.split(",")]

    tmp = Path(tempfile.mkdtemp(prefix="eventodb-bench-"))
    token = make_token()
    proc, port = start(tmp / "data", token, args.tree)
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores "
          f"(shared, noisy), Python {platform.python_version()}")
    print(f"eventodb serve on 127.0.0.1:{port}; {args.threads} client threads, "
          f"{args.requests} requests per measurement, {args.runs} runs")
    results: dict[str, list[float]] = {}
    cpu: dict[str, list[float]] = {}
    try:
        # warm up connections and SQLite
        run_threads(args.threads, args.threads * 20,
                    stdlib_worker(port, token, "write", "warm"))
        for run in range(args.runs):
            for client, factory in clients:
                for kind in ("health", "write"):
                    c0 = server_cpu(proc.pid)
                    rate = run_threads(args.threads, args.requests,
                                       factory(port, token, kind, f"{run}{client[0]}"))
                    us = (server_cpu(proc.pid) - c0) / args.requests * 1e6
                    key = f"{client} {'GET /health' if kind == 'health' else 'stream.write'}"
                    results.setdefault(key, []).append(rate)
                    cpu.setdefault(key, []).append(us)
                    print(f"run {run + 1}: {key:28s} {rate:8.0f} req/s   server CPU "
                          f"{us:5.0f} us/req", flush=True)
    finally:
        proc.terminate()
        proc.wait(10)
    raw_runs = [local_store_rate(tmp / f"raw{i}.db", 5000) for i in range(args.runs)]
    raw = [r for r, _ in raw_runs]
    raw_cpu = statistics.median(c for _, c in raw_runs)
    shutil.rmtree(tmp, ignore_errors=True)
    print()
    print("medians:")
    for key, rates in results.items():
        print(f"  {key:28s} {statistics.median(rates):8.0f} req/s   "
              f"server CPU {statistics.median(cpu[key]):4.0f} us/req   "
              f"(runs: {', '.join(f'{r:.0f}' for r in rates)})")
    raw_med = statistics.median(raw)
    print(f"  {'LocalStore.write (no HTTP)':28s} {raw_med:8.0f} writes/s "
          f"CPU {raw_cpu:4.0f} us/write (runs: {', '.join(f'{r:.0f}' for r in raw)})")
    for client, _ in clients:
        w = statistics.median(results[f"{client} stream.write"])
        h = statistics.median(results[f"{client} GET /health"])
        print(f"  ratio {client}: stream.write / GET /health = {w / h:.2f}; "
              f"stream.write / LocalStore.write = {w / raw_med:.2f}")
    client = clients[-1][0]
    wc = statistics.median(cpu[f"{client} stream.write"])
    hc = statistics.median(cpu[f"{client} GET /health"])
    print(f"  server CPU per stream.write ({client}): {wc:.0f} us = {hc:.0f} us HTTP "
          f"(as /health) + {wc - hc:.0f} us; LocalStore.write alone: {raw_cpu:.0f} us")


if __name__ == "__main__":
    main()
