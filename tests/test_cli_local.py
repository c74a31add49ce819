"""The foundation commands on a local store, through CliRunner and the executable."""

from __future__ import annotations

import json
import os
import re
import sqlite3

import pytest

MID = "0195d4a4-1111-7000-8000-00000000000{}"


@pytest.fixture
def filled(store_path, cli):
    for i, (stream, typ, data, meta) in enumerate([
        ("account-123", "Deposited", '{"amount":100}', None),
        ("account-123", "Withdrawn", '{"amount":30}', '{"correlationStreamName":"workflow-9"}'),
        ("account-456", "Deposited", '{"amount":7}', '{}'),
        ("account-123+retry", "Deposited", '{"amount":1}', None),
        ("order-1", "Placed", '{}', '{"correlationStreamName":"account-123"}'),
    ]):
        args = ["write", stream, "--type", typ, "--data", data, "--id", MID.format(i),
                "--store", store_path, "--format", "json"]
        if meta:
            args += ["--metadata", meta]
        r = cli(*args)
        assert r.exit_code == 0, r
    return store_path


def test_write_prints_positions(store_path, cli):
    r = cli("write", "account-1", "--type", "Opened", "--store", store_path, "--format", "json")
    assert r.exit_code == 0 and r.json() == {"position": 0, "globalPosition": 1}
    r = cli("write", "account-1", "--type", "Opened", "--store", store_path, "--format", "table")
    assert r.stdout.strip() == "account-1: position 1, global position 2"


def test_message_object_format(filled, cli):
    r = cli("stream", "get", "account-123", "--store", filled, "--format", "json")
    msgs = r.json()
    assert [list(m) for m in msgs][0] == ["id", "streamName", "type", "position",
                                           "globalPosition", "data", "metadata", "time"]
    assert msgs[0]["id"] == MID.format(0) and msgs[0]["data"] == {"amount": 100}
    assert msgs[0]["metadata"] is None
    assert msgs[1]["metadata"] == {"correlationStreamName": "workflow-9"}
    assert [m["position"] for m in msgs] == [0, 1]
    # RFC 3339 UTC, up to nine fraction digits, no trailing zeros (Go RFC3339Nano)
    for m in msgs:
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{0,8}[1-9])?Z", m["time"])
    assert any("." in m["time"] for m in msgs)  # sub-second precision kept


def test_raw_wire_arrays(filled, cli):
    r = cli("stream", "get", "account-123", "--store", filled, "--format", "raw")
    rows = [json.loads(line) for line in r.stdout.splitlines()]
    assert len(rows[0]) == 7 and rows[0][1] == "Deposited" and rows[0][3] == 1
    r = cli("category", "get", "account", "--store", filled, "--format", "raw")
    rows = [json.loads(line) for line in r.stdout.splitlines()]
    assert len(rows[0]) == 8 and [m[4] for m in rows] == [1, 2, 3, 4]  # m[4] = globalPosition


def test_stream_get_positions(filled, cli):
    r = cli("stream", "get", "account-123", "--position", 1, "--store", filled)
    assert [m["position"] for m in r.ndjson()] == [1]
    r = cli("stream", "get", "account-123", "--global-position", 2, "--store", filled)
    assert [m["globalPosition"] for m in r.ndjson()] == [2]
    r = cli("stream", "get", "account-123", "--batch-size", 1, "--store", filled)
    assert len(r.ndjson()) == 1
    r = cli("stream", "get", "account-123", "--batch-size", 1, "--all", "--store", filled)
    assert len(r.ndjson()) == 2
    r = cli("stream", "get", "nothing-1", "--store", filled, "--format", "json")
    assert r.exit_code == 0 and r.json() == []


def test_stream_last_and_version(filled, cli):
    r = cli("stream", "last", "account-123", "--store", filled, "--format", "json")
    assert r.json()["type"] == "Withdrawn"
    r = cli("stream", "last", "account-123", "--type", "Deposited", "--store", filled,
            "--format", "json")
    assert r.json()["position"] == 0
    r = cli("stream", "last", "account-123", "--type", "Nope", "--store", filled,
            "--format", "json")
    assert r.stdout == "null\n"
    r = cli("stream", "version", "account-123", "--store", filled, "--format", "json")
    assert r.stdout == "1\n"
    r = cli("stream", "version", "missing-1", "--store", filled, "--format", "json")
    assert r.stdout == "null\n" and r.exit_code == 0


def test_category_member_and_correlation(filled, cli):
    from eventodb_cli.domain.hashing import member_for

    for size in (1, 2, 3, 4):
        seen = []
        for member in range(size):
            r = cli("category", "get", "account", "--member", member, "--size", size,
                    "--store", filled)
            streams = [m["streamName"] for m in r.ndjson()]
            assert all(member_for(s, size) == member for s in streams)
            seen += streams
        assert sorted(seen) == sorted(["account-123", "account-123", "account-456",
                                       "account-123+retry"])
    # account-123+retry always goes with account-123
    r = cli("category", "get", "account", "--member", 1, "--size", 2, "--store", filled)
    assert {m["streamName"] for m in r.ndjson()} >= {"account-123", "account-123+retry"}
    r = cli("category", "get", "order", "--correlation", "account", "--store", filled)
    assert [m["streamName"] for m in r.ndjson()] == ["order-1"]
    r = cli("category", "get", "account", "--correlation", "workflow", "--store", filled)
    assert [m["globalPosition"] for m in r.ndjson()] == [2]
    r = cli("category", "get", "account", "--position", 3, "--batch-size", 1, "--store", filled)
    assert [m["globalPosition"] for m in r.ndjson()] == [3]
    r = cli("category", "get", "", "--store", filled)
    assert len(r.ndjson()) == 5


@pytest.mark.parametrize("args, msg", [
    (["--member", 0], "--member and --size must be given together"),
    (["--size", 3], "--member and --size must be given together"),
    (["--member", 3, "--size", 3], "--member must be < --size"),
    (["--member", -1, "--size", 3], "--member must be >= 0"),
    (["--member", 0, "--size", 0], "--size must be >= 1"),
    (["--batch-size", -5], "--batch-size must be >= 1, or -1 for unlimited"),
    (["--batch-size", 0], "--batch-size must be >= 1, or -1 for unlimited"),
])
def test_category_usage_errors_before_store_access(tmp_path, cli, args, msg):
    missing = str(tmp_path / "never.db")
    r = cli("category", "get", "account", *args, "--store", missing)
    assert r.exit_code == 2, r
    assert msg in r.stderr and r.stderr.count("\n") == 1
    assert not os.path.exists(missing)


def test_reads_never_create_a_store(tmp_path, cli):
    missing = str(tmp_path / "nope.db")
    for args in (["stream", "get", "a-1"], ["stream", "version", "a-1"],
                 ["category", "get", "a"], ["stream", "last", "a-1"]):
        r = cli(*args, "--store", missing)
        assert r.exit_code == 4, r
        assert "store not found" in r.stderr
    assert not os.path.exists(missing)


def test_default_store_location(cli, tmp_path, monkeypatch):
    r = cli("write", "x-1", "--type", "T", "--format", "json")
    assert r.exit_code == 0
    assert os.path.exists(tmp_path / "xdg-data" / "eventodb" / "store.db")
    monkeypatch.setenv("EVENTODB_STORE", str(tmp_path / "env.db"))
    cli("write", "x-1", "--type", "T")
    assert os.path.exists(tmp_path / "env.db")


@pytest.mark.parametrize("args, code, msg", [
    (["write", "a-1", "--type", "T", "--data", "{bad"], 2, "--data is not valid JSON"),
    (["write", "a-1", "--type", "T", "--data", "[1]"], 2, "message.data must be an object"),
    (["write", "a-1", "--type", "T", "--metadata", "3"], 2, "message.metadata must be an object"),
    (["write", "a-1", "--type", "T", "--id", "nope"], 2, "invalid UUID format"),
    (["write", "a-1"], 2, "missing --type"),
    (["write", "--type", "T"], 2, "missing STREAM"),
    (["write", "a-1", "--type", "T", "--data", "@/no/such/file"], 2, "cannot read"),
    (["stream", "get", "a-1", "--bogus"], 2, "No such option"),
    (["stream", "get", "a-1", "--batch-size", "-2"], 2, "--batch-size must be >= 1"),
    (["nonsense"], 2, "No such command"),
])
def test_bad_input_one_line_no_traceback(store_path, cli, exe, args, code, msg):
    for run in (cli, exe):
        r = run(*args, "--store", store_path)
        assert r.exit_code == code, (run, r)
        assert msg in r.stderr, r
        assert "Traceback" not in r.stderr and "Traceback" not in r.stdout


def test_unusable_store_files(tmp_path, exe):
    junk = tmp_path / "junk.db"
    junk.write_bytes(b"this is not sqlite at all" * 100)
    r = exe("stream", "get", "a-1", "--store", junk)
    assert r.exit_code == 1 and "not a usable SQLite store" in r.stderr, r
    other = tmp_path / "other.db"
    sqlite3.connect(other).execute("CREATE TABLE t(x)").connection.commit()
    r = exe("write", "a-1", "--type", "T", "--store", other)
    assert r.exit_code == 1 and "not an eventodb store" in r.stderr, r
    r = exe("stream", "get", "a-1", "--store", tmp_path)  # a path that cannot be a store: usage
    assert r.exit_code == 2 and "is a directory" in r.stderr, r
    unreadable = tmp_path / "ro.db"
    exe("write", "a-1", "--type", "T", "--store", unreadable)
    os.chmod(unreadable, 0)
    if os.geteuid() != 0:  # root reads anything
        r = exe("stream", "get", "a-1", "--store", unreadable)
        assert r.exit_code == 2 and "permission denied" in r.stderr and "Traceback" not in r.stderr


def test_version_conflict_exit_3(store_path, exe):
    assert exe("write", "c-1", "--type", "T", "--expected-version", -1,
               "--store", store_path).exit_code == 0
    r = exe("write", "c-1", "--type", "T", "--expected-version", -1, "--store", store_path)
    assert r.exit_code == 3 and "Expected version -1, stream is at version 0" in r.stderr
    r = exe("write", "c-2", "--type", "T", "--expected-version", 0, "--store", store_path)
    assert r.exit_code == 3  # EDGE-008: a new stream is at version -1


def test_duplicate_id_single_write(store_path, exe):
    mid = MID.format(9)
    assert exe("write", "d-1", "--type", "T", "--id", mid, "--store", store_path).exit_code == 0
    r = exe("write", "d-2", "--type", "T", "--id", mid, "--store", store_path)
    assert r.exit_code == 1 and "message id already exists" in r.stderr
    assert exe("stream", "version", "d-2", "--store", store_path,
               "--format", "json").stdout == "null\n"


def test_data_from_stdin_and_file(store_path, cli, tmp_path):
    f = tmp_path / "d.json"
    f.write_text('{"from": "file", "ü": "ß"}')
    cli("write", "f-1", "--type", "T", "--data", f"@{f}", "--store", store_path)
    cli("write", "f-1", "--type", "T", "--data", "-", "--store", store_path,
        input='{"from": "stdin"}')
    r = cli("stream", "get", "f-1", "--store", store_path)
    assert [m["data"] for m in r.ndjson()] == [{"from": "file", "ü": "ß"}, {"from": "stdin"}]


def test_table_output_renders(filled, cli):
    r = cli("category", "get", "account", "--store", filled, "--format", "table")
    assert r.exit_code == 0 and "account-456" in r.stdout and "gpos" in r.stdout
    r = cli("assign", "account-123", "--size", 4, "--format", "table")
    assert "abs(2318431741638412123) % 4 = 3" in r.stdout


def test_executable_version_and_help(exe):
    r = exe("--version")
    assert r.exit_code == 0 and r.stdout.startswith("eventodb, version ")
    r = exe("--help")
    assert r.exit_code == 0 and "category" in r.stdout
    r = exe("category", "get", "--help")
    assert "Examples:" in r.stdout and "--member" in r.stdout


def test_broken_pipe_is_quiet(filled, tmp_path):
    import subprocess
    from conftest import exe_path

    p = subprocess.run(f"'{exe_path()}' category get '' --all --store '{filled}' | head -1",
                       shell=True, capture_output=True, text=True)
    assert p.returncode == 0 and "Traceback" not in p.stderr and "Error" not in p.stderr


def test_bare_command_prints_overview(exe):
    r = exe()
    assert r.exit_code == 0
    assert "Consumer groups:" in r.stdout and "Common tasks:" in r.stdout


def test_quiet_and_no_color_flags(tmp_path, exe):
    src = tmp_path / "in.ndjson"
    src.write_text('{"stream":"q-1","type":"T","data":{}}\n')
    r = exe("--quiet", "--no-color", "write", "--file", src, "--store", tmp_path / "q.db",
            "--format", "json")
    assert r.exit_code == 0 and r.stderr == "" and r.json()["written"] == 1


def test_dynamic_completion_of_categories_and_streams(filled, exe):
    env = {"EVENTODB_STORE": filled, "_EVENTODB_COMPLETE": "bash_complete"}
    r = exe(env=dict(env, COMP_WORDS="eventodb category get acc", COMP_CWORD="3"))
    assert r.stdout.split() == ["plain,account"]
    r = exe(env=dict(env, COMP_WORDS="eventodb stream get account-1", COMP_CWORD="3"))
    assert r.stdout.split() == ["plain,account-123", "plain,account-123+retry"]
    r = exe(env=dict(env, COMP_WORDS="eventodb lag ord", COMP_CWORD="2"))
    assert r.stdout.split() == ["plain,order"]
