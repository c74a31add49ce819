"""The same CLI cases against a local store, a real ``eventodb serve`` and Message DB: identical
stdout, stderr and exit code, byte for byte.

Both targets are loaded with the same records (ids, positions, global positions with gaps,
nanosecond times): the local store through ``LocalStore.import_records``, the server through
``/import`` (``RemoteStore.import_stream``). Writes made by the cases use fixed ids, and only
commands whose output has no write time are compared after them.
"""

from __future__ import annotations

import json
import uuid

import pytest

from eventodb_cli.domain.message import Message, canonical_json
from eventodb_cli.domain.records import to_record_line
from eventodb_cli.store.local import LocalStore
from eventodb_cli.store.remote import RemoteStore

BASE_NS = 1_736_936_000_000_000_000  # 2025-01-15T10:13:20Z


def dataset() -> list[Message]:
    """~300 messages: several categories, compound ids, a stream without an id, Unicode names
    and payloads, floats, nested data, correlation metadata, gaps in global positions, times
    with 0 to 9 fraction digits."""
    streams = ([f"account-{i}" for i in range(1, 9)] + ["account-3+retry", "account-",
               "order-1", "order-2", "café-été", "ledger", "workflow-77"])
    msgs: list[Message] = []
    versions: dict[str, int] = {}
    gpos = 0
    fractions = [0, 500_000_000, 123_456_789, 1_000, 120_000_000]
    for i in range(300):
        s = streams[(i * 7) % len(streams)]
        v = versions.get(s, -1) + 1
        versions[s] = v
        gpos += 1 if i % 17 else 3  # gaps
        data = {"i": i, "amount": i * 1.5, "note": "héllo ✓ \u2028 <&>", "ok": i % 2 == 0,
                "nested": {"list": [1, "two", None, {"x": [3.25]}]}, "empty": ""}
        meta = None
        if i % 3 == 0:
            meta = {"correlationStreamName": f"workflow-{i % 4}", "by": "ünïcode"}
        elif i % 3 == 1:
            meta = {}
        t = BASE_NS + i * 1_000_000_000 + fractions[i % len(fractions)]
        mtype = ["Opened", "Deposited", "Withdrawn"][i % 3]
        msgs.append(Message(str(uuid.UUID(int=i + 1)), s, mtype, v, gpos, canonical_json(data),
                            None if meta is None else canonical_json(meta), t))
    return msgs


@pytest.fixture(scope="module")
def targets(server, tmp_path_factory):
    """(local args, remote args): the same data behind a local store and a server namespace."""
    records = dataset()
    path = str(tmp_path_factory.mktemp("parity") / "local.db")
    with LocalStore(path, create=True) as local:
        assert local.import_records(records) == len(records)
    with RemoteStore(server.url, server.token) as admin:
        token = admin.ns_create("parity-" + uuid.uuid4().hex[:8])["token"]
    with RemoteStore(server.url, token) as remote:
        events = list(remote.import_stream(
            (to_record_line(m) + "\n").encode() for m in records))
    assert events[-1].get("done") is True and events[-1]["imported"] == len(records), events
    return ["--store", path], ["--url", server.url, "--token", token]


READ_CASES = [
    ["stream", "get", "account-1"],
    ["stream", "get", "account-1", "-o", "json"],
    ["stream", "get", "account-1", "-o", "raw"],
    ["stream", "get", "account-1", "-o", "table"],
    ["stream", "get", "account-2", "--position", "3", "--batch-size", "4", "-o", "json"],
    ["stream", "get", "account-2", "--global-position", "100", "-o", "ndjson"],
    ["stream", "get", "account-3", "--batch-size", "-1", "-o", "raw"],
    ["stream", "get", "account-3", "--batch-size", "3", "--all", "-o", "ndjson"],
    ["stream", "get", "café-été", "-o", "json"],
    ["stream", "get", "account-", "-o", "json"],
    ["stream", "get", "ledger", "--position", "999"],
    ["stream", "get", "no-such-stream", "-o", "json"],
    ["stream", "get", "no-such-stream", "-o", "table"],
    ["stream", "last", "account-4", "-o", "json"],
    ["stream", "last", "account-4", "--type", "Opened", "-o", "raw"],
    ["stream", "last", "account-4", "--type", "Nope", "-o", "json"],
    ["stream", "last", "no-such-stream"],
    ["stream", "last", "order-1", "-o", "table"],
    ["stream", "version", "account-5", "-o", "json"],
    ["stream", "version", "account-5", "-o", "table"],
    ["stream", "version", "no-such-stream", "-o", "json"],
    ["stream", "version", "no-such-stream", "-o", "table"],
    ["category", "get", "account", "-o", "ndjson"],
    ["category", "get", "account", "-o", "raw"],
    ["category", "get", "account", "-o", "table"],
    ["category", "get", "account", "--position", "50", "--batch-size", "7", "-o", "json"],
    ["category", "get", "account", "--member", "0", "--size", "3", "-o", "ndjson"],
    ["category", "get", "account", "--member", "2", "--size", "3", "--all", "--batch-size", "5",
     "-o", "raw"],
    ["category", "get", "account", "--correlation", "workflow", "-o", "ndjson"],
    ["category", "get", "account", "--correlation", "workflow", "--member", "1", "--size", "2"],
    ["category", "get", "", "--batch-size", "25", "-o", "raw"],
    ["category", "get", "", "--all", "--batch-size", "64", "-o", "ndjson"],
    ["category", "get", "ledger", "-o", "json"],
    ["category", "get", "café", "-o", "json"],
    ["category", "get", "nothing-here", "-o", "json"],
    ["category", "get", "nothing", "-o", "table"],
    ["ns", "streams", "-o", "json"],
    ["ns", "streams", "--prefix", "account-", "--limit", "3", "-o", "ndjson"],
    ["ns", "streams", "--limit", "2", "--all", "-o", "ndjson"],
    ["ns", "streams", "--cursor", "account-8", "-o", "table"],
    ["ns", "categories", "-o", "json"],
    ["ns", "categories", "-o", "table"],
    # errors decided by the client or the data: the same message and exit code
    ["category", "get", "account", "--member", "3", "--size", "3"],
    ["category", "get", "account", "--member", "1"],
    ["stream", "get", "account-1", "--batch-size", "0"],
    ["stream", "get", "account-1", "--position", "1", "--global-position", "1"],
    ["write", "account-1", "-t", "T", "--expected-version", "0"],
    ["write", "account-1", "-t", "T", "--expected-version", "-1", "-o", "json"],
    ["write", "account-1", "-t", "T", "-d", "[1]"],
    ["write", "account-1", "-t", "T", "--id", "not-a-uuid"],
    ["write", "account-1", "-t", "T", "--id", str(uuid.UUID(int=5))],  # an existing id
]


def _run(run, args, target):
    r = run(*args, *target)
    return r.exit_code, r.stdout, r.stderr


@pytest.mark.parametrize("args", READ_CASES, ids=lambda a: " ".join(a) or "''")
def test_same_output_local_and_server(cli, targets, args):
    local, remote = targets
    a = _run(cli, args, local)
    b = _run(cli, args, remote)
    assert a == b
    assert "Traceback" not in a[2]


@pytest.mark.parametrize("args", [
    ["stream", "get", "account-1", "-o", "json"],
    ["category", "get", "account", "--member", "1", "--size", "4", "-o", "raw"],
    ["stream", "last", "café-été"],
    ["write", "order-1", "-t", "T", "--expected-version", "5"],
], ids=lambda a: " ".join(a))
def test_same_output_through_the_executable(exe, targets, args):
    local, remote = targets
    assert _run(exe, args, local) == _run(exe, args, remote)


def test_same_output_with_the_target_in_the_environment(cli, targets):
    local, remote = targets
    env_local = {"EVENTODB_STORE": local[1]}
    env_remote = {"EVENTODB_URL": remote[1], "EVENTODB_TOKEN": remote[3]}
    args = ["category", "get", "order", "-o", "json"]
    a = cli(*args, env=env_local)
    b = cli(*args, env=env_remote)
    assert (a.exit_code, a.stdout, a.stderr) == (b.exit_code, b.stdout, b.stderr)
    assert a.exit_code == 0 and len(a.json()) > 5


def test_writes_give_the_same_positions(cli, server, tmp_path):
    """Fresh targets with the same data; the same writes (fixed ids) print the same positions,
    and the streams read back the same apart from the write times."""
    records = dataset()[:60]
    path = str(tmp_path / "w.db")
    with LocalStore(path, create=True) as local:
        local.import_records(records)
    with RemoteStore(server.url, server.token) as admin:
        token = admin.ns_create("parity-w-" + uuid.uuid4().hex[:8])["token"]
    with RemoteStore(server.url, token) as remote:
        list(remote.import_stream((to_record_line(m) + "\n").encode() for m in records))
    local, remote = ["--store", path], ["--url", server.url, "--token", token]
    lines = [json.dumps({"stream": f"w-{i % 3}", "type": "Bulk", "data": {"i": i},
                         "id": str(uuid.UUID(int=10_000 + i))}) for i in range(30)]
    f = tmp_path / "w.ndjson"
    f.write_text("\n".join(lines) + "\n")
    cases = [
        ["write", "account-1", "-t", "Deposited", "-d", '{"amount":1}', "--id",
         str(uuid.UUID(int=9001)), "-o", "json"],
        ["write", "account-1", "-t", "Deposited", "-d", '{"amount":2}', "--id",
         str(uuid.UUID(int=9002)), "--expected-version", "-1"],
        ["write", "new-1", "-t", "Opened", "-m", '{"a":"ü"}', "--id", str(uuid.UUID(int=9003)),
         "--expected-version", "-1", "-o", "table"],
        ["write", "new-1", "-t", "Again", "--id", str(uuid.UUID(int=9003))],  # duplicate id
        ["stream", "version", "account-1", "-o", "json"],
        ["stream", "version", "new-1", "-o", "json"],
    ]
    for args in cases:
        assert _run(cli, args, local) == _run(cli, args, remote), args
    a = cli("write", "--file", str(f), "--concurrency", "1", "-o", "json", *local)
    b = cli("write", "--file", str(f), "--concurrency", "1", "-o", "json", *remote)
    assert a.exit_code == b.exit_code == 0, (a, b)
    ja, jb = a.json(), b.json()
    ja.pop("seconds"), jb.pop("seconds")  # wall time: the one field that differs
    assert ja == jb
    for args in (["stream", "get", "w-1", "-o", "ndjson"], ["category", "get", "w", "-o", "raw"]):
        ra, rb = cli(*args, *local), cli(*args, *remote)
        strip = [(m["id"], m["streamName"], m["position"], m["globalPosition"], m["data"])
                 for m in (ra.ndjson() if "ndjson" in args else
                           [dict(zip(["id", "streamName", "type", "position",
                                      "globalPosition", "data"], x)) for x in ra.ndjson()])]
        strip_b = [(m["id"], m["streamName"], m["position"], m["globalPosition"], m["data"])
                   for m in (rb.ndjson() if "ndjson" in args else
                             [dict(zip(["id", "streamName", "type", "position",
                                        "globalPosition", "data"], x)) for x in rb.ndjson()])]
        assert strip == strip_b and len(strip) >= 10


# --- the third target: Message DB on PostgreSQL (issue 11) -----------------------------------
# Message DB keeps times to the microsecond, so the three-target dataset has microsecond times.
MDB_CASES = READ_CASES


def dataset_us() -> list[Message]:
    return [m._replace(time=m.time // 1000 * 1000) for m in dataset()]


@pytest.fixture(scope="module")
def targets3(server, messagedb, tmp_path_factory):
    """(local, server, Message DB) args: the same records behind all three."""
    from eventodb_cli.store.postgres import PostgresStore

    records = dataset_us()
    path = str(tmp_path_factory.mktemp("parity3") / "local.db")
    with LocalStore(path, create=True) as local:
        assert local.import_records(records) == len(records)
    with RemoteStore(server.url, server.token) as admin:
        token = admin.ns_create("parity3-" + uuid.uuid4().hex[:8])["token"]
    with RemoteStore(server.url, token) as remote:
        events = list(remote.import_stream(
            (to_record_line(m) + "\n").encode() for m in records))
    assert events[-1].get("done") is True, events
    url = messagedb.url(messagedb.create_db())
    with PostgresStore(url) as mdb:
        assert mdb.import_records(records) == len(records)
    return ["--store", path], ["--url", server.url, "--token", token], ["--url", url]


@pytest.mark.parametrize("args", MDB_CASES, ids=lambda a: " ".join(a) or "''")
def test_same_output_local_server_and_message_db(cli, targets3, args):
    local, remote, mdb = targets3
    a = _run(cli, args, local)
    assert _run(cli, args, remote) == a
    assert _run(cli, args, mdb) == a


def test_writes_give_the_same_positions_on_message_db(cli, messagedb, tmp_path):
    """The same writes (fixed ids) on a local store and on Message DB print the same positions
    and the same errors, single and --file, and read back the same apart from write times."""
    from eventodb_cli.store.postgres import PostgresStore

    records = dataset_us()[:60]
    path = str(tmp_path / "w.db")
    with LocalStore(path, create=True) as local:
        local.import_records(records)
    url = messagedb.url(messagedb.create_db())
    with PostgresStore(url) as mdb:
        mdb.import_records(records)
    local, mdb = ["--store", path], ["--url", url]
    lines = [json.dumps({"stream": f"w-{i % 3}", "type": "Bulk", "data": {"i": i},
                         "id": str(uuid.UUID(int=10_000 + i))}) for i in range(30)]
    f = tmp_path / "w.ndjson"
    f.write_text("\n".join(lines) + "\n")
    cases = [
        ["write", "account-1", "-t", "Deposited", "-d", '{"amount":1}', "--id",
         str(uuid.UUID(int=9001)), "-o", "json"],
        ["write", "account-1", "-t", "Deposited", "-d", '{"amount":2}', "--id",
         str(uuid.UUID(int=9002)), "--expected-version", "-1"],
        ["write", "new-1", "-t", "Opened", "-m", '{"a":"ü"}', "--id", str(uuid.UUID(int=9003)),
         "--expected-version", "-1", "-o", "table"],
        ["stream", "version", "account-1", "-o", "json"],
        ["stream", "version", "new-1", "-o", "json"],
    ]
    for args in cases:
        assert _run(cli, args, local) == _run(cli, args, mdb), args
    a = cli("write", "--file", str(f), "--concurrency", "1", "-o", "json", *local)
    b = cli("write", "--file", str(f), "--concurrency", "1", "-o", "json", *mdb)
    assert a.exit_code == b.exit_code == 0, (a, b)
    ja, jb = a.json(), b.json()
    ja.pop("seconds"), jb.pop("seconds")
    assert ja == jb
    # a duplicate id: the same one-line error and exit code. Last, because a PostgreSQL
    # sequence is not transactional: the failed INSERT used up a global position (a gap)
    dup = ["write", "new-1", "-t", "Again", "--id", str(uuid.UUID(int=9003))]
    assert _run(cli, dup, local) == _run(cli, dup, mdb)
    strip = ("id", "streamName", "type", "position", "globalPosition", "data", "metadata")
    for args in (["stream", "get", "w-1", "-o", "ndjson"], ["category", "get", "w", "-o",
                                                            "ndjson"]):
        ra, rb = cli(*args, *local), cli(*args, *mdb)
        got_a = [tuple(m[k] for k in strip) for m in ra.ndjson()]
        assert got_a == [tuple(m[k] for k in strip) for m in rb.ndjson()] and len(got_a) >= 10
