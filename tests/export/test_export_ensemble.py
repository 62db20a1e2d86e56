"""Exporting a classifier ensemble (``model.ensemble`` in text and series classification): the graph combines the
members as the model does (log of the mean probabilities, mean values, mean attention), ONNX Runtime and
TorchScript equal PyTorch at any batch and length, a shared embedding table is stored once, and a run folder
exports and predicts with ``--quantize int8``."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from rnnkit.cli.main import main
from rnnkit.export.graph import graph_for
from rnnkit.models import ClassifierEnsemble
from rnnkit.tasks.runner import predict, train

ort = pytest.importorskip("onnxruntime")
pytest.importorskip("onnxscript")
pytestmark = pytest.mark.filterwarnings("ignore:`torch.jit.load` is deprecated:DeprecationWarning")

TOKENS = dict(encoder=dict(vocab_size=30, embed_dim=8, cell="lstm", hidden_size=6, bidirectional=True), num_classes=3)


def ragged(B: int, T: int, seed: int, V: int = 30):
    g = torch.Generator().manual_seed(seed)
    lengths = torch.randint(1, T + 1, (B,), generator=g)
    lengths[0] = T
    return torch.randint(1, V, (B, T), generator=g), lengths


@pytest.mark.parametrize("pooling", ["max", "attention"])
def test_the_graph_combines_the_members_as_the_model_does(pooling):
    torch.manual_seed(0)
    ens = ClassifierEnsemble(member={**TOKENS, "pooling": pooling}, size=3, share_embedding=True).eval()
    x, lengths = ragged(4, 7, 0)
    with torch.no_grad():
        out = graph_for(ens)(x, lengths)
        logits, weights = ens.forward_with_weights(x, lengths)
    if pooling == "attention":
        out, got_weights = out
        torch.testing.assert_close(got_weights, weights, atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(out, logits, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(out.softmax(-1), ens.predict(x, lengths), atol=1e-6, rtol=1e-5)


def test_a_regression_ensemble_on_features_exports_the_members_mean():
    torch.manual_seed(0)
    member = dict(encoder=dict(input_size=3, cell="gru", hidden_size=5, bidirectional=True), output_size=2)
    ens = ClassifierEnsemble(member={**member, "pooling": "last"}, size=2).eval()
    f, lengths = torch.randn(4, 7, 3), torch.tensor([7, 3, 1, 5])
    with torch.no_grad():
        want = torch.stack([m(f, lengths) for m in ens.members]).mean(0)
        torch.testing.assert_close(graph_for(ens)(f, lengths), want, atol=1e-5, rtol=1e-5)


def test_onnx_and_torchscript_equal_pytorch_and_hold_a_shared_table_once(tmp_path):
    import onnx

    from rnnkit.export.onnx import export_onnx
    from rnnkit.export.torchscript import export_torchscript

    torch.manual_seed(0)
    ens = ClassifierEnsemble(member={**TOKENS, "pooling": "attention"}, size=3, share_embedding=True).eval()
    inputs, outputs = export_onnx(ens, tmp_path / "ens.onnx")
    assert [i["name"] for i in inputs] == ["tokens", "lengths"] and [o["name"] for o in outputs] == [
        "logits",
        "attention",
    ]
    graph = onnx.load(str(tmp_path / "ens.onnx")).graph
    tables = [t for t in graph.initializer if list(t.dims) == [30, 8]]
    assert len(tables) == 1  # the members' shared embedding: one initializer
    assert [n.op_type for n in graph.node].count("LSTM") == 3  # one fused node per member
    export_torchscript(ens, tmp_path / "ens.pt")
    scripted = torch.jit.load(str(tmp_path / "ens.pt"))
    s = ort.InferenceSession(str(tmp_path / "ens.onnx"), providers=["CPUExecutionProvider"])
    for B, T, seed in [(1, 1, 0), (4, 7, 1), (6, 13, 2)]:
        x, lengths = ragged(B, T, seed)
        with torch.no_grad():
            want, want_w = ens.forward_with_weights(x, lengths)
            ts_logits, ts_w = scripted(x, lengths)
        logits, weights = s.run(None, {"tokens": x.numpy(), "lengths": lengths.numpy()})
        np.testing.assert_allclose(logits, want.numpy(), atol=1e-5, rtol=1e-4)
        np.testing.assert_allclose(weights, want_w.numpy(), atol=1e-6, rtol=1e-4)
        torch.testing.assert_close(ts_logits, want, atol=1e-5, rtol=1e-4)
        torch.testing.assert_close(ts_w, want_w, atol=1e-6, rtol=1e-4)


def test_an_ensemble_run_exports_and_predicts_in_int8(tmp_path, monkeypatch, capsys):
    from text_fixtures import write_reviews

    data = write_reviews(tmp_path / "reviews.csv", 240, 0)
    sets = ["train.epochs=3", "train.lr=0.01", "train.batch_size=16", "model.dropout=0.0", "model.embed_dim=16",
            "model.hidden_size=16", "model.ensemble=2"]  # fmt: skip
    run = train("text-classification", data=data, runs_dir=tmp_path / "runs", name="ens", quiet=True, overrides=sets)
    run = run.path
    monkeypatch.setenv("RNNKIT_HOME", str(tmp_path / "home"))
    texts = ["a great film", "dull plot", "superb cast", "the film"]
    assert main(["predict", str(run), *texts, "--quantize", "int8"]) == 0
    int8 = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    want = predict(run, texts)
    assert [r["label"] for r in int8] == [r["label"] for r in want]
    np.testing.assert_allclose([r["probability"] for r in int8], [r["probability"] for r in want], atol=0.05)
    out = tmp_path / "export" / "ens.onnx"
    assert main(["export", str(run), "--out", str(out)]) == 0
    desc = json.loads(out.with_suffix(".json").read_text())
    assert desc["model_kind"] == "classifier-ensemble" and desc["outputs"][0]["name"] == "logits"
