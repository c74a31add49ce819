#!/usr/bin/env python
"""verify-groups time vs one unfiltered read of the category, on a 1,000,000-message local store.

    python bench/verify_groups.py [--messages 1000000] [--streams 100000] [--size 4]
                                  [--store PATH] [--runs 3]

Builds the store once (LocalStore.write_batch in batches of 10,000; reused when it already holds
the right number of messages), then times, through the installed ``eventodb`` executable with
stdout to /dev/null, alternating runs:

- baseline: ``eventodb category get bench --all --format ndjson`` (one unfiltered read);
- baseline-10k: the same with ``--batch-size 10000`` (the page size verify-groups uses);
- verify: ``eventodb verify-groups bench --size N --format json``.

And in-process, without process start-up or output (what the reads themselves cost):

- store-read: one unfiltered pass over the category through the Store interface (pages of
  10,000, counting messages per stream: verify-groups' own first pass);
- verify-in-process: ``services.groups.verify`` (that pass plus one read per member).

Prints medians and the ratios against the baseline measured in the same run (goal: <= 2.5x).

``--serve`` (issue 12 acceptance 5: <= 2x): the same store exported and imported into a real
``eventodb serve`` on loopback, then in one process through ``RemoteStore``: one paged read of
the category (pages of 10,000, the server's largest) vs ``services.groups.verify``, each with
the HTTP requests it sent (``RemoteStore.requests``), its wall time and the CPU seconds of this
process and of the server (``/proc/<pid>/stat``: steadier than wall time on a shared machine).
"""

from __future__ import annotations

import argparse
import os
import random
import resource
import shutil
import statistics
import subprocess
import sys
import time
import uuid

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))

from eventodb_cli.domain.message import NewMessage  # noqa: E402
from eventodb_cli.store.local import LocalStore  # noqa: E402

CATEGORY = "bench"


def build(path: str, messages: int, streams: int, seed: int = 1) -> None:
    if os.path.exists(path):
        with LocalStore(path) as st:
            if st.message_count() == messages:
                print(f"store: reusing {path} ({messages:,} messages)", flush=True)
                return
        os.remove(path)
    rng = random.Random(seed)
    names = [f"{CATEGORY}-{uuid.UUID(int=rng.getrandbits(128), version=4)}"
             for _ in range(streams)]
    data = '{"amount":100,"note":"benchmark message with a little payload"}'
    t0 = time.perf_counter()
    with LocalStore(path, create=True) as st:
        done = 0
        while done < messages:
            k = min(10_000, messages - done)
            st.write_batch([NewMessage(names[rng.randrange(streams)], "Deposited", data)
                            for _ in range(k)])
            done += k
    print(f"store: built {path}: {messages:,} messages in {streams:,} streams in "
          f"{time.perf_counter() - t0:.1f}s", flush=True)


def _children_cpu() -> float:
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    return ru.ru_utime + ru.ru_stime


def timed(cmd: list[str]) -> tuple[float, float]:
    """(wall seconds, CPU seconds of the child): CPU time is the steadier figure on a machine
    whose cores are shared with other work."""
    c0 = _children_cpu()
    t0 = time.perf_counter()
    with open(os.devnull, "wb") as null:
        p = subprocess.run(cmd, stdout=null, stderr=subprocess.PIPE)
    dt = time.perf_counter() - t0
    if p.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed ({p.returncode}): {p.stderr.decode()[-500:]}")
    return dt, _children_cpu() - c0


def in_process(path: str, size: int) -> dict[str, tuple[float, float]]:
    from eventodb_cli.services import groups as svc

    out = {}
    with LocalStore(path) as st:
        head = st.category_head(CATEGORY)
        t0, c0 = time.perf_counter(), time.process_time()
        svc._read_counts(st, CATEGORY, head, None, None, "read", None)
        out["store-read"] = (time.perf_counter() - t0, time.process_time() - c0)
        t0, c0 = time.perf_counter(), time.process_time()
        rep = svc.verify(st, CATEGORY, size)
        out["verify-in-process"] = (time.perf_counter() - t0, time.process_time() - c0)
        assert rep["ok"], rep["violationCounts"]
    return out


def serve_mode(a, exe: str) -> None:
    import base64
    import secrets
    import socket
    import tempfile

    from eventodb_cli.services import groups
    from eventodb_cli.store.remote import RemoteStore

    tmp = tempfile.mkdtemp(prefix="evento-verify-")
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    token = ("ns_" + base64.urlsafe_b64encode(b"default").decode().rstrip("=") + "_"
             + secrets.token_hex(32))
    url = f"http://127.0.0.1:{port}"
    proc = subprocess.Popen([exe, "serve", "--data-dir", os.path.join(tmp, "data"), "--host",
                             "127.0.0.1", "--port", str(port), "--token", token],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        for _ in range(300):
            if subprocess.run([exe, "server", "health", "--url", url],
                              capture_output=True).returncode == 0:
                break
            time.sleep(0.1)
        dump = os.path.join(tmp, "all.ndjson")
        subprocess.run([exe, "export", "--store", a.store, "-O", dump], check=True,
                       capture_output=True)
        t = time.perf_counter()
        subprocess.run([exe, "import", dump, "--url", url, "--token", token], check=True,
                       capture_output=True)
        print(f"serve: imported {a.messages:,} messages in {time.perf_counter() - t:.1f}s",
              flush=True)
        rows = []

        def server_cpu() -> float:  # the server's own CPU seconds (utime + stime)
            f = open(f"/proc/{proc.pid}/stat").read().rsplit(")", 1)[1].split()
            return (int(f[11]) + int(f[12])) / os.sysconf("SC_CLK_TCK")

        def measured(fn):
            s0, c0, t0 = server_cpu(), time.process_time(), time.perf_counter()
            out = fn()
            return (out, time.perf_counter() - t0, time.process_time() - c0,
                    server_cpu() - s0)

        print(f"load average {os.getloadavg()[0]:.2f}", flush=True)
        for r in range(a.runs):
            with RemoteStore(url, token) as st:
                n, read_s, read_c, read_srv = measured(
                    lambda: sum(len(b) for b, _ in st.category_pages(CATEGORY, 1, 10_000)))
                read_req = st.requests
            with RemoteStore(url, token) as st:
                rep, ver_s, ver_c, ver_srv = measured(lambda: groups.verify(st, CATEGORY, a.size))
                ver_req = st.requests
            assert n == a.messages and rep["ok"], (n, rep.get("violations", [])[:2])
            rows.append((read_s, read_req, ver_s, ver_req))
            print(f"run {r + 1}: one paged read {read_s:.2f}s ({read_req} requests), "
                  f"verify-groups --size {a.size} {ver_s:.2f}s ({ver_req} requests, ok), "
                  f"ratio {ver_s / read_s:.2f}x; cpu client/server: read {read_c:.2f}/"
                  f"{read_srv:.2f}s, verify {ver_c:.2f}/{ver_srv:.2f}s", flush=True)
        ratios = sorted(v / r for r, _, v, _ in rows)
        print(f"verify-groups / one paged read on eventodb serve: median "
              f"{statistics.median(ratios):.2f}x (goal <= 2x; runs "
              + ", ".join(f"{x:.2f}x" for x in ratios) + f"); load average "
              f"{os.getloadavg()[0]:.2f}")
    finally:
        proc.terminate()
        proc.wait(10)
        shutil.rmtree(tmp, ignore_errors=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--messages", type=int, default=1_000_000)
    ap.add_argument("--streams", type=int, default=100_000)
    ap.add_argument("--size", type=int, default=4)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--store", default=os.path.join("/tmp", "eventodb-bench", "verify-1m.db"))
    ap.add_argument("--serve", action="store_true",
                    help="against eventodb serve: verify-groups vs one paged read, requests")
    a = ap.parse_args()
    exe = shutil.which("eventodb") or os.path.join(os.path.dirname(sys.executable), "eventodb")
    build(a.store, a.messages, a.streams)
    if a.serve:
        return serve_mode(a, exe)
    s = ["--store", a.store]
    cmds = {
        "baseline": [exe, "category", "get", CATEGORY, "--all", "--format", "ndjson", *s],
        "baseline-10k": [exe, "category", "get", CATEGORY, "--all", "--batch-size", "10000",
                         "--format", "ndjson", *s],
        "verify": [exe, "verify-groups", CATEGORY, "--size", str(a.size), "--format", "json", *s],
    }
    times: dict[str, list[tuple[float, float]]] = {k: [] for k in cmds}
    times["store-read"] = []
    times["verify-in-process"] = []
    timed(cmds["baseline"])  # warm the page cache
    for r in range(a.runs):
        for k, cmd in cmds.items():
            times[k].append(timed(cmd))
        for k, v in in_process(a.store, a.size).items():
            times[k].append(v)
        print(f"run {r + 1}: " + ", ".join(f"{k} {v[-1][0]:.2f}s wall {v[-1][1]:.2f}s cpu"
                                          for k, v in times.items()), flush=True)
    wall = {k: statistics.median(x[0] for x in v) for k, v in times.items()}
    cpu = {k: statistics.median(x[1] for x in v) for k, v in times.items()}
    print()
    print(f"{a.messages:,} messages, {a.streams:,} streams, size {a.size}, median of {a.runs} "
          f"(load average before: {os.getloadavg()[0]:.1f}):")
    print(f"  {'':<18} {'wall':>8} {'x base':>7} {'cpu':>8} {'x base':>7}")
    for k in times:
        print(f"  {k:<18} {wall[k]:7.2f}s {wall[k] / wall['baseline']:6.2f}x "
              f"{cpu[k]:7.2f}s {cpu[k] / cpu['baseline']:6.2f}x")
    for label, d in (("wall", wall), ("cpu", cpu)):
        ratio = d["verify"] / d["baseline"]
        print(f"verify-groups / category get --all ({label}) = {ratio:.2f}x (goal <= 2.5x): "
              f"{'met' if ratio <= 2.5 else 'MISSED'}")
    print(f"in process, reads only (cpu): verify / one unfiltered pass = "
          f"{cpu['verify-in-process'] / cpu['store-read']:.2f}x")


if __name__ == "__main__":
    main()
