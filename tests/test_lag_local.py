"""``eventodb lag`` on a local store, checked against brute-force counts."""

from __future__ import annotations

import json
import os
import signal
import threading
import time

import pytest
from helpers_consume import (fill_store, from_start, import_messages, share, start_exe,
                             write_checkpoint)

from eventodb_cli.domain.message import new_message, parse_time
from eventodb_cli.store.base import Store
from eventodb_cli.store.local import LocalStore

from conftest import exe_path


def brute(store, category, size, positions: dict[int, int], now_ns: int, cap: int):
    head = max((m.global_position for m in store.iter_category(category, 1, 1000)), default=None)
    out = {}
    for member in range(size):
        p = positions.get(member, 1)
        mine = [m for m in share(store, category, member, size)
                if m.global_position >= p and (head is None or m.global_position <= head)]
        n = len(mine)
        out[member] = {
            "position": p,
            "head": head,
            "lagMessages": min(n, cap),
            "lagMessagesExact": n <= cap,
            "lagPositions": 0 if head is None else max(0, head - max(p, 1) + 1),
            "lagSeconds": max(0.0, round((now_ns - mine[0].time) / 1e9, 3)) if mine else 0.0,
        }
    return out


@pytest.fixture
def filled(store_path):
    store = fill_store(store_path, 1500, streams=120)
    yield store
    store.close()


def test_lag_matches_brute_force(cli, filled, store_path, tmp_path):
    size = 4
    shares = {m: share(filled, "account", m, size) for m in range(size)}
    cpdir = tmp_path / "cps"
    positions = {
        0: shares[0][len(shares[0]) // 2].global_position,  # half way through
        1: shares[1][-1].global_position + 1,  # caught up
        # member 2: no checkpoint, reads from 1
        3: 10**9,  # a checkpoint from somewhere else, past the head
    }
    for m, p in positions.items():
        write_checkpoint(str(cpdir / f"account.member-{m}-of-{size}.json"), p, member=m,
                         size=size)
    r = cli("lag", "account", "--size", size, "--checkpoints", cpdir, "--store", store_path,
            "--format", "json")
    assert r.exit_code == 1, r  # member 2 has no checkpoint: missing fails the check
    assert r.json()["ok"] is False
    r = cli("lag", "account", "--size", size, "--checkpoints", cpdir, "--store", store_path,
            "--format", "json", "--allow-missing")
    assert r.exit_code == 0, r
    rep = r.json()
    now = parse_time(rep["time"])
    exp = brute(filled, "account", size, positions, now, 10_000)
    assert rep["category"] == "account" and rep["size"] == size and rep["ok"] is True
    assert rep["head"] == exp[0]["head"] == filled.category_head("account")
    assert [m["member"] for m in rep["members"]] == list(range(size))
    for m in rep["members"]:
        e = exp[m["member"]]
        for k, v in e.items():
            assert m[k] == v, (m["member"], k, m[k], v)
        assert m["status"] == ("missing" if m["member"] == 2 else "healthy")
    by = {m["member"]: m for m in rep["members"]}
    assert by[2]["checkpoint"] is None and by[2]["position"] == 1
    assert by[2]["checkpointUpdatedAt"] is None
    assert by[0]["checkpointUpdatedAt"] == "2026-11-28T06:00:00Z"
    assert by[0]["lagMessages"] == len(shares[0]) - len(shares[0]) // 2
    assert by[1]["lagMessages"] == 0 and by[1]["lagSeconds"] == 0.0
    assert by[3]["lagMessages"] == 0 and by[3]["lagPositions"] == 0
    assert by[2]["lagMessages"] == len(shares[2])
    assert by[2]["lagPositions"] == rep["head"]
    assert by[2]["lagSeconds"] > 0


def test_cap_makes_counts_inexact(cli, filled, store_path, tmp_path):
    size = 2
    n0 = len(share(filled, "account", 0, size))
    n1 = len(share(filled, "account", 1, size))
    cpdir = tmp_path / "cps"
    from_start(cpdir, "account", 2)
    # cap exactly member 0's count: still exact; member 1 (larger or smaller) decides itself
    r = cli("lag", "account", "--size", 2, "--checkpoints", cpdir, "--store", store_path,
            "--cap", n0, "--max-lag", 0, "--format", "json")
    by = {m["member"]: m for m in r.json()["members"]}
    assert by[0]["lagMessages"] == n0 and by[0]["lagMessagesExact"] is True
    assert by[1]["lagMessages"] == min(n1, n0) and by[1]["lagMessagesExact"] is (n1 <= n0)
    r = cli("lag", "account", "--size", 2, "--checkpoints", cpdir, "--store", store_path,
            "--cap", 100, "--max-lag", 0, "--format", "json")
    rep = r.json()
    assert rep["cap"] == 100
    for m in rep["members"]:
        assert m["lagMessages"] == 100 and m["lagMessagesExact"] is False
        assert m["status"] == "lagging"
    assert r.exit_code == 1


def test_cap_is_raised_to_decide_max_lag(cli, filled, store_path, tmp_path):
    """With --max-lag above --cap the count goes on to max-lag + 1, so the status is right."""
    n0 = len(share(filled, "account", 0, 2))
    from_start(tmp_path / "cps", "account", 2)
    r = cli("lag", "account", "--size", 2, "--checkpoints", tmp_path / "cps", "--store",
            store_path, "--cap", 10, "--max-lag", n0 - 1, "--format", "json")
    rep = r.json()
    assert rep["cap"] == n0
    m0 = rep["members"][0]
    assert m0["lagMessages"] == n0 and m0["lagMessagesExact"] is True
    assert m0["status"] == "lagging"
    assert r.exit_code == 1


@pytest.mark.parametrize("runner", ["cli", "exe"])
def test_exit_codes_follow_max_lag(runner, cli, exe, filled, store_path, tmp_path):
    run = cli if runner == "cli" else exe
    size = 3
    counts = [len(share(filled, "account", m, size)) for m in range(size)]
    cpdir = tmp_path / "cps"
    from_start(cpdir, "account", size)
    worst = max(counts)
    ok = run("lag", "account", "--size", size, "--checkpoints", cpdir, "--store", store_path,
             "--max-lag", worst, "--format", "json")
    assert ok.exit_code == 0, ok
    assert ok.json()["ok"] is True
    bad = run("lag", "account", "--size", size, "--checkpoints", cpdir, "--store", store_path,
              "--max-lag", worst - 1, "--format", "json")
    assert bad.exit_code == 1, bad
    rep = bad.json()
    assert rep["ok"] is False
    assert [m["status"] for m in rep["members"]] == \
        ["lagging" if c > worst - 1 else "healthy" for c in counts]
    # the table form exits the same way
    t = run("lag", "account", "--size", size, "--checkpoints", cpdir, "--store", store_path,
            "--max-lag", worst - 1, "--format", "table")
    assert t.exit_code == 1 and "lagging" in t.stdout


def test_empty_category_and_missing_sources(exe, filled, store_path, tmp_path):
    os.makedirs(tmp_path / "cps")
    r = exe("lag", "nothing", "--size", 2, "--checkpoints", tmp_path / "cps", "--store",
            store_path, "--format", "json")
    assert r.exit_code == 1, r  # no checkpoints at all: both members missing
    assert [m["status"] for m in r.json()["members"]] == ["missing", "missing"]
    from_start(tmp_path / "cps", "nothing", 2)
    r = exe("lag", "nothing", "--size", 2, "--checkpoints", tmp_path / "cps", "--store",
            store_path, "--format", "json")
    assert r.exit_code == 0, r
    rep = r.json()
    assert rep["head"] is None
    assert all(m["lagMessages"] == 0 and m["lagPositions"] == 0 for m in rep["members"])
    r = exe("lag", "account", "--size", 2, "--checkpoints", tmp_path / "nope", "--store",
            store_path)
    assert r.exit_code == 4 and "not found" in r.stderr and "Traceback" not in r.stderr
    write_checkpoint(str(tmp_path / "dup" / "a.json"), 5, member=0, size=2)
    write_checkpoint(str(tmp_path / "dup" / "b.json"), 9, member=0, size=2)
    r = exe("lag", "account", "--size", 2, "--checkpoints", tmp_path / "dup", "--store",
            store_path)
    assert r.exit_code == 2 and "two checkpoints for member 0" in r.stderr
    r = exe("lag", "account", "--size", 0, "--checkpoints", tmp_path / "cps", "--store",
            store_path)
    assert r.exit_code == 2


def test_other_groups_checkpoints_are_left_out(cli, filled, store_path, tmp_path):
    cpdir = tmp_path / "cps"
    write_checkpoint(str(cpdir / "x.json"), 50, member=0, size=2)
    write_checkpoint(str(cpdir / "y.json"), 70, member=0, size=3)  # another size
    write_checkpoint(str(cpdir / "z.json"), 90, category="other", member=1, size=2)
    r = cli("lag", "account", "--size", 2, "--checkpoints", cpdir, "--store", store_path,
            "--format", "json")
    by = {m["member"]: m for m in r.json()["members"]}
    assert by[0]["position"] == 50 and by[1]["position"] == 1 and by[1]["checkpoint"] is None
    assert "2 checkpoint file(s)" in r.stderr
    # a single file named by convention says which member it is
    single = tmp_path / "account.member-1-of-2.json"
    with open(single, "w") as fh:
        json.dump({"position": 33, "updatedAt": None}, fh)
    r = cli("lag", "account", "--size", 2, "--checkpoints", single, "--store", store_path,
            "--format", "json")
    by = {m["member"]: m for m in r.json()["members"]}
    assert by[1]["position"] == 33 and by[0]["checkpoint"] is None


def test_lag_is_never_negative_under_concurrent_writes(filled, store_path, tmp_path):
    """A consumer-like writer moves checkpoints and appends messages while lag runs: every
    snapshot has lagPositions >= 0 and each member's unprocessed messages <= the positions not
    yet passed (both would break if the head were read after the counts)."""
    from eventodb_cli.services import checkpoints as cps
    from eventodb_cli.services import lag as svc

    size = 3
    cpdir = tmp_path / "cps"
    stop = threading.Event()

    def writer():
        w = LocalStore(store_path)
        i = 0
        while not stop.is_set():
            i += 1
            w.write_batch([new_message(f"account-w{i % 17}", "Late", {"i": i})])
            head = w.category_head("account")
            for m in range(size):  # checkpoints jump to the head (members "catch up"),
                # saved atomically as consume does
                cps.save(str(cpdir / f"account.member-{m}-of-{size}.json"),
                         cps.Checkpoint(head + 1, None, "account", m, size))
        w.close()

    os.makedirs(cpdir)
    t = threading.Thread(target=writer)
    t.start()
    reader = LocalStore(store_path)
    try:
        snaps = 0
        deadline = time.monotonic() + 3
        while time.monotonic() < deadline:
            rep = svc.snapshot(reader, "account", size,
                               svc.checkpoints_by_member(str(cpdir), "account", size))
            for m in rep["members"]:
                assert m["lagPositions"] >= 0 and m["lagMessages"] >= 0
                assert m["lagSeconds"] >= 0
                assert m["lagMessages"] <= m["lagPositions"]
                assert m["position"] <= rep["head"] + 1
            snaps += 1
        assert snaps > 5
    finally:
        stop.set()
        t.join()
        reader.close()


def test_generic_category_head_matches_sql(tmp_path):
    """Store.category_head (the search a server target uses) against LocalStore's SQL max, on
    dense data, sparse imported positions, one message, and an empty category."""
    import random

    rnd = random.Random(7)
    store = LocalStore(str(tmp_path / "sparse.db"), create=True)
    rows = []
    gpos = 0
    cats = ["a", "b", "c"]
    for _ in range(3000):
        gpos += rnd.choice([1, 1, 2, 5, 40, 300])
        rows.append((f"{rnd.choice(cats)}-{rnd.randrange(50)}", gpos, 10**18))
    rows.append(("solo-1", gpos + 7, 10**18))
    rows.append(("far-1", 1_000_000, 10**18))
    import_messages(store, rows)
    reads = {"n": 0}
    real_get = store.category_get

    def counting(*a, **k):
        reads["n"] += 1
        return real_get(*a, **k)

    store.category_get = counting
    for cat in cats + ["solo", "far", "missing", ""]:
        brute = max((g for s, g, _ in rows if s.split("-")[0] == cat or cat == ""), default=None)
        reads["n"] = 0
        assert Store.category_head(store, cat) == brute == store.category_head(cat), cat
        if brute:
            import math

            assert reads["n"] <= 2 * math.log2(brute) + 4, (cat, reads["n"])
    # dense data written normally
    dense = fill_store(str(tmp_path / "dense.db"), 700)
    for cat in ("account", "other"):
        assert Store.category_head(dense, cat) == dense.category_head(cat) == \
            max(m.global_position for m in dense.iter_category(cat))
    dense.close()
    store.close()


def test_watch_prints_ndjson_snapshots_until_interrupted(filled, store_path, tmp_path):
    from_start(tmp_path / "cps", "account", 2)
    p = start_exe(exe_path(), "lag", "account", "--size", 2, "--checkpoints", tmp_path / "cps",
                  "--store", store_path, "--watch", "--interval", "0.2", "--max-lag", 10**6)
    try:
        first = json.loads(p.stdout.readline())
        filled.write_batch([new_message("account-new1", "Late", {})])
        second = json.loads(p.stdout.readline())
        third = json.loads(p.stdout.readline())
        assert first["members"][0]["member"] == 0
        assert third["head"] >= second["head"] >= first["head"]
        assert third["head"] == filled.category_head("account")
        os.kill(p.pid, signal.SIGINT)
        out, err = p.communicate(timeout=10)
        assert p.returncode == 0, err
        assert b"Traceback" not in err
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()


def test_help_has_examples(cli):
    r = cli("lag", "--help")
    assert r.exit_code == 0 and "Examples:" in r.stdout and "--checkpoints" in r.stdout


def test_lag_reads_what_consume_writes(cli, filled, store_path, tmp_path):
    os.makedirs(tmp_path / "cps")
    cp = tmp_path / "cps" / "account.member-1-of-3.json"
    r = cli("consume", "account", "--member", 1, "--size", 3, "--checkpoint", cp, "--store",
            store_path, "--max-messages", 40, "--batch-size", 15)
    assert r.exit_code == 0, r
    handled = [json.loads(x) for x in r.stdout.splitlines()]
    assert len(handled) == 40
    rep = cli("lag", "account", "--size", 3, "--checkpoints", tmp_path / "cps", "--store",
              store_path, "--format", "json", "--allow-missing").json()
    m1 = rep["members"][1]
    assert m1["position"] == handled[-1]["globalPosition"] + 1
    assert m1["checkpoint"] == str(cp)
    assert m1["lagMessages"] == len(share(filled, "account", 1, 3)) - 40
    assert m1["checkpointUpdatedAt"] is not None


def test_watch_draws_a_live_table_on_a_terminal(filled, store_path, tmp_path):
    """On a terminal (a pty here) --watch redraws a rich table until Ctrl-C."""
    import pty
    import select

    from_start(tmp_path / "cps", "account", 2)
    pid, fd = pty.fork()
    if pid == 0:  # child: the executable on the pty
        os.execv(exe_path(), [exe_path(), "lag", "account", "--size", "2", "--checkpoints",
                              str(tmp_path / "cps"), "--store", store_path, "--watch",
                              "--interval", "0.2", "--max-lag", "0"])
    out = b""
    try:
        deadline = time.monotonic() + 20
        while out.count(b"lagging") < 4 and time.monotonic() < deadline:
            r, _, _ = select.select([fd], [], [], 0.5)
            if r:
                try:
                    out += os.read(fd, 65536)
                except OSError:
                    break
        assert out.count(b"lagging") >= 4, out[-2000:]  # two members, redrawn at least once
        assert b"head" in out and b"member" in out
        os.kill(pid, signal.SIGINT)
        _, status = os.waitpid(pid, 0)
        assert os.WEXITSTATUS(status) == 1  # the last snapshot had lagging members
    finally:
        try:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
        except (ProcessLookupError, ChildProcessError):
            pass
        os.close(fd)


@pytest.mark.parametrize("cap", [1, 6, 7, 8, 50, 10_000])
def test_count_share_pages_and_caps(filled, monkeypatch, cap):
    """Small pages (7) force count_share to page; every cap/position/head combination equals
    the brute-force count."""
    from eventodb_cli.services import lag as svc

    monkeypatch.setattr(svc, "MAX_PAGE", 7)
    mine = share(filled, "account", 1, 3)
    for start in (1, mine[3].global_position, mine[3].global_position + 1,
                  mine[-1].global_position, mine[-1].global_position + 1):
        for head in (mine[20].global_position, mine[20].global_position - 1,
                     filled.category_head("account"), None):
            got = svc.count_share(filled, "account", 1, 3, start, head, cap)
            left = [m for m in mine if head is not None and start <= m.global_position <= head]
            assert got.messages == min(len(left), cap), (start, head, cap)
            assert got.exact is (len(left) <= cap)
            assert got.oldest_time == (left[0].time if left else None)


def test_generic_category_head_on_a_dense_category_within_the_bound(tmp_path):
    """Dense positions 1..2^16 are the search's worst shape (every probe finds a message)."""
    import math

    store = LocalStore(str(tmp_path / "dense.db"), create=True)
    n = 2 ** 16
    import_messages(store, [(f"dense-{g % 97}", g, 10**18) for g in range(1, n + 1)])
    reads = {"n": 0}
    real_get = store.category_get

    def counting(*a, **k):
        reads["n"] += 1
        return real_get(*a, **k)

    store.category_get = counting
    assert Store.category_head(store, "dense") == n
    print(f"dense head {n}: {reads['n']} reads, bound {2 * math.log2(n) + 4:.0f}")
    assert reads["n"] <= 2 * math.log2(n) + 4
    store.close()
