"""Issue 8 item 10: a member without a checkpoint of this size is missing (exit 1 unless
--allow-missing), --max-lag-seconds, and item 7 for lag's integer options."""

from __future__ import annotations

import pytest
from helpers_consume import fill_store, share, write_checkpoint


@pytest.fixture
def filled(store_path):
    store = fill_store(store_path, 400, streams=60)
    yield store
    store.close()


def _lag(run, store_path, cpdir, *extra, size=4):
    return run("lag", "account", "--size", size, "--checkpoints", cpdir, "--store", store_path,
               "--format", "json", *extra)


def test_checkpoints_of_another_size_are_missing_not_healthy(cli, filled, store_path, tmp_path):
    """The issue's case: `lag account --size 4 --checkpoints ck2` with size-2 files reported 4
    healthy members while each had unread messages."""
    ck2 = tmp_path / "ck2"
    for m in range(2):
        last = share(filled, "account", m, 2)[-1].global_position
        write_checkpoint(str(ck2 / f"account.member-{m}-of-2.json"), last + 1, member=m, size=2)
    r = _lag(cli, store_path, ck2)
    assert r.exit_code == 1, r
    rep = r.json()
    assert rep["ok"] is False and rep["allowMissing"] is False
    assert [m["status"] for m in rep["members"]] == ["missing"] * 4
    for m in rep["members"]:  # the figures are still there: counted from position 1
        assert m["position"] == 1 and m["checkpoint"] is None
        assert m["lagMessages"] == len(share(filled, "account", m["member"], 4))
    ok = _lag(cli, store_path, ck2, "--allow-missing")
    assert ok.exit_code == 0 and ok.json()["ok"] is True
    assert [m["status"] for m in ok.json()["members"]] == ["missing"] * 4
    # the size-2 group itself is healthy
    r2 = _lag(cli, store_path, ck2, size=2)
    assert r2.exit_code == 0 and [m["status"] for m in r2.json()["members"]] == ["healthy"] * 2


def test_one_missing_member_fails_and_the_table_says_missing(cli, filled, store_path, tmp_path):
    cps = tmp_path / "cps"
    for m in (0, 1, 3):
        write_checkpoint(str(cps / f"account.member-{m}-of-4.json"), 10**6, member=m, size=4)
    r = _lag(cli, store_path, cps)
    assert r.exit_code == 1
    assert [m["status"] for m in r.json()["members"]] == \
        ["healthy", "healthy", "missing", "healthy"]
    t = cli("lag", "account", "--size", 4, "--checkpoints", cps, "--store", store_path,
            "--format", "table")
    assert t.exit_code == 1 and "missing" in t.stdout


def test_max_lag_seconds(cli, filled, store_path, tmp_path):
    cps = tmp_path / "cps"
    for m in range(2):
        write_checkpoint(str(cps / f"account.member-{m}-of-2.json"), 1, member=m, size=2)
    ages = _lag(cli, store_path, cps, size=2).json()["members"]
    assert all(m["lagSeconds"] > 0 for m in ages)
    young = min(m["lagSeconds"] for m in ages)
    r = _lag(cli, store_path, cps, "--max-lag", 10**6, "--max-lag-seconds", 0, size=2)
    assert r.exit_code == 1
    assert [m["status"] for m in r.json()["members"]] == ["lagging", "lagging"]
    assert r.json()["maxLagSeconds"] == 0
    r = _lag(cli, store_path, cps, "--max-lag", 10**6, "--max-lag-seconds", 3600, size=2)
    assert r.exit_code == 0 and young < 3600
    # caught up: no unread message, lagSeconds 0, healthy whatever the threshold
    for m in range(2):
        write_checkpoint(str(cps / f"account.member-{m}-of-2.json"), 10**6, member=m, size=2)
    r = _lag(cli, store_path, cps, "--max-lag-seconds", 0, size=2)
    assert r.exit_code == 0 and all(m["lagSeconds"] == 0 for m in r.json()["members"])


@pytest.mark.parametrize("args", [
    ("--size", "99999999999999999999"), ("--size", "100001"), ("--size", "0"),
    ("--cap", "99999999999999999999"), ("--cap", "0"), ("--max-lag", "-1"),
    ("--max-lag", "99999999999999999999"), ("--max-lag-seconds", "nan"),
    ("--max-lag-seconds", "-1"), ("--interval", "inf"),
])
def test_bad_numbers_are_one_line_usage_errors(cli, filled, store_path, tmp_path, args):
    (tmp_path / "cps").mkdir()
    base = ["lag", "account", "--checkpoints", tmp_path / "cps", "--store", store_path]
    if args[0] != "--size":
        base += ["--size", "2"]
    r = cli(*base, *args)
    assert r.exit_code == 2, r
    assert r.stdout == "" and "Traceback" not in r.stderr and "internal error" not in r.stderr


def test_checkpoints_or_group_exactly_one(cli, filled, store_path, tmp_path):
    r = cli("lag", "account", "--size", 2, "--store", store_path)
    assert r.exit_code == 2 and "exactly one of --checkpoints" in r.stderr
    r = cli("lag", "account", "--checkpoints", tmp_path, "--store", store_path)
    assert r.exit_code == 2 and "--checkpoints needs --size" in r.stderr


@pytest.mark.parametrize("args", [
    ("--size", "99999999999999999999"), ("--size", "100001"),
    ("--size", "2", "--write-test-data", "99999999999999999999"),
])
def test_verify_groups_bad_numbers_are_usage_errors(exe, filled, store_path, args):
    r = exe("verify-groups", "account", *args, "--store", store_path)
    assert r.exit_code == 2 and "Traceback" not in r.stderr and "internal error" not in r.stderr
