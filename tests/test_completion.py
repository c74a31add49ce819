"""Shell completion: the checked-in scripts are current, and real shells complete commands,
options, local-store categories and profile names through them."""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys

import pytest

from conftest import ROOT, exe_path
from eventodb_cli.domain.message import new_message
from eventodb_cli.store.local import LocalStore


def _gen():
    spec = importlib.util.spec_from_file_location("gen_completions",
                                                  ROOT / "scripts" / "gen_completions.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_checked_in_completions_are_up_to_date():
    gen = _gen()
    diff = gen.differences(gen.render_all())
    assert not diff, (f"completions/ is out of date ({', '.join(diff)}): run "
                      f"`{gen.REGENERATE}` and commit completions/")


def test_out_of_date_check_names_the_command(tmp_path):
    gen = _gen()
    scripts = gen.render_all()
    for name, text in scripts.items():
        (tmp_path / name).write_text(text)
    assert gen.differences(scripts, tmp_path) == []
    (tmp_path / "_eventodb").write_text("# stale\n")
    assert gen.differences(scripts, tmp_path) == ["_eventodb"]
    p = subprocess.run([sys.executable, str(ROOT / "scripts" / "gen_completions.py"),
                        "--check"], capture_output=True, text=True, cwd=ROOT)
    assert p.returncode == 0, p.stderr
    assert gen.REGENERATE == "python scripts/gen_completions.py"


@pytest.mark.parametrize("shell, name", [("bash", "eventodb.bash"), ("zsh", "_eventodb"),
                                         ("fish", "eventodb.fish")])
def test_completion_command_prints_the_checked_in_script(exe, shell, name):
    r = exe("completion", shell)
    assert r.exit_code == 0
    assert r.stdout == (ROOT / "completions" / name).read_text()


def test_completion_rejects_other_shells(exe):
    r = exe("completion", "tcsh")
    assert r.exit_code == 2 and "tcsh" in r.stderr


def _env(**extra):
    env = dict(os.environ)
    env["PATH"] = os.path.dirname(exe_path()) + os.pathsep + env.get("PATH", "")
    env.update(extra)
    return env


def bash_complete(words: list[str], cword: int | None = None, env=None) -> list[str]:
    """Source `eventodb completion bash` in a real bash and drive its function the way bash's
    programmable completion does (COMP_WORDS/COMP_CWORD)."""
    if shutil.which("bash") is None:
        pytest.skip("bash is not installed")
    cword = len(words) - 1 if cword is None else cword
    arr = " ".join("'" + w.replace("'", "'\\''") + "'" for w in words)
    script = ("source <(eventodb completion bash)\n"
              f"COMP_WORDS=({arr}); COMP_CWORD={cword}; COMP_LINE=\"${{COMP_WORDS[*]}}\"\n"
              "_eventodb_completion eventodb\n"
              "printf '%s\\n' \"${COMPREPLY[@]}\"\n")
    p = subprocess.run(["bash", "-c", script], capture_output=True, text=True,
                       env=env or _env(), timeout=60)
    assert p.returncode == 0, p.stderr
    return [x for x in p.stdout.split("\n") if x]


def test_bash_completes_subcommands(tmp_path):
    got = bash_complete(["eventodb", ""])
    for name in ("write", "stream", "category", "export", "import", "store", "completion"):
        assert name in got
    assert bash_complete(["eventodb", "st"]) == ["stream", "store"]
    assert bash_complete(["eventodb", "store", ""]) == ["check", "compact", "info"]


def test_bash_completes_options_and_choices():
    got = bash_complete(["eventodb", "export", "--"])
    for opt in ("--category", "--since", "--until", "--output", "--gzip", "--store", "--url"):
        assert opt in got
    assert bash_complete(["eventodb", "import", "x.ndjson", "--ver"]) == ["--verify",
                                                                          "--verbose"]
    assert bash_complete(["eventodb", "store", "info", "--format", ""]) == [
        "table", "json", "ndjson", "raw"]
    assert bash_complete(["eventodb", "completion", "z"]) == ["zsh"]
    # the hidden protocol flag is not offered
    assert "--complete" not in bash_complete(["eventodb", "completion", "bash", "--"])


def test_bash_completes_categories_of_the_local_store(tmp_path):
    store = str(tmp_path / "s.db")
    with LocalStore(store, create=True) as s:
        s.write_batch([new_message(n, "T", {}) for n in
                       ("account-1", "account-2", "order-1", "orderLine-9", "audit")])
    assert bash_complete(["eventodb", "export", "--store", store, "-c", ""]) == [
        "account", "audit", "order", "orderLine"]
    assert bash_complete(["eventodb", "export", "--store", store, "--category", "or"]) == [
        "order", "orderLine"]
    # EVENTODB_STORE names the store too
    assert bash_complete(["eventodb", "export", "-c", "a"], env=_env(EVENTODB_STORE=store)) == [
        "account", "audit"]
    # a server target completes nothing (completion never goes to the network)
    assert bash_complete(["eventodb", "export", "--url", "http://127.0.0.1:9", "-c", ""]) == []


def test_category_completion_is_a_skip_scan(tmp_path):
    """Completing categories on a big store must not scan it: a handful of index seeks."""
    import sqlite3

    from eventodb_cli.store.local_admin import category_names

    store = str(tmp_path / "big.db")
    with LocalStore(store, create=True) as s:
        s.write_batch([new_message(f"c{i % 3}-{i}", "T", {}) for i in range(30000)])
    conn = sqlite3.connect(store)
    steps = []
    conn.set_progress_handler(lambda: steps.append(1), 100)
    assert category_names(conn, "") == ["c0", "c1", "c2"]
    assert len(steps) < 50  # a scan of 30,000 index entries would take thousands of steps


def test_profile_completion_reads_the_config_defensively(tmp_path, monkeypatch):
    from eventodb_cli.cli.completion import complete_profile, profile_names

    cfg = tmp_path / "xdg-config" / "eventodb"
    cfg.mkdir(parents=True)
    assert profile_names() == []
    (cfg / "config.json").write_text(json.dumps({
        "current": "prod",
        "profiles": {"prod": {"url": "https://x"}, "staging": {"url": "https://y"},
                     "scratch": {"store": "/tmp/s.db"}}}))
    assert profile_names() == ["prod", "scratch", "staging"]
    assert [c.value for c in complete_profile(None, None, "s")] == ["scratch", "staging"]
    for broken in ("{not json", "[]", '{"profiles": 7}', '"x"', '{"profiles": {"a": 1}}'):
        (cfg / "config.json").write_text(broken)
        assert profile_names() == []


def test_fish_completes_through_the_script():
    if shutil.which("fish") is None:
        pytest.skip("fish is not installed")
    p = subprocess.run(
        ["fish", "--no-config", "-c",
         f"source {ROOT / 'completions' / 'eventodb.fish'}; complete -C 'eventodb st'; "
         "complete -C 'eventodb export --gz'"],
        capture_output=True, text=True, env=_env(), timeout=60)
    assert p.returncode == 0, p.stderr
    lines = p.stdout.splitlines()
    assert [ln.split("\t")[0] for ln in lines] == ["store", "stream", "--gzip"]
    assert lines[-1] == "--gzip\tCompress the records with gzip."
    assert p.stderr == ""


def test_zsh_script_parses_and_its_protocol_answers():
    if shutil.which("zsh") is None:
        pytest.skip("zsh is not installed")
    p = subprocess.run(["zsh", "-n", str(ROOT / "completions" / "_eventodb")],
                       capture_output=True, text=True)
    assert p.returncode == 0, p.stderr
    # what the zsh function asks for, with descriptions
    p = subprocess.run(["eventodb", "completion", "zsh", "--complete"], capture_output=True,
                       text=True, env=_env(COMP_WORDS="eventodb store c", COMP_CWORD="2"))
    assert p.stdout.splitlines()[0].startswith("plain\tcheck\tCheck the store")


def test_zsh_completes_in_a_real_zsh():
    """Run zsh's completion system for real (zpty drives an interactive shell)."""
    if shutil.which("zsh") is None:
        pytest.skip("zsh is not installed")
    script = f"""
zmodload zsh/zpty
zpty z 'zsh -f -i'
zpty -w z 'fpath=({ROOT / 'completions'} $fpath); autoload -Uz compinit; compinit -u -D; PS1="> "'
zpty -w z 'echo READY'
out=""
for i in {{1..100}}; do zpty -r -t z chunk && out+=$chunk; [[ $out == *READY*READY* ]] && break; sleep 0.1; done
zpty -w -n z $'eventodb sto\\t'
out=""
for i in {{1..100}}; do zpty -r -t z chunk && out+=$chunk || sleep 0.1; [[ $out == *"eventodb store"* ]] && break; done
print -r -- "$out"
zpty -d z
"""
    p = subprocess.run(["zsh", "-f", "-c", script], capture_output=True, text=True,
                       env=_env(), timeout=60)
    assert "eventodb store" in p.stdout, (p.stdout[-2000:], p.stderr[-2000:])


def test_stream_completion_callback(tmp_path):
    from click import Context

    from eventodb_cli.cli.completion import complete_stream
    from eventodb_cli.cli.main import cli

    store = str(tmp_path / "s.db")
    with LocalStore(store, create=True) as s:
        s.write_batch([new_message(n, "T", {}) for n in
                       ("account-1", "account-1", "account-2", "accountant-1", "order-1")])
    ctx = Context(cli)
    from eventodb_cli.cli.common import _TARGET_KEY
    from eventodb_cli.store.resolve import Target

    ctx.meta[_TARGET_KEY] = Target(store=store)
    assert [c.value for c in complete_stream(ctx, None, "account-")] == ["account-1",
                                                                         "account-2"]
    assert [c.value for c in complete_stream(ctx, None, "")] == [
        "account-1", "account-2", "accountant-1", "order-1"]
    ctx.meta[_TARGET_KEY] = Target(store=str(tmp_path / "missing.db"))
    assert complete_stream(ctx, None, "") == []
    (tmp_path / "junk.db").write_text("not sqlite")
    ctx.meta[_TARGET_KEY] = Target(store=str(tmp_path / "junk.db"))
    assert complete_stream(ctx, None, "") == []


def test_check_mode_tells_the_developer_the_command(tmp_path, capsys, monkeypatch):
    gen = _gen()
    monkeypatch.setattr(gen, "OUT_DIR", tmp_path)
    assert gen.main(["--check"]) == 1
    assert capsys.readouterr().err.strip() == (
        "completion scripts out of date: eventodb.bash, _eventodb, eventodb.fish; run: "
        "python scripts/gen_completions.py")
    assert gen.main([]) == 0
    assert gen.main(["--check"]) == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["_eventodb", "eventodb.bash",
                                                         "eventodb.fish"]


def test_name_completion_is_light_and_takes_any_path(tmp_path):
    """Completing a stream name runs on every TAB: it opens the store read-only through a
    file: URI built without urllib.request (which imports http.client, email, ssl and tempfile,
    ~15 ms), and a path with %, #, ? or non-ASCII still names the right file."""
    d = tmp_path / "a%41#x?y-é"
    d.mkdir()
    store = str(d / "s?.db")
    with LocalStore(store, create=True) as s:
        s.write_batch([new_message(n, "T", {}) for n in ("account-1", "account-2", "order-1")])
    assert bash_complete(["eventodb", "stream", "get", "--store", store, "acc"]) == [
        "account-1", "account-2"]
    env = _env(_EVENTODB_COMPLETE="bash_complete", COMP_WORDS="eventodb stream get acc",
               COMP_CWORD="3", EVENTODB_STORE=store)
    code = ("import sys\nsys.argv = ['eventodb']\nfrom eventodb_cli.cli.main import main\n"
            "try:\n    main()\nexcept SystemExit:\n    pass\n"
            "print('urllib.request' in sys.modules, file=sys.stderr)\n")
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env,
                       timeout=60)
    assert p.stdout.split() == ["plain,account-1", "plain,account-2"], p
    assert p.stderr.strip() == "False"
