"""simulate-scale: every figure equals a brute-force count written here with straight loops over
``member_for`` (no use of domain/scale.py in the expectations)."""

from __future__ import annotations

import json
import os
import random
import uuid
from math import gcd

import pytest

from eventodb_cli.domain.hashing import member_for
from eventodb_cli.domain.message import NewMessage
from eventodb_cli.store.local import LocalStore

CASES = [(2, 3), (2, 4), (3, 4), (4, 8)]


def _uuid_streams(k: int, seed: int) -> dict[str, int]:
    rng = random.Random(seed)
    return {f"account-{uuid.UUID(int=rng.getrandbits(128), version=4)}": rng.randint(1, 9)
            for _ in range(k)}


def _pct(a, b):
    return round(100.0 * a / b, 4) if b else 0.0


# Roll-out orders, stream by stream, as (overlap?, gap?) predicates of the old owner o, the new
# owner j and the old size n (reasoned out independently of the step model in domain/scale.py):
ORDERS = {
    # the old group runs until every new member runs: two readers for every stream, no gap
    "start-new-then-stop-old": (lambda o, j, n: True, lambda o, j, n: False),
    # added members first, then restart 0,1,..: the new owner j runs while the old owner o still
    # runs iff j was added (j >= n) or restarted before o (j < o); o is stopped before j runs
    # iff j < n and o < j
    "add-then-restart": (lambda o, j, n: j >= n or j < o, lambda o, j, n: j < n and o < j),
    # slot i: stop old i, start new i: overlap iff j < o, gap iff o < j
    "member-by-member": (lambda o, j, n: j < o, lambda o, j, n: o < j),
    "stop-old-then-start-new": (lambda o, j, n: False, lambda o, j, n: True),
}


def brute(counts: dict[str, int], n: int, m: int) -> dict:
    """Everything simulate-scale reports, by straight loops."""
    streams = messages = moved = moved_msgs = 0
    before = [[0, 0] for _ in range(n)]
    after = [[0, 0] for _ in range(m)]
    matrix: dict[tuple[int, int], list[int]] = {}
    owners = {}
    for s, c in counts.items():
        o, j = member_for(s, n), member_for(s, m)
        if o is None:
            continue
        owners[s] = (o, j)
        streams += 1
        messages += c
        before[o][0] += 1
        before[o][1] += c
        after[j][0] += 1
        after[j][1] += c
        cell = matrix.setdefault((o, j), [0, 0])
        cell[0] += 1
        cell[1] += c
        if o != j:
            moved += 1
            moved_msgs += c

    # roll-out orders, stream by stream (reasoned out independently of the step model):
    def tally(pred):
        s_ = sum(1 for s, (o, j) in owners.items() if pred(o, j))
        c_ = sum(counts[s] for s, (o, j) in owners.items() if pred(o, j))
        return {"streams": s_, "messages": c_}

    orders = {name: (tally(lambda o, j, f=ov: f(o, j, n)), tally(lambda o, j, f=gp: f(o, j, n)))
              for name, (ov, gp) in ORDERS.items()}
    return {"streams": streams, "messages": messages, "moved": moved, "movedMsgs": moved_msgs,
            "before": before, "after": after, "matrix": matrix, "orders": orders,
            "owners": owners}


def check(rep: dict, counts: dict[str, int], n: int, m: int) -> None:
    b = brute(counts, n, m)
    assert rep["from"] == n and rep["to"] == m
    assert rep["streams"] == b["streams"] and rep["messages"] == b["messages"]
    assert rep["movedStreams"] == b["moved"]
    assert rep["movedMessages"] == b["movedMsgs"]
    assert rep["movedPercent"] == _pct(b["moved"], b["streams"])
    assert rep["movedMessagesPercent"] == _pct(b["movedMsgs"], b["messages"])
    assert rep["minimumMovePercent"] == round(100.0 * abs(m - n) / max(n, m), 4)
    for i, row in enumerate(rep["members"]):
        assert row["member"] == i
        if i < n:
            assert row["before"]["streams"] == b["before"][i][0]
            assert row["before"]["messages"] == b["before"][i][1]
            assert row["before"]["share"] == _pct(b["before"][i][1], b["messages"])
        else:
            assert row["before"] is None
        if i < m:
            assert row["after"]["streams"] == b["after"][i][0]
            assert row["after"]["messages"] == b["after"][i][1]
            assert row["after"]["share"] == _pct(b["after"][i][1], b["messages"])
        else:
            assert row["after"] is None
    assert len(rep["members"]) == max(n, m)
    for side, rows in (("before", b["before"]), ("after", b["after"])):
        loads = [c for _s, c in rows]
        assert rep["load"][side]["min"] == min(loads)
        assert rep["load"][side]["max"] == max(loads)
        assert rep["load"][side]["mean"] == round(sum(loads) / len(loads), 4)
    got = {(t["from"], t["to"]): [t["streams"], t["messages"]] for t in rep["transfers"]}
    assert got == b["matrix"]
    for t in rep["transfers"]:
        assert t["moved"] == (t["from"] != t["to"])
    for name, (ov, gp) in b["orders"].items():
        assert {k: rep["overlap"][name][k] for k in ("streams", "messages")} == ov, name
        assert {k: rep["gaps"][name][k] for k in ("streams", "messages")} == gp, name


@pytest.mark.parametrize("n,m", CASES)
def test_uuid_streams_with_counts_match_brute_force(cli, n, m):
    counts = _uuid_streams(10_000, seed=n * 100 + m)
    text = "".join(f"{s}\t{c}\n" for s, c in counts.items())
    r = cli("simulate-scale", "account", "--from", n, "--to", m, "--streams-from", "-",
            "--format", "json", input=text)
    assert r.exit_code == 0, r
    rep = r.json()
    assert rep["source"] == "names"
    check(rep, counts, n, m)


@pytest.mark.parametrize("n,m", CASES)
def test_synthetic_uuid_streams_match_brute_force(cli, tmp_path, n, m):
    """--synthetic 10000 --ids uuid: the names come back in --owners, the figures are recounted
    from them."""
    owners = tmp_path / "owners.ndjson"
    r = cli("simulate-scale", "account", "--from", n, "--to", m, "--synthetic", 10_000,
            "--ids", "uuid", "--seed", 42, "--owners", owners, "--format", "json")
    assert r.exit_code == 0, r
    rows = [json.loads(x) for x in owners.read_text().splitlines()]
    assert len(rows) == 10_000 and len({x["stream"] for x in rows}) == 10_000
    for x in rows:
        assert uuid.UUID(x["stream"][len("account-"):]).version == 4
        assert x["before"] == member_for(x["stream"], n)
        assert x["after"] == member_for(x["stream"], m)
        assert x["moved"] == (x["before"] != x["after"])
        o, j = x["before"], x["after"]
        assert x["overlapIn"] == [k for k, (ov, _g) in ORDERS.items() if ov(o, j, n)]
        assert x["gapIn"] == [k for k, (_o, gp) in ORDERS.items() if gp(o, j, n)]
    counts = {x["stream"]: 1 for x in rows}
    check(r.json(), counts, n, m)
    # reproducible with --seed, different without
    again = cli("simulate-scale", "account", "--from", n, "--to", m, "--synthetic", 10_000,
                "--ids", "uuid", "--seed", 42, "--format", "json").json()
    assert again["transfers"] == r.json()["transfers"]


def test_theory_and_best_sizes(cli):
    counts = _uuid_streams(10_000, seed=7)
    text = "\n".join(counts) + "\n"  # names only: one message each
    rep = cli("simulate-scale", "account", "--from", 3, "--to", 4, "--streams-from", "-",
              "--format", "json", input=text).json()
    assert rep["messages"] == 10_000
    assert rep["theoryMovedPercent"] == 75.0  # 3 -> 4 moves three quarters
    assert rep["minimumMovePercent"] == 25.0
    best = {b["size"]: b for b in rep["bestSizes"]}
    assert 3 not in best and set(best) == set(range(1, 17)) - {3}
    for k, b in best.items():
        kept = sum(1 for s in counts if member_for(s, 3) == member_for(s, k))
        assert b["keptStreams"] == kept, k
        assert b["keptPercent"] == _pct(kept, 10_000)
        assert b["theoryKeptPercent"] == round(100.0 * gcd(3, k) / max(3, k), 4)
        assert b["optimalKeptPercent"] == round(100.0 * min(3, k) / max(3, k), 4)
        assert b["matchesOptimum"] == (max(3, k) % min(3, k) == 0)
    assert best[6]["theoryKeptPercent"] == 50.0  # doubling keeps half
    assert best[4]["theoryKeptPercent"] == 25.0
    # measured agrees with theory within sampling noise on 10,000 streams
    for b in best.values():
        assert abs(b["keptPercent"] - b["theoryKeptPercent"]) < 2.0


def test_sequential_ids_and_streams_without_id(cli):
    text = "account-1\naccount-2\t5\naccount\t3\naccount-1+retry\nother-9\naccount-2\t2\n"
    r = cli("simulate-scale", "account", "--from", 2, "--to", 3, "--streams-from", "-",
            "--format", "json", input=text)
    rep = r.json()
    assert rep["ignoredNames"] == 1 and "outside category" in r.stderr
    assert rep["unassignedStreams"] == 1 and rep["unassignedMessages"] == 3
    check(rep, {"account-1": 1, "account-2": 7, "account-1+retry": 1}, 2, 3)
    seq = cli("simulate-scale", "account", "--from", 1, "--to", 2, "--synthetic", 100,
              "--ids", "sequential", "--format", "json").json()
    check(seq, {f"account-{i}": 1 for i in range(1, 101)}, 1, 2)


# --- from the store, with checkpoints -----------------------------------------------------------
def _store(path, n_streams=300, seed=3) -> list:
    rng = random.Random(seed)
    names = [f"account-{uuid.UUID(int=rng.getrandbits(128), version=4)}" for _ in range(n_streams)]
    msgs = [NewMessage(rng.choice(names), "T", "{}") for _ in range(3000)]
    msgs.insert(100, NewMessage("other-1", "T", "{}"))
    with LocalStore(path, create=True) as st:
        st.write_batch(msgs)
        return st.category_get("account", 1, None)


def test_from_the_store_matches_brute_force(cli, store_path):
    every = _store(store_path)
    counts: dict[str, int] = {}
    for x in every:
        counts[x.stream_name] = counts.get(x.stream_name, 0) + 1
    for n, m in CASES + [(4, 3), (5, 2)]:
        r = cli("simulate-scale", "account", "--from", n, "--to", m, "--store", store_path,
                "--format", "json")
        assert r.exit_code == 0, r
        rep = r.json()
        assert rep["source"] == "store" and rep["head"] == every[-1].global_position
        check(rep, counts, n, m)


def _write_old_checkpoints(directory, positions: dict[int, int], n: int):
    from eventodb_cli.services.checkpoints import Checkpoint, default_name, save

    os.makedirs(directory, exist_ok=True)
    for o, p in positions.items():
        save(os.path.join(directory, default_name("account", o, n)),
             Checkpoint(p, category="account", member=o, size=n))


@pytest.mark.parametrize("n,m", [(2, 4), (3, 4), (4, 3)])
def test_handover_positions_and_rereads(cli, store_path, tmp_path, n, m):
    every = _store(store_path)
    head = every[-1].global_position
    rng = random.Random(n * 10 + m)
    positions = {o: rng.randint(1, head + 1) for o in range(n)}
    old = tmp_path / "old"
    _write_old_checkpoints(old, positions, n)
    r = cli("simulate-scale", "account", "--from", n, "--to", m, "--store", store_path,
            "--checkpoints", old, "--format", "json")
    assert r.exit_code == 0, r
    rep = r.json()
    # donors by brute force over residues: old members sharing a hash residue with new member j
    lcm = n * m // gcd(n, m)
    for row in rep["handover"]:
        j = row["member"]
        donors = sorted({a % n for a in range(lcm) if a % m == j})
        assert [d["member"] for d in row["donors"]] == donors
        assert [d["position"] for d in row["donors"]] == [positions[o] for o in donors]
        start = min(positions[o] for o in donors)
        assert row["position"] == start
        reread = skipped = 0
        for x in every:
            o, jj = member_for(x.stream_name, n), member_for(x.stream_name, m)
            if jj != j:
                continue
            # processed by its old owner, read again by the new one
            if start <= x.global_position < positions[o]:
                reread += 1
            # a new member that kept old member j's checkpoint would never read these
            if j < n and positions[o] <= x.global_position < positions[j]:
                skipped += 1
        assert row["rereadMessages"] == reread
        assert row["naiveSkippedMessages"] == (skipped if j < n else None)
    # nothing of a new member's share that its old owner had not processed lies before its start
    starts = {row["member"]: row["position"] for row in rep["handover"]}
    for x in every:
        o, j = member_for(x.stream_name, n), member_for(x.stream_name, m)
        if x.global_position >= positions[o]:
            assert x.global_position >= starts[j]


def test_write_checkpoints_dry_run_execute_and_conflict(exe, store_path, tmp_path):
    _store(store_path)
    old = tmp_path / "ckpt"
    _write_old_checkpoints(old, {0: 500, 1: 900}, 2)
    args = ["simulate-scale", "account", "--from", 2, "--to", 4, "--store", store_path,
            "--checkpoints", old, "--write-checkpoints", old]
    r = exe(*args, "--format", "json")
    assert r.exit_code == 0, r
    files = r.json()["writeCheckpoints"]["files"]
    assert [f["action"] for f in files] == ["create"] * 4
    assert sorted(os.listdir(old)) == ["account.member-0-of-2.json", "account.member-1-of-2.json"]
    t = exe(*args, "--format", "table")
    assert "dry run: nothing written" in t.stdout
    assert "account.member-3-of-4.json  position 900" in t.stdout
    r = exe(*args, "--execute", "--format", "json")
    assert r.exit_code == 0, r
    assert [f["action"] for f in r.json()["writeCheckpoints"]["files"]] == ["created"] * 4
    for j, want in enumerate([500, 900, 500, 900]):  # 2 -> 4: member j's only donor is j % 2
        obj = json.loads((old / f"account.member-{j}-of-4.json").read_text())
        assert obj["position"] == want and obj["member"] == j and obj["size"] == 4
        assert obj["category"] == "account" and obj["updatedAt"]
    # the new files are what the lag command and the old-group loader read
    from eventodb_cli.services.checkpoints import load_source

    assert sorted((c.member, c.position) for c in load_source(str(old), category="account",
                                                             size=4)) == \
        [(0, 500), (1, 900), (2, 500), (3, 900)]
    r = exe(*args, "--execute", "--format", "json")
    assert [f["action"] for f in r.json()["writeCheckpoints"]["files"]] == ["unchanged"] * 4
    # a new-group file that moved on is never rewound silently
    (old / "account.member-2-of-4.json").write_text('{"position": 1234}')
    before = (old / "account.member-0-of-4.json").read_text()
    r = exe(*args, "--execute")
    assert r.exit_code == 1 and "member-2-of-4.json exists with position 1234" in r.stderr
    assert (old / "account.member-0-of-4.json").read_text() == before


def test_missing_old_checkpoint_starts_from_the_beginning(cli, store_path, tmp_path):
    _store(store_path)
    old = tmp_path / "ckpt"
    _write_old_checkpoints(old, {0: 700}, 2)
    r = cli("simulate-scale", "account", "--from", 2, "--to", 4, "--store", store_path,
            "--checkpoints", old, "--format", "json")
    rep = r.json()
    assert rep["handoverMissing"] == [1] and "no checkpoint for old member(s) 1" in r.stderr
    assert [h["position"] for h in rep["handover"]] == [700, 1, 700, 1]


@pytest.mark.parametrize("args,needle", [
    (["--from", "0", "--to", "2"], "--from: 0 is not in the range 1<=x<=100000"),
    (["--from", "2", "--to", "100001"], "--to: 100001 is not in the range 1<=x<=100000"),
    (["--from", "2", "--to", "99999999999999999999"], "--to"),
    (["--from", "2", "--to", "3", "--synthetic", "99999999999999999999"], "--synthetic"),
    (["--from", "2", "--to", "3", "--synthetic", "1", "--seed", str(2**64)], "--seed"),
    (["--from", "2", "--to", "3", "--synthetic", "5", "--streams-from", "-"], "two sources"),
    (["--from", "2", "--to", "3", "--ids", "uuid"], "go with --synthetic"),
    (["--from", "2", "--to", "3", "--write-checkpoints", "x"], "needs --checkpoints"),
    (["--from", "2", "--to", "3", "--synthetic", "5", "--execute"], "--execute goes with"),
])
def test_usage_errors_exit_2(exe, args, needle):
    r = exe("simulate-scale", "account", *args)
    assert r.exit_code == 2 and needle in r.stderr and "Traceback" not in r.stderr


def test_bad_count_line_is_a_usage_error(exe):
    r = exe("simulate-scale", "account", "--from", "2", "--to", "3", "--streams-from", "-",
            input="account-1\tmany\n")
    assert r.exit_code == 2 and "line 1" in r.stderr


def test_text_output_for_people(exe):
    r = exe("simulate-scale", "account", "--from", "2", "--to", "4", "--synthetic", "10000",
            "--seed", "1", "--format", "table")
    assert r.exit_code == 0, r
    out = r.stdout
    for needle in ("2 -> 4 members, 10,000 streams", "moved:", "least any scheme could move: "
                   "50.00%", "old\\new", "start-new-then-stop-old (seed)", "member-by-member",
                   "as good as any scheme"):
        assert needle in out, needle


def test_help_has_examples(exe):
    for cmd in ("verify-groups", "simulate-scale"):
        r = exe(cmd, "--help")
        assert r.exit_code == 0 and "Examples:" in r.stdout
        assert r.stdout.count(f"eventodb {cmd} ") >= 3


def test_from_a_server_matches_brute_force(exe, server):
    from eventodb_cli.store.remote import RemoteStore

    cat = "ss" + uuid.uuid4().hex[:10]
    rng = random.Random(11)
    names = [f"{cat}-{uuid.UUID(int=rng.getrandbits(128), version=4)}" for _ in range(200)]
    counts: dict[str, int] = {}
    msgs = []
    for _ in range(1500):
        s = rng.choice(names)
        counts[s] = counts.get(s, 0) + 1
        msgs.append(NewMessage(s, "T", "{}", None, str(uuid.uuid4())))
    with RemoteStore(server.url, server.token) as rs:
        rs.write_batch(msgs)
    r = exe("simulate-scale", cat, "--from", "3", "--to", "4", "--url", server.url, "--token",
            server.token, "--format", "json")
    assert r.exit_code == 0, r
    rep = r.json()
    assert rep["source"] == "store" and rep["messages"] == 1500
    check(rep, counts, 3, 4)
