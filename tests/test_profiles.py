"""Profiles (config file, mode 0600, atomic) and target precedence: flag > env > profile >
local default."""

from __future__ import annotations

import json
import os
import stat

import pytest

from eventodb_cli.errors import NotFound, UsageError
from eventodb_cli.store import profiles as P
from eventodb_cli.store.resolve import Target, resolve_target
from conftest import make_token

TOK_A = make_token("default")
TOK_B = make_token("default")
TOK_ENV = make_token("default")


def cfg_file(tmp_path):
    return tmp_path / "xdg-config" / "eventodb" / "config.json"


def test_profile_add_list_show_use_remove(cli, tmp_path):
    r = cli("profile", "add", "prod", "--url", "http://10.0.0.5:8080/", "--token", TOK_A,
            "--description", "production")
    assert r.exit_code == 0, r
    assert r.json()["current"] is True  # the first profile becomes the current one
    r = cli("profile", "add", "prod2", "--url", "http://h:2", "-o", "table")
    assert r.stdout.startswith("profile prod2 saved to ") and "(current)" not in r.stdout
    r = cli("profile", "add", "scratch", "--store", str(tmp_path / "s.db"))
    assert r.exit_code == 0, r
    rows = cli("profile", "list", "-o", "json").json()
    assert [(x["name"], x["kind"], x["current"], x["token"]) for x in rows] == [
        ("prod", "server", True, "stored"), ("prod2", "server", False, None),
        ("scratch", "local", False, None)]
    shown = cli("profile", "show", "-o", "json").json()
    assert shown["name"] == "prod" and shown["target"] == "http://10.0.0.5:8080/"
    assert cli("profile", "use", "scratch").exit_code == 0
    assert cli("profile", "show", "-o", "json").json()["name"] == "scratch"
    r = cli("profile", "remove", "scratch")
    assert r.exit_code == 0 and "it was current" in r.stdout
    assert cli("profile", "show").exit_code == 4
    assert cli("profile", "use", "nope").exit_code == 4
    for r in (cli("profile", "list"), cli("profile", "list", "-o", "ndjson"),
              cli("profile", "show", "prod", "-o", "table")):
        assert TOK_A not in r.stdout + r.stderr


def test_config_file_is_0600_in_a_0700_dir_and_written_atomically(cli, tmp_path):
    assert cli("profile", "add", "p", "--url", "http://h:1", "--token", TOK_A).exit_code == 0
    f = cfg_file(tmp_path)
    assert stat.S_IMODE(os.stat(f).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(f.parent).st_mode) == 0o700
    assert json.loads(f.read_text())["profiles"]["p"]["token"] == TOK_A
    assert cli("profile", "add", "q", "--url", "http://h:2", "--token", TOK_B).exit_code == 0
    assert stat.S_IMODE(os.stat(f).st_mode) == 0o600
    assert [n for n in os.listdir(f.parent) if n != "config.json"] == []  # no temp left
    # a second add of the same name needs --replace
    r = cli("profile", "add", "p", "--url", "http://h:3")
    assert r.exit_code == 2 and "--replace" in r.stderr


def test_profile_add_validates(cli):
    assert cli("profile", "add", "x", "--url", "http://h", "--store", "/tmp/a").exit_code == 2
    assert cli("profile", "add", "x").exit_code == 2
    assert cli("profile", "add", "bad name", "--url", "http://h").exit_code == 2
    assert cli("profile", "add", "x", "--url", "ftp://h").exit_code == 2
    assert cli("profile", "add", "x", "--store", "/tmp/a", "--token", TOK_A).exit_code == 2
    r = cli("profile", "add", "x", "--url", "http://h", "--token", "-", input=TOK_A + "\n")
    assert r.exit_code == 0 and TOK_A not in r.stdout + r.stderr
    assert P.get_profile("x")["token"] == TOK_A


def test_precedence_flag_env_profile_default(monkeypatch, tmp_path):
    # local default
    t = resolve_target(Target())
    assert t.store == str(tmp_path / "xdg-data" / "eventodb" / "store.db")
    assert t.origin == "default"
    # current profile beats the default
    P.add_profile("prof", {"url": "http://prof:1", "token": TOK_A, "timeout": 7})
    t = resolve_target(Target())
    assert (t.url, t.token, t.timeout, t.origin) == ("http://prof:1", TOK_A, 7.0, "profile prof")
    # EVENTODB_PROFILE beats the current profile
    P.add_profile("other", {"store": str(tmp_path / "o.db")})
    monkeypatch.setenv("EVENTODB_PROFILE", "other")
    t = resolve_target(Target())
    assert (t.store, t.url, t.profile) == (str(tmp_path / "o.db"), None, "other")
    # EVENTODB_URL beats EVENTODB_PROFILE; env token beats nothing -> no token
    monkeypatch.setenv("EVENTODB_URL", "http://env:2")
    t = resolve_target(Target())
    assert (t.url, t.token, t.timeout, t.origin) == ("http://env:2", None, 30.0, "EVENTODB_URL")
    monkeypatch.setenv("EVENTODB_TOKEN", TOK_ENV)
    monkeypatch.setenv("EVENTODB_TIMEOUT", "4")
    t = resolve_target(Target())
    assert (t.token, t.timeout) == (TOK_ENV, 4.0)
    # flags beat everything
    t = resolve_target(Target(url="http://flag:3", token=TOK_B, timeout=2))
    assert (t.url, t.token, t.timeout, t.origin) == ("http://flag:3", TOK_B, 2.0, "--url")
    t = resolve_target(Target(store=str(tmp_path / "f.db")))
    assert (t.store, t.url) == (str(tmp_path / "f.db"), None)
    t = resolve_target(Target(profile="prof"))
    assert (t.url, t.token) == ("http://prof:1", TOK_ENV)  # env token beats the profile's
    monkeypatch.delenv("EVENTODB_TOKEN")
    t = resolve_target(Target(profile="prof"))
    assert t.token == TOK_A


def test_a_profile_token_is_never_sent_to_another_url(tmp_path):
    P.add_profile("prod", {"url": "http://prod:1", "token": TOK_A}, use=True)
    t = resolve_target(Target(url="http://elsewhere:2"))
    assert t.token is None


def test_token_file_and_token_in_url(tmp_path, monkeypatch):
    f = tmp_path / "tok"
    f.write_text(TOK_B + "\n")
    t = resolve_target(Target(url="http://h:1", token_file=str(f)))
    assert t.token == TOK_B
    t = resolve_target(Target(url=f"http://h:1/?token={TOK_A}"))
    assert (t.url, t.token) == ("http://h:1", TOK_A)  # the token leaves the URL
    P.add_profile("tf", {"url": "http://h:9", "token_file": str(f)})
    assert resolve_target(Target(profile="tf")).token == TOK_B
    with pytest.raises(UsageError, match="cannot read token file"):
        resolve_target(Target(url="http://h:1", token_file=str(tmp_path / "missing")))


def test_conflicting_targets_are_usage_errors(cli, tmp_path):
    with pytest.raises(UsageError):
        resolve_target(Target(url="http://h:1", store="/tmp/x.db"))
    with pytest.raises(UsageError):
        resolve_target(Target(url="http://h:1", profile="p"))
    with pytest.raises(NotFound):
        resolve_target(Target(profile="missing"))
    r = cli("stream", "get", "a-1", "--url", "http://h:1", "--store", str(tmp_path / "x"))
    assert r.exit_code == 2 and "two targets" in r.stderr
    r = cli("stream", "get", "a-1", "--url", "ftp://h")
    assert r.exit_code == 2


def test_local_store_profile_drives_commands(cli, tmp_path):
    path = tmp_path / "p.db"
    assert cli("profile", "add", "loc", "--store", str(path), "--use").exit_code == 0
    r = cli("write", "a-1", "-t", "T", "-o", "json")
    assert r.exit_code == 0, r
    assert path.exists()
    assert cli("stream", "version", "a-1", "-o", "json").stdout == "0\n"


def test_server_commands_on_a_local_target_are_usage_errors(cli, tmp_path):
    for args in (["ns", "list"], ["ns", "info"], ["ns", "create", "x"],
                 ["server", "version"], ["subscribe", "--all"]):
        r = cli(*args, "--store", str(tmp_path / "s.db"))
        assert r.exit_code == 2, (args, r)
        assert "needs a server" in r.stderr


def test_ns_streams_and_categories_work_on_a_local_store(cli, store_path):
    for s in ("account-2", "account-1", "order-1"):
        assert cli("write", s, "-t", "T", "--store", store_path).exit_code == 0
    r = cli("ns", "streams", "--store", store_path, "-o", "ndjson")
    assert [x["stream"] for x in r.ndjson()] == ["account-1", "account-2", "order-1"]
    r = cli("ns", "streams", "--store", store_path, "--limit", "1", "--all", "-o", "ndjson")
    assert [x["stream"] for x in r.ndjson()] == ["account-1", "account-2", "order-1"]
    r = cli("ns", "categories", "--store", store_path, "-o", "json")
    assert r.json() == [{"category": "account", "messageCount": 2, "streamCount": 2},
                        {"category": "order", "messageCount": 1, "streamCount": 1}]


@pytest.mark.parametrize("cfg,needle", [
    ({"current": "p", "profiles": {"p": {"url": 123}}}, "url must be a string"),
    ({"current": "p", "profiles": {"p": "x"}}, "must be an object"),
    ({"current": ["p"], "profiles": {}}, '"current" must be a profile name'),
    ({"current": "p", "profiles": {"p": {"store": ["a"]}}}, "store must be a string"),
    ({"current": "p", "profiles": {"p": {"url": "http://h:1", "token_file": 5}}},
     "token_file must be a string"),
    ({"current": "p", "profiles": {"p": {"url": "http://h:1", "timeout": "abc"}}}, "timeout"),
    ({"current": "p", "profiles": {"p": {"url": "http://h:1", "timeout": -1}}}, "timeout"),
    ({"current": "p", "profiles": {"p": {}}}, "either a server"),
])
def test_hand_edited_config_is_checked(cli, cfg, needle):
    """A config edited by hand never crashes a command: one line naming the file and profile."""
    os.makedirs(os.path.dirname(P.config_path()), exist_ok=True)
    with open(P.config_path(), "w") as fh:
        json.dump(cfg, fh)
    for args in (["stream", "get", "a-1"], ["profile", "list"], ["profile", "show", "p"]):
        r = cli(*args)
        assert r.exit_code == 2 and needle in r.stderr, (args, r)
        assert len(r.stderr.splitlines()) == 1 and "internal error" not in r.stderr
    with open(P.config_path(), "w") as fh:  # infinity written by hand is refused too
        fh.write('{"current":"p","profiles":{"p":{"url":"http://h:1","timeout":1e999}}}')
    assert "timeout" in cli("profile", "list", "-o", "json").stderr


def test_profile_url_with_token_in_userinfo_stores_it_as_the_token(cli):
    tok = make_token("default")
    r = cli("profile", "add", "u", "--url", f"http://me:{tok}@127.0.0.1:9/x/")
    assert r.exit_code == 0, r
    cfg = P.load_config()
    assert cfg["profiles"]["u"] == {"url": "http://127.0.0.1:9/x", "token": tok}
    r = cli("profile", "add", "q", "--url", "http://127.0.0.1:9/?token=abc&x=1", "--token", "flag")
    assert P.load_config()["profiles"]["q"] == {"url": "http://127.0.0.1:9/?x=1",
                                                 "token": "flag"}
    assert "malformed server URL" in cli("profile", "add", "z", "--url", "http://[::1").stderr
