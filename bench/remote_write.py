#!/usr/bin/env python3
"""Remote bulk write: ``eventodb write --file`` of N messages to a real ``eventodb serve``,
concurrent (``--concurrency C``) vs one request at a time (``--concurrency 1``), and (issue 12
acceptance 1, goal >= 0.8x) vs 8 stdlib ``http.client`` threads writing the same messages to the
same server in the same run (``stdlib-8``: each thread one keep-alive connection, the streams
split among the threads, each stream's messages in order, as the tool does).

Usage: python bench/remote_write.py [--messages 20000] [--streams 200] [--concurrency 4,8,16]
                                    [--runs 1]

Starts ``eventodb serve`` on a free loopback port with a temp data dir, writes the same NDJSON
file (``--streams`` streams, records interleaved) into a fresh namespace per run, checks the
namespace holds exactly N messages, and prints seconds, messages/s and the ratio (medians when
``--runs`` > 1). Results are recorded by hand in bench/RESULTS-remote.md.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def exe() -> str:
    found = shutil.which("eventodb") or os.path.join(os.path.dirname(sys.executable), "eventodb")
    if not os.path.exists(found):
        sys.exit("the eventodb executable is not installed (pip install -e .)")
    return found


def token_for(ns: str) -> str:
    import base64

    b = base64.urlsafe_b64encode(ns.encode()).decode().rstrip("=")
    return f"ns_{b}_{secrets.token_hex(32)}"


def stdlib_write(url: str, token: str, lines: list[str], threads: int = 8) -> float:
    """The same messages through ``threads`` stdlib http.client connections: seconds."""
    import http.client
    import threading
    from urllib.parse import urlsplit

    host = urlsplit(url)
    groups: dict[str, list[dict]] = {}
    for line in lines:
        rec = json.loads(line)
        groups.setdefault(rec["stream"], []).append(rec)
    shares: list[list[bytes]] = [[] for _ in range(threads)]
    for k, (stream, recs) in enumerate(groups.items()):
        for rec in recs:
            body = json.dumps(["stream.write", stream, {"type": rec["type"], "data": rec["data"]},
                               {"id": str(uuid.uuid4())}], separators=(",", ":"))
            shares[k % threads].append(body.encode())
    headers = {"Content-Type": "application/json", "Authorization": f"Bearer {token}"}
    errors: list[str] = []

    def work(bodies: list[bytes]) -> None:
        conn = http.client.HTTPConnection(host.hostname, host.port, timeout=30)
        for b in bodies:
            conn.request("POST", "/rpc", b, headers)
            r = conn.getresponse()
            r.read()
            if r.status != 200:
                errors.append(f"HTTP {r.status}")
                return
        conn.close()

    ts = [threading.Thread(target=work, args=(sh,)) for sh in shares]
    started = time.perf_counter()
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    took = time.perf_counter() - started
    assert not errors, errors[:3]
    return took


def run_cli(*args: str, env: dict) -> subprocess.CompletedProcess:
    return subprocess.run([exe(), *args], capture_output=True, text=True, env=env)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--messages", type=int, default=20000)
    ap.add_argument("--streams", type=int, default=200)
    ap.add_argument("--concurrency", default="8",
                    help="concurrency to compare with 1; a list like 4,8,16 runs each")
    ap.add_argument("--runs", type=int, default=1)
    ap.add_argument("--no-sequential", action="store_true",
                    help="skip the --concurrency 1 run (slow; the stdlib-8 comparison stays)")
    args = ap.parse_args()
    levels = [int(x) for x in str(args.concurrency).split(",")]

    tmp = tempfile.mkdtemp(prefix="evento-bench-")
    port = free_port()
    admin = token_for("default")
    url = f"http://127.0.0.1:{port}"
    log = open(os.path.join(tmp, "serve.log"), "wb")
    proc = subprocess.Popen([exe(), "serve", "--data-dir", os.path.join(tmp, "data"),
                             "--host", "127.0.0.1", "--port", str(port), "--token", admin],
                            stdout=log, stderr=subprocess.STDOUT)
    env = dict(os.environ, EVENTODB_URL=url)
    env.pop("EVENTODB_TOKEN", None)
    try:
        deadline = time.monotonic() + 30
        while run_cli("server", "health", env=env).returncode != 0:
            if time.monotonic() > deadline or proc.poll() is not None:
                sys.exit("eventodb serve did not start")
            time.sleep(0.2)
        path = os.path.join(tmp, "messages.ndjson")
        with open(path, "w") as fh:
            for i in range(args.messages):
                fh.write(json.dumps({"stream": f"bench-{i % args.streams}", "type": "Bench",
                                     "data": {"i": i, "pad": "x" * 64}}) + "\n")
        version = run_cli("server", "version", "-o", "table", env=env).stdout.strip()
        print(f"eventodb serve {version} at {url}; {args.messages} messages, "
              f"{args.streams} streams, {os.cpu_count()} CPUs")
        modes = levels + ([] if args.no_sequential or 1 in levels else [1])
        times: dict = {c: [] for c in modes}
        times["stdlib-8"] = []
        with open(path) as fh:
            lines = fh.readlines()

        def fresh_ns(tag):
            ns = f"bench-{tag}-{uuid.uuid4().hex[:6]}"
            tok = token_for(ns)
            r = run_cli("ns", "create", ns, "--new-token", tok, "-o", "json",
                        "--token", admin, env=env)
            assert r.returncode == 0, r.stderr
            return tok

        for run in range(args.runs):
            tok = fresh_ns("stdlib")
            took = stdlib_write(url, tok, lines)
            info = json.loads(run_cli("ns", "info", "-o", "json", "--token", tok,
                                      env=env).stdout)
            assert info["messageCount"] == args.messages, info
            times["stdlib-8"].append(took)
            print(f"run {run + 1}: stdlib-8 (8 http.client threads): {took:7.2f} s  "
                  f"{args.messages / took:8.0f} msg/s", flush=True)
            for conc in modes:
                ns = f"bench-{conc}-{uuid.uuid4().hex[:6]}"
                tok = token_for(ns)
                r = run_cli("ns", "create", ns, "--new-token", tok, "-o", "json",
                            "--token", admin, env=env)
                assert r.returncode == 0, r.stderr
                started = time.perf_counter()
                r = run_cli("write", "--file", path, "--concurrency", str(conc), "-o", "json",
                            "--token", tok, env=env)
                took = time.perf_counter() - started
                assert r.returncode == 0, r.stderr
                summary = json.loads(r.stdout)
                info = json.loads(run_cli("ns", "info", "-o", "json", "--token", tok,
                                          env=env).stdout)
                assert summary["written"] == info["messageCount"] == args.messages, \
                    (summary, info)
                times[conc].append(took)
                print(f"run {run + 1}: --concurrency {conc:>2}: {took:7.2f} s  "
                      f"{args.messages / took:8.0f} msg/s", flush=True)
        seq_t = statistics.median(times[1]) if times.get(1) else float("nan")
        base_t = statistics.median(times["stdlib-8"])
        ratios = sorted(b / t for b, t in zip(times["stdlib-8"], times[levels[0]]))
        print()
        print(f"write --file --concurrency {levels[0]} vs stdlib-8: "
              f"{base_t / statistics.median(times[levels[0]]):.2f}x of the baseline's rate "
              f"(per run: {', '.join(f'{r:.2f}x' for r in ratios)}; goal >= 0.8x)")
        print(f"median of {args.runs} run(s), {args.messages} messages:")
        print("| mode | seconds | messages/s | vs --concurrency 1 |")
        print("|---|---:|---:|---:|")
        print(f"| stdlib-8 | {base_t:.2f} | {args.messages / base_t:.0f} | "
              f"{seq_t / base_t:.2f}x |")
        for conc in modes:
            t = statistics.median(times[conc])
            print(f"| --concurrency {conc} | {t:.2f} | {args.messages / t:.0f} | "
                  f"{seq_t / t:.2f}x |")
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
