"""The HTTP API and web page over one finished run folder (FastAPI; the ``serve`` extra).

Endpoints (every answer is JSON, errors too: ``{"error": "one line", "detail": [...]}``):

- ``POST /predict`` ``{"inputs": [...]}`` -> ``{"results": [...]}``: the task's ``predict`` output, one result
  per input (per case for ``.ts`` files). Text tasks take strings; file tasks (forecasting CSV, ``.ts``
  series, images) take ``{"name", "content"}`` or ``{"name", "content_base64"}`` objects, written to a
  private temporary folder for the call (the server never opens a path a client names).
  ``"saliency": true`` adds gradient x input per token (text classification).
- ``POST /generate`` ``{"prompts": [...], <GenerateOptions>}`` -> ``{"samples": [...]}`` for tasks that
  generate; generated files (MIDI, PNG) are listed with a download ``url`` under ``/files/``.
- ``GET /health``, ``GET /info`` (task, model, metrics, what the page offers, limits), ``GET /openapi.json``,
  ``GET /`` (the page), ``GET /plots/<name>`` (the run's plots).

Limits: a request body over ``max_body_bytes`` -> 413; a body not received within ``timeout_s`` (a client
that stalls) -> 408; more than ``max_inputs`` inputs or an input over ``max_input_chars`` -> 422; a
generation over ``max_generate_tokens`` per sample or ``max_generate_work`` tokens in all (prompts x samples
x tokens; ``/predict`` on a generating task counts inputs x the run's tokens) -> 422; malformed JSON -> 400;
a request whose answer is not ready within ``timeout_s`` -> 503 (it was still queued: the server is busy) or
504 (the model was computing it: a generation is then stopped at its next decoding step); a full queue ->
503; a ``Host`` header not in ``allowed_hosts`` -> 400 (DNS rebinding); a model call that crashes -> 500.

Every model call runs on one worker thread (:mod:`rnnkit.serve.batcher`), which takes ``/predict`` and
``/generate`` jobs in turn (neither can starve the other) and merges concurrent ``/predict`` requests on
text into one ``predict`` call (adaptive micro-batching).
"""

import asyncio
import base64
import binascii
import contextlib
import logging
import mimetypes
import os
import re
import shutil
import stat
import tempfile
import time
import uuid
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

from fastapi import FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel, ConfigDict, Field, StringConstraints
from starlette.exceptions import HTTPException as StarletteHTTPException

from ..decoding.search import SearchCancelled, stop_at
from ..errors import RnnkitError
from ..tasks.base import GenerateOptions, TaskKind
from ..tasks.runner import LoadedRun, load_run
from .batcher import Expired, ModelWorker, QueueFull
from .limits import SecurityAndLimits

log = logging.getLogger("rnnkit.serve")
STATIC = Path(__file__).parent / "static"


@dataclass(frozen=True)
class ServeSettings:
    """The server's limits (``rnnkit serve`` flags)."""

    max_batch: int = 32  # inputs merged into one predict call
    max_wait_ms: float = 5.0  # how long a call may wait for requests known to be on their way (never on none)
    max_body_bytes: int = 1 << 20  # request bodies larger than this -> 413
    timeout_s: float = 30.0  # receiving a body, and waiting for the model -> 408 / 503 / 504
    max_inputs: int = 256  # inputs (or prompts x samples) per request -> 422
    max_input_chars: int = 20_000  # characters per text input -> 422
    max_queue: int = 4096  # inputs waiting for the model -> 503
    max_generate_tokens: int = 2_000  # max_tokens per sample (and the run's own setting is capped to it) -> 422
    max_generate_work: int = 4_096  # tokens per request: prompts x samples x max_tokens -> 422
    keep_generated: int = 50  # /generate outputs with files kept for download (oldest removed first)
    #: Host header names answered (None: any; ``rnnkit serve`` passes loopback names and --host/--allowed-host)
    allowed_hosts: tuple[str, ...] | None = None
    allow_ip_hosts: bool = False  # also any IP address as Host (``rnnkit serve --host 0.0.0.0``)
    header_timeout_s: float = 10.0  # a connection's request line and headers -> closed (408) (rnnkit serve)
    max_connections: int = 128  # open connections; over it the longest-idle one is closed (rnnkit serve)

    def __post_init__(self) -> None:
        for name in ("max_batch", "max_body_bytes", "max_inputs", "max_input_chars", "max_queue",
                     "max_generate_tokens", "max_generate_work", "keep_generated", "max_connections"):  # fmt: skip
            if getattr(self, name) < 1:
                raise RnnkitError(f"{name.replace('_', '-')} must be at least 1, got {getattr(self, name)}")
        if self.max_wait_ms < 0 or self.timeout_s <= 0 or self.header_timeout_s <= 0:
            raise RnnkitError(f"need max-wait-ms >= 0 and timeout-s, header-timeout-s > 0, got {self.max_wait_ms}, "
                              f"{self.timeout_s}, {self.header_timeout_s}")  # fmt: skip


# -- what the task declares -------------------------------------------------------------------------------
@dataclass(frozen=True)
class Kind:
    """What the server and the page need of a task kind, read from its declarations (:class:`TaskKind`)."""

    view: str  # what the page shows: classify-text | tag | transduce | continue | forecast | classify-files | ...
    files: bool = False  # inputs are files (uploaded content), not text
    binary: bool = False  # file inputs are binary (base64), e.g. images
    accept: str = ""  # file name suffixes the page's file picker offers
    generate: bool = False  # /generate is offered: the task generates from text prompts (never from a path)
    saliency: bool = False  # /predict takes "saliency": true

    @classmethod
    def of(cls, task: TaskKind) -> "Kind":
        """A task that takes anything but text gets uploaded files: the server never passes a path a client names."""
        inputs = task.inputs
        return cls(
            view=task.view,
            files=inputs != "text",
            binary=inputs not in ("text", "file"),
            accept=",".join(task.accept),
            generate=bool(task.can_generate and task.text_prompts),
            saliency=bool(task.saliency),
        )


def _one_line(text: str) -> str:
    return " ".join(str(text).split())


def _safe_suffix(name: str) -> str:
    suffix = Path(name).suffix.lower()
    return suffix if re.fullmatch(r"\.[a-z0-9]{1,10}", suffix) else ""


# -- request and response models ------------------------------------------------------------------------------
class FileInput(BaseModel):
    """A file's content: ``content`` for text files (CSV, ``.ts``), ``content_base64`` for binary ones."""

    model_config = ConfigDict(extra="forbid")
    name: Annotated[str, StringConstraints(min_length=1, max_length=255)] = Field(
        description="the file's name; its suffix (.csv, .ts, .png) tells the reader the format"
    )
    content: str | None = Field(None, description="the file's text")
    content_base64: str | None = Field(None, description="the file's bytes, base64-encoded")


class PredictResponse(BaseModel):
    results: list[dict[str, Any]] = Field(description="the task's predict output, one per input (per case)")


class GenerateResponse(BaseModel):
    samples: list[dict[str, Any]] = Field(description="num_samples per prompt; files as {name, url}")


class ErrorResponse(BaseModel):
    error: str = Field(description="what was wrong, in one line")
    detail: list[dict[str, Any]] | None = Field(None, description="validation errors: loc, msg, type")


class HealthResponse(BaseModel):
    status: Literal["ok"]
    task: str
    queued_inputs: int
    model_calls: int
    merged_calls: int
    uptime_s: float


class ModelInfo(BaseModel):
    kind: str
    parameters: int
    config: dict[str, Any]


class PageInfo(BaseModel):
    view: str = Field(description="the page's form for /predict")
    input: Literal["text", "file"]
    binary: bool
    accept: str = Field(description="file suffixes offered, comma-separated")
    highlight: Literal["attention", "saliency"] | None = Field(None, description="text classification: token weights")
    generate: bool = Field(description="whether /generate works for this run")


class LimitsInfo(BaseModel):
    max_inputs: int
    max_input_chars: int
    max_body_bytes: int
    max_batch: int
    max_wait_ms: float
    timeout_s: float
    max_generate_tokens: int
    max_generate_work: int


class PlotInfo(BaseModel):
    name: str
    url: str


class InfoResponse(BaseModel):
    run: str
    task: str
    description: str
    input_help: str
    model: ModelInfo
    metrics: dict[str, Any]
    dataset: dict[str, Any]
    labels: list[str] | None
    page: PageInfo
    limits: LimitsInfo
    plots: list[PlotInfo]
    rnnkit_version: str | None


ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorResponse, "description": text}
    for code, text in {
        400: "malformed JSON, a Host header this server does not answer for, or the task does not offer this",
        408: "the request body was not received in time",
        413: "the request body is too large",
        422: "invalid request (types, counts, lengths) or input the task cannot read",
        503: "the server is busy (queue full, or the request waited too long)",
        504: "the model did not answer in time (a generation is stopped)",
        500: "the model call crashed",
    }.items()
}


class _Failure(Exception):
    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.headers = status, message, headers


def _error(status: int, message: str, detail=None, headers=None) -> JSONResponse:
    body = {"error": _one_line(message)}
    if detail is not None:
        body["detail"] = detail
    return JSONResponse(body, status_code=status, headers=headers)


# -- the app ------------------------------------------------------------------------------------------------
def create_app(run: LoadedRun | str | Path, settings: ServeSettings | None = None, model: Any = None) -> FastAPI:
    """The FastAPI app for a finished run folder (or a run :func:`~rnnkit.tasks.runner.load_run` loaded);
    ``model`` replaces the run's own model (``rnnkit serve --quantize int8``: the int8 stand-in)."""
    S = settings or ServeSettings()
    if not isinstance(run, LoadedRun):
        run = load_run(run)
    task = run.task
    worker = ModelWorker(S.max_batch, S.max_wait_ms / 1000, S.max_queue, during=stop_at, cancelled=(SearchCancelled,))
    served = Served(
        run=run,
        task=task,
        model=run.model if model is None else model,
        kind=Kind.of(task),
        settings=S,
        worker=worker,
        files_root=Path(tempfile.mkdtemp(prefix="rnnkit-serve-")),
        # the run folder is untrusted too: its own generation length is capped like a request's
        per_input_tokens=_cap_generation(task, S.max_generate_tokens),
        started=time.monotonic(),
    )

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI):
        yield
        worker.close()
        shutil.rmtree(served.files_root, ignore_errors=True)

    app = FastAPI(
        title=f"rnnkit: {task.name} ({run.path.name})",
        description="Predictions from a trained rnnkit run folder. The page at / uses these endpoints.",
        version=run.meta.get("rnnkit_version", "0"),
        docs_url=None,  # the interactive docs load their scripts from elsewhere; the schema is at /openapi.json
        redoc_url=None,
        lifespan=lifespan,
    )
    app.state.worker, app.state.settings, app.state.run, app.state.files_root = worker, S, run, served.files_root
    app.state.model = served.model
    app.add_middleware(Expecting, worker=worker)
    app.add_middleware(SecurityAndLimits, max_body_bytes=S.max_body_bytes, body_timeout_s=S.timeout_s,
                       allowed_hosts=S.allowed_hosts, allow_ip_hosts=S.allow_ip_hosts)  # fmt: skip
    _add_error_handlers(app)
    _add_predict(app, served)
    _add_generate(app, served)
    _add_info(app, served)
    _add_page(app)
    return app


@dataclass
class Served:
    """One served run: its task and model, the worker thread every model call runs on, the settings, and the
    server's private folder (uploaded files for a call, generated files)."""

    run: LoadedRun
    task: TaskKind
    model: Any
    kind: Kind
    settings: ServeSettings
    worker: ModelWorker
    files_root: Path
    per_input_tokens: int | None  # tokens one predict input generates (a generating task), capped
    started: float

    def submit(self, fn, inputs, options=None, mergeable=False, *, lane: str, size: int = 0) -> tuple[Any, float]:
        """Queue a model call on the worker; the future and its deadline."""
        deadline = time.monotonic() + self.settings.timeout_s
        try:
            job = self.worker.submit(fn, inputs, options, mergeable, lane=lane, size=size, deadline=deadline)
        except QueueFull as e:
            raise _Failure(503, f"the server is busy ({e}); try again", {"Retry-After": "1"}) from None
        return job, deadline

    async def answer(self, future, deadline: float) -> Any:
        """The model call's result, or the failure it maps to (busy, late, bad input, a crash)."""
        busy = f"the server is busy: no model time within {self.settings.timeout_s:g} s"
        late = f"the model did not answer within {self.settings.timeout_s:g} s"
        try:
            return await asyncio.wait_for(asyncio.wrap_future(future), max(deadline - time.monotonic(), 0.001))
        except asyncio.TimeoutError:
            if future.cancelled():
                raise _Failure(503, busy, {"Retry-After": "1"}) from None
            raise _Failure(504, late) from None  # the worker stops a generation at its next step
        except Expired:
            raise _Failure(503, busy, {"Retry-After": "1"}) from None
        except SearchCancelled:
            raise _Failure(504, late) from None
        except RnnkitError as e:
            raise _Failure(422, str(e)) from None
        except Exception as e:  # noqa: BLE001 - a crash in the model call (ModelCrash: a Rust panic)
            log.error("model call failed", exc_info=e)
            raise _Failure(
                500, f"internal error in the model call ({type(e).__name__}); see the server's log"
            ) from None


def _add_error_handlers(app: FastAPI) -> None:
    """Every error is JSON: ``{"error": "one line", "detail": [...]}``."""

    @app.exception_handler(_Failure)
    async def on_failure(request, exc: _Failure):
        return _error(exc.status, exc.message, headers=exc.headers)

    @app.exception_handler(RequestValidationError)
    async def on_invalid(request, exc: RequestValidationError):
        errors = [
            {"loc": list(e.get("loc", ())), "msg": str(e.get("msg", "")), "type": str(e.get("type", ""))}
            for e in exc.errors()
        ]
        bad_json = [e for e in exc.errors() if e.get("type") == "json_invalid"]
        if bad_json:
            reason = (bad_json[0].get("ctx") or {}).get("error") or bad_json[0].get("msg", "")
            return _error(400, f"malformed JSON: {reason}", jsonable_encoder(errors))
        where = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in errors[:3])
        more = f" (and {len(errors) - 3} more)" if len(errors) > 3 else ""
        return _error(422, f"invalid request: {where}{more}", jsonable_encoder(errors))

    @app.exception_handler(StarletteHTTPException)
    async def on_http(request, exc: StarletteHTTPException):
        message = {404: f"not found: {request.url.path}", 405: f"method {request.method} not allowed here"}
        return _error(exc.status_code, message.get(exc.status_code, str(exc.detail)), headers=exc.headers)

    @app.exception_handler(Exception)
    async def on_crash(request, exc: Exception):
        log.error("internal error on %s", request.url.path, exc_info=exc)
        return _error(500, f"internal error ({type(exc).__name__}); see the server's log")


def _add_predict(app: FastAPI, served: Served) -> None:
    """``POST /predict``: texts merged into one model call with concurrent requests; files written to a private
    folder for the call."""
    task, model, kind, S = served.task, served.model, served.kind, served.settings
    Text = Annotated[str, StringConstraints(max_length=S.max_input_chars)]
    Input = FileInput if kind.files else Text
    input_doc = "file contents ({name, content} or {name, content_base64})" if kind.files else "texts"

    class PredictRequest(BaseModel):
        model_config = ConfigDict(extra="forbid")
        inputs: list[Input] = Field(
            min_length=1, max_length=S.max_inputs, description=f"{task.input_help}: {input_doc}"
        )
        saliency: bool = Field(False, description="text classification: add gradient x input per token")

    def predict_texts(inputs: list[str], saliency: bool) -> list[dict[str, Any]]:  # on the worker thread
        results = task.predict(model, inputs, saliency=True) if saliency else task.predict(model, inputs)
        if len(results) != len(inputs):
            raise RuntimeError(f"predict gave {len(results)} results for {len(inputs)} inputs")
        return results

    def predict_files(inputs: list[tuple[str, bytes]], _options: Any) -> list[dict[str, Any]]:  # on the worker
        with tempfile.TemporaryDirectory(prefix="call-", dir=served.files_root) as tmp:
            paths = [Path(tmp) / f"{i}{_safe_suffix(name)}" for i, (name, _) in enumerate(inputs)]
            for path, (_, data) in zip(paths, inputs, strict=True):
                path.write_bytes(data)
            names = {str(p): name for p, (name, _) in zip(paths, inputs, strict=True)}

            def rename(text: str) -> str:
                for path, name in names.items():
                    text = text.replace(path, name)
                return text

            try:
                results = task.predict(model, list(names))
            except RnnkitError as e:
                raise RnnkitError(rename(str(e))) from None
            results = [{k: rename(v) if isinstance(v, str) else v for k, v in r.items()} for r in results]
            if len(results) == len(paths):  # one result per file (not per case): the page's extras for each
                for r, path in zip(results, paths, strict=True):
                    r.update(task.file_result(path))
        return results

    @app.post("/predict", response_model=PredictResponse, responses=ERRORS, summary="predict with the run's model")
    async def predict(req: PredictRequest, request: Request) -> PredictResponse:
        expected = request.scope.get(Expecting.KEY)
        try:
            if req.saliency and not kind.saliency:
                raise _Failure(422, f"saliency is offered for text-classification runs, not {task.name}")
            n_tokens = served.per_input_tokens
            if n_tokens and len(req.inputs) * n_tokens > S.max_generate_work:
                raise _Failure(422, f"{len(req.inputs)} inputs x {n_tokens} generated tokens is over this "
                                    f"server's {S.max_generate_work} tokens per request")  # fmt: skip
            if not kind.files:
                size = max(len(x) for x in req.inputs)
                job = served.submit(predict_texts, req.inputs, req.saliency, mergeable=True, lane="predict", size=size)
            else:
                files = [(f.name, _file_bytes(f, i, kind)) for i, f in enumerate(req.inputs)]
                job = served.submit(predict_files, files, lane="predict")
        finally:
            if expected is not None:
                expected.done()
        return PredictResponse(results=await served.answer(*job))


def _add_generate(app: FastAPI, served: Served) -> None:
    """``POST /generate`` (tasks that generate from text prompts) and ``GET /files/...`` (generated files)."""
    task, model, S, files_root = served.task, served.model, served.settings, served.files_root
    Text = Annotated[str, StringConstraints(max_length=S.max_input_chars)]

    class GenerateRequest(GenerateOptions):
        model_config = ConfigDict(allow_inf_nan=False)  # temperature inf / nan -> 422
        prompts: list[Text] = Field(default_factory=lambda: [""], min_length=1, max_length=S.max_inputs,
                                    description='prompts to continue; "" generates from scratch')  # fmt: skip

    @app.post("/generate", response_model=GenerateResponse, responses=ERRORS, summary="generate samples")
    async def generate(req: GenerateRequest) -> GenerateResponse:
        if not served.kind.generate:
            why = "does not generate" if not task.can_generate else "generates from files here"
            raise _Failure(400, f"task {task.name!r} {why}; use /predict")
        options = GenerateOptions(**req.model_dump(exclude={"prompts"}))
        if options.max_tokens is not None and options.max_tokens > S.max_generate_tokens:
            raise _Failure(422, f"max_tokens {options.max_tokens} is over this server's {S.max_generate_tokens}")
        n = len(req.prompts) * options.num_samples
        if n > S.max_inputs:
            raise _Failure(422, f"{len(req.prompts)} prompts x {options.num_samples} samples is over "
                                f"this server's {S.max_inputs}")  # fmt: skip
        tokens = options.max_tokens or served.per_input_tokens or S.max_generate_tokens
        if n * tokens > S.max_generate_work:
            raise _Failure(422, f"{len(req.prompts)} prompts x {options.num_samples} samples x {tokens} tokens is "
                                f"over this server's {S.max_generate_work} tokens per request")  # fmt: skip
        gen_id = uuid.uuid4().hex
        out_dir = files_root / "generated" / gen_id

        def run_generate(prompts: list[str], _options: Any) -> list[dict[str, Any]]:  # on the worker thread
            return task.generate_outputs(model, prompts, options, out_dir)

        samples = await served.answer(*served.submit(run_generate, req.prompts, lane="generate"))
        _prune(files_root / "generated", S.keep_generated)
        return GenerateResponse(samples=[_with_urls(s, out_dir, gen_id) for s in samples])

    @app.get("/files/{gen_id}/{name:path}", responses=ERRORS, summary="a generated file")
    async def generated_file(gen_id: str, name: str):
        base = (files_root / "generated" / gen_id).resolve()
        path = (base / name).resolve()
        if not re.fullmatch(r"[0-9a-f]{32}", gen_id) or not path.is_relative_to(base) or not path.is_file():
            raise _Failure(404, f"no generated file {gen_id}/{name} (files are kept for the last "
                                f"{S.keep_generated} generations)")  # fmt: skip
        inline = path.suffix.lower() in (".png", ".jpg", ".jpeg", ".txt")
        return FileResponse(path, filename=path.name, content_disposition_type="inline" if inline else "attachment")


def _add_info(app: FastAPI, served: Served) -> None:
    """``GET /health``, ``GET /info`` and ``GET /plots/<name>``."""
    run, worker = served.run, served.worker

    @app.get("/health", response_model=HealthResponse, summary="is the server up")
    async def health() -> HealthResponse:
        st, uptime = worker.stats, round(time.monotonic() - served.started, 3)
        return HealthResponse(status="ok", task=served.task.name, queued_inputs=worker.queued(), model_calls=st.calls,
                              merged_calls=st.merged_calls, uptime_s=uptime)  # fmt: skip

    info = _info(run, served.kind, served.settings)

    @app.get("/info", response_model=InfoResponse, summary="the run: task, model, metrics, what the page offers")
    async def get_info() -> InfoResponse:
        return info

    @app.get("/plots/{name}", responses=ERRORS, summary="one of the run's plots")
    async def plot(name: str):
        data = _read_plot(run, name) if f"plots/{name}" in run.meta.get("plots", []) else None
        if data is None:
            raise _Failure(404, f"no plot {name!r} in this run")
        return Response(data, media_type=mimetypes.guess_type(name)[0] or "application/octet-stream")


def _add_page(app: FastAPI) -> None:
    """``GET /`` (the page) and its static files."""

    @app.get("/", include_in_schema=False)
    async def page():
        return FileResponse(STATIC / "index.html", media_type="text/html; charset=utf-8")

    app.mount("/static", StaticFiles(directory=STATIC), name="static")


class Expecting:
    """ASGI middleware: a ``POST /predict`` is announced to the worker (:meth:`ModelWorker.expect`) while its
    body is read, so a merged call may wait for it (and never waits when no request is on its way)."""

    KEY = "rnnkit.expected"

    def __init__(self, app, worker: ModelWorker) -> None:
        self.app, self.worker = app, worker

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http" or scope["method"] != "POST" or scope["path"] != "/predict":
            await self.app(scope, receive, send)
            return
        expected = self.worker.expect()
        scope[self.KEY] = expected
        try:
            await self.app(scope, receive, send)
        finally:
            expected.done()


def _cap_generation(task, cap: int) -> int | None:
    """Lower the run's own generation length (``generate.max_tokens``, or ``max_events`` for music) to ``cap``;
    the tokens one ``predict`` input generates, or None for a task that does not generate."""
    g = getattr(task.config, "generate", None) if task.can_generate else None
    for field in ("max_tokens", "max_events"):
        value = getattr(g, field, None)
        if isinstance(value, int):
            if value > cap:
                setattr(g, field, cap)
            return min(value, cap)
    return None


#: a plot larger than this is not served (a run's PNGs are well under 1 MB)
MAX_PLOT_BYTES = 32 << 20
_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0)


def _plot_name_ok(name: str) -> bool:
    return bool(name) and name not in (".", "..") and not any(c in name for c in "/\\\0")


def _read_plot(run: LoadedRun, name: str) -> bytes | None:
    """The bytes of ``plots/<name>`` when it is a regular file directly inside the run's own ``plots/`` folder,
    else None. The run folder is untrusted: neither ``plots/`` nor the file may be a symbolic link (opened
    with ``O_NOFOLLOW``, the file relative to the folder's own descriptor, so a link swapped in after a check
    is not followed either), nor a FIFO or device (non-blocking open, then ``fstat``), nor over
    ``MAX_PLOT_BYTES``."""
    if not _plot_name_ok(name):
        return None
    try:
        folder = os.open(run.path / "plots", os.O_RDONLY | getattr(os, "O_DIRECTORY", 0) | _NOFOLLOW)
    except OSError:
        return None
    try:
        fd = os.open(name, os.O_RDONLY | _NOFOLLOW, dir_fd=folder)
    except (OSError, NotImplementedError):
        return None
    finally:
        os.close(folder)
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode) or st.st_size > MAX_PLOT_BYTES:
            return None
        with os.fdopen(fd, "rb", closefd=False) as f:
            return f.read(MAX_PLOT_BYTES)
    except OSError:
        return None
    finally:
        os.close(fd)


def _plot_file(run: LoadedRun, name: str) -> bool:
    """Whether ``plots/<name>`` is a plot :func:`_read_plot` serves (no link, a regular file) (for /info)."""
    folder = run.path / "plots"
    if not _plot_name_ok(name):
        return False
    try:
        if not stat.S_ISDIR(os.lstat(folder).st_mode):
            return False  # also when plots/ is a link
        st = os.lstat(folder / name)
    except OSError:
        return False
    return stat.S_ISREG(st.st_mode) and st.st_size <= MAX_PLOT_BYTES


_ABSOLUTE = re.compile(r"(?<![\w.~-])(?:[A-Za-z]:[\\/]|/|~/)(?:[^\s'\"/\\,;()\[\]]*[/\\])*([^\s'\"/\\,;()\[\]]*)")


def _no_paths(value: Any) -> Any:
    """``value`` with every absolute path in its strings replaced by the file's name (for /info)."""
    if isinstance(value, str):
        return _ABSOLUTE.sub(lambda m: m.group(1), value)
    if isinstance(value, dict):
        return {k: _no_paths(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_no_paths(v) for v in value]
    return value


def _file_bytes(f: FileInput, i: int, kind: Kind) -> bytes:
    if (f.content is None) == (f.content_base64 is None):
        raise _Failure(422, f"inputs.{i}: give exactly one of content and content_base64")
    if f.content is not None:
        if kind.binary and not f.name.lower().endswith(".csv"):
            raise _Failure(422, f"inputs.{i}: {f.name!r} is binary: send content_base64")
        return f.content.encode("utf-8")
    try:
        return base64.b64decode(f.content_base64, validate=True)
    except (binascii.Error, ValueError):
        raise _Failure(422, f"inputs.{i}: content_base64 is not valid base64") from None


def _with_urls(sample: dict[str, Any], out_dir: Path, gen_id: str) -> dict[str, Any]:
    if "files" not in sample:
        return sample
    files = []
    for f in sample["files"]:
        path = Path(f).resolve()
        if path.is_relative_to(out_dir.resolve()) and path.is_file():
            rel = path.relative_to(out_dir.resolve()).as_posix()
            files.append({"name": path.name, "url": f"/files/{gen_id}/{rel}"})
    return sample | {"files": files}


def _prune(folder: Path, keep: int) -> None:
    if not folder.is_dir():
        return
    runs = sorted((p for p in folder.iterdir() if p.is_dir()), key=lambda p: p.stat().st_mtime)
    for old in runs[:-keep]:
        shutil.rmtree(old, ignore_errors=True)


def _info(run: LoadedRun, kind: Kind, S: ServeSettings) -> InfoResponse:
    task, model, meta = run.task, run.model, run.meta
    highlight = task.highlight(model)
    plots = [
        PlotInfo(name=Path(p).name, url=f"/plots/{Path(p).name}")
        for p in meta.get("plots", [])
        if isinstance(p, str) and Path(p).parent.as_posix() == "plots" and _plot_file(run, Path(p).name)
    ]
    labels = getattr(task, "labels", None)
    return InfoResponse(
        run=run.path.name,
        task=task.name,
        description=_no_paths(run.config.description),
        input_help=task.input_help,
        model=ModelInfo(
            kind=meta["model"]["kind"],
            parameters=sum(p.numel() for p in run.model.parameters()),
            config=_no_paths(meta["model"]["config"]),
        ),
        metrics=meta.get("metrics", {}),
        dataset=_no_paths(meta.get("dataset", {})),
        labels=[str(x) for x in labels] if isinstance(labels, list) else None,
        page=PageInfo(
            view=kind.view,
            input="file" if kind.files else "text",
            binary=kind.binary,
            accept=kind.accept,
            highlight=highlight,
            generate=kind.generate,
        ),
        limits=LimitsInfo(**{k: v for k, v in asdict(S).items() if k in LimitsInfo.model_fields}),
        plots=plots,
        rnnkit_version=meta.get("rnnkit_version"),
    )


__all__ = ["ServeSettings", "create_app"]
