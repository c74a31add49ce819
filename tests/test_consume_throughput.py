"""Issue 12 acceptance 3 (consume throughput), the guarantees kept while it got faster:

- a checkpoint save per batch without fsync (atomic replace), a durable copy at most every
  ``sync_interval``, the file itself durable at the end; a damaged file (what a power loss can
  leave) falls back to the durable copy;
- the store read in pages of at least 1,000 while the position is still saved per batch;
- only an empty read means caught up (a server may return short pages mid-category);
- ``handled`` (and ``consume --health``) counts what a ``--pipe`` handler acknowledged.
"""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import threading
import time

import pytest
from helpers_consume import fill_store, read_checkpoint, share, start_exe, wait_for

from eventodb_cli.services import checkpoints as cps
from eventodb_cli.services.consumer import Consumer, ConsumerOptions
from eventodb_cli.services.handlers import PrintHandler
from eventodb_cli.services.pipehandler import PipeHandler
from eventodb_cli.store.local import LocalStore

from conftest import exe_path


@pytest.fixture
def filled(store_path):
    fill_store(store_path, 3000, streams=300).close()
    return store_path


class CountingStore(LocalStore):
    """A real local store that counts its category reads."""

    reads = 0

    def category_get(self, *a, **kw):
        self.reads += 1
        return super().category_get(*a, **kw)


class SavesSeen(cps.FileKeeper):
    """The real keeper, remembering every position saved (and what the file said then)."""

    def __init__(self, *a, **kw):
        super().__init__(*a, **kw)
        self.saved: list[int] = []

    def save(self, next_position, **kw):
        super().save(next_position, **kw)
        self.saved.append(read_checkpoint(self.path)["position"])


def _run(store, cp, *, batch=100, member=0, size=3, keeper=None, **kw):
    opts = ConsumerOptions("account", member, size, cp, batch_size=batch, **kw)
    out = io.StringIO()
    c = Consumer(store, opts, PrintHandler(out), log=lambda text: None, keeper=keeper)
    assert c.run() == 0
    return c, [json.loads(line) for line in out.getvalue().splitlines()]


def test_saves_per_batch_without_an_fsync_per_batch(filled, tmp_path, monkeypatch):
    calls = []
    real = os.fsync
    monkeypatch.setattr(os, "fsync", lambda fd: (calls.append(fd), real(fd))[1])
    cp = str(tmp_path / "c.json")
    with LocalStore(filled) as store:
        expected = share(store, "account", 0, 3)
        keeper = SavesSeen(cp, "account", 0, 3, sync_interval=3600)
        c, got = _run(store, cp, keeper=keeper)
    assert [m["id"] for m in got] == [m.id for m in expected]
    # still one save per batch, each past exactly the batch handed over
    assert len(expected) > 900 and len(keeper.saved) == -(-len(expected) // 100)
    assert keeper.saved == [m.global_position + 1 for m in expected[99::100]] + \
        ([] if len(expected) % 100 == 0 else [expected[-1].global_position + 1])
    # fsyncs: the durable copy at the first save (file + directory) and the end of the run
    # (file + directory): not 2 per batch (one save per batch was ~1 ms of fsync, more under load)
    assert len(calls) <= 4, len(calls)
    assert read_checkpoint(cp)["position"] == expected[-1].global_position + 1
    assert not os.path.exists(cps.durable_copy_path(cp))  # removed once the file is durable
    assert not [n for n in os.listdir(tmp_path) if n.startswith(".ckpt-")]  # no temp left


def test_sync_interval_0_fsyncs_every_save(filled, tmp_path, monkeypatch):
    calls = []
    real = os.fsync
    monkeypatch.setattr(os, "fsync", lambda fd: (calls.append(fd), real(fd))[1])
    cp = str(tmp_path / "c.json")
    with LocalStore(filled) as store:
        n = len(share(store, "account", 0, 3))
        _run(store, cp, sync_interval=0)
    assert len(calls) >= 2 * (n // 100)


def test_a_damaged_checkpoint_falls_back_to_its_durable_copy(tmp_path):
    """What a power loss can leave: the last saves (no fsync) lost, the file empty. The durable
    copy is at most sync_interval old: consume and lag go on from it (messages repeat, none is
    skipped)."""
    cp = str(tmp_path / "account.member-0-of-3.json")
    k = cps.FileKeeper(cp, "account", 0, 3, sync_interval=3600)
    k.save(101)  # the first save writes the durable copy
    k.save(201)
    k.save(301)  # within the interval: in the file only
    assert read_checkpoint(cp)["position"] == 301
    assert read_checkpoint(cps.durable_copy_path(cp))["position"] == 101
    k.sync()  # what the consumer does when it goes idle
    assert read_checkpoint(cps.durable_copy_path(cp))["position"] == 301
    k.save(401)
    open(cp, "w").close()  # the power loss: the file without its data
    said = []
    assert cps.FileKeeper(cp, "account", 0, 3, log=said.append).load() == 301
    assert "durable copy" in said[0]
    assert [c.position for c in cps.load_source(str(tmp_path))] == [301]  # what lag reads
    # a readable file wins over the copy (a reset or rewound checkpoint stays what it says)
    cps.save(cp, cps.Checkpoint(5, None, "account", 0, 3))
    assert cps.FileKeeper(cp, "account", 0, 3).load() == 5
    k.finish()
    assert not os.path.exists(cps.durable_copy_path(cp))
    open(cp, "w").close()
    with pytest.raises(Exception, match="unreadable"):
        cps.load(cp)  # no copy: unreadable, as before


def test_durable_copy_is_refreshed_every_interval(tmp_path):
    cp = str(tmp_path / "c.json")
    k = cps.FileKeeper(cp, "account", 0, 3, sync_interval=0.2)
    k.save(11)
    k.save(21)
    assert read_checkpoint(cps.durable_copy_path(cp))["position"] == 11
    time.sleep(0.25)
    k.save(31)
    assert read_checkpoint(cps.durable_copy_path(cp))["position"] == 31


def test_reads_pages_of_1000_and_still_saves_per_batch(filled, tmp_path):
    cp = str(tmp_path / "c.json")
    with CountingStore(filled) as store:
        expected = share(store, "account", 0, 3)
        store.reads = 0
        keeper = SavesSeen(cp, "account", 0, 3)
        _c, got = _run(store, cp, batch=10, keeper=keeper)
        reads = store.reads
    assert [m["id"] for m in got] == [m.id for m in expected]
    assert reads == -(-len(expected) // 1000) + 1, reads  # pages of 1000, one empty read
    assert keeper.saved[:3] == [m.global_position + 1 for m in expected[9:30:10]]
    assert len(keeper.saved) == -(-len(expected) // 10)


def test_batch_larger_than_the_read_ahead_reads_pages_of_the_batch(filled, tmp_path):
    cp = str(tmp_path / "c.json")
    with CountingStore(filled) as store:
        expected = share(store, "account", 0, 3)
        store.reads = 0
        _c, got = _run(store, cp, batch=5000)
        assert store.reads == 2  # everything, then the empty read
    assert [m["id"] for m in got] == [m.id for m in expected]


def test_follow_hands_out_what_is_there_without_waiting_for_a_page(store_path, tmp_path):
    """Read-ahead asks for 1,000 but hands out the 3 messages there are at once."""
    from eventodb_cli.domain.message import new_message

    store = LocalStore(store_path, create=True)
    store.write_batch([new_message(f"account-{i}", "T", {"i": i}) for i in range(3)])
    cp = str(tmp_path / "c.json")
    out = io.StringIO()
    c = Consumer(store, ConsumerOptions("account", 0, 1, cp, follow=True, poll_interval=0.05),
                 PrintHandler(out), log=lambda text: None)
    t = threading.Thread(target=c.run, daemon=True)
    t.start()
    try:
        wait_for(lambda: out.getvalue().count("\n") == 3, 5, what="3 lines")
        wait_for(lambda: os.path.exists(cp) and read_checkpoint(cp)["position"] == 4, 5,
                 what="the checkpoint")
        store2 = LocalStore(store_path)
        store2.write_batch([new_message("account-9", "T", {"i": 9})])
        store2.close()
        wait_for(lambda: out.getvalue().count("\n") == 4, 5, what="the 4th line")
    finally:
        c.request_stop()
        t.join(10)
        store.close()
    assert read_checkpoint(cp)["position"] == 5


def test_short_pages_from_a_server_are_not_the_end(server, tmp_path):
    """A server whose backend returns short pages mid-category (EventoDB's Pebble backend does):
    consume reads on; only an empty read means caught up."""
    import uuid

    from test_perf_remote_reads import ShortPages

    from eventodb_cli.domain.hashing import member_for
    from eventodb_cli.domain.message import NewMessage
    from eventodb_cli.store.remote import RemoteStore

    with RemoteStore(server.url, server.token) as admin:
        token = admin.ns_create("cshort-" + uuid.uuid4().hex[:10])["token"]
    names = [f"account-{uuid.UUID(int=i + 1)}" for i in range(60)]
    with RemoteStore(server.url, token) as s:
        s.write_batch([NewMessage(names[i % 60], "T", '{"i":%d}' % i) for i in range(1500)])
        every = list(s.iter_category("account"))
    expected = [m for m in every if member_for(m.stream_name, 2) == 0]
    t = ShortPages()
    cp = str(tmp_path / "c.json")
    with RemoteStore(server.url, token, transport=t) as s:
        _c, got = _run(s, cp, member=0, size=2)
    assert t.cut > 1
    assert [m["id"] for m in got] == [m.id for m in expected]
    assert read_checkpoint(cp)["position"] == expected[-1].global_position + 1


HALF_ACKS = """import os, sys
n = 0
for line in sys.stdin:
    n += 1
    if n <= 3:
        sys.stdout.write("ok\\n")
        sys.stdout.flush()
    elif n == 10:
        open(os.environ["SEEN"], "w").close()  # got every message, answered 3
"""


def test_handled_and_health_count_acknowledged_messages(store_path, tmp_path):
    from eventodb_cli.domain.message import new_message

    store = LocalStore(store_path, create=True)
    store.write_batch([new_message(f"account-{i}", "T", {"i": i}) for i in range(10)])
    script = tmp_path / "h.py"
    script.write_text(HALF_ACKS)
    seen = tmp_path / "seen"
    handler = PipeHandler(f"{sys.executable} {script}", log=lambda text: None,
                          env=dict(os.environ, SEEN=str(seen)))
    cp = str(tmp_path / "c.json")
    c = Consumer(store, ConsumerOptions("account", 0, 1, cp, drain_timeout=0.2), handler,
                 log=lambda text: None)
    t = threading.Thread(target=c.run, daemon=True)
    t.start()
    try:
        wait_for(lambda: seen.exists(), 10, what="the handler to get every message")
        wait_for(lambda: c.handled == 3, 5, what="3 handled")
        time.sleep(0.2)
        h = c.health()
        assert h["handled"] == 3 and c.handled == 3  # was 10: every message handed over
        assert h["lastProcessed"] is not None
        assert c.metric_row()["messagesHandled"] == 3
        rate, span = c.throughput(), min(10.0, time.monotonic() - c.started)
        assert 2.5 < rate * span < 3.5, (rate, span)  # the 3 acknowledged, not the 10 handed over
    finally:
        c.request_stop()
        handler.interrupt()
        t.join(15)
        handler.close(grace=0.2)
        store.close()
    assert read_checkpoint(cp)["position"] == 4  # past the 3 acknowledged only


def test_sigkill_then_a_damaged_checkpoint_resumes_from_the_copy(filled, tmp_path):
    """The executable, SIGKILLed while following: its checkpoint and the durable copy are both
    whole. Then the file is emptied (what a power loss can do to a save without fsync): the next
    run starts from the copy (here the end: nothing to repeat), skips nothing, and leaves only
    the durable file."""
    exe = exe_path()
    cp = str(tmp_path / "account.member-0-of-3.json")
    out1 = tmp_path / "out1"
    with LocalStore(filled) as store:
        expected = share(store, "account", 0, 3)
    end = expected[-1].global_position + 1
    with open(out1, "wb") as fh:
        p = start_exe(exe, "consume", "account", "--member", 0, "--size", 3,
                      "--checkpoint", cp, "--store", filled, "--follow", "--poll-interval",
                      "0.1", stdout=fh, stderr=subprocess.DEVNULL)
        try:
            wait_for(lambda: os.path.exists(cp) and read_checkpoint(cp)["position"] == end, 30,
                     what="caught up")
            copy = cps.durable_copy_path(cp)
            wait_for(lambda: os.path.exists(copy) and read_checkpoint(copy)["position"] == end,
                     10, what="the durable copy (made when idle)")
        finally:
            os.killpg(p.pid, signal.SIGKILL)
            p.wait(10)
    assert os.path.exists(copy)  # a killed run leaves it
    open(cp, "w").close()
    r = subprocess.run([exe, "consume", "account", "--member", "0", "--size", "3",
                        "--checkpoint", cp, "--store", filled], capture_output=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert b"durable copy" in r.stderr
    assert r.stdout == b""  # the copy was at the end: nothing to repeat, nothing skipped
    assert read_checkpoint(cp)["position"] == end
    assert not os.path.exists(copy)



def test_throughput_after_an_idle_minute_counts_only_the_window():
    """A follower idle for over a minute, then a batch: the rate is the window's messages, not
    every message since the start (the sample before the window is kept as the base)."""
    from collections import deque

    c = Consumer.__new__(Consumer)
    now = time.monotonic()
    c.started, c.handler, c._handled = now - 200, object(), 1005
    c._rate = deque([(now - 150, 990), (now - 100, 1000), (now - 1, 1005)])
    assert c.throughput() == 0.5  # 5 messages in the last 10 s


def test_lag_says_when_it_reads_a_checkpoint_from_its_durable_copy(cli, store_path, tmp_path):
    """`lag --checkpoints DIR` with an emptied checkpoint (a power loss) and its durable copy:
    the copy's position is used, and stderr says so (docs/consume.md), as consume does."""
    from eventodb_cli.domain.message import new_message

    with LocalStore(store_path, create=True) as store:
        store.write_batch([new_message(f"acc-{i}", "T", {}) for i in range(3)])
    d = tmp_path / "ck"
    d.mkdir()
    (d / "acc.member-0-of-1.json").write_text("")
    (d / ".acc.member-0-of-1.json.sync").write_text(
        '{"position": 3, "updatedAt": null, "category": "acc", "member": 0, "size": 1}')
    r = cli("lag", "acc", "--checkpoints", d, "--size", "1", "--store", store_path,
            "-o", "json")
    assert '"position":3' in r.stdout.replace(" ", ""), r
    assert "durable copy" in r.stderr and "acc.member-0-of-1.json" in r.stderr, r.stderr


def test_a_missing_checkpoint_with_a_durable_copy_starts_from_the_copy(tmp_path):
    """A power loss in a consumer's first run can take the checkpoint's new file but keep the
    fsync'd copy: the copy's position is used (and said), not --from-position / 1."""
    from eventodb_cli.services.checkpoints import load

    path = tmp_path / "acc.member-0-of-1.json"
    (tmp_path / ".acc.member-0-of-1.json.sync").write_text(
        '{"position": 42, "updatedAt": null, "category": "acc", "member": 0, "size": 1}')
    said = []
    cp = load(str(path), log=said.append)
    assert cp.position == 42 and cp.path == str(path)
    assert "is missing" in said[0] and "position 42" in said[0]
    assert load(str(tmp_path / "other.json"), log=said.append) is None  # neither: no checkpoint
    (tmp_path / "bad.json").write_text("{")
    with pytest.raises(Exception, match="unreadable"):
        load(str(tmp_path / "bad.json"))  # no copy: the error as before


def test_a_checkpoint_nested_too_deeply_is_an_unreadable_checkpoint(cli, store_path, tmp_path):
    """Not an internal error (RecursionError): the usual one-line error, exit 2."""
    cp = tmp_path / "acc.member-0-of-1.json"
    cp.write_text('{"position":' + "[" * 3000 + "]" * 3000 + "}")
    r = cli("lag", "acc", "--checkpoints", cp, "--size", "1", "--store", store_path)
    assert r.exit_code == 2 and "is unreadable" in r.stderr and "internal" not in r.stderr, r
