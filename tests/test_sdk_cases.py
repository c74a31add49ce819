"""EventoDB's client conformance cases (shared/SDK-CASES.md), one test per case ID, run through
RemoteStore (and the CLI where natural) against a real ``eventodb serve``.

Where PROTOCOL.md (what the server code does) contradicts a case, the test checks what the
server really does and says so in its docstring; docs/sdk-cases.md has the table.
"""

from __future__ import annotations

import json
import re
import threading
import time
import uuid

import httpx
import pytest

from conftest import free_port, make_token, start_server
from eventodb_cli.domain.hashing import member_for
from eventodb_cli.domain.message import new_message
from eventodb_cli.errors import (EventoError, NotFound, Unreachable, UsageError,
                                 VersionConflict)
from eventodb_cli.store.remote import RemoteStore

UUID_RE = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
TIME_RE = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,9})?Z$")


@pytest.fixture
def admin(server):
    with RemoteStore(server.url, server.token) as s:
        yield s


@pytest.fixture
def rs(admin, server):
    """A RemoteStore on a fresh namespace (no case sees another's messages)."""
    info = admin.ns_create("sdk-" + uuid.uuid4().hex[:12])
    with RemoteStore(server.url, info["token"]) as s:
        s.ns_id = info["namespace"]
        s.token_ = info["token"]
        yield s


def w(rs, stream, type="T", data=None, metadata=None, **kw):
    return rs.write(new_message(stream, type, {} if data is None else data, metadata, **kw))


def cli_target(rs, server):
    return ["--url", server.url, "--token", rs.token_]


# --- WRITE ----------------------------------------------------------------------------------------
def test_WRITE_001_minimal(rs):
    r = rs.rpc("stream.write", "test-1", {"type": "T", "data": {}})
    assert set(r) == {"position", "globalPosition"}
    assert r["position"] >= 0 and r["globalPosition"] >= 0


def test_WRITE_002_with_metadata(rs):
    meta = {"correlationStreamName": "workflow-1", "n": [1, 2, {"x": None}]}
    res = w(rs, "test-2", metadata=meta)
    assert res.position == 0
    assert rs.stream_get("test-2")[0].metadata_obj == meta


def test_WRITE_003_custom_id(rs, cli, server):
    mid = str(uuid.uuid4())
    w(rs, "test-3", id=mid)
    assert rs.stream_get("test-3")[0].id == mid
    mid2 = str(uuid.uuid4())
    r = cli("write", "test-3", "-t", "T", "--id", mid2, "-o", "json", *cli_target(rs, server))
    assert r.json() == {"position": 1, "globalPosition": 2}
    assert rs.stream_last("test-3").id == mid2


def test_WRITE_004_expected_version_success(rs):
    w(rs, "test-4"), w(rs, "test-4")
    assert w(rs, "test-4", expected_version=1).position == 2


def test_WRITE_005_expected_version_conflict(rs, cli, server):
    w(rs, "test-5"), w(rs, "test-5")
    with pytest.raises(VersionConflict) as ei:
        w(rs, "test-5", expected_version=5)
    e = ei.value
    assert (e.code, e.expected, e.actual, e.exit_code) == ("STREAM_VERSION_CONFLICT", 5, 1, 3)
    r = cli("write", "test-5", "-t", "T", "--expected-version", "0", *cli_target(rs, server))
    assert r.exit_code == 3
    assert r.stderr == "eventodb: error: Expected version 0, stream is at version 1\n"


def test_WRITE_006_sequential_writes(rs):
    res = [w(rs, "test-6", data={"i": i}) for i in range(5)]
    assert [r.position for r in res] == [0, 1, 2, 3, 4]
    g = [r.global_position for r in res]
    assert g == sorted(g) and len(set(g)) == 5


def test_WRITE_007_stream_with_id(rs):
    w(rs, "account-abc123")
    assert rs.stream_get("account-abc123")[0].stream_name == "account-abc123"
    assert rs.category_get("account")[0].stream_name == "account-abc123"


def test_WRITE_008_empty_data(rs):
    w(rs, "test-8", data={})
    m = rs.stream_get("test-8")[0]
    assert m.data_obj == {} and m.data == "{}"


def test_WRITE_009_null_metadata(rs, cli, server):
    """PROTOCOL.md 11.3 contradicts the case: the server answers ``metadata: null`` with 400
    INVALID_REQUEST. The client never sends null: metadata left out is stored as null."""
    with pytest.raises(UsageError) as ei:
        rs.rpc("stream.write", "test-9", {"type": "T", "data": {}, "metadata": None})
    assert ei.value.code == "INVALID_REQUEST"
    assert "message.metadata must be an object" in ei.value.message
    w(rs, "test-9", metadata=None)
    r = cli("write", "test-9", "-t", "T", "--metadata", "null", *cli_target(rs, server))
    assert r.exit_code == 0, r
    assert [m.metadata for m in rs.stream_get("test-9")] == [None, None]
    assert rs.rpc("stream.get", "test-9")[0][5] is None


def test_WRITE_010_without_authentication(server, cli):
    with RemoteStore(server.url, None) as anon:
        with pytest.raises(Unreachable) as ei:
            w(anon, "test-10")
    assert ei.value.code == "AUTH_REQUIRED" and ei.value.exit_code == 5
    r = cli("write", "test-10", "-t", "T", "--url", server.url)
    assert r.exit_code == 5 and "AUTH_REQUIRED" in r.stderr


# --- READ -----------------------------------------------------------------------------------------
def test_READ_001_empty_stream(rs):
    assert rs.stream_get("nothing-1") == []
    assert rs.rpc("stream.get", "nothing-1") == []


def test_READ_002_single_message(rs):
    res = w(rs, "read-2", "Opened", {"a": 1}, {"m": 2})
    item = rs.rpc("stream.get", "read-2")[0]
    assert len(item) == 7
    mid, mtype, pos, gpos, data, meta, t = item
    assert UUID_RE.match(mid) and mtype == "Opened"
    assert (pos, gpos, data, meta) == (0, res.global_position, {"a": 1}, {"m": 2})
    assert TIME_RE.match(t)


def test_READ_003_multiple_messages(rs):
    for i in range(5):
        w(rs, "read-3", data={"i": i})
    assert [m.position for m in rs.stream_get("read-3")] == [0, 1, 2, 3, 4]


def test_READ_004_position_filter(rs, cli, server):
    for i in range(10):
        w(rs, "read-4", data={"i": i})
    assert [m.position for m in rs.stream_get("read-4", position=5)] == [5, 6, 7, 8, 9]
    r = cli("stream", "get", "read-4", "--position", "5", "-o", "ndjson",
            *cli_target(rs, server))
    assert [m["position"] for m in r.ndjson()] == [5, 6, 7, 8, 9]


def test_READ_005_global_position_filter(rs):
    """The case's absolute numbers (102, 103) depend on its fixture; here: the stream's
    messages at or after a global position, interleaved with another stream's."""
    gp = []
    for i in range(4):
        gp.append(w(rs, "read-5").global_position)
        w(rs, "other-5")
    got = rs.stream_get("read-5", global_position=gp[2])
    assert [m.global_position for m in got] == gp[2:]


def test_READ_006_batch_size_limit(rs):
    for i in range(20):
        w(rs, "read-6")
    got = rs.stream_get("read-6", batch_size=10)
    assert [m.position for m in got] == list(range(10))


def test_READ_007_batch_size_unlimited(rs):
    msgs = [new_message("read-7", "T", {"i": i}) for i in range(50)]
    rs.write_batch(msgs)
    assert len(rs.stream_get("read-7", batch_size=None)) == 50
    assert len(rs.rpc("stream.get", "read-7", {"batchSize": -1})) == 50


def test_READ_008_data_integrity(rs):
    data = {"s": "x", "n": 12.5, "i": -3, "b": True, "z": None, "a": [1, [2, {"c": "d"}]],
            "o": {"deep": {"deeper": {"deepest": "é"}}}}
    w(rs, "read-8", data=data)
    assert rs.stream_get("read-8")[0].data_obj == data
    assert rs.rpc("stream.get", "read-8")[0][4] == data


def test_READ_009_metadata_integrity(rs):
    meta = {"correlationStreamName": "x-1", "causationMessageId": str(uuid.uuid4()),
            "tags": ["a", "b"], "n": 0}
    w(rs, "read-9", metadata=meta)
    assert rs.stream_get("read-9")[0].metadata_obj == meta


def test_READ_010_timestamp_format(rs):
    """PROTOCOL.md 4: the case's nine fraction digits are not what servers send. Go's
    RFC3339Nano drops trailing zeros (the SQLite backend sends whole seconds). eventodb serve
    keeps nanoseconds and sends 0-9 digits, so the client accepts 0-9 digits."""
    before = time.time_ns()
    w(rs, "read-10")
    after = time.time_ns()
    t = rs.rpc("stream.get", "read-10")[0][6]
    assert TIME_RE.match(t), t
    m = rs.stream_get("read-10")[0]
    assert before - 1_000_000 <= m.time <= after + 1_000_000  # UTC, sub-second precision kept
    assert m.time_str == t


# --- LAST / VERSION -------------------------------------------------------------------------------
def test_LAST_001_non_empty_stream(rs):
    for i in range(5):
        w(rs, "last-1", data={"i": i})
    m = rs.stream_last("last-1")
    assert (m.position, m.data_obj) == (4, {"i": 4})


def test_LAST_002_empty_stream(rs, cli, server):
    assert rs.stream_last("last-2") is None
    r = cli("stream", "last", "last-2", "-o", "json", *cli_target(rs, server))
    assert r.stdout == "null\n"


def test_LAST_003_filtered_by_type(rs):
    for t in ["TypeA", "TypeB", "TypeA", "TypeB", "TypeA"]:
        w(rs, "last-3", t)
    assert rs.stream_last("last-3", type="TypeB").position == 3


def test_LAST_004_type_no_match(rs):
    w(rs, "last-4", "TypeA")
    assert rs.stream_last("last-4", type="TypeZ") is None


def test_VERSION_001_non_existent_stream(rs, cli, server):
    assert rs.stream_version("version-1") is None
    r = cli("stream", "version", "version-1", "-o", "json", *cli_target(rs, server))
    assert r.stdout == "null\n"


def test_VERSION_002_stream_with_messages(rs):
    for _ in range(3):
        w(rs, "version-2")
    assert rs.stream_version("version-2") == 2


def test_VERSION_003_after_write(rs):
    w(rs, "version-3")
    assert rs.stream_version("version-3") == 0
    w(rs, "version-3")
    assert rs.stream_version("version-3") == 1


# --- CATEGORY -------------------------------------------------------------------------------------
def test_CATEGORY_001_read_category(rs):
    for s in ("cat1-1", "cat1-2", "cat1-3"):
        w(rs, s)
    assert {m.stream_name for m in rs.category_get("cat1")} == {"cat1-1", "cat1-2", "cat1-3"}


def test_CATEGORY_002_position_filter(rs):
    """Absolute positions of the case (110, 115) depend on its fixture: same rule here."""
    gp = [w(rs, f"cat2-{i % 3}").global_position for i in range(8)]
    got = rs.category_get("cat2", position=gp[5])
    assert [m.global_position for m in got] == gp[5:]


def test_CATEGORY_003_batch_size(rs):
    rs.write_batch([new_message(f"cat3-{i % 4}", "T", {}) for i in range(15)])
    assert len(rs.category_get("cat3", batch_size=10)) == 10


def test_CATEGORY_004_message_format(rs):
    res = w(rs, "cat4-x", "Opened", {"a": 1})
    item = rs.rpc("category.get", "cat4")[0]
    assert len(item) == 8
    assert item[1:7] == ["cat4-x", "Opened", 0, res.global_position, {"a": 1}, None]
    assert UUID_RE.match(item[0]) and TIME_RE.match(item[7])


def test_CATEGORY_005_consumer_group(rs, cli, server):
    streams = [f"cat5-{i}" for i in range(12)] + ["cat5-3+retry"]
    for s in streams:
        w(rs, s)
    seen = []
    for member in range(3):
        got = rs.category_get("cat5", member=member, size=3)
        assert {m.stream_name for m in got} == {s for s in streams
                                                if member_for(s, 3) == member}
        seen += [m.stream_name for m in got]
        r = cli("category", "get", "cat5", "--member", member, "--size", 3, "-o", "ndjson",
                *cli_target(rs, server))
        assert [m["streamName"] for m in r.ndjson()] == [m.stream_name for m in got]
    assert sorted(seen) == sorted(streams)  # a partition: each stream exactly once
    assert member_for("cat5-3+retry", 3) == member_for("cat5-3", 3)


def test_CATEGORY_006_correlation_filter(rs):
    """eventodb serve keeps Message DB's rule: category(correlationStreamName) == correlation
    (the Go SQLite backend's LIKE 'c-%' gives the same answer here)."""
    w(rs, "cat6-1", metadata={"correlationStreamName": "test-1"})
    w(rs, "cat6-2", metadata={"correlationStreamName": "other-2"})
    w(rs, "cat6-3")
    got = rs.category_get("cat6", correlation="test")
    assert [m.stream_name for m in got] == ["cat6-1"]
    assert "correlation" in json.dumps(["category.get", "cat6", {"correlation": "test"}])


def test_CATEGORY_007_empty_category(rs):
    assert rs.category_get("nothing7") == []


def test_CATEGORY_008_global_position_ordering(rs):
    rs.write_batch([new_message(f"cat8-{i % 5}", "T", {"i": i}) for i in range(30)])
    g = [m.global_position for m in rs.category_get("cat8")]
    assert g == sorted(g) and len(g) == 30


# --- NS -------------------------------------------------------------------------------------------
def test_NS_001_create_namespace(admin, cli, server):
    name = "ns1-" + uuid.uuid4().hex[:8]
    info = admin.ns_create(name, description="one")
    assert set(info) >= {"namespace", "token", "createdAt"}
    assert info["namespace"] == name and info["token"].startswith("ns_")
    r = cli("ns", "create", name + "b", "-o", "json", "--url", server.url, "--token",
            server.token)
    assert r.exit_code == 0 and r.json()["token"].startswith("ns_")


def test_NS_002_custom_token(admin):
    name = "ns2-" + uuid.uuid4().hex[:8]
    tok = make_token(name)
    assert admin.ns_create(name, token=tok)["token"] == tok
    with RemoteStore(admin.url, tok) as s:
        assert s.stream_version("x-1") is None  # the token works


def test_NS_003_duplicate_namespace(admin, cli, server):
    name = "ns3-" + uuid.uuid4().hex[:8]
    admin.ns_create(name)
    with pytest.raises(EventoError) as ei:
        admin.ns_create(name)
    assert ei.value.code == "NAMESPACE_EXISTS"
    r = cli("ns", "create", name, "--url", server.url, "--token", server.token)
    assert r.exit_code == 1 and "NAMESPACE_EXISTS" in r.stderr


def test_NS_004_delete_namespace(admin):
    name = "ns4-" + uuid.uuid4().hex[:8]
    admin.ns_create(name)
    d = admin.ns_delete(name)
    assert set(d) >= {"namespace", "deletedAt", "messagesDeleted"} and d["namespace"] == name


def test_NS_005_delete_missing_namespace(admin, cli, server):
    with pytest.raises(NotFound) as ei:
        admin.ns_delete("ns5-missing-" + uuid.uuid4().hex[:6])
    assert ei.value.code == "NAMESPACE_NOT_FOUND"
    r = cli("ns", "delete", "ns5-nope", "--yes", "--url", server.url, "--token", server.token)
    assert r.exit_code == 4


def test_NS_006_list_namespaces(admin, rs):
    rows = admin.ns_list()
    assert all({"namespace", "description", "createdAt", "messageCount"} <= set(r)
               for r in rows)
    assert {"default", rs.ns_id} <= {r["namespace"] for r in rows}


def test_NS_007_namespace_info(rs, cli, server):
    for i in range(5):
        w(rs, f"info-{i}")
    assert rs.ns_info(rs.ns_id)["messageCount"] == 5
    assert rs.message_count() == 5
    r = cli("ns", "info", "-o", "json", *cli_target(rs, server))
    assert r.json()["messageCount"] == 5 and r.json()["namespace"] == rs.ns_id


def test_NS_008_info_missing_namespace(admin, cli, server):
    with pytest.raises(NotFound) as ei:
        admin.ns_info("ns8-missing")
    assert ei.value.code == "NAMESPACE_NOT_FOUND"
    r = cli("ns", "info", "ns8-missing", "--url", server.url, "--token", server.token)
    assert r.exit_code == 4


# --- SYS ------------------------------------------------------------------------------------------
def test_SYS_001_server_version(rs, cli, server):
    v = rs.rpc("sys.version")
    assert re.match(r"^\d+\.\d+\.\d+", v)
    assert rs.server_version()["version"] == v
    r = cli("server", "version", "--url", server.url, "-o", "table")
    assert r.stdout.strip() == v


def test_SYS_002_server_health(rs, cli, server):
    assert rs.rpc("sys.health")["status"] == "ok"
    assert rs.server_health() == {"status": "ok"}
    r = cli("server", "health", "--url", server.url, "-o", "json")
    assert r.exit_code == 0 and r.json() == {"status": "ok"}


# --- AUTH -----------------------------------------------------------------------------------------
def test_AUTH_001_valid_token(rs):
    assert w(rs, "auth-1").position == 0


def test_AUTH_002_missing_token(server, cli):
    with RemoteStore(server.url, None) as anon, pytest.raises(Unreachable) as ei:
        anon.stream_get("auth-2")
    assert ei.value.code == "AUTH_REQUIRED"
    r = cli("stream", "get", "auth-2", "--url", server.url)
    assert r.exit_code == 5 and "AUTH_REQUIRED" in r.stderr


def test_AUTH_003_invalid_token_format(server):
    with RemoteStore(server.url, "not-a-token") as bad, pytest.raises(Unreachable) as ei:
        bad.stream_get("auth-3")
    assert ei.value.code == "AUTH_INVALID_TOKEN"  # the doc's AUTH_INVALID (PROTOCOL.md 1)


def test_AUTH_004_namespace_isolation(rs, admin, server):
    w(rs, "secret-1", data={"s": 1})
    assert admin.stream_get("secret-1") == []
    assert admin.category_get("secret") == []
    other = make_token(rs.ns_id)  # right namespace, wrong secret
    with RemoteStore(server.url, other) as s, pytest.raises(Unreachable) as ei:
        s.stream_get("secret-1")
    assert ei.value.code == "AUTH_UNAUTHORIZED"


# --- ERROR ----------------------------------------------------------------------------------------
def test_ERROR_001_invalid_method(rs):
    with pytest.raises(EventoError) as ei:
        rs.rpc("stream.nope", "x")
    assert ei.value.code == "METHOD_NOT_FOUND"


def test_ERROR_002_missing_required_argument(rs, cli, server):
    with pytest.raises(UsageError) as ei:
        rs.rpc("stream.get")
    assert ei.value.code == "INVALID_REQUEST"
    r = cli("stream", "get", *cli_target(rs, server))
    assert r.exit_code == 2  # the CLI checks it before any request


def test_ERROR_003_invalid_stream_name_type(rs):
    with pytest.raises(UsageError, match="streamName must be a non-empty string"):
        rs.rpc("stream.get", 123)
    with pytest.raises(ValueError, match="streamName must be a non-empty string"):
        new_message(123, "T", {})  # the client validates before sending


def test_ERROR_004_connection_refused():
    s = RemoteStore(f"http://127.0.0.1:{free_port()}", None, backoff=0.01)
    with pytest.raises(Unreachable, match="cannot connect to .*Connection refused"):
        s.stream_get("x")


def _mock(handler):
    return RemoteStore("http://evento.test", None, backoff=0.001, retries=1,
                       transport=httpx.MockTransport(handler))


def test_ERROR_005_malformed_json():
    """More in test_faults.py (a real socket server)."""
    s = _mock(lambda r: httpx.Response(200, content=b"{not json"))
    with pytest.raises(EventoError, match="malformed JSON in the server's answer"):
        s.stream_version("x")


def test_ERROR_006_network_timeout():
    """More in test_faults.py (a real server that never answers, --timeout on the CLI)."""
    def hang(request):
        raise httpx.ReadTimeout("timed out")

    s = _mock(hang)
    s.timeout = 0.2
    with pytest.raises(Unreachable, match="no answer from .* within 0.2 s"):
        s.stream_version("x")


def test_ERROR_007_http_error_status(rs):
    s = _mock(lambda r: httpx.Response(500, json={"error": {"code": "INTERNAL_ERROR",
                                                            "message": "boom"}}))
    with pytest.raises(EventoError) as ei:
        s.stream_version("x")
    assert ei.value.code == "INTERNAL_ERROR" and ei.value.http_status == 500
    assert ei.value.exit_code == 1


# --- ENCODING -------------------------------------------------------------------------------------
def roundtrip(rs, stream, data=None, metadata=None):
    w(rs, stream, data=data, metadata=metadata)
    m = rs.stream_get(stream)[-1]
    return m.data_obj, m.metadata_obj


def test_ENCODING_001_utf8_in_data(rs):
    data = {"t": "héllo wörld ✓ 日本語 𝄞 emoji 🎉", "rtl": "שלום", "esc": "<&>\u2028"}
    assert roundtrip(rs, "enc-1", data)[0] == data


def test_ENCODING_002_unicode_in_metadata(rs):
    meta = {"who": "Zoë", "ключ": "значение", "🎉": "🎊"}
    assert roundtrip(rs, "enc-2", {}, meta)[1] == meta


def test_ENCODING_003_special_characters_in_stream_name(rs):
    for s in ["enc3-with space", "enc3-a/b:c.d_e", "enc3-ü", "enc3-🎉", "enc3-x+y"]:
        w(rs, s)
        assert rs.stream_get(s)[0].stream_name == s
    assert len(rs.category_get("enc3")) == 5


def test_ENCODING_004_empty_strings(rs):
    data = {"e": "", "nested": {"e": ""}}
    assert roundtrip(rs, "enc-4", data, {"e": ""}) == (data, {"e": ""})


def test_ENCODING_005_booleans(rs):
    data, _ = roundtrip(rs, "enc-5", {"t": True, "f": False, "l": [True, False]})
    assert data["t"] is True and data["f"] is False and data["l"] == [True, False]


def test_ENCODING_006_nulls(rs):
    data, _ = roundtrip(rs, "enc-6", {"n": None, "o": {"n": None}, "l": [None]})
    assert "n" in data and data["n"] is None and data["o"] == {"n": None}
    assert data["l"] == [None]


def test_ENCODING_007_numbers(rs):
    src = {"i": 42, "neg": -7, "zero": 0, "f": 3.14159, "big": 9007199254740991,
           "exp": 1.5e300, "small": 1e-10}
    data, _ = roundtrip(rs, "enc-7", src)
    assert data == src
    assert isinstance(data["i"], int) and isinstance(data["f"], float)


def test_ENCODING_008_nested_objects(rs):
    src = {"a": {"b": {"c": {"d": {"e": {"f": [1, {"g": "h"}]}}}}}}
    assert roundtrip(rs, "enc-8", src)[0] == src


def test_ENCODING_009_arrays(rs):
    src = {"mixed": [1, "two", 3.5, True, None, {"k": "v"}, [1, [2]]], "empty": []}
    assert roundtrip(rs, "enc-9", src)[0] == src


def test_ENCODING_010_large_payload(rs, tmp_path):
    big = {"blob": "x" * (1024 * 1024), "n": list(range(1000))}
    assert roundtrip(rs, "enc-10", big)[0] == big
    # over the server's request limit: a clear error, not a hang or a traceback
    srv = start_server(tmp_path / "small", "--max-body-mib", "1")
    try:
        with RemoteStore(srv.url, srv.token) as s, pytest.raises(UsageError) as ei:
            w(s, "enc-10", data={"blob": "x" * (1536 * 1024)})
        assert "Request body too large" in ei.value.message
    finally:
        srv.stop()


# --- EDGE -----------------------------------------------------------------------------------------
def test_EDGE_001_batch_size_zero(rs, cli, server):
    """SQLite semantics (PROTOCOL.md 5): batchSize 0 means unlimited on the server. The CLI
    rejects --batch-size 0 (exit 2) and documents -1 for unlimited."""
    for _ in range(3):
        w(rs, "edge-1")
    assert len(rs.rpc("stream.get", "edge-1", {"batchSize": 0})) == 3
    assert cli("stream", "get", "edge-1", "--batch-size", "0",
               *cli_target(rs, server)).exit_code == 2


def test_EDGE_002_negative_position(rs):
    """The server reads from the start for a negative position (PROTOCOL.md 5)."""
    for _ in range(3):
        w(rs, "edge-2")
    assert [m[2] for m in rs.rpc("stream.get", "edge-2", {"position": -5})] == [0, 1, 2]
    assert len(rs.stream_get("edge-2", position=-1)) == 3


def test_EDGE_003_very_large_batch_size(rs):
    """PROTOCOL.md 5 contradicts the case: the server rejects batchSize > 10000 with
    INVALID_REQUEST instead of capping. RemoteStore pages such reads in 10000s, so callers get
    what they asked for."""
    for _ in range(5):
        w(rs, "edge-3")
    with pytest.raises(UsageError, match="batchSize must be <= 10000"):
        rs.rpc("stream.get", "edge-3", {"batchSize": 100000})
    assert len(rs.stream_get("edge-3", batch_size=100000)) == 5
    assert len(rs.category_get("edge", batch_size=100000)) == 5


def test_EDGE_004_stream_name_edge_cases(rs):
    ok = ["edge4", "edge4-", "edge4--x", "edge4-" + "n" * 500, "edge4-1+2+3", " edge4 -lead"]
    for s in ok:
        w(rs, s)
        assert rs.stream_version(s) == 0
    with pytest.raises(UsageError, match="streamName must be a non-empty string"):
        rs.rpc("stream.write", "", {"type": "T", "data": {}})
    with pytest.raises(ValueError):
        new_message("", "T", {})


def test_EDGE_005_concurrent_writes_same_stream(rs, server):
    results = []
    lock = threading.Lock()

    def writer(k):
        with RemoteStore(server.url, rs.token_) as s:
            for i in range(10):
                r = w(s, "edge-5", data={"k": k, "i": i})
                with lock:
                    results.append(r.position)

    threads = [threading.Thread(target=writer, args=(k,)) for k in range(5)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(results) == list(range(50))
    assert [m.position for m in rs.stream_get("edge-5")] == list(range(50))


def test_EDGE_006_position_beyond_end(rs):
    w(rs, "edge-6")
    assert rs.stream_get("edge-6", position=100) == []


def test_EDGE_007_expected_version_minus_one(rs):
    assert w(rs, "edge-7", expected_version=-1).position == 0
    with pytest.raises(VersionConflict) as ei:
        w(rs, "edge-7", expected_version=-1)
    assert (ei.value.expected, ei.value.actual) == (-1, 0)


def test_EDGE_008_expected_version_zero_on_new_stream(rs):
    with pytest.raises(VersionConflict) as ei:
        w(rs, "edge-8", expected_version=0)
    assert (ei.value.expected, ei.value.actual) == (0, -1)


# --- SSE ------------------------------------------------------------------------------------------
class Sub:
    """A subscription running in a thread: .pokes fills up; .connected is set on connect."""

    def __init__(self, store: RemoteStore, want: int, **opts):
        self.pokes: list[dict] = []
        self.connected = threading.Event()
        self.done = threading.Event()
        self.error: BaseException | None = None
        self.gen = store.pokes(**opts, on_connect=lambda n: self.connected.set())
        self.want = want
        threading.Thread(target=self._run, daemon=True).start()

    def _run(self):
        try:
            for p in self.gen:
                self.pokes.append(p)
                if len(self.pokes) >= self.want:
                    break
        except BaseException as e:  # noqa: BLE001
            self.error = e
        finally:
            self.done.set()

    def wait(self, timeout=20):
        assert self.done.wait(timeout), f"only {len(self.pokes)} pokes: {self.pokes}"
        if self.error:
            raise self.error
        return self.pokes


def sub(server, rs, want, **opts):
    s = Sub(RemoteStore(server.url, rs.token_), want, **opts)
    assert s.connected.wait(20)
    return s


def test_SSE_001_subscribe_to_stream(rs, server):
    s = sub(server, rs, 1, stream="sse1-a")
    res = w(rs, "sse1-a")
    assert s.wait() == [{"stream": "sse1-a", "position": 0,
                         "globalPosition": res.global_position}]


def test_SSE_002_subscribe_to_category(rs, server):
    s = sub(server, rs, 2, category="sse2")
    w(rs, "other-1")
    r1, r2 = w(rs, "sse2-1"), w(rs, "sse2-2")
    assert [(p["stream"], p["globalPosition"]) for p in s.wait()] == \
        [("sse2-1", r1.global_position), ("sse2-2", r2.global_position)]


def test_SSE_003_subscribe_with_position(rs, server, exe):
    for _ in range(5):
        w(rs, "sse3-a")
    s = sub(server, rs, 3, stream="sse3-a", position=3)
    w(rs, "sse3-a")
    assert [p["position"] for p in s.wait()] == [3, 4, 5]
    r = exe("subscribe", "--stream", "sse3-a", "--position", "4", "--count", "2",
            "--url", server.url, "--token", rs.token_)
    assert [p["position"] for p in r.ndjson()] == [4, 5] and r.exit_code == 0


def test_SSE_004_subscribe_without_authentication(server, cli):
    s = RemoteStore(server.url, None)
    with pytest.raises(Unreachable) as ei:
        next(s.pokes(stream="sse4-a"))
    assert ei.value.code == "AUTH_REQUIRED"
    r = cli("subscribe", "--stream", "x", "--url", server.url)
    assert r.exit_code == 5 and "AUTH_REQUIRED" in r.stderr


def test_SSE_005_consumer_group(rs, server):
    """Live pokes are filtered with Message DB's MD5 rule (eventodb serve does not copy the Go
    server's 31-multiplier hash, PROTOCOL.md 7)."""
    streams = [f"sse5-{i}" for i in range(10)]
    mine = [s for s in streams if member_for(s, 2) == 0]
    s = sub(server, rs, len(mine), category="sse5", member=0, size=2)
    for name in streams:
        w(rs, name)
    assert [p["stream"] for p in s.wait()] == mine


def test_SSE_006_multiple_subscriptions(rs, server):
    a = sub(server, rs, 2, stream="sse6-a")
    b = sub(server, rs, 1, stream="sse6-b")
    w(rs, "sse6-a"), w(rs, "sse6-b"), w(rs, "sse6-a")
    assert [p["stream"] for p in a.wait()] == ["sse6-a", "sse6-a"]
    assert [p["stream"] for p in b.wait()] == ["sse6-b"]


def test_SSE_007_reconnection(rs, server):
    """A proxy cuts the connection after every 2 pokes; full coverage in test_faults.py."""
    from test_faults import CuttingProxy

    proxy = CuttingProxy(int(server.url.rsplit(":", 1)[1]), n=2)
    s = Sub(RemoteStore(proxy.url, rs.token_, backoff=0.02), 9, stream="sse7-a")
    assert s.connected.wait(20)
    for _ in range(9):
        w(rs, "sse7-a")
        time.sleep(0.02)
    assert [p["position"] for p in s.wait(30)] == list(range(9))
    assert proxy.cuts >= 1
    proxy.close()


def test_SSE_008_poke_parsing(rs, server):
    s = sub(server, rs, 1, category="sse8")
    w(rs, "sse8-1")
    (p,) = s.wait()
    assert list(p) == ["stream", "position", "globalPosition"]
    assert isinstance(p["stream"], str) and isinstance(p["position"], int) \
        and isinstance(p["globalPosition"], int)


def test_SSE_009_multiple_consumers_same_group(rs, server):
    streams = [f"sse9-{i}" for i in range(12)]
    parts = [[s for s in streams if member_for(s, 3) == m] for m in range(3)]
    subs = [sub(server, rs, len(parts[m]), category="sse9", member=m, size=3)
            for m in range(3)]
    for name in streams:
        w(rs, name)
    got = [[p["stream"] for p in s.wait()] for s in subs]
    assert got == parts
    assert sorted(sum(got, [])) == sorted(streams)  # disjoint and complete
