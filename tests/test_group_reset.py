"""``eventodb group reset`` (acceptance 4): the dry run changes nothing; ``--execute`` with each
of the five targets gives the position it names, as ``group describe`` then shows it."""

from __future__ import annotations

import time

import pytest
from test_group_helpers import new_category, target_for, write_messages

from eventodb_cli.domain.message import format_time
from eventodb_cli.services import positions as P


@pytest.fixture(params=["local", "remote"])
def target(request, tmp_path):
    return target_for(request, request.param, tmp_path)


def _group(st, cat, positions, size=3):
    for m, p in enumerate(positions):
        if p is not None:
            P.write_position(st, cat, f"billing-{m}", p, group="billing", member=m, size=size)


def _positions(cli, t, cat, size=3):
    r = cli("group", "describe", cat, "--group", "billing", "--size", size, *t.args,
            "--format", "json")
    assert r.exit_code in (0, 1), r
    return [x["position"] for x in r.json()["members"]]


def _versions(st, cat, size=3):
    return [st.stream_version(f"{cat}:position-billing-{m}") for m in range(size)]


def _reset(cli, t, cat, *args, size=3):
    return cli("group", "reset", cat, "--group", "billing", "--size", size, *args, *t.args,
               "--format", "json")


def test_dry_run_changes_nothing(cli, target):
    st, cat = target.store, new_category()
    res = write_messages(st, cat, 40)
    _group(st, cat, [10, 20, None])
    before = _versions(st, cat)
    for args in (["--to-earliest"], ["--to-latest"], ["--to-position", 5], ["--shift-by", -3],
                 ["--to-datetime", "2000-01-01T00:00:00Z"]):
        r = _reset(cli, target, cat, *args)
        assert r.exit_code == 0, r
        assert r.json()["executed"] is False
    assert _versions(st, cat) == before
    assert _positions(cli, target, cat) == [10, 20, None]
    plan = _reset(cli, target, cat, "--to-latest").json()
    head = max(x.global_position for x in res)
    assert plan["head"] == head
    assert [(x["member"], x["oldPosition"], x["newPosition"], x["change"])
            for x in plan["members"]] == [(0, 10, head, head - 10), (1, 20, head, head - 20),
                                          (2, None, head, None)]
    r = cli("group", "reset", cat, "--group", "billing", "--size", 3, "--to-earliest",
            *target.args, "--format", "table")
    assert "nothing changed" in r.stdout and f"{cat}:position-billing-0" in r.stdout


def test_execute_each_target(cli, target):
    st, cat = target.store, new_category()
    first = write_messages(st, cat, 30)
    time.sleep(0.05)
    second = write_messages(st, cat, 30, start=100)
    head = max(x.global_position for x in second)
    _group(st, cat, [10, 20, 25])

    r = _reset(cli, target, cat, "--to-earliest", "--execute")
    assert r.exit_code == 0 and r.json()["executed"] is True
    assert _positions(cli, target, cat) == [0, 0, 0]

    _reset(cli, target, cat, "--to-latest", "--execute")
    assert _positions(cli, target, cat) == [head, head, head]

    _reset(cli, target, cat, "--to-position", 17, "--execute")
    assert _positions(cli, target, cat) == [17, 17, 17]

    # the first message of the second batch is the next read: position = its gpos - 1
    gpos2 = min(x.global_position for x in second)
    assert max(x.global_position for x in first) < gpos2
    t2 = st.category_get(cat, gpos2, 1)[0].time
    _reset(cli, target, cat, "--to-datetime", format_time(t2), "--execute")
    assert _positions(cli, target, cat) == [gpos2 - 1] * 3
    # the same instant written with an offset
    secs = t2 // 1_000_000_000
    frac = t2 % 1_000_000_000
    shifted = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(secs + 7200)) + \
        f".{frac:09d}+02:00"
    _reset(cli, target, cat, "--to-earliest", "--execute")
    _reset(cli, target, cat, "--to-datetime", shifted, "--execute")
    assert _positions(cli, target, cat) == [gpos2 - 1] * 3
    # a time after every message: nothing to read again, the head
    _reset(cli, target, cat, "--to-datetime", format_time(time.time_ns() + 10**12), "--execute")
    assert _positions(cli, target, cat) == [head] * 3
    # a time before every message: the category's first message is read next
    _reset(cli, target, cat, "--to-datetime", "1970-01-01T00:00:00Z", "--execute")
    assert _positions(cli, target, cat) == [min(x.global_position for x in first) - 1] * 3

    _reset(cli, target, cat, "--to-position", 10, "--execute")
    r = _reset(cli, target, cat, "--shift-by", -3, "--execute")
    assert [x["change"] for x in r.json()["members"]] == [-3, -3, -3]
    assert _positions(cli, target, cat) == [7, 7, 7]
    _reset(cli, target, cat, "--shift-by", 5, "--execute")
    assert _positions(cli, target, cat) == [12, 12, 12]
    _reset(cli, target, cat, "--shift-by", -1000, "--execute")  # clamped at 0
    assert _positions(cli, target, cat) == [0, 0, 0]
    _reset(cli, target, cat, "--shift-by", 10**9, "--execute")  # clamped at the head
    assert _positions(cli, target, cat) == [head] * 3


def test_execute_appends_recorded_messages_with_group_metadata(cli, target):
    st, cat = target.store, new_category()
    write_messages(st, cat, 10)
    _group(st, cat, [5, 5, 5])
    _reset(cli, target, cat, "--to-position", 2, "--member", 1, "--execute")
    assert _positions(cli, target, cat) == [5, 2, 5]
    msgs = st.stream_get(f"{cat}:position-billing-1")
    assert [(m.type, m.data) for m in msgs] == [("Recorded", '{"position":5}'),
                                                ("Recorded", '{"position":2}')]
    assert msgs[-1].metadata_obj == {"group": "billing", "member": 1, "size": 3}
    assert _versions(st, cat) == [0, 1, 0]


def test_missing_member_gets_a_position(cli, target):
    st, cat = target.store, new_category()
    write_messages(st, cat, 10)
    r = _reset(cli, target, cat, "--shift-by", 4, "--execute", size=2)
    assert [(x["oldPosition"], x["newPosition"]) for x in r.json()["members"]] == [(None, 4)] * 2
    assert _positions(cli, target, cat, size=2) == [4, 4]


@pytest.mark.parametrize("args,needle", [
    ([], "exactly one of"),
    (["--to-earliest", "--to-latest"], "exactly one of"),
    (["--to-position", 1, "--shift-by", 1], "exactly one of"),
    (["--to-datetime", "yesterday"], "RFC 3339"),
    (["--to-position", 10**6], "beyond the head"),
    (["--to-position", -1], "--to-position"),
    (["--to-earliest", "--member", 3], "outside a group of size 3"),
    (["--to-earliest", "--size", 0], "--size"),
    (["--shift-by", 2**63], "64-bit"),
])
def test_usage_errors_exit_2_and_write_nothing(cli, store_path, args, needle):
    from eventodb_cli.store.local import LocalStore

    with LocalStore(store_path, create=True) as st:
        write_messages(st, "acct", 5)
        P.write_position(st, "acct", "billing-0", 1, group="billing", member=0, size=3)
    r = cli("group", "reset", "acct", "--group", "billing", *(["--size", 3] if "--size" not in
                                                              args else []),
            *args, "--execute", "--store", store_path)
    assert r.exit_code == 2, r
    assert needle in r.stderr and "Traceback" not in r.stderr
    with LocalStore(store_path) as st:
        assert st.stream_version("acct:position-billing-0") == 0


def test_reset_at_another_size_is_refused(cli, target):
    st, cat = target.store, new_category()
    write_messages(st, cat, 5)
    _group(st, cat, [1, 1, 1])
    r = _reset(cli, target, cat, "--to-earliest", "--execute", size=4)
    assert r.exit_code == 2
    assert "recorded for a group of size 3, not 4" in r.stderr
    assert f"simulate-scale {cat} --from 3 --to 4 --group billing --execute" in r.stderr
    assert _positions(cli, target, cat) == [1, 1, 1]
