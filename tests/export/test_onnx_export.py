"""ONNX export: the export graphs equal the models (every cell, ragged, both directions, every pooling),
ONNX Runtime equals PyTorch (batch 1 and more, ragged lengths, a language model's state carried over two
chunks equals one long pass), ``rnnkit export`` / ``predict --quantize int8`` on a run folder, and the errors."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
import torch

from rnnkit.cli.main import main
from rnnkit.export.graph import graph_for
from rnnkit.models import Classifier, LanguageModel, Tagger
from rnnkit.tasks.runner import predict, train

ort = pytest.importorskip("onnxruntime")
pytestmark = pytest.mark.filterwarnings("ignore:`torch.jit.load` is deprecated:DeprecationWarning")
pytest.importorskip("onnxscript")

CELLS = ["lstm", "gru", "rnn_tanh", "ln_lstm", "ln_gru", "min_gru", "min_lstm"]
LENGTHS = torch.tensor([7, 3, 1, 5])


def ragged(V: int = 30, B: int = 4, T: int = 7, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    lengths = torch.randint(1, T + 1, (B,), generator=g)
    lengths[0] = T
    return torch.randint(1, V, (B, T), generator=g), lengths


def session(path):
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])


# -- the export graphs in PyTorch ---------------------------------------------------------------------------
@pytest.mark.parametrize("cell", CELLS)
def test_graphs_equal_the_models_for_every_cell(cell):
    torch.manual_seed(0)
    x, lengths = torch.randint(1, 30, (4, 7)), LENGTHS
    zoneout = 0.2 if cell == "lstm" else 0.0  # eval-mode zoneout is an expectation the graph must reproduce
    for bi in (False, True):
        # every pooling with one cell; one pooling (the one that reads each direction's end) with the others
        for pooling in ("max", "mean", "last", "attention") if cell == "lstm" else ("last",):
            enc = dict(vocab_size=30, embed_dim=8, cell=cell, hidden_size=6, num_layers=2, bidirectional=bi,
                       zoneout=zoneout)  # fmt: skip
            m = Classifier(encoder=enc, num_classes=3, pooling=pooling, head_hidden=[5]).eval()
            with torch.no_grad():
                out = graph_for(m)(x, lengths)
                logits = out[0] if pooling == "attention" else out
                torch.testing.assert_close(logits, m(x, lengths), atol=1e-5, rtol=1e-5)
                if pooling == "attention":
                    torch.testing.assert_close(out[1], m.forward_with_weights(x, lengths)[1], atol=1e-6, rtol=1e-5)
        t = Tagger(encoder=dict(vocab_size=30, embed_dim=8, cell=cell, hidden_size=[6, 4], bidirectional=bi),
                   num_tags=4).eval()  # fmt: skip
        with torch.no_grad():
            torch.testing.assert_close(graph_for(t)(x, lengths), t(x, lengths), atol=1e-5, rtol=1e-5)
    lm = LanguageModel(encoder=dict(vocab_size=30, embed_dim=8, cell=cell, hidden_size=8, num_layers=2),
                       tie_weights=True).eval()  # fmt: skip
    state = [tuple(torch.randn_like(s) for s in st) for st in lm.init_state(4)]
    with torch.no_grad():
        logits, final = lm(x, lengths, state)
        out = graph_for(lm)(x, lengths, *[s for st in state for s in st])
    torch.testing.assert_close(out[0], logits, atol=1e-5, rtol=1e-5)
    for got, want in zip(out[1:], [s for st in final for s in st], strict=True):
        torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)


def test_features_input_and_regression():
    torch.manual_seed(0)
    m = Classifier(encoder=dict(input_size=3, cell="gru", hidden_size=5, bidirectional=True), output_size=2,
                   pooling="last").eval()  # fmt: skip
    f = torch.randn(4, 7, 3)
    with torch.no_grad():
        torch.testing.assert_close(graph_for(m)(f, LENGTHS), m(f, LENGTHS), atol=1e-5, rtol=1e-5)


def test_unsupported_model_kind_names_the_ones_that_export():
    from rnnkit.errors import RnnkitError
    from rnnkit.export import check_exportable

    with pytest.raises(RnnkitError, match="model kind 'seq2seq' does not export yet; the kinds that do: classifier"):
        check_exportable("seq2seq")
    with pytest.raises(TypeError):
        graph_for(torch.nn.Linear(2, 2))


# -- ONNX Runtime against PyTorch -----------------------------------------------------------------------------
def test_classifier_onnx_equals_pytorch_at_any_batch_and_length(tmp_path):
    from rnnkit.export.onnx import export_onnx

    torch.manual_seed(0)
    enc = dict(vocab_size=30, embed_dim=8, cell="lstm", hidden_size=6, bidirectional=True)
    m = Classifier(encoder=enc, num_classes=3, pooling="attention").eval()
    inputs, outputs = export_onnx(m, tmp_path / "clf.onnx")
    assert [i["name"] for i in inputs] == ["tokens", "lengths"]
    assert [o["name"] for o in outputs] == ["logits", "attention"]
    import onnx

    assert "LSTM" in {n.op_type for n in onnx.load(str(tmp_path / "clf.onnx")).graph.node}
    from rnnkit.models.base import MODEL_REGISTRY

    assert MODEL_REGISTRY["classifier"] is Classifier  # the exporter's module proxies did not replace it
    s = session(tmp_path / "clf.onnx")
    for B, T, seed in [(1, 1, 0), (1, 9, 1), (4, 7, 2), (6, 13, 3)]:
        x, lengths = ragged(B=B, T=T, seed=seed)
        logits, weights = s.run(None, {"tokens": x.numpy(), "lengths": lengths.numpy()})
        with torch.no_grad():
            want, want_w = m.forward_with_weights(x, lengths)
        np.testing.assert_allclose(logits, want.numpy(), atol=1e-5, rtol=1e-4)
        np.testing.assert_allclose(weights, want_w.numpy(), atol=1e-6, rtol=1e-4)


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_language_model_onnx_streams_its_state(tmp_path, cell):
    import onnx

    from rnnkit.export.onnx import export_onnx

    torch.manual_seed(0)
    lm = LanguageModel(encoder=dict(vocab_size=30, embed_dim=8, cell=cell, hidden_size=[8, 6])).eval()
    inputs, outputs = export_onnx(lm, tmp_path / "lm.onnx")
    names = [i["name"] for i in inputs]
    components = ["h", "c"] if cell == "lstm" else ["h"]
    assert names == ["tokens", "lengths"] + [f"state_{i}_{c}" for i in (0, 1) for c in components]
    assert cell.upper() in {n.op_type for n in onnx.load(str(tmp_path / "lm.onnx")).graph.node}  # fused node
    assert [o["name"] for o in outputs][1:] == ["next_" + n for n in names[2:]]
    s = session(tmp_path / "lm.onnx")

    def run(x, lengths, state):
        feed = {"tokens": x.numpy(), "lengths": lengths.numpy(), **dict(zip(names[2:], state, strict=True))}
        out = s.run(None, feed)
        return out[0], out[1:]

    for B in (1, 3):
        x = torch.randint(1, 30, (B, 12))
        zeros = [np.zeros((B, *i["shape"][1:]), np.float32) for i in inputs[2:]]
        full = torch.full((B,), 12)
        whole, whole_state = run(x, full, zeros)
        with torch.no_grad():
            want, want_state = lm(x)
        np.testing.assert_allclose(whole, want.numpy(), atol=1e-5, rtol=1e-4)
        for a, b in zip(whole_state, [s for st in want_state for s in st], strict=True):
            np.testing.assert_allclose(a, b.numpy(), atol=1e-5, rtol=1e-4)
        first, state = run(x[:, :5], torch.full((B,), 5), zeros)  # two chunks, the state carried over
        second, state = run(x[:, 5:], torch.full((B,), 7), state)
        np.testing.assert_allclose(np.concatenate([first, second], 1), whole, atol=1e-5, rtol=1e-4)
        for a, b in zip(state, whole_state, strict=True):
            np.testing.assert_allclose(a, b, atol=1e-5, rtol=1e-4)
    x, lengths = ragged(B=4, T=9, seed=5)  # ragged rows: each final state at its own last real step
    rand = [np.random.default_rng(0).standard_normal((4, *i["shape"][1:])).astype(np.float32) for i in inputs[2:]]
    logits, state = run(x, lengths, rand)
    k = len(components)
    nest = [tuple(torch.from_numpy(a) for a in rand[:k]), tuple(torch.from_numpy(a) for a in rand[k:])]
    with torch.no_grad():
        want, want_state = lm(x, lengths, nest)
    np.testing.assert_allclose(logits, want.numpy(), atol=1e-5, rtol=1e-4)
    for a, b in zip(state, [s for st in want_state for s in st], strict=True):
        np.testing.assert_allclose(a, b.numpy(), atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("cell, node", [("ln_gru", "Scan"), ("rnn_relu", "RNN")])
def test_tagger_onnx_equals_pytorch(tmp_path, cell, node):
    import onnx

    from rnnkit.export.onnx import export_onnx

    torch.manual_seed(0)
    t = Tagger(encoder=dict(vocab_size=30, embed_dim=8, cell=cell, hidden_size=6, bidirectional=True),
               num_tags=4).eval()  # fmt: skip
    export_onnx(t, tmp_path / "tag.onnx")
    assert node in {n.op_type for n in onnx.load(str(tmp_path / "tag.onnx")).graph.node}
    s = session(tmp_path / "tag.onnx")
    for B, T, seed in [(1, 4, 0), (5, 8, 1)]:
        x, lengths = ragged(B=B, T=T, seed=seed)
        (emissions,) = s.run(None, {"tokens": x.numpy(), "lengths": lengths.numpy()})
        with torch.no_grad():
            np.testing.assert_allclose(emissions, t(x, lengths).numpy(), atol=1e-5, rtol=1e-4)


def test_the_onnx_stand_in_serves_every_model_method(tmp_path):
    """:class:`QuantizedModel` (here over float graphs, so answers are exact) runs the models' own methods:
    a tagger's Viterbi over ONNX emissions, a language model's prime/step/forward with its state."""
    from rnnkit.decoding import greedy
    from rnnkit.export import QuantizedModel
    from rnnkit.export.onnx import export_onnx

    torch.manual_seed(0)
    tagger = Tagger(encoder=dict(vocab_size=30, embed_dim=8, cell="lstm", hidden_size=6, bidirectional=True),
                    num_tags=4, crf=True).eval()  # fmt: skip
    export_onnx(tagger, tmp_path / "tag.onnx")
    stand_in = QuantizedModel(tagger, tmp_path / "tag.onnx")
    x, lengths = ragged(B=5, T=8, seed=3)
    assert torch.equal(stand_in.predict(x, lengths), tagger.predict(x, lengths))
    assert stand_in.config is tagger.config and next(stand_in.parameters()) is next(tagger.parameters())

    lm = LanguageModel(encoder=dict(vocab_size=30, embed_dim=8, cell="lstm", hidden_size=8, num_layers=2)).eval()
    export_onnx(lm, tmp_path / "lm.onnx")
    stand_in = QuantizedModel(lm, tmp_path / "lm.onnx")
    prompt, lengths = ragged(B=3, T=6, seed=4)
    last, state = stand_in.prime(prompt, lengths)
    want_last, want_state = lm.prime(prompt, lengths)
    assert torch.equal(last, want_last)
    got = greedy(stand_in.step, state, last, eos=0, max_len=6).sequences
    assert got == greedy(lm.step, want_state, want_last, eos=0, max_len=6).sequences


# -- rnnkit export / predict --quantize int8 on a run folder ---------------------------------------------------
@pytest.fixture(scope="module")
def sentiment_run(tmp_path_factory):
    import random

    rng = random.Random(0)
    data = tmp_path_factory.mktemp("data") / "reviews.csv"
    with open(data, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["text", "label"])
        for i in range(240):
            words = rng.sample(["the", "film", "plot", "cast", "a"], 3) + [("great" if i % 2 else "dull"), f"id{i}"]
            rng.shuffle(words)
            w.writerow([" ".join(words), "pos" if i % 2 else "neg"])
    runs = tmp_path_factory.mktemp("runs")
    sets = ["train.epochs=3", "train.lr=0.01", "train.batch_size=16", "model.dropout=0.0", "model.embed_dim=16",
            "model.hidden_size=32", "model.bidirectional=true"]  # fmt: skip
    return train("text-classification", data=data, runs_dir=runs, name="rt", quiet=True, overrides=sets).path


def test_export_cli_writes_a_runnable_model_and_its_description(sentiment_run, tmp_path, capsys):
    from tokenizers import Tokenizer

    out = tmp_path / "exported" / "rt.onnx"
    assert main(["export", str(sentiment_run), "--format", "onnx", "--out", str(out)]) == 0
    assert capsys.readouterr().out.splitlines() == [str(out), str(out.with_suffix(".json"))]
    desc = json.loads(out.with_suffix(".json").read_text())
    assert desc["file"] == "rt.onnx" and desc["quantize"] is None and desc["task"] == "text-classification"
    assert [i["name"] for i in desc["inputs"]] == ["tokens", "lengths"] and desc["outputs"][0]["name"] == "logits"
    assert desc["files"] == ["tokenizer.json"] and (out.parent / "tokenizer.json").is_file()
    labels = desc["preprocessing"]["labels"]
    # a user with onnxruntime and tokenizers only: tokenize, pad, run, softmax -> rnnkit predict's answer
    texts = ["a great film", "the dull plot of a film", "great"]
    tok = Tokenizer.from_file(str(out.parent / "tokenizer.json"))
    ids = [tok.encode(t).ids for t in texts]
    T = max(map(len, ids))
    tokens = np.array([i + [0] * (T - len(i)) for i in ids], dtype=np.int64)
    (logits,) = session(out).run(None, {"tokens": tokens, "lengths": np.array([len(i) for i in ids])})
    probs = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    want = predict(sentiment_run, texts)
    assert [labels[k] for k in probs.argmax(1)] == [r["label"] for r in want]
    np.testing.assert_allclose(probs.max(1), [r["probability"] for r in want], atol=1e-5)


def test_int8_export_and_predict_agree_with_the_float_model(sentiment_run, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("RNNKIT_HOME", str(tmp_path / "home"))
    texts = ["a great film", "the dull plot", "great cast", "dull", "the film"]
    assert main(["predict", str(sentiment_run), *texts, "--quantize", "int8"]) == 0
    int8 = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    cached = list((tmp_path / "home" / "int8").glob("*/model.int8.onnx"))
    assert len(cached) == 1  # built once, outside the run folder
    assert not (sentiment_run / "export").exists()
    want = predict(sentiment_run, texts)
    assert [r["label"] for r in int8] == [r["label"] for r in want]
    np.testing.assert_allclose([r["probability"] for r in int8], [r["probability"] for r in want], atol=0.05)
    assert [r["probability"] for r in int8] != [r["probability"] for r in want]  # int8 really ran

    monkeypatch.chdir(tmp_path)  # without --out: ./<run name>-export/, never inside the run folder
    assert main(["export", str(sentiment_run), "--quantize", "int8"]) == 0
    path = tmp_path / "rt-export" / "model.int8.onnx"
    assert not (sentiment_run / "export").exists()
    assert capsys.readouterr().out.splitlines()[0] == str(path)
    assert json.loads(path.with_suffix(".json").read_text())["quantize"] == "int8"
    import onnx

    kinds = {n.op_type for n in onnx.load(str(path)).graph.node}
    assert "DynamicQuantizeLSTM" in kinds and "MatMulInteger" in kinds and "LSTM" not in kinds


@pytest.mark.parametrize(
    "args, fragments",
    [
        (["--format", "torchscript", "--quantize", "int8"], ["--quantize int8 is offered with --format onnx"]),
        (["--out", "model.pt"], ["--format onnx writes a .onnx file"]),
        (["--format", "tflite"], None),  # argparse's own usage error
        (["--quantize", "int4"], None),
    ],
)
def test_export_errors_are_one_line(sentiment_run, capsys, args, fragments):
    assert main(["export", str(sentiment_run), *args]) == 2
    err = capsys.readouterr().err
    if fragments is not None:
        assert err.startswith("rnnkit: error: ") and err.count("\n") == 1
        assert all(f in err for f in fragments), err


def test_export_of_a_missing_run_or_an_unsupported_kind(sentiment_run, tmp_path, capsys, monkeypatch):
    assert main(["export", str(tmp_path / "nope")]) == 2
    assert "no run folder" in capsys.readouterr().err
    from rnnkit.tasks import runner

    real = runner.load_run

    def seq2seq_run(run_dir, device="cpu"):  # a run whose model kind has no export graph
        run = real(run_dir, device)
        run.meta["model"]["kind"] = "seq2seq"
        return run

    monkeypatch.setattr(runner, "load_run", seq2seq_run)
    assert main(["export", str(sentiment_run), "--out", str(tmp_path / "x.onnx")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "model kind 'seq2seq' does not export yet" in err
    assert not (tmp_path / "x.onnx").exists()
    assert main(["predict", str(sentiment_run), "great", "--quantize", "int8"]) == 2
    assert "model kind 'seq2seq' does not export yet" in capsys.readouterr().err


# -- TorchScript ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "model",
    [
        lambda: Classifier(
            encoder=dict(vocab_size=30, embed_dim=8, cell="lstm", hidden_size=6, num_layers=2, bidirectional=True),
            num_classes=3,
            pooling="attention",
        ),  # fmt: skip
        lambda: LanguageModel(encoder=dict(vocab_size=30, embed_dim=8, cell="gru", hidden_size=[8, 6])),
        lambda: Tagger(
            encoder=dict(vocab_size=30, embed_dim=8, cell="rnn_relu", hidden_size=6, bidirectional=True), num_tags=4
        ),  # fmt: skip
    ],
    ids=["classifier-bilstm", "lm-gru", "tagger-rnn"],
)
def test_torchscript_equals_pytorch_at_any_batch_and_length(tmp_path, model):
    from rnnkit.export.torchscript import export_torchscript

    torch.manual_seed(0)
    m = model().eval()
    export_torchscript(m, tmp_path / "m.pt")
    loaded = torch.jit.load(str(tmp_path / "m.pt"))
    for B, T, seed in [(1, 1, 0), (4, 7, 1), (6, 13, 2)]:
        x, lengths = ragged(B=B, T=T, seed=seed)
        with torch.no_grad():
            if isinstance(m, LanguageModel):
                state = [tuple(torch.randn_like(s) for s in st) for st in m.init_state(B)]
                logits, final = m(x, lengths, state)
                want = [logits, *[s for st in final for s in st]]
                got = loaded(x, lengths, *[s for st in state for s in st])
            elif isinstance(m, Classifier):
                want, got = list(m.forward_with_weights(x, lengths)), loaded(x, lengths)
            else:
                want, got = [m(x, lengths)], [loaded(x, lengths)]
        for a, b in zip(got, want, strict=True):
            torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-4)


def test_torchscript_cli_and_the_cells_it_does_not_cover(sentiment_run, tmp_path, capsys, monkeypatch):
    assert main(["export", str(sentiment_run), "--format", "torchscript", "--out", str(tmp_path / "ts")]) == 0
    path = tmp_path / "ts" / "model.pt"
    assert capsys.readouterr().out.splitlines() == [str(path), str(path.with_suffix(".json"))]
    desc = json.loads(path.with_suffix(".json").read_text())
    assert desc["format"] == "torchscript" and desc["opset"] is None and desc["files"] == ["tokenizer.json"]
    loaded = torch.jit.load(str(path))
    x, lengths = ragged(V=5, B=3, T=6)
    from rnnkit.tasks.runner import load_run

    with torch.no_grad():
        torch.testing.assert_close(loaded(x, lengths), load_run(sentiment_run).model(x, lengths), atol=1e-5, rtol=1e-4)

    from rnnkit.export.torchscript import export_torchscript

    with pytest.raises(TypeError, match="torchscript covers LSTM/GRU/RNN"):
        export_torchscript(Classifier(encoder=dict(vocab_size=9, cell="ln_lstm", hidden_size=4), num_classes=2), path)
    import rnnkit.export.graph as graph

    monkeypatch.setattr(graph, "fuses", lambda stack: False)  # as if the run used a cell TorchScript does not cover
    assert main(["export", str(sentiment_run), "--format", "torchscript", "--out", str(tmp_path / "no")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--format torchscript covers lstm/gru/rnn" in err and "--format onnx" in err
    assert not (tmp_path / "no").exists()


def test_quantize_benchmark_smoke(sentiment_run, tmp_path, monkeypatch, capsys):
    """benchmarks/quantize.py keeps running (one timed pass; no timing is asserted)."""
    import importlib.util
    from pathlib import Path

    monkeypatch.setenv("RNNKIT_HOME", str(tmp_path / "home"))
    path = Path(__file__).resolve().parents[2] / "benchmarks" / "quantize.py"
    spec = importlib.util.spec_from_file_location("quantize_benchmark", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert module.main([str(sentiment_run), "--repeats", "1"]) == 0
    out = capsys.readouterr().out
    for name in ("| fp32 torch |", "| int8 onnxruntime |", "| fp32 onnxruntime |", "| int8 torch.ao |", "# machine:"):
        assert name in out
    assert "target (int8 >= 1.8x faster" in out
    assert module.main([str(tmp_path / "none")]) == 2
    assert "rnnkit quickstart" in capsys.readouterr().err
