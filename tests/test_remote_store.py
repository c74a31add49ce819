"""RemoteStore request shapes, error mapping, retries and concurrency, through
httpx.MockTransport (the wire behaviour against a real server is in test_sdk_cases.py)."""

from __future__ import annotations

import io
import json
import random
import subprocess
import sys
import threading
import time

import httpx
import pytest

from eventodb_cli.domain.message import new_message
from eventodb_cli.errors import (DuplicateMessageId, EventoError, NotFound, Unreachable,
                                 UsageError, VersionConflict)
from eventodb_cli.store.remote import RemoteStore, namespace_of_token, new_token
from eventodb_cli.store.sse import parse_events, poke_from

TOKEN = "ns_ZGVmYXVsdA_" + "ab" * 32
T = "2025-01-15T10:30:00.5Z"


def _err(status, code, message, details=None):
    err = {"code": code, "message": message}
    if details:
        err["details"] = details
    return httpx.Response(status, json={"error": err})


def store_with(handler, **kw) -> tuple[RemoteStore, list]:
    seen: list = []

    def wrapped(request: httpx.Request):
        body = json.loads(request.content) if request.url.path == "/rpc" else None
        seen.append((request, body))
        return handler(request, body)

    kw.setdefault("backoff", 0.001)
    return RemoteStore("http://evento.test", TOKEN, transport=httpx.MockTransport(wrapped),
                       **kw), seen


# --- requests leave out what the caller did not give ---------------------------------------------
def test_reads_leave_out_options_not_given():
    s, seen = store_with(lambda r, b: httpx.Response(200, content=b"null" if b[0] == "stream.last"
                                                     else b"[]"))
    s.stream_get("account-1")
    s.stream_get("account-1", position=3, batch_size=5)
    s.stream_get("account-1", global_position=7, batch_size=None)
    s.stream_last("account-1")
    s.stream_last("account-1", type="Deposited")
    s.category_get("account")
    s.category_get("account", position=9, correlation="workflow", member=1, size=4)
    bodies = [b for _r, b in seen]
    assert bodies == [
        ["stream.get", "account-1"],
        ["stream.get", "account-1", {"position": 3, "batchSize": 5}],
        ["stream.get", "account-1", {"globalPosition": 7, "batchSize": -1}],
        ["stream.last", "account-1"],
        ["stream.last", "account-1", {"type": "Deposited"}],
        ["category.get", "account"],
        ["category.get", "account", {"position": 9, "correlation": "workflow",
                                     "consumerGroup": {"member": 1, "size": 4}}],
    ]
    assert "null" not in json.dumps(bodies)
    assert all(r.headers["authorization"] == f"Bearer {TOKEN}" for r, _b in seen)
    assert s.requests == 7


def test_write_sends_a_client_chosen_id_and_no_null():
    s, seen = store_with(lambda r, b: httpx.Response(200, json={"globalPosition": 4,
                                                                "position": 0}))
    res = s.write(new_message("account-1", "Opened", {"a": 1.5}))
    assert (res.position, res.global_position) == (0, 4)
    body = seen[0][1]
    assert body[0:2] == ["stream.write", "account-1"]
    assert body[2] == {"type": "Opened", "data": {"a": 1.5}}  # no metadata key at all
    assert set(body[3]) == {"id"}
    import uuid

    uuid.UUID(body[3]["id"])
    s.write(new_message("account-1", "X", {}, {"m": 1}, expected_version=-1))
    assert seen[1][1][2]["metadata"] == {"m": 1}
    assert seen[1][1][3]["expectedVersion"] == -1


def test_large_batch_sizes_are_paged_below_the_server_limit():
    def handler(r, b):
        opts = b[2]
        start = opts.get("position", 0)
        n = min(opts["batchSize"], 25000 - start)
        return httpx.Response(200, json=[[f"00000000-0000-4000-8000-{i:012d}", "T", i, i + 1,
                                          {}, None, T] for i in range(start, start + n)])

    s, seen = store_with(handler)
    got = s.stream_get("s", batch_size=25000)
    assert [m.position for m in got] == list(range(25000))
    assert [b[2]["batchSize"] for _r, b in seen] == [10000, 10000, 5000]


# --- error mapping --------------------------------------------------------------------------------
@pytest.mark.parametrize("resp, etype, exit_code, code", [
    (_err(409, "STREAM_VERSION_CONFLICT", "Expected version 5, stream is at version 1",
          {"actual": 1, "expected": 5}), VersionConflict, 3, "STREAM_VERSION_CONFLICT"),
    (_err(404, "NAMESPACE_NOT_FOUND", "Namespace 'x' not found"), NotFound, 4,
     "NAMESPACE_NOT_FOUND"),
    (_err(401, "AUTH_REQUIRED", "Authorization header required"), Unreachable, 5,
     "AUTH_REQUIRED"),
    (_err(401, "AUTH_INVALID_TOKEN", "Invalid token format"), Unreachable, 5,
     "AUTH_INVALID_TOKEN"),
    (_err(403, "AUTH_UNAUTHORIZED", "Token not authorized for namespace"), Unreachable, 5,
     "AUTH_UNAUTHORIZED"),
    (_err(400, "INVALID_REQUEST", "message.type must be a non-empty string"), UsageError, 2,
     "INVALID_REQUEST"),
    (_err(404, "METHOD_NOT_FOUND", "Unknown method: x"), EventoError, 1, "METHOD_NOT_FOUND"),
    (_err(409, "NAMESPACE_EXISTS", "Namespace 'x' already exists"), EventoError, 1,
     "NAMESPACE_EXISTS"),
])
def test_server_error_codes_become_typed_errors(resp, etype, exit_code, code):
    s, seen = store_with(lambda r, b: resp)
    with pytest.raises(EventoError) as ei:
        s.write(new_message("account-1", "T", {}, expected_version=5))
    e = ei.value
    assert type(e) is etype and e.exit_code == exit_code
    if etype is VersionConflict:
        assert (e.expected, e.actual) == (5, 1)
        assert e.message == "Expected version 5, stream is at version 1"
    else:
        assert e.code == code
    assert len(seen) == 1  # 4xx: never retried


def test_conflict_without_details_is_read_from_the_message():
    s, _ = store_with(lambda r, b: _err(409, "STREAM_VERSION_CONFLICT",
                                        "Expected version 0, stream is at version 3"))
    with pytest.raises(VersionConflict) as ei:
        s.write(new_message("a-1", "T", {}, expected_version=0))
    assert (ei.value.expected, ei.value.actual) == (0, 3)


def test_5xx_is_retried_then_succeeds_and_4xx_is_not():
    calls = {"n": 0}

    def handler(r, b):
        calls["n"] += 1
        if calls["n"] < 3:
            return _err(500, "INTERNAL_ERROR", "boom")
        return httpx.Response(200, json=3)

    s, seen = store_with(handler)
    assert s.stream_version("a-1") == 3
    assert len(seen) == 3 and s.requests == 3


def test_5xx_exhausted_is_an_error_naming_the_code():
    s, seen = store_with(lambda r, b: _err(503, "BACKEND_ERROR", "database is locked"),
                         retries=2)
    with pytest.raises(EventoError) as ei:
        s.stream_version("a-1")
    assert ei.value.exit_code == 1 and "BACKEND_ERROR: database is locked" in ei.value.message
    assert len(seen) == 3


def test_connection_errors_are_retried():
    calls = {"n": 0}

    def handler(r, b):
        calls["n"] += 1
        if calls["n"] == 1:
            raise httpx.ConnectError("[Errno 111] Connection refused")
        return httpx.Response(200, content=b"null\n")

    s, seen = store_with(handler)
    assert s.stream_version("a-1") is None
    assert len(seen) == 2


def test_malformed_json_body_is_a_clear_error():
    s, _ = store_with(lambda r, b: httpx.Response(200, content=b'[["id", "T", 0,'))
    with pytest.raises(EventoError) as ei:
        s.stream_get("a-1")
    assert "malformed JSON in the server's answer to stream.get a-1" in ei.value.message
    s, _ = store_with(lambda r, b: httpx.Response(200, json={"not": "a list"}))
    with pytest.raises(EventoError, match="unexpected answer to stream.get"):
        s.stream_get("a-1")
    s, _ = store_with(lambda r, b: httpx.Response(502, text="<html>Bad Gateway</html>"),
                      retries=0)
    with pytest.raises(EventoError, match="HTTP 502 .* not an EventoDB error"):
        s.stream_get("a-1")


# --- write retries: the id decides ----------------------------------------------------------------
def test_retried_write_that_meets_its_own_id_reports_the_real_position():
    state = {"writes": 0, "id": None}

    def handler(r, b):
        if b[0] == "stream.write":
            state["writes"] += 1
            if state["writes"] == 1:
                state["id"] = b[3]["id"]
                raise httpx.ReadError("connection reset by peer")  # applied, answer lost
            return _err(500, "BACKEND_ERROR", "Failed to write message: failed to insert "
                        "message: UNIQUE constraint failed: messages.id")
        if b[0] == "stream.last":
            return httpx.Response(200, json=[state["id"], "T", 7, 42, {}, None, T])
        raise AssertionError(b)

    s, seen = store_with(handler)
    res = s.write(new_message("a-1", "T", {}))
    assert (res.position, res.global_position) == (7, 42)
    assert [b[0] for _r, b in seen] == ["stream.write", "stream.write", "stream.last"]


def test_retried_write_with_expected_version_meets_its_own_conflict():
    state = {"writes": 0, "id": None}

    def handler(r, b):
        if b[0] == "stream.write":
            state["writes"] += 1
            if state["writes"] == 1:
                state["id"] = b[3]["id"]
                raise httpx.ReadTimeout("timed out")
            return _err(409, "STREAM_VERSION_CONFLICT", "Expected version 2, stream is at "
                        "version 3", {"actual": 3, "expected": 2})
        return httpx.Response(200, json=[state["id"], "T", 3, 9, {}, None, T])

    s, _ = store_with(handler)
    res = s.write(new_message("a-1", "T", {}, expected_version=2))
    assert (res.position, res.global_position) == (3, 9)


def test_duplicate_id_on_a_first_attempt_is_a_real_duplicate():
    s, seen = store_with(lambda r, b: _err(500, "BACKEND_ERROR", "Failed to write message: "
                                           "UNIQUE constraint failed: messages.id"))
    mid = "11111111-1111-4111-8111-111111111111"
    with pytest.raises(DuplicateMessageId):
        s.write(new_message("a-1", "T", {}, id=mid))
    assert len(seen) == 1  # not retried, not "confirmed"


# --- concurrent batches ---------------------------------------------------------------------------
def test_batch_keeps_per_stream_order_and_runs_streams_in_parallel():
    lock = threading.Lock()
    versions: dict[str, int] = {}
    order: dict[str, list[int]] = {}
    active = {"now": 0, "max": 0}
    gpos = {"n": 0}

    def handler(r, b):
        with lock:
            active["now"] += 1
            active["max"] = max(active["max"], active["now"])
        time.sleep(random.uniform(0, 0.004))
        with lock:
            active["now"] -= 1
            stream = b[1]
            v = versions.get(stream, -1) + 1
            versions[stream] = v
            order.setdefault(stream, []).append(b[2]["data"]["i"])
            gpos["n"] += 1
            return httpx.Response(200, json={"globalPosition": gpos["n"], "position": v})

    s, _ = store_with(handler, concurrency=8)
    msgs = [new_message(f"s-{i % 10}", "T", {"i": i}) for i in range(200)]
    res = s.write_batch(msgs)
    assert len(res) == 200
    for k in range(10):
        assert order[f"s-{k}"] == list(range(k, 200, 10))  # per-stream order kept
    assert [r.position for r in res] == [i // 10 for i in range(200)]
    assert active["max"] > 1  # streams really ran in parallel


def test_failed_batch_says_how_many_were_written():
    def handler(r, b):
        if b[1] == "s-3" and b[2]["data"]["i"] >= 13:
            return _err(409, "STREAM_VERSION_CONFLICT", "Expected version 0, stream is at "
                        "version 1", {"actual": 1, "expected": 0})
        return httpx.Response(200, json={"globalPosition": 1, "position": 0})

    s, _ = store_with(handler, concurrency=1)
    msgs = [new_message(f"s-{i % 5}", "T", {"i": i}) for i in range(30)]
    with pytest.raises(VersionConflict) as ei:
        s.write_batch(msgs)
    assert ei.value.batch_written == 13  # one at a time, in input order: 0..12
    assert ei.value.message.endswith("(13 of the 30 messages of this batch were written)")
    assert [r is not None for r in ei.value.batch_results] == [i < 13 for i in range(30)]


# --- tokens ---------------------------------------------------------------------------------------
def test_token_is_redacted_from_errors_and_verbose_logs():
    log = io.StringIO()
    echo = f"bad token {TOKEN} in ?token={TOKEN}&x=1"
    s, _ = store_with(lambda r, b: _err(400, "INVALID_REQUEST", echo), verbose=True, log=log)
    with pytest.raises(UsageError) as ei:
        s.stream_get("a-1")
    assert TOKEN not in ei.value.message and "***" in ei.value.message
    assert "stream.get a-1" in log.getvalue() and TOKEN not in log.getvalue()
    assert TOKEN not in repr(s)


def test_token_helpers():
    assert namespace_of_token(TOKEN) == "default"
    assert namespace_of_token("garbage") is None
    t = new_token("tenant-a")
    assert t.startswith("ns_dGVuYW50LWE_") and namespace_of_token(t) == "tenant-a"
    assert new_token("x??") is None  # base64url "eD8_" can never parse (PROTOCOL.md 2)


# --- SSE parsing ----------------------------------------------------------------------------------
def test_sse_parser_handles_comments_multiline_and_cut_events():
    lines = [": ready", "", "event: poke",
             'data: {"globalPosition":7,"position":0,"stream":"a-1"}', "",
             "data: {\"a\":", "data: 1}", "",
             "event: poke", 'data: {"stream":"cut"']
    evs = list(parse_events(lines))
    assert len(evs) == 2
    assert poke_from(evs[0]) == {"stream": "a-1", "position": 0, "globalPosition": 7}
    assert list(poke_from(evs[0])) == ["stream", "position", "globalPosition"]
    assert evs[1].data == '{"a":\n1}'


def test_local_commands_do_not_import_httpx(tmp_path):
    from eventodb_cli.store.local import LocalStore

    path = tmp_path / "s.db"
    with LocalStore(path, create=True) as st:
        st.write(new_message("a-1", "T", {}))
    code = ("import sys\nfrom eventodb_cli.cli.main import cli\n"
            f"cli.main(['stream','get','a-1','--store',{str(path)!r},'-o','json'],"
            " standalone_mode=False)\n"
            "print('HTTPX' if 'httpx' in sys.modules else 'NO-HTTPX', file=sys.stderr)\n")
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                       env={"PATH": "/usr/bin:/bin", "XDG_CONFIG_HOME": str(tmp_path / "c")})
    assert p.returncode == 0, p.stderr
    assert '"streamName":"a-1"' in p.stdout
    assert p.stderr.strip().endswith("NO-HTTPX")


def test_retried_write_found_behind_other_writers_messages():
    """The lost write is no longer the stream's last message (another writer appended): the
    client scans the stream for its id."""
    state = {"writes": 0, "id": None}

    def handler(r, b):
        if b[0] == "stream.write":
            state["writes"] += 1
            if state["writes"] == 1:
                state["id"] = b[3]["id"]
                return httpx.Response(502, text="bad gateway")  # applied, answer lost
            return _err(500, "BACKEND_ERROR", "UNIQUE constraint failed: messages.id")
        if b[0] == "stream.last":
            return httpx.Response(200, json=["99999999-9999-4999-8999-999999999999", "T", 6,
                                             50, {}, None, T])
        if b[0] == "stream.get":
            assert b[2]["batchSize"] == 10000
            return httpx.Response(200, json=[
                [str(uuid.UUID(int=k)), "T", k, 40 + k, {}, None, T] for k in range(5)
            ] + [[state["id"], "T", 5, 48, {}, None, T],
                 ["99999999-9999-4999-8999-999999999999", "T", 6, 50, {}, None, T]])
        raise AssertionError(b)

    import uuid

    s, seen = store_with(handler)
    res = s.write(new_message("a-1", "T", {}))
    assert (res.position, res.global_position) == (5, 48)
    assert [b[0] for _r, b in seen] == ["stream.write", "stream.write", "stream.last",
                                        "stream.get"]


def test_retried_write_whose_id_is_elsewhere_is_a_duplicate():
    state = {"writes": 0}

    def handler(r, b):
        if b[0] == "stream.write":
            state["writes"] += 1
            if state["writes"] == 1:
                raise httpx.ReadError("reset")
            return _err(500, "BACKEND_ERROR", "UNIQUE constraint failed: messages.id")
        return httpx.Response(200, content=b"null" if b[0] == "stream.last" else b"[]")

    s, _ = store_with(handler)
    with pytest.raises(DuplicateMessageId):
        s.write(new_message("a-1", "T", {}, id="22222222-2222-4222-8222-222222222222"))


def test_ns_create_whose_answer_was_lost_keeps_the_token():
    """The client picks the token, so a retried create that meets NAMESPACE_EXISTS checks the
    token opens the namespace and returns it, instead of losing the only copy."""
    state = {"creates": 0, "token": None}

    def handler(r, b):
        if b[0] == "ns.create":
            state["creates"] += 1
            if state["creates"] == 1:
                state["token"] = b[2]["token"]
                raise httpx.ReadError("reset after the server created it")
            return _err(409, "NAMESPACE_EXISTS", "Namespace 'tenant-a' already exists")
        if b[0] == "stream.version":
            assert r.headers["authorization"] == f"Bearer {state['token']}"
            return httpx.Response(200, content=b"null")
        if b[0] == "ns.info":
            return httpx.Response(200, json={"createdAt": T, "namespace": "tenant-a"})
        raise AssertionError(b)

    s, _ = store_with(handler)
    info = s.ns_create("tenant-a")
    assert info == {"createdAt": T, "namespace": "tenant-a", "token": state["token"]}
    assert namespace_of_token(info["token"]) == "tenant-a"
    # without a lost answer, NAMESPACE_EXISTS is an error
    s2, _ = store_with(lambda r, b: _err(409, "NAMESPACE_EXISTS", "exists"))
    with pytest.raises(EventoError, match="NAMESPACE_EXISTS"):
        s2.ns_create("tenant-a")
