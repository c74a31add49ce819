"""Shared fixtures: temp stores, the CLI through CliRunner and through the installed executable,
and a real ``eventodb serve`` process on 127.0.0.1."""

from __future__ import annotations

import json
import os
import secrets
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

pytest_plugins = ["pg_fixture"]  # messagedb, mdb_url: a private PostgreSQL with Message DB

ROOT = Path(__file__).resolve().parent.parent
VECTORS = ROOT.parent / "shared" / "vectors" / "hash64-messagedb.jsonl"
if not VECTORS.exists():  # a clean clone keeps its own copy
    VECTORS = ROOT / "tests" / "data" / "hash64-messagedb.jsonl"


def load_vectors() -> list[dict]:
    with open(VECTORS, encoding="utf-8") as fh:
        return [json.loads(line) for line in fh if line.strip()]


@pytest.fixture(autouse=True)
def _isolated_env(tmp_path, monkeypatch):
    """No test sees the user's store, profiles or server settings."""
    for var in ("EVENTODB_STORE", "EVENTODB_URL", "EVENTODB_TOKEN", "EVENTODB_PROFILE",
                "EVENTODB_DEBUG", "NO_COLOR", "EVENTODB_QUIET"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg-config"))
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg-data"))


@pytest.fixture
def store_path(tmp_path) -> str:
    return str(tmp_path / "store.db")


class CliResult:
    def __init__(self, code: int, out: str, err: str):
        self.exit_code = code
        self.stdout = out
        self.stderr = err

    def json(self):
        return json.loads(self.stdout)

    def ndjson(self):
        return [json.loads(line) for line in self.stdout.splitlines() if line.strip()]

    def __repr__(self):
        return f"CliResult(exit={self.exit_code}, out={self.stdout[:300]!r}, err={self.stderr[:300]!r})"


def _runner():
    try:
        return CliRunner(mix_stderr=False)
    except TypeError:  # click >= 8.2 always separates stderr
        return CliRunner()


@pytest.fixture
def cli():
    """Run ``eventodb`` in-process through click's CliRunner: ``cli(args..., input=, env=)``."""
    from eventodb_cli.cli.main import cli as root

    def run(*args, input=None, env=None) -> CliResult:
        r = _runner().invoke(root, [str(a) for a in args], input=input, env=env,
                             catch_exceptions=False, prog_name="eventodb",
                             standalone_mode=True)
        return CliResult(r.exit_code, r.stdout, r.stderr)

    return run


def exe_path() -> str:
    found = shutil.which("eventodb")
    if found:
        return found
    cand = Path(sys.executable).parent / "eventodb"
    if cand.exists():
        return str(cand)
    pytest.skip("the eventodb executable is not installed")


@pytest.fixture
def exe():
    """Run the installed ``eventodb`` executable in a subprocess."""
    path = exe_path()

    def run(*args, input=None, env=None, timeout=120) -> CliResult:
        full_env = dict(os.environ)
        if env:
            full_env.update(env)
        p = subprocess.run([path, *map(str, args)], input=input, capture_output=True,
                           text=True, env=full_env, timeout=timeout)
        return CliResult(p.returncode, p.stdout, p.stderr)

    return run


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def make_token(namespace: str = "default") -> str:
    import base64

    b = base64.urlsafe_b64encode(namespace.encode()).decode().rstrip("=")
    return f"ns_{b}_{secrets.token_hex(32)}"


class ServerProcess:
    def __init__(self, url: str, token: str, proc: subprocess.Popen, data_dir: Path, log: Path):
        self.url = url
        self.token = token
        self.proc = proc
        self.data_dir = data_dir
        self.log = log

    @property
    def port(self) -> int:
        return int(self.url.rsplit(":", 1)[1])

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def start_server(data_dir: Path, *extra: str, token: str | None = None,
                 files: int | None = None) -> ServerProcess:
    """Start ``eventodb serve`` on a free loopback port and wait for /health. ``files`` sets
    the child's file limit (RLIMIT_NOFILE) before it runs."""
    import httpx

    def limit():
        if files:
            import resource

            resource.setrlimit(resource.RLIMIT_NOFILE, (files, files))

    token = token or make_token("default")
    port = free_port()
    data_dir.mkdir(parents=True, exist_ok=True)
    log = data_dir.parent / f"serve-{port}.log"
    proc = subprocess.Popen(
        [exe_path(), "serve", "--data-dir", str(data_dir), "--host", "127.0.0.1",
         "--port", str(port), "--token", token, *extra],
        stdout=open(log, "wb"), stderr=subprocess.STDOUT, preexec_fn=limit if files else None,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"eventodb serve exited: {log.read_text()[-2000:]}")
        try:
            if httpx.get(url + "/health", timeout=1).status_code == 200:
                break
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline:
            proc.kill()
            raise RuntimeError(f"eventodb serve did not start: {log.read_text()[-2000:]}")
        time.sleep(0.1)
    return ServerProcess(url, token, proc, data_dir, log)


@pytest.fixture(scope="session")
def server(tmp_path_factory):
    """One real ``eventodb serve`` process for the session: ``.url``, ``.token`` (default ns)."""
    srv = start_server(tmp_path_factory.mktemp("serve") / "data")
    yield srv
    srv.stop()


class RecordingTransport:
    """An asyncio transport for protocol tests: records what is written, and whether it
    closes (tests/test_serve_cpu.py, tests/test_serve_fast.py)."""

    def __init__(self):
        self.writes: list[bytes] = []
        self.closed = False

    def write(self, data: bytes) -> None:
        self.writes.append(bytes(data))

    def close(self) -> None:
        self.closed = True

    def is_closing(self) -> bool:
        return self.closed

    def get_extra_info(self, name, default=None):
        return ("127.0.0.1", 1) if name in ("peername", "sockname") else default

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass
