"""services/pipehandler.py driven directly, with real handler processes (Python and bash): the
ack protocol, pipelining within the window, restarts after a crash or a SIGKILL with the
unanswered messages sent again, error answers with retries and --on-error, protocol errors."""

from __future__ import annotations

import json
import os
import signal
import sys
import time
import uuid

import pytest

from eventodb_cli.domain.message import Message
from eventodb_cli.services.pipehandler import HandlerStopped, PipeHandler, parse_answer

# One handler for every test, steered by its environment. It appends each message id it reads
# to $SEEN and each id it acknowledges to $ACKED (before answering), and writes its pid to $PIDS.
HANDLER = r'''
import json, os, sys, time
env = os.environ
seen = open(env["SEEN"], "a")
acked = open(env["ACKED"], "a")
with open(env["PIDS"], "a") as f:
    f.write(f"{os.getpid()}\n")
nth = sum(1 for _ in open(env["PIDS"]))  # this is process number nth
exit_after = int(env.get("EXIT_AFTER", "0"))  # processes before MAX_CRASHES exit after N acks
fail_id, fail_times = env.get("FAIL_ID"), int(env.get("FAIL_TIMES", "0"))
sleep = float(env.get("SLEEP", "0"))
done = 0
if env.get("GARBAGE_FIRST") and nth == 1:
    print("hello from the handler", flush=True)
for line in sys.stdin:
    m = json.loads(line)
    seen.write(m["id"] + "\n"); seen.flush()
    if sleep:
        time.sleep(sleep)
    if m["id"] == fail_id:
        failed = sum(1 for i in open(env["SEEN"]) if i.strip() == fail_id)
        if failed <= fail_times:
            print(json.dumps({"error": "boom"}) if env.get("JSON") else "error boom", flush=True)
            continue
    acked.write(m["id"] + "\n"); acked.flush()
    print('{"ok": true}' if env.get("JSON") else "ok", flush=True)
    done += 1
    if exit_after and done == exit_after and nth <= int(env.get("MAX_CRASHES", "1")):
        os._exit(3)
'''


def messages(n: int, start: int = 1) -> list[Message]:
    t = time.time_ns()
    return [Message(str(uuid.uuid4()), f"account-{i % 7}", "Deposited", i // 7, start + i,
                    '{"i":%d}' % i, None, t) for i in range(n)]


class Rig:
    """A handler command with its files, and what it read and acknowledged."""

    def __init__(self, tmp_path, **env):
        self.dir = tmp_path
        script = tmp_path / "handler.py"
        script.write_text(HANDLER)
        self.seen = tmp_path / "seen"
        self.acked = tmp_path / "acked"
        self.pids = tmp_path / "pids"
        for p in (self.seen, self.acked, self.pids):
            p.write_text("")
        self.env = dict(os.environ, SEEN=str(self.seen), ACKED=str(self.acked),
                        PIDS=str(self.pids), **{k: str(v) for k, v in env.items()})
        self.command = f"exec {sys.executable} {script}"
        self.logs: list[str] = []

    def handler(self, **kw) -> PipeHandler:
        kw.setdefault("backoff", 0.01)
        return PipeHandler(self.command, env=self.env, log=self.logs.append, **kw)

    def ids(self, path) -> list[str]:
        return path.read_text().split()

    def pids_started(self) -> list[int]:
        return [int(x) for x in self.ids(self.pids)]


def feed(h: PipeHandler, msgs: list[Message], *, every=None, batch: int = 100) -> list[int]:
    """Hand ``msgs`` over the way the Consumer does (flush and taken() after each batch), calling
    ``every(i)`` after message i; drain at the end. Returns each taken() seen."""
    seen = []
    for i, m in enumerate(msgs):
        h.handle(m)
        if every is not None:
            every(i)
        if i % batch == batch - 1:
            h.flush()
            seen.append(h.taken())
    h.flush()
    assert h.drain(5.0)
    seen.append(h.taken())
    return seen


def check_never_past_unacked(rig: Rig, msgs: list[Message], taken_values: list[int]) -> None:
    """Every message below each taken() value was acknowledged by some handler process."""
    acked = set(rig.ids(rig.acked))
    top = max(taken_values)
    assert taken_values == sorted(taken_values)
    missing = [k for k in range(top) if msgs[k].id not in acked]
    assert not missing, f"taken() passed unacknowledged messages {missing[:5]}"


def test_answers_are_parsed_strictly():
    assert parse_answer(b"ok") == (True, "")
    assert parse_answer(b" ok\r") == (True, "")
    assert parse_answer(b'{"ok": true, "took": 3}') == (True, "")
    assert parse_answer(b"error") == (False, "error")
    assert parse_answer(b"error  db down ") == (False, "db down")
    assert parse_answer(b'{"error": "why"}') == (False, "why")
    assert parse_answer(b'{"error": {"code": 7}}') == (False, '{"code": 7}')
    assert parse_answer(b'{"ok": false}') == (False, "error")
    for bad in (b"", b"OK", b"okay", b"errors", b"1", b"[true]", b'{"ok": 1}', b"{oops",
                b"\xff", b"true", b'{"ok": null}'):
        assert parse_answer(bad) is None, bad


def test_python_handler_gets_each_message_line_and_acks_pipelined(tmp_path):
    rig = Rig(tmp_path)
    msgs = messages(600)
    h = rig.handler(window=50)
    peak = 0

    def watch(_i):
        nonlocal peak
        peak = max(peak, h.offset() - h._done)

    taken = feed(h, msgs, every=watch)
    h.close()
    assert taken[-1] == 600 and h.acked == 600 and h.starts == 1
    assert rig.ids(rig.seen) == [m.id for m in msgs]  # each once, in order
    assert peak <= 50  # never more than the window ahead of the first unanswered
    check_never_past_unacked(rig, msgs, taken)


def test_bash_handler_and_the_exact_line(tmp_path):
    out = tmp_path / "lines"
    h = PipeHandler(f'while IFS= read -r line; do printf "%s\\n" "$line" >> {out}; '
                    f'echo ok; done', window=20, log=lambda t: None)
    msgs = messages(60)
    taken = feed(h, msgs, batch=25)
    h.close()
    assert taken[-1] == 60
    assert out.read_text().splitlines() == [m.to_json() for m in msgs]


def test_json_answers(tmp_path):
    rig = Rig(tmp_path, JSON=1)
    msgs = messages(50)
    rig_fail = msgs[10].id
    rig.env.update(FAIL_ID=rig_fail, FAIL_TIMES="1")
    h = rig.handler(window=10, retries=2)
    feed(h, msgs)
    h.close()
    assert h.taken() == 50 and h.failures == 1 and h.failed == 0
    assert any("handler error: boom; retry 1 of 2" in t for t in rig.logs)


def test_a_handler_that_exits_mid_stream_is_restarted_and_gets_the_unanswered_again(tmp_path):
    rig = Rig(tmp_path, EXIT_AFTER=137, MAX_CRASHES=3)
    msgs = messages(1000)
    h = rig.handler(window=100, retries=0)  # a death after answers is never blamed
    taken = feed(h, msgs)
    h.close()
    assert h.starts == 4 and h.failures == 0
    assert taken[-1] == 1000
    acked = rig.ids(rig.acked)
    assert set(acked) == {m.id for m in msgs}
    assert len(acked) == 1000  # each ack was read before the process ended: no repeats
    check_never_past_unacked(rig, msgs, taken)
    assert sum("handler ended (exit status 3)" in t for t in rig.logs) == 3


def test_sigkill_mid_stream_loses_nothing(tmp_path):
    rig = Rig(tmp_path, SLEEP=0.0005)
    msgs = messages(800)
    h = rig.handler(window=100)
    kills = []

    def kill(i):
        if i in (250, 600):
            pid = rig.pids_started()[-1]
            os.kill(pid, signal.SIGKILL)
            kills.append(pid)

    taken = feed(h, msgs, every=kill)
    h.close()
    assert len(kills) == 2 and h.starts == 3
    assert taken[-1] == 800
    acked = rig.ids(rig.acked)
    assert set(acked) == {m.id for m in msgs}  # every message acknowledged at least once
    check_never_past_unacked(rig, msgs, taken)
    # what repeats: only messages a killed process had read but whose answer was not taken
    repeats = len(acked) - 800
    assert 0 <= repeats <= 2 * 100


def test_error_answers_are_retried_then_skipped(tmp_path):
    rig = Rig(tmp_path)
    msgs = messages(200)
    rig.env.update(FAIL_ID=msgs[42].id, FAIL_TIMES="99")
    h = rig.handler(window=30, retries=2, on_error="skip")
    taken = feed(h, msgs)
    h.close()
    assert taken[-1] == 200 and h.failed == 1 and h.failures == 3 and h.acked == 199
    assert rig.ids(rig.seen).count(msgs[42].id) == 3
    assert any("skipping message " + msgs[42].id in t for t in rig.logs)


def test_on_error_stop_keeps_the_position_at_the_failed_message(tmp_path):
    rig = Rig(tmp_path)
    msgs = messages(300)
    rig.env.update(FAIL_ID=msgs[120].id, FAIL_TIMES="99")
    h = rig.handler(window=40, retries=1)
    with pytest.raises(HandlerStopped) as e:
        for m in msgs:
            h.handle(m)
            h.taken()
    assert e.value.exit_code == 1
    assert e.value.message == h.stopped
    assert (f"message {msgs[120].id} at global position {msgs[120].global_position} "
            "(2 attempts): boom; stopping at it") in e.value.message
    assert h.reader_gone()  # an idle --follow loop ends too
    # only handle() raises: the consumer's final flush/drain/taken run through and save
    h.flush()
    assert h.drain(5.0) is False
    assert h.taken() == 120
    with pytest.raises(HandlerStopped):
        h.check()  # what consume calls after the run
    h.close()


def test_a_handler_that_always_dies_ends_by_on_error(tmp_path):
    h = PipeHandler("exit 7", retries=2, backoff=0.01, log=lambda t: None)
    t0 = time.monotonic()
    feed_until_stop = messages(5)
    for m in feed_until_stop:
        h.handle(m)
    h.flush()
    assert h.drain(5.0) is False  # the end of a run: every message settled or a stop
    with pytest.raises(HandlerStopped, match="exit status 7"):
        h.check()
    assert h.starts == 3 and h.failures == 3
    assert time.monotonic() - t0 < 5
    # with skip, each message goes the same way and the consumer moves on
    h = PipeHandler("exit 7", retries=0, backoff=0.001, on_error="skip", log=lambda t: None)
    assert feed(h, messages(5))[-1] == 5
    assert h.failed == 5


def test_a_protocol_error_restarts_the_handler(tmp_path):
    rig = Rig(tmp_path, GARBAGE_FIRST=1)
    msgs = messages(100)
    h = rig.handler(window=20)
    taken = feed(h, msgs)
    h.close()
    assert taken[-1] == 100 and h.starts == 2 and h.failures == 1
    assert any("protocol error: 'hello from the handler'" in t for t in rig.logs)
    check_never_past_unacked(rig, msgs, taken)


def test_a_slow_handler_is_pipelined(tmp_path):
    """100 messages at 10 ms each: about 1 s when the consumer never waits per message."""
    rig = Rig(tmp_path, SLEEP=0.01)
    msgs = messages(100)
    h = rig.handler(window=100)
    t0 = time.monotonic()
    for m in msgs:
        h.handle(m)
    h.flush()
    handed = time.monotonic() - t0
    assert handed < 0.5  # handing over does not wait for the answers
    assert h.taken() < 100
    assert h.drain(5.0)
    h.close()
    assert h.taken() == 100


def test_interrupt_bounds_the_drain_and_close_ends_a_stuck_handler(tmp_path):
    h = PipeHandler("trap '' TERM; while :; do sleep 0.05; done", window=5,
                    log=lambda t: None)
    for m in messages(5):
        h.handle(m)  # the window is full now; a sixth would wait
    h.interrupt()
    h.handle(messages(1, start=100)[0])  # an interrupted consumer never waits for the window
    t0 = time.monotonic()
    assert h.drain(0.3) is False
    assert time.monotonic() - t0 < 2
    assert h.taken() == 0
    proc = h._proc
    h.close(grace=0.2, kill_grace=0.2)
    assert proc.poll() is not None  # SIGTERM ignored: SIGKILLed


def test_large_messages_are_bounded_in_bytes_too(tmp_path, monkeypatch):
    from eventodb_cli.services import pipehandler

    monkeypatch.setattr(pipehandler, "MAX_AHEAD_BYTES", 4000)
    rig = Rig(tmp_path, SLEEP=0.001)
    t = time.time_ns()
    msgs = [Message(str(uuid.uuid4()), "account-1", "Big", i, i + 1,
                    json.dumps({"pad": "x" * 1000}), None, t) for i in range(60)]
    h = rig.handler(window=1000)
    peak = 0

    def watch(_i):
        nonlocal peak
        peak = max(peak, h._qbytes)

    assert feed(h, msgs, every=watch)[-1] == 60
    h.close()
    assert peak < 4000 + 1200  # one message past the bound at most


def test_an_endless_answer_line_is_a_protocol_error(tmp_path, monkeypatch):
    from eventodb_cli.services import pipehandler

    monkeypatch.setattr(pipehandler, "MAX_ANSWER", 1000)
    logs = []
    marker = tmp_path / "second"
    # the first process writes 5,000 bytes without a newline; the next one answers properly
    cmd = (f"if [ -e {marker} ]; then while read -r l; do echo ok; done; else touch {marker}; "
           f"head -c 5000 /dev/zero | tr '\\0' x; sleep 5; fi")
    h = PipeHandler(cmd, window=10, backoff=0.01, log=logs.append)
    assert feed(h, messages(20))[-1] == 20
    h.close()
    assert h.starts == 2 and h.failures == 1
    assert any("an answer of more than 1000 bytes" in t for t in logs)
