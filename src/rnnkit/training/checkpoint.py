"""Checkpoints that resume exactly and load without pickle.

A checkpoint is a folder ``checkpoints/step-<N>/`` holding

* ``model.safetensors`` — the weights (tied tensors stored once);
* ``optimizer.safetensors`` + the JSON part of the optimizer's state (hyper-parameters, steps);
* ``rng.safetensors`` — torch's CPU (and CUDA) generator states;
* ``trainer.json`` — step, epoch, position in the epoch, scheduler state, early-stopping state,
  Python's and NumPy's RNG states, and the SHA-256 of every ``.safetensors`` file.

It is written into a hidden temporary folder (every file fsynced), renamed into place (the parent folder
fsynced), and then ``checkpoints/latest`` (a one-line text file) is replaced atomically. A process killed
at any moment leaves the previous checkpoint loadable (``tests/reliability`` kills a training process 20+
times to check it). A second checkpoint at the same step (the last mid-epoch one and the epoch's end) is
written beside the first as ``step-<N>.01``, never over it. ``trainer.json`` carries a SHA-256 of its own
content (``digest``), so an altered checkpoint is an error on load, not a silently different run.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import safetensors.torch
import torch

from ..errors import RnnkitError
from ..fileio import atomic_write_text, fsync_dir, fsync_file, sha256_file

FORMAT_VERSION = 1


def _split_tensors(obj: Any, prefix: str, tensors: dict[str, torch.Tensor]) -> Any:
    """Replace every tensor in a nest by a ``{"__tensor__": key}`` marker, collecting it in ``tensors``."""
    if isinstance(obj, torch.Tensor):
        key = prefix or "t"
        tensors[key] = obj.detach().cpu().contiguous()
        return {"__tensor__": key}
    if isinstance(obj, dict):
        return {
            "__dict__": [
                [_split_tensors(k, "", {}), _split_tensors(v, f"{prefix}.{k}", tensors)] for k, v in obj.items()
            ]
        }
    if isinstance(obj, (list, tuple)):
        return {
            "__list__" if isinstance(obj, list) else "__tuple__": [
                _split_tensors(v, f"{prefix}.{i}", tensors) for i, v in enumerate(obj)
            ]
        }
    if isinstance(obj, float) and (obj != obj or obj in (float("inf"), float("-inf"))):
        return {"__float__": repr(obj)}
    return obj


def _join_tensors(obj: Any, tensors: dict[str, torch.Tensor]) -> Any:
    if isinstance(obj, dict):
        if "__tensor__" in obj:
            return tensors[obj["__tensor__"]]
        if "__dict__" in obj:
            return {_join_tensors(k, tensors): _join_tensors(v, tensors) for k, v in obj["__dict__"]}
        if "__list__" in obj:
            return [_join_tensors(v, tensors) for v in obj["__list__"]]
        if "__tuple__" in obj:
            return tuple(_join_tensors(v, tensors) for v in obj["__tuple__"])
        if "__float__" in obj:
            return float(obj["__float__"])
    return obj


def _save_tensors(tensors: dict[str, torch.Tensor], path: Path) -> None:
    safetensors.torch.save_file(tensors, str(path))
    fsync_file(path)


def _digest(meta: dict[str, Any]) -> str:
    """SHA-256 of ``trainer.json``'s content without its ``digest`` field (key order does not matter)."""
    body = {k: v for k, v in meta.items() if k != "digest"}
    return hashlib.sha256(json.dumps(body, sort_keys=True).encode("utf-8")).hexdigest()


def _one_line(e: BaseException, limit: int = 300) -> str:
    text = "; ".join(line.strip() for line in str(e).splitlines() if line.strip()) or type(e).__name__
    return text if len(text) <= limit else text[: limit - 3] + "..."


def rng_state() -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    tensors = {"torch_cpu": torch.get_rng_state()}
    if torch.cuda.is_available():
        for i, s in enumerate(torch.cuda.get_rng_state_all()):
            tensors[f"torch_cuda_{i}"] = s
    py = random.getstate()
    np_state = np.random.get_state()
    info = {
        "python": [py[0], list(py[1]), py[2]],
        "numpy": [np_state[0], np_state[1].tolist(), int(np_state[2]), int(np_state[3]), float(np_state[4])],
    }
    return tensors, info


def set_rng_state(tensors: dict[str, torch.Tensor], info: dict[str, Any]) -> None:
    torch.set_rng_state(tensors["torch_cpu"])
    if torch.cuda.is_available():
        states = [tensors[k] for k in sorted(tensors) if k.startswith("torch_cuda_")]
        if states:
            torch.cuda.set_rng_state_all(states)
    v, st, g = info["python"]
    random.setstate((v, tuple(st), g))
    n = info["numpy"]
    np.random.set_state((n[0], np.array(n[1], dtype=np.uint32), n[2], n[3], n[4]))


def save_checkpoint(
    folder: Path,
    *,
    step: int,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: Any,
    trainer_state: dict[str, Any],
    keep: int = 2,
    carry: Any = None,
) -> Path:
    """Write ``folder/step-<step>`` atomically and point ``folder/latest`` at it; keep the newest ``keep``.

    ``carry`` is the recurrent state carried between batches (truncated BPTT), saved so that a run
    resumed mid-epoch continues with the same state.
    """
    folder.mkdir(parents=True, exist_ok=True)
    final = folder / f"step-{step:08d}"
    k = 0
    while final.exists():  # never replace a checkpoint in place: `latest` may point at it
        k += 1
        final = folder / f"step-{step:08d}.{k:02d}"
    tmp = folder / f".{final.name}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    safetensors.torch.save_model(model, str(tmp / "model.safetensors"))
    fsync_file(tmp / "model.safetensors")
    opt_tensors: dict[str, torch.Tensor] = {}
    opt_json = _split_tensors(optimizer.state_dict(), "opt", opt_tensors)
    _save_tensors(opt_tensors, tmp / "optimizer.safetensors")
    rng_tensors, rng_info = rng_state()
    _save_tensors(rng_tensors, tmp / "rng.safetensors")
    carry_tensors: dict[str, torch.Tensor] = {}
    carry_json = _split_tensors(carry, "carry", carry_tensors)
    if carry_tensors:
        _save_tensors(carry_tensors, tmp / "carry.safetensors")
    sched_tensors: dict[str, torch.Tensor] = {}
    sched_json = _split_tensors(scheduler.state_dict() if scheduler is not None else None, "sched", sched_tensors)
    if sched_tensors:
        raise RuntimeError("scheduler state holds tensors; not supported by the checkpoint format")
    meta = {
        "format_version": FORMAT_VERSION,
        "step": step,
        "trainer": trainer_state,
        "optimizer": opt_json,
        "scheduler": sched_json,
        "rng": rng_info,
        "carry": carry_json,
        "sha256": {p.name: sha256_file(p) for p in sorted(tmp.glob("*.safetensors"))},
    }
    meta["digest"] = _digest(json.loads(json.dumps(meta)))  # of the content as it will read back
    atomic_write_text(tmp / "trainer.json", json.dumps(meta))
    fsync_dir(tmp)
    os.rename(tmp, final)
    fsync_dir(folder)
    atomic_write_text(folder / "latest", final.name + "\n")
    olds = sorted(p for p in folder.glob("step-*") if p.is_dir() and p != final)
    for old in olds[: max(0, len(olds) - (keep - 1))]:
        # rename first (atomic), then delete: a kill during the delete leaves a hidden temporary (removed on
        # resume), never a half-deleted step-* folder
        trash = folder / f".{old.name}.tmp-{os.getpid()}-old"
        os.rename(old, trash)
        shutil.rmtree(trash, ignore_errors=True)
    return final


def latest_checkpoint(folder: Path) -> Path | None:
    """The checkpoint named by ``folder/latest`` (or the newest complete one), or None."""
    pointer = folder / "latest"
    if pointer.exists():
        try:
            name = pointer.read_text(encoding="utf-8").strip()
        except (OSError, UnicodeDecodeError):
            name = ""
        path = folder / name
        if name.startswith("step-") and "/" not in name and (path / "trainer.json").exists():
            return path
    done = sorted(p for p in folder.glob("step-*") if (p / "trainer.json").exists())
    return done[-1] if done else None


def load_checkpoint(
    path: Path, *, model: torch.nn.Module, optimizer: torch.optim.Optimizer | None, scheduler: Any
) -> dict[str, Any]:
    """Restore everything saved by :func:`save_checkpoint`; returns the trainer state.

    Checks ``trainer.json``'s digest and every ``.safetensors`` file's SHA-256 before anything is loaded;
    a damaged, altered or mismatched checkpoint is a one-line :class:`RnnkitError`. Reads JSON and
    safetensors only (no pickle).
    """
    from safetensors import SafetensorError

    try:
        meta = json.loads((path / "trainer.json").read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        raise RnnkitError(f"checkpoint {path}: trainer.json is missing or unreadable ({_one_line(e)})") from None
    if not isinstance(meta, dict):
        raise RnnkitError(f"checkpoint {path}: trainer.json is not a JSON object (damaged file)")
    if meta.get("format_version") != FORMAT_VERSION:
        raise RnnkitError(f"checkpoint {path}: format_version {meta.get('format_version')} is not {FORMAT_VERSION}")
    if "digest" in meta and meta["digest"] != _digest(meta):  # checkpoints written before the digest have none
        raise RnnkitError(f"checkpoint {path}: trainer.json does not match its digest (damaged or altered)")
    hashes = meta.get("sha256")
    if not isinstance(hashes, dict) or "model.safetensors" not in hashes:
        raise RnnkitError(f"checkpoint {path}: trainer.json lists no SHA-256 for model.safetensors (damaged file)")
    for name, digest in hashes.items():
        if "/" in name or name.startswith(".") or not (path / name).is_file() or sha256_file(path / name) != digest:
            raise RnnkitError(f"checkpoint {path}: {name} is missing or does not match its SHA-256 (damaged file)")
    try:
        device = next(model.parameters()).device
        safetensors.torch.load_model(model, str(path / "model.safetensors"), device=str(device))
        if optimizer is not None:
            tensors = safetensors.torch.load_file(str(path / "optimizer.safetensors"))
            optimizer.load_state_dict(_join_tensors(meta["optimizer"], tensors))
        if scheduler is not None and meta["scheduler"] is not None:
            scheduler.load_state_dict(_join_tensors(meta["scheduler"], {}))
        set_rng_state(safetensors.torch.load_file(str(path / "rng.safetensors")), meta["rng"])
        carry_tensors = (
            safetensors.torch.load_file(str(path / "carry.safetensors"), device=str(device))
            if (path / "carry.safetensors").exists()
            else {}
        )
        trainer = meta["trainer"]
        if not isinstance(trainer, dict):
            raise TypeError("the 'trainer' entry is not an object")
        return {**trainer, "carry": _join_tensors(meta.get("carry"), carry_tensors)}
    except (KeyError, TypeError, ValueError, IndexError, RuntimeError, SafetensorError) as e:
        raise RnnkitError(
            f"checkpoint {path} does not fit this model and optimizer (did the config or the data change since the "
            f"run started?): {_one_line(e)}"
        ) from None
