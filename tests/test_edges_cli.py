"""Trust at the edges (issue 8), the CLI core: empty target flags, tables that show data as
written and stream, readers that stop early, closed standard streams, numbers and paths that do
not fit, one-line usage errors, and options before or after the command. Each on a local store
and, where a server is involved, a real ``eventodb serve``."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import time

import pytest

from conftest import exe_path, free_port

DEAD_URL = None  # a loopback port nobody listens on (set per test with free_port())


def _one_line_error(r, code=2):
    assert r.exit_code == code, r
    lines = r.stderr.splitlines()
    assert len(lines) == 1, r.stderr
    assert lines[0].startswith("eventodb: error: "), r.stderr
    assert "Traceback" not in r.stderr and "internal error" not in r.stderr
    return lines[0]


@pytest.fixture
def filled(store_path, cli, tmp_path):
    """2,000 messages of ~150 bytes in category c: more than a pipe buffer holds."""
    f = tmp_path / "fill.ndjson"
    f.write_text("".join(json.dumps({"stream": f"c-{i % 50}", "type": "T",
                                     "data": {"i": i, "pad": "x" * 100}}) + "\n"
                         for i in range(2000)))
    r = cli("write", "--file", f, "--store", store_path)
    assert r.exit_code == 0, r
    return store_path


# --- 1. empty target flags ------------------------------------------------------------------------
EMPTY_FLAGS = ["--store", "--url", "--token", "--token-file", "--profile"]
COMMANDS = [
    ["stream", "get", "a-1"],
    ["stream", "version", "a-1"],
    ["category", "get", "a"],
    ["write", "a-1", "--type", "T", "--data", "{}"],
    ["ns", "streams"],
    ["ns", "list"],
    ["store", "info"],
    ["server", "health"],
    ["lag", "a", "--size", "2"],
    ["export"],
]


@pytest.mark.parametrize("flag", EMPTY_FLAGS)
@pytest.mark.parametrize("cmd", COMMANDS, ids=lambda c: " ".join(c[:2]))
def test_empty_target_flag_is_a_usage_error_before_any_access(cli, tmp_path, flag, cmd):
    """``--store "$UNSET"`` never falls back to another target: exit 2 naming the flag, and no
    store is created and no server is asked (EVENTODB_URL points at a dead port: touching it
    would be exit 5)."""
    env = {"EVENTODB_URL": f"http://127.0.0.1:{free_port()}", "EVENTODB_TOKEN": "t" * 20}
    for args in ([*cmd, flag, ""], [flag, "", *cmd]):  # after and before the command
        r = cli(*args, env=env)
        line = _one_line_error(r)
        assert f"{flag}: empty value" in line, r
    assert not list(tmp_path.rglob("*.db"))


def test_blank_flag_values_count_as_empty(cli):
    r = cli("stream", "get", "a-1", "--store", "   ")
    assert "--store: empty value" in _one_line_error(r)


@pytest.mark.parametrize("value", ["nan", "NaN", "inf", "-inf", "1e999", "-1", "0", "",
                                   "abc", "86401"])
def test_timeout_must_be_finite_and_positive(cli, value):
    r = cli("stream", "get", "a-1", "--url", "http://127.0.0.1:9", "--timeout", value)
    line = _one_line_error(r)
    assert "--timeout" in line, r


def test_empty_environment_variables_count_as_unset(cli, tmp_path, store_path):
    """``EVENTODB_STORE= eventodb ...`` turns the variable off (documented): the default store
    is used, not a file named ''."""
    r = cli("write", "e-1", "--type", "T", env={"EVENTODB_STORE": "", "EVENTODB_URL": "",
                                                "EVENTODB_PROFILE": "", "EVENTODB_TOKEN": ""})
    assert r.exit_code == 0, r
    assert (tmp_path / "xdg-data" / "eventodb" / "store.db").exists()
    r = cli("stream", "get", "e-1", "--store", store_path, env={"EVENTODB_TIMEOUT": "nan"})
    assert r.exit_code == 4  # local: the timeout is not used
    r = cli("stream", "get", "e-1", "--url", "http://127.0.0.1:9",
            env={"EVENTODB_TIMEOUT": "nan"})
    assert "EVENTODB_TIMEOUT" in _one_line_error(r)


def test_profile_add_refuses_empty_values(cli):
    for flag in ("--url", "--token", "--token-file", "--store"):
        args = ["profile", "add", "p", flag, ""]
        if flag in ("--token", "--token-file"):
            args += ["--url", "http://127.0.0.1:9"]
        assert f"{flag}: empty value" in _one_line_error(cli(*args))
    assert _one_line_error(cli("profile", "add", "", "--url", "http://h:1"))
    assert "--timeout" in _one_line_error(cli("profile", "add", "p", "--url", "http://h:1",
                                              "--timeout", "nan"))


# --- 3. tables show data as written ---------------------------------------------------------------
MARKUP_TYPE = "[bold red]Alert[/]"
ESC_STREAM = "mk-\x1b[31mred"
ESC_TYPE = "T\x1b]0;pwned\x07"


@pytest.fixture
def marked(store_path, cli):
    assert cli("write", "mk-1", "--type", MARKUP_TYPE, "--data", '{"s":"[/]"}',
               "--store", store_path).exit_code == 0
    assert cli("write", ESC_STREAM, "--type", ESC_TYPE, "--data",
               '{"s":"\\u001b[2J\\u202e\\u0085"}', "--store", store_path).exit_code == 0
    return store_path


def _no_raw_controls(text):
    for ch in ("\x1b", "\x07", "\x9b", "\u202e", "\x85", "\r"):
        assert ch not in text, (ch, text)


def test_message_tables_show_markup_as_written_and_escape_controls(marked, cli):
    r = cli("stream", "get", "mk-1", "-o", "table", "--store", marked)
    assert r.exit_code == 0, r
    assert MARKUP_TYPE in r.stdout and '{"s":"[/]"}' in r.stdout
    r = cli("category", "get", "mk", "-o", "table", "--store", marked)
    assert r.exit_code == 0, r
    assert MARKUP_TYPE in r.stdout
    assert "mk-\\x1b[31mred" in r.stdout and "T\\x1b]0;pwned\\x07" in r.stdout
    _no_raw_controls(r.stdout)
    r = cli("stream", "last", ESC_STREAM, "-o", "table", "--store", marked)
    assert r.exit_code == 0 and "\\x1b" in r.stdout, r
    _no_raw_controls(r.stdout)


def test_row_tables_and_objects_escape(marked, cli):
    r = cli("assign", "[red]x[/red]-1", ESC_STREAM, "--size", "2", "--format", "table")
    assert r.exit_code == 0, r
    assert "[red]x[/red]-1" in r.stdout and "mk-\\x1b[31mred" in r.stdout
    _no_raw_controls(r.stdout)
    r = cli("ns", "streams", "-o", "table", "--store", marked)
    assert r.exit_code == 0 and "mk-\\x1b[31mred" in r.stdout, r
    _no_raw_controls(r.stdout)
    r = cli("profile", "add", "p", "--url", "http://127.0.0.1:9", "--description",
            "[b]x[/b]\x1b[2J")
    assert r.exit_code == 0, r
    for args in (["profile", "list", "-o", "table"], ["profile", "show", "-o", "table"]):
        r = cli(*args)
        assert r.exit_code == 0 and "[b]x[/b]\\x1b[2J" in r.stdout, r
        _no_raw_controls(r.stdout)


def test_safe_text_keeps_printable_unicode():
    from eventodb_cli.render import cell_width, safe_text

    assert safe_text("konto-Ωß-東京") == "konto-Ωß-東京"
    assert safe_text("a\tb\nc\x00\x7f\u200b\ud800") == "a\\tb\\nc\\x00\\x7f\\u200b\\ud800"
    assert cell_width("東京") == 4 and cell_width("e\u0301") == 1


# --- 4 and 6. readers that stop early, closed standard streams ------------------------------------
def _sh(script, env=None, timeout=60):
    full = dict(os.environ, EVENTODB=exe_path(), **(env or {}))
    p = subprocess.run(["bash", "-c", script], capture_output=True, text=True, env=full,
                       timeout=timeout)
    return p


@pytest.mark.parametrize("args", [
    "category get c --all",
    "category get c --all --format table",
    "category get c --all --format json",
    "category get c --all --format raw",
    "stream get c-1 --all --batch-size 10",
    "ns streams --all --limit 2",
    "export",
])
def test_reader_that_stops_early_is_quiet_exit_0(filled, args):
    p = _sh(f'"$EVENTODB" {args} --store "$S" | head -1 >/dev/null; '
            'echo "rc=${PIPESTATUS[0]}" >&2', env={"S": filled})
    assert p.stderr == "rc=0\n", p.stderr


def test_reader_that_stops_early_on_a_server(server, cli):
    f_lines = "".join(json.dumps({"stream": f"early-{i % 7}", "type": "T",
                                  "data": {"pad": "y" * 200}}) + "\n" for i in range(1500))
    r = cli("write", "--file", "-", "--url", server.url, "--token", server.token, input=f_lines)
    assert r.exit_code == 0, r
    env = {"U": server.url, "EVENTODB_TOKEN": server.token}
    for args in ("category get early --all", "category get early --all -o table",
                 "subscribe --category early --count 1500", "ns streams --all --limit 1"):
        p = _sh(f'"$EVENTODB" {args} --url "$U" | head -1 >/dev/null; '
                'echo "rc=${PIPESTATUS[0]}" >&2', env=env)
        assert p.stderr == "rc=0\n", (args, p.stderr)


def test_stdout_closed_before_start(filled):
    p = _sh('"$EVENTODB" stream get c-1 --store "$S" >&-; echo "rc=$?"', env={"S": filled})
    assert p.stdout == "rc=0\n" and p.stderr == "", p
    p = _sh('"$EVENTODB" category get c -o table --store "$S" >&-; echo "rc=$?"',
            env={"S": filled})
    assert p.stdout == "rc=0\n" and p.stderr == "", p
    # a write with nowhere to print still writes exactly once, and nothing lands in the store file
    p = _sh('"$EVENTODB" write w-1 -t T -d "{}" --store "$S" >&-; echo "rc=$?"',
            env={"S": filled})
    assert p.stdout == "rc=0\n", p
    p = _sh('"$EVENTODB" stream version w-1 --store "$S"; "$EVENTODB" store check -o json '
            '--store "$S" | head -c 11', env={"S": filled})
    assert p.stdout == '0\n{"ok":true,', p


@pytest.mark.parametrize("args", [
    'write a-1 -t T --data -',
    'write a-1 -t T --data "{}" --metadata -',
    'assign - --size 3',
    'write --file -',
    'import -',
])
def test_closed_stdin_is_a_one_line_usage_error(store_path, args):
    p = _sh(f'"$EVENTODB" {args} --store "$S" <&-; echo "rc=$?"', env={"S": store_path})
    if args.startswith("assign"):
        p = _sh(f'"$EVENTODB" {args} <&-; echo "rc=$?"')
    assert p.stdout.endswith("rc=2\n"), p
    assert p.stderr.startswith("eventodb: error: ") and len(p.stderr.splitlines()) == 1, p
    assert "standard input is closed" in p.stderr
    r = subprocess.run([exe_path(), "stream", "version", "a-1", "--store", store_path],
                       capture_output=True, text=True)
    assert r.stdout.strip() in ("", "null")  # nothing was written


def test_output_that_cannot_be_written_is_exit_1(filled):
    p = _sh('"$EVENTODB" stream get c-1 --store "$S" >/dev/full; echo "rc=$?"',
            env={"S": filled})
    assert p.stdout == "rc=1\n" and len(p.stderr.splitlines()) == 1, p
    assert "Traceback" not in p.stderr


# --- 7. numbers and paths that do not fit ---------------------------------------------------------
HUGE = "99999999999999999999"


@pytest.mark.parametrize("args,needle", [
    (["stream", "get", "a-1", "--position", HUGE], "--position does not fit"),
    (["stream", "get", "a-1", "--global-position", "-1"], "--global-position must be >= 0"),
    (["stream", "get", "a-1", "--batch-size", HUGE], "--batch-size does not fit"),
    (["category", "get", "a", "--position", HUGE], "--position does not fit"),
    (["category", "get", "a", "--member", "0", "--size", HUGE], "--size does not fit"),
    (["category", "get", "a", "--member", "-1", "--size", "2"], "--member must be >= 0"),
    (["assign", "a-1", "--size", HUGE], "--size does not fit"),
    (["assign", "a-1", "--size", "0"], "--size must be >= 1"),
    (["ns", "streams", "--limit", "0"], "--limit must be between 1 and 1000"),
    (["ns", "streams", "--limit", HUGE], "--limit must be between 1 and 1000"),
    (["subscribe", "--all", "--count", HUGE], "--count does not fit"),
    (["subscribe", "--all", "--max-reconnects", "-1"], "--max-reconnects must be >= 0"),
    (["stream", "get", "a-1", "--position", "1" * 5000], "--position"),
    (["category", "get", "a", "--batch-size", "1.5"], "is not a valid integer"),
])
def test_integer_options_that_do_not_fit(cli, store_path, args, needle):
    r = cli(*args, "--store", store_path) if args[0] not in ("assign", "subscribe") else \
        cli(*args)
    line = _one_line_error(r)
    assert needle in line, line
    assert len(line) < 300


@pytest.mark.parametrize("url", ["http://[::1", "http://h:99999", "http://h:8080x", "http://",
                                 "http:///x", "http://a b", "http://a..b", "http://[zz]/",
                                 "http://\u2603.com", "ftp://h", "http://h:/",
                                 "http://" + "a" * 70 + ".com", "http://u:SECRETX@[::1"])
def test_malformed_urls_are_usage_errors(cli, url):
    line = _one_line_error(cli("stream", "get", "a-1", "--url", url, "--timeout", "1"))
    assert "URL" in line and "SECRETX" not in line


def test_store_paths_that_cannot_be_a_store(cli, tmp_path):
    f = tmp_path / "file"
    f.write_text("x")
    for path, needle in ((f / "x.db", "is not a directory"), (tmp_path, "is a directory"),
                         (str(tmp_path / "a/") * 1000 + "x.db", "too long")):
        for args in (["write", "a-1", "-t", "T"], ["stream", "get", "a-1"], ["store", "info"]):
            assert needle in _one_line_error(cli(*args, "--store", path)), (path, args)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file", "xdg-config"] or \
        sorted(p.name for p in tmp_path.iterdir()) == ["file"]


def test_long_path_component_is_a_usage_error(exe, tmp_path):
    r = exe("write", "a-1", "-t", "T", "--store", tmp_path / ("n" * 300) / "x.db")
    assert "File name too long" in _one_line_error(r)


# --- 14. one-line usage errors, options before or after the command -----------------------------
@pytest.mark.parametrize("args,needle", [
    (["category", "get", "c", "--size", "x"],
     "--size: 'x' is not a valid integer (see 'eventodb category get --help')"),
    (["stream", "get"], "Missing argument 'STREAM' (see 'eventodb stream get --help')"),
    (["stream", "get", "a-1", "--bogus"], "No such option"),
    (["stream", "gett"], "No such command 'gett'"),
    (["nosuch"], "No such command 'nosuch'"),
    (["category", "get", "c", "--format", "xml"], "--format"),
    (["assign", "a-1"], "Missing option '--size'"),
    (["stream", "get", "a-1", "--position"], "Option '--position' requires an argument"),
])
def test_usage_errors_are_one_line_with_a_help_hint(exe, args, needle):
    line = _one_line_error(exe(*args))
    assert needle in line, line
    assert "--help')" in line


def test_target_and_output_options_before_or_after_the_command(filled, exe):
    a = exe("stream", "version", "c-1", "--store", filled)
    b = exe("--store", filled, "stream", "version", "c-1")
    c = exe("--store", filled, "--format", "json", "stream", "version", "c-1", "--no-color", "-q")
    d = exe("stream", "version", "c-1", "--store", filled, "--no-color", "--quiet")
    assert a.exit_code == b.exit_code == c.exit_code == d.exit_code == 0, (a, b, c, d)
    assert a.stdout == b.stdout == c.stdout == d.stdout == "39\n"
    # the command's own flag wins over the root's
    r = exe("--format", "table", "stream", "get", "c-1", "-n", "1", "--format", "json",
            "--store", filled)
    assert r.exit_code == 0 and json.loads(r.stdout)[0]["position"] == 0, r
    r = exe("--store", "/nonexistent/x.db", "stream", "version", "c-1", "--store", filled)
    assert r.stdout == "39\n", r
    for args in (["assign", "a-1", "--size", "2", "--no-color"], ["profile", "list", "-q"],
                 ["completion", "bash", "--no-color"]):
        assert exe(*args).exit_code == 0, args


# --- 11. big tables stream -------------------------------------------------------------------------
def _million(path: str, exe, n: int = 1_000_000) -> None:
    """A store of ``n`` messages in category order: one written by eventodb, the rest copied by
    SQL (indexes rebuilt afterwards), about ten times faster than writing them one by one."""
    r = exe("write", "order-0", "--type", "Placed", "--data", '{"n":0}', "--store", path)
    assert r.exit_code == 0, r
    c = sqlite3.connect(path, isolation_level=None)
    c.execute("PRAGMA synchronous=OFF")
    t0 = c.execute("SELECT time FROM messages").fetchone()[0]
    idx = c.execute("SELECT name, sql FROM sqlite_master WHERE type='index' AND "
                    "tbl_name='messages' AND sql IS NOT NULL").fetchall()
    c.execute("BEGIN")
    for name, _sql in idx:
        c.execute(f'DROP INDEX "{name}"')
    c.execute(f"""WITH RECURSIVE k(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM k WHERE i < {n - 1})
        INSERT INTO messages (global_position, id, stream_name, type, position, data, metadata,
                              time, category, cardinal_hash, checksum)
        SELECT i + 1, printf('%08x-0000-4000-8000-%012x', i, i), 'order-' || (i % 1000),
               'Placed', i / 1000, '{{"n":' || i || '}}', NULL, ?, 'order', NULL, 0 FROM k""",
              (t0,))
    for _name, sql in idx:
        c.execute(sql)
    c.execute("COMMIT")
    c.close()


def test_million_message_table_head_is_fast(tmp_path, exe):
    """Acceptance: ``category get --all --format table | head -3`` on 1,000,000 messages
    returns in under 2 s (it took minutes when tables were built whole)."""
    path = str(tmp_path / "big.db")
    _million(path, exe)
    t = time.monotonic()
    p = _sh('"$EVENTODB" category get order --all --format table --store "$S" | head -3; '
            'echo "rc=${PIPESTATUS[0]}" >&2', env={"S": path})
    took = time.monotonic() - t
    lines = p.stdout.splitlines()
    assert p.stderr == "rc=0\n" and len(lines) == 3, p
    assert lines[0].split() == ["gpos", "stream", "pos", "type", "data", "time"]
    assert lines[1].split()[:4] == ["1", "order-0", "0", "Placed"]
    print(f"1,000,000-message table | head -3: {took:.2f}s")
    assert took < 2.0, took
    # memory stays flat: 150,000 rows through the table cost what the first page did
    import resource

    p = _sh('"$EVENTODB" category get order --all --format table --store "$S" | head -150000 '
            '| tail -1; echo "rc=${PIPESTATUS[0]}" >&2', env={"S": path})
    assert p.stderr == "rc=0\n" and p.stdout.split()[:2] == ["149999", "order-998"], p
    peak_mib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    print(f"peak RSS of any child: {peak_mib:.0f} MiB")
    assert peak_mib < 120, peak_mib


def test_table_widths_grow_after_the_first_page(store_path, cli):
    """Widths come from the first page; a longer cell later widens its column from then on,
    nothing is cut off."""
    lines = "".join(json.dumps({"stream": f"w-{i}", "type": "T"}) + "\n" for i in range(150))
    lines += json.dumps({"stream": "w-" + "9" * 40, "type": "LongerType"}) + "\n"
    assert cli("write", "--file", "-", "--store", store_path, input=lines).exit_code == 0
    r = cli("category", "get", "w", "-o", "table", "--store", store_path)
    out = r.stdout.splitlines()
    assert len(out) == 152 and "w-" + "9" * 40 in out[-1] and "LongerType" in out[-1]


def test_group_without_a_subcommand_shows_its_help(exe):
    r = exe("stream")
    assert r.exit_code == 2 and "Commands:" in r.stderr and "get" in r.stderr, r
    assert "eventodb: error" not in r.stderr


def test_error_lines_escape_what_the_user_typed(cli, store_path):
    """An error that quotes user input (a file name, a stream) stays one line and never sends
    raw control characters to the terminal."""
    for args in (["import", "bad\r\nname\x1b[2J", "--store", store_path],
                 ["write", "--file", "no\nsuch\x07", "--store", store_path],
                 ["stream", "get", "a-1", "--position", "1\x1b[31m"]):
        line = _one_line_error(cli(*args))
        assert not any(ch in line for ch in "\x1b\r\n\x07"), line
        assert "\\x1b" in line or "\\x07" in line or "\\r" in line, line


def test_nul_in_a_path_is_a_usage_error(cli, store_path):
    """A NUL cannot come from a real command line, but can from a config or a test runner."""
    line = _one_line_error(cli("export", "--output", "x\x00y", "--store", store_path))
    assert "NUL" in line


def test_arguments_that_are_not_utf8(filled):
    """``$'\\xff'`` reaches Python as a lone surrogate: a usage error, not UnicodeEncodeError."""
    for args in ("stream version $'a-\\xff'", "write $'a-\\xff' -t T",
                 "category get $'\\xff'", "assign $'a-\\xff' --size 2 -o table"):
        p = _sh(f'"$EVENTODB" {args} --store "$S"; echo "rc=$?"' if "assign" not in args
                else f'"$EVENTODB" {args}; echo "rc=$?"', env={"S": filled})
        assert p.stdout.endswith("rc=2\n"), (args, p)
        assert p.stderr.startswith("eventodb: error: not valid UTF-8: bytes b'\\xff'"), p.stderr


@pytest.mark.parametrize("how", ["flag", "env", "file", "userinfo"])
@pytest.mark.parametrize("token", ["t\u00e9-1234567890", "a\nb-1234567890", "a b-1234567890",
                                   "x\x1b[2J-1234567890"])
def test_tokens_that_cannot_be_sent_are_usage_errors(cli, tmp_path, how, token):
    """A token travels in an HTTP header: non-ASCII, spaces and control characters are a usage
    error that never repeats the token (not a UnicodeEncodeError, not a header injection)."""
    from urllib.parse import quote

    url = "http://127.0.0.1:9"
    if how == "flag":
        r = cli("stream", "get", "a-1", "--url", url, "--token", token)
    elif how == "env":
        r = cli("stream", "get", "a-1", "--url", url, env={"EVENTODB_TOKEN": token})
    elif how == "file":
        f = tmp_path / "tok"
        f.write_text(token + "\n", encoding="utf-8")
        r = cli("stream", "get", "a-1", "--url", url, "--token-file", f)
    else:
        r = cli("stream", "get", "a-1", "--url", f"http://u:{quote(token)}@127.0.0.1:9")
    line = _one_line_error(r)
    assert "the token holds characters" in line
    assert "1234567890" not in line


def test_binary_token_file(cli, tmp_path):
    f = tmp_path / "tok"
    f.write_bytes(b"\xff\xfe\x00binary")
    line = _one_line_error(cli("stream", "get", "a-1", "--url", "http://127.0.0.1:9",
                               "--token-file", f))
    assert "is not text" in line


def test_terminal_table_fits_the_screen(monkeypatch):
    """On a terminal a message row fits the screen: the data column gives up width, the time
    column stays whole; a header is bold unless NO_COLOR."""
    import io

    from eventodb_cli import render
    from eventodb_cli.domain.message import Message

    class Tty(io.StringIO):
        def isatty(self):
            return True

    out = Tty()
    monkeypatch.setattr(render, "_out", lambda: out)
    monkeypatch.setenv("COLUMNS", "70")
    monkeypatch.setenv("NO_COLOR", "1")
    m = Message(id="0" * 36, stream_name="c-1", type="T", position=0, global_position=1,
                data='{"pad":"' + "x" * 100 + '"}', metadata=None, time=0)
    render.emit_messages([m, m], "table")
    lines = out.getvalue().splitlines()
    assert all(render.cell_width(line) < 70 for line in lines), lines
    assert lines[1].endswith(m.time_str) and "…" in lines[1]
    assert not lines[0].startswith("\x1b")
