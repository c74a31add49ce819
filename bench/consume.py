#!/usr/bin/env python3
"""Consume throughput on a local store vs a plain read of the same share.

Builds a local store of --messages messages in one category over --streams streams (uuid ids),
then times, with the installed ``eventodb`` executable and stdout on /dev/null:

  A  eventodb consume CAT --member M --size N --checkpoint <fresh> --batch-size B > /dev/null
     (NDJSON per message, checkpoint replaced atomically after each batch; fsync'd at most once
     per --sync-interval, 1 s, and at the end)
  B  eventodb category get CAT --all --member M --size N --format ndjson > /dev/null

for each --batch-size given (and with --ledger, consume with a fresh idempotency ledger; with
--pipe, a persistent handler, below), in
--repeat rounds that interleave B and every A (so a busy machine slows them alike). Prints a
Markdown table: best time and messages/s of each, and the median over rounds of B's time / A's
time (the speed of A relative to the plain read).

    python bench/consume.py --messages 400000 --repeat 3 --ledger

With --pipe it also times a persistent handler (a trivial Python script that answers ``ok`` to
each line and flushes) both ways, in the same rounds:

  P  eventodb consume CAT ... --batch-size B --pipe 'python3 HANDLER'   (acks read back)
  Q  sh -c 'eventodb category get CAT --all ... --format ndjson | python3 HANDLER > /dev/null'

and prints Q's time / P's time (the goal: >= 0.5x).
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid


def build(path: str, messages: int, streams: int, category: str) -> None:
    from eventodb_cli.domain.message import new_message
    from eventodb_cli.store.local import LocalStore

    ids = [str(uuid.uuid4()) for _ in range(streams)]
    store = LocalStore(path, create=True)
    batch = []
    for i in range(messages):
        batch.append(new_message(f"{category}-{ids[i % streams]}", "Deposited",
                                 {"amount": i % 1000, "note": "bench"}))
        if len(batch) == 5000:
            store.write_batch(batch)
            batch = []
    if batch:
        store.write_batch(batch)
    store.close()


HANDLER = """import sys
write, flush = sys.stdout.write, sys.stdout.flush
for line in sys.stdin:
    write("ok\\n")
    flush()
"""


CPU: list[float] = []  # CPU seconds (user + sys) of the children of the last timed() run


def timed(argv: list[str]) -> float:
    """Wall seconds of ``argv``; its CPU seconds (every child process: the shell and the handler
    too) go to ``CPU``. On a busy machine the CPU figure is the steadier one."""
    import resource

    with open(os.devnull, "wb") as null:
        r0 = resource.getrusage(resource.RUSAGE_CHILDREN)
        t0 = time.perf_counter()
        subprocess.run(argv, stdout=null, stderr=subprocess.DEVNULL, check=True)
        wall = time.perf_counter() - t0
        r1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    CPU[:] = [r1.ru_utime + r1.ru_stime - r0.ru_utime - r0.ru_stime]
    return wall


def count_share(exe: str, store: str, category: str, member: int, size: int) -> int:
    out = subprocess.run([exe, "category", "get", category, "--all", "--member", str(member),
                          "--size", str(size), "--format", "ndjson", "--store", store],
                         capture_output=True, check=True).stdout
    return out.count(b"\n")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--messages", type=int, default=400_000)
    ap.add_argument("--streams", type=int, default=10_000)
    ap.add_argument("--size", type=int, default=4)
    ap.add_argument("--member", type=int, default=0)
    ap.add_argument("--batch-size", type=int, action="append", dest="batch_sizes")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--store", help="reuse this store file (built if missing)")
    ap.add_argument("--ledger", action="store_true",
                    help="also time consume with a fresh --idempotency ledger")
    ap.add_argument("--pipe", action="store_true",
                    help="also time consume --pipe with a trivial Python handler, and the plain "
                         "read piped into the same handler")
    args = ap.parse_args()
    batch_sizes = args.batch_sizes or [100, 1000]
    exe = shutil.which("eventodb") or os.path.join(os.path.dirname(sys.executable), "eventodb")
    work = tempfile.mkdtemp(prefix="eventodb-bench-")
    store = args.store or os.path.join(work, "store.db")
    category = "bench"
    if not os.path.exists(store):
        t0 = time.perf_counter()
        build(store, args.messages, args.streams, category)
        print(f"built {args.messages} messages in {time.perf_counter() - t0:.1f}s", file=sys.stderr)
    share = count_share(exe, store, category, args.member, args.size)

    plain_argv = [exe, "category", "get", category, "--all", "--member", str(args.member),
                  "--size", str(args.size), "--format", "ndjson", "--store", store]
    variants = [("consume (ndjson, checkpoint saved per batch)", bs, ["--batch-size", str(bs)])
                for bs in batch_sizes]
    if args.ledger:
        bs = max(batch_sizes)
        variants.append(("consume + idempotency ledger (commit per message)", bs,
                         ["--batch-size", str(bs), "--idempotency", "LEDGER"]))
    pipe_plain = None
    if args.pipe:
        handler = os.path.join(work, "handler.py")
        with open(handler, "w") as f:
            f.write(HANDLER)
        cmd = f"{sys.executable} {handler}"
        for bs in batch_sizes:
            variants.append(("consume --pipe (trivial Python handler, acks read back)", bs,
                             ["--batch-size", str(bs), "--pipe", cmd]))
        import shlex

        pipe_plain = ["sh", "-c", " ".join(shlex.quote(a) for a in plain_argv)
                      + f" | {cmd} > /dev/null"]
    # rounds interleave the plain read and every consume variant, so a busy machine slows them
    # alike; the ratio is taken per round (median), the times are the best of the rounds
    load_before = os.getloadavg()[0]
    plain_runs: list[float] = []
    runs: dict[int, list[float]] = {i: [] for i in range(len(variants))}
    ratios: dict[int, list[float]] = {i: [] for i in range(len(variants))}
    cpus: dict[int, list[float]] = {i: [] for i in range(len(variants))}
    cpu_ratios: dict[int, list[float]] = {i: [] for i in range(len(variants))}
    plain_cpu: list[float] = []
    pipe_cpu: list[float] = []
    pipe_runs: list[float] = []
    for r in range(args.repeat):
        p = timed(plain_argv)
        pc = CPU[0]
        plain_cpu.append(pc)
        plain_runs.append(p)
        if pipe_plain is not None:
            q = timed(pipe_plain)
            qc = CPU[0]
            pipe_cpu.append(qc)
            pipe_runs.append(q)
        for i, (_name, _bs, extra) in enumerate(variants):
            extra = [os.path.join(work, f"ledger-{i}-{r}.db") if x == "LEDGER" else x
                     for x in extra]
            cp = os.path.join(work, f"cp-{i}-{r}.json")
            t = timed([exe, "consume", category, "--member", str(args.member), "--size",
                       str(args.size), "--checkpoint", cp, "--store", store, *extra])
            runs[i].append(t)
            ratios[i].append((q if "--pipe" in extra else p) / t)
            cpus[i].append(CPU[0])
            cpu_ratios[i].append((qc if "--pipe" in extra else pc) / CPU[0])
    load_after = os.getloadavg()[0]
    plain = min(plain_runs)
    rows = [("category get --all (ndjson)", "-", plain, 1.0, min(plain_cpu), 1.0)]
    if pipe_runs:
        rows.append(("category get --all (ndjson) piped into the same handler, answers to "
                     "/dev/null (the reference of the --pipe rows)", "-", min(pipe_runs), 1.0,
                     min(pipe_cpu), 1.0))
    for i, (name, bs, _extra) in enumerate(variants):
        rows.append((name, str(bs), min(runs[i]), statistics.median(ratios[i]), min(cpus[i]),
                     statistics.median(cpu_ratios[i])))

    print(f"store: {args.messages} messages, {args.streams} streams; share of member "
          f"{args.member}/{args.size}: {share} messages; best of {args.repeat}")
    print(f"machine: {platform.python_implementation()} {platform.python_version()}, "
          f"{os.cpu_count()} cpus, {platform.system()} {platform.release()}; load average "
          f"{load_before:.1f} before, {load_after:.1f} after")
    print()
    print("| command | batch size | best seconds | messages/s | speed vs plain read "
          "(median of rounds) | best CPU seconds | CPU: reference / this (median) |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for name, bs, secs, ratio, cpu, cpu_ratio in rows:
        print(f"| {name} | {bs} | {secs:.2f} | {share / secs:,.0f} | {ratio:.2f}x | {cpu:.2f} "
              f"| {cpu_ratio:.2f}x |")
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
