"""``eventodb lag`` against a real ``eventodb serve``: the head of a 1,000,000-position category in
at most 2*log2(position)+4 requests, and figures equal to a brute-force count.

The category is built with ``POST /import`` (which keeps global positions) from a sparse set of
records whose last global position is 1,000,000, in a dedicated server process."""

from __future__ import annotations

import math
import random
import uuid

import pytest

from eventodb_cli.domain.hashing import member_for
from eventodb_cli.domain.message import Message, canonical_json, parse_time
from eventodb_cli.domain.records import to_record_line

from conftest import start_server

HEAD = 1_000_000
T0 = parse_time("2026-11-01T00:00:00Z")


@pytest.fixture(scope="module")
def big_server(tmp_path_factory):
    rnd = random.Random(5)
    gposes = sorted(rnd.sample(range(1, HEAD), 3999)) + [HEAD]
    versions: dict[str, int] = {}
    records = []
    for g in gposes:
        stream = f"big-{rnd.randrange(300)}"
        v = versions.get(stream, -1) + 1
        versions[stream] = v
        records.append(Message(str(uuid.uuid4()), stream, "Imported", v, g,
                               canonical_json({"g": g}), None, T0 + g * 1_000_000_000))
    # another category after it: the namespace's last position is not the category's head
    records.append(Message(str(uuid.uuid4()), "later-1", "Imported", 0, HEAD + 10,
                           canonical_json({}), None, T0))
    srv = start_server(tmp_path_factory.mktemp("bigsrv") / "data")
    from eventodb_cli.store.remote import RemoteStore

    st = RemoteStore(srv.url, srv.token)
    body = ("\n".join(to_record_line(m) for m in records) + "\n").encode()
    events = list(st.import_stream([body]))
    assert events[-1].get("done") is True and events[-1]["imported"] == len(records), events
    st.close()
    yield srv, [m for m in records if m.stream_name.startswith("big-")]
    srv.stop()


@pytest.fixture
def remote(big_server):
    from eventodb_cli.store.remote import RemoteStore

    st = RemoteStore(big_server[0].url, big_server[0].token)
    yield st
    st.close()


def test_head_of_a_million_positions_in_logarithmic_requests(remote):
    bound = 2 * math.log2(HEAD) + 4
    before = remote.requests
    head = remote.category_head("big")
    used = remote.requests - before
    print(f"head {head} found in {used} requests (bound {bound:.1f})")
    assert head == HEAD
    assert used <= bound
    before = remote.requests
    assert remote.category_head("later") == HEAD + 10
    assert remote.requests - before <= 2 * math.log2(HEAD + 10) + 4
    assert remote.category_head("nothing") is None


def test_lag_on_the_server_matches_brute_force_with_few_requests(remote, big_server, tmp_path):
    from eventodb_cli.services import checkpoints as cps
    from eventodb_cli.services import lag as svc

    _srv, records = big_server
    size = 4
    shares = {m: [r for r in records if member_for(r.stream_name, size) == m]
              for m in range(size)}
    positions = {0: shares[0][100].global_position, 1: HEAD + 1, 2: shares[2][-5].global_position}
    found = {m: cps.Checkpoint(p, None, "big", m, size, f"m{m}") for m, p in positions.items()}
    before = remote.requests
    rep = svc.snapshot(remote, "big", size, found, max_lag=500, cap=10_000)
    used = remote.requests - before
    print(f"lag report for {size} members in {used} requests")
    assert rep["head"] == HEAD
    now = parse_time(rep["time"])
    for m in rep["members"]:
        p = positions.get(m["member"], 1)
        left = [r for r in shares[m["member"]] if r.global_position >= p]
        assert m["position"] == p
        assert m["lagMessages"] == len(left) and m["lagMessagesExact"] is True
        assert m["lagPositions"] == max(0, HEAD - p + 1)
        assert m["lagSeconds"] == (round((now - left[0].time) / 1e9, 3) if left else 0.0)
        assert m["status"] == ("missing" if m["member"] not in found
                               else "lagging" if len(left) > 500 else "healthy")
    # the head search plus one page per member (each share is far below the cap)
    assert used <= 2 * math.log2(HEAD) + 4 + size


def test_lag_cli_against_the_server(exe, big_server, tmp_path):
    srv, records = big_server
    cpdir = tmp_path / "cps"
    cpdir.mkdir()
    last0 = [r for r in records if member_for(r.stream_name, 2) == 0][-1]
    (cpdir / "big.member-0-of-2.json").write_text(
        '{"position": %d, "updatedAt": "2026-11-28T06:00:00Z"}' % (last0.global_position + 1))
    r = exe("lag", "big", "--size", 2, "--checkpoints", cpdir, "--url", srv.url, "--token",
            srv.token, "--format", "json", "-v", "--max-lag", 100)
    assert r.exit_code == 1, r  # member 1 has no checkpoint: missing, its whole share behind
    rep = r.json()
    by = {m["member"]: m for m in rep["members"]}
    assert by[0]["lagMessages"] == 0 and by[0]["status"] == "healthy"
    assert by[1]["lagMessages"] == sum(1 for x in records if member_for(x.stream_name, 2) == 1)
    assert by[1]["status"] == "missing" and rep["ok"] is False
    rpc_lines = [ln for ln in r.stderr.splitlines() if "/rpc" in ln]
    print(f"CLI lag: {len(rpc_lines)} requests")
    assert len(rpc_lines) <= 2 * math.log2(HEAD) + 4 + 2
    assert srv.token not in r.stderr
