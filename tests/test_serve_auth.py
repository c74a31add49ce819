"""``eventodb serve`` auth (PROTOCOL.md section 2): the token table, namespace isolation,
test mode, the default namespace's token at startup, --store mode."""

from __future__ import annotations

import base64
import hashlib
import json
import sqlite3
import subprocess
import uuid

import httpx
import pytest

from conftest import exe_path, free_port, make_token, start_server


def rpc(url, req, headers=None, params=None):
    r = httpx.post(url + "/rpc", content=json.dumps(req), headers=headers or {}, params=params)
    return r.status_code, r.json()


def bearer(tok):
    return {"Authorization": f"Bearer {tok}"}


W = ["stream.write", "auth-1", {"type": "T", "data": {}}]


# --- the table ------------------------------------------------------------------------------
def test_missing_token(server):
    assert rpc(server.url, W) == (401, {"error": {"code": "AUTH_REQUIRED",
                                                  "message": "Authorization header required"}})


def test_non_bearer_header(server):
    for h in (f"Basic {server.token}", f"bearer {server.token}", server.token):
        assert rpc(server.url, W, {"Authorization": h}) == (
            401, {"error": {"code": "AUTH_REQUIRED",
                            "message": "Authorization header must use Bearer scheme"}})


def _raw_request(url, head: str, body: bytes = b"") -> tuple[int, bytes]:
    """A request written by hand (httpx refuses header values with trailing spaces)."""
    import socket

    host, port = url.rsplit("/", 1)[1].split(":")
    with socket.create_connection((host, int(port)), timeout=10) as s:
        s.sendall(head.encode("latin-1") + f"Content-Length: {len(body)}\r\n"
                  "Connection: close\r\n\r\n".encode() + body)
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    status = int(data.split(b" ", 2)[1])
    return status, data.split(b"\r\n\r\n", 1)[1]


def test_empty_bearer_token(server):
    """``Authorization: Bearer `` (nothing after the space): the Go server's fasthttp trims
    trailing spaces off header values, so it sees ``Bearer`` and answers "must use Bearer
    scheme" (its "Token required" row cannot be reached over HTTP); uvicorn trims them too."""
    for value in ("Bearer ", "Bearer", "Bearer   "):
        status, body = _raw_request(server.url, "POST /rpc HTTP/1.1\r\nHost: x\r\n"
                                    f"Authorization: {value}\r\n", json.dumps(W).encode())
        assert status == 401
        assert json.loads(body) == {"error": {
            "code": "AUTH_REQUIRED", "message": "Authorization header must use Bearer scheme"}}


@pytest.mark.parametrize("token,detail", [
    ("abc", "invalid token format: missing 'ns_' prefix"),
    ("ns_ZGVmYXVsdA", "invalid token format: expected 2 parts after prefix, got 1"),
    ("ns_a_b_" + "0" * 64, "invalid token format: expected 2 parts after prefix, got 3"),
    ("ns_ZGVmYXVsdA_" + "0" * 16,
     "invalid token format: random part must be 64 hex characters, got 16"),
    ("ns_ZGVmYXVsdA_" + "g" * 64,
     "invalid token format: random part is not valid hexadecimal: "
     "encoding/hex: invalid byte: U+0067 'g'"),
    ("ns_ZGVmYXVsdA==_" + "0" * 64,
     "invalid token format: namespace part is not valid base64url: "
     "illegal base64 data at input byte 10"),
    ("ns__" + "0" * 64, "invalid token format: namespace is empty"),
])
def test_unparseable_token(server, token, detail):
    status, body = rpc(server.url, W, bearer(token))
    assert status == 401
    assert body == {"error": {"code": "AUTH_INVALID_TOKEN", "message": "Invalid token format",
                              "details": {"error": detail}}}


def test_wrong_secret_and_unknown_namespace_are_403(server):
    wrong = make_token("default")
    assert rpc(server.url, W, bearer(wrong)) == (
        403, {"error": {"code": "AUTH_UNAUTHORIZED",
                        "message": "Token not authorized for namespace",
                        "details": {"namespace": "default"}}})
    ghost = make_token("ghost-" + uuid.uuid4().hex[:6])
    status, body = rpc(server.url, W, bearer(ghost))
    assert status == 403 and body["error"]["details"]["namespace"].startswith("ghost-")


def test_hex_part_either_case_and_query_token(server):
    upper = server.token[:-64] + server.token[-64:].upper()
    assert rpc(server.url, W, bearer(upper))[0] == 403  # parses; hash differs
    # the query parameter wins over the header
    assert rpc(server.url, ["sys.version"], bearer("junk"), {"token": server.token}) == \
        (200, "0.1.0")
    # an empty query token falls back to the header
    assert rpc(server.url, ["sys.version"], bearer(server.token), {"token": ""}) == \
        (200, "0.1.0")


def test_every_method_needs_a_token(server):
    for method in ("sys.version", "sys.health", "ns.create", "ns.list", "stream.get"):
        assert rpc(server.url, [method, "x"])[0] == 401


def test_tokens_are_stored_as_sha256_only(server):
    reg = server.data_dir / "namespaces.registry"
    con = sqlite3.connect(reg)
    rows = dict(con.execute("SELECT id, token_hash FROM namespaces"))
    con.close()
    assert rows["default"] == hashlib.sha256(server.token.encode()).hexdigest()
    blob = b"".join(p.read_bytes() for p in server.data_dir.iterdir() if p.is_file())
    assert server.token.encode() not in blob
    assert server.token not in server.log.read_text()  # never logged when given by --token


# --- isolation -------------------------------------------------------------------------------
def test_namespace_isolation(server):
    a = "iso-a-" + uuid.uuid4().hex[:6]
    b = "iso-b-" + uuid.uuid4().hex[:6]
    ta = rpc(server.url, ["ns.create", a], bearer(server.token))[1]["token"]
    tb = rpc(server.url, ["ns.create", b], bearer(server.token))[1]["token"]
    assert rpc(server.url, ["stream.write", "acct-1", {"type": "T", "data": {"ns": "a"}}],
               bearer(ta))[1] == {"globalPosition": 1, "position": 0}
    # globalPosition is per namespace: b starts at 1 too
    assert rpc(server.url, ["stream.write", "acct-1", {"type": "T", "data": {"ns": "b"}}],
               bearer(tb))[1] == {"globalPosition": 1, "position": 0}
    assert [m[4] for m in rpc(server.url, ["stream.get", "acct-1"], bearer(ta))[1]] == \
        [{"ns": "a"}]
    assert [m[5] for m in rpc(server.url, ["category.get", "acct"], bearer(tb))[1]] == \
        [{"ns": "b"}]
    assert rpc(server.url, ["stream.get", "acct-1"], bearer(server.token))[1] == []
    assert [r["stream"] for r in rpc(server.url, ["ns.streams"], bearer(ta))[1]] == ["acct-1"]
    # token of a cannot be used for b's data: the token picks the namespace; and (unlike the
    # Go server, which has no admin role: docs/serve.md) it cannot see or delete b either
    assert rpc(server.url, ["ns.info", b], bearer(ta))[0] == 403
    assert rpc(server.url, ["ns.info", b], bearer(server.token))[1]["messageCount"] == 1
    assert rpc(server.url, ["ns.delete", b], bearer(ta))[0] == 403
    assert rpc(server.url, ["ns.delete", b], bearer(server.token))[0] == 200
    assert rpc(server.url, ["stream.get", "acct-1"], bearer(tb))[0] == 403
    rpc(server.url, ["ns.delete", a], bearer(server.token))


def test_namespace_files_are_encoded(server):
    nid = "../evil/Ns.db"
    status, res = rpc(server.url, ["ns.create", nid], bearer(server.token))
    assert status == 200
    names = {p.name for p in server.data_dir.iterdir()}
    assert "%2E%2E%2Fevil%2F%4Es%2Edb.db" in names
    assert not (server.data_dir.parent / "evil").exists()
    tok = res["token"]
    assert rpc(server.url, ["stream.write", "s-1", {"type": "T", "data": {}}], bearer(tok))[0] \
        == 200
    assert rpc(server.url, ["ns.delete", nid], bearer(server.token))[0] == 200
    assert "%2E%2E%2Fevil%2F%4Es%2Edb.db" not in {p.name for p in server.data_dir.iterdir()}


# --- test mode ---------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def test_mode_server(tmp_path_factory):
    s = start_server(tmp_path_factory.mktemp("serve-tm") / "data", "--test-mode")
    yield s
    s.stop()


def test_test_mode(test_mode_server):
    url = test_mode_server.url
    # no token, a non-Bearer header, an unparseable token: all run as 'default'
    assert rpc(url, W)[0] == 200
    assert rpc(url, W, {"Authorization": "Basic x"})[1]["position"] == 1
    assert rpc(url, W, bearer("garbage"))[1]["position"] == 2
    got = rpc(url, ["stream.get", "auth-1"], bearer(test_mode_server.token))[1]
    assert len(got) == 3
    # a parseable token with a wrong secret: its namespace, hash not checked
    assert rpc(url, ["stream.version", "auth-1"], bearer(make_token("default")))[1] == 2
    # a namespace that does not exist is not auto-created
    status, body = rpc(url, W, bearer(make_token("nosuch")))
    assert status == 500 and body == {"error": {
        "code": "BACKEND_ERROR", "message": "Failed to write message: namespace not found"}}
    status, body = rpc(url, ["stream.get", "x"], bearer(make_token("nosuch")))
    assert body["error"]["message"] == "Failed to get messages: namespace not found"
    # after ns.create it works, with any secret
    assert rpc(url, ["ns.create", "nosuch"])[0] == 200
    assert rpc(url, W, bearer(make_token("nosuch")))[1] == {"globalPosition": 1, "position": 0}


# --- startup: the default token -------------------------------------------------------------
def _run_until_listening(args, tmp_path):
    """Start serve, wait for /health, stop it; return its log."""
    port = free_port()
    log = tmp_path / f"log-{port}"
    with open(log, "wb") as fh:
        p = subprocess.Popen([exe_path(), "serve", "--port", str(port), *args], stdout=fh,
                             stderr=subprocess.STDOUT)
    try:
        import time

        for _ in range(300):
            try:
                if httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.1)
            if p.poll() is not None:
                break
        return port, p, log
    except BaseException:
        p.kill()
        raise


def _stop(p):
    p.terminate()
    p.wait(10)


def test_generated_token_logged_once_and_works(tmp_path):
    d = tmp_path / "d"
    port, p, log = _run_until_listening(["--data-dir", str(d)], tmp_path)
    try:
        text = log.read_text()
        line = [ln for ln in text.splitlines() if ln.startswith("DEFAULT NAMESPACE TOKEN: ")]
        assert len(line) == 1
        tok = line[0].split(": ", 1)[1]
        assert tok.startswith("ns_ZGVmYXVsdA_") and len(tok) == len("ns_ZGVmYXVsdA_") + 64
        assert rpc(f"http://127.0.0.1:{port}", ["sys.version"], bearer(tok)) == (200, "0.1.0")
    finally:
        _stop(p)
    # restart without --token: nothing generated, the old token still works
    port, p, log = _run_until_listening(["--data-dir", str(d)], tmp_path)
    try:
        assert "DEFAULT NAMESPACE TOKEN" not in log.read_text()
        assert rpc(f"http://127.0.0.1:{port}", ["sys.version"], bearer(tok))[0] == 200
    finally:
        _stop(p)
    # restart with --token: that token replaces the old one (Go keeps the old one)
    new = make_token()
    port, p, log = _run_until_listening(["--data-dir", str(d), "--token", new], tmp_path)
    try:
        url = f"http://127.0.0.1:{port}"
        assert rpc(url, ["sys.version"], bearer(new))[0] == 200
        assert rpc(url, ["sys.version"], bearer(tok))[0] == 403
        assert new not in log.read_text()
    finally:
        _stop(p)


def test_env_token_port_and_data_dir(tmp_path, exe):
    import os
    import time

    tok = make_token()
    port = free_port()
    env = dict(os.environ, EVENTODB_TOKEN=tok, EVENTODB_PORT=str(port),
               EVENTODB_DATA_DIR=str(tmp_path / "envdir"))
    p = subprocess.Popen([exe_path(), "serve"], env=env, stdout=subprocess.DEVNULL,
                         stderr=subprocess.DEVNULL)
    try:
        for _ in range(300):
            try:
                httpx.get(f"http://127.0.0.1:{port}/health", timeout=1)
                break
            except httpx.HTTPError:
                time.sleep(0.1)
        assert rpc(f"http://127.0.0.1:{port}", ["sys.version"], bearer(tok))[0] == 200
        assert (tmp_path / "envdir" / "default.db").exists()
    finally:
        _stop(p)


@pytest.mark.parametrize("token,fragment", [
    ("nope", "--token is not a valid EventoDB token"),
    (None, "--token must be a token of namespace 'default' (it is for namespace 'other')"),
])
def test_bad_token_flag_is_usage_error(exe, tmp_path, token, fragment):
    token = token or make_token("other")
    r = exe("serve", "--data-dir", tmp_path / "d", "--port", free_port(), "--token", token,
            timeout=30)
    assert r.exit_code == 2
    assert fragment in r.stderr and token not in r.stderr


def test_port_in_use_is_one_line_error(exe, server, tmp_path):
    port = server.url.rsplit(":", 1)[1]
    r = exe("serve", "--data-dir", tmp_path / "d", "--port", port, "--token", make_token(),
            timeout=30)
    assert r.exit_code == 1
    assert r.stderr.strip().splitlines()[-1].startswith(
        f"eventodb: error: cannot listen on 127.0.0.1:{port}")
    assert "Traceback" not in r.stderr


def test_store_mode_serves_one_file(cli, tmp_path):
    store = tmp_path / "orders.db"
    r = cli("write", "--store", store, "order-1", "--type", "Placed", "--data", '{"n":1}')
    assert r.exit_code == 0, r
    tok = make_token()
    port, p, log = _run_until_listening(["--store", str(store), "--token", tok], tmp_path)
    try:
        url = f"http://127.0.0.1:{port}"
        got = rpc(url, ["stream.get", "order-1"], bearer(tok))[1]
        assert [m[4] for m in got] == [{"n": 1}]
        assert rpc(url, ["stream.write", "order-1", {"type": "Paid", "data": {}}],
                   bearer(tok))[1] == {"globalPosition": 2, "position": 1}
        assert (tmp_path / "orders.db.namespaces.db").exists()
        res = rpc(url, ["ns.create", "other"], bearer(tok))[1]
        assert (tmp_path / "orders.db.namespaces" / "other.db").exists()
        assert rpc(url, ["ns.delete", "default"], bearer(res["token"]))[0] == 403  # no admin
        status, body = rpc(url, ["ns.delete", "default"], bearer(tok))
        assert status == 400 and "cannot be deleted" in body["error"]["message"]
    finally:
        _stop(p)
    # the file is still an ordinary local store
    r = cli("stream", "get", "--store", store, "order-1", "--format", "ndjson")
    assert [m["type"] for m in r.ndjson()] == ["Placed", "Paid"]


def test_data_dir_and_store_together_is_usage_error(exe, tmp_path):
    r = exe("serve", "--data-dir", tmp_path / "d", "--store", tmp_path / "s.db", timeout=30)
    assert r.exit_code == 2 and "give one" in r.stderr


def test_serve_help(cli):
    r = cli("serve", "--help")
    assert r.exit_code == 0
    for flag in ("--data-dir", "--store", "--host", "--port", "--test-mode", "--token",
                 "--max-body-mib", "--keepalive", "EVENTODB_TOKEN", "EVENTODB_PORT",
                 "EVENTODB_DATA_DIR"):
        assert flag in r.stdout
    assert "Examples:" in r.stdout and "eventodb serve --data-dir" in r.stdout


def test_token_base64_of_namespace_with_underscore(server):
    # '_' in the name itself is fine: my_ns -> bXlfbnM
    nid = "my_ns_" + uuid.uuid4().hex[:4]
    res = rpc(server.url, ["ns.create", nid], bearer(server.token))[1]
    enc = base64.urlsafe_b64encode(nid.encode()).decode().rstrip("=")
    assert res["token"].startswith(f"ns_{enc}_")
    assert rpc(server.url, ["sys.version"], bearer(res["token"]))[0] == 200
    rpc(server.url, ["ns.delete", nid], bearer(server.token))


def test_no_location_serves_the_local_default_store(cli, tmp_path, monkeypatch):
    """Without --data-dir/--store, serve serves the user's default local store as 'default'
    (conftest points XDG_DATA_HOME at a temp dir)."""
    import os

    tok = make_token()
    port, p, log = _run_until_listening(["--token", tok], tmp_path)
    try:
        url = f"http://127.0.0.1:{port}"
        assert rpc(url, ["stream.write", "local-1", {"type": "Hi", "data": {"x": 1}}],
                   bearer(tok))[0] == 200
    finally:
        _stop(p)
    store = os.path.join(os.environ["XDG_DATA_HOME"], "eventodb", "store.db")
    assert f"--store {store}" in log.read_text()
    r = cli("stream", "get", "local-1", "--format", "ndjson")
    assert r.exit_code == 0, r
    assert [(m["type"], m["data"]) for m in r.ndjson()] == [("Hi", {"x": 1})]


def test_test_mode_without_location_uses_a_temporary_directory(tmp_path):
    import re

    port, p, log = _run_until_listening(["--test-mode"], tmp_path)
    try:
        url = f"http://127.0.0.1:{port}"
        assert rpc(url, ["stream.write", "tmp-1", {"type": "T", "data": {}}])[0] == 200
        m = re.search(r"--data-dir (\S+) \(temporary", log.read_text())
        assert m
        from pathlib import Path

        tmpdir = Path(m.group(1))
        assert (tmpdir / "default.db").exists()
        # generated token is shown (default did not exist), and works even in test mode
        assert "DEFAULT NAMESPACE TOKEN: " in log.read_text()
    finally:
        _stop(p)
    assert not tmpdir.exists()
