"""Issue 8 item 3, the rich-console siblings: verify-groups, simulate-scale and lag tables show
names as written (no markup parsed) and never send a control character to the terminal raw."""

import pytest

NAMES = ["[/]", "[bold red]x[/]", "e\x1b[31m"]


@pytest.mark.parametrize("category", NAMES)
@pytest.mark.parametrize("args", [
    ["verify-groups", "{c}", "--size", "2"],
    ["simulate-scale", "{c}", "--from", "1", "--to", "2"],
    ["lag", "{c}", "--size", "1", "--checkpoints", "{d}", "--allow-missing"],
])
def test_group_tables_show_names_as_written(cli, store_path, tmp_path, category, args):
    assert cli("write", f"{category}-1", "--type", "T", "--data", "{}", "--store",
               store_path).exit_code == 0
    argv = [a.format(c=category, d=str(tmp_path)) for a in args]
    r = cli(*argv, "-o", "table", "--store", store_path)
    assert r.exit_code == 0, r
    assert "internal error" not in r.stderr
    assert "\x1b" not in r.stdout
    shown = category.replace("\x1b", "\\x1b")
    assert shown in r.stdout, r.stdout
