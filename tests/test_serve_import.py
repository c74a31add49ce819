"""``eventodb serve`` /import (PROTOCOL.md section 8) against a real process: positions kept,
progress per 1000, done, error codes and lines, force, no pokes, auth."""

from __future__ import annotations

import json
import uuid

import httpx
import pytest

from conftest import make_token, start_server


@pytest.fixture(scope="module")
def srv(tmp_path_factory):
    s = start_server(tmp_path_factory.mktemp("serve-import") / "data")
    yield s
    s.stop()


@pytest.fixture
def ns(srv):
    """A fresh namespace per test: (client, token)."""
    nid = "imp-" + uuid.uuid4().hex[:8]
    r = httpx.post(srv.url + "/rpc", content=json.dumps(["ns.create", nid]),
                   headers={"Authorization": f"Bearer {srv.token}"})
    tok = r.json()["token"]
    with httpx.Client(base_url=srv.url, headers={"Authorization": f"Bearer {tok}"},
                      timeout=60) as c:
        yield c


def rec(stream, pos, gpos, time="2025-01-15T10:00:00.123456789Z", data=None, meta=None,
        id=None, type="T"):
    return {"id": id or str(uuid.uuid4()), "stream": stream, "type": type, "pos": pos,
            "gpos": gpos, "data": {"g": gpos} if data is None else data, "meta": meta,
            "time": time}


def body(records):
    return "\n".join(r if isinstance(r, str) else json.dumps(r) for r in records) + "\n"


def events(r):
    assert r.status_code == 200
    assert r.headers["content-type"] == "text/event-stream"
    assert r.headers["x-accel-buffering"] == "no"
    out = []
    for block in r.text.split("\n\n"):
        if block:
            assert block.startswith("data: ") and "\n" not in block, block
            out.append(block[6:])
    return out


def test_import_keeps_everything_and_reports_progress(ns):
    recs = [rec(f"acc-{i % 7}", i // 7, 10 + 2 * i) for i in range(2500)]
    recs[3]["meta"] = {"correlationStreamName": "x-1"}
    recs[4]["data"] = None
    r = ns.post("/import", content=body(recs))
    ev = events(r)
    assert ev[0] == '{"imported":1000,"gpos":%d}' % recs[999]["gpos"]
    assert ev[1] == '{"imported":2000,"gpos":%d}' % recs[1999]["gpos"]
    done = json.loads(ev[2])
    assert list(done) == ["done", "imported", "elapsed"]
    assert done["done"] is True and done["imported"] == 2500
    assert done["elapsed"].endswith("s") and float(done["elapsed"][:-1]) >= 0
    assert len(ev) == 3  # no progress event for the final partial batch
    got = ns.post("/rpc", content=json.dumps(["stream.get", "acc-3"])).json()
    m = got[0]
    assert m[0] == recs[3]["id"] and m[2] == 0 and m[3] == 16 and m[5] == recs[3]["meta"]
    assert m[6] == "2025-01-15T10:00:00.123456789Z"  # sub-second precision kept
    assert ns.post("/rpc", content=json.dumps(["stream.get", "acc-4"])).json()[0][4] is None
    # later writes continue after the highest gpos
    w = ns.post("/rpc", content=json.dumps(["stream.write", "acc-0", {"type": "T", "data": {}}]))
    assert w.json() == {"globalPosition": recs[-1]["gpos"] + 1, "position": 358}


def test_empty_body_and_blank_lines(ns):
    assert events(ns.post("/import", content=b"")) == [
        '{"done":true,"imported":0,"elapsed":"0.0s"}']
    r = ns.post("/import", content=b"\n   \n" + json.dumps(rec("a-1", 0, 1)).encode()
                + b"\r\n\n")
    assert json.loads(events(r)[-1])["imported"] == 1


@pytest.mark.parametrize("bad,code", [
    ("{not json", "INVALID_JSON"),
    ('{"id":"x","stream":"a-1","type":"T","pos":"1","gpos":5,"time":"2025-01-01T00:00:00Z"}',
     "INVALID_JSON"),
    ('{"id":"x","stream":"a-1","type":"T","pos":1.5,"gpos":5,"time":"2025-01-01T00:00:00Z"}',
     "INVALID_JSON"),
    ('[1,2]', "INVALID_JSON"),
    ('{"id":"x","stream":"a-1","type":"T","pos":0,"gpos":5,"time":"yesterday"}',
     "INVALID_RECORD"),
    ('{"id":"x","stream":"a-1","type":"T","pos":0,"gpos":5}', "INVALID_RECORD"),
])
def test_bad_record_reports_code_and_physical_line(ns, bad, code):
    lines = [json.dumps(rec("a-1", 0, 1)), "", bad, json.dumps(rec("a-1", 1, 2))]
    ev = events(ns.post("/import", content=body(lines)))
    assert len(ev) == 1
    e = json.loads(ev[0])
    assert list(e) == ["error", "message", "line"]
    assert e["error"] == code and e["line"] == 3 and e["message"]
    # the partial batch was not committed
    assert ns.post("/rpc", content=json.dumps(["stream.get", "a-1"])).json() == []


def test_position_exists_keeps_earlier_batches(ns):
    first = [rec("p-1", i, i + 1) for i in range(1000)]
    assert json.loads(events(ns.post("/import", content=body(first)))[-1])["imported"] == 1000
    again = [rec("q-1", i, 5000 + i) for i in range(1000)] + [rec("q-2", 0, 7)]
    ev = events(ns.post("/import", content=body(again)))
    assert ev[0] == '{"imported":1000,"gpos":5999}'
    e = json.loads(ev[1])
    assert e == {"error": "POSITION_EXISTS", "message": "global position already exists: 7",
                 "line": 1001}
    assert len(ns.post("/rpc", content=json.dumps(["stream.get", "q-1", {"batchSize": -1}]))
               .json()) == 1000
    dup_id = [rec("r-1", 0, 9000, id=first[0]["id"])]
    e = json.loads(events(ns.post("/import", content=body(dup_id)))[0])
    assert e["error"] == "POSITION_EXISTS"
    assert e["message"] == f"message id already exists: {first[0]['id']}"
    dup_sp = [rec("p-1", 3, 9100)]
    e = json.loads(events(ns.post("/import", content=body(dup_sp)))[0])
    assert e == {"error": "POSITION_EXISTS", "line": 1,
                 "message": "stream position already exists: p-1 at position 3"}


def test_line_too_long_is_read_error(ns):
    long = json.dumps(rec("a-1", 0, 1, data={"x": "y" * (1024 * 1024)}))
    ev = events(ns.post("/import", content=body([json.dumps(rec("a-1", 0, 1)), long])))
    assert json.loads(ev[0]) == {"error": "READ_ERROR", "message": "bufio.Scanner: token too long",
                                 "line": 2}


def test_force_clears_first_and_restarts_positions(ns):
    events(ns.post("/import", content=body([rec("f-1", i, 100 + i) for i in range(3)])))
    ns.post("/rpc", content=json.dumps(["stream.write", "g-1", {"type": "T", "data": {}}]))
    ev = events(ns.post("/import", params={"force": "true"},
                        content=body([rec("f-1", 0, 1)])))
    assert json.loads(ev[-1])["imported"] == 1
    cat = ns.post("/rpc", content=json.dumps(["category.get", ""])).json()
    assert [(m[1], m[4]) for m in cat] == [("f-1", 1)]
    ns.post("/import", params={"force": "true"}, content=b"")
    w = ns.post("/rpc", content=json.dumps(["stream.write", "h-1", {"type": "T", "data": {}}]))
    assert w.json() == {"globalPosition": 1, "position": 0}
    # force=1 is not force
    events(ns.post("/import", content=body([rec("h-9", 0, 50)])))
    ev = events(ns.post("/import", params={"force": "1"}, content=body([rec("h-9", 0, 50)])))
    assert json.loads(ev[0])["error"] == "POSITION_EXISTS"


def test_import_sends_no_pokes(ns, srv):
    tok = ns.headers["authorization"].split(" ", 1)[1]
    with httpx.stream("GET", srv.url + "/subscribe", params={"all": "true", "token": tok},
                      timeout=httpx.Timeout(10, read=1.5)) as r:
        lines = r.iter_lines()
        assert next(lines) == ": ready"
        events(ns.post("/import", content=body([rec("np-1", 0, 1), rec("np-1", 1, 2)])))
        with pytest.raises(httpx.ReadTimeout):
            while True:
                line = next(lines)
                assert not line.startswith("data:"), line


def test_import_auth_and_body_limit(srv):
    r = httpx.post(srv.url + "/import", content=b"")
    assert r.status_code == 401 and r.json()["error"]["code"] == "AUTH_REQUIRED"
    r = httpx.post(srv.url + "/import", content=b"",
                   headers={"Authorization": f"Bearer {make_token('nope')}"})
    assert r.status_code == 403


def test_import_into_token_namespace_only(ns, srv):
    events(ns.post("/import", content=body([rec("only-1", 0, 1)])))
    r = httpx.post(srv.url + "/rpc", content=json.dumps(["stream.get", "only-1"]),
                   headers={"Authorization": f"Bearer {srv.token}"})
    assert r.json() == []
