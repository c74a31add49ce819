"""``eventodb serve`` /rpc against a real process: every method's success and error shapes
(status, code, exact message), the envelope, 404/405, body limit, headers and JSON format."""

from __future__ import annotations

import json
import re
import uuid

import httpx
import pytest

from conftest import start_server


@pytest.fixture(scope="module")
def srv(tmp_path_factory):
    """A server of this module's own (ns.list counts and namespaces stay predictable)."""
    s = start_server(tmp_path_factory.mktemp("serve-rpc") / "data", "--max-body-mib", "1")
    yield s
    s.stop()


@pytest.fixture(scope="module")
def client(srv):
    with httpx.Client(base_url=srv.url, headers={"Authorization": f"Bearer {srv.token}"},
                      timeout=30) as c:
        yield c


def call(client, *req):
    r = client.post("/rpc", content=json.dumps(list(req)))
    return r.status_code, r.json()


def err(client, *req):
    status, body = call(client, *req)
    return status, body["error"]["code"], body["error"]["message"]


def sname(prefix="acct"):
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


RFC3339NANO = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{1,9})?Z$")


# --- stream.write ------------------------------------------------------------------------------
def test_write_minimal_returns_sorted_positions(client):
    s = sname()
    r = client.post("/rpc", content=json.dumps(["stream.write", s, {"type": "A", "data": {}}]))
    assert r.status_code == 200
    assert r.headers["content-type"] == "application/json"
    assert r.headers["server"] == "EventoDB/0.1.0"
    body = r.text
    assert body.endswith("\n")
    assert re.fullmatch(r'\{"globalPosition":\d+,"position":0\}\n', body)


def test_write_positions_sequential_and_expected_version(client):
    s = sname()
    gps = []
    for i in range(3):
        status, res = call(client, "stream.write", s, {"type": "A", "data": {"i": i}})
        assert status == 200 and res["position"] == i
        gps.append(res["globalPosition"])
    assert gps == sorted(gps) and len(set(gps)) == 3
    status, res = call(client, "stream.write", s, {"type": "A", "data": {}},
                       {"expectedVersion": 2})
    assert status == 200 and res["position"] == 3
    # float versions are truncated toward zero like the Go server's int64(float64)
    status, res = call(client, "stream.write", s, {"type": "A", "data": {}},
                       {"expectedVersion": 3.9})
    assert status == 200 and res["position"] == 4


def test_write_version_conflict_shape(client):
    s = sname()
    call(client, "stream.write", s, {"type": "A", "data": {}})
    r = client.post("/rpc", content=json.dumps(
        ["stream.write", s, {"type": "A", "data": {}}, {"expectedVersion": 5}]))
    assert r.status_code == 409
    assert r.text == ('{"error":{"code":"STREAM_VERSION_CONFLICT","message":"Expected version 5, '
                      'stream is at version 0","details":{"actual":0,"expected":5}}}\n')


def test_write_expected_version_edge_cases(client):
    s = sname()
    # EDGE-008: 0 on a new stream conflicts (version is -1)
    status, body = call(client, "stream.write", s, {"type": "A", "data": {}},
                        {"expectedVersion": 0})
    assert status == 409 and body["error"]["details"] == {"actual": -1, "expected": 0}
    # EDGE-007: -1 = must not exist
    assert call(client, "stream.write", s, {"type": "A", "data": {}},
                {"expectedVersion": -1})[0] == 200
    status, body = call(client, "stream.write", s, {"type": "A", "data": {}},
                        {"expectedVersion": -1})
    assert status == 409 and body["error"]["message"] == \
        "Expected version -1, stream is at version 0"


def test_write_custom_id_kept_exactly_and_duplicate_is_backend_error(client):
    s = sname()
    mid = str(uuid.uuid4()).upper()
    assert call(client, "stream.write", s, {"type": "A", "data": {}}, {"id": mid})[0] == 200
    status, msgs = call(client, "stream.get", s)
    assert msgs[0][0] == mid  # stored exactly as sent (not normalised)
    status, code, message = err(client, "stream.write", sname(), {"type": "A", "data": {}},
                                {"id": mid})
    assert (status, code) == (500, "BACKEND_ERROR")
    assert "UNIQUE constraint failed: messages.id" in message
    assert message.startswith("Failed to write message: ")
    # nothing written, no position used
    assert call(client, "stream.version", s) == (200, 0)


def test_write_generated_id_is_uuid7_and_empty_id_generates(client):
    s = sname()
    call(client, "stream.write", s, {"type": "A", "data": {}})
    call(client, "stream.write", s, {"type": "A", "data": {}}, {"id": ""})
    _, msgs = call(client, "stream.get", s)
    for m in msgs:
        u = uuid.UUID(m[0])
        assert str(u) == m[0] and u.version == 7


@pytest.mark.parametrize("mid,detail", [
    ("not-a-uuid", "invalid UUID length: 10"),
    ("0195d4a4x0000-7000-8000-000000000001", "invalid UUID format"),
])
def test_write_invalid_uuid(client, mid, detail):
    status, code, message = err(client, "stream.write", sname(), {"type": "A", "data": {}},
                                {"id": mid})
    assert (status, code) == (500, "BACKEND_ERROR")
    assert message == f"Failed to write message: invalid UUID format: {detail}"


@pytest.mark.parametrize("mid", [
    "{0195d4a4-0000-7000-8000-000000000abc}",
    "urn:uuid:0195d4a4-0000-7000-8000-000000000abd",
    "0195d4a400007000800000000000abce",
])
def test_write_accepts_go_uuid_forms(client, mid):
    s = sname()
    assert call(client, "stream.write", s, {"type": "A", "data": {}}, {"id": mid})[0] == 200
    assert call(client, "stream.get", s)[1][0][0] == mid


@pytest.mark.parametrize("req,message", [
    (["stream.write", "s-1"], "stream.write requires at least 2 arguments: streamName and message"),
    (["stream.write", "", {"type": "A", "data": {}}], "streamName must be a non-empty string"),
    (["stream.write", 5, {"type": "A", "data": {}}], "streamName must be a non-empty string"),
    (["stream.write", "s-1", []], "message must be an object"),
    (["stream.write", "s-1", {"data": {}}], "message.type must be a non-empty string"),
    (["stream.write", "s-1", {"type": "", "data": {}}], "message.type must be a non-empty string"),
    (["stream.write", "s-1", {"type": "A"}], "message.data must be an object"),
    (["stream.write", "s-1", {"type": "A", "data": None}], "message.data must be an object"),
    (["stream.write", "s-1", {"type": "A", "data": [1]}], "message.data must be an object"),
    (["stream.write", "s-1", {"type": "A", "data": {}, "metadata": None}],
     "message.metadata must be an object"),
    (["stream.write", "s-1", {"type": "A", "data": {}, "metadata": "x"}],
     "message.metadata must be an object"),
    (["stream.write", "s-1", {"type": "A", "data": {}}, None], "options must be an object"),
    (["stream.write", "s-1", {"type": "A", "data": {}}, {"id": None}],
     "options.id must be a string"),
    (["stream.write", "s-1", {"type": "A", "data": {}}, {"expectedVersion": None}],
     "options.expectedVersion must be a number"),
    (["stream.write", "s-1", {"type": "A", "data": {}}, {"expectedVersion": "1"}],
     "options.expectedVersion must be a number"),
    (["stream.write", "s-1", {"type": "A", "data": {}}, {"expectedVersion": True}],
     "options.expectedVersion must be a number"),
])
def test_write_validation(client, req, message):
    r = client.post("/rpc", content=json.dumps(req))
    assert r.status_code == 400
    assert r.json() == {"error": {"code": "INVALID_REQUEST", "message": message}}


# --- stream.get / last / version ---------------------------------------------------------------
def _fill(client, s, n, types=None):
    out = []
    for i in range(n):
        t = types[i] if types else "A"
        out.append(call(client, "stream.write", s, {"type": t, "data": {"i": i}})[1])
    return out


def test_stream_get_shapes_and_options(client):
    s = sname()
    res = _fill(client, s, 12)
    status, msgs = call(client, "stream.get", s)
    assert status == 200 and [m[2] for m in msgs] == list(range(12))
    m = msgs[0]
    assert len(m) == 7 and m[1] == "A" and m[3] == res[0]["globalPosition"]
    assert m[4] == {"i": 0} and m[5] is None and RFC3339NANO.match(m[6])
    assert [m[2] for m in call(client, "stream.get", s, {"position": 5})[1]] == list(range(5, 12))
    assert [m[2] for m in call(client, "stream.get", s, {"batchSize": 3})[1]] == [0, 1, 2]
    g = res[9]["globalPosition"]
    got = call(client, "stream.get", s, {"position": 0, "globalPosition": g})[1]
    assert [m[3] for m in got] == [r["globalPosition"] for r in res[9:]]
    # SQLite reference: 0 and negatives are unlimited, -1 too; negative position = start
    for bs in (0, -1, -7):
        assert len(call(client, "stream.get", s, {"batchSize": bs})[1]) == 12
    assert len(call(client, "stream.get", s, {"position": -3})[1]) == 12
    assert call(client, "stream.get", s, {"position": 100})[1] == []
    assert call(client, "stream.get", sname())[1] == []
    assert call(client, "stream.get", s, {"batchSize": 10000})[0] == 200


def test_stream_get_empty_body_is_bracket_newline(client):
    r = client.post("/rpc", content=json.dumps(["stream.get", sname()]))
    assert r.text == "[]\n"


@pytest.mark.parametrize("req,message", [
    (["stream.get"], "stream.get requires at least 1 argument: streamName"),
    (["stream.get", ""], "streamName must be a non-empty string"),
    (["stream.get", None], "streamName must be a non-empty string"),
    (["stream.get", "s-1", []], "options must be an object"),
    (["stream.get", "s-1", {"position": "1"}], "options.position must be a number"),
    (["stream.get", "s-1", {"position": None}], "options.position must be a number"),
    (["stream.get", "s-1", {"globalPosition": "1"}], "options.globalPosition must be a number"),
    (["stream.get", "s-1", {"batchSize": "1"}], "options.batchSize must be a number"),
    (["stream.get", "s-1", {"batchSize": 10001}],
     "options.batchSize must be <= 10000 or -1 for unlimited"),
    (["stream.last"], "stream.last requires at least 1 argument: streamName"),
    (["stream.last", ""], "streamName must be a non-empty string"),
    (["stream.last", "s-1", 3], "options must be an object"),
    (["stream.last", "s-1", {"type": 1}], "options.type must be a string"),
    (["stream.version"], "stream.version requires 1 argument: streamName"),
    (["stream.version", ""], "streamName must be a non-empty string"),
])
def test_stream_read_validation(client, req, message):
    status, code, msg = err(client, *req)
    assert (status, code, msg) == (400, "INVALID_REQUEST", message)


def test_stream_last_and_version(client):
    s = sname()
    assert call(client, "stream.last", s) == (200, None)
    assert call(client, "stream.version", s) == (200, None)
    _fill(client, s, 5, ["A", "B", "A", "B", "A"])
    status, last = call(client, "stream.last", s)
    assert status == 200 and last[2] == 4 and len(last) == 7
    assert call(client, "stream.last", s, {"type": "B"})[1][2] == 3
    assert call(client, "stream.last", s, {"type": ""})[1][2] == 4
    assert call(client, "stream.last", s, {"type": "C"}) == (200, None)
    assert call(client, "stream.version", s) == (200, 4)
    r = client.post("/rpc", content=json.dumps(["stream.version", sname()]))
    assert r.text == "null\n"


# --- category.get -------------------------------------------------------------------------------
def test_category_get_shapes_positions_and_batch(client):
    cat = "cat" + uuid.uuid4().hex[:10]
    gps = []
    for i in range(9):
        gps.append(call(client, "stream.write", f"{cat}-{i % 3}", {"type": "T", "data": {"i": i}})
                   [1]["globalPosition"])
    call(client, "stream.write", f"{cat}x-1", {"type": "T", "data": {}})  # other category
    status, msgs = call(client, "category.get", cat)
    assert status == 200 and [m[4] for m in msgs] == gps
    assert len(msgs[0]) == 8 and msgs[0][1] == f"{cat}-0" and msgs[0][2] == "T"
    assert [m[4] for m in call(client, "category.get", cat, {"position": gps[4]})[1]] == gps[4:]
    assert [m[4] for m in call(client, "category.get", cat,
                               {"position": 1, "globalPosition": gps[7]})[1]] == gps[7:]
    assert len(call(client, "category.get", cat, {"batchSize": 4})[1]) == 4
    assert len(call(client, "category.get", cat, {"batchSize": 0})[1]) == 9
    assert call(client, "category.get", cat + "-0")[1] == []  # a name with '-' matches nothing
    assert call(client, "category.get", "nosuch" + uuid.uuid4().hex[:6])[1] == []
    every = call(client, "category.get", "", {"batchSize": -1})[1]
    assert set(gps) <= {m[4] for m in every}


def test_category_consumer_group_md5_and_correlation(client):
    from eventodb_cli.domain.hashing import member_for

    cat = "grp" + uuid.uuid4().hex[:10]
    streams = [f"{cat}-{i}" for i in range(12)] + [f"{cat}-3+retry", cat, f"{cat}-"]
    for s in streams:
        call(client, "stream.write", s, {"type": "T", "data": {}})
    seen = []
    for member in range(3):
        got = call(client, "category.get", cat,
                   {"consumerGroup": {"member": member, "size": 3}})[1]
        names = [m[1] for m in got]
        assert names == [s for s in streams if member_for(s, 3) == member]
        seen += names
    assert cat not in seen  # a stream without an id belongs to no member
    assert f"{cat}-" in seen  # empty cardinal id: hashed like Message DB
    assert call(client, "category.get", cat, {"consumerGroup": {}})[0] == 200

    corr = "wf" + uuid.uuid4().hex[:8]
    call(client, "stream.write", f"{cat}-c1", {"type": "T", "data": {},
                                               "metadata": {"correlationStreamName": f"{corr}-9"}})
    call(client, "stream.write", f"{cat}-c2", {"type": "T", "data": {},
                                               "metadata": {"correlationStreamName": corr}})
    call(client, "stream.write", f"{cat}-c3", {"type": "T", "data": {},
                                               "metadata": {"correlationStreamName": "other-1"}})
    got = call(client, "category.get", cat, {"correlation": corr})[1]
    # Message DB semantics: category(correlationStreamName) == correlation
    assert [m[1] for m in got] == [f"{cat}-c1", f"{cat}-c2"]
    assert len(call(client, "category.get", cat, {"correlation": ""})[1]) == len(streams) + 3


@pytest.mark.parametrize("opts,message", [
    ([], "options must be an object"),
    ({"position": "x"}, "options.position must be a number"),
    ({"globalPosition": None}, "options.globalPosition must be a number"),
    ({"batchSize": 20000}, "options.batchSize must be <= 10000 or -1 for unlimited"),
    ({"correlation": 5}, "options.correlation must be a string"),
    ({"consumerGroup": 1}, "options.consumerGroup must be an object"),
    ({"consumerGroup": {"member": "0", "size": 2}}, "options.consumerGroup.member must be a number"),
    ({"consumerGroup": {"member": 0, "size": None}}, "options.consumerGroup.size must be a number"),
    ({"consumerGroup": {"member": 0}}, "options.consumerGroup requires both member and size"),
    ({"consumerGroup": {"size": 2}}, "options.consumerGroup requires both member and size"),
    ({"consumerGroup": {"member": -1, "size": 2}},
     "options.consumerGroup.member must be non-negative"),
    ({"consumerGroup": {"member": 0, "size": 0}}, "options.consumerGroup.size must be positive"),
    ({"consumerGroup": {"member": 2, "size": 2}}, "options.consumerGroup.member must be < size"),
])
def test_category_validation(client, opts, message):
    assert err(client, "category.get", "acct", opts) == (400, "INVALID_REQUEST", message)


def test_category_name_validation(client):
    assert err(client, "category.get") == (
        400, "INVALID_REQUEST", "category.get requires at least 1 argument: categoryName")
    assert err(client, "category.get", 5) == (400, "INVALID_REQUEST",
                                              "categoryName must be a string")


# --- encoding ------------------------------------------------------------------------------------
def test_encoding_round_trip_and_go_escapes(client):
    s = sname("enc")
    data = {"text": "zürich 東京 🚀", "html": "<a href='x'>&</a>", "ls": "\u2028",
            "empty": "", "t": True, "f": False, "n": None, "int": 42, "neg": -7,
            "big": 9007199254740993, "float": 1.5, "nested": {"b": [1, "two", None, {"c": 3}]}}
    meta = {"über": "ñ", "correlationStreamName": "x-1"}
    assert call(client, "stream.write", s, {"type": "T", "data": data, "metadata": meta})[0] == 200
    r = client.post("/rpc", content=json.dumps(["stream.get", s]))
    raw = r.text
    assert "\\u003ca href='x'\\u003e\\u0026\\u003c/a\\u003e" in raw
    assert "\\u2028" in raw and "zürich 東京 🚀" in raw  # other UTF-8 raw
    msg = r.json()[0]
    assert msg[4] == data and msg[5] == meta
    # keys come back sorted
    assert raw.index('"big"') < raw.index('"empty"') < raw.index('"text"')


@pytest.mark.parametrize("name", ["with space-1", "a/b:c.d_e-1", "ünï-ç0de", "noid", "x-"])
def test_special_stream_names(client, name):
    s = name + uuid.uuid4().hex[:6] if name != "x-" else "x" + uuid.uuid4().hex[:6] + "-"
    assert call(client, "stream.write", s, {"type": "T", "data": {}})[0] == 200
    assert call(client, "stream.get", s)[1][0][2] == 0


# --- namespaces and system ------------------------------------------------------------------------
def test_ns_lifecycle(client, srv):
    nid = "tenant-" + uuid.uuid4().hex[:8]
    status, res = call(client, "ns.create", nid, {"description": "Tenant A"})
    assert status == 200 and sorted(res) == ["createdAt", "namespace", "token"]
    assert res["namespace"] == nid and res["token"].startswith("ns_")
    assert RFC3339NANO.match(res["createdAt"])
    assert err(client, "ns.create", nid) == (409, "NAMESPACE_EXISTS",
                                             f"Namespace '{nid}' already exists")
    tok = res["token"]
    with httpx.Client(base_url=srv.url, headers={"Authorization": f"Bearer {tok}"}) as c2:
        for i in range(5):
            assert call(c2, "stream.write", f"t-{i % 2}", {"type": "T", "data": {}})[0] == 200
    status, info = call(client, "ns.info", nid)
    assert status == 200
    assert sorted(info) == ["createdAt", "description", "lastActivity", "messageCount",
                            "namespace", "streamCount"]
    assert info["messageCount"] == 5 and info["streamCount"] == 2
    assert info["description"] == "Tenant A" and RFC3339NANO.match(info["lastActivity"])
    status, rows = call(client, "ns.list")
    mine = [r for r in rows if r["namespace"] == nid]
    assert mine == [{"createdAt": res["createdAt"], "description": "Tenant A",
                     "messageCount": 5, "namespace": nid}]
    assert rows[0]["namespace"] == nid  # newest first
    assert any(r["namespace"] == "default" for r in rows)
    status, res = call(client, "ns.delete", nid)
    assert status == 200 and res["namespace"] == nid and res["messagesDeleted"] == 5
    assert sorted(res) == ["deletedAt", "messagesDeleted", "namespace"]
    assert err(client, "ns.delete", nid) == (404, "NAMESPACE_NOT_FOUND",
                                             f"Namespace '{nid}' not found")
    assert err(client, "ns.info", nid) == (404, "NAMESPACE_NOT_FOUND",
                                           f"Namespace '{nid}' not found")
    # the deleted namespace's token no longer works
    with httpx.Client(base_url=srv.url, headers={"Authorization": f"Bearer {tok}"}) as c2:
        r = c2.post("/rpc", content=json.dumps(["stream.get", "t-0"]))
        assert r.status_code == 403
    # re-created: empty again
    tok2 = call(client, "ns.create", nid)[1]["token"]
    with httpx.Client(base_url=srv.url, headers={"Authorization": f"Bearer {tok2}"}) as c2:
        assert call(c2, "stream.get", "t-0") == (200, [])


def test_ns_create_with_custom_token(client, srv):
    from conftest import make_token

    nid = "custom-" + uuid.uuid4().hex[:8]
    tok = make_token(nid)
    status, res = call(client, "ns.create", nid, {"token": tok, "metadata": {"a": 1}})
    assert status == 200 and res["token"] == tok
    with httpx.Client(base_url=srv.url, headers={"Authorization": f"Bearer {tok}"}) as c2:
        assert call(c2, "sys.version")[0] == 200
    other = make_token("someone")
    assert err(client, "ns.create", "x" + nid, {"token": other}) == (
        400, "INVALID_REQUEST", f"Token is for namespace 'someone', not 'x{nid}'")
    assert err(client, "ns.create", "y" + nid, {"token": "bad"}) == (
        400, "INVALID_REQUEST", "Invalid token format: invalid token format: missing 'ns_' prefix")


@pytest.mark.parametrize("req,message", [
    (["ns.create"], "ns.create requires at least 1 argument: namespace ID"),
    (["ns.create", ""], "namespace ID must be a non-empty string"),
    (["ns.create", 1], "namespace ID must be a non-empty string"),
    (["ns.create", "n1", "x"], "options must be an object"),
    (["ns.create", "n1", {"description": None}], "options.description must be a string"),
    (["ns.create", "n1", {"token": 5}], "options.token must be a string"),
    (["ns.create", "n1", {"metadata": []}], "options.metadata must be an object"),
    (["ns.delete"], "ns.delete requires 1 argument: namespace ID"),
    (["ns.delete", ""], "namespace ID must be a non-empty string"),
    (["ns.info"], "ns.info requires 1 argument: namespace ID"),
    (["ns.streams", 1], "options must be an object"),
    (["ns.streams", {"prefix": 1}], "prefix must be a string"),
    (["ns.streams", {"cursor": None}], "cursor must be a string"),
    (["ns.streams", {"limit": "5"}], "limit must be a number"),
    (["ns.streams", {"limit": 0}], "limit must be between 1 and 1000"),
    (["ns.streams", {"limit": 1001}], "limit must be between 1 and 1000"),
])
def test_ns_validation(client, req, message):
    assert err(client, *req) == (400, "INVALID_REQUEST", message)


def test_ns_create_rejects_unusable_id(client):
    # base64url("x??") = "eD8_": no token for it could ever parse (Go creates it anyway)
    status, code, message = err(client, "ns.create", "x??")
    assert (status, code) == (400, "INVALID_REQUEST") and "base64url" in message


def test_ns_streams_and_categories(client, srv):
    nid = "lst-" + uuid.uuid4().hex[:8]
    tok = call(client, "ns.create", nid)[1]["token"]
    with httpx.Client(base_url=srv.url, headers={"Authorization": f"Bearer {tok}"}) as c2:
        for s in ["b-2", "a-1", "a-1", "a-3", "c", "A-9"]:
            call(c2, "stream.write", s, {"type": "T", "data": {}})
        status, rows = call(c2, "ns.streams")
        assert status == 200
        assert [(r["stream"], r["version"]) for r in rows] == [
            ("A-9", 0), ("a-1", 1), ("a-3", 0), ("b-2", 0), ("c", 0)]
        assert all(RFC3339NANO.match(r["lastActivity"]) for r in rows)
        assert sorted(rows[0]) == ["lastActivity", "stream", "version"]
        assert [r["stream"] for r in call(c2, "ns.streams", {"prefix": "a"})[1]] == ["a-1", "a-3"]
        page = call(c2, "ns.streams", {"limit": 2})[1]
        assert [r["stream"] for r in page] == ["A-9", "a-1"]
        page2 = call(c2, "ns.streams", {"limit": 2, "cursor": "a-1"})[1]
        assert [r["stream"] for r in page2] == ["a-3", "b-2"]
        status, cats = call(c2, "ns.categories")
        assert cats == [{"category": "A", "messageCount": 1, "streamCount": 1},
                        {"category": "a", "messageCount": 3, "streamCount": 2},
                        {"category": "b", "messageCount": 1, "streamCount": 1},
                        {"category": "c", "messageCount": 1, "streamCount": 1}]
    call(client, "ns.delete", nid)


def test_sys_methods(client):
    r = client.post("/rpc", content=b'["sys.version"]')
    assert r.status_code == 200 and r.text == '"0.1.0"\n'
    assert re.fullmatch(r"\d+\.\d+\.\d+.*", r.json())
    status, health = call(client, "sys.health")
    assert status == 200 and health["status"] == "ok" and health["backend"] == "sqlite"
    assert sorted(health) == ["backend", "connections", "status"]


# --- envelope, paths, limits -----------------------------------------------------------------
@pytest.mark.parametrize("body,message,detail", [
    (b"", "Malformed JSON request", "EOF"),
    (b"{", "Malformed JSON request", None),
    (b'{"a":1}', "Malformed JSON request",
     "json: cannot unmarshal object into Go value of type []interface {}"),
    (b'"x"', "Malformed JSON request",
     "json: cannot unmarshal string into Go value of type []interface {}"),
    (b"[NaN]", "Malformed JSON request", None),
    (b"[]", "Missing method name", None),
    (b"null", "Missing method name", None),
    (b"[1]", "Method name must be a string", None),
])
def test_envelope_errors(client, body, message, detail):
    r = client.post("/rpc", content=body)
    assert r.status_code == 400
    e = r.json()["error"]
    assert e["code"] == "INVALID_REQUEST" and e["message"] == message
    if message == "Malformed JSON request":
        assert isinstance(e["details"]["error"], str) and e["details"]["error"]
        if detail:
            assert e["details"]["error"] == detail
    else:
        assert "details" not in e


def test_unknown_method_and_extra_args(client):
    assert err(client, "stream.nope") == (404, "METHOD_NOT_FOUND", "Unknown method: stream.nope")
    assert call(client, "sys.version", 1, 2, 3) == (200, "0.1.0")


def test_non_post_is_405_after_auth(srv, client):
    for method in ("GET", "PUT", "DELETE"):
        r = client.request(method, "/rpc")
        assert r.status_code == 405
        assert r.text == ('{"error":{"code":"INVALID_REQUEST",'
                          '"message":"Only POST method allowed"}}\n')
    r = httpx.get(srv.url + "/rpc")  # no token: auth comes first
    assert r.status_code == 401


def test_health_version_and_404(srv):
    r = httpx.get(srv.url + "/health")
    assert r.status_code == 200 and r.text == '{"status":"ok"}'
    assert r.headers["server"] == "EventoDB/0.1.0"
    r = httpx.post(srv.url + "/version")
    assert r.status_code == 200 and r.json() == {"version": "0.1.0"}
    for path in ("/nope", "/rpc/", "/subscribe/stream/x", "/debug/pprof/"):
        r = httpx.get(srv.url + path)
        assert r.status_code == 404, path
        assert r.text == '{"error":{"code":"NOT_FOUND","message":"Endpoint not found"}}\n'


def test_body_limit(srv, client):
    big = json.dumps(["stream.write", "big-1", {"type": "T", "data": {"x": "a" * (1024 * 1024)}}])
    r = client.post("/rpc", content=big)
    assert r.status_code == 413
    assert r.json()["error"]["code"] == "INVALID_REQUEST"
    assert "too large" in r.json()["error"]["message"]

    def chunks():  # no content-length: the limit is enforced while reading
        for _ in range(3):
            yield b" " * (512 * 1024)
    r = client.post("/rpc", content=chunks())
    assert r.status_code == 413
    ok = json.dumps(["stream.write", sname("big"),
                     {"type": "T", "data": {"x": "a" * (900 * 1024)}}])
    assert client.post("/rpc", content=ok).status_code == 200  # ENCODING-010 under the limit


def test_keep_alive_connection_reused(srv, client):
    # many requests over one client: HTTP/1.1 keep-alive works
    for _ in range(20):
        assert client.post("/rpc", content=b'["sys.version"]').status_code == 200


def test_concurrent_writes_same_stream(srv):
    """EDGE-005: concurrent writers to one stream get unique, gapless positions."""
    import concurrent.futures

    s = sname("conc")

    def writer(n):
        with httpx.Client(base_url=srv.url,
                          headers={"Authorization": f"Bearer {srv.token}"}) as c:
            return [call(c, "stream.write", s, {"type": "T", "data": {"n": n}})[1]["position"]
                    for _ in range(25)]

    with concurrent.futures.ThreadPoolExecutor(8) as ex:
        positions = sum(ex.map(writer, range(8)), [])
    assert sorted(positions) == list(range(200))


def test_concurrent_conflicts_and_duplicates_each_get_their_own_answer(srv):
    """Writes that arrive together are committed as a group; a failing one must not take the
    others down, and each request gets exactly the answer it would get alone."""
    import concurrent.futures

    s = sname("race")
    dup = str(uuid.uuid4())
    plain = sname("plain")

    def attempt(i):
        with httpx.Client(base_url=srv.url,
                          headers={"Authorization": f"Bearer {srv.token}"}) as c:
            out = []
            for j in range(10):
                out.append(("new", call(c, "stream.write", s, {"type": "T", "data": {}},
                                        {"expectedVersion": -1})))
                out.append(("dup", call(c, "stream.write", sname("d"), {"type": "T", "data": {}},
                                        {"id": dup})))
                out.append(("ok", call(c, "stream.write", plain, {"type": "T", "data": {}})))
            return out

    with concurrent.futures.ThreadPoolExecutor(8) as ex:
        results = sum(ex.map(attempt, range(8)), [])
    new = [r for k, r in results if k == "new"]
    dups = [r for k, r in results if k == "dup"]
    oks = [r for k, r in results if k == "ok"]
    assert sum(1 for st, _ in new if st == 200) == 1
    assert all(b["error"]["code"] == "STREAM_VERSION_CONFLICT" and
               b["error"]["details"] == {"actual": 0, "expected": -1}
               for st, b in new if st != 200)
    assert sum(1 for st, _ in dups if st == 200) == 1
    assert all("UNIQUE constraint failed: messages.id" in b["error"]["message"]
               for st, b in dups if st != 200)
    assert sorted(b["position"] for st, b in oks) == list(range(80))
    gps = [b["globalPosition"] for st, b in new + dups + oks if st == 200]
    assert len(gps) == len(set(gps)) == 82


def test_deeply_nested_json_is_a_json_error_not_a_crash(client):
    deep = "[" * 100000 + "]" * 100000
    r = client.post("/rpc", content=deep.encode())
    assert r.status_code == 400
    assert r.json()["error"] == {"code": "INVALID_REQUEST", "message": "Malformed JSON request",
                                 "details": {"error": "exceeded max depth"}}
    s = sname("deep")

    def nested(n):
        return ('["stream.write","%s",{"type":"T","data":' % s + '{"a":' * n + "1" + "}" * n
                + "}]").encode()

    assert client.post("/rpc", content=nested(500)).status_code == 200  # deep is fine
    r = client.post("/rpc", content=nested(5000))
    assert r.status_code == 400 and r.json()["error"]["details"]["error"] == "exceeded max depth"
    got = call(client, "stream.get", s)[1]
    assert len(got) == 1 and json.dumps(got[0][4]).count("{") == 500
    assert client.post("/rpc", content=b'["sys.version"]').status_code == 200
