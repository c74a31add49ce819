"""Issue 12 acceptance 6 (remote startup) and the token mask of remote error lines."""

from __future__ import annotations

import subprocess
import sys

from conftest import free_port

from eventodb_cli.store.remote import RemoteStore


def _imported(code: str) -> set[str]:
    p = subprocess.run([sys.executable, "-X", "importtime", "-c", code], capture_output=True,
                       text=True, timeout=60)
    assert p.returncode == 0, p.stderr[-2000:]
    return {line.split("|")[-1].strip() for line in p.stderr.splitlines()
            if line.startswith("import time:") and line.count("|") == 2}


def test_remote_store_does_not_import_httpx_cli_or_rich():
    """httpx's __init__ imports its own CLI (httpx._main: rich, click extras, pygments, ~80 ms);
    the remote store keeps it out, and a client for http:// builds no certifi SSL context."""
    mods = _imported(
        "import eventodb_cli.store.remote as r, sys\n"
        "s = r.RemoteStore('http://127.0.0.1:9'); s.client\n"
        "assert sys.modules.get('httpx._main', 0) == 0, 'stub left behind'\n"
        "import httpx; assert callable(httpx.main)\n")
    assert "httpx" in mods
    assert not {m for m in mods if m.split(".")[0] in ("rich", "pygments")}

    s = RemoteStore("http://127.0.0.1:9")
    try:  # no CA bundle loaded (~50 ms) for plain http
        assert s.client._transport._pool._ssl_context.cert_store_stats()["x509_ca"] == 0
    finally:
        s.close()


def test_https_client_still_verifies():
    s = RemoteStore("https://127.0.0.1:9")
    try:
        transport = s.client._transport
        ctx = transport._pool._ssl_context
        import ssl

        assert ctx.verify_mode == ssl.CERT_REQUIRED and ctx.check_hostname
        assert ctx.cert_store_stats()["x509_ca"] > 0
    finally:
        s.close()


def test_a_short_token_does_not_mangle_error_lines():
    """`--token t` once printed `canno*** connec***`: only the token as a whole word is
    masked; a long token is masked wherever it occurs."""
    port = free_port()  # nothing listens there
    s = RemoteStore(f"http://127.0.0.1:{port}", "t", retries=0, timeout=2)
    try:
        s.stream_version("x-1")
    except Exception as e:
        text = str(e)
    else:
        raise AssertionError("no error from a closed port")
    finally:
        s.close()
    assert "cannot" in text or "connect" in text, text
    assert "***" not in text.replace("Bearer ***", "")
    s = RemoteStore("http://127.0.0.1:9", "t")
    assert s._redact("token t rejected: t") == "token *** rejected: ***"
    long = "abcdefgh1234"
    s = RemoteStore("http://127.0.0.1:9", long)
    assert s._redact(f"x{long}y and {long}") == "x***y and ***"


def test_a_remote_rpc_command_does_not_import_httpx(server):
    """Every POST /rpc to a plain http:// URL goes over http.client (store/rpc_conn.py), so a
    command made of RPCs never pays httpx's import (~70 ms of a ~190 ms start)."""
    argv = ["eventodb", "stream", "version", "startup-1", "--url", server.url, "--token",
            server.token, "--format", "json"]
    mods = _imported(f"import sys; sys.argv={argv!r}\n"
                     "from eventodb_cli.cli.main import main\n"
                     "try:\n    main()\nexcept SystemExit as e:\n    assert e.code in (0, 4, None), e\n")
    assert not {m for m in mods if m.split(".")[0] in ("httpx", "httpcore", "h11", "rich")}


def _modules_after(argv: list[str], tmp_path) -> set[str]:
    """``sys.modules`` after ``eventodb ARGV`` ran in a fresh interpreter (the executable's own
    entry point), written by an atexit handler so every lazy import of the run is in it."""
    out = tmp_path / "modules.txt"
    code = ("import atexit, sys\n"
            f"atexit.register(lambda: open({str(out)!r}, 'w').write('\\n'.join(sys.modules)))\n"
            f"sys.argv = {argv!r}\n"
            "from eventodb_cli.cli.main import main\n"
            "main()\n")
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stderr[-2000:]
    return set(out.read_text().split("\n"))


def test_a_local_command_imports_only_its_own_command_module(tmp_path, exe):
    """Issue 12 acceptance 6: `stream version` on a local store loads cli/stream.py and nothing
    of the other commands (their modules, services, rich, httpx), nor the profile file's
    reader when --store names the target. A command module imported at start by main.py, or a
    heavy module-level import in common.py/render.py/resolve.py, fails here."""
    store = tmp_path / "s.db"
    assert exe("write", "x-1", "--type", "T", "--store", store).exit_code == 0
    mods = _modules_after(["eventodb", "stream", "version", "x-1", "--store", str(store),
                           "--format", "json"], tmp_path)
    assert "eventodb_cli.cli.stream" in mods and "eventodb_cli.store.local" in mods
    from eventodb_cli.cli.main import COMMANDS

    others = {f"eventodb_cli.cli.{mod}" for mod, *_ in COMMANDS.values()} - \
        {"eventodb_cli.cli.stream"}
    assert not others & mods, sorted(others & mods)
    assert not {m for m in mods if m.startswith(("eventodb_cli.services", "eventodb_cli.server"))}
    assert not {m for m in mods if m.split(".")[0] in ("rich", "httpx", "httpcore", "sqlite_utils",
                                                        "psycopg", "uvicorn")}
    # what resolve.py / common.py / render.py no longer load for a --store target, and locale:
    # click's help and version options pass their texts through gettext, which imports it
    unneeded = {"eventodb_cli.store.profiles", "eventodb_cli.store.remote", "dataclasses",
                "eventodb_cli.cli.completion", "locale"}
    assert not unneeded & mods, sorted(unneeded & mods)


def test_help_and_version_options_are_clicks_own(cli):
    """main.py builds -h/--help and -V/--version itself (no gettext): the same names, texts,
    places and behaviour as click's, at the root, on a group and on a subcommand."""
    import click

    from eventodb_cli.cli.main import cli as root

    r = cli("--version")
    assert r.exit_code == 0 and r.stdout == "eventodb, version 0.1.0\n"
    for path in ([], ["stream"], ["stream", "version"]):
        full = cli(*path, "--help")
        short = cli(*path, "-h")
        assert full.exit_code == short.exit_code == 0 and full.stdout == short.stdout
        assert "-h, --help" in full.stdout and "Show this message and exit." in full.stdout
    ctx = click.Context(root, info_name="eventodb", help_option_names=["-h", "--help"])
    opts = root.get_params(ctx)
    assert opts[-1].opts == ["-h", "--help"] and opts[-1].help == "Show this message and exit."
    assert not opts[-1].expose_value and opts[-1].is_eager
    assert root.get_params(ctx)[-1] is opts[-1]  # built once (click orders callbacks by identity)
    version = [p for p in opts if "--version" in p.opts][0]
    assert version.opts == ["-V", "--version"] and version.help == "Show the version and exit."


def test_the_executable_skips_the_collection_at_exit(tmp_path, exe):
    """main() freezes the garbage collector from an atexit handler (a full collection over every
    live object at shutdown was ~10% of a local command's CPU); every other atexit handler still
    runs (here weakref.finalize removing a temporary directory) and the output is flushed."""
    store = tmp_path / "s.db"
    assert exe("write", "x-1", "--type", "T", "--store", store).exit_code == 0
    code = ("import atexit, gc, sys, tempfile, weakref\n"
            "atexit.register(lambda: sys.stderr.write(f'frozen={gc.get_freeze_count() > 0}\\n'))\n"
            f"sys.argv = ['eventodb', 'stream', 'version', 'x-1', '--store', {str(store)!r}]\n"
            "from eventodb_cli.cli.main import main\n"
            "tmp = tempfile.TemporaryDirectory()\n"  # cleaned by weakref.finalize at exit
            "print(tmp.name, file=sys.stderr)\n"
            "main()\n")
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stderr
    assert p.stdout == "0\n"
    tmpdir, frozen = p.stderr.split()
    assert frozen == "frozen=True"
    import os

    assert not os.path.exists(tmpdir)
    # in-process use (CliRunner, tests, a library caller) leaves the collector alone
    import gc

    from eventodb_cli.cli.main import cli as root
    from click.testing import CliRunner

    before = gc.get_freeze_count()
    r = CliRunner().invoke(root, ["stream", "version", "x-1", "--store", str(store)])
    assert r.exit_code == 0 and gc.get_freeze_count() == before
