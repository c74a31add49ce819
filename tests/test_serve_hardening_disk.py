"""``eventodb serve`` on a full disk (issue 9, item 6): writes answer BACKEND_ERROR "disk full",
the store stays intact, reads and /health go on, and writes work again once there is room.

A real full disk: a small tmpfs mounted on the test's data directory (needs root; skipped with
the reason when ``mount`` is refused)."""

from __future__ import annotations

import json
import os
import subprocess
import uuid

import httpx
import pytest

from conftest import start_server


@pytest.fixture
def small_disk(tmp_path):
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    if os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs needs root")
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1536k", "tmpfs", str(mnt)],
                       capture_output=True, text=True)
    if r.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs: {r.stderr.strip()}")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], capture_output=True)


def test_full_disk_is_disk_full_and_the_store_stays_intact(small_disk, exe):
    filler = small_disk / "filler"
    filler.write_bytes(b"\0" * 256 * 1024)  # removed later to make room again
    srv = start_server(small_disk / "data")
    h = {"Authorization": f"Bearer {srv.token}"}

    def rpc(req):
        r = httpx.post(srv.url + "/rpc", content=json.dumps(req), headers=h, timeout=30)
        return r.status_code, r.json()

    full = (500, {"error": {"code": "BACKEND_ERROR",
                            "message": "Failed to write message: disk full"}})
    try:
        written = 0
        for i in range(2000):
            answer = rpc(["stream.write", f"fill-{i % 3}",
                          {"type": "T", "data": {"i": i, "pad": "z" * 8000}}])
            if answer[0] != 200:
                assert answer == full
                break
            written += 1
        else:
            pytest.fail("the disk never filled up")
        assert written > 0
        # more writes: the same clear answer, never "cannot rollback"
        for i in range(3):
            assert rpc(["stream.write", "fill-9", {"type": "T",
                                                    "data": {"pad": "z" * 8000}}]) == full
        # reads and /health go on, with every message that was acknowledged
        status, rows = rpc(["category.get", "fill", {"batchSize": -1}])
        assert status == 200 and [r[5]["i"] for r in rows] == list(range(written))
        assert httpx.get(srv.url + "/health").status_code == 200
        # no namespace can be made either; nothing half-made stays behind
        nid = "full-" + uuid.uuid4().hex[:6]
        assert rpc(["ns.create", nid]) == (500, {"error": {
            "code": "BACKEND_ERROR", "message": "Failed to create namespace: disk full"}})
        assert nid not in {r["namespace"] for r in rpc(["ns.list"])[1]}
        assert not [p for p in (small_disk / "data").iterdir() if p.name.startswith("full-")]
        # /import says so too
        rec = {"id": str(uuid.uuid4()), "stream": "imp-1", "type": "T", "pos": 0,
               "gpos": 10_000, "data": {"pad": "z" * 60_000}, "meta": None,
               "time": "2025-01-15T10:00:00Z"}
        r = httpx.post(srv.url + "/import", content=json.dumps(rec) + "\n", headers=h,
                       timeout=30)
        events = [json.loads(b[6:]) for b in r.text.split("\n\n") if b]
        assert events[-1]["error"] == "IMPORT_FAILED"
        assert events[-1]["message"] == "disk full"
        # room again: writes go on where they stopped
        filler.unlink()
        status, res = rpc(["stream.write", "fill-0", {"type": "T", "data": {"after": 1}}])
        assert status == 200, res
        assert res["globalPosition"] == written + 1
    finally:
        srv.stop()
    r = exe("store", "check", "--store", small_disk / "data" / "default.db")
    assert r.exit_code == 0, r
