"""A private PostgreSQL cluster with the real Message DB installed, for the Message DB tests.

``messagedb`` (session): initdb a cluster in a temp directory from the machine's PostgreSQL
binaries (run as an unprivileged user when the tests run as root), start it on 127.0.0.1 on a free
port, and install Message DB from the npm package ``@eventide/message-db`` (``npm pack`` into
``~/.cache/eventodb-tests``, then its own ``database/install.sh``) into a template database.
``mdb_url`` (function): a fresh database copied from that template, as a ``postgresql://`` URL.

Never a mock: when PostgreSQL or npm really cannot be had, the tests skip with the reason. The
initialised cluster (Message DB installed) is cached in ``~/.cache/eventodb-tests`` so a session
costs a copy and a start, not an initdb and an install.
"""

from __future__ import annotations

import glob
import os
import secrets
import shutil
import socket
import subprocess
import tarfile
import tempfile
import time
import uuid
from pathlib import Path

import pytest

CACHE = Path(os.environ.get("EVENTODB_TEST_CACHE", Path.home() / ".cache" / "eventodb-tests"))
MDB_PACKAGE = "@eventide/message-db"
SUPERUSER = "postgres"
PASSWORD = "s3cret-" + "pg"  # the superuser's password in the private cluster (host auth)
TEMPLATE_DB = "message_store_template"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def pg_bindir() -> Path | None:
    """The newest /usr/lib/postgresql/N/bin with initdb and pg_ctl."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"),
                   key=lambda p: int(p.split("/")[4]) if p.split("/")[4].isdigit() else 0)
    if found:
        return Path(found[-1]).parent
    exe = shutil.which("initdb")
    return Path(exe).parent if exe else None


def _ensure_postgres() -> Path:
    bindir = pg_bindir()
    if bindir is None and os.geteuid() == 0 and shutil.which("apt-get"):
        subprocess.run(["apt-get", "install", "-y", "-q", "postgresql"], capture_output=True,
                       timeout=600)
        bindir = pg_bindir()
    if bindir is None:
        pytest.skip("PostgreSQL binaries (initdb, pg_ctl) are not installed")
    if not shutil.which("psql") and not (bindir / "psql").exists():
        pytest.skip("psql is not installed (Message DB's install.sh needs it)")
    return bindir


def message_db_dir() -> Path:
    """The extracted npm package's ``database`` directory (npm pack once, cached)."""
    CACHE.mkdir(parents=True, exist_ok=True)
    found = sorted(CACHE.glob("eventide-message-db-*.tgz"))
    if not found:
        if not shutil.which("npm"):
            pytest.skip("npm is not installed (Message DB comes from @eventide/message-db)")
        p = subprocess.run(["npm", "pack", MDB_PACKAGE], cwd=CACHE, capture_output=True,
                           text=True, timeout=300)
        found = sorted(CACHE.glob("eventide-message-db-*.tgz"))
        if p.returncode != 0 or not found:
            pytest.skip(f"npm pack {MDB_PACKAGE} failed: {p.stderr.strip()[-300:]}")
    tgz = found[-1]
    dest = CACHE / tgz.name.removesuffix(".tgz")
    if not (dest / "package" / "database" / "install.sh").exists():
        with tarfile.open(tgz) as tf:
            tf.extractall(dest, filter="data")
    return dest / "package" / "database"


def _run_as(user: str | None, argv: list[str], **kw) -> subprocess.CompletedProcess:
    if user:
        argv = ["runuser", "-u", user, "--", *argv]
    p = subprocess.run(argv, capture_output=True, text=True, timeout=300, **kw)
    if p.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} failed ({p.returncode}): {p.stdout[-1500:]}"
                           f"{p.stderr[-1500:]}")
    return p


def _owner() -> str | None:
    """The unprivileged user the cluster runs as when we are root (PostgreSQL refuses root)."""
    if os.geteuid() != 0:
        return None
    import pwd

    try:
        pwd.getpwnam("nobody")
        return "nobody"
    except KeyError:
        subprocess.run(["useradd", "--system", "--no-create-home", "eventodb-pg"],
                       capture_output=True)
        return "eventodb-pg"


def _chown_tree(path: Path, user: str | None) -> None:
    if user is None:
        return
    import pwd

    pw = pwd.getpwnam(user)
    for root, dirs, files in os.walk(path):
        os.chown(root, pw.pw_uid, pw.pw_gid)
        for f in files:
            os.chown(os.path.join(root, f), pw.pw_uid, pw.pw_gid)


class Cluster:
    """A running private cluster: ``url(db, user, password)``, ``psql(...)``, ``create_db()``."""

    def __init__(self, bindir: Path, base: Path, user: str | None):
        self.bindir = bindir
        self.base = base
        self.data = base / "data"
        self.sock = base / "sock"
        self.user = user
        self.port = _free_port()
        self.host = "127.0.0.1"
        self.version = ""

    def start(self) -> None:
        opts = (f"-p {self.port} -k {self.sock} -c listen_addresses=127.0.0.1 -c fsync=off "
                "-c synchronous_commit=off -c full_page_writes=off -c max_connections=60")
        _run_as(self.user, [str(self.bindir / "pg_ctl"), "-D", str(self.data), "-l",
                            str(self.base / "pg.log"), "-o", opts, "-w", "-t", "60", "start"])

    def stop(self, mode: str = "immediate") -> None:
        """``fast`` checkpoints first (the template cache); ``immediate`` for a test cluster."""
        subprocess.run(([] if self.user is None else ["runuser", "-u", self.user, "--"])
                       + [str(self.bindir / "pg_ctl"), "-D", str(self.data), "-m", mode,
                          "-w", "stop"], capture_output=True, timeout=120)

    @property
    def env(self) -> dict:
        """libpq environment for psql over the private socket (trust auth, superuser)."""
        env = dict(os.environ)
        env.update(PGHOST=str(self.sock), PGPORT=str(self.port), PGUSER=SUPERUSER)
        env.pop("PGPASSWORD", None)
        env.pop("PGDATABASE", None)
        return env

    def psql(self, sql: str, db: str = "postgres") -> str:
        psql = shutil.which("psql") or str(self.bindir / "psql")
        p = _run_as(None, [psql, "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-d", db,
                           "-c", sql], env=self.env)
        return p.stdout.strip()

    def url(self, db: str, user: str = SUPERUSER, password: str | None = PASSWORD) -> str:
        auth = user if password is None else f"{user}:{password}"
        return f"postgresql://{auth}@{self.host}:{self.port}/{db}"

    def socket_url(self, db: str) -> str:
        """The same database over the private Unix socket (trust auth: no password hashing on
        each connection, for tests that open thousands of connections)."""
        from urllib.parse import quote

        return (f"postgresql://{SUPERUSER}@/{db}?host={quote(str(self.sock), safe='')}"
                f"&port={self.port}")

    def create_db(self, name: str | None = None) -> str:
        name = name or "t_" + uuid.uuid4().hex[:12]
        self.psql(f'CREATE DATABASE "{name}" TEMPLATE {TEMPLATE_DB}')
        return name


def _init_template(bindir: Path, cached: Path, user: str | None) -> None:
    """initdb + Message DB's install.sh into TEMPLATE_DB, then keep the stopped cluster."""
    mdb = message_db_dir()
    work = Path(tempfile.mkdtemp(prefix="eventodb-pg-init-"))
    os.chmod(work, 0o755)
    c = Cluster(bindir, work, user)
    c.data.mkdir()
    c.sock.mkdir()
    pwfile = work / "pw"
    pwfile.write_text(PASSWORD + "\n")
    _chown_tree(work, user)
    try:
        _run_as(user, [str(bindir / "initdb"), "-D", str(c.data), "-U", SUPERUSER,
                       "--pwfile", str(pwfile), "--auth-local=trust",
                       "--auth-host=scram-sha-256", "-E", "UTF8", "--locale=C.UTF-8",
                       "--no-sync"])
        pwfile.unlink()
        c.start()
        env = c.env
        env.update(DATABASE_NAME=TEMPLATE_DB, PGOPTIONS="-c client_min_messages=warning")
        _run_as(None, ["bash", str(mdb / "install.sh")], env=env, cwd=str(mdb))
        # the role Message DB creates, with a password, so tests can log in as it
        c.psql(f"ALTER ROLE message_store PASSWORD '{PASSWORD}'")
        c.stop("fast")  # a checkpoint: synchronous_commit=off may not have flushed the WAL
        tmp = cached.with_name(cached.name + f".tmp{os.getpid()}")
        shutil.copytree(c.data, tmp, symlinks=True)
        try:
            os.replace(tmp, cached)
        except OSError:  # another session cached it first: keep theirs
            shutil.rmtree(tmp, ignore_errors=True)
            if not (cached / "PG_VERSION").exists():
                raise
    finally:
        c.stop()
        shutil.rmtree(work, ignore_errors=True)


def start_cluster() -> Cluster:
    """Copy the cached template cluster (initialised on first use) and start it. Raises
    pytest's Skipped when PostgreSQL or npm cannot be had (bench/messagedb.py uses it too)."""
    bindir = _ensure_postgres()
    mdb = message_db_dir()
    user = _owner()
    version = (mdb / "VERSION.txt").read_text().strip()
    pgver = bindir.parent.name
    cached = CACHE / f"cluster-pg{pgver}-mdb{version}"
    if not (cached / "PG_VERSION").exists():
        _init_template(bindir, cached, user)
    base = Path(tempfile.mkdtemp(prefix="eventodb-pg-"))
    os.chmod(base, 0o755)
    c = Cluster(bindir, base, user)
    shutil.copytree(cached, c.data, symlinks=True)
    c.sock.mkdir()
    os.chmod(c.data, 0o700)
    _chown_tree(base, user)
    c.version = version
    try:
        c.start()
    except RuntimeError:
        shutil.rmtree(base, ignore_errors=True)
        raise
    return c


def remove_cluster(c: Cluster) -> None:
    c.stop()
    shutil.rmtree(c.base, ignore_errors=True)


@pytest.fixture(scope="session")
def messagedb():
    """A running private PostgreSQL cluster with Message DB in a template database."""
    c = start_cluster()
    yield c
    remove_cluster(c)


@pytest.fixture
def mdb_url(messagedb) -> str:
    """A fresh Message DB database (a copy of the template) as a postgresql:// URL."""
    return messagedb.url(messagedb.create_db())


def random_password() -> str:
    return secrets.token_hex(8)
