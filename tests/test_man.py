"""Man pages: generated from the click tree, checked in, current, and clean for groff/mandoc."""

from __future__ import annotations

import importlib.util
import os
import re
import shutil
import subprocess

import pytest

from conftest import ROOT

MAN = ROOT / "man"


def _gen():
    spec = importlib.util.spec_from_file_location("gen_man", ROOT / "scripts" / "gen_man.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture(scope="module")
def pages():
    return _gen().render_all()


def test_checked_in_man_pages_are_up_to_date(pages):
    gen = _gen()
    diff = gen.differences(pages)
    assert not diff, (f"man/ is out of date ({', '.join(diff)}): run `{gen.REGENERATE}` and "
                      "commit man/")


def test_out_of_date_detection(tmp_path, pages):
    gen = _gen()
    for name, text in pages.items():
        (tmp_path / name).write_text(text)
    assert gen.differences(pages, tmp_path) == []
    (tmp_path / "eventodb-store.1").write_text(pages["eventodb-store.1"].replace("VACUUM", "X"))
    (tmp_path / "eventodb-gone.1").write_text(".TH GONE 1\n")
    assert gen.differences(pages, tmp_path) == ["eventodb-store.1",
                                                "eventodb-gone.1 (no such command any more)"]
    assert gen.REGENERATE == "python scripts/gen_man.py"


def test_one_page_per_command(pages):
    from click import Context

    from eventodb_cli.cli.main import cli

    names = cli.list_commands(Context(cli))
    assert set(pages) == {"eventodb.1", *(f"eventodb-{n}.1" for n in names)}
    root = pages["eventodb.1"]
    for n in names:
        assert f"\\fBeventodb\\-{n.replace('-', chr(92) + '-')}\\fR(1)" in root


def test_pages_carry_options_examples_exit_codes_environment(pages):
    export = pages["eventodb-export.1"]
    for needle in (".SH SYNOPSIS", ".SH DESCRIPTION", ".SH OPTIONS", ".SH EXAMPLES",
                   ".SH EXIT STATUS", ".SH ENVIRONMENT", ".SH FILES", ".SH SEE ALSO",
                   "\\-\\-category CATEGORY", "\\-\\-gzip", "EVENTODB_STORE", "EVENTODB_URL",
                   "EVENTODB_TOKEN", "EVENTODB_PROFILE", "NO_COLOR",
                   "eventodb export \\-\\-output all.ndjson"):
        assert needle in export, needle
    store = pages["eventodb-store.1"]
    for sub in ("info", "check", "compact"):
        assert f".SS eventodb store {sub} [OPTIONS]" in store
        assert f"eventodb store {sub}\n" in store  # its first example
    assert ".SH COMMANDS" in store
    # the hidden --complete flag stays out of the manual
    assert "\\-\\-complete\n" not in pages["eventodb-completion.1"]


def test_no_roff_control_characters_leak(pages):
    for name, text in pages.items():
        for ln in text.splitlines():
            if ln.startswith((".", "'")):
                assert re.match(r"^\.(\\\"|TH|SH|SS|PP|TP|RS|RE|nf|fi|nh|ad) ?", ln), (name, ln)
        assert "\x08" not in text and "\t" not in text


def test_man_renders_cleanly_with_groff():
    if shutil.which("groff") is None:
        pytest.skip("groff is not installed (apt-get install groff-base)")
    for page in sorted(MAN.glob("*.1")):
        p = subprocess.run(["groff", "-man", "-Tutf8", "-ww", "-z", str(page)],
                           capture_output=True, text=True)
        assert p.returncode == 0 and p.stderr == "", (page.name, p.stderr)
    p = subprocess.run(["groff", "-man", "-Tutf8", str(MAN / "eventodb.1")], capture_output=True,
                       text=True, env={**os.environ, "GROFF_NO_SGR": "1"})
    text = re.sub(r".\x08", "", p.stdout)
    assert "EXIT STATUS" in text and "eventodb-export(1)" in text


def test_man_lints_cleanly_with_mandoc():
    if shutil.which("mandoc") is None:
        pytest.skip("mandoc is not installed (apt-get install mandoc)")
    p = subprocess.run(["mandoc", "-Tlint", "-W", "warning", *map(str, sorted(MAN.glob("*.1")))],
                       capture_output=True, text=True)
    assert p.returncode == 0 and p.stdout == "" and p.stderr == "", p.stdout + p.stderr


def test_man_l_shows_the_page():
    if shutil.which("man") is None:
        pytest.skip("man is not installed")
    p = subprocess.run(["man", "-l", str(MAN / "eventodb-import.1")], capture_output=True,
                       text=True, env={**os.environ, "MANPAGER": "cat", "MANWIDTH": "80",
                                       "PAGER": "cat"})
    assert p.returncode == 0, p.stderr
    text = re.sub(r".\x08", "", p.stdout)
    assert "eventodb import [OPTIONS] FILE" in text
    assert "--verify" in text


def test_check_mode_tells_the_developer_the_command(tmp_path, capsys, monkeypatch, pages):
    gen = _gen()
    for name, text in pages.items():
        (tmp_path / name).write_text(text)
    monkeypatch.setattr(gen, "MAN_DIR", tmp_path)
    assert gen.main(["--check"]) == 0
    (tmp_path / "eventodb-export.1").write_text("old\n")
    assert gen.main(["--check"]) == 1
    err = capsys.readouterr().err
    assert err.strip() == ("man pages out of date: eventodb-export.1; run: "
                           "python scripts/gen_man.py")
    assert gen.main([]) == 0  # regenerating fixes it
    assert gen.main(["--check"]) == 0
