"""Issue 8 item 2 on the import path to a server: a record strict JSON refuses is found before
anything is sent (a server's /import commits in batches), exit 2 with its line."""

from __future__ import annotations

import gzip
import json
import time
import uuid

import pytest

from eventodb_cli.services.transfer import check_strict_lines
from eventodb_cli.store.remote import RemoteStore


def _records(n: int) -> list[str]:
    return ['{"id":"%s","stream":"imp-%d","type":"T","pos":%d,"gpos":%d,"data":{"i":%d,'
            '"f":1.5e300,"s":"3e456 NaN-ish"},"meta":null,"time":"2026-01-01T00:00:00Z"}\n'
            % (uuid.UUID(int=i + 1), i % 3, i // 3, i + 1, i) for i in range(n)]


@pytest.mark.parametrize("bad", ["NaN", "-Infinity", "1e999", '"\\ud800"', "9" * 5000])
def test_server_import_refuses_nonstrict_values_before_sending(cli, server, tmp_path, bad):
    ns = f"imp{uuid.uuid4().hex[:8]}"
    token = RemoteStore(server.url, server.token).ns_create(ns)["token"]
    lines = _records(2500)
    lines[2100] = lines[2100].replace('"i":2100', f'"i":{bad}')
    f = tmp_path / "e.ndjson"
    f.write_text("".join(lines))
    r = cli("import", f, "--url", server.url, "--token", token)
    assert r.exit_code == 2, r
    assert "line 2101" in r.stderr and "nothing imported" in r.stderr
    with RemoteStore(server.url, token) as s:
        assert s.message_count() == 0


def test_strict_scan_passes_clean_files_fast_and_reads_gzip(tmp_path):
    f = tmp_path / "e.ndjson.gz"
    lines = _records(30_000)
    with gzip.open(f, "wt") as fh:
        fh.write("".join(lines))
    started = time.perf_counter()
    check_strict_lines(str(f))  # values that look suspicious but are fine
    assert time.perf_counter() - started < 5
    lines[29_999] = lines[29_999].replace('"f":1.5e300', '"f":1.5e309')
    with gzip.open(f, "wt") as fh:
        fh.write("".join(lines))
    with pytest.raises(Exception) as e:
        check_strict_lines(str(f))
    assert "line 30000" in str(e.value) and "out of range" in str(e.value)
    json.loads(lines[0])


@pytest.mark.skipif(not __import__("os").path.exists("/dev/full"), reason="no /dev/full")
def test_import_into_dev_full_says_it_imported(cli, tmp_path):
    import subprocess

    from conftest import exe_path

    f = tmp_path / "e.ndjson"
    f.write_text("".join(_records(20)))
    with open("/dev/full", "w") as full:
        p = subprocess.run([exe_path(), "import", str(f), "--store", str(tmp_path / "s.db")],
                           stdout=full, stderr=subprocess.PIPE, text=True, timeout=60)
    assert p.returncode == 0 and "20 messages were imported" in p.stderr, p.stderr
    assert len(p.stderr.strip().splitlines()) == 1


def test_strict_scan_is_not_fooled_by_hex_ids_and_strings(tmp_path):
    """Suspects that are fine (an id with 'e' between digits, 'NaN' in a string, 1e300) pass;
    a surrogate pair passes; a lone surrogate escape, Infinity and 1e400 are caught."""
    f = tmp_path / "e.ndjson"
    ok = ['{"id":"1e234567-0000-4000-8000-00000000e123","stream":"s-1","type":"T","pos":0,'
          '"gpos":1,"data":{"s":"NaN Infinity \\\\ud800","x":1e300,"p":"\\ud83d\\ude00"},'
          '"meta":null,"time":"2026-01-01T00:00:00Z"}\n']
    f.write_text("".join(ok * 3))
    check_strict_lines(str(f))
    for bad in ('"\\udc00"', "Infinity", "1E+400", "-1e400"):
        f.write_text("".join(ok * 3) + ok[0].replace("1e300", bad))
        with pytest.raises(Exception, match="line 4"):
            check_strict_lines(str(f))
