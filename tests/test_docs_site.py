"""The documentation site builds offline with ``mkdocs build --strict`` and says what the code does.

* ``mkdocs build --strict`` (``mkdocs.yml``) passes: every page of ``docs/`` is in the navigation, every link and
  anchor resolves, every ``::: module`` of the API reference renders from the docstrings (a warning is an error).
  It fetches nothing: no web fonts, no social cards, and the built pages load nothing from another host.
* The command-line reference is the argparse parsers ``rnnkit`` runs: every subcommand and action with its usage
  line, and every option; an option added to a parser is on the page (rendered at build time by
  ``docs/hooks.py``), and ``docs/cli.md``, the same text for readers of the repository, is not behind.
* Each topology has its tutorial, with a ``rnnkit train`` command line and Python (tests/docs runs them).
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
TUTORIALS = ["one-to-one", "one-to-many", "many-to-one", "many-to-many", "encoder-decoder", "forecasting"]

pytest.importorskip("mkdocs")
pytest.importorskip("material")
pytest.importorskip("mkdocstrings_handlers.python")


def load_hooks():
    spec = importlib.util.spec_from_file_location("rnnkit_docs_hooks", ROOT / "docs" / "hooks.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def nav_pages(nav) -> list[str]:
    out = []
    for item in nav:
        value = next(iter(item.values())) if isinstance(item, dict) else item
        out += nav_pages(value) if isinstance(value, list) else [value]
    return out


@pytest.fixture(scope="module")
def config() -> dict:
    # mkdocs.yml holds a python tag (the slugify function of the table of contents): read it as mkdocs does
    from mkdocs.utils.yaml import get_yaml_loader

    with open(ROOT / "mkdocs.yml", encoding="utf-8") as f:
        return yaml.load(f, Loader=get_yaml_loader())  # noqa: S506 - mkdocs' own loader for the project's file


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("site")
    proc = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--config-file", str(ROOT / "mkdocs.yml"),
         "--site-dir", str(out)],
        cwd=ROOT, capture_output=True, text=True, timeout=600, env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
    )  # fmt: skip
    warnings = [line for line in proc.stderr.splitlines() if line.startswith(("WARNING", "ERROR"))]
    assert proc.returncode == 0 and not warnings, f"mkdocs build --strict failed:\n{proc.stderr[-4000:]}"
    return out


def test_the_site_builds_strict_with_every_page(site, config):
    assert config["strict"] is True
    built = {p.relative_to(site).as_posix() for p in site.rglob("index.html")}
    for page in nav_pages(config["nav"]):
        stem = page.removesuffix(".md")
        expected = "index.html" if stem == "index" else f"{stem.removesuffix('/index')}/index.html"
        assert expected in built, f"{page} is in the nav but was not built"
    # every Markdown page of docs/ is in the nav (mkdocs --strict refuses one left out; this says which)
    generated = {"readme.md"}  # README.md, added by docs/hooks.py
    pages = {p.relative_to(ROOT / "docs").as_posix() for p in (ROOT / "docs").rglob("*.md")}
    assert pages | generated == set(nav_pages(config["nav"]))


def test_the_build_fetches_nothing_and_the_pages_load_nothing_from_elsewhere(site, config):
    assert config["theme"].get("font") is False  # Material's default pulls Google Fonts
    plugins = [next(iter(p)) if isinstance(p, dict) else p for p in config["plugins"]]
    assert "social" not in plugins and "privacy" not in plugins  # both download at build time
    remote = re.compile(r"""<(?:link|script|img)[^>]+(?:href|src)=["'](?:https?:)?//""")
    for page in site.rglob("*.html"):
        assert not remote.search(page.read_text(encoding="utf-8")), f"{page.relative_to(site)} loads a remote asset"


def test_the_api_reference_renders_the_docstrings(site):
    models = (site / "reference" / "models" / "index.html").read_text(encoding="utf-8")
    for name in ["Classifier", "Tagger", "Seq2Seq", "ConditionalGenerator", "Forecaster", "MLP", "LanguageModel"]:
        assert f'id="rnnkit.models.{name}"' in models, f"rnnkit.models.{name} is missing from the API reference"
    assert 'id="rnnkit.models.base.Model.fit"' in models
    layers = (site / "reference" / "layers" / "index.html").read_text(encoding="utf-8")
    assert 'id="rnnkit.layers.LSTM"' in layers and 'id="rnnkit.layers.Recurrent"' in layers
    data = (site / "reference" / "data" / "index.html").read_text(encoding="utf-8")
    assert 'id="rnnkit.data.text.pad_collate"' in data and "&lt;bos&gt;" in data


def test_the_readme_is_a_page_with_its_links_into_the_site(site):
    readme = (site / "readme" / "index.html").read_text(encoding="utf-8")
    assert 'href="../reliability/#determinism"' in readme and 'href="docs/' not in readme


def subcommands(parser: argparse.ArgumentParser, prefix: str = "rnnkit"):
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield f"{prefix} {name}", sub
                yield from subcommands(sub, f"{prefix} {name}")


def test_the_cli_reference_is_the_parsers(site):
    from rnnkit.cli.main import build_parser

    page = load_hooks().cli_reference()
    html = (site / "cli" / "index.html").read_text(encoding="utf-8")
    commands = list(subcommands(build_parser()))
    assert {"rnnkit train", "rnnkit predict", "rnnkit config show", "rnnkit datasets fetch"} <= {c for c, _ in commands}
    for command, parser in commands:
        heading = re.search(rf"^(#+) `{command}`$", page, re.M)
        assert heading, f"no section for {command}"
        section = page[heading.end() : page.find(f"\n{heading.group(1)} `", heading.end())]
        assert " ".join(parser.format_usage().split()) in " ".join(section.split())
        for action in parser._actions:
            for option in action.option_strings:
                if option not in ("-h", "--help"):
                    assert f"`{option}" in section, f"{command} {option} is not in the CLI reference"
        assert f'id="{command.replace(" ", "-")}"' in html  # the page the site built is this one


def test_docs_cli_md_is_the_current_reference():
    current = load_hooks().cli_reference()
    written = (ROOT / "docs" / "cli.md").read_text(encoding="utf-8")
    assert written == current, "docs/cli.md is behind the parsers: run `python docs/hooks.py` to regenerate it"


def test_an_option_added_to_a_parser_is_on_the_page(monkeypatch):
    import rnnkit.cli.main as cli_main

    original = cli_main.build_parser

    def with_new_option():
        parser = original()
        parser.subcommand_parsers["evaluate"].add_argument("--brand-new", type=int, default=7, help="a new option")
        return parser

    monkeypatch.setattr(cli_main, "build_parser", with_new_option)
    page = load_hooks().cli_reference()
    assert "| `--brand-new BRAND_NEW` | a new option Default: `7`. |" in page


@pytest.mark.parametrize("tutorial", TUTORIALS)
def test_each_topology_has_a_tutorial_on_the_command_line_and_in_python(tutorial):
    text = (ROOT / "docs" / "tutorials" / f"{tutorial}.md").read_text(encoding="utf-8")
    shell = re.findall(r"^```bash\n(.*?)^```", text, re.M | re.S)
    python = re.findall(r"^```python\n(.*?)^```", text, re.M | re.S)
    assert any(re.search(r"^rnnkit train \S+ .*--set", block, re.M) for block in shell)
    assert any(re.search(r"\bfit\(|rnnkit\.train\(", block) for block in python)
    assert "../results.md" in text  # numbers are linked, not copied
