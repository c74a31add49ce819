"""``503 SERVER_BUSY`` (``eventodb serve``'s admission control, docs/serve.md: ``Retry-After: 2``)
is retried after the delay the server asks for, for reads and for writes with an id, within
``timeout``; a request that is not idempotent is not retried. Through a small proxy in front of a
real ``eventodb serve`` (tests/proxy_helpers.py) that answers as the server's admission does."""

from __future__ import annotations

import time
import uuid

import pytest

from proxy_helpers import Proxy, busy_answer

from eventodb_cli.domain.message import NewMessage
from eventodb_cli.errors import EventoError
from eventodb_cli.store.remote import RemoteStore


def busy_for(seconds: float, retry_after: str | None = "1", only: bytes = b""):
    """A hook that answers 503 SERVER_BUSY to requests (starting with ``only``) for ``seconds``
    after the first such request."""
    first: list[float] = []

    def hook(method, path, body):
        if not body.startswith(only):
            return None
        now = time.monotonic()
        if not first:
            first.append(now)
        if now - first[0] < seconds:
            return busy_answer(retry_after)
        return None

    return hook


def test_a_read_is_retried_after_retry_after(server):
    """Busy for 1.5 s with Retry-After 1: the client waits ~1 s between attempts and gets its
    answer on the third; without honouring Retry-After its 3 retries (0.05-0.4 s backoff) all
    land inside the busy time and the read fails."""
    with RemoteStore(server.url, server.token) as s:
        s.write_batch([NewMessage("busyread-1", "T", "{}")])
    with Proxy(server.url, busy_for(1.5, only=b'["stream.version"')) as p, \
            RemoteStore(p.url, server.token) as s:
        t0 = time.monotonic()
        assert s.stream_version("busyread-1") == 0
        took = time.monotonic() - t0
    times = [t for t, _, b in p.arrivals if b.startswith(b'["stream.version"')]
    assert len(times) == 3, times
    gaps = [b - a for a, b in zip(times, times[1:])]
    assert all(g >= 0.95 for g in gaps), gaps
    assert took < 5, took


def test_a_write_with_an_id_is_retried_and_written_once(server):
    stream = f"busywrite-{uuid.uuid4().hex[:8]}"
    with Proxy(server.url, busy_for(1.2, only=b'["stream.write"')) as p, \
            RemoteStore(p.url, server.token, concurrency=1) as s:
        res = s.write_batch([NewMessage(stream, "T", '{"n":1}', None, str(uuid.uuid4()), -1),
                             NewMessage(stream, "T", '{"n":2}', None, str(uuid.uuid4()), 0)])
        assert [r.position for r in res] == [0, 1]
        assert [m.data for m in s.stream_get(stream)] == ['{"n":1}', '{"n":2}']
    writes = p.bodies(b'["stream.write"')
    assert len(writes) >= 3  # at least one busy answer, then both written
    assert not p.bodies(b'["stream.last"')  # a busy answer is not taken for maybe-applied


def test_busy_retries_stay_within_the_timeout(server):
    """Always busy, Retry-After 1, timeout 2.5 s and many retries allowed: no wait that would
    end after 2.5 s from the first attempt; the error is the server's, on one line."""
    with Proxy(server.url, busy_for(60, only=b'["stream.version"')) as p, \
            RemoteStore(p.url, server.token, timeout=2.5, retries=10) as s:
        t0 = time.monotonic()
        with pytest.raises(EventoError) as ei:
            s.stream_version("busytimeout-1")
        took = time.monotonic() - t0
    assert ei.value.code == "SERVER_BUSY" and "\n" not in str(ei.value)
    assert 1.9 < took < 3.5, took
    assert len(p.bodies(b'["stream.version"')) == 3  # at 0, ~1 and ~2 s


def test_a_request_that_is_not_idempotent_is_not_retried(server):
    with Proxy(server.url, busy_for(60, only=b'["ns.delete"')) as p, \
            RemoteStore(p.url, server.token) as s:
        with pytest.raises(EventoError) as ei:
            s.ns_delete("busy-not-there")
    assert ei.value.code == "SERVER_BUSY"
    assert len(p.bodies(b'["ns.delete"')) == 1


def test_health_is_retried_after_retry_after(server):
    first: list[float] = []

    def hook(method, path, body):
        if method == "GET" and path.startswith("/health"):
            first.append(time.monotonic())
            if len(first) == 1:
                return busy_answer("1")
        return None

    with Proxy(server.url, hook) as p, RemoteStore(p.url, server.token) as s:
        assert s.server_health()
    assert len(first) == 2 and first[1] - first[0] >= 0.95
