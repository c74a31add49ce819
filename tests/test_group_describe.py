"""``eventodb group describe`` and ``group list`` on a real local store and a real server:
exact per-member lag, statuses, exit codes, prometheus output."""

from __future__ import annotations

import pytest
from test_group_helpers import new_category, share_after, target_for, write_messages

from eventodb_cli.services import positions as P


@pytest.fixture(params=["local", "remote"])
def target(request, tmp_path):
    return target_for(request, request.param, tmp_path)


def _describe(cli, t, cat, *args):
    return cli("group", "describe", cat, *args, *t.args, "--format", "json")


def test_describe_exact_lag_per_member_then_300_more(cli, target):
    st, cat = target.store, new_category()
    res = write_messages(st, cat, 120)
    head = max(x.global_position for x in res)
    for m, after in ((0, head), (1, res[40].global_position), (2, res[10].global_position)):
        P.write_position(st, cat, P.group_identifier("billing", m), after,
                         group="billing", member=m, size=3)
    r = _describe(cli, target, cat, "--group", "billing")
    assert r.exit_code == 0, r
    rep = r.json()
    assert (rep["category"], rep["group"], rep["size"], rep["head"]) == (cat, "billing", 3, head)
    assert rep["membersSeen"] == 3
    rows = rep["members"]
    assert [x["member"] for x in rows] == [0, 1, 2]
    assert [x["identifier"] for x in rows] == ["billing-0", "billing-1", "billing-2"]
    assert rows[0]["positionStream"] == f"{cat}:position-billing-0"
    for x in rows:
        assert x["lagMessages"] == share_after(st, cat, x["member"], 3, x["position"])
        assert x["status"] == "healthy" and x["head"] == head and x["recordedSize"] == 3
        assert (x["lagSeconds"] > 0) == (x["lagMessages"] > 0)
        assert x["updatedAt"].endswith("Z")
    assert rows[0]["lagMessages"] == 0 and rows[0]["lagSeconds"] == 0
    total = rep["lagMessages"]
    assert total == sum(x["lagMessages"] for x in rows)

    write_messages(st, cat, 300, start=1000)
    r = _describe(cli, target, cat, "--group", "billing")
    assert r.exit_code == 0 and r.json()["lagMessages"] == total + 300
    r = _describe(cli, target, cat, "--group", "billing", "--max-lag", 0)
    assert r.exit_code == 1
    assert {x["status"] for x in r.json()["members"]} == {"lagging"}


def test_statuses_healthy_lagging_stalled_missing(cli, target):
    st, cat = target.store, new_category()
    res = write_messages(st, cat, 60, streams=40)
    head = max(x.global_position for x in res)
    P.write_position(st, cat, "g-0", head, group="g", member=0, size=4)  # caught up
    P.write_position(st, cat, "g-1", 0, group="g", member=1, size=4)     # behind
    P.write_position(st, cat, "g-2", 0, group="g", member=2, size=4)     # behind
    # g-3: no position stream
    r = _describe(cli, target, cat, "--group", "g", "--max-lag", 1)
    assert r.exit_code == 1
    st_ = {x["member"]: x["status"] for x in r.json()["members"]}
    assert st_ == {0: "healthy", 1: "lagging", 2: "lagging", 3: "missing"}
    missing = r.json()["members"][3]
    assert missing["position"] is None and missing["updatedAt"] is None
    assert missing["lagMessages"] == share_after(st, cat, 3, 4, 0)  # reads from the start
    # no new position for 0 s while it has lag: stalled (the caught-up member stays healthy)
    r = _describe(cli, target, cat, "--group", "g", "--stalled-after", 0)
    st_ = {x["member"]: x["status"] for x in r.json()["members"]}
    assert st_ == {0: "healthy", 1: "stalled", 2: "stalled", 3: "missing"}
    assert r.json()["statusCounts"] == {"healthy": 1, "lagging": 0, "stalled": 2, "missing": 1}
    # lag in seconds
    r = _describe(cli, target, cat, "--group", "g", "--max-lag-seconds", 0)
    assert {x["member"]: x["status"] for x in r.json()["members"]}[1] == "lagging"
    r = _describe(cli, target, cat, "--group", "g", "--max-lag-seconds", 3600)
    assert {x["member"]: x["status"] for x in r.json()["members"]}[1] == "healthy"


def test_all_healthy_exits_0_and_table_shows_dashes(cli, target):
    st, cat = target.store, new_category()
    res = write_messages(st, cat, 10)
    top = max(x.global_position for x in res)
    P.write_position(st, cat, "g-0", top, group="g", member=0, size=2)
    r = cli("group", "describe", cat, "--group", "g", "--format", "table", *target.args)
    assert r.exit_code == 1  # member 1 missing
    assert "missing" in r.stdout and "GROUP     g" in r.stdout and "SIZE      2" in r.stdout
    line = [ln for ln in r.stdout.splitlines() if "g-1" in ln][0]
    assert " - " in line
    P.write_position(st, cat, "g-1", top, group="g", member=1, size=2)
    r = _describe(cli, target, cat, "--group", "g")
    assert r.exit_code == 0 and r.json()["ok"] is True


def test_size_from_positions_and_its_errors(cli, target):
    st, cat = target.store, new_category()
    write_messages(st, cat, 5)
    r = _describe(cli, target, cat, "--group", "nobody")
    assert r.exit_code == 4 and "--size" in r.stderr
    r = _describe(cli, target, cat, "--group", "nobody", "--size", 2)
    assert r.exit_code == 1
    assert [x["status"] for x in r.json()["members"]] == ["missing", "missing"]
    P.write_position(st, cat, "g-0", 1, group="g", member=0, size=3)
    P.write_position(st, cat, "g-1", 1, group="g", member=1, size=4)
    P.write_position(st, cat, "g-2", 1, group="g", member=2, size=3)
    r = _describe(cli, target, cat, "--group", "g")
    assert r.exit_code == 2
    assert "different group sizes" in r.stderr and "size 3: members 0, 2" in r.stderr
    assert "Traceback" not in r.stderr
    assert _describe(cli, target, cat, "--group", "g", "--size", 3).json()["size"] == 3


def test_size_after_a_resize_down_ignores_left_over_members(cli, local_target):
    st, cat = local_target.store, new_category()
    write_messages(st, cat, 5)
    for m in range(4):
        P.write_position(st, cat, f"g-{m}", 1, group="g", member=m, size=4)
    for m in range(3):  # the hand-over 4 -> 3 rewrites members 0..2; g-3 stays at size 4
        P.write_position(st, cat, f"g-{m}", 1, group="g", member=m, size=3)
    r = _describe(cli, local_target, cat, "--group", "g")
    assert r.json()["size"] == 3 and len(r.json()["members"]) == 3


@pytest.fixture
def local_target(request, tmp_path):
    return target_for(request, "local", tmp_path)


def test_prometheus_output_parses_and_equals_json(cli, target):
    parser = pytest.importorskip("prometheus_client.parser")
    st, cat = target.store, new_category()
    res = write_messages(st, cat, 50)
    P.write_position(st, cat, "billing-0", res[20].global_position, group="billing", member=0,
                     size=2)
    P.write_position(st, cat, "billing-1", res[30].global_position, group="billing", member=1,
                     size=2)
    rep = _describe(cli, target, cat, "--group", "billing").json()
    r = cli("group", "describe", cat, "--group", "billing", "--format", "prometheus",
            *target.args)
    assert r.exit_code == 0, r
    fams = {f.name: f for f in parser.text_string_to_metric_families(r.stdout)}
    lag = {s.labels["member"]: s.value for s in fams["eventodb_consumer_lag_messages"].samples}
    assert lag == {str(x["member"]): x["lagMessages"] for x in rep["members"]}
    pos = fams["eventodb_consumer_position"].samples[0]
    assert pos.labels == {"category": cat, "group": "billing", "member": "0", "size": "2"}
    assert pos.value == res[20].global_position
    assert {s.value for s in fams["eventodb_consumer_head"].samples} == {rep["head"]}
    assert fams["eventodb_consumer_lag_seconds"].type == "gauge"


def test_identifier_reads_one_consumer_over_the_whole_category(cli, target):
    st, cat = target.store, new_category()
    res = write_messages(st, cat, 30)
    tenth = sorted(x.global_position for x in res)[9]
    P.write_position(st, cat, "worker", tenth)
    r = _describe(cli, target, cat, "--identifier", "worker")
    assert r.exit_code == 0
    rep = r.json()
    assert rep["group"] is None and rep["identifier"] == "worker" and rep["size"] is None
    (row,) = rep["members"]
    assert row["member"] is None and row["positionStream"] == f"{cat}:position-worker"
    assert row["lagMessages"] == 20 and row["position"] == tenth


@pytest.mark.parametrize("args,needle", [
    (["--group", "g", "--identifier", "x"], "exactly one of --group"),
    ([], "exactly one of --group"),
    (["--identifier", "x", "--size", "2"], "--size is for a --group"),
    (["--group", "g", "--size", "0"], "--size"),
    (["--group", "g", "--max-lag-seconds", "nan"], "--max-lag-seconds"),
    (["--group", "g", "--stalled-after", "-1"], "--stalled-after"),
    (["--group", "g", "--max-lag", "-1"], "--max-lag"),
])
def test_usage_errors_exit_2(cli, store_path, args, needle):
    from eventodb_cli.store.local import LocalStore

    LocalStore(store_path, create=True).close()
    r = cli("group", "describe", "acct", *args, "--store", store_path)
    assert r.exit_code == 2, r
    assert needle in r.stderr and "Traceback" not in r.stderr


def test_a_stream_name_is_not_a_category(cli, store_path):
    r = cli("group", "describe", "acct-1", "--group", "g", "--store", store_path)
    assert r.exit_code == 2 and "not a category" in r.stderr


def test_no_store_is_not_found(cli, tmp_path):
    r = cli("group", "describe", "acct", "--group", "g", "--size", 1,
            "--store", str(tmp_path / "none.db"))
    assert r.exit_code == 4 and "store not found" in r.stderr


# --- group list ---------------------------------------------------------------------------------
def test_group_list(cli, target):
    st, cat = target.store, new_category()
    write_messages(st, cat, 5)
    for m in range(3):
        P.write_position(st, cat, f"billing-{m}", 2, group="billing", member=m, size=3)
    P.write_position(st, cat, "audit-0", 1, group="audit", member=0, size=2)
    P.write_position(st, f"{cat}:command", "billing-0", 1, group="billing", member=0, size=1)
    P.write_position(st, cat, "someConsumer", 4)
    r = cli("group", "list", *target.args, "--format", "json")
    assert r.exit_code == 0, r
    rows = [x for x in r.json() if x["category"].startswith(cat)]
    got = [(x["category"], x["group"], x["identifier"], x["size"], x["membersSeen"])
           for x in rows]
    assert got == [
        (cat, None, "someConsumer", None, 1),
        (cat, "audit", None, 2, 1),
        (cat, "billing", None, 3, 3),
        (f"{cat}:command", "billing", None, 1, 1),
    ]
    for x in rows:
        assert x["newestUpdate"].endswith("Z") and 0 <= x["ageSeconds"] < 600
    r = cli("group", "list", *target.args, "--format", "ndjson")
    assert any(x["group"] == "billing" and x["category"] == cat for x in r.ndjson())
    r = cli("group", "list", *target.args, "--format", "table")
    assert r.exit_code == 0 and "billing" in r.stdout and "membersSeen" in r.stdout


def test_group_list_through_the_executable(exe, store_path):
    from eventodb_cli.store.local import LocalStore

    with LocalStore(store_path, create=True) as st:
        P.write_position(st, "acct", "billing-0", 0, group="billing", member=0, size=1)
    r = exe("group", "list", "--store", store_path, "--format", "json")
    assert r.exit_code == 0, r
    assert [(x["category"], x["group"], x["size"]) for x in r.json()] == [("acct", "billing", 1)]
    r = exe("group", "describe", "acct", "--group", "billing", "--store", store_path,
            "--format", "json")
    assert r.exit_code == 0 and r.json()["members"][0]["position"] == 0


def test_a_damaged_position_is_one_line_exit_1(cli, store_path):
    from eventodb_cli.domain.message import NewMessage
    from eventodb_cli.store.local import LocalStore

    with LocalStore(store_path, create=True) as st:
        st.write(NewMessage("acct:position-g-0", "Recorded", '{"position":-4}',
                            '{"group":"g","member":0,"size":1}'))
    r = cli("group", "describe", "acct", "--group", "g", "--size", 1, "--store", store_path)
    assert r.exit_code == 1
    assert "no valid 'position'" in r.stderr and "Traceback" not in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1


def test_stalled_is_decided_by_the_clock_given(store_path):
    """The service takes ``now_ns``: a position written 10 s before 'now' with lag is stalled
    after 5 s, not after 60 s."""
    from eventodb_cli.services import group_view
    from eventodb_cli.store.local import LocalStore

    with LocalStore(store_path, create=True) as st:
        write_messages(st, "acct", 5)
        w = P.write_position(st, "acct", "g-0", 1, group="g", member=0, size=1)
        t = P.read_position(st, "acct", "g-0").time_ns
        assert w.global_position == 6
        now = t + 10 * 10**9
        rep = group_view.describe(st, "acct", group="g", stalled_after=5, now_ns=now)
        assert rep["members"][0]["status"] == "stalled"
        rep = group_view.describe(st, "acct", group="g", stalled_after=60, now_ns=now)
        assert rep["members"][0]["status"] == "healthy"
        assert rep["members"][0]["lagSeconds"] >= 10


def test_a_wrong_token_is_exit_5_and_never_printed(cli, server):
    from conftest import make_token

    bad = make_token("default")
    for args in (["list"], ["describe", "acct", "--group", "g", "--size", 1],
                 ["reset", "acct", "--group", "g", "--size", 1, "--to-earliest", "--execute"]):
        r = cli("group", *args, "--url", server.url, "--token", bad)
        assert r.exit_code == 5, r
        assert bad not in r.stderr and bad not in r.stdout and "Traceback" not in r.stderr
