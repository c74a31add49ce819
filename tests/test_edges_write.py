"""Issue 8, the write side: strict JSON on every path into a store (item 2), a write whose stdout
fails (6), bounded integer options (7), --resume details (8) and the truth about a partly
written batch on a server (9). Both targets: a local store and a real ``eventodb serve``."""

from __future__ import annotations

import json
import os
import re
import time
import uuid

import pytest

from eventodb_cli.domain.message import canonical_json, new_message
from eventodb_cli.store.local import LocalStore
from eventodb_cli.store.remote import RemoteStore

BAD_JSON = [
    ('{"a":NaN}', "NaN is not a JSON number"),
    ('{"a":-Infinity}', "-Infinity is not a JSON number"),
    ('{"a":Infinity}', "Infinity is not a JSON number"),
    ('{"a":1e999}', "out of range for a double"),
    ('{"a":"\\ud800"}', "lone surrogate"),
    ('{"\\udfff":1}', "lone surrogate"),
    ('{"a":' + "9" * 5000 + "}", "out of range"),
    ('{"a":' + "[" * 3000 + "]" * 3000 + "}", "nested too deeply"),  # was RecursionError, exit 1
]


@pytest.fixture(params=["local", "server"])
def target(request, tmp_path, server):
    """(flags, reader): a fresh local store, or a fresh namespace on the shared server."""
    if request.param == "local":
        path = str(tmp_path / "s.db")

        def read(category):
            if not os.path.exists(path):
                return []
            with LocalStore(path) as s:
                return list(s.iter_category(category))

        return ["--store", path], read
    ns = f"edge{uuid.uuid4().hex[:10]}"
    token = RemoteStore(server.url, server.token).ns_create(ns)["token"]

    def read_remote(category):
        with RemoteStore(server.url, token) as s:
            return list(s.iter_category(category, batch_size=5000))

    return ["--url", server.url, "--token", token], read_remote


# --- item 2: strict JSON in ---------------------------------------------------------------------
@pytest.mark.parametrize("text,reason", BAD_JSON)
def test_data_and_metadata_refuse_nonfinite_and_lone_surrogates(cli, target, tmp_path, text,
                                                                reason):
    flags, read = target
    for opt in ("--data", "--metadata"):
        r = cli("write", "nan-1", "--type", "T", opt, text, *flags)
        assert r.exit_code == 2, r
        assert reason in r.stderr and opt in r.stderr
        assert len(r.stderr.strip().splitlines()) == 1
    f = tmp_path / "v.json"
    f.write_text(text)
    r = cli("write", "nan-1", "--type", "T", "--data", f"@{f}", *flags)
    assert r.exit_code == 2 and reason in r.stderr
    r = cli("write", "nan-1", "--type", "T", "--metadata", "-", *flags, input=text)
    assert r.exit_code == 2 and reason in r.stderr
    assert read("nan") == []


@pytest.mark.parametrize("text,reason", BAD_JSON[:5])
def test_ndjson_line_with_nonfinite_is_exit_2_with_its_line(cli, target, tmp_path, text, reason):
    flags, read = target
    good = json.dumps({"stream": "nan-1", "type": "T", "data": {}})
    bad = '{"stream":"nan-1","type":"T","data":' + text + "}"
    f = tmp_path / "in.ndjson"
    f.write_text(f"{good}\n{good}\n{bad}\n{good}\n")
    r = cli("write", "--file", f, *flags)
    assert r.exit_code == 2, r
    assert "line 3" in r.stderr and reason in r.stderr
    assert read("nan") == []  # the bad line was in the first batch: nothing written
    r = cli("write", "--file", "-", *flags, input=f"{good}\n{bad}\n")
    assert r.exit_code == 2 and "line 2" in r.stderr and reason in r.stderr
    assert read("nan") == []


def test_import_record_with_nonfinite_is_refused_on_a_local_store(cli, tmp_path):
    line = ('{"id":"%s","stream":"nan-1","type":"T","pos":0,"gpos":1,"data":{"a":1e999},'
            '"meta":null,"time":"2026-01-01T00:00:00Z"}\n' % uuid.uuid4())
    f = tmp_path / "e.ndjson"
    f.write_text(line)
    store = tmp_path / "s.db"
    r = cli("import", f, "--store", store)
    assert r.exit_code == 2 and "line 1" in r.stderr and "out of range for a double" in r.stderr
    if store.exists():
        with LocalStore(str(store)) as s:
            assert s.message_count() == 0


def test_values_built_in_python_never_become_nan_output():
    with pytest.raises(ValueError, match="message.data"):
        new_message("a-1", "T", {"x": float("nan")})
    with pytest.raises(ValueError, match="message.metadata"):
        new_message("a-1", "T", {}, {"x": [float("inf")]})
    with pytest.raises(ValueError, match="lone surrogate"):
        new_message("a-1", "T", {"\udc00": 1})
    with pytest.raises(ValueError):
        canonical_json({"x": float("-inf")})


# --- item 6: stdout fails after the write ---------------------------------------------------------
@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="no /dev/full")
@pytest.mark.parametrize("fmt", ["json", "table"])
def test_write_to_dev_full_says_it_was_written(target, fmt):
    import subprocess

    from conftest import exe_path

    flags, read = target
    with open("/dev/full", "w") as full:
        p = subprocess.run([exe_path(), "write", "full-1", "--type", "T", "-o", fmt, *flags],
                           stdout=full, stderr=subprocess.PIPE, text=True, timeout=60)
    assert p.returncode == 0, p.stderr  # written: a script must not retry it
    err = p.stderr.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err
    assert "the message was written (full-1 position 0, global position" in err
    assert "No space left on device" in err
    assert len(read("full")) == 1


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="no /dev/full")
def test_write_file_to_dev_full_says_how_many_were_written(tmp_path, store_path):
    import subprocess

    from conftest import exe_path

    f = tmp_path / "in.ndjson"
    f.write_text("".join(json.dumps({"stream": "full-1", "type": "T", "data": {"i": i}}) + "\n"
                         for i in range(10)))
    with open("/dev/full", "w") as full:
        p = subprocess.run([exe_path(), "write", "--file", str(f), "--store", store_path],
                           stdout=full, stderr=subprocess.PIPE, text=True, timeout=60)
    assert p.returncode == 0 and "10 messages were written" in p.stderr, p.stderr


# --- item 7: integer options ----------------------------------------------------------------------
@pytest.mark.parametrize("args", [
    ["--batch-size", "99999999999999999999"],
    ["--batch-size", str(2 ** 62)],
    ["--batch-size", "0"],
    ["--concurrency", str(2 ** 62)],
    ["--concurrency", "0"],
    ["--concurrency", "-3"],
])
def test_huge_or_bad_write_file_options_are_usage_errors(cli, tmp_path, store_path, args):
    f = tmp_path / "in.ndjson"
    f.write_text('{"stream":"a-1","type":"T","data":{}}\n')
    r = cli("write", "--file", f, "--store", store_path, *args)
    assert r.exit_code == 2, r
    assert "internal error" not in r.stderr and "Traceback" not in r.stderr
    assert not os.path.exists(store_path)


@pytest.mark.parametrize("cmd", [
    ["write", "a-1", "--type", "T", "--expected-version", "99999999999999999999"],
    ["write", "a-1", "--type", "T", "--expected-version", "-2"],
    ["export", "--since", "99999999999999999999"],
    ["export", "--since", "0"],
    ["export", "--until", "-1"],
    ["export", "--batch-size", str(2 ** 62)],
    ["import", "x.ndjson", "--batch-size", "99999999999999999999"],
    ["import", "x.ndjson", "--batch-size", "0"],
])
def test_integer_options_of_write_and_transfer_are_bounded(cli, store_path, tmp_path, cmd,
                                                          monkeypatch):
    (tmp_path / "x.ndjson").write_text("")
    monkeypatch.chdir(tmp_path)
    r = cli(*cmd, "--store", store_path)
    assert r.exit_code == 2, r
    assert "internal error" not in r.stderr and "Overflow" not in r.stderr


# --- item 8: --resume details ---------------------------------------------------------------------
def _file(path, n, start=0, ids=False):
    with open(path, "a") as fh:
        for i in range(start, start + n):
            rec = {"stream": f"res-{i % 5}", "type": "T", "data": {"i": i}}
            if ids:
                rec["id"] = str(uuid.UUID(int=i + 7))
            fh.write(json.dumps(rec) + "\n")


def _is(read, n):
    got = sorted(json.loads(m.data)["i"] for m in read("res"))
    assert got == list(range(n))


def test_resume_of_a_finished_file_writes_nothing_and_appended_lines_once(cli, target, tmp_path,
                                                                          monkeypatch):
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    flags, read = target
    f = tmp_path / "in.ndjson"
    _file(f, 30, ids=True)
    r = cli("write", "--file", f, "--resume", *flags, "--format", "json")
    assert r.exit_code == 0 and r.json()["written"] == 30 and r.json()["resumedAfterLine"] == 0
    r = cli("write", "--file", f, "--resume", *flags, "--format", "json")
    assert r.exit_code == 0 and r.json()["written"] == 0 and r.json()["resumedAfterLine"] == 30
    _file(f, 12, start=30, ids=True)
    r = cli("write", "--file", f, "--resume", *flags, "--format", "json")
    assert r.exit_code == 0 and r.json()["written"] == 12, r
    _is(read, 42)
    # without --resume the file is written again (with new ids for lines without one)
    g = tmp_path / "noid.ndjson"
    _file(g, 3, start=42)
    assert cli("write", "--file", g, *flags).exit_code == 0
    assert cli("write", "--file", g, *flags).exit_code == 0
    assert len(read("res")) == 48


def test_resume_refuses_a_file_changed_before_the_resume_point(cli, target, tmp_path,
                                                              monkeypatch):
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    flags, read = target
    f = tmp_path / "in.ndjson"
    _file(f, 10)
    bad = json.dumps({"stream": "res-0", "type": "T", "data": {"i": 10}, "expectedVersion": 77})
    with open(f, "a") as fh:
        fh.write(bad + "\n")
    _file(f, 5, start=11)
    r = cli("write", "--file", f, "--resume", "--batch-size", 5, "--concurrency", 1, *flags)
    assert r.exit_code == 3 and "line 11" in r.stderr and "--resume" in r.stderr, r
    # a fixed file finishes the job: lines before the resume point are unchanged
    text = f.read_text().replace(', "expectedVersion": 77', "")
    f.write_text(text)
    r = cli("write", "--file", f, "--resume", "--batch-size", 5, "--concurrency", 1, *flags)
    assert r.exit_code == 0, r
    _is(read, 16)
    # a change before the recorded point of an unfinished run is refused
    g = tmp_path / "g.ndjson"
    _file(g, 10, start=100)
    with open(g, "a") as fh:
        fh.write("{broken\n")
    r = cli("write", "--file", g, "--resume", "--batch-size", 5, *flags)
    assert r.exit_code == 2 and "line 11" in r.stderr
    g.write_text(g.read_text().replace('"i": 101', '"i": 999').replace("{broken\n", ""))
    r = cli("write", "--file", g, "--resume", "--batch-size", 5, *flags)
    assert r.exit_code == 2 and "changed before line 10" in r.stderr, r


def test_resume_of_stdin_or_a_pipe_is_a_usage_error(cli, store_path):
    r = cli("write", "--file", "-", "--resume", "--store", store_path, input="")
    assert r.exit_code == 2 and "stdin" in r.stderr
    r = cli("write", "a-1", "--type", "T", "--resume", "--store", store_path)
    assert r.exit_code == 2 and "--file" in r.stderr
    assert not os.path.exists(store_path)


# --- item 9: a failing batch on a server ---------------------------------------------------------
def test_server_conflict_mid_batch_counts_what_landed_and_resume_finishes(cli, target, tmp_path,
                                                                         monkeypatch):
    """A version conflict at line 1,201 (the issue saw it at 2,501) with the default
    concurrency: the error counts every line that landed (no 'before it'), names the lines
    that did not, and a fixed file with --resume writes the rest exactly once. Locally the
    failing batch is rolled back."""
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    flags, read = target
    f = tmp_path / "in.ndjson"
    lines = [json.dumps({"stream": f"res-{i % 40}", "type": "T", "data": {"i": i}})
             for i in range(1500)]
    lines[1200] = json.dumps({"stream": "res-0", "type": "T", "data": {"i": 1200},
                              "expectedVersion": 5})
    f.write_text("\n".join(lines) + "\n")
    r = cli("write", "--file", f, "--batch-size", 1000, *flags)
    assert r.exit_code == 3, r
    err = r.stderr.strip()
    assert len(err.splitlines()) == 1 and "line 1201" in err and "before it" not in err
    written = int(re.search(r"(\d+) messages were written", err).group(1))
    landed = len(read("res"))
    assert written == landed  # the count is the truth
    if flags[0] == "--store":
        assert landed == 1000 and "lines 1001-1500 were not" in err
    else:
        assert landed >= 1000 and "every line up to 1000" in err
        if landed > 1000:
            assert f"{landed - 1000} of lines 1001-1500" in err and "not written: lines" in err
    assert "eventodb write --file" in err and "--resume" in err
    f.write_text(f.read_text().replace(', "expectedVersion": 5', ""))
    r = cli("write", "--file", f, "--resume", "--batch-size", 1000, *flags, "--format", "json")
    assert r.exit_code == 0, r
    _is(read, 1500)
    for k in range(40):  # file order per stream
        got = [json.loads(m.data)["i"] for m in read("res") if m.stream_name == f"res-{k}"]
        assert got == sorted(got)


def test_lines_with_their_own_ids_resume_without_a_record(cli, target, tmp_path, monkeypatch):
    """Lines that carry their own id resume even when no run of this file was recorded (today
    they stopped at line 1 with 'message id already exists'): what is there is skipped."""
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    flags, read = target
    f = tmp_path / "ids.ndjson"
    _file(f, 40, ids=True)
    head = tmp_path / "head.ndjson"
    head.write_text("".join(f.read_text().splitlines(keepends=True)[:25]))
    assert cli("write", "--file", head, *flags).exit_code == 0
    r = cli("write", "--file", f, *flags)  # without --resume: the duplicate id is an error
    assert r.exit_code == 1 and "already exists" in r.stderr
    r = cli("write", "--file", f, "--resume", "--batch-size", 10, *flags, "--format", "json")
    assert r.exit_code == 0, r
    assert r.json()["written"] == 15 and r.json()["alreadyWritten"] == 25
    _is(read, 40)


def test_ctrl_c_right_after_a_commit_reports_what_the_store_holds(tmp_path, store_path):
    """Ctrl-C between a batch's COMMIT and the loop counting it: the interruption message takes
    the count from the store's own record (same transaction), so it is exact."""
    from eventodb_cli.services.writes import Interrupted, write_ndjson

    f = tmp_path / "in.ndjson"
    _file(f, 100)
    with LocalStore(store_path, create=True) as s:
        real = s.write_batch
        calls = []

        def write_batch(msgs, **kw):
            out = real(msgs, **kw)
            calls.append(len(msgs))
            if len(calls) == 3:
                raise KeyboardInterrupt  # after the third commit
            return out

        s.write_batch = write_batch
        with open(f, "rb") as fh, pytest.raises(Interrupted) as e:
            write_ndjson(s, fh, 10, file=str(f))
        assert s.message_count() == 30
    msg = e.value.message
    assert "30 messages were written: every line up to 30" in msg, msg
    assert "were not" not in msg and e.value.summary.lines_done == 30


def test_server_write_goes_on_when_progress_cannot_be_recorded(cli, server, tmp_path,
                                                              monkeypatch):
    """A state directory that cannot be written (a read-only HOME in CI) does not stop a write
    to a server: one warning, and the run is simply not resumable."""
    blocker = tmp_path / "state"
    blocker.write_text("a file where the state directory should be")
    monkeypatch.setenv("XDG_STATE_HOME", str(blocker))
    ns = f"edge{uuid.uuid4().hex[:10]}"
    token = RemoteStore(server.url, server.token).ns_create(ns)["token"]
    f = tmp_path / "in.ndjson"
    _file(f, 12)
    r = cli("write", "--file", f, "--url", server.url, "--token", token, "--batch-size", 5,
            "--format", "json")
    assert r.exit_code == 0 and r.json()["written"] == 12, r
    assert r.stderr.count("warning: cannot record the progress") == 1


def test_old_state_files_of_server_runs_are_pruned(cli, server, tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    d = tmp_path / "state" / "eventodb" / "write-resume"
    d.mkdir(parents=True)
    old, recent = d / "0000000000000000.json", d / "1111111111111111.json"
    for p in (old, recent):
        p.write_text("{}")
    os.utime(old, (time.time() - 100 * 86400,) * 2)
    f = tmp_path / "in.ndjson"
    _file(f, 3)
    r = cli("write", "--file", f, "--url", server.url, "--token", server.token)
    assert r.exit_code == 0, r
    names = sorted(p.name for p in d.iterdir())
    assert old.name not in names and recent.name in names and len(names) == 2
