"""Music (many-to-many, aligned): a language model over four-voice chord events; samples as MIDI and piano rolls.

Data: the ``chorales`` registry dataset (the 371 Bach chorales of music21's corpus, parsed once and cached
under ``RNNKIT_HOME``; split ``h(title) % 10 == 0`` test, ``== 1`` validation) or ``--data FOLDER`` of
scores music21 reads (``.mxl``, ``.musicxml``, ``.xml``, ``.mid``, ``.midi``, ``.abc``, ``.krn``), four voices
each (parts named Soprano/Alto/Tenor/Bass, else the top four), split by ``h(file name)`` the same way.
music21 (and mido, for MIDI files) come with ``pip install "rnnkit[music]"``.

Encoding (:mod:`rnnkit.data.chorales`): a chorale is cut at every note onset of any voice; each *event*
is five tokens ``S:x A:x T:x B:x d:q`` (``x`` a new pitch such as ``G4``, ``R`` a new rest, ``_`` hold;
``q`` the quarter lengths to the next onset), and ``<eos>`` ends a chorale. ``data.transpose: key``
moves every chorale to C major / A minor first (``none`` keeps the written keys). The vocabulary is the
train split's tokens (``data.min_frequency``), after ``<pad>``, ``<unk>``, ``<eos>``.

Training is the language model's truncated BPTT (:func:`~rnnkit.tasks.language_model.stream_task`) over
the chorales joined into one stream per split, with the same ``model`` section
(:func:`~rnnkit.tasks.language_model.build_language_model`). Metrics: ``loss`` (nats per token),
``perplexity``, ``nll_per_event`` (nats per chord event: the summed NLL of its five tokens; a chorale's
``<eos>`` counts in its last event), and beside them, on the very same targets, two baselines fit on the
train stream with add-k smoothing (``baseline_k``) over every token but ``<pad>``: a unigram
(``unigram_loss``, ``unigram_nll_per_event``) and a bigram (``bigram_*``) model.

Generation samples events (``generate`` section; ``rnnkit generate`` options override it, ``max_tokens``
counting events) with the grammar enforced: each token is drawn among the tokens its slot allows
(``S`` then ``A``, ``T``, ``B``, ``d``, then ``S`` or ``<eos>``). A prompt is empty (a new chorale) or a
few whole events of tokens. Each sample is written as a four-track MIDI file and a piano-roll PNG;
training ends by writing ``generate.samples`` of them into ``samples/`` (listed in ``predictions.jsonl``)
and ``plots/piano_roll.png`` (a test chorale above a sample).
"""

from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import Any, Literal

import torch
from pydantic import Field

from ..config import StrictModel
from ..data import chorales as ch
from ..data import registry
from ..data.bptt import BPTTStream
from ..data.registry import SPLITS, text_hash
from ..data.text import PAD_ID
from ..data.vocab import EOS, PAD, UNK, Vocabulary
from ..decoding import expand_state, sample
from ..errors import RnnkitError
from ..fileio import atomic_write_jsonl
from ..models import LanguageModel
from ..models.base import eval_mode
from ..training import Task
from .base import GenerateOptions, RecipeConfig, TaskKind
from .common import VOCAB_STATE
from .language_model import LMModelConfig, build_language_model, lm_metrics, stream_task

log = logging.getLogger("rnnkit")

SCORE_SUFFIXES = (".mxl", ".musicxml", ".xml", ".mid", ".midi", ".abc", ".krn")
#: slot numbers of the grammar: 0-3 the voices, 4 the duration, 5 the end of a chorale
END_SLOT = len(ch.SLOTS)
VOICE_COLORS = ("tab:blue", "tab:orange", "tab:green", "tab:red")


class MusicDataConfig(StrictModel):
    dataset: Literal["chorales"] | None = Field("chorales", description="registry dataset; ignored with --data")
    transpose: Literal["key", "none"] = Field("key", description="key: every piece to C major / A minor first")
    min_frequency: int = Field(1, ge=1, description="rarer train tokens become <unk>")
    bptt: int = Field(100, ge=1, description="tokens per truncated-BPTT window (5 tokens an event)")
    baseline_k: float = Field(0.1, gt=0, description="add-k smoothing of the unigram and bigram baselines")


class MusicGenerateConfig(StrictModel):
    max_events: int = Field(64, ge=1, description="events per sample (rnnkit generate --max-tokens)")
    temperature: float = Field(1.0, ge=0, description="0: greedy; below 1: safer; above 1: more varied")
    top_k: int | None = Field(None, ge=1, description="sample among the k most likely tokens only")
    top_p: float | None = Field(None, gt=0, le=1, description="nucleus sampling")
    seed: int = Field(0, description="the same seed and prompt give the same samples")
    samples: int = Field(2, ge=0, le=100, description="samples written into the run's samples/ after training")


class MusicTaskConfig(RecipeConfig):
    task: Literal["music"] = "music"
    data: MusicDataConfig = Field(default_factory=MusicDataConfig)
    model: LMModelConfig = Field(default_factory=LMModelConfig)
    generate: MusicGenerateConfig = Field(default_factory=MusicGenerateConfig)


# -- baselines ------------------------------------------------------------------------------------------
def ngram_log_probs(ids: torch.Tensor, vocab_size: int, k: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Add-k unigram ``(V,)`` and bigram ``(V, V)`` log-probabilities (``[previous, next]``) fit on the
    stream ``ids`` (its first id is context only), over every id but :data:`PAD_ID` (log-prob -inf)."""
    ids = torch.as_tensor(ids, dtype=torch.long)
    prev, nxt = ids[:-1], ids[1:]
    V = vocab_size
    support = V - 1  # every id but padding can follow
    uni = torch.bincount(nxt, minlength=V).double()
    bi = torch.bincount(prev * V + nxt, minlength=V * V).double().view(V, V)
    uni_lp = ((uni + k) / (uni.sum() + k * support)).log()
    bi_lp = ((bi + k) / (bi.sum(1, keepdim=True) + k * support)).log()
    uni_lp[PAD_ID] = -math.inf
    bi_lp[:, PAD_ID] = -math.inf
    return uni_lp.float(), bi_lp.float()


# -- the task -------------------------------------------------------------------------------------------
class MusicTask(TaskKind):
    name = "music"
    config_class = MusicTaskConfig
    input_help = "prompts: empty for a new piece, or whole events like 'S:C5 A:G4 T:E4 B:C3 d:1'"
    inputs = "text"
    view = "compose"
    text_prompts = True
    state_files = VOCAB_STATE

    # -- data -----------------------------------------------------------------------------------------
    def _load_records(self) -> tuple[dict[str, list[dict[str, Any]]], dict[str, Any]]:
        d = self.config.data
        if self.data_path is not None:
            return self._read_folder(self.data_path)
        if d.dataset is None:
            raise RnnkitError("no data: give --data FOLDER of scores (MusicXML, MIDI, ABC) or set data.dataset")
        spec = registry.get_spec(d.dataset)
        splits = registry.load_splits(spec.name)
        info = {"name": spec.name, "source": spec.source, "license": spec.license, "split": spec.split_rule}
        return splits, info

    def _read_folder(self, path: Path) -> tuple[dict[str, list[dict[str, Any]]], dict[str, Any]]:
        if not path.is_dir():
            raise RnnkitError("expected a folder of score files (MusicXML, MIDI, ABC, kern)", where=str(path))
        files = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in SCORE_SUFFIXES)
        if not files:
            raise RnnkitError(f"no score files ({', '.join(SCORE_SUFFIXES)}) in the folder", where=str(path))
        splits: dict[str, list[dict[str, Any]]] = {s: [] for s in SPLITS}
        for f in files:
            bucket = text_hash(f.name) % 10
            splits["test" if bucket == 0 else "validation" if bucket == 1 else "train"].append(ch.read_score_file(f))
        for s in SPLITS:
            if not splits[s]:
                raise RnnkitError(
                    f"the {s} split has no scores ({len(files)} files split by h(file name) % 10; add more)",
                    where=str(path),
                )
        info = {"source": str(path), "split": "h(file name) % 10 == 0 test, == 1 validation, rest train"}
        return splits, info

    def prepare(self, run_dir: Path, reuse: bool = False) -> dict[str, Any]:
        d = self.config.data
        records, info = self._load_records()
        tokens = {s: [[*ch.record_tokens(r, d.transpose), EOS] for r in records[s]] for s in SPLITS}
        if not reuse:
            self.vocab = Vocabulary.build(tokens["train"], specials=(PAD, UNK, EOS), min_frequency=d.min_frequency)
            self.vocab.save(run_dir / "vocab.json")
        rows = self.config.train.batch_size
        self.streams, self.test_records = {}, records["test"]
        for s in SPLITS:
            ids = torch.tensor(self.vocab.encode([EOS, *(t for piece in tokens[s] for t in piece)]), dtype=torch.long)
            self.streams[s] = BPTTStream(ids, rows=rows, bptt=d.bptt)
            if s == "train":  # the baselines see exactly the stream the model trains on
                self.baselines = ngram_log_probs(ids, len(self.vocab), d.baseline_k)
        unk = self.vocab.unk_id
        info.update(
            transpose=d.transpose,
            pieces={s: len(records[s]) for s in SPLITS},
            events={s: sum((len(p) - 1) // len(ch.SLOTS) for p in tokens[s]) for s in SPLITS},
            tokens={s: self.streams[s].num_tokens for s in SPLITS},
            unk_rate={
                s: round(float((self.streams[s].targets == unk).sum()) / self.streams[s].num_tokens, 6) for s in SPLITS
            },
            vocabulary=len(self.vocab),
        )
        log.info("data %s: pieces %s, events %s, vocabulary %d", info["source"], info["pieces"], info["events"],
                 len(self.vocab))  # fmt: skip
        return info

    # -- model and training ---------------------------------------------------------------------------
    def build_model(self) -> LanguageModel:
        return build_language_model(self.config.model, len(self.vocab))

    def _slots(self) -> torch.Tensor:
        """The grammar slot of every vocabulary id (:data:`END_SLOT` for ``<eos>``, -1 for ``<pad>``/``<unk>``)."""
        slots = [ch.token_slot(t) for t in self.vocab.tokens]
        return torch.tensor(
            [END_SLOT if t == EOS else -1 if s is None else s for t, s in zip(self.vocab.tokens, slots, strict=True)]
        )

    def trainer_task(self) -> Task:
        is_event = self._slots() == ch.SLOTS.index(ch.DUR)  # one duration token closes every event
        uni, bi = self.baselines

        def extra_stats(b):
            y, x = b["y"], b["x"]
            mask = torch.ones_like(y, dtype=torch.bool)
            if "lengths" in b:
                mask = torch.arange(y.shape[1], device=y.device)[None, :] < b["lengths"][:, None]
            y, x = y[mask].cpu(), x[mask].cpu()
            return {
                "events": float(is_event[y].sum()),
                "uni_sum": float(-uni[y].double().sum()),
                "bi_sum": float(-bi[x, y].double().sum()),
            }

        def finalize(s):
            tokens, events = max(s["tokens"], 1.0), max(s["events"], 1.0)
            out = lm_metrics(s["nll_sum"], s["tokens"], "event")
            out["nll_per_event"] = s["nll_sum"] / events
            for name, key in (("unigram", "uni_sum"), ("bigram", "bi_sum")):
                out[f"{name}_loss"] = s[key] / tokens
                out[f"{name}_nll_per_event"] = s[key] / events
            return out

        return stream_task(self.streams, finalize, extra_stats)

    # -- generating -----------------------------------------------------------------------------------
    def settings(self, options: GenerateOptions | None) -> MusicGenerateConfig:
        """The run's ``generate`` section with ``options`` on top (``max_tokens`` counts events here)."""
        g = self.config.generate
        if options is None:
            return g
        if options.beam_size is not None:
            raise RnnkitError("music samples its pieces: beam_size does not apply (use temperature, top_k, top_p)")
        update: dict[str, Any] = {k: getattr(options, k) for k in ("temperature", "top_p", "seed")}
        update = {k: v for k, v in update.items() if v is not None}
        if options.max_tokens is not None:
            update["max_events"] = options.max_tokens
        if options.top_k is not None:
            update["top_k"] = options.top_k or None  # 0: every token
        return g.model_copy(update=update)

    def prompt_tokens(self, prompt: str) -> list[str]:
        """A prompt's tokens, checked: known to the vocabulary, whole events in slot order."""
        tokens = prompt.split()
        for i, t in enumerate(tokens):
            want = ch.SLOTS[i % len(ch.SLOTS)]
            if ch.token_slot(t) != i % len(ch.SLOTS):
                raise RnnkitError(f"prompt token {i + 1} ({t!r}) should be a {want}: token (events are S A T B d)")
            if t not in self.vocab:
                raise RnnkitError(f"prompt token {i + 1} ({t!r}) is not in the run's vocabulary")
        if len(tokens) % len(ch.SLOTS):
            raise RnnkitError(f"the prompt ends inside an event ({len(tokens)} tokens; events are 5: S A T B d)")
        return tokens

    @torch.no_grad()
    def sample_pieces(
        self, model: LanguageModel, prompt: str, g: MusicGenerateConfig, num_samples: int
    ) -> list[dict[str, Any]]:
        """``num_samples`` pieces continuing ``prompt`` (one seeded draw for all): tokens, voices, log-prob."""
        given = self.prompt_tokens(prompt)
        slots = self._slots()
        device = next(model.parameters()).device
        allowed = torch.zeros(END_SLOT + 1, len(self.vocab), dtype=torch.bool)  # [slot of the last token, next id]
        for s in range(END_SLOT + 1):
            follows = {END_SLOT: (0,), ch.SLOTS.index(ch.DUR): (0, END_SLOT)}.get(s, (s + 1,))
            allowed[s] = torch.isin(slots, torch.tensor(follows))
        banned = ~allowed[slots.clamp(min=0)].to(device)  # (V, V): [last id, next id]

        def step(tokens, state):
            logits, state = model.step(tokens, state)
            return logits.masked_fill(banned[tokens], float("-inf")), state

        eos = self.vocab.index[EOS]
        with eval_mode(model):
            last, state = model.prime(torch.tensor([self.vocab.encode([EOS, *given])], device=device))
            generator = torch.Generator(device=device).manual_seed(g.seed)
            result = sample(
                step, expand_state(state, num_samples), bos=last.repeat(num_samples), eos=eos,
                max_len=g.max_events * len(ch.SLOTS) + 1, temperature=g.temperature, top_k=g.top_k, top_p=g.top_p,
                generator=generator,
            )  # fmt: skip
        pieces = []
        for i, (h,) in enumerate(result.hypotheses):
            tokens = given + self.vocab.decode(h.tokens)
            tokens = tokens[: len(tokens) - len(tokens) % len(ch.SLOTS)]  # whole events only
            pieces.append(
                {"sample": i, "tokens": tokens, "voices": ch.tokens_to_voices(tokens), "log_prob": h.log_prob,
                 "finished": h.finished}
            )  # fmt: skip
        return pieces

    can_generate = True

    def generate_outputs(
        self, model, prompts: list[str], options: GenerateOptions, out_dir: Path | None = None
    ) -> list[dict[str, Any]]:
        """``options.num_samples`` pieces per prompt (``""``: a new piece); with ``out_dir``, each as
        ``piece-<prompt>-<sample>.mid`` and ``.png`` (a piano roll), listed under ``"files"``."""
        g = self.settings(options)
        rows = []
        for p, prompt in enumerate(prompts):
            for piece in self.sample_pieces(model, prompt, g, options.num_samples):
                files = []
                if out_dir is not None:
                    stem = Path(out_dir) / f"piece-{p}-{piece['sample']}"
                    title = f"sample {piece['sample']}" + (f" of prompt {p}" if prompt else "")
                    files = [
                        str(ch.write_midi(piece["voices"], stem.with_suffix(".mid"))),
                        str(piano_roll([(title, piece["voices"])], stem.with_suffix(".png"))),
                    ]
                rows.append(_row(prompt, piece, files))
        return rows

    def predict(self, model, inputs: list[str]) -> list[dict[str, Any]]:
        g = self.settings(None)
        return [_row(p, self.sample_pieces(model, p, g, 1)[0], []) for p in inputs]

    def write_predictions(self, model, run_dir) -> None:
        n = self.config.generate.samples
        rows = self.generate_outputs(model, [""], GenerateOptions(num_samples=n), run_dir / "samples") if n else []
        for r in rows:
            r["files"] = [str(Path(f).relative_to(run_dir)) for f in r["files"]]
        atomic_write_jsonl(run_dir / "predictions.jsonl", rows)

    def plots(self, model, run_dir, metrics) -> list[Path]:
        rolls = []
        if self.test_records:
            r = self.test_records[0]
            voices = ch.tokens_to_voices(ch.record_tokens(r, self.config.data.transpose))
            rolls.append((f"test: {r.get('title', 'piece')}", voices))
        if self.config.generate.samples:
            piece = self.sample_pieces(model, "", self.config.generate, 1)[0]
            rolls.append((f"sample (seed {self.config.generate.seed})", piece["voices"]))
        return [piano_roll(rolls, run_dir / "plots" / "piano_roll.png")] if rolls else []


def _row(prompt: str, piece: dict[str, Any], files: list[str]) -> dict[str, Any]:
    return {
        "prompt": prompt,
        "sample": piece["sample"],
        "events": len(piece["tokens"]) // len(ch.SLOTS),
        "quarters": str(max((s + d for v in piece["voices"] for s, d, _ in v), default=0)),
        "finished": piece["finished"],
        "log_prob": round(piece["log_prob"], 4),
        "tokens": " ".join(piece["tokens"]),
        "files": files,
    }


def piano_roll(rolls: list[tuple[str, list[list[ch.Note]]]], path: Path) -> Path:
    """One panel per ``(title, voices)``: every note a bar (x: quarter notes, y: pitch), a colour per voice."""
    from ..plots import _pyplot, _save

    plt = _pyplot()
    longest = max((float(s + d) for _, vs in rolls for v in vs for s, d, _ in v), default=1.0)
    fig, axes = plt.subplots(len(rolls), 1, figsize=(min(4 + 0.12 * longest, 18), 3.4 * len(rolls)), squeeze=False)
    for ax, (title, voices) in zip(axes[:, 0], rolls, strict=True):
        pitches = []
        for name, color, notes in zip(ch.VOICE_NAMES, VOICE_COLORS, voices, strict=True):
            sounding = [(float(s), float(d), m) for s, d, m in notes if m is not None]
            pitches += [m for _, _, m in sounding]
            ax.barh(
                [m for _, _, m in sounding], [d for _, d, _ in sounding], left=[s for s, _, _ in sounding],
                height=0.85, color=color, edgecolor="black", linewidth=0.3, label=name,
            )  # fmt: skip
        if pitches:
            low, high = min(pitches) - 1, max(pitches) + 1
            ax.set_ylim(low - 0.5, high + 0.5)
            cs = [m for m in range(low, high + 1) if m % 12 == 0]
            ax.set_yticks(cs, [ch.pitch_name(m) for m in cs])
        ax.set_xlim(0, longest)
        ax.set_xlabel("quarter notes")
        ax.set_ylabel("pitch")
        ax.set_title(title)
        ax.grid(axis="x", alpha=0.3)
        ax.legend(loc="upper right", fontsize=7, ncol=4)
    return _save(fig, path)
