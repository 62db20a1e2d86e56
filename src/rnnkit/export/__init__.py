"""Run folders out of Python: ONNX (float32 or int8) and the int8 model ``rnnkit predict --quantize int8`` uses.

* :func:`export_run` — ``rnnkit export RUN --format onnx [--quantize int8]`` on a loaded run (this package
  reads what :mod:`rnnkit.runfolder` and the task declare; it never imports the tasks): the model as an ONNX graph
  (:mod:`.graph` / :mod:`.onnx`: dynamic batch and length, the recurrent state as explicit inputs and outputs
  for language models) plus a JSON file beside it naming the inputs, the outputs and the preprocessing files
  (vocabulary / tokenizer, copied next to it), so ONNX Runtime can run it without rnnkit.
* int8 is ONNX Runtime's dynamic quantization of that graph: the LSTM nodes become ``DynamicQuantizeLSTM``,
  every MatMul/Gemm (the recurrent ones inside ``Scan`` loops included) gets int8 weights, and activations
  are quantized on the fly. On the quickstart run it is ~2x faster than the float model in PyTorch for 0.15
  points of accuracy; ``torch.ao.quantization.quantize_dynamic`` reached 1.6x (docs/results.md).
* :func:`quantized_model` — a stand-in for a run's model whose forward runs the int8 graph, so the task's
  own ``predict`` (tokenization, batching, labels) works unchanged.
* ``--format torchscript`` (:mod:`.torchscript`): the same wrappers traced around a ``torch.jit.script``-ed
  time loop, for classic LSTM/GRU/RNN layers (torch 2.13 deprecates TorchScript: ONNX is the main format).
* A classifier ensemble (``model.ensemble`` of the text and series tasks) exports as one graph: every member on
  the same inputs, ``logits`` the log of their mean probabilities, a shared embedding table stored once.
* A many-series forecaster (``panel-forecaster``, ``panel-forecaster-ensemble``) exports to ONNX (float or int8)
  with the inputs the forecasting task feeds it (``window``, ``mask``, ``season``, ``level`` when the run's
  ``data.seasonality`` is ``holt-winters``, ``known`` / ``static`` when it has them) and its outputs
  ``quantiles`` and ``median`` in the series' units. A run with ``model.combine: theta`` (or ``ets``) mixes that
  with a per-series statsmodels fit no graph can hold: the description's ``combine`` (the task's
  ``export_declaration``) states the method, the weight ``w``, the period and the formula, so a consumer
  reproduces rnnkit's forecast (``w = 1``: the graph alone is it).

Needs the ``export`` extra: ``pip install "rnnkit[export]"`` (onnx, onnxscript, onnxruntime).
"""

from __future__ import annotations

import contextlib
import hashlib
import inspect
import json
import os
import shutil
import tempfile
import uuid
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..errors import RnnkitError
from ..fileio import TMP_MARK, fsync_dir
from ..formats import EXPORT_FORMATS, QUANTIZE
from ..paths import rnnkit_home
from ..runfolder import LoadedRun, open_regular
from .graph import EXPORTABLE, TORCHSCRIPT_KINDS, first_member, panel_members

FORMATS = EXPORT_FORMATS
#: part of the int8 cache's folder names: bump it when the exported graph changes
CACHE_VERSION = 1


def require_onnx() -> None:
    """A one-line error naming the extra when the ONNX packages are missing."""
    import importlib.util

    missing = [m for m in ("onnx", "onnxscript", "onnxruntime") if importlib.util.find_spec(m) is None]
    if missing:
        raise RnnkitError(f"exporting needs {', '.join(missing)}: pip install 'rnnkit[export]'")


def check_exportable(kind: str) -> None:
    if kind not in EXPORTABLE:
        raise RnnkitError(f"model kind {kind!r} does not export yet; the kinds that do: {', '.join(EXPORTABLE)}")


def quantize_onnx(src: str | Path, dst: str | Path) -> None:
    """ONNX Runtime dynamic int8 quantization of ``src`` into ``dst`` (written atomically), subgraphs included."""
    import logging

    from onnxruntime.quantization import QuantType, quantize_dynamic

    dst = Path(dst)
    tmp = dst.with_name(f".{dst.name}.tmp-{os.getpid()}")
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)  # the quantizer's advice about pre-processing goes to the root logger
    try:
        quantize_dynamic(
            str(src),
            str(tmp),
            weight_type=QuantType.QInt8,
            op_types_to_quantize=["MatMul", "Gemm", "LSTM"],  # LSTM -> DynamicQuantizeLSTM
            extra_options={"EnableSubgraph": True},  # the recurrent products live in the Scan bodies
        )
        os.replace(tmp, dst)
    finally:
        root.setLevel(level)
        tmp.unlink(missing_ok=True)


def _onnx_file(model: nn.Module, path: Path, quantize: str | None, with_level: bool = False) -> tuple[list, list]:
    from .onnx import export_onnx

    if quantize is None:
        return export_onnx(model, path, with_level)
    with tempfile.TemporaryDirectory() as tmp:
        signature = export_onnx(model, Path(tmp) / "float.onnx", with_level)
        quantize_onnx(Path(tmp) / "float.onnx", path)
    return signature


def check_options(format: str, quantize: str | None) -> None:
    """One-line errors for a format and quantization that do not go together (before any run is loaded)."""
    if format not in FORMATS:
        raise RnnkitError(f"unknown export format {format!r}; formats: {', '.join(FORMATS)}")
    if quantize is not None and quantize not in QUANTIZE:
        raise RnnkitError(f"unknown quantization {quantize!r}; known: {', '.join(QUANTIZE)}")
    if format == "torchscript" and quantize is not None:
        raise RnnkitError("--quantize int8 is offered with --format onnx (ONNX Runtime's int8 kernels)")


def feeds_level(run: LoadedRun) -> bool:
    """Whether the run's task feeds its many-series forecaster a ``level`` (the exponential-smoothing level, as
    the task declares in ``export_declaration``; otherwise the model computes it)."""
    return bool(panel_members(run.model)) and bool(run.task.export_declaration().get("with_level", False))


def panel_description(run: LoadedRun, inputs: list[dict[str, Any]]) -> dict[str, Any]:
    """What a many-series forecaster's description adds: the run's window and horizon, how to feed the graph
    and, when the task declares one, the combination that makes rnnkit's forecast from the graph's."""
    state = run.meta["task_state"]
    names = ", ".join(i["name"] for i in inputs)
    out: dict[str, Any] = {
        "window": state.get("window"),
        "horizon": state.get("horizon"),
        "usage": (
            f"onnxruntime.InferenceSession(file).run(None, {{{names}}}) -> quantiles, median; one row per series "
            f"and origin: window = the last {state.get('window')} values (left-padded with the first value, mask 0 "
            "there), season = the seasonal factors of those steps and the horizon's (1 without seasonality)"
        ),
    }
    combine = run.task.export_declaration().get("combine")
    if combine:
        out["combine"] = combine
        out["usage"] += "; then combine as 'combine' says"
    return out


def default_out(run: LoadedRun) -> Path:
    """Where ``rnnkit export RUN`` writes without ``--out``: ``./<run name>-export/`` in the current folder
    (never inside the run folder, which may be someone else's)."""
    return Path.cwd() / f"{Path(run.path).resolve().name}-export"


def export_run(
    run: LoadedRun,
    format: str = "onnx",
    quantize: str | None = None,
    out: str | Path | None = None,
    force: bool = False,
) -> Path:
    """Export a finished run's model (``run``: :func:`rnnkit.tasks.runner.load_run`); returns the model file's
    path (a ``.json`` description lies beside it).

    ``out``: the file to write (``.onnx`` / ``.pt``), or a folder for ``model.onnx`` / ``model.int8.onnx`` /
    ``model.pt``; default :func:`default_out`. The preprocessing files named in the run's ``task_state`` and
    listed with a SHA-256 in its meta.json (``vocab.json``, ``tokenizer.json``) are copied beside it. Only new
    regular files are written, directly inside that folder: an existing file is refused unless ``force``
    (then replaced, never written through), a symbolic link always.
    """
    from .. import __version__

    check_options(format, quantize)
    kind = run.meta["model"]["kind"]
    check_exportable(kind)
    suffix = ".onnx" if format == "onnx" else ".pt"
    name = ("model.int8" if quantize else "model") + suffix
    path = Path(out) if out is not None else default_out(run)
    if path.suffix != suffix:
        if path.suffix in (".onnx", ".pt"):
            raise RnnkitError(f"--format {format} writes a {suffix} file", where=str(path))
        path = path / name
    files = list(run.state_files)
    targets = [path, path.with_suffix(".json"), *(path.parent / f for f in files)]
    if len(set(targets)) != len(targets):
        raise RnnkitError(
            f"the model file would overwrite one of the run's files ({', '.join(files)})", where=str(path)
        )
    if format == "onnx":
        require_onnx()
    elif kind not in TORCHSCRIPT_KINDS:
        raise RnnkitError(
            f"--format torchscript covers {', '.join(TORCHSCRIPT_KINDS)}; a {kind} exports with --format onnx"
        )
    else:
        try:
            from .graph import graph_for

            graph_for(run.model, backend="torchscript")  # refuses a model it does not cover, before writing
        except TypeError:
            cells = sorted({first_member(run.model).encoder.config.cell})
            raise RnnkitError(
                f"--format torchscript covers lstm/gru/rnn layers without zoneout or LSTM projection, not this "
                f"run's ({', '.join(cells)}); use --format onnx"
            ) from None
    _check_targets(path.parent, targets, force)  # before the (slow) export: nothing is written on refusal
    with tempfile.TemporaryDirectory() as scratch:
        built = Path(scratch) / name
        if format == "onnx":
            inputs, outputs = _onnx_file(run.model, built, quantize, feeds_level(run))
        else:
            from .torchscript import export_torchscript

            inputs, outputs = export_torchscript(run.model, built)
        if format == "onnx":
            usage = "onnxruntime.InferenceSession(file).run(None, {input name: array})"
        else:
            usage = "torch.jit.load(file)(*inputs in order) -> outputs in order"
        description: dict[str, Any] = {
            "format": format,
            "file": path.name,
            "opset": _opset() if format == "onnx" else None,
            "quantize": quantize,
            "rnnkit_version": __version__,
            "run": str(run.path),
            "task": run.meta["task"],
            "model_kind": kind,
            "inputs": inputs,
            "outputs": outputs,
            "preprocessing": run.meta["task_state"],
            "files": files,
            "usage": usage + "; pad rows with 0 to the longest and give each row's real length in 'lengths'",
        }
        if panel_members(run.model):
            description.update(panel_description(run, inputs))
        crf = getattr(run.model, "crf", None)
        if crf is not None:
            description["crf"] = {
                k: getattr(crf, k).detach().tolist() for k in ("start_transitions", "end_transitions", "transitions")
            }
        (Path(scratch) / "description.json").write_text(json.dumps(description, indent=2, ensure_ascii=False) + "\n")
        for f in files:  # from the run folder: a regular file (no link, FIFO) whose SHA-256 meta.json records
            copy = Path(scratch) / f"copy-{f}"
            _copy_checked(Path(run.path) / f, copy, run.meta["files"][f]["sha256"])
            write_new_file(copy, path.parent / f, force)
        write_new_file(built, path, force)
        write_new_file(Path(scratch) / "description.json", path.with_suffix(".json"), force)
    return path


def _check_targets(folder: Path, targets: list[Path], force: bool) -> None:
    """Create ``folder`` (``--out``) if needed and refuse, before anything is written, a target that is a
    symbolic link or not a regular file, or that exists without ``force``."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError):
        raise RnnkitError("--out: a file is in the way of this folder", where=str(folder)) from None
    except OSError as e:
        raise RnnkitError(f"--out: cannot create the folder: {e.strerror or e}", where=str(folder)) from None
    if not folder.is_dir():
        raise RnnkitError("--out: not a folder", where=str(folder))
    for target in targets:
        if target.is_symlink():
            raise RnnkitError("is a symbolic link; export never writes through one (remove it)", where=str(target))
        if target.exists():
            if not target.is_file():
                raise RnnkitError("exists and is not a regular file", where=str(target))
            if not force:
                raise RnnkitError("exists; export never overwrites a file unless --force is given", where=str(target))


def _copy_checked(src: Path, dst: Path, sha256: str) -> None:
    """Copy a run's file (checked as regular, not a link) to ``dst``, refusing it if its SHA-256 changed."""
    h = hashlib.sha256()
    with open_regular(src) as f, open(dst, "xb") as out:
        while chunk := f.read(1 << 20):
            h.update(chunk)
            out.write(chunk)
    if h.hexdigest() != sha256:
        raise RnnkitError("does not match the SHA-256 in meta.json (changed while exporting)", where=str(src))


def write_new_file(src: Path, target: Path, force: bool = False) -> None:
    """Put ``src``'s bytes at ``target`` as a new regular file: a hidden temporary file beside it (created with
    O_EXCL, so never through a link), fsynced, then hard-linked to ``target`` (which fails if anything, a link
    included, is there) or, with ``force``, renamed over a regular file. Never writes through a link."""
    target = Path(target)
    tmp = target.with_name(f".{target.name}{TMP_MARK}{os.getpid()}-{uuid.uuid4().hex[:8]}")
    try:
        with open(src, "rb") as f, open(tmp, "xb") as out:
            shutil.copyfileobj(f, out)
            out.flush()
            os.fsync(out.fileno())
        if target.is_symlink():
            raise RnnkitError("is a symbolic link; export never writes through one (remove it)", where=str(target))
        if force and os.path.lexists(target):
            if not target.is_file():
                raise RnnkitError("exists and is not a regular file", where=str(target))
            os.replace(tmp, target)  # replaces the entry, whatever it pointed to
        else:
            try:
                os.link(tmp, target, follow_symlinks=False)
            except FileExistsError:
                raise RnnkitError(
                    "exists; export never overwrites a file unless --force is given", where=str(target)
                ) from None
            except OSError:  # a file system without hard links: exclusive create (fails on an existing entry)
                fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0), 0o644)
                with os.fdopen(fd, "wb") as out, open(tmp, "rb") as f:
                    shutil.copyfileobj(f, out)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
    fsync_dir(target.parent)


def _opset() -> int:
    from .onnx import OPSET

    return OPSET


# -- int8 inference inside rnnkit ---------------------------------------------------------------------------
def _cache_root() -> Path:
    return rnnkit_home() / "int8"


def int8_onnx(run_dir: str | Path, model: nn.Module, sha256: str, with_level: bool = False) -> Path:
    """The run's int8 ONNX graph, built once and cached under ``$RNNKIT_HOME/int8/v<N>-<weights' SHA-256>/``
    (``...-level/`` for a many-series forecaster fed its level; the run folder itself is never written)."""
    path = _cache_root() / (f"v{CACHE_VERSION}-{sha256[:32]}" + ("-level" if with_level else "")) / "model.int8.onnx"
    if not path.is_file():
        require_onnx()
        path.parent.mkdir(parents=True, exist_ok=True)
        _onnx_file(model, path, "int8", with_level)
    return path


class QuantizedModel(nn.Module):
    """A run's model whose forward runs the int8 ONNX graph in ONNX Runtime (CPU, no gradients).

    Every other method (``predict``, ``step``, ``prime``, ``forward_with_weights`` ...) is the float model's
    class method bound to this object, so they call the int8 forward; attributes (``config``, ``crf``, the
    vocabulary sizes) are the float model's.
    """

    def __init__(self, model: nn.Module, onnx_path: Path) -> None:
        import onnxruntime as ort

        super().__init__()
        self.float_model = model.eval()
        options = ort.SessionOptions()
        options.intra_op_num_threads = torch.get_num_threads()
        options.inter_op_num_threads = 1
        self.session = ort.InferenceSession(str(onnx_path), options, providers=["CPUExecutionProvider"])
        self.input_names = [i.name for i in self.session.get_inputs()]
        self.output_names = [o.name for o in self.session.get_outputs()]

    def __getattr__(self, name: str) -> Any:
        try:
            return super().__getattr__(name)
        except AttributeError:
            pass
        model = super().__getattr__("float_model")
        attr = inspect.getattr_static(type(model), name, None)
        if inspect.isfunction(attr):
            return attr.__get__(self)
        return getattr(model, name)

    def _run(self, x: torch.Tensor, lengths: torch.Tensor | None, state: Any = ()) -> list[torch.Tensor]:
        B, T = x.shape[:2]
        if lengths is None:
            lengths = torch.full((B,), T, dtype=torch.long)
        feed = {self.input_names[0]: x.cpu().numpy(), "lengths": lengths.cpu().long().numpy()}
        for name, s in zip(self.input_names[2:], state, strict=True):
            feed[name] = s.detach().cpu().float().numpy()
        return [torch.from_numpy(o) for o in self.session.run(None, feed)]

    def _panel(self, window: torch.Tensor, **given: torch.Tensor | None) -> dict[str, torch.Tensor]:
        """A many-series forecaster's forward: the graph's inputs by name (``mask``, ``season`` default to ones)."""
        B, W = window.shape
        H = panel_members(self.float_model)[0].config.horizon
        defaults = {"mask": torch.ones(B, W), "season": torch.ones(B, W + H)}
        feed = {"window": window.detach().cpu().float().numpy()}
        for name in self.input_names[1:]:
            t = given.get(name)
            if t is None:
                if name not in defaults:
                    raise ValueError(f"the int8 graph needs {name!r}, which was not given")
                t = defaults[name]
            feed[name] = t.detach().cpu().float().numpy()
        extra = sorted(k for k, v in given.items() if v is not None and k not in self.input_names)
        if extra:
            raise ValueError(f"the int8 graph takes no {', '.join(extra)}")
        q, median = (torch.from_numpy(o) for o in self.session.run(None, feed))
        return {"quantiles": q, "median": median}

    def forward(self, x: torch.Tensor, lengths: torch.Tensor | None = None, state: Any = None, **given: Any):
        from ..models.language_model import LanguageModel

        model = self.float_model
        if panel_members(model):
            if lengths is not None or state is not None:
                raise TypeError("a many-series forecaster takes window and keyword inputs (mask, season, ...)")
            return self._panel(x, **given)
        if isinstance(model, LanguageModel):
            if state is None:
                state = model.init_state(x.shape[0])
            flat = [s for st in state for s in st]
            out = self._run(x, lengths, flat)
            nest, k = [], 1
            for st in state:
                nest.append(tuple(out[k : k + len(st)]))
                k += len(st)
            return out[0], nest
        out = self._run(x, lengths)
        return out[0]

    def forward_with_weights(self, x: torch.Tensor, lengths: torch.Tensor | None = None):
        out = self._run(x, lengths)
        return out[0], (out[1] if len(out) > 1 else None)


def quantized_model(run: LoadedRun) -> QuantizedModel:
    """``run`` (a :class:`~rnnkit.runfolder.LoadedRun`) with its model replaced by the int8 stand-in."""
    kind = run.meta["model"]["kind"]
    check_exportable(kind)
    require_onnx()
    sha = run.meta["files"]["model.safetensors"]["sha256"]
    return QuantizedModel(run.model, int8_onnx(run.path, run.model, sha, feeds_level(run)))


__all__ = [
    "FORMATS",
    "QUANTIZE",
    "QuantizedModel",
    "check_options",
    "default_out",
    "export_run",
    "quantize_onnx",
    "quantized_model",
    "write_new_file",
]
