"""Issue 8 item 13 (and 14's ``import --force``): a full disk, read-only stores, damaged
imports. Real SQLite files; a real tmpfs and a real read-only bind mount where the test may
mount (tests run as root), else skipped with the reason."""

from __future__ import annotations

import json
import os
import re
import subprocess
import uuid

import pytest

from eventodb_cli.domain.message import NewMessage
from eventodb_cli.errors import DiskFull, StoreError
from eventodb_cli.store.local import LocalStore


def _mount(*args) -> str | None:
    p = subprocess.run(["mount", *args], capture_output=True, text=True)
    return None if p.returncode == 0 else (p.stderr.strip() or f"mount exit {p.returncode}")


def _umount(path) -> None:
    subprocess.run(["umount", "-l", str(path)], capture_output=True)


@pytest.fixture
def tiny_disk(tmp_path):
    d = tmp_path / "tiny"
    d.mkdir()
    why = _mount("-t", "tmpfs", "-o", "size=2m", "tmpfs", str(d))
    if why:
        pytest.skip(f"cannot mount a 2 MB tmpfs here: {why}")
    yield d
    _umount(d)


@pytest.fixture
def read_only_dir(tmp_path):
    src, ro = tmp_path / "src", tmp_path / "ro"
    src.mkdir()
    ro.mkdir()
    why = _mount("--bind", str(src), str(ro))
    if why:
        pytest.skip(f"cannot bind-mount here: {why}")
    yield src, ro
    _umount(ro)


def _remount_ro(ro) -> None:
    why = _mount("-o", "remount,bind,ro", str(ro))
    if why:
        pytest.skip(f"cannot remount read-only: {why}")


def _lines(n: int, pad: int = 0, start: int = 0) -> str:
    return "".join(json.dumps({"stream": f"full-{i % 20}", "type": "T",
                               "data": {"i": i, "pad": "x" * pad}}) + "\n"
                   for i in range(start, start + n))


# --- disk full ----------------------------------------------------------------------------------
def test_disk_full_on_a_real_tmpfs_says_so_and_keeps_the_store(tiny_disk, tmp_path, cli):
    store = str(tiny_disk / "s.db")
    f = tmp_path / "big.ndjson"
    f.write_text(_lines(20_000, pad=200))
    r = cli("write", "--file", f, "--store", store, "--batch-size", 500)
    assert r.exit_code == 1, r
    err = r.stderr.strip()
    assert len(err.splitlines()) == 1
    assert "disk full" in err and "the store is intact" in err
    assert "cannot rollback" not in err and "internal error" not in err
    written = int(re.search(r"(\d+) messages were written", err).group(1))
    assert written > 0 and written % 500 == 0
    assert f"every line up to {written}" in err and "--resume" in err
    r = cli("store", "check", "--store", store, "--format", "json")
    assert r.exit_code == 0 and r.json()["ok"] and r.json()["rows"] == written
    # a single write on the full disk: the same words, exit 1, nothing written
    r = cli("write", "full-x", "--type", "T", "--data", json.dumps({"p": "y" * 500_000}),
            "--store", store)
    assert r.exit_code == 1 and "disk full" in r.stderr and "intact" in r.stderr
    with LocalStore(store) as s:
        assert s.message_count() == written


def test_disk_full_raises_diskfull_from_localstore(store_path):
    """SQLITE_FULL simulated with max_page_count: LocalStore raises errors.DiskFull (serve relies
    on it), and the store stays usable and intact."""
    with LocalStore(store_path, create=True) as s:
        s.write_batch([NewMessage("a-1", "T", "{}")])
        pages = s.conn.execute("PRAGMA page_count").fetchone()[0]
        s.conn.execute(f"PRAGMA max_page_count = {pages + 2}")
        big = [NewMessage(f"a-{i}", "T", json.dumps({"pad": "z" * 3000})) for i in range(50)]
        with pytest.raises(DiskFull) as e:
            s.write_batch(big)
        assert isinstance(e.value, StoreError) and "disk full" in e.value.message
        assert s.message_count() == 1
        s.conn.execute("PRAGMA max_page_count = 1073741823")
        assert s.write_batch([NewMessage("a-1", "T", "{}")])[0].global_position == 2


def test_import_on_a_full_disk_leaves_the_store_as_it_was(tiny_disk, tmp_path, cli):
    src = str(tmp_path / "src.db")
    f = tmp_path / "lines.ndjson"
    f.write_text(_lines(8000, pad=200))
    assert cli("write", "--file", f, "--store", src).exit_code == 0
    exp = tmp_path / "e.ndjson"
    # from global position 2: the target's own message (at 1) does not clash
    assert cli("export", "--store", src, "-O", exp, "--since", 2).exit_code == 0
    store = str(tiny_disk / "t.db")
    assert cli("write", "keep-1", "--type", "T", "--store", store).exit_code == 0
    r = cli("import", exp, "--store", store)
    assert r.exit_code == 1 and "disk full" in r.stderr and "nothing imported" in r.stderr, r
    with LocalStore(store) as s:
        assert [m.stream_name for m in s.iter_category("")] == ["keep-1"]


# --- read-only stores ---------------------------------------------------------------------------
def test_a_store_on_a_read_only_mount_can_be_read(read_only_dir, cli, tmp_path):
    src, ro = read_only_dir
    f = tmp_path / "l.ndjson"
    f.write_text(_lines(50))
    assert cli("write", "--file", f, "--store", src / "s.db").exit_code == 0
    _remount_ro(ro)
    store = ro / "s.db"
    r = cli("stream", "get", "full-3", "--store", store, "--format", "json")
    assert r.exit_code == 0 and len(r.json()) == 3, r
    r = cli("store", "check", "--store", store, "--format", "json")
    assert r.exit_code == 0 and r.json()["ok"] and r.json()["rows"] == 50, r
    r = cli("export", "--store", store)
    assert r.exit_code == 0 and len(r.stdout.splitlines()) == 50, r
    r = cli("category", "get", "full", "--member", 0, "--size", 2, "--store", store)
    assert r.exit_code == 0, r
    # a write says plainly why it cannot
    r = cli("write", "full-1", "--type", "T", "--store", store)
    assert r.exit_code == 1 and "read-only" in r.stderr and len(r.stderr.splitlines()) == 1


# --- damaged imports ----------------------------------------------------------------------------
@pytest.fixture
def exported(cli, tmp_path):
    src = str(tmp_path / "src.db")
    f = tmp_path / "l.ndjson"
    f.write_text(_lines(3000))
    assert cli("write", "--file", f, "--store", src).exit_code == 0
    exp = tmp_path / "e.ndjson"
    # from global position 2: the targets' own message (at 1) does not clash
    assert cli("export", "--store", src, "-O", exp, "--since", 2).exit_code == 0
    return exp


def _target_with_one(cli, tmp_path) -> str:
    target = str(tmp_path / "target.db")
    assert cli("write", "keep-1", "--type", "T", "--store", target).exit_code == 0
    return target


def _only_keep(target) -> None:
    with LocalStore(target) as s:
        assert [m.stream_name for m in s.iter_category("")] == ["keep-1"]


@pytest.mark.parametrize("damage", ["cut_at_line", "flipped_digit", "deleted_line"])
def test_damaged_import_is_refused_by_default_when_the_manifest_is_there(exported, cli, tmp_path,
                                                                          damage):
    lines = exported.read_bytes().splitlines(keepends=True)
    if damage == "cut_at_line":
        lines = lines[:2000]
    elif damage == "flipped_digit":
        at = lines[1500].index(b'"gpos":') + 8
        digit = b"3" if lines[1500][at:at + 1] != b"3" else b"4"
        lines[1500] = lines[1500][:at] + digit + lines[1500][at + 1:]
    else:
        del lines[1200]
    exported.write_bytes(b"".join(lines))
    target = _target_with_one(cli, tmp_path)
    r = cli("import", exported, "--store", target)  # no --verify: the manifest is beside it
    assert r.exit_code == 1, r
    assert "nothing imported" in r.stderr and len(r.stderr.strip().splitlines()) == 1
    _only_keep(target)


def test_local_import_of_a_bad_line_leaves_the_store_exactly_as_it_was(exported, cli, tmp_path):
    lines = exported.read_text().splitlines(keepends=True)
    lines[2500] = lines[2500].replace('"data":{', '"data":{"bad":NaN,')
    exported.write_text("".join(lines))
    target = _target_with_one(cli, tmp_path)
    r = cli("import", exported, "--no-verify", "--store", target, "--batch-size", 500)
    assert r.exit_code == 2, r
    assert "line 2501" in r.stderr and "NaN is not a JSON number" in r.stderr
    assert "nothing imported" in r.stderr
    _only_keep(target)
    # --force too: the delete is part of the one transaction
    r = cli("import", exported, "--no-verify", "--force", "--yes", "--store", target)
    assert r.exit_code == 2
    _only_keep(target)


def test_import_force_needs_yes(exported, cli, tmp_path):
    target = _target_with_one(cli, tmp_path)
    r = cli("import", exported, "--force", "--store", target)
    assert r.exit_code == 2 and "--yes" in r.stderr, r
    _only_keep(target)
    r = cli("import", "-", "--force", "--store", target, input=exported.read_text())
    assert r.exit_code == 2 and "--yes" in r.stderr
    _only_keep(target)
    r = cli("import", exported, "--force", "--yes", "--store", target, "--format", "json")
    assert r.exit_code == 0 and r.json()["imported"] == 2999 and r.json()["verified"] is True


def test_import_force_needs_yes_on_a_server(exported, cli, server):
    from eventodb_cli.store.remote import RemoteStore

    ns = f"force{uuid.uuid4().hex[:8]}"
    token = RemoteStore(server.url, server.token).ns_create(ns)["token"]
    cli("write", "keep-1", "--type", "T", "--url", server.url, "--token", token)
    r = cli("import", exported, "--force", "--url", server.url, "--token", token)
    assert r.exit_code == 2 and "--yes" in r.stderr
    with RemoteStore(server.url, token) as s:
        assert [m.stream_name for m in s.iter_category("")] == ["keep-1"]


def test_localstore_reads_positions_beyond_int64(store_path):
    """Issue 8 item 7: an int beyond SQLite's 64-bit range never raises OverflowError."""
    with LocalStore(store_path, create=True) as s:
        s.write_batch([NewMessage("a-1", "T", "{}")])
        huge = 10 ** 20
        assert s.stream_get("a-1", huge) == []
        assert s.stream_get("a-1", 0, huge) == []
        assert s.category_get("a", huge) == []
        assert len(s.category_get("a", -huge)) == 1
        assert len(s.stream_get("a-1", 0, None, huge)) == 1
        assert len(s.list_streams("", "", huge)) == 1


def test_read_only_open_does_not_hide_other_errors(tmp_path):
    bad = tmp_path / "junk.db"
    bad.write_bytes(b"not sqlite" * 100)
    with pytest.raises(StoreError):
        LocalStore(str(bad))
    os.chmod(bad, 0o444)
    with pytest.raises(StoreError):
        LocalStore(str(bad))


def test_store_check_flags_nan_stored_by_an_older_eventodb(store_path, cli):
    """Issue 8 item 2: values that are not strict JSON can no longer enter, but a store written
    before may hold them; store check names those rows (a 'NaN' inside a string is fine)."""
    from eventodb_cli.domain.integrity import row_checksum

    with LocalStore(store_path, create=True) as s:
        s.write_batch([NewMessage("n-1", "T", '{"s":"NaN and Infinity"}'),
                       NewMessage("n-1", "T", "{}")])
        data = '{"x":NaN}'
        row = s.conn.execute("SELECT id, stream_name, type, position, global_position, metadata, "
                             "time FROM messages WHERE global_position = 2").fetchone()
        mid, stream, mtype, pos, gpos, meta, t = row
        s.conn.execute("UPDATE messages SET data = ?, checksum = ? WHERE global_position = 2",
                       (data, row_checksum(mid, stream, mtype, pos, gpos, data, meta, t)))
    r = cli("store", "check", "--store", store_path, "--format", "json")
    assert r.exit_code == 1, r
    damaged = r.json()["damaged"]
    assert [d["globalPosition"] for d in damaged] == [2]
    assert "not strict JSON" in damaged[0]["reason"]


def test_disk_full_while_creating_a_store_leaves_nothing(tmp_path, cli):
    d = tmp_path / "t64"
    d.mkdir()
    why = _mount("-t", "tmpfs", "-o", "size=64k", "tmpfs", str(d))
    if why:
        pytest.skip(f"cannot mount a tmpfs here: {why}")
    try:
        (d / "pad").write_bytes(b"\0" * 60_000)
        r = cli("write", "a-1", "--type", "T", "--store", d / "s.db")
        assert r.exit_code == 1 and "disk full: cannot create the store" in r.stderr, r
        assert sorted(os.listdir(d)) == ["pad"]
    finally:
        _umount(d)


@pytest.mark.parametrize("dir_mode", [0o755, 0o777])
def test_a_store_the_user_may_read_but_not_write_can_be_read(cli, dir_mode):
    """chmod 444, read by another user (nobody, through setpriv: the tests run as root, who may
    write anything): stream get, store check and export work; a write says it is read-only."""
    import shutil
    import tempfile

    from conftest import exe_path

    if os.geteuid() != 0 or not shutil.which("setpriv"):
        pytest.skip("needs root and setpriv to run as another user")
    d = tempfile.mkdtemp(prefix="eventodb-ro-", dir="/tmp")
    try:
        store = os.path.join(d, "s.db")
        assert cli("write", "ro-1", "--type", "T", "--store", store).exit_code == 0
        os.chmod(store, 0o444)
        os.chmod(d, dir_mode)

        def as_nobody(*args):
            return subprocess.run(["setpriv", "--reuid=65534", "--regid=65534",
                                   "--clear-groups", exe_path(), *args, "--store", store],
                                  capture_output=True, text=True, timeout=60,
                                  env=dict(os.environ, HOME=d, XDG_STATE_HOME=d))

        probe = as_nobody("stream", "version", "ro-1")
        if probe.returncode != 0 and "Permission denied" in probe.stderr + probe.stdout:
            pytest.skip(f"nobody cannot run eventodb here: {probe.stderr[:200]}")
        r = as_nobody("stream", "get", "ro-1", "--format", "json")
        assert r.returncode == 0 and len(json.loads(r.stdout)) == 1, r.stderr
        r = as_nobody("store", "check", "--format", "json")
        assert r.returncode == 0 and json.loads(r.stdout)["ok"], r.stderr
        r = as_nobody("export")
        assert r.returncode == 0 and len(r.stdout.splitlines()) == 1, r.stderr
        r = as_nobody("write", "ro-1", "--type", "T")
        assert r.returncode == 1 and "read-only" in r.stderr, r.stderr
        assert len(r.stderr.strip().splitlines()) == 1
    finally:
        shutil.rmtree(d, ignore_errors=True)
