"""``eventodb serve`` hardening of the API (issue 9): strict JSON on /rpc and /import (item 3),
the admin role for namespace management (item 4)."""

from __future__ import annotations

import json
import uuid

import httpx
import pytest

from conftest import make_token, start_server


@pytest.fixture(scope="module")
def srv(tmp_path_factory):
    s = start_server(tmp_path_factory.mktemp("serve-api") / "data")
    yield s
    s.stop()


def call(srv, req, token=None, raw: str | None = None):
    r = httpx.post(srv.url + "/rpc", content=raw if raw is not None else json.dumps(req),
                   headers={"Authorization": f"Bearer {token or srv.token}"}, timeout=60)
    return r.status_code, r.json()


def malformed(status_body):
    status, body = status_body
    assert status == 400, body
    assert body["error"]["code"] == "INVALID_REQUEST"
    assert body["error"]["message"] == "Malformed JSON request"
    return body["error"]["details"]["error"]


# --- item 3: strict JSON -------------------------------------------------------------------
@pytest.mark.parametrize("raw", [
    '["stream.write","strict-1",{"type":"T","data":{"x":1e400}}]',
    '["stream.write","strict-1",{"type":"T","data":{"x":-1e400}}]',
    '["stream.write","strict-1",{"type":"T","data":{"x":NaN}}]',
    '["stream.write","strict-1",{"type":"T","data":{"x":Infinity}}]',
    '["stream.write","strict-1",{"type":"T","data":{"x":[-Infinity]}}]',
    '["stream.write","strict-1",{"type":"T","data":{"x":"\\ud800"}}]',
    '["stream.write","strict-1",{"type":"T","data":{"\\udfff":1}}]',
    '["stream.write","strict-1",{"type":"T","data":{},"metadata":{"m":"a\\ud83d"}}]',
    '["stream.write","strict-\\ud800",{"type":"T","data":{}}]',
    '["stream.write","strict-1",{"type":"\\ud800","data":{}}]',
    '["stream.write","strict-1",{"type":"T","data":{}},{"expectedVersion":1e400}]',
    '["stream.get","strict-1",{"position":1e400}]',
    '["stream.get","strict-1",{"globalPosition":-1e999}]',
    '["category.get","strict",{"batchSize":1e400}]',
    '["category.get","strict",{"consumerGroup":{"member":0,"size":1e400}}]',
    '["ns.streams",{"limit":1e400}]',
])
def test_non_finite_numbers_and_lone_surrogates_are_400(srv, raw):
    assert malformed(call(srv, None, raw=raw))
    # the same in a body large enough to be decoded by the helper process
    assert malformed(call(srv, None, raw=" " * (100 * 1024) + raw))
    assert call(srv, ["stream.version", "strict-1"]) == (200, None)  # nothing stored


def test_strict_errors_say_why(srv):
    raw = '["stream.write","strict-1",{"type":"T","data":{"x":1e400}}]'
    assert "out of range" in malformed(call(srv, None, raw=raw))
    raw = '["stream.write","strict-1",{"type":"T","data":{"x":"\\ud800"}}]'
    assert "surrogate" in malformed(call(srv, None, raw=raw))


def test_valid_pairs_big_numbers_and_trailing_bytes_still_work(srv):
    raw = ('["stream.write","strictok-1",{"type":"T","data":{"e":"\\ud83d\\ude00","big":1e308,'
           '"int":123456789012345678901234567890}}] trailing')
    status, body = call(srv, None, raw=raw)
    assert status == 200, body
    status, rows = call(srv, ["stream.get", "strictok-1"])
    assert rows[0][4] == {"e": "\U0001F600", "big": 1e308,
                          "int": 123456789012345678901234567890}
    # huge but finite numbers in options are clamped as before (Go: int64(float64))
    assert call(srv, ["stream.get", "strictok-1", {"position": 1e300}]) == (200, [])


def _import(srv, token, lines):
    r = httpx.post(srv.url + "/import", content="\n".join(lines) + "\n",
                   headers={"Authorization": f"Bearer {token}"}, timeout=60)
    assert r.status_code == 200
    return [json.loads(b[6:]) for b in r.text.split("\n\n") if b]


def _rec(gpos, data):
    return ('{"id":"%s","stream":"imp-1","type":"T","pos":%d,"gpos":%d,"data":%s,"meta":null,'
            '"time":"2025-01-15T10:00:00Z"}' % (uuid.uuid4(), gpos - 1, gpos, data))


@pytest.mark.parametrize("data", ['{"x":1e400}', '{"x":NaN}', '{"x":"\\ud800"}',
                                  '{"x":-Infinity}'])
def test_import_refuses_non_finite_numbers_and_lone_surrogates(srv, data):
    nid = "strict-imp-" + uuid.uuid4().hex[:6]
    status, created = call(srv, ["ns.create", nid])
    assert status == 200
    events = _import(srv, created["token"], [_rec(1, '{"ok":1}'), _rec(2, data)])
    assert events[-1]["error"] == "INVALID_JSON" and events[-1]["line"] == 2, events
    status, rows = call(srv, ["category.get", "imp", {"batchSize": -1}], created["token"])
    assert status == 200 and rows == []  # the batch of the bad line is not committed


# --- item 4: the admin role ----------------------------------------------------------------
def _forbidden_admin(status_body, method, namespace):
    assert status_body == (403, {"error": {"code": "AUTH_UNAUTHORIZED",
                                           "message": "Admin token required",
                                           "details": {"method": method,
                                                       "namespace": namespace}}})


def test_a_tenant_can_manage_no_namespace_but_see_its_own(srv):
    a = "tenant-a-" + uuid.uuid4().hex[:6]
    b = "tenant-b-" + uuid.uuid4().hex[:6]
    ta = call(srv, ["ns.create", a])[1]["token"]
    tb = call(srv, ["ns.create", b])[1]["token"]
    assert call(srv, ["stream.write", "secret-1", {"type": "T", "data": {"b": 1}}], tb)[0] == 200
    # every ns.* method, aimed at b (and at the rest of the server) with a's token
    _forbidden_admin(call(srv, ["ns.create", "tenant-new-" + a], ta), "ns.create", a)
    _forbidden_admin(call(srv, ["ns.create", b], ta), "ns.create", a)
    _forbidden_admin(call(srv, ["ns.delete", b], ta), "ns.delete", a)
    _forbidden_admin(call(srv, ["ns.delete", "default"], ta), "ns.delete", a)
    _forbidden_admin(call(srv, ["ns.delete", a], ta), "ns.delete", a)  # not even itself
    _forbidden_admin(call(srv, ["ns.list"], ta), "ns.list", a)
    for other in (b, "default", "no-such-namespace"):  # existence is not revealed either
        assert call(srv, ["ns.info", other], ta) == (403, {"error": {
            "code": "AUTH_UNAUTHORIZED", "message": "Token not authorized for namespace",
            "details": {"namespace": other}}})
    # ns.streams / ns.categories take no namespace: the token's own, nothing of b's
    assert call(srv, ["ns.streams"], ta) == (200, [])
    assert call(srv, ["ns.categories"], ta) == (200, [])
    # its own namespace is visible
    status, info = call(srv, ["ns.info", a], ta)
    assert status == 200 and info["namespace"] == a and info["messageCount"] == 0
    # b is untouched, and the admin (default's token) still manages everything
    assert call(srv, ["stream.get", "secret-1"], tb)[1][0][4] == {"b": 1}
    assert {row["namespace"] for row in call(srv, ["ns.list"])[1]} >= {a, b, "default"}
    assert call(srv, ["ns.info", b])[1]["messageCount"] == 1
    assert call(srv, ["ns.delete", a])[0] == 200 and call(srv, ["ns.delete", b])[0] == 200


def test_admin_token_option(tmp_path):
    admin = make_token("ops")  # any namespace's form; "ops" need not exist
    s = start_server(tmp_path / "data", "--admin-token", admin)
    try:
        created = call(s, ["ns.create", "adm-t"], admin)
        assert created[0] == 200
        assert {r["namespace"] for r in call(s, ["ns.list"], admin)[1]} == {"default", "adm-t"}
        assert call(s, ["ns.info", "adm-t"], admin)[0] == 200
        # the default namespace's token stays an admin (SDK flows create namespaces with it)
        assert call(s, ["ns.info", "adm-t"])[0] == 200
        # the admin token's own data namespace does not exist: data methods say so
        status, body = call(s, ["stream.get", "x-1"], admin)
        assert status == 500 and body["error"]["message"] == \
            "Failed to get messages: namespace not found"
        assert call(s, ["ns.delete", "adm-t"], admin)[0] == 200
        # a tenant token is still refused; a wrong admin-looking token is a plain 403
        tenant = call(s, ["ns.create", "adm-u"], admin)[1]["token"]
        _forbidden_admin(call(s, ["ns.list"], tenant), "ns.list", "adm-u")
        assert call(s, ["ns.list"], make_token("ops"))[0] == 403
    finally:
        s.stop()


def test_admin_token_must_parse(exe, tmp_path):
    r = exe("serve", "--data-dir", tmp_path / "d", "--port", "0", "--admin-token", "secret")
    assert r.exit_code == 2
    assert "--admin-token is not a valid EventoDB token" in r.stderr
    assert "secret" not in r.stderr.replace("--admin-token", "")


def test_test_mode_keeps_everyone_admin(tmp_path):
    s = start_server(tmp_path / "data", "--test-mode")
    try:
        tok = make_token("tm-x")
        assert call(s, ["ns.create", "tm-x", {"token": tok}], tok)[0] == 200
        assert {r["namespace"] for r in call(s, ["ns.list"], tok)[1]} >= {"default", "tm-x"}
        assert call(s, ["ns.delete", "tm-x"], tok)[0] == 200
    finally:
        s.stop()
