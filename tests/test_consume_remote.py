"""``eventodb consume`` against a real ``eventodb serve`` process: catch-up with the consumer group
on the server, follow mode woken by SSE pokes (never using them as data), clean stop."""

from __future__ import annotations

import json
import os
import secrets
import signal
import time

import pytest
from helpers_consume import read_checkpoint, start_exe, wait_for

from eventodb_cli.domain.hashing import member_for
from eventodb_cli.domain.message import new_message

from conftest import exe_path


@pytest.fixture
def remote(server):
    from eventodb_cli.store.remote import RemoteStore

    st = RemoteStore(server.url, server.token)
    yield st
    st.close()


@pytest.fixture
def category():
    return "cons" + secrets.token_hex(4)


def _env(server):
    return {"EVENTODB_URL": server.url, "EVENTODB_TOKEN": server.token}


def _fill(remote, category, n=120):
    msgs = [new_message(f"{category}-{i % 30}", "Deposited", {"i": i}) for i in range(n)]
    remote.write_batch(msgs)
    return list(remote.iter_category(category))


def test_catch_up_on_a_server_matches_the_share(exe, server, remote, category, tmp_path):
    every = _fill(remote, category)
    cp = str(tmp_path / "c.json")
    r = exe("consume", category, "--member", 1, "--size", 3, "--checkpoint", cp,
            "--batch-size", 7, env=_env(server))
    assert r.exit_code == 0, r
    expected = [m for m in every if member_for(m.stream_name, 3) == 1]
    assert [m["id"] for m in r.ndjson()] == [m.id for m in expected]
    assert read_checkpoint(cp)["position"] == expected[-1].global_position + 1
    # the same checkpoint file is what lag reads, against the server too
    lag = exe("lag", category, "--size", 3, "--checkpoints", cp, "--format", "json",
              "--allow-missing", env=_env(server))  # members 0 and 2 have no checkpoint
    assert lag.exit_code == 0, lag
    m1 = lag.json()["members"][1]
    assert m1["lagMessages"] == 0 and m1["position"] == expected[-1].global_position + 1
    assert lag.json()["head"] == every[-1].global_position


def test_follow_is_woken_by_sse_pokes(server, remote, category, tmp_path):
    """--poll-interval 30: the fallback read comes only after 300 s, so a message written after
    catch-up that shows up within seconds was fetched because a poke woke the consumer."""
    every = _fill(remote, category, 60)
    mine = [m for m in every if member_for(m.stream_name, 2) == 0]
    cp = str(tmp_path / "c.json")
    p = start_exe(exe_path(), "consume", category, "--member", 0, "--size", 2, "--checkpoint",
                  cp, "--follow", "--poll-interval", 30, env=_env(server))
    try:
        got = [json.loads(p.stdout.readline()) for _ in mine]
        assert [g["id"] for g in got] == [m.id for m in mine]
        wait_for(lambda: os.path.exists(cp), what="checkpoint")
        time.sleep(0.5)  # subscribed by now (caught up)
        latencies = []
        for k in range(3):
            ours = next(f"{category}-late{k}x{i}" for i in range(100)
                        if member_for(f"{category}-late{k}x{i}", 2) == 0)
            theirs = next(f"{category}-other{k}x{i}" for i in range(100)
                          if member_for(f"{category}-other{k}x{i}", 2) == 1)
            remote.write(new_message(theirs, "Noise", {}))
            t0 = time.monotonic()
            res = remote.write(new_message(ours, "Late", {"k": k}))
            line = json.loads(p.stdout.readline())
            latencies.append(time.monotonic() - t0)
            assert line["streamName"] == ours and line["data"] == {"k": k}
            assert line["globalPosition"] == res.global_position
        assert max(latencies) < 10, latencies
        wait_for(lambda: read_checkpoint(cp)["position"] == res.global_position + 1,
                 what="checkpoint saved after the new message")
        os.kill(p.pid, signal.SIGTERM)
        out, err = p.communicate(timeout=20)
        assert p.returncode == 0, err
        assert out == b""
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()


def test_follow_keeps_going_when_the_server_goes_away(tmp_path, category):
    """A consumer following a server that restarts logs the failed reads, keeps its checkpoint,
    and carries on once the server is back."""
    from conftest import start_server

    from eventodb_cli.store.remote import RemoteStore

    data = tmp_path / "data"
    srv = start_server(data)
    p = None
    try:
        st = RemoteStore(srv.url, srv.token)
        every = _fill(st, category, 40)
        mine = [m for m in every if member_for(m.stream_name, 2) == 1]
        cp = str(tmp_path / "c.json")
        p = start_exe(exe_path(), "consume", category, "--member", 1, "--size", 2,
                      "--checkpoint", cp, "--follow", "--poll-interval", 0.2,
                      env={"EVENTODB_URL": srv.url, "EVENTODB_TOKEN": srv.token})
        for _ in mine:
            assert p.stdout.readline()
        wait_for(lambda: os.path.exists(cp), what="checkpoint")
        port = srv.url.rsplit(":", 1)[1]
        srv.stop()
        time.sleep(1.5)
        assert p.poll() is None  # still running
        srv2 = _restart_on(data, port, srv.token)
        try:
            st2 = RemoteStore(srv2.url, srv2.token)
            ours = next(f"{category}-back{i}" for i in range(100)
                        if member_for(f"{category}-back{i}", 2) == 1)
            res = st2.write(new_message(ours, "Back", {}))
            line = json.loads(p.stdout.readline())
            assert line["globalPosition"] == res.global_position
            os.kill(p.pid, signal.SIGTERM)
            out, err = p.communicate(timeout=20)
            assert p.returncode == 0, err
            assert read_checkpoint(cp)["position"] == res.global_position + 1
        finally:
            srv2.stop()
    finally:
        if p is not None and p.poll() is None:
            p.kill()
            p.wait()
        srv.stop()


def _restart_on(data_dir, port, token):
    """Start ``eventodb serve`` again on the same port and data directory."""
    import subprocess

    import httpx

    from conftest import ServerProcess

    log = data_dir.parent / f"serve-{port}-again.log"
    proc = subprocess.Popen(
        [exe_path(), "serve", "--data-dir", str(data_dir), "--host", "127.0.0.1", "--port",
         str(port), "--token", token], stdout=open(log, "wb"), stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            if httpx.get(url + "/health", timeout=1).status_code == 200:
                return ServerProcess(url, token, proc, data_dir, log)
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    proc.kill()
    raise RuntimeError(log.read_text()[-2000:])


def test_unreachable_server_fails_fast_without_a_checkpoint(exe, tmp_path):
    from conftest import free_port

    cp = tmp_path / "c.json"
    url = f"http://127.0.0.1:{free_port()}"
    for extra in ([], ["--follow"]):
        r = exe("consume", "acct", "--member", 0, "--size", 2, "--checkpoint", cp, "--url", url,
                *extra, timeout=60)
        assert r.exit_code == 5, r
        assert "cannot connect" in r.stderr and "Traceback" not in r.stderr
        assert not cp.exists()


def test_wrong_token_fails_fast(exe, server, tmp_path):
    from conftest import make_token

    r = exe("consume", "acct", "--member", 0, "--size", 2, "--checkpoint", tmp_path / "c.json",
            "--url", server.url, "--token", make_token("default"), "--follow", timeout=60)
    assert r.exit_code == 5, r
    assert "authentication failed" in r.stderr
