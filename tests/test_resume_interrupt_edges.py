"""Issue 8 item 8: an interruption outside the write loop (while the store is opened, or after
every line was written while the store is made durable) still says what was written and how to
finish, never 'aborted'."""

import json

import pytest

from eventodb_cli.store import local as local_mod


def _file(tmp_path, n=50):
    f = tmp_path / "lines.ndjson"
    f.write_text("".join(json.dumps({"stream": f"r-{i % 5}", "type": "T", "data": {"i": i}})
                         + "\n" for i in range(n)))
    return f


@pytest.mark.parametrize("where", ["close", "open"])
def test_interrupt_outside_the_write_loop(cli, tmp_path, monkeypatch, where):
    f = _file(tmp_path)
    store = str(tmp_path / "s.db")
    cls = local_mod.LocalStore
    real = getattr(cls, "close" if where == "close" else "__init__")
    fired = []

    def once(self, *a, **kw):
        if not fired:
            fired.append(1)
            if where == "close":
                real(self, *a, **kw)  # the lines are committed, the interrupt hits after
            raise KeyboardInterrupt
        return real(self, *a, **kw)

    monkeypatch.setattr(cls, "close" if where == "close" else "__init__", once)
    r = cli("write", "--file", f, "--store", store, "--no-progress")
    assert r.exit_code == 130, r
    assert len(r.stderr.strip().splitlines()) == 1 and "aborted" not in r.stderr, r
    assert r.stderr.startswith("eventodb: error: interrupted: ")
    assert ("all 50 messages were written" if where == "close" else "0 messages") in r.stderr
    assert f"eventodb write --file {f} --resume --store {store}" in r.stderr
    monkeypatch.undo()
    again = cli("write", "--file", f, "--store", store, "--resume", "--no-progress", "-o", "json")
    assert again.exit_code == 0, again
    assert again.json()["written"] == (0 if where == "close" else 50)
    got = cli("category", "get", "r", "--all", "--store", store, "-o", "json").json()
    assert sorted(m["data"]["i"] for m in got) == list(range(50))
