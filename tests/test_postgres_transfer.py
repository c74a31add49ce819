"""Export and import on Message DB (issue 11, acceptance 3): EventoDB's export format, global
positions kept, byte-identical round trips through a local store."""

from __future__ import annotations

import json

import psycopg

from eventodb_cli.store.local import LocalStore
from eventodb_cli.store.postgres import PostgresStore

from test_parity import dataset_us


def _loaded(messagedb) -> str:
    url = messagedb.url(messagedb.create_db())
    with PostgresStore(url) as s:
        assert s.import_records(dataset_us(), batch_size=64) == 300
    return url


def test_export_message_db_import_local_export_again_byte_identical(messagedb, cli, tmp_path):
    url = _loaded(messagedb)
    a, b = tmp_path / "a.ndjson", tmp_path / "b.ndjson"
    r = cli("export", "-O", a, "--url", url)
    assert r.exit_code == 0, r
    local = str(tmp_path / "l.db")
    r = cli("import", a, "--verify", "--store", local)
    assert r.exit_code == 0, r
    r = cli("export", "-O", b, "--store", local)
    assert r.exit_code == 0, r
    assert a.read_bytes() == b.read_bytes()
    assert len(a.read_bytes().splitlines()) == 300
    # and back again: a fresh Message DB database from the local export, exported once more
    url2 = messagedb.url(messagedb.create_db())
    r = cli("import", b, "--verify", "--url", url2)
    assert r.exit_code == 0, r
    c = tmp_path / "c.ndjson"
    assert cli("export", "-O", c, "--url", url2).exit_code == 0
    assert c.read_bytes() == a.read_bytes()
    # some categories, merged by global position
    r = cli("export", "-c", "account,order", "--url", url)
    assert r.exit_code == 0, r
    recs = [json.loads(x) for x in r.stdout.split("\n") if x]  # data holds U+2028
    assert recs and all(x["stream"].split("-")[0] in ("account", "order") for x in recs)
    assert [x["gpos"] for x in recs] == sorted(x["gpos"] for x in recs)


def test_import_keeps_global_positions_and_writes_continue_after_them(messagedb, cli, tmp_path):
    url = _loaded(messagedb)
    with PostgresStore(url) as s:
        head = s.category_head("")
        assert head == dataset_us()[-1].global_position > 300  # gaps kept
    r = cli("write", "account-1", "-t", "After", "-o", "json", "--url", url)
    assert r.exit_code == 0, r
    assert r.json()["globalPosition"] == head + 1
    # an import that clashes with stored positions: exit 1, one line, the batch not applied
    f = tmp_path / "again.ndjson"
    assert cli("export", "-O", f, "--url", url).exit_code == 0
    r = cli("import", f, "--url", url)
    assert r.exit_code == 1 and "clash" in r.stderr and len(r.stderr.strip().splitlines()) == 1
    with psycopg.connect(url) as c:
        assert c.execute("SELECT count(*) FROM message_store.messages").fetchone()[0] == 301
    # --force replaces everything
    r = cli("import", f, "--force", "--yes", "--url", url)
    assert r.exit_code == 0, r
    with psycopg.connect(url) as c:
        assert c.execute("SELECT count(*) FROM message_store.messages").fetchone()[0] == 301


def test_import_is_one_transaction_a_bad_line_leaves_message_db_as_it_was(messagedb, cli,
                                                                           tmp_path):
    src = _loaded(messagedb)
    f = tmp_path / "all.ndjson"
    assert cli("export", "-O", f, "--url", src).exit_code == 0
    lines = f.read_bytes().split(b"\n")
    lines[200] = b'{"id": "broken"'
    bad = tmp_path / "bad.ndjson"
    bad.write_bytes(b"\n".join(lines))
    url = messagedb.url(messagedb.create_db())
    assert cli("write", "keep-1", "-t", "Kept", "--url", url).exit_code == 0
    r = cli("import", bad, "--force", "--yes", "--batch-size", "50", "--no-verify", "--url", url)
    assert r.exit_code == 2 and "line 201" in r.stderr, r
    with psycopg.connect(url) as c:  # the --force delete rolled back too
        assert c.execute("SELECT stream_name FROM message_store.messages").fetchall() == [
            ("keep-1",)]
