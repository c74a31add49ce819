#!/usr/bin/env python3
"""Generate the man pages in man/ from the click command tree.

    python scripts/gen_man.py           # (re)write man/*.1
    python scripts/gen_man.py --check   # exit 1 when man/ differs from what would be written

One page for ``eventodb`` (eventodb.1) and one per top-level command (eventodb-<name>.1), walked
dynamically from ``eventodb_cli.cli.main`` (its LazyGroup lists every command whose module
exists), so a new command or option shows up after regenerating. Nothing here depends on the
terminal, the clock or the environment: the same tree always gives the same bytes.
"""

from __future__ import annotations

import argparse
import inspect
import os
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MAN_DIR = ROOT / "man"
REGENERATE = "python scripts/gen_man.py"
# The date printed in the page footer. Fixed (not today's date) so that the pages only change
# when the tree changes; bump it when the version changes.
MAN_DATE = "2026-11-28"
MANUAL = "EventoDB Manual"

EXIT_CODES = [
    ("0", "Success."),
    ("1", "The check or operation failed (verify-groups found an overlap, lag over its "
          "threshold, store check found damage, import --verify refused a file, a bad import "
          "line)."),
    ("2", "Usage error: bad flags or arguments, bad JSON argument, a local-only command given a "
          "server."),
    ("3", "Version conflict: the stream was not at --expected-version."),
    ("4", "Not found (stream, store, namespace) where the command promises to find it."),
    ("5", "Cannot reach or authenticate to the server."),
    ("130", "Interrupted (Ctrl-C)."),
]

ENVIRONMENT = [
    ("EVENTODB_STORE", "Local store file, when no --store, --url or --profile is given "
                       "(default $XDG_DATA_HOME/eventodb/store.db)."),
    ("EVENTODB_URL", "EventoDB server URL, when no --store, --url or --profile is given; wins "
                     "over EVENTODB_STORE."),
    ("EVENTODB_TOKEN", "Server token (namespace token), when no --token or --token-file is "
                       "given."),
    ("EVENTODB_TOKEN_FILE", "File holding the server token."),
    ("EVENTODB_PROFILE", "Profile to use, when no target flag or EVENTODB_URL/EVENTODB_STORE is "
                         "set."),
    ("EVENTODB_TIMEOUT", "Server request timeout in seconds (default 30)."),
    ("NO_COLOR", "When set (to anything), no colours in terminal output."),
    ("EVENTODB_DEBUG", "When set, an internal error prints its Python traceback."),
    ("XDG_DATA_HOME", "Base of the default local store path (default ~/.local/share)."),
    ("XDG_CONFIG_HOME", "Base of the config file with profiles (default ~/.config)."),
]

FILES = [
    ("$XDG_DATA_HOME/eventodb/store.db", "The default local store (SQLite, WAL mode), created "
                                         "by the first write."),
    ("$XDG_CONFIG_HOME/eventodb/config.json", "Profiles (named targets: url and token, or a "
                                              "store) and the current profile; mode 0600."),
    ("FILE.manifest.json", "Written by eventodb export next to FILE: count, first and last "
                           "global position, xxh3-64 digest; read by eventodb import --verify."),
]


# --- roff ---------------------------------------------------------------------------------------
def esc(text: str) -> str:
    """Escape text for roff: backslashes, hyphens (so commands copy-paste as typed), non-ASCII
    characters as \\[uXXXX], and a control character at the start of a line."""
    out = []
    for ch in text:
        if ch == "\\":
            out.append("\\e")
        elif ch == "-":
            out.append("\\-")
        elif ord(ch) > 126:
            out.append("\\[u%04X]" % ord(ch))
        else:
            out.append(ch)
    s = "".join(out)
    return "\n".join(("\\&" + ln) if ln[:1] in (".", "'") else ln for ln in s.split("\n"))


def esc_arg(text: str) -> str:
    """Escape text used as a macro argument (also double quotes)."""
    return esc(text).replace('"', "\\(dq")


def paragraphs(text: str) -> list[tuple[str, str]]:
    """Split click help text into ("p", text) rewrapped paragraphs and ("pre", text) blocks
    (click's \\b marker: keep the lines as they are)."""
    out = []
    for block in re.split(r"\n\s*\n", text.strip("\n")):
        lines = block.split("\n")
        if lines and lines[0].strip() == "\b":
            body = inspect.cleandoc("\n".join(lines[1:]))
            if body:
                out.append(("pre", body))
        else:
            joined = " ".join(ln.strip() for ln in lines if ln.strip())
            if joined:
                out.append(("p", joined))
    return out


def split_help(help_text: str | None) -> tuple[str, list[str]]:
    """(description, examples) from a command's help; the examples come from the block that
    ``cli.common.examples`` appends ("\\b\\nExamples:\\n  line...")."""
    text = (help_text or "").split("\f", 1)[0]
    examples: list[str] = []
    m = re.search(r"\n\s*\n\s*\x08?\s*\n?\s*Examples:\s*\n", text)
    if m:
        tail = text[m.end():]
        text = text[: m.start()]
        for ln in tail.split("\n"):
            if not ln.strip():
                break
            examples.append(ln.strip())
    return inspect.cleandoc(text), examples


def wrap(text: str) -> str:
    """Fill running text to 72 columns (never breaking words or option names)."""
    import textwrap

    return "\n".join(textwrap.wrap(" ".join(text.split()), 72, break_long_words=False,
                                   break_on_hyphens=False))


def render_paragraphs(text: str) -> list[str]:
    out = []
    for kind, body in paragraphs(text):
        if kind == "p":
            out += [".PP", esc(wrap(body))]
        else:
            out += [".PP", ".RS 4", ".nf", esc(body), ".fi", ".RE"]
    return out


def render_examples(examples: list[str]) -> list[str]:
    if not examples:
        return []
    out = [".PP", ".RS 4", ".nf"]
    out += [esc(e) for e in examples]
    out += [".fi", ".RE"]
    return out


def render_options(cmd, ctx) -> list[str]:
    import click

    out = []
    for p in cmd.get_params(ctx):
        if not isinstance(p, click.Option):  # arguments are in the synopsis
            continue
        rec = p.get_help_record(ctx)
        if rec is None:
            continue
        names, help_ = rec
        out += [".TP", "\\fB" + esc(names) + "\\fR"]
        out.append(esc(wrap(help_)) if help_ else "")
    return out


def usage(cmd, ctx) -> str:
    return " ".join([ctx.command_path, *cmd.collect_usage_pieces(ctx)])


def synopsis_line(cmd, ctx) -> list[str]:
    words = usage(cmd, ctx).split(" ")
    n = len(ctx.command_path.split(" "))
    return [".PP", "\\fB" + esc(" ".join(words[:n])) + "\\fR " + esc(" ".join(words[n:]))]


def short_help(cmd, fallback: str = "") -> str:
    text = fallback or cmd.get_short_help_str(limit=200)
    return text.rstrip(".")


def header(title: str) -> list[str]:
    from eventodb_cli import __version__

    return [
        ".\\\" Generated by scripts/gen_man.py from the click command tree: do not edit by hand;",
        ".\\\" regenerate with `python scripts/gen_man.py`.",
        f'.TH "{esc_arg(title.upper())}" "1" "{MAN_DATE}" "eventodb\\-cli {esc_arg(__version__)}"'
        f' "{MANUAL}"',
        ".nh",  # no hyphenation: option names and JSON keys must not be split
        ".ad l",
    ]


def common_sections(see_also: list[str]) -> list[str]:
    out = [".SH EXIT STATUS"]
    for code, text in EXIT_CODES:
        out += [".TP", f"\\fB{code}\\fR", esc(wrap(text))]
    out += [".SH ENVIRONMENT"]
    for name, text in ENVIRONMENT:
        out += [".TP", f"\\fB{esc(name)}\\fR", esc(wrap(text))]
    out += [".SH FILES"]
    for name, text in FILES:
        out += [".TP", f"\\fI{esc(name)}\\fR", esc(wrap(text))]
    if see_also:
        out += [".SH SEE ALSO"]
        refs = [f"\\fB{esc(n)}\\fR(1)" for n in see_also]
        out.append(",\n".join(refs))
    return out


# --- pages --------------------------------------------------------------------------------------
def _root():
    sys.path.insert(0, str(ROOT))
    from eventodb_cli.cli import main as climain

    return climain


def command_page(climain, name: str) -> str:
    import click

    root = climain.cli
    root_ctx = click.Context(root, info_name="eventodb", **root.context_settings)
    cmd = root.get_command(root_ctx, name)
    ctx = click.Context(cmd, info_name=name, parent=root_ctx)
    section_short = climain.COMMANDS.get(name, ("", "", "", ""))[3]
    lines = header(f"eventodb-{name}")
    lines += [".SH NAME", f"eventodb\\-{esc(name)} \\- {esc(short_help(cmd, section_short))}"]

    leaves = list(_walk(cmd, ctx))
    lines += [".SH SYNOPSIS"]
    for c, cctx in leaves:
        lines += synopsis_line(c, cctx)

    desc, examples = split_help(cmd.help)
    lines += [".SH DESCRIPTION"] + render_paragraphs(desc)
    if isinstance(cmd, click.Group):
        lines += [".SH COMMANDS"]
        for c, cctx in leaves:
            cdesc, cex = split_help(c.help)
            lines += [".SS " + esc_arg(usage(c, cctx))]
            lines += render_paragraphs(cdesc)
            opts = render_options(c, cctx)
            if opts:
                lines += [".PP", "Options:", ".RS 4"] + opts + [".RE"]
            if cex:
                lines += [".PP", "Examples:"] + render_examples(cex)
        group_opts = [o for o in render_options(cmd, ctx)]
        if len(group_opts) > 3:  # more than --help
            lines += [".SH OPTIONS"] + group_opts
        if examples:
            lines += [".SH EXAMPLES"] + render_examples(examples)
    else:
        lines += [".SH OPTIONS"] + render_options(cmd, ctx)
        if examples:
            lines += [".SH EXAMPLES"] + render_examples(examples)
    lines += common_sections(["eventodb"])
    return "\n".join(lines) + "\n"


def _walk(cmd, ctx):
    """Leaf commands under ``cmd`` (itself when it is not a group), depth first, by name."""
    import click

    if not isinstance(cmd, click.Group):
        yield cmd, ctx
        return
    for sub in cmd.list_commands(ctx):
        c = cmd.get_command(ctx, sub)
        if c is None or c.hidden:
            continue
        yield from _walk(c, click.Context(c, info_name=sub, parent=ctx))


def root_page(climain, names: list[str]) -> str:
    import click

    root = climain.cli
    ctx = click.Context(root, info_name="eventodb", **root.context_settings)
    lines = header("eventodb")
    lines += [".SH NAME", "eventodb \\- " + esc(short_help(root))]
    lines += [".SH SYNOPSIS", ".PP",
              "\\fBeventodb\\fR [\\fB\\-h\\fR | \\fB\\-\\-help\\fR] "
              "[\\fB\\-V\\fR | \\fB\\-\\-version\\fR]",
              ".PP", "\\fBeventodb\\fR \\fICOMMAND\\fR [\\fIARGS\\fR]..."]
    desc, _ex = split_help(root.help)
    lines += [".SH DESCRIPTION"] + render_paragraphs(desc)
    lines += [".PP", esc(wrap("Every command works on both kinds of target, with the same output. "
                         "The target is chosen by --store PATH or --url URL (with --token), by "
                         "--profile NAME, by the environment (below), or is the default local "
                         "store. Commands that print data take --format table|json|ndjson|raw: "
                         "a table on a terminal, ndjson otherwise; json and ndjson output is a "
                         "stable contract."))]
    lines += [".SH COMMANDS"]
    sections: dict[str, list[str]] = {}
    for n in names:
        sections.setdefault(climain.COMMANDS[n][2], []).append(n)
    for section, members in sections.items():
        lines += [".SS " + esc_arg(section)]
        for n in members:
            lines += [".TP", f"\\fBeventodb\\-{esc(n)}\\fR(1)", esc(climain.COMMANDS[n][3])]
    lines += [".SH OPTIONS"] + render_options(root, ctx)
    lines += [".SH EXAMPLES"] + render_examples([
        "eventodb write account-123 --type Deposited --data '{\"amount\":100}'",
        "eventodb category get account --member 0 --size 3 --all",
        "eventodb export --output backup.ndjson && eventodb import backup.ndjson --verify "
        "--store restored.db",
    ])
    lines += common_sections([f"eventodb-{n}" for n in names])
    return "\n".join(lines) + "\n"


def tidy(text: str) -> str:
    """Drop paragraph macros that would do nothing (right after a heading or another .PP)."""
    out: list[str] = []
    for ln in text.split("\n"):
        if ln == ".PP" and out and (out[-1].startswith((".SH", ".SS")) or out[-1] == ".PP"):
            continue
        out.append(ln)
    return "\n".join(out)


def render_all() -> dict[str, str]:
    """{file name: page text} for every page (the user's EVENTODB_* settings never leak in)."""
    saved = {k: os.environ.pop(k) for k in list(os.environ)
             if k.startswith("EVENTODB_") or k == "NO_COLOR"}
    try:
        return _render_all()
    finally:
        os.environ.update(saved)


def _render_all() -> dict[str, str]:
    import click

    climain = _root()
    ctx = click.Context(climain.cli, info_name="eventodb", **climain.cli.context_settings)
    names = [n for n in climain.cli.list_commands(ctx)
             if not getattr(climain.cli.get_command(ctx, n), "hidden", False)]
    pages = {"eventodb.1": tidy(root_page(climain, names))}
    for n in names:
        pages[f"eventodb-{n}.1"] = tidy(command_page(climain, n))
    return pages


def differences(pages: dict[str, str], directory: Path | None = None) -> list[str]:
    """File names whose checked-in content differs (missing, changed, or stale extra pages)."""
    directory = MAN_DIR if directory is None else directory
    diff = []
    for name, text in pages.items():
        p = directory / name
        if not p.exists() or p.read_text(encoding="utf-8") != text:
            diff.append(name)
    if directory.is_dir():
        for p in sorted(directory.glob("eventodb*.1")):
            if p.name not in pages:
                diff.append(p.name + " (no such command any more)")
    return diff


def _shown(path: Path) -> str:
    try:
        return str(path.relative_to(ROOT))
    except ValueError:
        return str(path)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--check", action="store_true",
                    help="exit 1 if man/ is out of date (write nothing)")
    args = ap.parse_args(argv)
    pages = render_all()
    if args.check:
        diff = differences(pages)
        if diff:
            print(f"man pages out of date: {', '.join(diff)}; run: {REGENERATE}",
                  file=sys.stderr)
            return 1
        return 0
    MAN_DIR.mkdir(exist_ok=True)
    for p in MAN_DIR.glob("eventodb*.1"):
        if p.name not in pages:
            p.unlink()
    for name, text in pages.items():
        (MAN_DIR / name).write_text(text, encoding="utf-8")
    print(f"wrote {len(pages)} man pages to {_shown(MAN_DIR)}/")
    return 0


if __name__ == "__main__":
    sys.exit(main())
