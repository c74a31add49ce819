"""PostgresStore against a real PostgreSQL with the real Message DB (tests/pg_fixture.py):
writes through write_message, reads through get_*_messages, errors mapped to our exit codes,
the password never printed."""

from __future__ import annotations

import json
import uuid

import psycopg
import pytest

from eventodb_cli.domain.message import NewMessage, canonical_json
from eventodb_cli.errors import DuplicateMessageId, Unreachable, UsageError, VersionConflict
from eventodb_cli.store.postgres import PostgresStore, mask_url

from pg_fixture import PASSWORD


def _id(n: int) -> str:
    return str(uuid.UUID(int=n))


def _count(url: str) -> int:
    with psycopg.connect(url) as c:
        return c.execute("SELECT count(*) FROM message_store.messages").fetchone()[0]


def test_write_and_read_back_through_message_db_functions(mdb_url):
    with PostgresStore(mdb_url) as s:
        assert s.kind == "postgres"
        r = s.write_batch([NewMessage("account-1", "Opened", '{"b":1,"a":[1.5,"é"]}', None,
                                      _id(1), -1),
                           NewMessage("account-1", "Deposited", '{"amount":10}',
                                      '{"correlationStreamName":"workflow-1"}', _id(2), 0),
                           NewMessage("account-2", "Opened", "{}")])
        assert [(x.position, x.global_position) for x in r] == [(0, 1), (1, 2), (0, 3)]
        got = s.stream_get("account-1")
        assert [m.id for m in got] == [_id(1), _id(2)]
        assert got[0].data == '{"a":[1.5,"é"],"b":1}'  # canonical JSON, not jsonb's text
        assert got[0].metadata is None
        assert got[1].metadata == canonical_json({"correlationStreamName": "workflow-1"})
        assert got[0].time % 1000 == 0 and got[0].time > 1_700_000_000 * 10**9  # us, UTC
        assert s.stream_version("account-1") == 1
        assert s.stream_version("account-9") is None
        assert s.stream_last("account-1").type == "Deposited"
        assert s.stream_last("account-1", "Opened").id == _id(1)
        assert s.stream_last("account-1", "Nope") is None
        assert [m.global_position for m in s.category_get("account")] == [1, 2, 3]
        assert [m.id for m in s.category_get("account", correlation="workflow")] == [_id(2)]
        assert s.category_head("account") == 3
        assert s.category_head("nothing") is None
        assert [m.position for m in s.stream_get("account-1", global_position=2)] == [1]


def test_version_conflict_leaves_nothing_of_the_batch(mdb_url):
    with PostgresStore(mdb_url) as s:
        s.write(NewMessage("account-1", "Opened", "{}", None, _id(1)))
        with pytest.raises(VersionConflict) as ei:
            s.write_batch([NewMessage("account-2", "Opened", "{}"),
                           NewMessage("account-1", "Again", "{}", None, None, 5)])
        assert (ei.value.stream, ei.value.expected, ei.value.actual) == ("account-1", 5, 0)
        assert ei.value.exit_code == 3
        assert s.stream_version("account-2") is None  # the batch's first write rolled back
        with pytest.raises(DuplicateMessageId) as ei:
            s.write_batch([NewMessage("account-3", "Opened", "{}"),
                           NewMessage("account-3", "Opened", "{}", None, _id(1))])
        assert ei.value.message_id == _id(1)
        assert s.stream_version("account-3") is None
    assert _count(mdb_url) == 1


def test_bad_group_arguments_are_usage_errors(mdb_url):
    with PostgresStore(mdb_url) as s:
        with pytest.raises(UsageError):
            s.category_get("account", member=3, size=3)
        with pytest.raises(UsageError):
            s.category_get("account", member=1)
        # a size beyond Message DB's smallint cast still reads, with the same formula
        s.write(NewMessage("account-123", "Opened", "{}"))
        from eventodb_cli.domain.hashing import member_for

        m = member_for("account-123", 40000)
        assert len(s.category_get("account", member=m, size=40000)) == 1


def test_cli_exit_codes_and_one_line_errors(mdb_url, cli):
    r = cli("write", "account-1", "-t", "Opened", "--expected-version", "-1", "--url", mdb_url)
    assert r.exit_code == 0, r
    r = cli("write", "account-1", "-t", "Opened", "--expected-version", "-1", "--url", mdb_url)
    assert r.exit_code == 3 and len(r.stderr.strip().splitlines()) == 1, r
    r = cli("category", "get", "account", "--member", "3", "--size", "3", "--url", mdb_url)
    assert r.exit_code == 2, r


def test_wrong_password_and_no_server_exit_5_and_never_print_the_password(messagedb, cli, exe):
    db = messagedb.create_db()
    bad = messagedb.url(db, password="wrong-Pa55word")
    r = cli("stream", "version", "account-1", "--url", bad)
    assert r.exit_code == 5, r
    assert "wrong-Pa55word" not in r.stdout + r.stderr
    assert "Traceback" not in r.stderr and len(r.stderr.strip().splitlines()) == 1
    assert "password authentication failed" in r.stderr
    nobody = f"postgresql://u:{PASSWORD}@127.0.0.1:1/x"
    r = exe("stream", "version", "account-1", "--url", nobody)
    assert r.exit_code == 5, r
    assert PASSWORD not in r.stdout + r.stderr
    assert "***" in r.stderr


def test_password_from_token_file_and_pgpassword(messagedb, cli, tmp_path, monkeypatch):
    db = messagedb.create_db()
    url = messagedb.url(db, password=None)
    f = tmp_path / "pw"
    f.write_text(PASSWORD + "\n")
    r = cli("write", "account-1", "-t", "Opened", "--url", url, "--token-file", str(f))
    assert r.exit_code == 0, r
    r = cli("stream", "version", "account-1", "--url", url, "--token", "nope")
    assert r.exit_code == 5 and "nope" not in r.stderr, r
    monkeypatch.setenv("PGPASSWORD", PASSWORD)
    r = cli("stream", "version", "account-1", "-o", "json", "--url", url)
    assert r.exit_code == 0 and r.stdout.strip() == "0", r


def test_any_role_with_message_db_privileges(messagedb, cli):
    """Message DB's own message_store role (search_path set by us, not by the role)."""
    db = messagedb.create_db()
    url = messagedb.url(db, user="message_store")
    r = cli("write", "account-1", "-t", "Opened", "-o", "json", "--url", url)
    assert r.exit_code == 0, r
    r = cli("category", "get", "account", "--member", "0", "--size", "1", "-o", "json",
            "--url", url)
    assert r.exit_code == 0 and len(r.json()) == 1, r


def test_mask_url_and_repr():
    u = "postgresql://me:hunter2@db.example:5432/app?sslmode=require&password=x2"
    assert "hunter2" not in mask_url(u) and "x2" not in mask_url(u)
    assert mask_url(u).startswith("postgresql://me:***@db.example:5432/app")


def test_not_a_message_db_database(messagedb, cli):
    messagedb.psql("CREATE DATABASE plain_pg")
    r = cli("stream", "version", "account-1", "--url", messagedb.url("plain_pg"))
    assert r.exit_code == 1, r
    assert "Message DB is not installed" in r.stderr and PASSWORD not in r.stderr


def test_stream_last_with_type_on_message_db_before_1_3(messagedb):
    """Message DB < 1.3.0 has get_last_stream_message(stream_name) only."""
    db = messagedb.create_db()
    messagedb.psql("DROP FUNCTION message_store.get_last_stream_message(varchar, varchar); "
                   "CREATE FUNCTION message_store.get_last_stream_message(stream_name varchar) "
                   "RETURNS SETOF message_store.message AS $$ SELECT id::varchar, "
                   "stream_name::varchar, type::varchar, position, global_position, "
                   "data::varchar, metadata::varchar, time FROM message_store.messages m "
                   "WHERE m.stream_name = $1 ORDER BY position DESC LIMIT 1 $$ LANGUAGE sql",
                   db=db)
    with PostgresStore(messagedb.url(db)) as s:
        s.write_batch([NewMessage("a-1", "A", "{}"), NewMessage("a-1", "B", "{}")])
        assert s.stream_last("a-1").type == "B"
        assert s.stream_last("a-1", "A").position == 0


def test_import_needs_more_than_the_message_store_role(messagedb, cli, tmp_path):
    """Import writes the table and moves the sequence: Message DB's message_store role may
    INSERT but not setval, so it is refused in one line and nothing of the batch stays."""
    db = messagedb.create_db()
    src = messagedb.url(messagedb.create_db())
    assert cli("write", "a-1", "-t", "T", "--url", src).exit_code == 0
    f = tmp_path / "x.ndjson"
    assert cli("export", "-O", f, "--url", src).exit_code == 0
    r = cli("import", f, "--url", messagedb.url(db, user="message_store"))
    assert r.exit_code == 1 and "permission denied" in r.stderr, r
    assert len(r.stderr.strip().splitlines()) == 1 and PASSWORD not in r.stderr
    assert _count(messagedb.url(db)) == 0


def test_write_batch_existing_ok_skips_stored_ids(mdb_url):
    """What a resumed write --file sends (services/writes.py, as on a server)."""
    from eventodb_cli.domain.message import AlreadyWritten

    with PostgresStore(mdb_url) as s:
        s.write_batch([NewMessage("r-1", "A", "{}", None, _id(1))])
        got = s.write_batch([NewMessage("r-1", "A", "{}", None, _id(1).upper()),
                             NewMessage("r-1", "B", "{}", None, _id(2)),
                             NewMessage("r-2", "C", "{}")], existing_ok=True)
        assert isinstance(got[0], AlreadyWritten) and tuple(got[0]) == (0, 1)
        assert [tuple(r) for r in got[1:]] == [(1, 2), (0, 3)]
        assert not isinstance(got[1], AlreadyWritten)
        with pytest.raises(DuplicateMessageId):
            s.write_batch([NewMessage("r-1", "A", "{}", None, _id(1))])


def test_url_forms_options_and_masked_manifest(messagedb, cli, tmp_path):
    """postgres:// too, libpq query parameters kept (our search_path is added to any
    ``options``), the password masked in an export manifest and in --verbose output."""
    db = messagedb.create_db()
    url = messagedb.url(db).replace("postgresql://", "postgres://") + \
        "?sslmode=disable&options=-c%20statement_timeout%3D5000"
    r = cli("write", "account-1", "-t", "Opened", "-o", "json", "--url", url)
    assert r.exit_code == 0, r
    out = tmp_path / "e.ndjson"
    r = cli("export", "-O", out, "--url", url)
    assert r.exit_code == 0, r
    manifest = (tmp_path / "e.ndjson.manifest.json").read_text()
    assert PASSWORD not in manifest and "postgres:***@" in manifest
    r = cli("category", "get", "account", "--verbose", "--url", url)
    assert r.exit_code == 0 and "get_category_messages" in r.stderr, r
    assert PASSWORD not in r.stderr + r.stdout


def test_local_store_commands_do_not_import_psycopg(tmp_path):
    import subprocess
    import sys

    code = ("import sys\n"
            "from eventodb_cli.cli.main import cli\n"
            "try:\n"
            "    cli.main(['stream', 'version', 'a-1', '--store', sys.argv[1]])\n"
            "except SystemExit:\n"
            "    pass\n"
            "print('psycopg' in sys.modules)\n")
    p = subprocess.run([sys.executable, "-c", code, str(tmp_path / "none.db")],
                       capture_output=True, text=True, timeout=60)
    assert p.stdout.strip().splitlines()[-1] == "False", p


def test_nul_character_is_a_one_line_usage_error(mdb_url, cli):
    r = cli("write", "nul-1", "-t", "T", "-d", '{"a":"\\u0000"}', "--url", mdb_url)
    assert r.exit_code == 2 and "jsonb" in r.stderr, r
    assert len(r.stderr.strip().splitlines()) == 1
    assert cli("stream", "version", "nul-1", "-o", "json", "--url", mdb_url).stdout.strip() == \
        "null"


@pytest.mark.parametrize("url", ["postgresql://u:sekret9@127.0.0.1:notaport/db",
                                 "postgresql://u:sekret9@[::1/db",
                                 "postgresql://u:sekret9@127.0.0.1:5/db?sslmode=bogus"])
def test_malformed_urls_are_usage_errors(cli, url):
    r = cli("stream", "version", "a-1", "--url", url)
    assert r.exit_code == 2, r
    assert "sekret9" not in r.stderr and len(r.stderr.strip().splitlines()) == 1
    assert "\\n" not in r.stderr


def test_a_terminated_connection_is_opened_again(mdb_url):
    """A restarted server or a killed backend: the next call runs on a new connection (a
    following consumer waits out an outage and continues)."""
    with PostgresStore(mdb_url) as s:
        s.write(NewMessage("k-1", "A", "{}"))
        with psycopg.connect(mdb_url, autocommit=True) as admin:
            admin.execute("SELECT pg_terminate_backend(%s)", (s._pg.info.backend_pid,))
        assert s.stream_version("k-1") == 0  # a read: retried once on a new connection
        with psycopg.connect(mdb_url, autocommit=True) as admin:
            admin.execute("SELECT pg_terminate_backend(%s)", (s._pg.info.backend_pid,))
        with pytest.raises(Unreachable):
            s.write(NewMessage("k-1", "B", "{}"))  # a write is not retried blindly...
        assert s.write(NewMessage("k-1", "B", "{}")).position == 1  # ...the next one connects
