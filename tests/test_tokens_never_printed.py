"""No token string appears in any output: commands with a known token, --verbose, error paths
(bad token, refused port, a hanging server, servers that echo the token back), profiles, and
the serve log."""

from __future__ import annotations

import json
import uuid

import pytest

from conftest import free_port, make_token
from eventodb_cli.store.remote import RemoteStore
from test_faults import TinyServer, http_response


@pytest.fixture(scope="module")
def known(server):
    """A namespace with a known token, and some data in it."""
    with RemoteStore(server.url, server.token) as admin:
        info = admin.ns_create("tok-" + uuid.uuid4().hex[:8])
    return info["token"]


def _assert_clean(results, *tokens):
    assert results
    for label, r in results:
        for tok in tokens:
            assert tok not in r.stdout, (label, "stdout")
            assert tok not in r.stderr, (label, "stderr")
            # nor a recognisable piece of it (the 64-hex secret)
            assert tok[-64:] not in r.stdout + r.stderr, label


def test_commands_and_verbose_logs_never_print_the_token(server, known, cli, exe, tmp_path):
    url = server.url
    tf = tmp_path / "token"
    tf.write_text(known + "\n")
    f = tmp_path / "in.ndjson"
    f.write_text("".join(json.dumps({"stream": f"t-{i % 3}", "type": "T", "data": {"i": i}})
                         + "\n" for i in range(30)))
    T = ["--url", url, "--token", known]
    runs = [
        ("write -v", cli("write", "t-1", "-t", "T", "-d", '{"a":1}', "-v", *T)),
        ("write --file -v", cli("write", "--file", str(f), "-v", *T)),
        ("stream get -v", cli("stream", "get", "t-1", "-v", "-o", "json", *T)),
        ("stream last -v", cli("stream", "last", "t-1", "--verbose", *T)),
        ("stream version", exe("stream", "version", "t-1", "-v", *T)),
        ("category get -v", exe("category", "get", "t", "--member", "0", "--size", "2", "-v",
                                *T)),
        ("ns info -v", cli("ns", "info", "-v", "-o", "table", *T)),
        ("ns list -v", cli("ns", "list", "-v", *T)),
        ("ns streams -v", cli("ns", "streams", "--all", "-v", *T)),
        ("ns categories", cli("ns", "categories", "-v", *T)),
        ("server version -v", cli("server", "version", "-v", *T)),
        ("server health -v", cli("server", "health", "-v", *T)),
        ("subscribe -v", exe("subscribe", "--stream", "t-1", "--count", "1", "-v", *T)),
        ("token file", cli("stream", "get", "t-1", "-v", "--url", url, "--token-file",
                           str(tf))),
        ("token in url", exe("stream", "get", "t-1", "-v", "--url", f"{url}/?token={known}")),
        ("env", exe("stream", "get", "t-1", "-v",
                    env={"EVENTODB_URL": url, "EVENTODB_TOKEN": known})),
        # error paths
        ("conflict -v", cli("write", "t-1", "-t", "T", "--expected-version", "99", "-v", *T)),
        ("bad request -v", cli("ns", "streams", "--limit", "5000", "-v", *T)),
        # another namespace's info needs the admin token (a tenant gets 403: docs/serve.md)
        ("missing ns -v", cli("ns", "info", "nope-" + known[-8:], "-v", "--url", url,
                              "--token", server.token)),
        ("delete missing", cli("ns", "delete", "nope-x", "--yes", "-v", *T)),
        ("wrong secret -v", exe("stream", "get", "t-1", "-v", "--url", url, "--token",
                                known[:-64] + "0" * 64)),
        ("refused -v", exe("stream", "get", "t-1", "-v", "--url",
                           f"http://127.0.0.1:{free_port()}", "--token", known)),
        ("subscribe refused", exe("subscribe", "--all", "-v", "--url",
                                  f"http://127.0.0.1:{free_port()}", "--token", known)),
        ("group subscribe", exe("subscribe", "--category", "t", "--member", "0", "--size",
                                "1", "--count", "2", "-v", *T)),
        ("bad subscribe", exe("subscribe", "--category", "t", "--member", "0", "-v", *T)),
    ]
    codes = {label: r.exit_code for label, r in runs}
    assert codes["write -v"] == 0 and codes["conflict -v"] == 3 and codes["refused -v"] == 5
    assert codes["wrong secret -v"] == 5 and codes["missing ns -v"] == 4
    assert "POST " in runs[0][1].stderr  # --verbose really logged requests
    assert "GET " in dict(runs)["subscribe -v"].stderr
    _assert_clean(runs, known, known[:-64] + "0" * 64, server.token)


def test_servers_that_echo_the_token_are_redacted(exe, known):
    """A misbehaving server puts the token in its error body, in a malformed body, in a 401:
    the client still never prints it."""
    bodies = [
        http_response(500, json.dumps({"error": {"code": "BACKEND_ERROR",
                                                 "message": f"bad token {known}"}}).encode()),
        http_response(400, json.dumps({"error": {"code": "INVALID_REQUEST",
                                                 "message": "x", "details": {
                                                     "error": f"?token={known}"}}}).encode()),
        http_response(200, f"[not json {known}".encode()),
        http_response(401, f"Authorization: Bearer {known}".encode(), "text/plain"),
        http_response(200, json.dumps({"echo": known}).encode()),
    ]
    runs = []
    for body in bodies:
        srv = TinyServer(lambda req, body=body: body)
        try:
            r = exe("stream", "get", "t-1", "-v", "--url", srv.url, "--token", known)
            assert r.exit_code != 0
            assert "***" in r.stderr  # redacted, not just absent
            runs.append((body[:40], r))
        finally:
            srv.close()
    _assert_clean(runs, known)


def test_hanging_server_error_has_no_token(exe, known):
    srv = TinyServer(lambda req: None)
    try:
        r = exe("stream", "get", "t-1", "--timeout", "0.3", "-v", "--url", srv.url,
                "--token", known)
    finally:
        srv.close()
    assert r.exit_code == 5
    _assert_clean([("hang", r)], known)


def test_profiles_never_show_the_token(cli, known, server):
    runs = [("add", cli("profile", "add", "p", "--url", server.url, "--token", known))]
    runs += [(a, cli("profile", *a.split())) for a in
             ("list", "list -o json", "show", "show p -o json", "show -o table")]
    runs.append(("use", cli("stream", "get", "t-1", "-v", "--profile", "p")))
    assert runs[-1][1].exit_code == 0
    _assert_clean(runs, known)


def test_ns_create_prints_only_the_new_token(cli, server, known):
    """The one place a token is output: ns create prints the NEW namespace's token, never the
    token used to authenticate (the admin's: a tenant's token may not create namespaces)."""
    r = cli("ns", "create", "tok2-" + uuid.uuid4().hex[:6], "-v", "-o", "json", "--url",
            server.url, "--token", server.token)
    assert r.exit_code == 0, r
    new = r.json()["token"]
    assert new.startswith("ns_") and new not in r.stderr
    _assert_clean([("ns create", r)], known, server.token)


def test_serve_log_has_no_token(server, known):
    """Everything above went through the session server: its log shows no token."""
    with RemoteStore(server.url, known) as s:
        s.stream_version("t-1")
    log = server.log.read_text(errors="replace")
    for tok in (known, server.token):
        assert tok not in log and tok[-64:] not in log
    assert make_token()[-64:] not in log


def test_token_in_url_userinfo_is_used_and_never_printed(server, known, cli, exe):
    """``--url http://user:TOKEN@host/`` (or ``http://TOKEN@host/``): the token is taken out of
    the URL (password, else user name) and used; no output shows it, on success or failure,
    from a flag, EVENTODB_URL or a profile, with -v or a malformed URL."""
    host = server.url.split("://", 1)[1]
    dead = f"127.0.0.1:{free_port()}"
    runs = [
        ("userinfo", exe("stream", "get", "t-1", "-v", "--url", f"http://u:{known}@{host}/")),
        ("user only", exe("stream", "version", "t-1", "-v", "--url", f"http://{known}@{host}")),
        ("env userinfo", exe("category", "get", "t", "-v",
                             env={"EVENTODB_URL": f"http://x:{known}@{host}"})),
        ("refused", exe("stream", "get", "t-1", "-v", "--url", f"http://u:{known}@{dead}/")),
        ("refused query", exe("stream", "get", "t-1", "--url", f"http://{dead}/?token={known}")),
        ("env refused", exe("ns", "list", env={"EVENTODB_URL": f"http://u:{known}@{dead}"})),
        ("malformed", exe("stream", "get", "t-1", "--url", f"http://u:{known}@[::1")),
        ("malformed port", exe("stream", "get", "t-1", "--url", f"http://u:{known}@h:99999/")),
        ("malformed host", exe("stream", "get", "t-1", "--url", f"http://u:{known}@a..b/")),
        ("subscribe", exe("subscribe", "--stream", "t-1", "--count", "1", "-v", "--url",
                          f"http://u:{known}@{host}")),
        ("store cmd on url", exe("store", "info", "--url", f"http://u:{known}@{host}")),
        ("profile add", cli("profile", "add", "ui", "--url", f"http://u:{known}@{host}/")),
        ("profile list", cli("profile", "list", "-o", "json")),
        ("profile list table", cli("profile", "list", "-o", "table")),
        ("profile show", cli("profile", "show", "ui", "-o", "json")),
        ("profile use", cli("stream", "get", "t-1", "-v", "--profile", "ui")),
    ]
    codes = {label: r.exit_code for label, r in runs}
    assert codes["userinfo"] == codes["user only"] == codes["env userinfo"] == 0, runs
    assert codes["subscribe"] == codes["profile use"] == 0, runs
    assert codes["refused"] == codes["refused query"] == codes["env refused"] == 5, runs
    assert codes["malformed"] == codes["malformed port"] == codes["malformed host"] == 2, runs
    assert codes["store cmd on url"] == 2, runs
    assert dict(runs)["profile show"].json()["token"] == "stored"
    assert dict(runs)["profile show"].json()["target"] == f"http://{host}"
    _assert_clean(runs, known)
