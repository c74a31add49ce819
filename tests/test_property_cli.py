"""Property test over the whole click tree (issue 8): random option and argument values (empty,
huge, negative, unicode, control characters, NaN-like strings, markup) through every command and
subcommand, on a local store and against a real ``eventodb serve``. Whatever the input: no
"internal error", no traceback, and an exit code from the documented table (0-5, or 130/141).

The tree is walked, so a new command or option is covered without touching this file. Left out:
``serve`` (it runs until stopped), flags that run forever or reach outside the test (--watch,
--follow, --exec, --pipe, --health-port), and the target options (tests/test_edges_cli.py covers
those; here they point at the test's own store or server). Values that look like absolute paths
are made relative, so every file a command writes lands in the test's directory.
"""

from __future__ import annotations

import os
import signal
import uuid

import click
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import _runner
from eventodb_cli.cli.main import cli as root
from eventodb_cli.store.remote import RemoteStore

ALLOWED_EXIT = {0, 1, 2, 3, 4, 5, 130, 141}
SKIP_COMMANDS = {("serve",)}
SKIP_OPTIONS = {"--watch", "--follow", "--exec", "--pipe", "--health-port", "--help", "--store",
                "--url", "--token", "--token-file", "--profile", "--complete"}
# a server keeps a subscription open until --count pokes arrive: only on the local store, where
# it is a usage error at once
LOCAL_ONLY = {("subscribe",)}
PER_RUN_SECONDS = 15
# a deeper run: EVENTODB_PROPERTY_SCALE=10 runs ten times the examples
SCALE = float(os.environ.get("EVENTODB_PROPERTY_SCALE", "1"))
# EVENTODB_PROPERTY_COLLECT=1: list every failing invocation instead of stopping at the first
COLLECT = os.environ.get("EVENTODB_PROPERTY_COLLECT") == "1"
# the suite's run is the same every time (a failure is reproducible, not flaky); a survey
# (SCALE or COLLECT set) explores new examples each run
DERANDOMIZE = SCALE == 1 and not COLLECT
FAILURES: list[str] = []
SEEN: set = set()
STATS: dict = {}  # command -> {exit code: runs}, printed with -s


def _walk(cmd: click.Command, path: tuple[str, ...] = ()):
    if isinstance(cmd, click.Group):
        ctx = click.Context(cmd)
        for name in cmd.list_commands(ctx):
            yield from _walk(cmd.get_command(ctx, name), path + (name,))
    elif path not in SKIP_COMMANDS:
        yield path, cmd


LEAVES = sorted(_walk(root), key=lambda x: x[0])

NASTY = ["", " ", "-", "--", "0", "-1", "1", "2", "3", "a-1", "a", "c-1", "c", "@", "@nofile",
         "{}", "[]", "null", '{"a":NaN}', '{"a":1e999}', "NaN", "nan", "inf", "-inf",
         "Infinity", "1e999", "-0", "0x10", "1_000", "\u0661\u0662", "9223372036854775807",
         "9223372036854775808", "-9223372036854775809", "99999999999999999999", "1" * 400,
         "[bold red]x[/]", "[/]", "\x1b[31mred", "\x1b]0;t\x07", "a\nb", "a\rb", "\t",
         "\u202e", "\x00", "\udcff", "東京-1", "ö-1", "account-1+retry", "x" * 300,
         "2026-01-01T00:00:00Z", "yesterday", "../x", "./d/", "table", "json"]
INTS = ["0", "1", "2", "3", "-1", "-2", "1000", "9223372036854775807", "9223372036854775808",
        "-9223372036854775808", "-9223372036854775809", "99999999999999999999", "", "x", "1.5",
        "nan", "1e3", " 7 ", "\u0663", "1" * 5000]
# what '-' reads: nothing, names, NDJSON, an export record, JSON with NaN, bytes that are not UTF-8
STDIN = ["", "a-1\nc-2\n", '{"stream":"a-1","type":"T","data":{}}\n',
         '{"id":"00000000-0000-4000-8000-000000000001","stream":"a-1","type":"T","pos":0,'
         '"gpos":1,"data":{},"meta":null,"time":"2026-01-01T00:00:00Z"}\n',
         '{"a":NaN}\n', b"\xff\xfe\x00\x1b[2J\n", "\x1b[31m\r\n" * 3]
FLOATS = ["0", "0.01", "1", "-1", "nan", "NaN", "inf", "-inf", "1e999", "-1e999", "", "x",
          "1e-320", "86400", "1e12"]


def _relative(v: str) -> str:
    """Keep writes inside the test's directory: no absolute, home or parent paths."""
    v = v.replace("..", "__")
    if v.startswith(("/", "~")):
        v = "./" + v.lstrip("/~")
    if v.startswith("@/") or v.startswith("@~"):
        v = "@./" + v[1:].lstrip("/~")
    return v


BENIGN = ["c", "c-1", "c-2", "a-1", "T", "{}", '{"a":1}', "g", "x.json", "d/"]


def _value(p: click.Parameter, draw):
    """Mostly a sensible value (so a command gets past its first check and does its work),
    else a nasty one."""
    t = p.type
    benign = draw(st.sampled_from([True, True, False]))
    if isinstance(t, click.Choice):
        if benign:
            return draw(st.sampled_from(list(t.choices)))
        return draw(st.sampled_from(["", "x", "TABLE"]))
    if isinstance(t, (click.IntRange,)) or t is click.INT:
        if benign:
            return str(draw(st.integers(0, 4)))
        return draw(st.one_of(st.sampled_from(INTS), st.integers(-3, 50).map(str)))
    if isinstance(t, (click.FloatRange,)) or t is click.FLOAT or t.name == "seconds":
        return draw(st.sampled_from(["0.5", "1", "2"] if benign else FLOATS))
    if benign:
        return draw(st.sampled_from(BENIGN))
    return _relative(draw(st.one_of(st.sampled_from(NASTY), st.text(max_size=12))))


@st.composite
def invocations(draw, leaves):
    path, cmd = draw(st.sampled_from(leaves))
    opts: list[str] = []
    args: list[str] = []
    for p in cmd.params:
        if isinstance(p, click.Option):
            if p.hidden or p.opts[0] in SKIP_OPTIONS or set(p.opts) & SKIP_OPTIONS:
                continue
            if not p.required and not draw(st.sampled_from([True, False, False])):
                continue
            if p.is_flag:
                names = p.opts + list(p.secondary_opts)
                opts.append(draw(st.sampled_from(names)))
            else:
                opts += [p.opts[0], _value(p, draw)]
        else:  # an argument
            n = 1 if p.nargs == 1 else draw(st.integers(0, 3))
            if p.nargs == 1 and not p.required and draw(st.booleans()):
                continue
            args += [_value(p, draw) for _ in range(n)]
    takes_target = any("--store" in getattr(p, "opts", ()) for p in cmd.params)
    stdin = draw(st.sampled_from(STDIN))
    return list(path), opts, args, takes_target, stdin


class _Slow(BaseException):
    pass


def _alarm(signum, frame):
    raise _Slow()


def _check(inv, target, slow: list):
    path, opts, args, takes_target, stdin = inv
    argv = [*path, *opts, *(target if takes_target else []), *(["--", *args] if args else [])]
    old = signal.signal(signal.SIGALRM, _alarm)
    signal.setitimer(signal.ITIMER_REAL, PER_RUN_SECONDS)
    try:
        r = _runner().invoke(root, argv, input=stdin, catch_exceptions=False,
                             prog_name="eventodb", standalone_mode=True)
    except _Slow:
        slow.append(argv)
        return
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)
    out = r.stdout + r.stderr
    STATS.setdefault(" ".join(path), {}).setdefault(r.exit_code, 0)
    STATS[" ".join(path)][r.exit_code] += 1
    if COLLECT:  # survey mode: note every failure, stop at none
        try:
            _assert_ok(argv, r, out)
        except AssertionError as e:
            text = str(e)
            key = (" ".join(path), text[text.find("eventodb:"):][:90])
            if key not in SEEN:
                SEEN.add(key)
                FAILURES.append(f"{argv!r}\n    {text[text.find('eventodb:'):][:300]!r}")
        return
    _assert_ok(argv, r, out)


def _assert_ok(argv, r, out):
    assert r.exit_code in ALLOWED_EXIT, (argv, r.exit_code, out[-500:])
    assert "internal error" not in out, (argv, out[-500:])
    assert "Traceback" not in out, (argv, out[-500:])
    if r.exit_code == 2:  # a usage error is one line (after any -v request log)
        lines = r.stderr.strip("\n").split("\n")
        errors = [line for line in lines if line.startswith("eventodb: error: ")]
        assert len(errors) == 1 and lines[-1] == errors[0], (argv, r.stderr)
        if not {"-v", "--verbose"} & set(argv):
            assert len(lines) == 1, (argv, r.stderr)
    for line in r.stderr.split("\n"):  # what the user typed never drives the terminal
        if line.startswith("eventodb: error: "):
            assert not any(ch in line for ch in "\x1b\r\x07\x9b\x00"), (argv, line)


def _target_cmds(target_kind):
    return [(p, c) for p, c in LEAVES if target_kind == "local" or p not in LOCAL_ONLY]


@pytest.fixture
def workdir(tmp_path, monkeypatch):
    d = tmp_path / "cwd"
    d.mkdir()
    monkeypatch.chdir(d)
    return d


def _fill_local(path):
    lines = "".join(f'{{"stream":"c-{i % 5}","type":"T","data":{{"i":{i}}}}}\n'
                    for i in range(40))
    r = _runner().invoke(root, ["write", "--file", "-", "--store", path], input=lines,
                         catch_exceptions=False)
    assert r.exit_code == 0, r.output


def test_every_command_on_a_local_store(tmp_path, workdir):
    store = str(tmp_path / "prop.db")
    _fill_local(store)
    slow: list = []

    @settings(max_examples=int(400 * SCALE), deadline=None, database=None,
              derandomize=DERANDOMIZE,
              suppress_health_check=list(HealthCheck))
    @given(invocations(_target_cmds("local")))
    def run(inv):
        _check(inv, ["--store", store], slow)

    FAILURES.clear()
    run()
    print(f"\nlocal: {STATS}")
    print("\n".join(["", "FAILURES (local):", *FAILURES]))
    assert not slow, f"commands that did not finish in {PER_RUN_SECONDS}s: {slow}"


@pytest.fixture(scope="module")
def tenant(server):
    """A namespace of its own on the session server (its token cannot touch other tenants)."""
    with RemoteStore(server.url, server.token) as admin:
        info = admin.ns_create("prop-" + uuid.uuid4().hex[:8])
    with RemoteStore(server.url, info["token"]) as s:
        from eventodb_cli.domain.message import NewMessage

        s.write_batch([NewMessage(stream_name=f"c-{i % 5}", type="T", data=f'{{"i":{i}}}')
                       for i in range(40)])
    return info["token"]


def test_every_command_against_a_server(server, tenant, workdir):
    slow: list = []

    @settings(max_examples=int(250 * SCALE), deadline=None, database=None,
              derandomize=DERANDOMIZE,
              suppress_health_check=list(HealthCheck))
    @given(invocations(_target_cmds("server")))
    def run(inv):
        _check(inv, ["--url", server.url, "--token", tenant, "--timeout", "5"], slow)

    FAILURES.clear()
    run()
    print(f"\nserver: {STATS}")
    print("\n".join(["", "FAILURES (server):", *FAILURES]))
    assert not slow, f"commands that did not finish in {PER_RUN_SECONDS}s: {slow}"
