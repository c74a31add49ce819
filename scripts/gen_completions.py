#!/usr/bin/env python3
"""Generate the shell completion scripts in completions/ from the click command tree.

    python scripts/gen_completions.py           # (re)write completions/
    python scripts/gen_completions.py --check   # exit 1 when completions/ is out of date

The scripts are what ``eventodb completion bash|zsh|fish`` prints: click's completion scripts
for the ``eventodb`` command, which ask the installed ``eventodb`` for candidates (commands,
options, choices, and dynamic values such as local-store categories and profile names), so they
stay right as commands are added. Files: eventodb.bash, _eventodb (zsh), eventodb.fish.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
OUT_DIR = ROOT / "completions"
REGENERATE = "python scripts/gen_completions.py"
FILES = {"bash": "eventodb.bash", "zsh": "_eventodb", "fish": "eventodb.fish"}


def render_all() -> dict[str, str]:
    """{file name: script} for every shell."""
    sys.path.insert(0, str(ROOT))
    from eventodb_cli.cli.completion import completion_script

    return {name: completion_script(shell) for shell, name in FILES.items()}


def differences(scripts: dict[str, str], directory: Path | None = None) -> list[str]:
    directory = OUT_DIR if directory is None else directory
    diff = []
    for name, text in scripts.items():
        p = directory / name
        if not p.exists() or p.read_text(encoding="utf-8") != text:
            diff.append(name)
    return diff


def _shown(path: Path) -> str:
    try:
        return str(path.relative_to(ROOT))
    except ValueError:
        return str(path)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--check", action="store_true",
                    help="exit 1 if completions/ is out of date (write nothing)")
    args = ap.parse_args(argv)
    scripts = render_all()
    if args.check:
        diff = differences(scripts)
        if diff:
            print(f"completion scripts out of date: {', '.join(diff)}; run: {REGENERATE}",
                  file=sys.stderr)
            return 1
        return 0
    OUT_DIR.mkdir(exist_ok=True)
    for name, text in scripts.items():
        (OUT_DIR / name).write_text(text, encoding="utf-8")
    print(f"wrote {len(scripts)} completion scripts to {_shown(OUT_DIR)}/")
    return 0


if __name__ == "__main__":
    sys.exit(main())
