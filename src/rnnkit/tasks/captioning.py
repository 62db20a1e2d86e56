"""Image captioning (one-to-many): a CNN encodes the image, a recurrent decoder writes the caption.

Data: ``--data captions.json``, COCO style (or ``data.dataset: mnist-5k-strips``, below)::

    {"images": [{"id": 1, "file_name": "a.png"}, ...],
     "annotations": [{"image_id": 1, "caption": "A dog on a sofa."}, ...]}

next to an image folder: ``data.image_dir`` (relative paths start at the JSON's folder; null: the JSON's
``images/`` folder if there is one, else the JSON's folder). Images are read with Pillow, converted to
grayscale or RGB (``data.channels``) and resized to ``data.image_size`` [H, W]. Captions are lowercased
and split into words (punctuation dropped); the vocabulary comes from the train captions, with
``<pad>`` = 0, ``<unk>``, ``<bos>``, ``<eos>`` first, and is saved as ``vocab.json`` in the run.
An image may have several captions: all of them are training targets, and a generated caption is
right if it equals any of them. Images without a caption are skipped.
Split by image: ``h(file_name) % 10 == 0`` test, ``== 1`` validation, the rest train (``h`` of docs/datasets.md).

Without ``--data``, ``data.dataset: mnist-5k-strips`` builds the data instead (:mod:`rnnkit.data.strips`):
``data.strips_per_split`` strips of ``data.min_digits``..``data.max_digits`` mnist-5k digits side by side,
captioned with their words (``"three one four"``), each digit moved by up to ``data.strip_jitter`` pixels,
drawn with ``data.strip_seed``; ``data.strip_resample`` draws new train strips from the same train digits
for every epoch after the first (``rng([strip_seed, 0, epoch])``: new neighbours, new jitter).
``data.strip_rotate`` (degrees, 0..45) and ``data.strip_scale`` (0 <= s < 0.5) distort the *train* digits only (the
first train strips and every resampled epoch): each is turned by an angle uniform in [-rotate, rotate] and scaled by
a factor uniform in [1 - scale, 1 + scale] about its centre before it is moved; validation and test strips stay as
they are (0: no distortion and the very same strips as without these options). A split's strips hold
only that split's digits. Strips are ``28 x 28 * max_digits`` (resized to ``data.image_size`` if it differs).

Model: :class:`~rnnkit.models.ConditionalGenerator` with image conditioning (``model.image_encoder``:
``flat`` maps the whole CNN feature map with one linear layer; ``columns`` reads its columns left to right
with a bidirectional GRU of ``model.column_hidden`` per direction, one reader for every position;
``model.attend_columns``: the decoder also attends over those columns at every step).
Metrics, from additive statistics: ``loss`` (teacher-forced cross-entropy per reference token, ``<eos>`` included),
``exact_match`` (generated caption equals a reference) and ``token_accuracy`` (position-wise matches
with the closest reference, ``<eos>`` included, over the longer of the two). Validation decodes
greedily (cheap, every epoch); test uses beam search (``decode.beam_size``). A reference word
outside the vocabulary never counts as matched. Plot: test images under their generated captions.
``predict`` takes image paths and answers ``{"image", "caption"}``.
"""

from __future__ import annotations

import json
import logging
import re
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from pydantic import Field, field_validator, model_validator

from ..config import StrictModel
from ..data.images import read_image
from ..data.registry import SPLITS, text_hash
from ..data.text import pad_ids
from ..data.vocab import Vocabulary
from ..decoding import beam_search, expand_state, sample
from ..errors import RnnkitError
from ..fileio import atomic_write_jsonl
from ..models import ConditionalGenerator
from ..models.base import eval_mode
from ..training import Task
from .base import GenerateOptions, RecipeConfig, TaskKind
from .common import (
    BOS_ID,
    EOS_ID,
    IMAGE_SUFFIXES,
    PAD_ID,
    SPECIALS,
    UNK_ID,
    VOCAB_STATE,
    epoch_order,
    masked_cross_entropy,
    pad_references,
    search,
    unpad_references,
)

log = logging.getLogger("rnnkit")

WORD = re.compile(r"\w+(?:['’]\w+)*")


def tokenize(caption: str) -> list[str]:
    """Lowercased words; punctuation is dropped (``"A dog's toy."`` -> ``["a", "dog's", "toy"]``)."""
    return WORD.findall(caption.lower())


class StripCounts(StrictModel):
    train: int = Field(20000, ge=1)
    validation: int = Field(1000, ge=1)
    test: int = Field(2000, ge=1)


class CaptionDataConfig(StrictModel):
    dataset: Literal["mnist-5k-strips"] | None = Field(None, description="built-in data; ignored when --data is given")
    strips_per_split: StripCounts = Field(default_factory=StripCounts, description="mnist-5k-strips: strips made")
    min_digits: int = Field(1, ge=1, description="mnist-5k-strips: fewest digits in a strip")
    max_digits: int = Field(5, ge=1, description="mnist-5k-strips: most digits in a strip")
    strip_jitter: int = Field(0, ge=0, le=27, description="mnist-5k-strips: digits moved up to this many pixels")
    strip_seed: int = Field(0, description="mnist-5k-strips: the draw of digits, lengths and jitter")
    strip_resample: bool = Field(False, description="mnist-5k-strips: new train strips (same digits) every epoch")
    strip_rotate: float = Field(
        0.0, ge=0, le=45, description="mnist-5k-strips: train digits turned by up to this many degrees either way"
    )
    strip_scale: float = Field(
        0.0, ge=0, lt=0.5, description="mnist-5k-strips: train digits scaled by a factor in [1 - this, 1 + this]"
    )
    image_dir: str | None = Field(None, description="relative to the JSON's folder; null: its images/ or itself")
    channels: Literal[1, 3] = Field(1, description="1: grayscale, 3: RGB")
    image_size: tuple[int, int] = Field((64, 64), description="[H, W] every image is resized to")
    min_frequency: int = Field(1, ge=1, description="rarer train words become <unk>")
    max_length: int = Field(30, ge=1, description="words kept per caption (longer ones are cut)")

    @field_validator("image_size")
    @classmethod
    def _size(cls, v):
        if any(d <= 0 for d in v):
            raise ValueError(f"expected [H, W] with positive sizes, got {list(v)}")
        return v


class CaptionModelConfig(StrictModel):
    cell: Literal["lstm", "gru"] = "lstm"
    cnn_channels: list[int] = Field(default_factory=lambda: [16, 32], description="conv3x3+ReLU+maxpool2 blocks")
    cond_dim: int = Field(128, gt=0, description="image vector size")
    image_encoder: Literal["flat", "columns"] = Field(
        "flat", description="flat: one linear map of the CNN features; columns: a BiGRU reads their columns"
    )
    column_hidden: int | None = Field(None, gt=0, description="columns encoder: GRU size per direction (default 128)")
    attend_columns: bool = Field(False, description="columns encoder: the decoder attends over the columns each step")
    embed_dim: int = Field(64, gt=0)
    hidden_size: int = Field(128, gt=0)
    num_layers: int = Field(1, gt=0)
    # on by default: with the image only in the initial state, a small decoder at lr 1e-2 saturated tanh(init)
    # and learned only the captions' marginal (measured on the shapes fixture); fed at every step it did not
    feed_condition: bool = Field(True, description="also feed the image vector at every step")
    dropout: float = Field(0.1, ge=0, lt=1)


class DecodeConfig(StrictModel):
    beam_size: int = Field(3, ge=1, description="test, predictions and predict; validation is greedy")
    max_length: int = Field(32, ge=1, description="generated tokens at most, <eos> included")
    length_penalty: float = Field(0.0, description="GNMT alpha; 0 ranks beams by log-probability")


class CaptioningConfig(RecipeConfig):
    task: Literal["captioning"] = "captioning"
    data: CaptionDataConfig = Field(default_factory=CaptionDataConfig)
    model: CaptionModelConfig = Field(default_factory=CaptionModelConfig)
    decode: DecodeConfig = Field(default_factory=DecodeConfig)

    @model_validator(mode="after")
    def _fits(self):
        if self.data.min_digits > self.data.max_digits:
            raise ValueError(
                f"data.min_digits ({self.data.min_digits}) exceeds data.max_digits ({self.data.max_digits})"
            )
        for key in ("column_hidden", "attend_columns"):
            if getattr(self.model, key) not in (None, False) and self.model.image_encoder != "columns":
                raise ValueError(f"model.{key} needs model.image_encoder=columns, got {self.model.image_encoder!r}")
        blocks = len(self.model.cnn_channels)
        if min(self.data.image_size) < 2**blocks:
            raise ValueError(
                f"data.image_size {list(self.data.image_size)} is too small for {blocks} pooling blocks "
                f"(model.cnn_channels; need at least {2**blocks} x {2**blocks})"
            )
        return self


# -- reading --------------------------------------------------------------------------------------------
def read_caption_json(path: Path) -> tuple[list[dict[str, Any]], dict[Any, list[str]]]:
    """COCO-style JSON -> (images ``[{"id", "file_name"}]``, captions per image id). Errors name the entry."""
    if not path.is_file():  # checked with stat: a FIFO or a device is never opened
        raise RnnkitError("not a regular file" if path.exists() else "no such file", where=str(path))
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise RnnkitError(f"invalid JSON ({e.msg}, column {e.colno})", where=f"{path}:{e.lineno}") from None
    except RecursionError:
        raise RnnkitError("invalid JSON (nested too deeply)", where=str(path)) from None
    except UnicodeDecodeError as e:
        raise RnnkitError(f"not valid UTF-8 (byte {e.start})", where=str(path)) from None
    if (
        not isinstance(doc, dict)
        or not isinstance(doc.get("images"), list)
        or not isinstance(doc.get("annotations"), list)
    ):
        raise RnnkitError('expected an object with lists "images" and "annotations" (COCO captions)', where=str(path))
    images: list[dict[str, Any]] = []
    seen: dict[Any, int] = {}
    for i, im in enumerate(doc["images"]):
        if (
            not isinstance(im, dict)
            or "id" not in im
            or not isinstance(im.get("file_name"), str)
            or not im["file_name"]
        ):
            raise RnnkitError(
                f'images[{i}]: expected {{"id": ..., "file_name": "..."}}, got {im!r:.80}', where=str(path)
            )
        key = im["id"]
        if not isinstance(key, (int, str)) or isinstance(key, bool):
            raise RnnkitError(f"images[{i}]: id must be a number or a string, got {key!r:.40}", where=str(path))
        if key in seen:
            raise RnnkitError(f"images[{i}]: id {key!r} repeats images[{seen[key]}]", where=str(path))
        seen[key] = i
        images.append({"id": key, "file_name": im["file_name"], "index": i})
    captions: dict[Any, list[str]] = {}
    for j, ann in enumerate(doc["annotations"]):
        if not isinstance(ann, dict) or "image_id" not in ann or not isinstance(ann.get("caption"), str):
            raise RnnkitError(
                f'annotations[{j}]: expected {{"image_id": ..., "caption": "..."}}, got {ann!r:.80}', where=str(path)
            )
        key = ann["image_id"]
        if isinstance(key, bool) or not isinstance(key, (int, str)) or key not in seen:
            raise RnnkitError(f'annotations[{j}]: image_id {key!r:.40} is not an id in "images"', where=str(path))
        if not tokenize(ann["caption"]):
            raise RnnkitError(f"annotations[{j}]: caption {ann['caption']!r:.60} has no words", where=str(path))
        captions.setdefault(key, []).append(ann["caption"])
    if not captions:
        raise RnnkitError("no captions found", where=str(path))
    return images, captions


def image_folder(json_path: Path, image_dir: str | None) -> Path:
    base = json_path.parent
    if image_dir is not None:
        return base / image_dir  # an absolute image_dir replaces base
    return base / "images" if (base / "images").is_dir() else base


# -- the task -------------------------------------------------------------------------------------------
class Captioning(TaskKind):
    name = "captioning"
    config_class = CaptioningConfig
    input_help = "image files to caption"
    inputs = "binary"
    accept = IMAGE_SUFFIXES
    view = "caption"
    state_files = VOCAB_STATE

    def _load_splits(self) -> tuple[dict[str, list[dict[str, Any]]], dict[str, Any]]:
        if self.data_path is None and self.config.data.dataset == "mnist-5k-strips":
            return self._strip_splits()
        if self.data_path is None:
            raise RnnkitError(
                "no data: give --data captions.json (COCO style, next to its image folder) "
                "or set data.dataset=mnist-5k-strips"
            )
        if self.data_path.is_dir():
            raise RnnkitError("expected a COCO-style caption JSON file, got a folder", where=str(self.data_path))
        d = self.config.data
        images, captions = read_caption_json(self.data_path)
        folder = image_folder(self.data_path, d.image_dir)
        splits: dict[str, list[dict[str, Any]]] = {s: [] for s in SPLITS}
        skipped = 0
        for im in images:
            if im["id"] not in captions:
                skipped += 1
                continue
            path = folder / im["file_name"]
            if not path.is_file():
                raise RnnkitError(
                    f"no such image file (images[{im['index']}], id {im['id']!r}, in {self.data_path})", where=str(path)
                )
            bucket = text_hash(im["file_name"]) % 10
            split = "test" if bucket == 0 else "validation" if bucket == 1 else "train"
            splits[split].append({"file_name": im["file_name"], "path": path, "captions": captions[im["id"]]})
        if skipped:
            log.warning("%s: %d images have no caption and are skipped", self.data_path, skipped)
        for s in SPLITS:
            if not splits[s]:
                raise RnnkitError(
                    f"the {s} split has no images (need more captioned images)", where=str(self.data_path)
                )
        info = {
            "source": str(self.data_path),
            "image_dir": str(folder),
            "sizes": {s: len(v) for s, v in splits.items()},
            "captions": {s: sum(len(r["captions"]) for r in v) for s, v in splits.items()},
        }
        return splits, info

    def _strip_splits(self) -> tuple[dict[str, list[dict[str, Any]]], dict[str, Any]]:
        """``mnist-5k-strips`` (module docstring): rows with the strip itself under ``"image"``."""
        from ..data.strips import mnist_digits

        d = self.config.data
        digits = mnist_digits()
        self._train_digits = digits["train"]  # for strip_resample
        strips = {s: self._compose(digits[s], getattr(d.strips_per_split, s), [d.strip_seed, k], train=s == "train")
                  for k, s in enumerate(SPLITS)}  # fmt: skip
        splits = {
            s: [
                {"file_name": f"{s}-{i:05d}", "image": image, "captions": [caption]}
                for i, (image, caption) in enumerate(zip(strips[s][0], strips[s][1], strict=True))
            ]
            for s in SPLITS
        }
        info = {
            "name": "mnist-5k-strips",
            "source": "mnist-5k digits composed into strips",
            "split": "strips of a split hold only that split's mnist-5k digits (row i % 10 == 0 test, == 1 validation)",
            "digits": [d.min_digits, d.max_digits],
            "jitter": d.strip_jitter,
            "train_rotate": d.strip_rotate,
            "train_scale": d.strip_scale,
            "seed": d.strip_seed,
            "sizes": {s: len(v) for s, v in splits.items()},
            "captions": {s: len(v) for s, v in splits.items()},
        }
        return splits, info

    def _compose(self, digits, count: int, seed: list[int], *, train: bool):
        """Strips of one split; ``train``: with the train-only distortion (``strip_rotate``, ``strip_scale``)."""
        from ..data.strips import compose_strips

        d = self.config.data
        return compose_strips(
            *digits, count, min_digits=d.min_digits, max_digits=d.max_digits, jitter=d.strip_jitter,
            rotate=d.strip_rotate if train else 0.0, scale=d.strip_scale if train else 0.0,
            rng=np.random.default_rng(seed),
        )  # fmt: skip

    def _resampled_train(self, epoch: int) -> dict[str, Any]:
        """``strip_resample``: epoch ``epoch``'s train strips and their (image, caption ids) pairs."""
        d = self.config.data
        images, captions, _ = self._compose(
            self._train_digits, d.strips_per_split.train, [d.strip_seed, 0, epoch], train=True
        )
        return {
            "images": torch.from_numpy(np.ascontiguousarray(self._split_images([{"image": im} for im in images]))),
            "pairs": [(i, self.vocab.encode(tokenize(c))[: d.max_length]) for i, c in enumerate(captions)],
        }

    def _split_images(self, rows: list[dict[str, Any]]) -> np.ndarray:
        """uint8 (N, C, H, W) of a split: made strips (resized to ``data.image_size`` if needed) or read files."""
        if not rows or "image" not in rows[0]:
            return self._read_images([r["path"] for r in rows])
        images = np.stack([r["image"] for r in rows])
        size = tuple(self.config.data.image_size)
        if images.shape[2:] != size or images.shape[1] != self.config.data.channels:
            t = torch.nn.functional.interpolate(torch.from_numpy(images).float(), size=size, mode="bilinear")
            t = t.expand(-1, self.config.data.channels, -1, -1)
            images = t.round().clamp(0, 255).to(torch.uint8).numpy()
        return images

    def prepare(self, run_dir: Path, reuse: bool = False) -> dict[str, Any]:
        d = self.config.data
        splits, info = self._load_splits()
        if not reuse:
            words = (tokenize(c) for r in splits["train"] for c in r["captions"])
            self.vocab = Vocabulary.build(words, specials=SPECIALS, min_frequency=d.min_frequency)
            self.vocab.save(run_dir / "vocab.json")
        self.splits = {}
        for s, rows in splits.items():
            refs = [[self.vocab.encode(tokenize(c))[: d.max_length] for c in r["captions"]] for r in rows]
            self.splits[s] = {
                "names": [r["file_name"] for r in rows],
                "images": torch.from_numpy(np.ascontiguousarray(self._split_images(rows))),  # uint8, 4x smaller
                "refs": refs,
                "texts": [[" ".join(tokenize(c)[: d.max_length]) for c in r["captions"]] for r in rows],
                # one training example per (image, caption) pair
                "pairs": [(i, ids) for i, rs in enumerate(refs) for ids in rs],
            }
        log.info("data %s: images %s, captions %s, vocabulary %d", info["source"], info["sizes"], info["captions"],
                 len(self.vocab))  # fmt: skip
        return info

    def _read_images(self, paths: list[Path]) -> np.ndarray:
        d = self.config.data
        out = np.empty((len(paths), d.channels, *d.image_size), dtype=np.uint8)
        for i, p in enumerate(paths):
            out[i] = read_image(p, tuple(d.image_size), d.channels)
        return out

    # -- model and training ---------------------------------------------------------------------------
    def build_model(self) -> ConditionalGenerator:
        m, d = self.config.model, self.config.data
        return ConditionalGenerator(
            vocab_size=len(self.vocab), image_channels=d.channels, image_size=tuple(d.image_size),
            cnn_channels=m.cnn_channels, image_encoder=m.image_encoder, column_hidden=m.column_hidden,
            attend_columns=m.attend_columns, cond_dim=m.cond_dim, embed_dim=m.embed_dim, padding_idx=PAD_ID,
            cell=m.cell, hidden_size=m.hidden_size, num_layers=m.num_layers, feed_condition=m.feed_condition,
            dropout=m.dropout,
        )  # fmt: skip

    def _batches(self, split: str, epoch: int):
        data = self.splits[split]
        bs = self.config.train.batch_size
        d = self.config.data
        if split == "train" and d.strip_resample and epoch > 0 and getattr(self, "_train_digits", None) is not None:
            data = self._resampled_train(epoch)
        if split == "train":
            pairs = data["pairs"]
            order = epoch_order(len(pairs), self.config.train.seed, epoch, shuffle=True).tolist()
            for k in range(0, len(order), bs):
                chosen = [pairs[i] for i in order[k : k + bs]]
                tgt_out, lengths = _targets([ids for _, ids in chosen])
                yield {
                    "images": _floats(data["images"][torch.tensor([i for i, _ in chosen])]),
                    "tgt_in": _shift(tgt_out),
                    "tgt_out": tgt_out,
                    "lengths": lengths,
                }
            return
        # evaluation: one row per image with all of its references; the batch says how to decode it
        beam = 1 if split == "validation" else self.config.decode.beam_size
        for k in range(0, len(data["refs"]), bs):
            out, ref_lengths = pad_references([[[*ids, EOS_ID] for ids in rs] for rs in data["refs"][k : k + bs]])
            yield {"images": _floats(data["images"][k : k + bs]), "refs": out, "ref_lengths": ref_lengths, "beam": beam}

    def trainer_task(self) -> Task:
        def train_step(model, b, carry):
            return model.loss(b["images"], b["tgt_in"], b["tgt_out"], b["lengths"]), None, int(b["lengths"].sum())

        def eval_step(model, b):
            images, refs, ref_lengths = b["images"], b["refs"], b["ref_lengths"]
            has = ref_lengths > 0  # (B, R)
            owner = torch.arange(len(images), device=images.device)[:, None].expand_as(has)[has]  # (M,)
            tgt_out, lengths = refs[has], ref_lengths[has]  # (M, T), (M,)
            loss_sum, tokens = masked_cross_entropy(model(images[owner], _shift(tgt_out)), tgt_out, lengths, "sum")
            stats = {"loss_sum": float(loss_sum), "tokens": float(tokens)}
            generated = self._decode(model, images, b["beam"])
            stats.update(match_stats(generated, unpad_references(refs, ref_lengths, drop_last=1)))  # without <eos>
            return stats

        def finalize(s):
            return {
                "loss": s["loss_sum"] / max(s["tokens"], 1.0),
                "exact_match": s["exact"] / max(s["images"], 1.0),
                "token_accuracy": s["tok_correct"] / max(s["tok_total"], 1.0),
            }

        bs = self.config.train.batch_size
        return Task(
            batches=self._batches,
            train_step=train_step,
            eval_step=eval_step,
            finalize=finalize,
            num_batches=lambda split: -(-len(self.splits[split]["pairs" if split == "train" else "refs"]) // bs),
        )

    # -- generating -----------------------------------------------------------------------------------
    @torch.no_grad()
    def _decode(self, model: ConditionalGenerator, images: torch.Tensor, beam: int) -> list[list[int]]:
        """Images (B, C, H, W) -> generated token ids per image (no <bos>/<eos>)."""
        c = self.config.decode
        return search(model.step, model.encode(images), beam, c.max_length, c.length_penalty).sequences

    def _captions(self, model: ConditionalGenerator, images: torch.Tensor) -> list[str]:
        """uint8 images (N, C, H, W) -> beam-search captions, in batches, on the model's device."""
        p = next(model.parameters())
        out: list[str] = []
        beam = self.config.decode.beam_size
        with eval_mode(model):
            for k in range(0, len(images), 64):
                ids = self._decode(model, _floats(images[k : k + 64]).to(p.device, p.dtype), beam)
                out += [" ".join(self.vocab.decode(seq)) for seq in ids]
        return out

    # -- outputs ------------------------------------------------------------------------------------
    def _test_captions(self, model) -> list[str]:
        if getattr(self, "_cached", None) is None or self._cached[0] is not model:
            self._cached = (model, self._captions(model, self.splits["test"]["images"]))
        return self._cached[1]

    def write_predictions(self, model, run_dir) -> None:
        data = self.splits["test"]
        rows = [
            {"image": name, "caption": cap, "references": refs, "correct": cap in refs}
            for name, cap, refs in zip(data["names"], self._test_captions(model), data["texts"], strict=True)
        ]
        atomic_write_jsonl(run_dir / "predictions.jsonl", rows)

    def plots(self, model, run_dir, metrics) -> list[Path]:
        from ..plots import image_grid

        data = self.splits["test"]
        n = min(16, len(data["names"]))
        captions = self._test_captions(model)[:n]
        colors = ["tab:green" if c in refs else "tab:red" for c, refs in zip(captions, data["texts"][:n], strict=True)]
        title = "generated captions (test; green = equals a reference)"
        if metrics.get("test_exact_match") is not None:
            title += f", exact match {metrics['test_exact_match']:.1%}"
        path = run_dir / "plots" / "captions.png"
        return [image_grid(_floats(data["images"][:n]).numpy(), captions, path, colors=colors, title=title)]

    def predict(self, model, inputs: list[str]) -> list[dict[str, Any]]:
        images = torch.from_numpy(self._read_images([Path(p) for p in inputs]))
        return [{"image": p, "caption": c} for p, c in zip(inputs, self._captions(model, images), strict=True)]

    can_generate = True

    def generate_outputs(
        self, model, prompts: list[str], options: GenerateOptions, out_dir: Path | None = None
    ) -> list[dict[str, Any]]:
        """``options.num_samples`` captions per image file (the prompts): the best of a beam search (width
        ``beam_size``, default the run's ``decode.beam_size``, widened to ``num_samples``), or sampled when
        ``temperature``, ``top_k`` or ``top_p`` is set and ``beam_size`` is not (seeded by ``seed``, default 0)."""
        if not prompts or any(not p for p in prompts):
            raise RnnkitError("captioning generates from images: give image files as prompts")
        c, n = self.config.decode, options.num_samples
        max_len = options.max_tokens or c.max_length
        sampling = options.beam_size is None and any(
            v is not None for v in (options.temperature, options.top_k, options.top_p)
        )
        beam = options.beam_size or max(c.beam_size, n)
        if not sampling and n > beam:
            raise RnnkitError(f"num_samples ({n}) cannot exceed the beam size ({beam}): beam search keeps {beam}")
        images = torch.from_numpy(self._read_images([Path(p) for p in prompts]))
        p = next(model.parameters())
        never = torch.tensor([PAD_ID, BOS_ID], device=p.device)

        def step(tokens, state):  # sampling must not draw padding or a second <bos>
            logits, state = model.step(tokens, state)
            return logits.index_fill(1, never, float("-inf")), state

        rows: list[dict[str, Any]] = []
        with eval_mode(model), torch.no_grad():
            for k in range(0, len(images), 64):
                state = model.encode(_floats(images[k : k + 64]).to(p.device, p.dtype))
                if sampling:
                    generator = torch.Generator(device=p.device).manual_seed(
                        options.seed if options.seed is not None else 0
                    )
                    result = sample(
                        step, expand_state(state, n), BOS_ID, EOS_ID, max_len, temperature=options.temperature or 1.0,
                        top_k=options.top_k or None, top_p=options.top_p, generator=generator,
                    )  # fmt: skip
                    per_image = [
                        [h[0] for h in result.hypotheses[i * n : (i + 1) * n]] for i in range(len(state["hidden"][0]))
                    ]
                else:
                    result = beam_search(
                        model.step, state, BOS_ID, EOS_ID, beam, max_len, length_penalty=c.length_penalty, n_best=n
                    )
                    per_image = result.hypotheses
                for path, hyps in zip(prompts[k : k + 64], per_image, strict=True):
                    rows += [
                        {
                            "image": path,
                            "caption": " ".join(self.vocab.decode(h.tokens)),
                            "sample": i,
                            "log_prob": round(h.log_prob, 4),
                            "finished": h.finished,
                        }
                        for i, h in enumerate(hyps)
                    ]
        return rows


def _floats(images: torch.Tensor) -> torch.Tensor:
    """uint8 images -> float32 in [0, 1] (what the encoder sees)."""
    return images.float() / 255.0


def _targets(seqs: list[list[int]]) -> tuple[torch.Tensor, torch.Tensor]:
    """Token ids per caption -> ``tgt_out`` (B, T) = ids + <eos>, padded; lengths (B,) with <eos>."""
    return pad_ids([[*s, EOS_ID] for s in seqs]), torch.tensor([len(s) + 1 for s in seqs])


def _shift(tgt_out: torch.Tensor) -> torch.Tensor:
    """``tgt_in`` = <bos> + ``tgt_out`` without its last column (past each length it is masked anyway)."""
    bos = torch.full_like(tgt_out[:, :1], BOS_ID)
    return torch.cat([bos, tgt_out[:, :-1]], 1)


def match_stats(generated: list[list[int]], references: list[list[list[int]]]) -> dict[str, float]:
    """Additive counts: ``exact`` (equals a reference), ``tok_correct`` / ``tok_total`` against the closest
    reference (<eos> included, over the longer of the two), ``images``. ``<unk>`` in a reference never matches."""
    exact = correct = total = 0
    for gen, refs in zip(generated, references, strict=True):
        g = [*gen, EOS_ID]
        exact += any(gen == r and UNK_ID not in r for r in refs)
        best = (-1.0, 0, 1)
        for r in refs:
            r = [*r, EOS_ID]
            hits = sum(a == b and b != UNK_ID for a, b in zip(g, r, strict=False))
            longer = max(len(g), len(r))
            if hits / longer > best[0]:
                best = (hits / longer, hits, longer)
        correct += best[1]
        total += best[2]
    return {
        "exact": float(exact),
        "tok_correct": float(correct),
        "tok_total": float(total),
        "images": float(len(generated)),
    }
