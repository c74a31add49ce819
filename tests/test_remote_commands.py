"""The server commands' output and flags: ns, server, subscribe (against eventodb serve)."""

from __future__ import annotations

import json
import subprocess
import time
import uuid

import pytest

from conftest import exe_path, make_token, start_server
from eventodb_cli.domain.message import new_message
from eventodb_cli.store.remote import RemoteStore


@pytest.fixture
def ns_token(server):
    with RemoteStore(server.url, server.token) as admin:
        return admin.ns_create("cmd-" + uuid.uuid4().hex[:10])["token"]


def test_ns_create_table_shows_the_token_once_and_a_note(cli, server):
    name = "cmdc-" + uuid.uuid4().hex[:8]
    r = cli("ns", "create", name, "--description", "Tenant", "-o", "table",
            "--url", server.url, "--token", server.token)
    assert r.exit_code == 0, r
    lines = dict(line.split(None, 1) for line in r.stdout.splitlines())
    assert lines["namespace"] == name and lines["token"].startswith("ns_")
    assert r.stderr == "(the token is shown only once: save it now)\n"
    info = cli("ns", "info", name, "-o", "json", "--url", server.url, "--token",
               server.token).json()
    assert info["description"] == "Tenant" and info["messageCount"] == 0
    # the printed token opens the new namespace
    assert cli("stream", "version", "x-1", "-o", "json", "--url", server.url, "--token",
               lines["token"]).stdout == "null\n"


def test_ns_create_with_a_chosen_token(cli, server):
    name = "cmdt-" + uuid.uuid4().hex[:8]
    tok = make_token(name)
    r = cli("ns", "create", name, "--new-token", tok, "-o", "json", "--url", server.url,
            "--token", server.token)
    assert r.json()["token"] == tok
    bad = cli("ns", "create", name + "x", "--new-token", tok, "--url", server.url,
              "--token", server.token)
    assert bad.exit_code == 2 and "is for namespace" in bad.stderr


def test_ns_delete_needs_yes_without_a_terminal(cli, server):
    name = "cmdd-" + uuid.uuid4().hex[:8]
    T = ["--url", server.url, "--token", server.token]
    assert cli("ns", "create", name, *T).exit_code == 0
    r = cli("ns", "delete", name, *T)
    assert r.exit_code == 2 and "without --yes" in r.stderr
    r = cli("ns", "delete", name, "--yes", "-o", "json", *T)
    assert r.exit_code == 0 and r.json()["namespace"] == name
    assert cli("ns", "info", name, *T).exit_code == 4


def test_ns_list_and_streams_paging(cli, server, ns_token):
    T = ["--url", server.url, "--token", ns_token]
    with RemoteStore(server.url, ns_token) as s:
        s.write_batch([new_message(f"page-{i:02d}", "T", {}) for i in range(25)])
    # ns list is the admin's (the default namespace's token); a tenant gets 403
    assert cli("ns", "list", *T).exit_code == 5
    rows = cli("ns", "list", "-o", "ndjson", "--url", server.url, "--token", server.token).ndjson()
    assert "default" in {r["namespace"] for r in rows}
    one = cli("ns", "streams", "--limit", "10", "-o", "ndjson", *T).ndjson()
    assert [r["stream"] for r in one] == [f"page-{i:02d}" for i in range(10)]
    allrows = cli("ns", "streams", "--limit", "10", "--all", "-o", "ndjson", *T).ndjson()
    assert [r["stream"] for r in allrows] == [f"page-{i:02d}" for i in range(25)]
    nxt = cli("ns", "streams", "--cursor", "page-09", "--limit", "3", "-o", "json", *T).json()
    assert [r["stream"] for r in nxt] == ["page-10", "page-11", "page-12"]
    assert cli("ns", "streams", "--limit", "0", *T).exit_code == 2
    cats = cli("ns", "categories", "-o", "json", *T).json()
    assert cats == [{"category": "page", "messageCount": 25, "streamCount": 25}]


def test_server_version_and_health(cli, server):
    r = cli("server", "version", "--url", server.url, "-o", "table")
    assert r.exit_code == 0 and r.stdout.strip() == \
        cli("server", "version", "--url", server.url, "-o", "json").json()["version"]
    assert cli("server", "health", "--url", server.url, "-o", "table").stdout == "ok\n"


@pytest.mark.parametrize("args, msg", [
    ([], "give one of --stream, --category or --all"),
    (["--stream", "a-1", "--all"], "give one of"),
    (["--stream", "a-1", "--member", "0", "--size", "2"], "--member/--size go with --category"),
    (["--category", "a", "--member", "0"], "--member and --size must be given together"),
    (["--category", "a", "--member", "2", "--size", "2"], "--member must be < --size"),
    (["--all", "--count", "0"], "--count must be >= 1"),
    (["--all", "--position", "-1"], "--position must be >= 0"),
])
def test_subscribe_usage_errors(cli, server, args, msg):
    r = cli("subscribe", *args, "--url", server.url, "--token", server.token)
    assert r.exit_code == 2 and msg in r.stderr, r


def test_subscribe_category_group_replays_then_counts(exe, server, ns_token):
    with RemoteStore(server.url, ns_token) as s:
        for i in range(6):
            s.write(new_message(f"grp-{i}", "T", {}))
    r = exe("subscribe", "--category", "grp", "--member", "1", "--size", "2", "--count", "2",
            "--url", server.url, "--token", ns_token)
    assert r.exit_code == 0, r
    from eventodb_cli.domain.hashing import member_for

    want = [f"grp-{i}" for i in range(6) if member_for(f"grp-{i}", 2) == 1][:2]
    assert [p["stream"] for p in r.ndjson()] == want
    assert all(list(p) == ["stream", "position", "globalPosition"] for p in r.ndjson())


def test_subscribe_gives_up_after_max_reconnects(tmp_path):
    srv = start_server(tmp_path / "data")
    try:
        with RemoteStore(srv.url, srv.token) as s:
            s.write(new_message("gone-1", "T", {}))
        p = subprocess.Popen([exe_path(), "subscribe", "--stream", "gone-1",
                              "--max-reconnects", "2", "--url", srv.url, "--token", srv.token],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        first = json.loads(p.stdout.readline())
        assert first["position"] == 0
        srv.stop()  # the server goes away for good
        t0 = time.monotonic()
        out, err = p.communicate(timeout=60)
        assert p.returncode == 5, err
        assert err.startswith("eventodb: error: cannot connect to ") and err.count("\n") == 1
        assert time.monotonic() - t0 < 30
    finally:
        srv.stop()


def test_import_stream_events_and_force(server, ns_token):
    from eventodb_cli.domain.message import Message
    from eventodb_cli.domain.records import to_record_line

    recs = [Message(str(uuid.UUID(int=i + 1)), f"imp-{i % 3}", "T", i // 3, i + 1, "{}", None,
                    1_700_000_000_123_456_789 + i) for i in range(2500)]
    with RemoteStore(server.url, ns_token) as s:
        events = list(s.import_stream((to_record_line(m) + "\n").encode() for m in recs))
        assert [e.get("imported") for e in events[:2]] == [1000, 2000]
        assert events[-1]["done"] is True and events[-1]["imported"] == 2500
        got = s.stream_get("imp-1", batch_size=2)
        assert [(m.id, m.global_position, m.time) for m in got] == \
            [(recs[1].id, 2, recs[1].time), (recs[4].id, 5, recs[4].time)]
        # a clash is reported in the event stream, with its line
        bad = list(s.import_stream([(to_record_line(recs[0]) + "\n").encode()]))
        assert bad[-1]["error"] == "POSITION_EXISTS" and bad[-1]["line"] == 1
        bad = list(s.import_stream([b'\n{"id": "x", "pos": "1", '
                                    b'"time": "2025-01-15T10:00:00Z"}\n']))
        assert bad[-1]["error"] == "INVALID_JSON" and bad[-1]["line"] == 2
        # force replaces everything
        done = list(s.import_stream([(to_record_line(recs[0]) + "\n").encode()], force=True))
        assert done[-1]["done"] is True
        assert s.message_count() == 1
        assert s.requests >= 6
