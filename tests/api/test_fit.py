"""``fit`` / ``evaluate`` / ``predict`` / ``save`` on in-memory data for every model, on the one Trainer."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import torch

import rnnkit
from rnnkit.cli.main import main
from rnnkit.models import (
    MLP,
    Classifier,
    ClassifierConfig,
    ConditionalGenerator,
    Forecaster,
    LanguageModel,
    Seq2Seq,
    StepRegressor,
    Tagger,
)
from rnnkit.models.fitting import sliding_windows
from rnnkit.tasks.common import classification_task
from rnnkit.training import Callback, Trainer


def signs(n=80, seed=0, channels=3):
    """Variable-length (T_i, channels) sequences labelled by the sign of channel 0's mean."""
    rng = np.random.default_rng(seed)
    X = [rng.normal(size=(int(rng.integers(3, 9)), channels)).astype("float32") for _ in range(n)]
    return X, ["up" if x[:, 0].mean() > 0 else "down" for x in X]


def classifier(**kw):
    return Classifier(encoder=dict(input_size=3, hidden_size=12), num_classes=2, pooling="mean", **kw)


def test_classifier_learns_from_a_list_of_arrays_with_string_labels():
    X, y = signs()
    torch.manual_seed(0)
    model = classifier()
    history = model.fit(X[:60], y[:60], validation_data=(X[60:], y[60:]), epochs=12, batch_size=16, lr=0.03)
    assert [r["epoch"] for r in history] == list(range(1, 13))
    assert {"train_loss", "val_loss", "val_accuracy", "val_f1"} <= set(history[-1])
    assert model.labels == ["down", "up"]
    assert history[-1]["val_accuracy"] >= 0.9
    assert model.evaluate(X[60:], y[60:])["accuracy"] == history[-1]["val_accuracy"]
    proba = model.predict(X[60:])
    assert proba.shape == (20, 2) and torch.allclose(proba.sum(1), torch.ones(20))
    assert model.predict_labels(X[60:]) == ["down" if p[0] > p[1] else "up" for p in proba.tolist()]


def test_padded_array_with_lengths_equals_the_list_and_the_seed_decides():
    X, y = signs(40)
    lengths = [len(x) for x in X]
    padded = np.zeros((40, max(lengths), 3), dtype="float32")
    for i, x in enumerate(X):
        padded[i, : len(x)] = x
    histories, outputs = [], []
    for data, kw in ((X, {}), (padded, {"lengths": lengths}), (torch.from_numpy(padded), {"lengths": lengths})):
        torch.manual_seed(0)  # the same initial weights
        model = classifier()
        h = model.fit(data, np.array([int(v == "up") for v in y]), epochs=2, batch_size=8, seed=5, **kw)
        histories.append([{k: v for k, v in r.items() if k != "seconds"} for r in h])
        outputs.append(model.predict(data, **kw))
    assert histories[0] == histories[1] == histories[2]
    assert torch.equal(outputs[0], outputs[1]) and torch.equal(outputs[1], outputs[2])
    assert model.labels is None  # int labels are their own ids


def test_constructor_sugar_and_the_config_object_build_the_same_model():
    a = Classifier(encoder=dict(input_size=3, hidden_size=8), num_classes=2)
    b = Classifier(ClassifierConfig(encoder=dict(input_size=3, hidden_size=8), num_classes=2))
    assert a.get_config() == b.get_config()


def test_wrong_inputs_are_one_line_value_errors():
    X, y = signs(10)
    model = classifier()
    cases = [
        (lambda: model.fit([np.zeros((4, 2))], ["up"]), r"x\[0\]: expected features \(T_i, 3\), got shape \(4, 2\)"),
        (lambda: model.fit(X, y[:5]), r"y: 5 labels for 10 examples"),
        (lambda: model.fit(np.zeros((2, 5)), [0, 1]), r"x: expected a list of features \(T_i, 3\) or a padded"),
        (lambda: model.fit(np.zeros((2, 5, 3)), [0, 1], lengths=[5, 9]), r"lengths: expected \(2,\) ints in \[1, 5\]"),
        (lambda: model.fit(X, y, lengths=[3] * 10), "lengths: give lengths only with a padded array"),
        (lambda: model.fit(X, [0, 1, 2] + [0] * 7), r"y: integer labels must lie in \[0, 2\)"),
        (lambda: model.fit(X, y, validation_split=1.5), "validation_split: expected a fraction"),
        (lambda: model.fit(X, y, epochs=1, learning_rate=0.1), "fit options: learning_rate: unknown key"),
        (lambda: model.fit([np.zeros((0, 3))], [0]), r"x\[0\]: an empty sequence"),
        (lambda: model.fit(X, y, validation_data=X), r"validation_data: expected \(x_val, y_val\)"),
    ]
    for call, message in cases:
        with pytest.raises(ValueError, match=message) as info:
            call()
        assert "\n" not in str(info.value)
    model.fit(X, y, epochs=1)
    with pytest.raises(ValueError, match=r"y: label 'sideways' is not one the model knows"):
        model.evaluate(X[:1], ["sideways"])
    with pytest.raises(ValueError, match="num_classes=2"):
        Classifier(encoder=dict(input_size=3, hidden_size=8), num_classes=1)
    with pytest.raises(ValueError, match="num_classes=2"):
        MLP(input_size=3, num_classes=1)


def test_a_batch_without_lengths_trains():
    """The issue's crash: ``loss(x, y)`` on full-length sequences (a batch without ``lengths``)."""
    model = classifier()
    x, y = torch.randn(4, 5, 3), torch.tensor([0, 1, 1, 0])
    assert torch.equal(model.loss(x, y), model.loss(x, None, y))
    with pytest.raises(ValueError, match="no targets"):
        model.loss(x)

    def batches(split, epoch):  # the hand-made batches: no "lengths" key
        yield {"x": x, "y": y}

    task = classification_task(batches, 2, lambda split: 4, 4)
    history = Trainer({"epochs": 2}, quiet=True).fit(model, task).history
    assert [r["epoch"] for r in history] == [1, 2] and "val_accuracy" in history[-1]


def test_the_trainer_runs_it_callbacks_early_stopping_and_a_run_dir(tmp_path):
    X, y = signs(30)
    seen = []

    class Record(Callback):
        def on_epoch_end(self, trainer, epoch, record):
            seen.append(epoch)

    model = classifier()
    history = model.fit(
        X, y, validation_split=0.2, epochs=30, lr=1e-9, early_stopping=2, callbacks=[Record()], run_dir=tmp_path
    )
    assert len(history) < 30 and seen == list(range(len(history)))  # lr ~0: no improvement, stopped early
    assert (tmp_path / "metrics.jsonl").is_file() and (tmp_path / "best.safetensors").is_file()
    assert any((tmp_path / "checkpoints").iterdir())


def test_tagger_with_string_tags_and_its_model_folder(tmp_path):
    rng = np.random.default_rng(1)
    X = [rng.integers(1, 10, size=int(rng.integers(2, 7))) for _ in range(60)]
    Y = [["HI" if t > 5 else "LO" for t in x] for x in X]
    torch.manual_seed(0)
    model = Tagger(encoder=dict(vocab_size=10, embed_dim=8, hidden_size=16), num_tags=2)
    history = model.fit(X, Y, validation_split=0.2, epochs=15, lr=0.05, batch_size=8)
    assert history[-1]["val_accuracy"] >= 0.95
    pred = model.predict(X[:5])
    assert pred == Y[:5] and model.labels == ["HI", "LO"]
    with pytest.raises(ValueError, match=r"y\[0\]: 1 steps, but x\[0\] has"):
        model.fit(X[:2], [["HI"], ["LO"]])
    folder = model.save(tmp_path / "tagger")  # no task serves token ids without a vocabulary: a model folder
    assert sorted(p.name for p in folder.iterdir()) == ["model.json", "model.safetensors"]
    again = Tagger.load(folder)
    assert again.labels == ["HI", "LO"] and again.predict(X[:5]) == pred
    with pytest.raises(ValueError, match="not a Classifier"):
        Classifier.load(folder)
    with pytest.raises(ValueError, match="already exists"):
        model.save(folder)


def test_classifier_save_writes_a_run_folder_rnnkit_predict_reads(tmp_path, capsys):
    X, y = signs(40)
    model = classifier()
    model.fit(X, y, epochs=1)
    run = model.save(tmp_path / "mine")
    assert (run / "meta.json").is_file() and (run / "config.yaml").is_file()
    cases = tmp_path / "cases.ts"
    lines = [":".join(",".join(repr(float(v)) for v in x[:, c]) for c in range(3)) for x in X[:4]]
    cases.write_text("@problemName t\n@univariate false\n@dimensions 3\n@equalLength false\n@classLabel false\n"
                     "@data\n" + "\n".join(lines) + "\n")  # fmt: skip
    assert main(["predict", str(run), str(cases)]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.startswith("{")]
    expected = model.predict(X[:4])
    assert [r["label"] for r in rows] == model.predict_labels(X[:4])
    for row, p in zip(rows, expected.tolist(), strict=True):
        assert row["probabilities"] == {"down": round(p[0], 6), "up": round(p[1], 6)}
    loaded = Classifier.load(run)
    assert loaded.labels == ["down", "up"] and torch.allclose(loaded.predict(X[:4]), expected)
    again = rnnkit.load(run).predict(X[:4])  # the run answers the arrays themselves too
    assert [r["probabilities"] for r in again] == [r["probabilities"] for r in rows]


def test_step_regressor_mlp_and_forecaster():
    rng = np.random.default_rng(2)
    X = [rng.normal(size=(int(rng.integers(3, 8)), 2)).astype("float32") for _ in range(40)]
    Y = [x.sum(1) for x in X]  # one value per step
    torch.manual_seed(0)
    reg = StepRegressor(encoder=dict(input_size=2, hidden_size=16))
    before = reg.evaluate(X, Y)["mse"]
    reg.fit(X, Y, epochs=20, lr=0.02, batch_size=8)
    assert reg.evaluate(X, Y)["mse"] < before / 4
    out = reg.predict(X[:3])
    assert [tuple(o.shape) for o in out] == [(len(x), 1) for x in X[:3]]

    V = rng.normal(size=(60, 4)).astype("float32")
    mlp = MLP(input_size=4, hidden_sizes=[8], num_classes=3)
    mlp.fit(V, rng.integers(0, 3, size=60), epochs=1)
    assert mlp.predict(V[:5]).shape == (5, 3)
    with pytest.raises(ValueError, match=r"x: expected inputs \(N, 4\), got shape \(5, 3\)"):
        mlp.predict(V[:5, :3])

    windows, targets = sliding_windows(np.sin(np.arange(120) / 4), window=16, horizon=4)
    assert windows.shape == (101, 16) and targets.shape == (101, 4)
    f = Forecaster(encoder=dict(input_size=1, hidden_size=8), horizon=4)
    history = f.fit(windows, targets, validation_split=0.2, epochs=2)
    assert {"val_mse", "val_mae"} <= set(history[-1])
    assert f.predict(windows[:3]).shape == (3, 4)
    with pytest.raises(ValueError, match=r"y: expected values \(101, 4\)"):
        f.fit(windows, targets[:, :2])


def test_token_models_language_model_seq2seq_and_generator():
    rng = np.random.default_rng(3)
    lm = LanguageModel(encoder=dict(vocab_size=12, embed_dim=8, hidden_size=16))
    seqs = [list(range(1, int(rng.integers(3, 11)))) for _ in range(30)]
    history = lm.fit(seqs, epochs=2, validation_split=0.2)
    assert {"val_loss", "val_accuracy", "val_perplexity"} <= set(history[-1])
    assert lm.predict(seqs[:2]).shape == (2, 12)
    with pytest.raises(ValueError, match="give x only"):
        lm.fit(seqs, seqs)
    with pytest.raises(ValueError, match=r"x\[0\]: a language model needs sequences of at least 2 tokens"):
        lm.fit([[5]])

    src = [rng.integers(4, 10, size=int(rng.integers(2, 6))).tolist() for _ in range(30)]
    tgt = [list(reversed(s)) for s in src]
    s2s = Seq2Seq(encoder=dict(vocab_size=10, embed_dim=8, hidden_size=16), tgt_vocab_size=10, embed_dim=8,
                  hidden_size=16)  # fmt: skip
    s2s.fit(src, tgt, epochs=1)
    assert all(isinstance(p, list) for p in s2s.predict(src[:2]))
    with pytest.raises(ValueError, match=r"y: token ids must lie in \[4, 10\)"):
        s2s.fit(src, [[2, 5]] * 30)

    # Seq2Seq on real-valued frames: feature frames in, tokens out
    frames = [rng.normal(size=(len(s), 3)).astype("float32") for s in src]
    speech = Seq2Seq(encoder=dict(input_size=3, hidden_size=16), tgt_vocab_size=10, embed_dim=8, hidden_size=16)
    assert "val_loss" in speech.fit(frames, tgt, validation_split=0.2, epochs=1)[-1]
    assert len(speech.predict(frames[:2])) == 2

    torch.manual_seed(0)
    gen = ConditionalGenerator(vocab_size=10, num_classes=3, embed_dim=8, hidden_size=16)
    cond = rng.integers(0, 3, size=30)
    outs = [[4 + int(c)] * (int(c) + 1) for c in cond]  # class c -> token 4+c repeated c+1 times
    gen.fit(cond, outs, epochs=30, lr=0.02)
    assert gen.predict(np.array([0, 1, 2])) == [[4], [5, 5], [6, 6, 6]]


def test_the_package_root_offers_train_and_load_lazily():
    code = "import sys, rnnkit; assert 'rnnkit.api' not in sys.modules; rnnkit.load; assert 'rnnkit.api' in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)
    assert rnnkit.train is rnnkit.api.train and rnnkit.Run is rnnkit.api.Run
    with pytest.raises(AttributeError, match="no attribute 'fit'"):
        rnnkit.fit  # noqa: B018
