"""A Message DB URL as a profile: the password becomes the profile's token (never shown by
profile list/show) and commands through the profile reach Message DB with it."""

import json
import os

from pg_fixture import PASSWORD


def test_profile_with_a_message_db_url(cli, messagedb, tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "cfg"))
    url = messagedb.url(messagedb.create_db())  # postgresql://USER:PASSWORD@127.0.0.1:PORT/DB
    assert f":{PASSWORD}@" in url
    r = cli("profile", "add", "mdb", "--url", url, "--use")
    assert r.exit_code == 0, r
    for args in (["profile", "list", "-o", "json"], ["profile", "show", "mdb", "-o", "json"],
                 ["profile", "list", "-o", "table"]):
        out = cli(*args)
        assert out.exit_code == 0 and PASSWORD not in out.stdout + out.stderr, out
    row = cli("profile", "show", "mdb", "-o", "json").json()
    assert row["kind"] == "messagedb" and row["token"] == "stored"
    cfg = json.loads((tmp_path / "cfg" / "eventodb" / "config.json").read_text())
    assert PASSWORD not in cfg["profiles"]["mdb"]["url"]
    assert cfg["profiles"]["mdb"]["token"] == PASSWORD
    assert oct(os.stat(tmp_path / "cfg" / "eventodb" / "config.json").st_mode & 0o777) == "0o600"
    # the current profile is Message DB: write and read through it, with the stored password
    w = cli("write", "acct-1", "--type", "T", "--data", '{"a":1}', "-o", "json")
    assert w.exit_code == 0, w
    assert w.json() == {"position": 0, "globalPosition": 1}
    got = cli("category", "get", "acct", "-o", "json").json()
    assert [m["data"] for m in got] == [{"a": 1}]
    assert cli("server", "version", "-o", "table").stdout.strip() == "1.3.0"
