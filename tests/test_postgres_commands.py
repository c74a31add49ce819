"""Every command on Message DB (issue 11): the same answers as on a local store holding the same
records, and the one-statement fast paths (share_lag, stream_counts, category_head) equal to the
generic paths they replace."""

from __future__ import annotations

import json
import subprocess
import time
import uuid

import pytest
from pg_fixture import PASSWORD

from eventodb_cli.services import group_view, groups
from eventodb_cli.store.base import Store
from eventodb_cli.store.local import LocalStore
from eventodb_cli.store.postgres import PostgresStore

from conftest import exe_path
from test_parity import dataset_us


@pytest.fixture(scope="module")
def pair(messagedb, tmp_path_factory):
    """(local args, Message DB args, Message DB URL): the parity records behind both."""
    records = dataset_us()
    path = str(tmp_path_factory.mktemp("mdbcmd") / "local.db")
    with LocalStore(path, create=True) as local:
        local.import_records(records)
    url = messagedb.url(messagedb.create_db())
    with PostgresStore(url) as mdb:
        mdb.import_records(records)
    return ["--store", path], ["--url", url], url


class Generic(Store):
    """A store that hides every optional fast method: the services' generic paths."""

    def __init__(self, inner):
        self.inner = inner

    def category_get(self, *a, **k):
        return self.inner.category_get(*a, **k)


def _same(cli, pair, *args, drop=()):
    local, mdb, _ = pair
    a, b = cli(*args, *local), cli(*args, *mdb)
    assert a.exit_code == b.exit_code, (a, b)
    ja, jb = a.json(), b.json()
    for k in drop:
        ja.pop(k, None), jb.pop(k, None)
    assert ja == jb
    return a


def test_verify_groups_and_simulate_scale_same_report(cli, pair):
    for size in (1, 3, 4):
        r = _same(cli, pair, "verify-groups", "account", "--size", size, "-o", "json")
        assert r.exit_code == 0 and r.json()["ok"], r
    _same(cli, pair, "verify-groups", "", "--size", "2", "-o", "json")
    _same(cli, pair, "simulate-scale", "account", "--from", "2", "--to", "3", "-o", "json")


def test_fast_methods_equal_the_generic_paths(pair):
    _, _, url = pair
    with PostgresStore(url) as s:
        g = Generic(s)
        for cat in ("account", "order", "", "nothing"):
            head = s.category_head(cat)
            assert head == Store.category_head(g, cat)
            for size, member in ((None, None), (1, 0), (3, 0), (3, 2), (4, 1)):
                for after in (0, 40, 150):
                    if head is not None:
                        assert s.share_lag(cat, member, size, after, head) == \
                            group_view.share_lag(g, cat, member, size, after, head)
                if head is not None:
                    assert s.stream_counts(cat, head, member, size) == groups._read_counts(
                        g, cat, head, member, size, "x", None)
            if head is not None:
                from eventodb_cli.domain.hashing import member_for

                got = s.stream_members(cat, head, 5)
                assert {k: n for k, (n, _m) in got.items()} == s.stream_counts(cat, head)
                assert all(m == member_for(k, 5) for k, (_n, m) in got.items())


def test_group_reset_describe_and_lag_same_report(cli, pair):
    local, mdb, _ = pair
    for target in (local, mdb):
        r = cli("group", "reset", "account", "--group", "billing", "--size", "3",
                "--to-position", "100", "--execute", *target)
        assert r.exit_code == 0, r
    drop = ("time", "lagSeconds")
    a = _same(cli, pair, "group", "describe", "account", "--group", "billing", "-o", "json",
              drop=drop + ("members",))
    assert a.exit_code in (0, 1)
    local_r = cli("lag", "account", "--group", "billing", "--max-lag", "100000", "-o", "json",
                  *local).json()
    mdb_r = cli("lag", "account", "--group", "billing", "--max-lag", "100000", "-o", "json",
                *mdb).json()
    keys = ("member", "position", "lagMessages")
    assert [tuple(m.get(k) for k in keys) for m in local_r["members"]] == \
        [tuple(m.get(k) for k in keys) for m in mdb_r["members"]]
    assert sum(m["lagMessages"] for m in mdb_r["members"]) > 0
    # group list: found through list_categories / list_streams (no category named)
    rows = []
    for target in (local, mdb):
        r = cli("group", "list", "-o", "ndjson", *target)
        assert r.exit_code == 0, r
        rows.append([(x.get("category"), x.get("group"), x.get("size"), x.get("members"))
                     for x in r.ndjson()])
    assert rows[0] == rows[1] and rows[1][0][:3] == ("account", "billing", 3)


def test_consume_checkpoints_and_lag_same_as_local(cli, pair, tmp_path):
    local, mdb, _ = pair
    outs = []
    for name, target in (("l", local), ("m", mdb)):
        d = tmp_path / name
        d.mkdir()
        r = cli("consume", "account", "--member", "1", "--size", "2", "--checkpoint",
                d / "m1.json", "--max-messages", "7", *target)
        assert r.exit_code == 0, r
        outs.append(r.stdout)
        r = cli("lag", "account", "--size", "2", "--checkpoints", d, "--allow-missing",
                "-o", "json", *target)
        rep = r.json()
        outs.append([(m["member"], m["position"], m["lagMessages"], m["status"])
                     for m in rep["members"]])
    assert outs[0] == outs[2] and outs[0].count("\n") == 7
    assert outs[1] == outs[3]


def test_consume_follow_polls_message_db(pair, tmp_path):
    """`consume --follow` on Message DB: a message written after it started is delivered."""
    _, mdb, url = pair
    cp = tmp_path / "f.json"
    stream = f"follow-{uuid.uuid4().hex[:8]}"
    proc = subprocess.Popen([exe_path(), "consume", "follow", "--member", "0", "--size", "1",
                             "--checkpoint", str(cp), "--follow", "--poll-interval", "0.2",
                             "--max-messages", "2", *mdb],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        with PostgresStore(url) as s:
            from eventodb_cli.domain.message import NewMessage

            s.write(NewMessage(stream, "First", "{}"))
            time.sleep(1.0)
            s.write(NewMessage(stream, "Second", "{}"))
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, err
    assert "SSE" not in err and "polling" not in err  # no push to try: it polls from the start
    assert [json.loads(x)["type"] for x in out.splitlines()] == ["First", "Second"]
    assert json.loads(cp.read_text())["position"] > 0


def test_server_version_and_health_methods(pair):
    _, _, url = pair
    with PostgresStore(url) as s:
        v = s.server_version()
        assert v["version"] == "1.3.0" and v["server"] == "messagedb"
        assert s.server_health()["status"] == "ok"


def test_server_version_and_health_cli(cli, pair):
    _, mdb, _ = pair
    r = cli("server", "version", "-o", "table", *mdb)
    assert r.exit_code == 0 and r.stdout.strip() == "1.3.0", r
    assert cli("server", "version", "-o", "json", *mdb).json()["server"] == "messagedb"
    r = cli("server", "health", "-o", "table", *mdb)
    assert r.exit_code == 0 and r.stdout.strip() == "ok", r


def test_write_file_failed_batch_leaves_nothing_of_itself(messagedb, cli, tmp_path):
    """--batch-size 4, a version conflict on line 7: batch 1 (lines 1-4) stays, nothing of
    batch 2 does; the same one-line error and exit code as on a local store."""
    lines = [json.dumps({"stream": f"b-{i % 2}", "type": "T", "data": {"i": i},
                         "id": str(uuid.UUID(int=77_000 + i))}) for i in range(10)]
    lines[6] = json.dumps({"stream": "b-0", "type": "T", "data": {}, "expectedVersion": 99})
    f = tmp_path / "w.ndjson"
    f.write_text("\n".join(lines) + "\n")
    local = ["--store", str(tmp_path / "l.db")]
    mdb = ["--url", messagedb.url(messagedb.create_db())]
    a = cli("write", "--file", f, "--batch-size", "4", *local)
    b = cli("write", "--file", f, "--batch-size", "4", *mdb)
    # a local store adds how to --resume (no resume on Message DB: services/writes.py)
    assert (a.exit_code, a.stdout) == (b.exit_code, b.stdout)
    assert a.stderr.split("; to write the rest")[0] == b.stderr.split("; to write the rest")[0]
    # the resume command names the database, never its password
    assert "--resume --url postgresql://postgres@127.0.0.1:" in b.stderr, b
    assert PASSWORD not in b.stderr
    assert b.stderr.rstrip().endswith("(with the same --token or password)")
    assert b.exit_code == 3 and len(b.stderr.strip().splitlines()) == 1, b
    r = cli("category", "get", "b", "-o", "json", *mdb)
    assert [m["data"]["i"] for m in r.json()] == [0, 1, 2, 3]


def test_readme_flow_through_the_executable(messagedb, exe, tmp_path):
    """README "Message DB": the target in EVENTODB_URL (libpq parameters kept), the password in
    PGPASSWORD; write, a member read, verify-groups, consume, lag and export, as written."""
    from pg_fixture import PASSWORD

    url = messagedb.url(messagedb.create_db(), password=None) + "?sslmode=disable"
    env = {"EVENTODB_URL": url, "PGPASSWORD": PASSWORD}
    run = lambda *a: exe(*a, env=env)  # noqa: E731
    assert run("write", "account-123", "--type", "Deposited", "--data",
               '{"amount":100}').exit_code == 0
    assert run("write", "account-456", "--type", "Deposited", "--data",
               '{"amount":7}').exit_code == 0
    r = run("category", "get", "account", "--member", "1", "--size", "2", "--format", "json")
    assert r.exit_code == 0 and [m["streamName"] for m in r.json()] == [
        "account-123", "account-456"], r
    r = run("verify-groups", "account", "--size", "2", "--format", "json")
    assert r.exit_code == 0 and r.json()["ok"], r
    (tmp_path / "cp").mkdir()
    r = run("consume", "account", "--member", "1", "--size", "2", "--checkpoint",
            tmp_path / "cp" / "m1.json", "--max-messages", "2")
    assert r.exit_code == 0 and r.stdout.count("\n") == 2, r
    r = run("lag", "account", "--size", "2", "--checkpoints", tmp_path / "cp", "--format",
            "json")
    assert [m["lagMessages"] for m in r.json()["members"]] == [0, 0], r
    r = run("export", "--category", "account", "--output", tmp_path / "account.ndjson")
    assert r.exit_code == 0, r
    assert len((tmp_path / "account.ndjson").read_text().splitlines()) == 2
    assert PASSWORD not in (tmp_path / "account.ndjson.manifest.json").read_text()
