"""The group tables show data as written: rich markup and control characters in a consumer's
identifier are neither interpreted nor sent to the terminal."""

from __future__ import annotations

from eventodb_cli.services import positions as P
from eventodb_cli.store.local import LocalStore


def test_describe_and_reset_tables_show_names_as_written(cli, store_path):
    ident = "[bold red]x[/]\x1b[31m"
    with LocalStore(store_path, create=True) as st:
        P.write_position(st, "acct", ident, 0)
        P.write_position(st, "acct", "g-0", 0, group="g", member=0, size=1)
    r = cli("group", "describe", "acct", "--identifier", ident, "--store", store_path,
            "--format", "table")
    assert r.exit_code == 0, r
    assert "[bold red]x[/]\\x1b[31m" in r.stdout and "\x1b" not in r.stdout
    assert "CONSUMER  [bold red]x[/]" in r.stdout
    r = cli("group", "list", "--store", store_path, "--format", "table")
    assert "[bold red]x[/]\\x1b[31m" in r.stdout and "\x1b" not in r.stdout
    r = cli("group", "reset", "acct", "--group", "g", "--size", 1, "--to-latest",
            "--store", store_path, "--format", "table")
    assert r.exit_code == 0 and "acct:position-g-0" in r.stdout and "plan" in r.stdout
    lines = r.stdout.splitlines()
    assert lines[1].split() == ["member", "position", "stream", "old", "new", "change"]
    assert lines[2].split() == ["0", "acct:position-g-0", "0", "0", "+0"]
