"""What the page highlights: the classifier's attention weights and gradient x input saliency in
``text-classification``'s predict output, and the attention matrix in ``seq2seq``'s, checked against the model."""

from __future__ import annotations

import pytest
import torch

from rnnkit.tasks.runner import load_run


def test_attention_weights_are_the_pooling_weights(attention_run):
    run = load_run(attention_run)
    (r,) = run.task.predict(run.model, ["the plot is superb"])
    ids = run.task._encode(["the plot is superb"])[0]
    with torch.no_grad():
        _, weights = run.model.forward_with_weights(torch.tensor([ids]), torch.tensor([len(ids)]))
    assert r["attention"] == pytest.approx(weights[0].tolist(), abs=1e-5)
    assert r["tokens"] == ["the", "plot", "is", "superb"] and len(ids) == 4


def test_an_ensembles_attention_is_its_members_mean(ensemble_attention_run):
    run = load_run(ensemble_attention_run)
    a, b = run.model.members
    assert a.encoder.embedding is not b.encoder.embedding  # trained word embeddings: one table each
    text = "the plot is superb"
    (r,) = run.task.predict(run.model, [text], saliency=True)
    assert run.task.highlight(run.model) == "attention"
    x = torch.tensor([run.task._encode([text])[0]])
    with torch.no_grad():
        weights = [m.forward_with_weights(x)[1][0] for m in (a, b)]
    assert r["attention"] == pytest.approx(((weights[0] + weights[1]) / 2).tolist(), abs=1e-5)
    assert sum(r["attention"]) == pytest.approx(1, abs=1e-5) and len(r["saliency"]) == 4


def test_saliency_is_gradient_times_input_of_the_predicted_label(max_run):
    run = load_run(max_run)
    text = "dull plot but a superb cast"
    (r,) = run.task.predict(run.model, [text], saliency=True)
    ids = torch.tensor([run.task._encode([text])[0]])
    emb = run.model.encoder.embedding(ids).detach().requires_grad_(True)
    run.model.encoder.embedding.register_forward_hook(lambda m, a, out: emb)
    logp = run.model(ids, torch.tensor([ids.shape[1]])).log_softmax(-1)[0, run.task.labels.index(r["label"])]
    (grad,) = torch.autograd.grad(logp, emb)
    assert r["saliency"] == pytest.approx((grad * emb).sum(-1)[0].tolist(), abs=1e-5)
    assert all(p.grad is None for p in run.model.parameters())  # nothing accumulated in the model


def test_tokens_follow_the_encoding_truncation_and_offsets(max_run):
    run = load_run(max_run)
    run.task.config.data.max_length = 2
    (r,) = run.task.predict(run.model, ["great  film, superb"], saliency=True)
    assert r["tokens"] == ["great", "film"] and r["offsets"] == [[0, 5], [7, 11]] and len(r["saliency"]) == 2
    assert "attention" not in r  # max pooling has no attention weights


def test_seq2seq_attention_matches_the_plot_rows(seq2seq_run):
    run = load_run(seq2seq_run)
    (r,) = run.task.predict(run.model, [" fade "])
    assert r["source"] == " fade " and r["source_tokens"] == list("fade")  # stripped like the model's input
    assert len(r["attention"]) == len(r["output_tokens"])
    assert all(len(row) == 4 and sum(row) == pytest.approx(1, abs=1e-3) for row in r["attention"])
