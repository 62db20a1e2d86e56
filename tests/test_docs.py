"""The documentation stays inside the repository and true to the code.

* No file of the repository cites design notes kept outside it: a contributor who clones the repository
  must find every document it points to (``docs/architecture.md``, ``docs/datasets.md``).
* Every relative link in ``README.md`` and ``docs/*.md`` reaches a file, and every ``#anchor`` a heading.
* ``docs/datasets.md`` lists every dataset of the registry with the SHA-256 the registry pins.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from rnnkit.data import registry

ROOT = Path(__file__).resolve().parents[1]
DOCS = sorted((ROOT / "docs").glob("*.md"))
MARKDOWN = [ROOT / "README.md", *DOCS]

# Spelled in pieces so that this file does not cite them itself.
OUTSIDE = [b"DESIGN" + b".md", b"DATASETS" + b".md", b"../" + b"shared", b"/work/" + b"shared"]

FENCE = re.compile(r"^(```|~~~)")
INLINE_CODE = re.compile(r"(`+)(?:(?!\1).)+?\1")
LINK = re.compile(r"!?\[(?:[^\[\]]|\[[^\]]*\])*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
REFERENCE = re.compile(r"^\s{0,3}\[[^\]]+\]:\s+<?(\S+?)>?(?:\s+.*)?$")
HEADING = re.compile(r"^\s{0,3}(#{1,6})\s+(.*?)\s*#*\s*$")
SHA256 = re.compile(r"\b[0-9a-f]{64}\b")


def repository_files() -> list[Path]:
    """Tracked files plus new ones not ignored by git (the docs of a change not committed yet)."""
    if shutil.which("git") is None or not (ROOT / ".git").exists():
        pytest.skip("not a git checkout")
    out = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT,
        capture_output=True,
        check=True,
    ).stdout
    return [ROOT / name for name in out.decode("utf-8", "surrogateescape").split("\0") if name]


def prose_lines(path: Path) -> list[tuple[int, str]]:
    """``(line number, text)`` of a Markdown file outside fenced code blocks, inline code removed."""
    lines, fenced = [], False
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if FENCE.match(line.lstrip()):
            fenced = not fenced
            continue
        if not fenced:
            lines.append((n, INLINE_CODE.sub("", line)))
    return lines


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped (``-`` and ``_`` kept), spaces to ``-``."""
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # a link in a heading counts by its text
    text = re.sub(r"[^\w\- ]", "", text.lower())
    return text.replace(" ", "-")


def anchors(path: Path) -> set[str]:
    found: set[str] = set()
    seen: dict[str, int] = {}
    fenced = False
    for line in path.read_text(encoding="utf-8").splitlines():
        if FENCE.match(line.lstrip()):
            fenced = not fenced
            continue
        m = None if fenced else HEADING.match(line)
        if m:
            base = slug(m.group(2))
            n = seen.get(base, 0)
            seen[base] = n + 1
            found.add(base if n == 0 else f"{base}-{n}")
    return found


def links(path: Path) -> list[tuple[int, str]]:
    out = []
    for n, line in prose_lines(path):
        out += [(n, target) for target in LINK.findall(line)]
        m = REFERENCE.match(line)
        if m:
            out.append((n, m.group(1)))
    return out


def test_no_file_cites_notes_outside_the_repository():
    offenders = []
    for path in repository_files():
        if not path.is_file() or path.is_symlink():
            continue
        data = path.read_bytes()
        for needle in OUTSIDE:
            if needle in data:
                line = data[: data.index(needle)].count(b"\n") + 1
                offenders.append(f"{path.relative_to(ROOT)}:{line}: {needle.decode()}")
    assert not offenders, "cite docs/architecture.md or docs/datasets.md instead:\n" + "\n".join(offenders)


def test_the_design_documents_are_in_the_repository():
    for name in ("architecture.md", "datasets.md"):
        assert (ROOT / "docs" / name).is_file()
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    documented = {target for _, target in links(ROOT / "README.md")}
    assert {"docs/architecture.md", "docs/datasets.md"} <= documented, "README.md links the design documents"
    assert "## Documentation" in readme


@pytest.mark.parametrize("path", MARKDOWN, ids=lambda p: str(p.relative_to(ROOT)))
def test_relative_links_reach_a_file_and_a_heading(path):
    broken = []
    for n, target in links(path):
        if re.match(r"^[a-z][a-z0-9+.-]*:", target, flags=re.I):  # http:, https:, mailto: ...
            continue
        file_part, _, anchor = target.partition("#")
        dest = (path.parent / file_part).resolve() if file_part else path
        if not dest.exists():
            broken.append(f"{path.name}:{n}: {target}: no such file")
        elif not dest.is_relative_to(ROOT):
            broken.append(f"{path.name}:{n}: {target}: outside the repository")
        elif anchor and (dest.suffix != ".md" or anchor not in anchors(dest)):
            broken.append(f"{path.name}:{n}: {target}: no heading #{anchor} in {dest.name}")
    assert not broken, "\n".join(broken)


def test_repository_paths_named_in_the_design_documents_exist():
    missing = []
    for name in ("architecture.md", "datasets.md"):
        text = (ROOT / "docs" / name).read_text(encoding="utf-8")
        for path in re.findall(r"`((?:src|tests|docs|benchmarks)/[\w./-]+)`", text):
            if not (ROOT / path).exists():
                missing.append(f"docs/{name}: {path}")
    assert not missing, "\n".join(missing)


def registry_rows() -> list[str]:
    text = (ROOT / "docs" / "datasets.md").read_text(encoding="utf-8")
    return [line for line in text.splitlines() if line.startswith("|")]


def test_datasets_md_lists_every_registry_dataset_with_its_pinned_sha256():
    rows = registry_rows()
    problems = []
    for name, spec in registry.REGISTRY.items():
        mine = [row for row in rows if f"`{name}`" in row]
        if not mine:
            problems.append(f"{name}: in no table row of docs/datasets.md")
        elif spec.sha256 and not any(spec.sha256 in row for row in mine):
            problems.append(f"{name}: no row names it with its SHA-256 {spec.sha256}")
    assert not problems, "\n".join(problems)


def test_datasets_md_names_no_checksum_the_registry_does_not_pin():
    pinned = {spec.sha256 for spec in registry.REGISTRY.values() if spec.sha256}
    text = (ROOT / "docs" / "datasets.md").read_text(encoding="utf-8")
    stale = sorted(set(SHA256.findall(text)) - pinned)
    assert not stale, f"docs/datasets.md names SHA-256 values the registry does not pin: {stale}"


def test_datasets_md_names_the_datasets_rnnkit_does_not_fetch():
    text = (ROOT / "docs" / "datasets.md").read_text(encoding="utf-8")
    assert all(f"`{name}`" in text for name in registry.EXTERNAL)


def test_the_link_checker_catches_a_broken_link_and_anchor(tmp_path):
    (tmp_path / "a.md").write_text("# Title here\n\n## Your own data with `--data`\n", encoding="utf-8")
    doc = tmp_path / "b.md"
    doc.write_text(
        "[ok](a.md#your-own-data-with---data) [gone](missing.md) [bad](a.md#nope)\n"
        "```bash\n[in code](missing-too.md)\n```\n`[inline](missing-three.md)`\n",
        encoding="utf-8",
    )
    assert [t for _, t in links(doc)] == ["a.md#your-own-data-with---data", "missing.md", "a.md#nope"]
    assert anchors(tmp_path / "a.md") == {"title-here", "your-own-data-with---data"}


def test_every_test_the_docs_name_exists():
    """A promise in the docs cites the test that keeps it (``test_...``, a ``*`` stands for a family): each must
    be a test function in tests/, so a renamed or deleted test cannot leave a promise without its proof."""
    defined = {
        m.group(1)
        for path in (ROOT / "tests").rglob("test_*.py")
        for m in re.finditer(r"^\s*(?:async\s+)?def (test_\w+)", path.read_text(encoding="utf-8"), flags=re.M)
    }
    missing = []
    for doc in [ROOT / "README.md", *DOCS]:
        for name, star in re.findall(r"`(?:[\w/.]+::)?(test_\w+)(\*?)", doc.read_text(encoding="utf-8")):
            found = any(d.startswith(name) for d in defined) if star else name in defined
            if not found:
                missing.append(f"{doc.name}: {name}{star}")
    assert not missing, f"tests named in the docs that do not exist: {missing}"
