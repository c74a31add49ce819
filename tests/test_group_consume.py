"""Issue 10, the consumer side: `consume --group` keeps its position in the store it reads, a
member killed at a random moment resumes from it, `group describe` sees it from another process,
a resize refuses the old size until `simulate-scale --group --execute` hands over, and
`/metrics` agrees with `group describe`."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import time
import uuid

import httpx
import pytest
from helpers_consume import start_exe, wait_for

from conftest import exe_path, start_server
from eventodb_cli.domain.hashing import member_for

SIZE = 3


class Target:
    """A local store file or a fresh `eventodb serve`: the target flags and a writer."""

    def __init__(self, kind: str, tmp_path):
        self.kind = kind
        self.server = None
        if kind == "server":
            self.server = start_server(tmp_path / "serve")
            self.flags = ["--url", self.server.url, "--token", self.server.token]
        else:
            self.flags = ["--store", str(tmp_path / "store.db")]

    def write(self, category: str, n: int, seed: int) -> list[str]:
        """Write n messages over 40 streams with `write --file`; their ids."""
        rnd = random.Random(seed)
        ids, lines = [], []
        for i in range(n):
            mid = str(uuid.UUID(int=rnd.getrandbits(128)))
            ids.append(mid)
            lines.append(json.dumps({"stream": f"{category}-{rnd.randrange(40)}", "type": "T",
                                     "data": {"i": i}, "id": mid}))
        p = subprocess.run([exe_path(), "write", "--file", "-", *self.flags],
                           input="\n".join(lines) + "\n", capture_output=True, text=True,
                           timeout=60)
        assert p.returncode == 0, p.stderr
        return ids

    def run(self, *args, timeout=60) -> subprocess.CompletedProcess:
        return subprocess.run([exe_path(), *map(str, args), *self.flags], capture_output=True,
                              text=True, timeout=timeout)

    def describe(self, category: str, group: str, *extra) -> tuple[int, dict]:
        p = self.run("group", "describe", category, "--group", group, "--format", "json",
                     *extra)
        assert p.stdout, p.stderr
        return p.returncode, json.loads(p.stdout)

    def close(self):
        if self.server is not None:
            self.server.stop()


@pytest.fixture(params=["server", "local"])
def target(request, tmp_path):
    t = Target(request.param, tmp_path)
    yield t
    t.close()


def _start_member(target: Target, category, group, member, size, out_path, *extra):
    out = open(out_path, "ab")
    try:
        return start_exe(exe_path(), "consume", category, "--member", member, "--size", size,
                         "--group", group, "--follow", "--poll-interval", "0.1",
                         "--batch-size", "20", *extra, *target.flags, stdout=out,
                         stderr=subprocess.DEVNULL)
    finally:
        out.close()


def _stop(p: subprocess.Popen, sig=signal.SIGTERM) -> None:
    if p.poll() is None:
        os.killpg(p.pid, sig)
    p.wait(20)


def _handled(path) -> list[dict]:
    out = []
    with open(path, "rb") as fh:
        for raw in fh.read().split(b"\n"):
            if raw.strip():
                out.append(json.loads(raw))
    return out


def _wait_caught_up(target: Target, category, group, size, timeout=40.0) -> dict:
    def done():
        code, rep = target.describe(category, group, "--size", str(size), "--max-lag", "0")
        return rep if code == 0 and rep["lagMessages"] == 0 else None

    return wait_for(done, timeout=timeout, interval=0.2, what="the group to catch up")


def test_three_members_a_sigkill_and_a_restart_lose_nothing(target, tmp_path):
    category, group = "acct", "billing"
    rnd = random.Random(10)
    ids = target.write(category, 300, seed=1)
    outs = [tmp_path / f"member-{m}.ndjson" for m in range(SIZE)]
    procs = [_start_member(target, category, group, m, SIZE, outs[m]) for m in range(SIZE)]
    try:
        ids += target.write(category, 300, seed=2)  # while they run
        victim = rnd.randrange(SIZE)
        time.sleep(rnd.uniform(0.0, 1.0))
        _stop(procs[victim], signal.SIGKILL)  # a random moment: mid-batch, mid-save, idle
        ids += target.write(category, 150, seed=3)  # while it is down
        procs[victim] = _start_member(target, category, group, victim, SIZE, outs[victim])
        rep = _wait_caught_up(target, category, group, SIZE)
    finally:
        for p in procs:
            _stop(p)
    # seen from another process with only the target flags: 3 members, no lag
    assert rep["size"] == SIZE and rep["membersSeen"] == SIZE and rep["lagMessages"] == 0
    assert [m["status"] for m in rep["members"]] == ["healthy"] * SIZE
    # every message handled, and only by the member that owns its stream
    seen = set()
    for m in range(SIZE):
        for msg in _handled(outs[m]):
            assert member_for(msg["streamName"], SIZE) == m, (m, msg["streamName"])
            seen.add(msg["id"])
    assert seen == set(ids)
    # 300 more: lag exactly 300 in total, and --max-lag 0 fails
    target.write(category, 300, seed=4)
    code, rep = target.describe(category, group, "--max-lag", "0")
    assert code == 1 and rep["lagMessages"] == 300 and rep["ok"] is False
    code, lag = 0, target.run("lag", category, "--group", group, "--max-lag", "0",
                              "--format", "json")
    assert lag.returncode == 1 and json.loads(lag.stdout)["lagMessages"] == 300


def test_resize_3_to_4_refuses_then_hands_over_without_skipping(target, tmp_path):
    category, group = "order", "ship"
    ids = target.write(category, 400, seed=5)
    old_outs = [tmp_path / f"old-{m}.ndjson" for m in range(3)]
    # the old group processes part of its share, at different paces
    for m, k in zip(range(3), (40, 90, 10)):
        r = target.run("consume", category, "--member", m, "--size", 3, "--group", group,
                       "--max-messages", k, "--batch-size", 7)
        assert r.returncode == 0, r.stderr
        old_outs[m].write_text(r.stdout)
    ids += target.write(category, 100, seed=6)  # written during the change
    # a member started at the new size refuses: exit 2, nothing handled
    r = target.run("consume", category, "--member", 0, "--size", 4, "--group", group)
    assert r.returncode == 2 and r.stdout == ""
    assert "simulate-scale order --from 3 --to 4 --group ship --execute" in r.stderr
    # dry run changes nothing
    plan = target.run("simulate-scale", category, "--from", 3, "--to", 4, "--group", group,
                      "--format", "json")
    assert plan.returncode == 0, plan.stderr
    assert json.loads(plan.stdout)["writePositions"]["execute"] is False
    assert target.describe(category, group, "--size", "3")[1]["membersSeen"] == 3
    ex = target.run("simulate-scale", category, "--from", 3, "--to", 4, "--group", group,
                    "--execute", "--format", "json")
    assert ex.returncode == 0, ex.stderr
    written = json.loads(ex.stdout)["writePositions"]["positions"]
    assert [a["action"] for a in written] == ["written"] * 4
    # every new member starts at the lowest position of the old members (3 and 4 share no
    # factor: each new member can get streams from every old member)
    old_next = min(json.loads(plan.stdout)["handover"][0]["position"], 10**9)
    assert {a["next"] for a in written} == {old_next}
    # an old-size member now refuses in its turn
    r = target.run("consume", category, "--member", 1, "--size", 3, "--group", group)
    assert r.returncode == 2 and r.stdout == ""
    ids += target.write(category, 100, seed=7)  # still during the change
    new_outs = [tmp_path / f"new-{m}.ndjson" for m in range(4)]
    procs = [_start_member(target, category, group, m, 4, new_outs[m]) for m in range(4)]
    try:
        ids += target.write(category, 100, seed=8)  # after the new members started
        rep = _wait_caught_up(target, category, group, 4)
    finally:
        for p in procs:
            _stop(p)
    assert rep["size"] == 4 and rep["membersSeen"] == 4
    seen = set()
    for path in old_outs:
        seen |= {m["id"] for m in _handled(path)}
    for m, path in enumerate(new_outs):
        for msg in _handled(path):
            assert member_for(msg["streamName"], 4) == m
            seen.add(msg["id"])
    assert seen == set(ids), f"{len(set(ids) - seen)} message(s) skipped by the resize"


def test_metrics_parse_as_prometheus_and_match_group_describe(tmp_path):
    from prometheus_client.parser import text_string_to_metric_families

    from conftest import free_port

    target = Target("server", tmp_path)
    try:
        category, group = "pay", "ledger"
        target.write(category, 200, seed=9)
        r = target.run("consume", category, "--member", 1, "--size", 2, "--group", group,
                       "--max-messages", 15)
        assert r.returncode == 0, r.stderr
        go = tmp_path / "go"
        port = free_port()
        # a handler that holds the first message until `go` exists: the consumer is mid-run
        p = start_exe(exe_path(), "consume", category, "--member", 1, "--size", 2, "--group",
                      group, "--follow", "--poll-interval", "0.1", "--health-port", port,
                      "--exec", f"while [ ! -e '{go}' ]; do sleep 0.05; done; cat >/dev/null",
                      *target.flags, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            url = f"http://127.0.0.1:{port}/metrics"

            def scrape():
                try:
                    resp = httpx.get(url, timeout=5)
                except httpx.HTTPError:
                    return None
                ok = resp.status_code == 200 and "eventodb_consumer_position{" in resp.text
                return resp if ok else None  # the position is listed once it is loaded

            resp = wait_for(scrape, timeout=20, what="/metrics")
            assert resp.headers["content-type"].startswith("text/plain; version=0.0.4")

            def gauges(text):
                out = {}
                for fam in text_string_to_metric_families(text):
                    for s in fam.samples:
                        assert s.labels["category"] == category and s.labels["group"] == group
                        assert s.labels["member"] == "1" and s.labels["size"] == "2"
                        out[s.name] = s.value
                return out

            g = gauges(resp.text)
            code, rep = target.describe(category, group, "--size", "2")
            row = rep["members"][1]
            assert g["eventodb_consumer_lag_messages"] == row["lagMessages"] > 0
            assert g["eventodb_consumer_position"] == row["position"]
            assert g["eventodb_consumer_head"] == rep["head"]
            assert g["eventodb_consumer_messages_handled_total"] == 0
            go.write_text("")
            wait_for(lambda: target.describe(category, group, "--size", "2")[1]
                     ["members"][1]["lagMessages"] == 0, timeout=40, what="catch-up")
            g = gauges(scrape().text)
            row = target.describe(category, group, "--size", "2")[1]["members"][1]
            assert g["eventodb_consumer_lag_messages"] == row["lagMessages"] == 0
            assert g["eventodb_consumer_position"] == row["position"]
            assert g["eventodb_consumer_messages_handled_total"] > 0
        finally:
            _stop(p)
    finally:
        target.close()


def test_group_and_checkpoint_are_exclusive_and_force_size_warns(tmp_path):
    target = Target("local", tmp_path)
    target.write("acct", 30, seed=11)
    r = target.run("consume", "acct", "--member", 0, "--size", 2)
    assert r.returncode == 2 and "exactly one of --checkpoint PATH or --group NAME" in r.stderr
    r = target.run("consume", "acct", "--member", 0, "--size", 2, "--group", "g",
                   "--checkpoint", tmp_path / "c.json")
    assert r.returncode == 2
    assert target.run("consume", "acct", "--member", 0, "--size", 2, "--group", "g"
                      ).returncode == 0
    r = target.run("consume", "acct", "--member", 0, "--size", 3, "--group", "g", "--force-size")
    assert r.returncode == 0 and "warning" in r.stderr and "--force-size" in r.stderr
    # positions are plain Eventide Recorded messages, readable with stream get
    r = target.run("stream", "get", "acct:position-g-0", "--format", "json")
    msgs = json.loads(r.stdout)
    print(msgs)
    assert {m["type"] for m in msgs} == {"Recorded"}
    # the forced size is recorded, so the next start at size 3 needs no --force-size
    assert target.run("consume", "acct", "--member", 0, "--size", 3, "--group", "g"
                      ).returncode == 0
    assert json.loads(msgs[-1]["metadata"] if isinstance(msgs[-1]["metadata"], str)
                      else json.dumps(msgs[-1]["metadata"])) == \
        {"group": "g", "member": 0, "size": 3}
    assert set(msgs[-1]["data"]) == {"position"}
