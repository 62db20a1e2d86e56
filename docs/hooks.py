"""mkdocs hooks of the documentation site (``mkdocs.yml``: ``hooks: [docs/hooks.py]``), and the generator of
``docs/cli.md``.

* ``docs/cli.md``, the command-line reference, is rendered from the argparse parsers that ``rnnkit`` itself runs
  (:func:`rnnkit.cli.main.build_parser`): every subcommand and action, its usage line, description, arguments
  (with their defaults) and examples. ``python docs/hooks.py`` writes the file (for readers of the repository);
  the site renders the page from the parsers again at build time, so it cannot fall behind them, and
  ``tests/test_docs_site.py`` fails when the file has (a new option not yet regenerated).
* ``readme.md``, the repository's ``README.md`` (which lives above ``docs/``), is added to the site with its links
  into ``docs/`` made relative to the site (``docs/results.md`` -> ``results.md``).
"""

from __future__ import annotations

import argparse
import os
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
USAGE_WIDTH = 100  # usage lines are wrapped at this width, whatever the terminal of the build


# -- the CLI reference ----------------------------------------------------------------------------------------
def _subcommands(parser: argparse.ArgumentParser) -> list[tuple[str, str, argparse.ArgumentParser]]:
    """``(name, one-line help, parser)`` of each subcommand of ``parser``, in the order ``--help`` lists them."""
    out = []
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            helps = {a.dest: a.help or "" for a in action._choices_actions}
            out += [(name, helps.get(name, ""), sub) for name, sub in action.choices.items()]
    return out


def _cell(text: str) -> str:
    return " ".join(str(text).split()).replace("|", "\\|")


def _argument_rows(parser: argparse.ArgumentParser) -> list[str]:
    """One Markdown table row per argument of ``parser``: its spelling with its value, then its help, with the
    default added where the help does not state one."""
    rows = []
    for action in parser._actions:
        if isinstance(action, (argparse._HelpAction, argparse._SubParsersAction)):
            continue
        many = " ..." if action.nargs in ("*", "+") else ""
        choices = "{" + ",".join(map(str, action.choices)) + "}" if action.choices else None
        metavar = action.metavar or choices or (action.dest.upper() if action.option_strings else action.dest)
        if action.option_strings:
            value = f" {metavar}{many}" if action.nargs != 0 else ""
            name = ", ".join(f"`{s}{value}`" for s in action.option_strings)
        else:
            name = f"`{metavar}{many}`"
        help_text = action.help or ""
        if "%(" in help_text:
            help_text = help_text % {**vars(action), "prog": parser.prog}
        what = _cell(help_text) or "—"
        shown = action.option_strings and action.nargs != 0 and action.default not in (None, [], argparse.SUPPRESS)
        if shown and "default" not in what:
            what += f" Default: `{action.default}`."
        rows.append(f"| {name} | {what} |")
    return rows


def _usage(parser: argparse.ArgumentParser) -> str:
    old = os.environ.get("COLUMNS")
    os.environ["COLUMNS"] = str(USAGE_WIDTH)
    try:
        return parser.format_usage().strip()
    finally:
        if old is None:
            del os.environ["COLUMNS"]
        else:
            os.environ["COLUMNS"] = old


def _command_section(name: str, summary: str, parser: argparse.ArgumentParser, depth: int) -> list[str]:
    lines = [f"{'#' * depth} `{parser.prog}`", ""]
    if summary:
        lines += [summary[0].upper() + summary[1:] + ("" if summary.endswith(".") else "."), ""]
    lines += ["```text", _usage(parser), "```", ""]
    if parser.description:
        lines += [parser.description.strip(), ""]
    rows = _argument_rows(parser)
    if rows:
        lines += ["| argument | what it does |", "|---|---|", *rows, ""]
    subs = _subcommands(parser)
    if subs:
        lines += ["Actions: " + ", ".join(f"`{n}`" for n, _, _ in subs) + ".", ""]
    if parser.epilog:
        lines += ["```text", parser.epilog.strip("\n"), "```", ""]
    for sub_name, sub_help, sub in subs:
        lines += _command_section(sub_name, sub_help, sub, depth + 1)
    return lines


def cli_reference() -> str:
    """The Markdown of the CLI reference page, from the parsers ``rnnkit`` runs."""
    from rnnkit.cli.main import INTERMIXED, build_parser

    parser = build_parser()
    commands = _subcommands(parser)
    lines = [
        "# Command line reference",
        "",
        "Generated from `rnnkit`'s own argument parsers (`python docs/hooks.py`), so it lists exactly what",
        "`rnnkit COMMAND --help` prints. Bad input (an unknown option, a wrong value, a damaged file) ends as a",
        "one-line `rnnkit: error: ...` with exit status 2; Ctrl-C ends a command with exit status 130.",
        "",
        "```text",
        _usage(parser),
        "```",
        "",
        parser.description or "",
        "",
        "| command | what it does |",
        "|---|---|",
        *[f"| [`rnnkit {n}`](#rnnkit-{n}) | {_cell(h)} |" for n, h, _ in commands],
        "",
        "Options of " + ", ".join(f"`rnnkit {n}`" for n in INTERMIXED) + " may stand before or after their inputs.",
        "`--set KEY=VALUE` takes the dotted keys of a recipe's config (`rnnkit config show RECIPE` prints them all).",
        "",
    ]
    for name, summary, sub in commands:
        lines += _command_section(name, summary, sub, 2)
    return "\n".join(lines).rstrip() + "\n"


# -- the README, as a page of the site ------------------------------------------------------------------------
DOCS_LINK = re.compile(r"\]\(<?docs/")


def readme_page() -> str:
    """``README.md`` with its ``docs/...`` links made relative to the site's root."""
    return DOCS_LINK.sub("](", (ROOT / "README.md").read_text(encoding="utf-8"))


# -- mkdocs hooks ---------------------------------------------------------------------------------------------
def on_files(files, config):
    from mkdocs.structure.files import File

    files.append(File.generated(config, "readme.md", content=readme_page()))
    return files


def on_page_markdown(markdown, page, config, files):
    if page.file.src_uri == "cli.md":
        return cli_reference()
    return markdown


if __name__ == "__main__":
    (ROOT / "docs" / "cli.md").write_text(cli_reference(), encoding="utf-8")
    print("wrote docs/cli.md")
