"""``eventodb serve`` memory bounds (issue 9, item 2): large bodies admitted against a memory
budget (503 + Retry-After when it stays full), decoded in a helper process so ``/health`` keeps
answering, and unlimited reads streamed a page at a time. The full-size figures (8 x 90 MiB,
4 x 100k messages, peak RSS) are measured by ``bench/serve_limits.py``."""

from __future__ import annotations

import asyncio
import json
import threading
import time

import httpx
import pytest

from conftest import start_server


def test_budget_admits_in_order_and_times_out():
    from eventodb_cli.server.admission import MemoryBudget

    async def scenario():
        b = MemoryBudget(100)
        first = await b.acquire(80)
        assert first == 80
        order = []

        async def want(name, cost, timeout):
            held = await b.acquire(cost, timeout)
            order.append((name, held))
            return held

        t1 = asyncio.ensure_future(want("a", 50, 5))
        t2 = asyncio.ensure_future(want("b", 10, 5))  # fits now, but waits its turn (FIFO)
        t3 = asyncio.ensure_future(want("late", 500, 0.05))  # over the budget: held alone
        await asyncio.sleep(0.2)
        assert order == [("late", 0)]  # timed out: 0 means answer 503
        b.release(first)
        assert await t1 == 50 and await t2 == 10
        assert order[1:] == [("a", 50), ("b", 10)]
        assert b.used == 60
        b.release(50)
        b.release(10)
        assert b.used == 0
        assert await b.acquire(10**9) == 100  # clamped to the whole budget
        await t3

    asyncio.run(scenario())


@pytest.fixture(scope="module")
def small_budget(tmp_path_factory):
    srv = start_server(tmp_path_factory.mktemp("mem") / "data", "--memory-budget-mib", "16")
    yield srv
    srv.stop()


def _auth(srv):
    return {"Authorization": f"Bearer {srv.token}"}


def test_concurrent_large_writes_are_answered_and_health_stays_fast(small_budget):
    srv = small_budget
    size = 6 * 1024 * 1024  # costs more than the whole 16 MiB budget: admitted one at a time
    body = json.dumps(["stream.write", "large-1", {"type": "Big", "data": {"s": "y" * size}}])
    results: list = []
    worst = [0.0]
    stop = threading.Event()

    def health():
        with httpx.Client(timeout=10) as c:
            while not stop.is_set():
                t0 = time.perf_counter()
                assert c.get(srv.url + "/health").status_code == 200
                worst[0] = max(worst[0], time.perf_counter() - t0)
                stop.wait(0.05)

    def write():
        r = httpx.post(srv.url + "/rpc", content=body, headers=_auth(srv), timeout=60)
        results.append((r.status_code, r.headers.get("retry-after"), r.json()))

    h = threading.Thread(target=health)
    h.start()
    ws = [threading.Thread(target=write) for _ in range(4)]
    for t in ws:
        t.start()
    for t in ws:
        t.join()
    stop.set()
    h.join()
    assert len(results) == 4
    for status, retry, answer in results:
        assert status == 200 or (status == 503 and retry), (status, answer)
        if status == 503:
            assert answer["error"]["code"] == "SERVER_BUSY"
    assert any(s == 200 for s, _, _ in results)
    assert worst[0] < 1.0, worst
    got = httpx.post(srv.url + "/rpc", content=json.dumps(["stream.last", "large-1"]),
                     headers=_auth(srv), timeout=60).json()
    assert got[4]["s"] == "y" * size


def test_large_body_errors_are_the_same_as_small_ones(small_budget):
    srv = small_budget
    pad = " " * (200 * 1024)  # over the inline limit: decoded by the helper process
    cases = [
        (pad + '["stream.write","x-1",{"type":"","data":{}}]', 400,
         "message.type must be a non-empty string"),
        (pad + '["nope"]', 404, "Unknown method: nope"),
        (pad + '{"a":1}', 400, "Malformed JSON request"),
    ]
    for body, status, message in cases:
        r = httpx.post(srv.url + "/rpc", content=body, headers=_auth(srv), timeout=60)
        assert r.status_code == status and r.json()["error"]["message"] == message
    r = httpx.post(srv.url + "/rpc", content=pad + '["sys.version"]', headers=_auth(srv))
    assert r.status_code == 200  # not a write: answered by the server itself


def test_unlimited_reads_are_streamed_and_complete(small_budget):
    from eventodb_cli.server.paging import PAGE

    srv = small_budget
    n = 2 * PAGE + 345
    with httpx.Client(base_url=srv.url, headers=_auth(srv), timeout=60) as c:
        for i in range(0, n, 500):
            for j in range(i, min(n, i + 500)):
                c.post("/rpc", content=json.dumps(
                    ["stream.write", f"paged-{j % 7}", {"type": "T", "data": {"j": j}}]))
        for batch in (-1, 0):
            r = c.post("/rpc", content=json.dumps(["category.get", "paged",
                                                   {"batchSize": batch}]))
            assert r.status_code == 200
            assert "content-length" not in r.headers  # streamed (chunked)
            assert r.text.endswith("]\n")
            rows = r.json()
            assert [row[5]["j"] for row in rows] == list(range(n))
            gpos = [row[4] for row in rows]
            assert gpos == sorted(gpos) and len(set(gpos)) == n
        # a consumer group member, read unlimited, gets exactly its share, in order
        group = c.post("/rpc", content=json.dumps(
            ["category.get", "paged", {"batchSize": -1,
                                       "consumerGroup": {"member": 1, "size": 3}}])).json()
        limited = []
        pos = 1
        while True:
            page = c.post("/rpc", content=json.dumps(
                ["category.get", "paged", {"position": pos, "batchSize": 100,
                                           "consumerGroup": {"member": 1, "size": 3}}])).json()
            if not page:
                break
            limited += page
            pos = page[-1][4] + 1
        assert group == limited
        # stream.get unlimited, longer than a page
        for j in range(PAGE + 10):
            c.post("/rpc", content=json.dumps(["stream.write", "onestream-1",
                                               {"type": "T", "data": {"j": j}}]))
        r = c.post("/rpc", content=json.dumps(["stream.get", "onestream-1",
                                               {"batchSize": -1}]))
        assert [row[4]["j"] for row in r.json()] == list(range(PAGE + 10))
        r = c.post("/rpc", content=json.dumps(["stream.get", "onestream-1",
                                               {"batchSize": -1, "position": 5}]))
        assert [row[2] for row in r.json()] == list(range(5, PAGE + 10))
        # a short unlimited read keeps its Content-Length (not streamed)
        r = c.post("/rpc", content=json.dumps(["stream.get", "paged-1", {"batchSize": 10}]))
        assert "content-length" in r.headers


def test_ctrl_c_stops_server_and_helper_without_a_traceback(tmp_path):
    """Ctrl-C reaches the whole process group, the helper process included."""
    import os
    import signal
    import subprocess

    from conftest import exe_path, free_port, make_token

    port, tok = free_port(), make_token()
    p = subprocess.Popen([exe_path(), "serve", "--data-dir", str(tmp_path / "d"), "--port",
                          str(port), "--token", tok], stderr=subprocess.PIPE,
                         start_new_session=True)
    try:
        url = f"http://127.0.0.1:{port}"
        for _ in range(300):
            try:
                httpx.get(url + "/health", timeout=1)
                break
            except httpx.HTTPError:
                time.sleep(0.1)
        body = " " * (100 * 1024) + json.dumps(["stream.write", "c-1", {"type": "T", "data": {}}])
        r = httpx.post(url + "/rpc", content=body, headers={"Authorization": f"Bearer {tok}"})
        assert r.status_code == 200  # the helper process is running now
        os.killpg(p.pid, signal.SIGINT)
        err = p.stderr.read().decode()
        assert p.wait(30) == 0
    finally:
        if p.poll() is None:
            p.kill()
    assert "Traceback" not in err and "stopped (SIGINT)" in err
