"""A CRF constrained to an entity tagging scheme: Viterbi never decodes an invalid transition (random emissions
and transitions, every scheme), it finds the best valid sequence (against brute force), unconstrained decoding
would have broken the scheme on the same scores, and the constraints leave the loss and the saved weights alone.

Validity is judged independently of the CRF's tables: a sequence is valid when seqeval's strict reading of its
entities, written back in the scheme, gives the very same sequence."""

from __future__ import annotations

import itertools

import pytest
import torch
from seqeval import scheme as seqeval_scheme

from rnnkit.models import CRF, Tagger
from rnnkit.models.crf import allowed_transitions

TAGS = {
    "IOB2": ["O", "B-PER", "I-PER", "B-LOC", "I-LOC"],
    "IOB1": ["O", "B-PER", "I-PER", "B-LOC", "I-LOC"],
    "IOE2": ["O", "I-PER", "E-PER", "I-LOC", "E-LOC"],
    "IOE1": ["O", "I-PER", "E-PER", "I-LOC", "E-LOC"],
    "IOBES": ["O", "B-PER", "I-PER", "E-PER", "S-PER", "B-LOC", "I-LOC", "E-LOC", "S-LOC"],
    "BILOU": ["O", "B-PER", "I-PER", "L-PER", "U-PER", "B-LOC", "I-LOC", "L-LOC", "U-LOC"],
}


def encode(entities: list[tuple[str, int, int]], n: int, scheme: str) -> list[str]:
    """Entities ``(type, start, end)`` (end exclusive) of a sequence of ``n`` tags written in ``scheme``."""
    out = ["O"] * n
    entities = sorted(entities, key=lambda e: e[1])
    for k, (kind, a, b) in enumerate(entities):
        for i in range(a, b):
            out[i] = f"I-{kind}"
        before = entities[k - 1] if k else None
        after = entities[k + 1] if k + 1 < len(entities) else None
        glued_before = before is not None and before[2] == a and before[0] == kind
        glued_after = after is not None and after[1] == b and after[0] == kind
        if scheme == "IOB2" or (scheme == "IOB1" and glued_before):
            out[a] = f"B-{kind}"
        elif scheme == "IOE2" or (scheme == "IOE1" and glued_after):
            out[b - 1] = f"E-{kind}"
        elif scheme in ("IOBES", "BILOU"):
            single, first, last = ("S", "B", "E") if scheme == "IOBES" else ("U", "B", "L")
            if b - a == 1:
                out[a] = f"{single}-{kind}"
            else:
                out[a], out[b - 1] = f"{first}-{kind}", f"{last}-{kind}"
    return out


def valid(tags: list[str], scheme: str) -> bool:
    tokens = seqeval_scheme.Tokens(tags, getattr(seqeval_scheme, scheme))
    entities = [(e.tag, e.start, e.end) for e in tokens.entities]
    return encode(entities, len(tags), scheme) == tags


def test_the_validity_oracle():
    assert valid(["B-PER", "I-PER", "O"], "IOB2") and not valid(["O", "I-PER"], "IOB2")
    assert not valid(["B-PER", "I-LOC"], "IOB2")
    assert valid(["I-PER", "B-PER"], "IOB1") and not valid(["B-PER"], "IOB1")
    assert valid(["B-PER", "E-PER", "S-LOC"], "IOBES") and not valid(["B-PER", "O"], "IOBES")
    assert valid(["I-PER", "E-PER"], "IOE2") and not valid(["I-PER", "O"], "IOE2")


def decode(crf: CRF, emissions: torch.Tensor, lengths: torch.Tensor, constrained: bool = True) -> list[list[int]]:
    mask = torch.arange(emissions.shape[1]) < lengths[:, None]
    paths, _ = crf.viterbi(emissions, mask, constrained=constrained)
    return [row[:n] for row, n in zip(paths.tolist(), lengths.tolist(), strict=True)]


@pytest.mark.parametrize("scheme", list(TAGS))
def test_decoded_paths_are_always_valid(scheme):
    tags = TAGS[scheme]
    K = len(tags)
    g = torch.Generator().manual_seed(sum(map(ord, scheme)))
    invalid_unconstrained = 0
    for _ in range(20):
        crf = CRF(K, allowed_transitions(tags, scheme))
        with torch.no_grad():  # large random scores, so that many best paths would break the scheme
            for p in (crf.start_transitions, crf.end_transitions, crf.transitions):
                p.copy_(torch.randn(p.shape, generator=g) * 3)
        emissions = torch.randn(16, 9, K, generator=g) * 3
        lengths = torch.randint(1, 10, (16,), generator=g)
        for path in decode(crf, emissions, lengths):
            assert valid([tags[i] for i in path], scheme), [tags[i] for i in path]
        invalid_unconstrained += sum(
            not valid([tags[i] for i in p], scheme) for p in decode(crf, emissions, lengths, constrained=False)
        )
    assert invalid_unconstrained > 20  # the property is not vacuous: the same scores decode badly without it


@pytest.mark.parametrize("scheme", ["IOB2", "IOBES", "IOE1"])
def test_constrained_viterbi_is_the_best_valid_sequence(scheme):
    tags = TAGS[scheme][:5]
    K, T = len(tags), 4
    g = torch.Generator().manual_seed(7)
    crf = CRF(K, allowed_transitions(tags, scheme))
    with torch.no_grad():
        crf.transitions.copy_(torch.randn(K, K, generator=g))
    emissions = torch.randn(1, T, K, generator=g) * 2
    path, score = crf.viterbi(emissions)
    candidates = [list(y) for y in itertools.product(range(K), repeat=T) if valid([tags[i] for i in y], scheme)]
    scores = crf.score(emissions.expand(len(candidates), T, K), torch.tensor(candidates)).detach()
    best = int(scores.argmax())
    assert path[0].tolist() == candidates[best]
    assert float(score[0]) == pytest.approx(float(scores[best]), abs=1e-5)


def test_crafted_scores_that_favour_an_invalid_path():
    tags = TAGS["IOB2"]  # O B-PER I-PER B-LOC I-LOC
    crf = CRF(len(tags), allowed_transitions(tags, "IOB2"))
    with torch.no_grad():
        for p in (crf.start_transitions, crf.end_transitions, crf.transitions):
            p.zero_()
    # the emissions say: I-PER first, then O, then I-LOC (each an invalid IOB2 move), B-LOC a close second
    emissions = torch.full((1, 3, 5), -5.0)
    emissions[0, 0, 2] = 3.0
    emissions[0, 0, 1] = 2.5
    emissions[0, 1, 0] = 3.0
    emissions[0, 2, 4] = 3.0
    emissions[0, 2, 3] = 2.5
    unconstrained = [tags[i] for i in crf.viterbi(emissions, constrained=False)[0][0].tolist()]
    constrained = [tags[i] for i in crf.viterbi(emissions)[0][0].tolist()]
    assert unconstrained == ["I-PER", "O", "I-LOC"] and not valid(unconstrained, "IOB2")
    assert constrained == ["B-PER", "O", "B-LOC"]


def test_constraints_change_neither_the_loss_nor_the_saved_weights():
    tags = TAGS["IOBES"]
    K = len(tags)
    torch.manual_seed(0)
    plain, constrained = CRF(K), CRF(K, allowed_transitions(tags, "IOBES"))
    constrained.load_state_dict(plain.state_dict())  # no extra keys: the masks are not saved
    assert set(plain.state_dict()) == set(constrained.state_dict())
    emissions, gold = torch.randn(3, 5, K), torch.randint(0, K, (3, 5))  # gold may break the scheme: still finite
    assert torch.allclose(plain.nll(emissions, gold), constrained.nll(emissions, gold))
    assert torch.isfinite(constrained.nll(emissions, gold)).all()
    assert "constrained" in repr(constrained) and "constrained" not in repr(plain)


def test_a_tagger_builds_the_constraints_from_its_tag_names():
    tags = TAGS["IOB2"]
    encoder = dict(vocab_size=20, embed_dim=8, hidden_size=8)
    model = Tagger(encoder=encoder, num_tags=len(tags), crf=True, tag_names=tags, tag_scheme="IOB2")
    assert model.crf.constrained
    assert Tagger.from_config(model.get_config()).crf.constrained  # a loaded run decodes the same way
    torch.manual_seed(1)
    x, lengths = torch.randint(1, 20, (8, 6)), torch.tensor([6, 5, 4, 3, 2, 1, 6, 6])
    with torch.no_grad():
        model.crf.transitions.copy_(torch.randn(len(tags), len(tags)) * 5)
        model.crf.start_transitions.copy_(torch.randn(len(tags)) * 5)
    for row, n in zip(model.predict(x, lengths).tolist(), lengths.tolist(), strict=True):
        assert valid([tags[i] for i in row[:n]], "IOB2")
    with pytest.raises(ValueError, match="tag_names has 2 names for num_tags=5"):
        Tagger(encoder=encoder, num_tags=5, crf=True, tag_names=["O", "B-X"], tag_scheme="IOB2")
    with pytest.raises(ValueError, match="tag_scheme needs tag_names"):
        Tagger(encoder=encoder, num_tags=5, crf=True, tag_scheme="IOB2")
    with pytest.raises(ValueError, match="unknown tagging scheme"):
        allowed_transitions(tags, "BIO")
