"""``eventodb store info|check|compact`` on real SQLite files, tampered with behind the tool's back
through plain sqlite3."""

from __future__ import annotations

import os
import sqlite3

import pytest

from eventodb_cli.domain.message import new_message
from eventodb_cli.store.local import LocalStore


def fill(path, n=300, streams=("account-1", "account-2", "order-7", "order-8+retry", "audit")):
    with LocalStore(path, create=True) as s:
        batch = [new_message(streams[i % len(streams)], "Event", {"i": i, "s": "é"},
                             {"m": i} if i % 2 else None) for i in range(n)]
        s.write_batch(batch)


def tamper(path, sql, params=()):
    conn = sqlite3.connect(path)
    conn.execute(sql, params)
    conn.commit()
    conn.close()


def test_info_reports_the_store(cli, store_path):
    fill(store_path)
    r = cli("store", "info", "--store", store_path, "--format", "json")
    assert r.exit_code == 0, r
    info = r.json()
    assert info["path"] == os.path.abspath(store_path)
    assert info["messages"] == 300
    assert info["streams"] == 5
    assert info["categories"] == 3  # account, order, audit
    assert info["headPosition"] == 300
    assert info["schemaVersion"] == 1
    assert info["walMode"] is True and info["journalMode"] == "wal"
    assert info["fileSize"] == os.path.getsize(store_path)
    assert info["createdAt"].endswith("Z")


def test_info_table_and_missing_store(cli, exe, store_path, tmp_path):
    fill(store_path, 10)
    r = cli("store", "info", "--store", store_path, "--format", "table")
    assert r.exit_code == 0
    assert "headPosition" in r.stdout and "10" in r.stdout
    r = exe("store", "info", "--store", str(tmp_path / "absent.db"))
    assert r.exit_code == 4
    assert "store not found" in r.stderr and "Traceback" not in r.stderr
    assert not (tmp_path / "absent.db").exists()


def test_check_clean_store(cli, store_path):
    fill(store_path)
    r = cli("store", "check", "--store", store_path, "--format", "json")
    assert r.exit_code == 0, r
    doc = r.json()
    assert doc["ok"] is True and doc["rows"] == 300 and doc["damaged"] == []
    r = cli("store", "check", "--store", store_path, "--format", "table")
    assert r.stdout.startswith("ok: 300 rows")


def test_check_finds_row_edited_behind_the_tools_back(exe, store_path):
    """Acceptance 3: a row edited directly with sqlite3 is found and listed; exit 1."""
    fill(store_path)
    conn = sqlite3.connect(store_path)
    gpos, mid, stream = conn.execute(
        "SELECT global_position, id, stream_name FROM messages WHERE global_position = 123"
    ).fetchone()
    conn.close()
    tamper(store_path, "UPDATE messages SET data = '{\"i\":999999}' WHERE global_position = 123")
    r = exe("store", "check", "--store", store_path, "--format", "json")
    assert r.exit_code == 1, r
    doc = r.json()
    assert doc["ok"] is False and doc["rows"] == 300
    assert doc["damaged"] == [{"globalPosition": gpos, "id": mid, "streamName": stream,
                               "reason": "checksum mismatch"}]
    assert r.stderr.strip() == "eventodb: error: store check: 1 damaged row(s) in 300 rows"
    # the table lists it too
    r = exe("store", "check", "--store", store_path, "--format", "table")
    assert r.exit_code == 1
    assert f"gpos 123  id {mid}  stream {stream}: checksum mismatch" in r.stdout


@pytest.mark.parametrize("sql, reason", [
    ("UPDATE messages SET stream_name = 'account-9' WHERE global_position = 7",
     "checksum mismatch"),
    ("UPDATE messages SET time = time + 1 WHERE global_position = 7", "checksum mismatch"),
    ("UPDATE messages SET metadata = '{\"forged\":true}' WHERE global_position = 7",
     "checksum mismatch"),
    ("UPDATE messages SET checksum = NULL WHERE global_position = 7", "checksum missing"),
    ("UPDATE messages SET category = 'order' WHERE global_position = 7",
     "category does not match the stream name"),
    ("UPDATE messages SET cardinal_hash = 42 WHERE global_position = 7",
     "cardinal_hash does not match the stream name"),
])
def test_check_each_kind_of_edit(cli, store_path, sql, reason):
    fill(store_path, 20)
    tamper(store_path, sql)
    r = cli("store", "check", "--store", store_path, "--format", "json")
    assert r.exit_code == 1 and r.json()["ok"] is False
    from eventodb_cli.services.storecheck import check_store

    with LocalStore(store_path) as s:
        report = check_store(s)
    assert [d["globalPosition"] for d in report.damaged] == [7]
    assert reason in report.damaged[0]["reason"]


def test_check_lists_every_damaged_row_and_deleted_rows_do_not_count(cli, store_path):
    fill(store_path, 50)
    tamper(store_path, "UPDATE messages SET type = 'X' WHERE global_position % 10 = 0")
    tamper(store_path, "DELETE FROM messages WHERE global_position = 3")
    from eventodb_cli.services.storecheck import check_store

    with LocalStore(store_path) as s:
        report = check_store(s)
    assert report.rows == 49
    assert [d["globalPosition"] for d in report.damaged] == [10, 20, 30, 40, 50]


def test_check_runs_sqlite_integrity_check(exe, store_path):
    """A page of the unique-id index overwritten on disk: every row's checksum still matches
    (rows are read through the table), SQLite's integrity_check does not."""
    fill(store_path, 200)
    conn = sqlite3.connect(store_path)
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    root = conn.execute("SELECT rootpage FROM sqlite_master WHERE name = 'messages_id'").fetchone()[0]
    page = conn.execute("PRAGMA page_size").fetchone()[0]
    conn.close()
    with open(store_path, "r+b") as fh:
        fh.seek((root - 1) * page)
        fh.write(b"\x00" * page)
    r = exe("store", "check", "--store", store_path, "--format", "json")
    assert r.exit_code == 1, r
    doc = r.json()
    assert doc["ok"] is False and doc["damaged"] == [] and doc["rows"] == 200
    assert doc["integrity"] != ["ok"]
    assert "SQLite integrity_check failed" in r.stderr


def test_store_commands_refuse_a_server(cli, exe):
    r = exe("store", "check", "--url", "http://127.0.0.1:9")
    assert r.exit_code == 2
    assert "local store" in r.stderr and "http://127.0.0.1:9" in r.stderr
    r = cli("store", "info", env={"EVENTODB_URL": "http://127.0.0.1:9"})
    assert r.exit_code == 2 and "EVENTODB_URL" in r.stderr


def test_compact_reclaims_space(cli, store_path):
    with LocalStore(store_path, create=True) as s:
        for k in range(20):
            s.write_batch([new_message(f"bulk-{k}", "Big", {"pad": "x" * 2000})
                           for _ in range(50)])
    tamper(store_path, "DELETE FROM messages WHERE stream_name != 'bulk-0'")
    before = os.path.getsize(store_path) + (os.path.getsize(store_path + "-wal")
                                            if os.path.exists(store_path + "-wal") else 0)
    r = cli("store", "compact", "--store", store_path, "--format", "json")
    assert r.exit_code == 0, r
    doc = r.json()
    assert doc["bytesBefore"] == before
    assert doc["bytesAfter"] == os.path.getsize(store_path)
    assert doc["bytesAfter"] < before / 5
    assert doc["saved"] == doc["bytesBefore"] - doc["bytesAfter"]
    # still a healthy store with the surviving rows
    r = cli("store", "check", "--store", store_path, "--format", "json")
    assert r.json()["rows"] == 50 and r.json()["ok"] is True
    r = cli("store", "compact", "--store", store_path, "--format", "table")
    assert "bytes" in r.stdout and "saved" in r.stdout


def test_store_help_has_examples(cli):
    for sub in ("info", "check", "compact"):
        r = cli("store", sub, "--help")
        assert "Examples:\n    eventodb store " + sub in r.stdout


def test_check_progress_goes_to_stderr_only(cli, store_path):
    fill(store_path, 120_000 // 100)
    tamper(store_path, "UPDATE messages SET type = 'Forged' WHERE global_position = 5")
    a = cli("store", "check", "--store", store_path, "--format", "json", "--progress")
    b = cli("store", "check", "--store", store_path, "--format", "json", "--no-progress")
    assert a.exit_code == b.exit_code == 1
    strip = lambda r: {k: v for k, v in r.json().items() if k != "seconds"}  # noqa: E731
    assert strip(a) == strip(b)
    assert [d["globalPosition"] for d in a.json()["damaged"]] == [5]
