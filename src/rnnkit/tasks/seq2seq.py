"""Sequence to sequence (many-to-many, encoder–decoder): grapheme-to-phoneme, date normalisation, transliteration.

Data: a registry dataset (``data.dataset: cmudict``: source = the word's characters, targets = its
pronunciations as phoneme tokens, stress digits kept unless ``data.strip_stress`` — ``level: char`` and
``target_level: word`` are its defaults — with the registry's split by word) or the user's ``--data FILE``
(which wins when both are given), a UTF-8 TSV with one ``source<TAB>target`` pair per line (blank lines are
skipped; any other line without exactly one tab is an error naming the file and line). Both fields are
stripped. Tokens: ``data.level`` splits the source into characters (``char``, the default) or
whitespace-separated words (``word``); ``data.target_level`` does the same for the target (default: like the
source) — e.g. ``level=char target_level=word`` for ``hello<TAB>HH AH0 L OW1``.

Split (the cmudict rule, docs/datasets.md): ``h(source) % 10 == 0`` test, ``== 1`` validation, the rest
train, so all pairs with one source stay together. A source may have several targets (alternate
pronunciations): training sees every pair; evaluation decodes each source once and counts it right if
the prediction equals *any* of its references.

Vocabularies (source and target, ``<pad>``=0, ``<unk>``=1, ``<bos>``=2, ``<eos>``=3) come from the train
split and are saved as ``vocab.json`` in the run. Model: :class:`~rnnkit.models.Seq2Seq` with attention.
``model.ensemble: N`` trains N such models side by side on the same batches, each from its own random
initialisation (:class:`~rnnkit.models.Seq2SeqEnsemble`): the training loss is the mean of the members' own
losses, while evaluation, search, ``predict`` and the reported ``loss`` use their mixture (the mean of the
members' next-token probabilities at every step). N members cost N times the training and decoding time.
``rnnkit export`` does not cover ensembles.

Training is teacher forcing with scheduled sampling: the probability of feeding the gold previous token
starts at ``model.teacher_forcing`` and, when ``model.teacher_forcing_final`` is set, falls linearly to it
by the last epoch (the ratio of an epoch is a function of the epoch alone, so a resumed run continues the
same schedule). ``model.label_smoothing`` smooths the training targets (the training loss only: the
reported ``loss`` is always the plain cross-entropy). Evaluation always feeds gold tokens for the loss.

Metrics (all from additive sums, so they shard): ``loss`` (cross-entropy per target token, ``<eos>``
included, averaged over every source–reference pair), ``accuracy`` (exact sequence match against any
reference) and ``ter``, the token error rate: the edit distance to the closest reference over that
reference's length, summed over sources (the character error rate at ``char`` level, the phoneme error
rate for G2P). Under the names G2P papers use: ``wer`` = 1 − ``accuracy`` (the share of sources whose
output matches none of the references) and ``per`` = ``ter`` (phoneme edits to the closest reference over
that reference's length). ``bleu`` and ``chrf`` are sacrebleu's corpus BLEU and chrF (0-100, its default
tokenisation and settings, every reference of a source used) of the detokenised outputs, the numbers
``python -m sacrebleu`` prints for the same lines (:mod:`rnnkit.metrics.sequence`); they are summed from
per-batch statistics too. ``data.metric`` picks the validation metric that chooses the best epoch and drives
early stopping (it sets ``train.monitor`` and ``train.monitor_mode``); ``meta.json`` records the metrics
(``task_state.metric_set``). Validation decodes greedily (fast); the test split, predictions and ``predict``
use beam search with ``decode.beam_size``. Plots: attention heatmaps of a few test sources.
``predict`` takes source strings and returns ``{"source", "prediction", "score"}``.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path
from typing import Any, Literal

import torch
from pydantic import Field, field_validator, model_validator

from ..config import StrictModel
from ..data import registry
from ..data.text import BucketBatchSampler, pad_ids
from ..data.textfile import reading
from ..data.vocab import Vocabulary
from ..errors import RnnkitError
from ..fileio import atomic_write_json, atomic_write_jsonl
from ..metrics.sequence import (
    BLEU_STATISTICS,
    CHRF_STATISTICS,
    bleu_from_statistics,
    bleu_statistics,
    chrf_from_statistics,
    chrf_statistics,
)
from ..models import Seq2Seq, Seq2SeqEnsemble
from ..training import Task
from .base import RecipeConfig, StateFile, TaskKind
from .common import (
    BOS_ID,
    EOS_ID,
    PAD_ID,
    SPECIALS,
    UNK_ID,
    check_task_dataset,
    encoder_args,
    masked_cross_entropy,
    pad_references,
    search,
    task_datasets,
    unpad_references,
)

log = logging.getLogger("rnnkit")

#: reference tokens outside the target vocabulary: never equal to a predicted id
OOV = -1
#: the metrics ``data.metric`` may choose; those in :data:`HIGHER_IS_BETTER` are maximised, the others minimised
Seq2SeqMetric = Literal["loss", "accuracy", "ter", "wer", "per", "bleu", "chrf"]
HIGHER_IS_BETTER = ("accuracy", "bleu", "chrf")
#: what the task reports (:func:`seq2seq_metrics`)
REPORTED = ["loss", "accuracy", "ter", "wer", "per", "bleu", "chrf"]
#: registry datasets that feed seq2seq (they declare it, DatasetSpec.tasks) -> their (source level, target level)
#: defaults
SEQ2SEQ_DATASETS = {"cmudict": ("char", "word")}


def strip_stress(pairs: list[dict[str, str]]) -> list[dict[str, str]]:
    """Each target token without its trailing digits (``HH AH0 L OW1`` -> ``HH AH L OW``). Alternates of a
    source that only differed in those digits are kept once, in the first one's place (pairs that were
    already equal stay as they were)."""
    first: dict[tuple[str, str], str] = {}  # (source, stripped target) -> the original target that made it
    out = []
    for p in pairs:
        target = " ".join(re.sub(r"\d+$", "", tok) or tok for tok in p["target"].split())
        key = (p["source"], target)
        if first.setdefault(key, p["target"]) == p["target"]:
            out.append({**p, "target": target})
    return out


class Seq2SeqDataConfig(StrictModel):
    dataset: str | None = Field(None, description="registry dataset: cmudict; ignored when --data is given")
    level: Literal["char", "word"] = Field("char", description="source tokens: characters or whitespace words")
    target_level: Literal["char", "word"] | None = Field(None, description="target tokens; default: like level")
    min_frequency: int = Field(1, ge=1, description="rarer train tokens become <unk>")
    bucket_batches: int = Field(50, ge=1, description="batches per length-sorting chunk")
    strip_stress: bool = Field(
        False,
        description="drop the digits ending each target token (CMUdict's stress: AH0 -> AH); alternates that "
        "become equal are merged",
    )

    metric: Seq2SeqMetric | None = Field(
        None,
        description="validation metric for the best epoch and early stopping (sets train.monitor and "
        "monitor_mode); null: train.monitor as given",
    )

    @field_validator("dataset")
    @classmethod
    def _known_dataset(cls, v: str | None) -> str | None:
        return check_task_dataset(v, "seq2seq")

    @model_validator(mode="before")
    @classmethod
    def _dataset_levels(cls, data: Any) -> Any:
        if isinstance(data, dict) and data.get("dataset") in SEQ2SEQ_DATASETS:
            level, target_level = SEQ2SEQ_DATASETS[data["dataset"]]
            data = {"level": level, "target_level": target_level, **{k: v for k, v in data.items() if v is not None}}
        return data


class Seq2SeqModelConfig(StrictModel):
    cell: Literal["lstm", "gru"] = "lstm"
    embed_dim: int = Field(64, gt=0, description="source and target embedding size")
    hidden_size: int = Field(128, gt=0, description="decoder size; the encoder has this per direction")
    num_layers: int = Field(1, gt=0)
    bidirectional: bool = Field(True, description="encoder")
    dropout: float = Field(0.2, ge=0, lt=1)
    attention: Literal["none", "dot", "general", "additive"] = "general"
    input_feeding: bool = False
    bridge: Literal["linear", "zeros", "copy"] = "linear"
    teacher_forcing: float = Field(1.0, ge=0, le=1, description="probability of feeding the gold token (epoch 1)")
    teacher_forcing_final: float | None = Field(
        None, ge=0, le=1, description="linear decay of teacher_forcing to this by the last epoch; null: fixed"
    )
    label_smoothing: float = Field(
        0.0, ge=0, lt=1, description="share of the training target spread uniformly over the vocabulary"
    )
    ensemble: int = Field(1, ge=1, le=64, description="models trained side by side, decoded as one (mixture)")


class DecodeConfig(StrictModel):
    beam_size: int = Field(5, ge=1, description="test, predictions and predict (validation is greedy)")
    length_penalty: float = Field(0.0, description="GNMT alpha; 0 ranks by log-probability")
    max_length: int | None = Field(None, ge=1, description="output tokens; default 2 x longest train target + 5")


class Seq2SeqTaskConfig(RecipeConfig):
    task: Literal["seq2seq"] = "seq2seq"
    data: Seq2SeqDataConfig = Field(default_factory=Seq2SeqDataConfig)
    model: Seq2SeqModelConfig = Field(default_factory=Seq2SeqModelConfig)
    decode: DecodeConfig = Field(default_factory=DecodeConfig)

    @model_validator(mode="after")
    def _monitor_metric(self) -> Seq2SeqTaskConfig:
        """``data.metric`` becomes the trainer's monitored metric (:data:`HIGHER_IS_BETTER` maximised)."""
        metric = self.data.metric
        if metric is not None:
            mode = "max" if metric in HIGHER_IS_BETTER else "min"
            if self.train.monitor != metric:
                self.train.monitor = metric
            if self.train.monitor_mode != mode:
                self.train.monitor_mode = mode
        return self


# -- reading and tokenising -------------------------------------------------------------------------------
def read_pairs(path: Path) -> list[dict[str, Any]]:
    """``source<TAB>target`` lines -> ``[{"source", "target", "line"}]``; errors name the file and line."""
    pairs = []
    with reading(path), open(path, encoding="utf-8", newline="") as f:
        for n, raw in enumerate(f, 1):
            line = raw.rstrip("\r\n")
            if not line.strip():
                continue
            fields = line.split("\t")
            if len(fields) != 2:
                got = "no tab" if len(fields) == 1 else f"{len(fields)} tab-separated fields"
                raise RnnkitError(f"expected 'source<TAB>target', got {got}", where=f"{path}:{n}")
            source, target = (s.strip() for s in fields)
            if not source or not target:
                raise RnnkitError(f"empty {'source' if not source else 'target'}", where=f"{path}:{n}")
            pairs.append({"source": source, "target": target, "line": n})
    if not pairs:
        raise RnnkitError("no source<TAB>target pairs found (empty file)", where=str(path))
    return pairs


def tokenize(text: str, level: str) -> list[str]:
    return list(text) if level == "char" else text.split()


def detokenize(tokens: list[str], level: str) -> str:
    return "".join(tokens) if level == "char" else " ".join(tokens)


def edit_distance(a: list[int], b: list[int]) -> int:
    """Levenshtein distance (insertions, deletions, substitutions all cost 1)."""
    prev = list(range(len(b) + 1))
    for i, x in enumerate(a, 1):
        cur = [i]
        for j, y in enumerate(b, 1):
            cur.append(min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (x != y)))
        prev = cur
    return prev[-1]


def group_pairs(pairs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Pairs -> one ``{"source", "references"}`` per distinct source (file order; duplicate targets dropped)."""
    groups: dict[str, list[str]] = {}
    for p in pairs:
        refs = groups.setdefault(p["source"], [])
        if p["target"] not in refs:
            refs.append(p["target"])
    return [{"source": s, "references": refs} for s, refs in groups.items()]


class Seq2SeqTask(TaskKind):
    name = "seq2seq"
    config_class = Seq2SeqTaskConfig
    input_help = "source strings to transduce"
    inputs = "text"
    view = "transduce"
    state_keys = ("max_decode_length",)
    #: source and target vocabularies, both in vocab.json
    state_files = {
        "vocab": StateFile(
            ("src_vocab", "tgt_vocab"),
            "vocab.json",
            lambda p: (Vocabulary.load(p, "source"), Vocabulary.load(p, "target")),
        )
    }

    def recorded_state(self) -> dict[str, Any]:
        t = self.config.train
        return {"metric_set": {"reported": list(REPORTED), "validation": t.monitor, "mode": t.monitor_mode,
                               "bleu_chrf": "sacrebleu corpus scores, default settings"}}  # fmt: skip

    @property
    def target_level(self) -> str:
        d = self.config.data
        return d.target_level or d.level

    # -- data ---------------------------------------------------------------------------------------
    def _load_pairs(self) -> tuple[dict[str, list[dict[str, Any]]], dict[str, Any]]:
        """Each split's ``{"source", "target"}`` pairs (a source's alternates are consecutive) and the data info."""
        d = self.config.data
        if self.data_path is None and d.dataset is not None:
            spec = registry.get_spec(d.dataset)
            raw = registry.load_splits(spec.name)
            splits = {s: [{"source": r["word"], "target": t} for r in raw[s] for t in r["phonemes"]]
                      for s in registry.SPLITS}  # fmt: skip
            info = {"name": spec.name, "source": f"{spec.client}:{spec.requirement}", "license": spec.license,
                    "split": spec.split_rule}  # fmt: skip
        elif self.data_path is None:
            raise RnnkitError(
                "no data: give --data FILE, a TSV with one source<TAB>target pair per line, "
                f"or set data.dataset ({', '.join(task_datasets('seq2seq'))})"
            )
        else:
            pairs = read_pairs(self.data_path)
            splits = registry.split_by_hash(pairs, key="source")  # a source's pairs share its hash
            info = {"source": str(self.data_path)}
        if self.config.data.strip_stress:
            splits = {s: strip_stress(pairs) for s, pairs in splits.items()}
        for s in registry.SPLITS:
            if not splits[s]:
                raise RnnkitError(f"the {s} split is empty (need more distinct sources)", where=info["source"])
        return splits, info

    def prepare(self, run_dir: Path, reuse: bool = False) -> dict[str, Any]:
        d = self.config.data
        splits, info = self._load_pairs()
        src_tok = {s: [tokenize(p["source"], d.level) for p in splits[s]] for s in registry.SPLITS}
        tgt_tok = {s: [tokenize(p["target"], self.target_level) for p in splits[s]] for s in registry.SPLITS}
        if not reuse:
            self.src_vocab = Vocabulary.build(src_tok["train"], specials=SPECIALS, min_frequency=d.min_frequency)
            self.tgt_vocab = Vocabulary.build(tgt_tok["train"], specials=SPECIALS, min_frequency=d.min_frequency)
            longest = max(len(t) for t in tgt_tok["train"])
            self.max_decode_length = self.config.decode.max_length or 2 * longest + 5
            vocabs = {"source": self.src_vocab.to_json(), "target": self.tgt_vocab.to_json()}
            atomic_write_json(run_dir / "vocab.json", vocabs)
        self.splits: dict[str, dict[str, Any]] = {
            "train": {
                "src": [self.src_vocab.encode(t) for t in src_tok["train"]],
                "tgt": [self.tgt_vocab.encode(t) for t in tgt_tok["train"]],
            }
        }
        for s in ("validation", "test"):
            groups = group_pairs(splits[s])
            self.splits[s] = {
                "sources": [g["source"] for g in groups],
                "references": [g["references"] for g in groups],
                "src": [self.src_vocab.encode(tokenize(g["source"], d.level)) for g in groups],
                "refs": [[self._reference_ids(r) for r in g["references"]] for g in groups],
            }
        sizes = {"train": len(splits["train"])} | {s: len(self.splits[s]["src"]) for s in ("validation", "test")}
        info.update(sizes=sizes, pairs={s: len(splits[s]) for s in registry.SPLITS})
        log.info("data %s: %s pairs, sources %s, vocabularies %d -> %d", info["source"], info["pairs"], sizes,
                 len(self.src_vocab), len(self.tgt_vocab))  # fmt: skip
        return info

    def _reference_ids(self, text: str) -> list[int]:
        """A reference's target ids, tokens outside the vocabulary as :data:`OOV` (so they never match)."""
        index = self.tgt_vocab.index
        return [index.get(t, OOV) for t in tokenize(text, self.target_level)]

    # -- model and training ---------------------------------------------------------------------------
    def build_model(self) -> Seq2Seq | Seq2SeqEnsemble:
        m = self.config.model
        encoder = encoder_args(m, len(self.src_vocab), padding_idx=PAD_ID, bidirectional=m.bidirectional)
        member = dict(
            encoder=encoder, tgt_vocab_size=len(self.tgt_vocab), embed_dim=m.embed_dim, padding_idx=PAD_ID, cell=m.cell,
            hidden_size=m.hidden_size, num_layers=m.num_layers, attention=m.attention, input_feeding=m.input_feeding,
            dropout=m.dropout, bridge=m.bridge, teacher_forcing=m.teacher_forcing,
        )  # fmt: skip
        if m.ensemble > 1:
            return Seq2SeqEnsemble(member=member, size=m.ensemble)
        return Seq2Seq(member)

    def teacher_forcing(self, epoch: int) -> float:
        """The epoch's probability of feeding the gold token: linear from the start value to the final one."""
        m, epochs = self.config.model, self.config.train.epochs
        if m.teacher_forcing_final is None or epochs <= 1:
            return m.teacher_forcing
        return m.teacher_forcing + (m.teacher_forcing_final - m.teacher_forcing) * min(epoch, epochs - 1) / (epochs - 1)

    def _batches(self, split: str, epoch: int):
        data, bs = self.splits[split], self.config.train.batch_size
        train = split == "train"
        sampler = BucketBatchSampler([len(x) for x in data["src"]], bs, shuffle=train, seed=self.config.train.seed,
                                     bucket_batches=self.config.data.bucket_batches)  # fmt: skip
        sampler.set_epoch(epoch)
        ratio = self.teacher_forcing(epoch)
        for idx in sampler:
            src = [data["src"][i] for i in idx]
            batch = {"src": pad_ids(src), "src_len": torch.tensor([len(s) for s in src]), "index": torch.tensor(idx)}
            if train:
                tgt = [data["tgt"][i] for i in idx]
                batch.update(
                    tgt_in=pad_ids([[BOS_ID, *t] for t in tgt]),
                    tgt_out=pad_ids([[*t, EOS_ID] for t in tgt]),
                    tgt_len=torch.tensor([len(t) + 1 for t in tgt]),
                    teacher_forcing=ratio,
                )
            else:
                # (B, R, T) and (B, R), length 0: no such reference
                batch["refs"], batch["ref_len"] = pad_references([data["refs"][i] for i in idx])
                # the decoding width rides along per example (validation greedy, test beam)
                batch["beam"] = torch.full((len(idx),), 1 if split == "validation" else self.config.decode.beam_size)
                batch["split"] = split  # a string: every process keeps it whole (index says which references)
            yield batch

    def decode(self, model: Seq2Seq | Seq2SeqEnsemble, src: torch.Tensor, src_len: torch.Tensor, beam_size: int):
        """Greedy (``beam_size == 1``) or beam search from the encoded sources -> :class:`SearchResult`."""
        state = model.encode(src, src_len)
        return search(model.step, state, beam_size, self.max_decode_length, self.config.decode.length_penalty)

    def trainer_task(self) -> Task:
        def train_step(model, b, carry):
            args = (b["src"], b["src_len"], b["tgt_in"])
            if self.config.model.ensemble > 1:  # each member learns on its own (not the mixture)
                outputs = [x for x, _ in model.member_outputs(*args, teacher_forcing=b["teacher_forcing"])]
            else:
                outputs = [model(*args, teacher_forcing=b["teacher_forcing"])[0]]
            smoothing = self.config.model.label_smoothing
            losses = [masked_cross_entropy(x, b["tgt_out"], b["tgt_len"], label_smoothing=smoothing) for x in outputs]
            return torch.stack([loss for loss, _ in losses]).mean(), None, losses[0][1]

        def eval_step(model, b):
            stats = {"loss_sum": 0.0, "tokens": 0.0, "correct": 0.0, "n": 0.0, "edits": 0.0, "ref_tokens": 0.0}
            refs, ref_len = b["refs"], b["ref_len"]
            if refs.shape[0] == 0:  # an empty shard
                return stats
            # loss: every (source, reference) pair, gold tokens fed
            rows, cols = (ref_len > 0).nonzero(as_tuple=True)
            tgt, n = refs[rows, cols].clamp(min=UNK_ID), ref_len[rows, cols]  # out-of-vocabulary -> <unk>
            pairs = torch.arange(len(rows), device=tgt.device)
            tgt_out = torch.cat([tgt, tgt.new_full((len(rows), 1), PAD_ID)], 1)
            tgt_out[pairs, n] = EOS_ID
            tgt_in = torch.cat([tgt.new_full((len(rows), 1), BOS_ID), tgt], 1)
            logits, _ = model(b["src"][rows], b["src_len"][rows], tgt_in)
            loss_sum, tokens = masked_cross_entropy(logits, tgt_out, n + 1, reduction="sum")
            stats["loss_sum"], stats["tokens"] = float(loss_sum), float(tokens)
            # decoding: exact match against any reference, edit distance to the closest one
            result = self.decode(model, b["src"], b["src_len"], int(b["beam"][0]))
            references = unpad_references(refs, ref_len)
            for pred, candidates in zip(result.sequences, references, strict=True):
                dist, length = min((edit_distance(pred, ref), len(ref)) for ref in candidates)
                stats["correct"] += float(dist == 0)
                stats["edits"] += dist
                stats["ref_tokens"] += length
            stats["n"] = float(len(references))
            # BLEU and chrF of the output strings against the reference strings (as written in the data)
            texts = self.splits[b["split"]]["references"]
            ref_texts = [texts[i] for i in b["index"].tolist()]
            hyps = [detokenize(self.tgt_vocab.decode(seq), self.target_level) for seq in result.sequences]
            stats.update({f"bleu_{k}": float(v) for k, v in enumerate(bleu_statistics(hyps, ref_texts))})
            stats.update({f"chrf_{k}": float(v) for k, v in enumerate(chrf_statistics(hyps, ref_texts))})
            return stats

        bs = self.config.train.batch_size
        return Task(
            batches=self._batches,
            train_step=train_step,
            eval_step=eval_step,
            finalize=seq2seq_metrics,
            num_batches=lambda split: -(-len(self.splits[split]["src"]) // bs),
        )

    # -- outputs ------------------------------------------------------------------------------------
    def _transduce(
        self, model: Seq2Seq | Seq2SeqEnsemble, src_ids: list[list[int]], beam_size: int, batch_size: int = 128
    ):
        """Best hypothesis per source, in input order (batched by length)."""
        device = next(model.parameters()).device
        out: list[Any] = [None] * len(src_ids)
        model.eval()
        for idx in BucketBatchSampler([len(x) for x in src_ids], batch_size, shuffle=False):
            seqs = [src_ids[i] for i in idx]
            src, src_len = pad_ids(seqs).to(device), torch.tensor([len(s) for s in seqs], device=device)
            result = self.decode(model, src, src_len, beam_size)
            for i, hyps in zip(idx, result.hypotheses, strict=True):
                out[i] = hyps[0]
        return out

    def _prediction(self, hyp) -> str:
        return detokenize(self.tgt_vocab.decode(hyp.tokens), self.target_level)

    def write_predictions(self, model, run_dir) -> None:
        data = self.splits["test"]
        hyps = self._transduce(model, data["src"], self.config.decode.beam_size)
        rows = []
        for source, refs, hyp in zip(data["sources"], data["references"], hyps, strict=True):
            pred = self._prediction(hyp)
            rows.append({"source": source, "references": refs, "prediction": pred, "correct": pred in refs,
                         "score": round(hyp.score, 6)})  # fmt: skip
        atomic_write_jsonl(run_dir / "predictions.jsonl", rows)

    def plots(self, model, run_dir, metrics, num_examples: int = 4) -> list[Path]:
        from ..plots import attention_heatmaps

        if self.config.model.attention == "none":
            return []
        data = self.splits["test"]
        hyps = self._transduce(model, data["src"][:num_examples], self.config.decode.beam_size)
        examples = []
        for src, hyp in zip(data["src"][:num_examples], hyps, strict=True):
            out = self.tgt_vocab.decode(hyp.tokens) + (["<eos>"] if hyp.finished else [])
            weights = hyp.attention[:, : len(src)].float().cpu().numpy()  # (len(out), Ts) without source padding
            examples.append((self.src_vocab.decode(src), out, weights))
        return [attention_heatmaps(examples, run_dir / "plots" / "attention.png")]

    def predict(self, model, inputs: list[str]) -> list[dict[str, Any]]:
        """``source``, ``prediction``, ``score``; with attention, also ``source_tokens``, ``output_tokens``
        (``<eos>`` last when produced) and ``attention`` (len(output_tokens), len(source_tokens)): the weights
        over the source that produced each output token (rows sum to 1), as in ``plots/attention.png``."""
        ids, sources = [], []
        for text in inputs:
            tokens = tokenize(text.strip(), self.config.data.level)
            if not tokens:
                raise RnnkitError(f"empty source {text!r}: nothing to transduce")
            ids.append(self.src_vocab.encode(tokens))
            sources.append(tokens)
        hyps = self._transduce(model, ids, self.config.decode.beam_size)
        out = []
        for text, tokens, h in zip(inputs, sources, hyps, strict=True):
            row = {"source": text, "prediction": self._prediction(h), "score": round(h.score, 6)}
            if h.attention is not None:
                weights = h.attention[:, : len(tokens)].float().cpu().tolist()
                row["source_tokens"] = tokens
                row["output_tokens"] = self.tgt_vocab.decode(h.tokens) + (["<eos>"] if h.finished else [])
                row["attention"] = [[round(w, 4) for w in r] for r in weights]
            out.append(row)
        return out


def seq2seq_metrics(s: dict[str, float]) -> dict[str, float]:
    """Token loss, exact-match accuracy and token error rate from summed statistics, the same two under
    their G2P names: ``wer`` = 1 - accuracy, ``per`` = ter, and sacrebleu's corpus ``bleu`` and ``chrf``
    (module docstring; present when the statistics hold BLEU's and chrF's)."""
    accuracy, ter = s["correct"] / max(s["n"], 1.0), s["edits"] / max(s["ref_tokens"], 1.0)
    out = {"loss": s["loss_sum"] / max(s["tokens"], 1.0), "accuracy": accuracy, "ter": ter, "wer": 1.0 - accuracy,
           "per": ter}  # fmt: skip
    if "bleu_0" in s:  # statistics of at least one decoded source
        out["bleu"] = bleu_from_statistics([s[f"bleu_{k}"] for k in range(BLEU_STATISTICS)])
        out["chrf"] = chrf_from_statistics([s[f"chrf_{k}"] for k in range(CHRF_STATISTICS)])
    return out
