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
