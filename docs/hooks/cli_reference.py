"""MkDocs hook: the command-line reference, generated from the `tracer` command's own argument parsers.

A page holding the line `<!-- tracer-cli-reference -->` gets, in its place,
one section per subcommand of `tracer.cli.SUBCOMMANDS`: its description, its
usage line and a table of every argument (what it takes, its default, its
help), so the reference cannot drift from the parsers.
"""

from __future__ import annotations

import argparse
import os

MARKER = "<!-- tracer-cli-reference -->"
WIDTH = "72"  # argparse wraps the usage line to $COLUMNS: fixed, so the page is the same on every terminal


def _subcommand_parser(name: str) -> argparse.ArgumentParser:
    from tracer.cli import _build_parser

    parser = _build_parser([name])
    choices = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices
    return choices[name]


def _cell(text: object) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def _takes(action: argparse.Action) -> str:
    if action.nargs == 0:
        return "flag"
    if action.choices is not None:
        return ", ".join(f"`{choice}`" for choice in action.choices)
    metavar = action.metavar or (action.dest.upper() if action.option_strings else action.dest)
    text = " ".join(metavar) if isinstance(metavar, tuple) else str(metavar)
    repeat = {"*": " ...", "+": " ...", "?": " (optional)"}.get(str(action.nargs), "")
    return f"`{text}`{repeat}"


def _default(action: argparse.Action) -> str:
    if action.nargs == 0 or action.default in (None, argparse.SUPPRESS) or action.required:
        return ""
    return f"`{action.default}`"


def section(name: str) -> str:
    """Markdown for `tracer NAME`: description, usage, one table row per argument."""
    parser = _subcommand_parser(name)
    previous = os.environ.get("COLUMNS")
    os.environ["COLUMNS"] = WIDTH
    try:
        usage = parser.format_usage().strip()
    finally:
        if previous is None:
            del os.environ["COLUMNS"]
        else:
            os.environ["COLUMNS"] = previous
    rows = ["| argument | takes | default | what |", "|---|---|---|---|"]
    for action in parser._actions:
        if isinstance(action, argparse._HelpAction):
            continue
        names = ", ".join(f"`{s}`" for s in action.option_strings) or f"`{action.dest}`"
        help_text = (action.help or "") % {"default": action.default, "prog": parser.prog} if action.help else ""
        rows.append(f"| {names} | {_takes(action)} | {_default(action)} | {_cell(help_text)} |")
    return "\n".join([f"## `tracer {name}`", "", _cell(parser.description or ""), "", "```text", usage, "```", "",
                      *rows, ""])


def reference() -> str:
    """Every subcommand's section, in the order `tracer --help` lists them."""
    from tracer.cli import SUBCOMMANDS

    return "\n".join(section(name) for name in SUBCOMMANDS)


def on_page_markdown(markdown: str, page, config, files) -> str:
    return markdown.replace(MARKER, reference()) if MARKER in markdown else markdown
