"""Issue 8 items 5 and 7 for ``consume``: a reader that dies takes only what it read (the position
never moves past it), and bad numbers or checkpoint paths are usage errors before any message is
handled."""

from __future__ import annotations

import json
import os
import random
import subprocess

import pytest
from helpers_consume import fill_store, read_checkpoint, share

from conftest import exe_path

MESSAGES = 2500  # about 550 KB of NDJSON: several pipe buffers


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    path = str(tmp_path_factory.mktemp("edges") / "store.db")
    s = fill_store(path, MESSAGES, other_every=5)
    expected = share(s, "account", 0, 1)
    s.close()
    return path, expected


def _complete_lines(data: bytes) -> list[dict]:
    out = []
    for raw in data.split(b"\n"):
        try:
            out.append(json.loads(raw))
        except ValueError:  # the line head cut, or the empty tail
            pass
    return out


def _pipe_run(store_path: str, cp: str, n: int, *extra: str) -> tuple[int, bytes, str]:
    """``eventodb consume ... | head -c n``: head's output, consume's exit status and stderr."""
    cmd = (f"set -o pipefail; '{exe_path()}' consume account --member 0 --size 1 "
           f"--checkpoint '{cp}' --store '{store_path}' --batch-size 50 "
           + " ".join(f"'{x}'" for x in extra)
           + f" 2>'{cp}.err' | head -c {n}; echo \"consume=${{PIPESTATUS[0]}}\" >&2")
    p = subprocess.run(["bash", "-c", cmd], capture_output=True, timeout=60)
    status = p.stderr.decode().strip().splitlines()[-1]
    assert status.startswith("consume="), p.stderr
    with open(cp + ".err") as fh:
        return int(status.split("=")[1]), p.stdout, fh.read()


@pytest.mark.parametrize("extra", [(), ("--idempotency", "LEDGER")], ids=["plain", "ledger"])
def test_head_at_random_sizes_then_a_second_run_delivers_every_message(store, tmp_path, extra):
    store_path, expected = store
    want = [m.id for m in expected]
    total = sum(len(m.to_json()) + 1 for m in expected)
    rnd = random.Random(8_5 if extra else 5)
    sizes = sorted(rnd.randrange(1, total + 20_000) for _ in range(10 if not extra else 4))
    for i, n in enumerate(sizes):
        cp = str(tmp_path / f"cp-{i}.json")
        args = tuple(str(tmp_path / f"ledger-{i}.db") if x == "LEDGER" else x for x in extra)
        code, got, err = _pipe_run(store_path, cp, n, *args)
        assert code in (0, 141), (n, code, err)
        assert "error" not in err and "Traceback" not in err, err
        first = _complete_lines(got)
        if os.path.exists(cp):
            # the position never moves past what head delivered whole
            saved = read_checkpoint(cp)["position"]
            last_whole = first[-1]["globalPosition"] if first else 0
            assert saved <= last_whole + 1, (n, saved, last_whole)
        out = tmp_path / f"second-{i}.ndjson"
        with open(out, "wb") as fh:  # the second run writes to a file
            second = subprocess.run(
                [exe_path(), "consume", "account", "--member", "0", "--size", "1",
                 "--checkpoint", cp, "--store", store_path, *args], stdout=fh,
                stderr=subprocess.PIPE, timeout=60)
        assert second.returncode == 0, second.stderr
        rest = _complete_lines(out.read_bytes())
        seen = {m["id"] for m in first} | {m["id"] for m in rest}
        missing = [x for x in want if x not in seen]
        assert not missing, f"head -c {n}: {len(missing)} message(s) never delivered"
        # and the second run starts where the first one's reader stopped, in order
        assert [m["id"] for m in rest] == want[len(want) - len(rest):]


def test_to_a_file_everything_written_is_taken(store, tmp_path, exe):
    store_path, expected = store
    cp = str(tmp_path / "cp.json")
    r = exe("consume", "account", "--member", 0, "--size", 1, "--checkpoint", cp,
            "--store", store_path)
    assert r.exit_code == 0
    assert len(r.ndjson()) == len(expected)
    assert read_checkpoint(cp)["position"] == expected[-1].global_position + 1


def test_a_slow_reader_is_waited_for_before_the_final_save(store, tmp_path):
    """The consumer is done long before the reader: it waits for the pipe to drain and saves
    the end, not what it had written."""
    store_path, expected = store
    cp = str(tmp_path / "cp.json")
    out = tmp_path / "out.ndjson"
    cmd = (f"'{exe_path()}' consume account --member 0 --size 1 --checkpoint '{cp}' "
           f"--store '{store_path}' | (sleep 1; cat > '{out}')")
    p = subprocess.run(["bash", "-c", cmd], capture_output=True, timeout=60)
    assert p.returncode == 0, p.stderr
    assert len(_complete_lines(out.read_bytes())) == len(expected)
    assert read_checkpoint(cp)["position"] == expected[-1].global_position + 1


@pytest.mark.parametrize("target", ["dir", "dir/", "missing/cp.json", "file/cp.json"])
def test_unusable_checkpoint_path_is_a_usage_error_before_any_message(store, tmp_path, exe,
                                                                      target):
    store_path, _ = store
    (tmp_path / "dir").mkdir()
    (tmp_path / "file").write_text("x")
    r = exe("consume", "account", "--member", 0, "--size", 1, "--checkpoint",
            str(tmp_path / target), "--store", store_path)
    assert r.exit_code == 2, r
    assert r.stdout == ""
    assert len(r.stderr.strip().splitlines()) == 1 and "--checkpoint" in r.stderr
    assert "Traceback" not in r.stderr and "internal error" not in r.stderr


def test_unwritable_checkpoint_directory_is_a_usage_error(store, tmp_path, exe):
    if os.geteuid() == 0:
        pytest.skip("root writes anywhere")
    store_path, _ = store
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o500)
    try:
        r = exe("consume", "account", "--member", 0, "--size", 1, "--checkpoint",
                str(ro / "cp.json"), "--store", store_path)
    finally:
        ro.chmod(0o700)
    assert r.exit_code == 2 and r.stdout == "" and "not writable" in r.stderr


@pytest.mark.parametrize("args", [
    ("--batch-size", "99999999999999999999"), ("--batch-size", str(2**62)),
    ("--size", "99999999999999999999"), ("--member", "-1"), ("--max-messages", "0"),
    ("--from-position", str(2**63)), ("--health-port", "70000"), ("--retries", str(2**40)),
    ("--max-lag", "-1"), ("--poll-interval", "nan"), ("--retry-delay", "inf"),
])
def test_huge_or_bad_numbers_are_usage_errors(store, tmp_path, cli, args):
    store_path, _ = store
    base = {"--member": "0", "--size": "1"}
    flag, value = args
    base[flag] = value
    flat = [x for kv in base.items() for x in kv if kv[0] not in ("--member", "--size")]
    r = cli("consume", "account", "--member", base["--member"], "--size", base["--size"],
            "--checkpoint", str(tmp_path / "cp.json"), "--store", store_path, *flat)
    assert r.exit_code == 2, r
    assert r.stdout == ""
    assert not os.path.exists(tmp_path / "cp.json")


def test_follow_ends_quietly_when_its_idle_reader_goes(tmp_path):
    """A following consumer whose output fits the pipe goes idle; when the reader exits it
    notices (POLLERR on the pipe) and ends quietly, its position not past what was read."""
    path = str(tmp_path / "small.db")
    s = fill_store(path, 20, other_every=0)
    expected = share(s, "account", 0, 1)
    s.close()
    cp = str(tmp_path / "cp.json")
    cmd = (f"'{exe_path()}' consume account --member 0 --size 1 --checkpoint '{cp}' "
           f"--store '{path}' --follow --poll-interval 0.1 2>'{cp}.err' | head -c 700; "
           "echo \" consume=${PIPESTATUS[0]}\" >&2")
    p = subprocess.run(["bash", "-c", cmd], capture_output=True, timeout=30)
    assert p.stderr.decode().strip().endswith(("consume=0", "consume=141")), p.stderr
    with open(cp + ".err") as fh:
        err = fh.read()
    assert "error" not in err and "Traceback" not in err, err
    whole = _complete_lines(p.stdout)
    assert len(whole) < len(expected)
    saved = read_checkpoint(cp)["position"] if os.path.exists(cp) else 1
    assert saved <= (whole[-1]["globalPosition"] + 1 if whole else 1)
