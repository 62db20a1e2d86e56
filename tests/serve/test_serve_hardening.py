"""What an untrusted client or run folder cannot make ``rnnkit serve`` do: serve a file through a link, run a
generation past its budget or its timeout, answer for another site's Host name, show the server's paths, or
turn bad numbers and crashes into a non-JSON 500."""

from __future__ import annotations

import json
import os
import shutil
import time

import pytest
from fastapi.testclient import TestClient

from rnnkit.serve.app import ServeSettings, create_app
from rnnkit.tasks.runner import load_run

LOOPBACK = ("127.0.0.1", "localhost", "::1")


def assert_json_error(r, status: int, *fragments: str) -> dict:
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("application/json")
    body = r.json()
    assert isinstance(body["error"], str) and "\n" not in body["error"] and "Traceback" not in r.text
    for f in fragments:
        assert f in body["error"], body["error"]
    return body


@pytest.fixture
def run_copy(attention_run, tmp_path):
    """A copy of a finished run that a test may tamper with, and a secret file outside it."""
    run = tmp_path / "run"
    shutil.copytree(attention_run, run)
    secret = tmp_path / "outside" / "secret.png"
    secret.parent.mkdir()
    secret.write_bytes(b"\x89PNG not for clients")
    return run, secret


# -- plots: regular files inside the run only ---------------------------------------------------------------
def test_a_plot_that_is_a_link_to_a_file_outside_is_not_served(run_copy):
    run, secret = run_copy
    (run / "plots" / "learning_curves.png").unlink()
    (run / "plots" / "learning_curves.png").symlink_to(secret)
    os.mkfifo(run / "plots" / "confusion_matrix.png.fifo")
    (run / "plots" / "confusion_matrix.png").unlink()
    (run / "plots" / "confusion_matrix.png.fifo").rename(run / "plots" / "confusion_matrix.png")  # not a file
    with TestClient(create_app(run)) as c:
        assert c.get("/info").json()["plots"] == []
        for name in ("learning_curves.png", "confusion_matrix.png"):  # a FIFO would block a reader forever
            r = c.get(f"/plots/{name}")
            assert_json_error(r, 404, f"no plot {name!r}")
            assert b"not for clients" not in r.content


def test_a_plots_folder_that_is_a_link_is_not_followed(run_copy):
    run, secret = run_copy
    shutil.copy(run / "plots" / "learning_curves.png", secret.parent / "learning_curves.png")
    (secret.parent / "confusion_matrix.png").write_bytes(secret.read_bytes())
    shutil.rmtree(run / "plots")
    (run / "plots").symlink_to(secret.parent, target_is_directory=True)
    with TestClient(create_app(run)) as c:
        assert c.get("/info").json()["plots"] == []
        r = c.get("/plots/confusion_matrix.png")
        assert_json_error(r, 404)
        assert b"not for clients" not in r.content


def test_plots_inside_the_run_are_still_served(attention_run):
    with TestClient(create_app(attention_run)) as c:
        (plot,) = [p for p in c.get("/info").json()["plots"] if p["name"] == "confusion_matrix.png"]
        r = c.get(plot["url"])
        assert r.status_code == 200 and r.headers["content-type"] == "image/png"
        assert r.content == (attention_run / "plots" / "confusion_matrix.png").read_bytes()


# -- /info shows no path ----------------------------------------------------------------------------------------
def test_info_names_the_data_file_not_its_absolute_path(attention_run, reviews):
    meta = json.loads((attention_run / "meta.json").read_text())
    assert str(reviews.parent) in json.dumps(meta["dataset"])  # the run records where its data was
    with TestClient(create_app(attention_run)) as c:
        text = c.get("/info").text
    assert str(reviews.parent) not in text and str(attention_run.parent) not in text
    assert reviews.name in text


# -- generation: bounded work, numbers that would crash, cancellation ----------------------------------------
def test_generation_has_a_token_budget_and_predict_is_capped_too(lm_run):
    settings = ServeSettings(max_generate_tokens=20, max_generate_work=50)
    with TestClient(create_app(lm_run, settings)) as c:
        assert c.get("/info").json()["limits"]["max_generate_work"] == 50
        body = assert_json_error(c.post("/generate", json={"prompts": ["a", "b", "c"], "max_tokens": 20}), 422)
        assert "3 prompts x 1 samples x 20 tokens" in body["error"] and "50 tokens per request" in body["error"]
        assert_json_error(c.post("/generate", json={"prompts": ["a"], "num_samples": 3}), 422, "x 20 tokens")
        ok = c.post("/generate", json={"prompts": ["the"], "num_samples": 2, "max_tokens": 20, "seed": 1})
        assert ok.status_code == 200 and all(s["tokens"] <= 20 for s in ok.json()["samples"])
        # /predict on a language model generates the run's own length (100 here), capped to 20
        assert_json_error(c.post("/predict", json={"inputs": ["a", "b", "c"]}), 422, "3 inputs x 20 generated")
        (r,) = c.post("/predict", json={"inputs": ["the qu"]}).json()["results"]
        assert 0 < len(r["continuation"]) <= 20


@pytest.mark.parametrize(
    ("raw", "fragment"),
    [
        ('{"temperature": Infinity}', "temperature"),
        ('{"temperature": 1e400}', "temperature"),
        ('{"temperature": NaN}', "temperature"),
        ('{"top_p": NaN}', "top_p"),
        ('{"seed": 100000000000000000000000000000}', "seed"),
        ('{"seed": -1}', "seed"),
    ],
)
def test_numbers_that_would_crash_generation_are_422(lm_run, raw, fragment):
    with TestClient(create_app(lm_run)) as c:
        r = c.post("/generate", content=raw.encode(), headers={"content-type": "application/json"})
        assert_json_error(r, 422, fragment)
        assert c.post("/generate", json={"max_tokens": 3, "seed": 2**63 - 1}).status_code == 200


def test_a_generation_that_times_out_is_stopped_and_the_next_request_served(lm_run):
    run = load_run(lm_run)
    model, steps = run.model, []
    original = type(model).step

    def slow_step(tokens, state):  # 2,000 tokens would take 40 s
        steps.append(1)
        time.sleep(0.02)
        return original(model, tokens, state)

    model.step = slow_step
    app = create_app(run, ServeSettings(timeout_s=0.5))
    worker = app.state.worker
    with TestClient(app) as c:
        r = c.post("/generate", json={"prompts": ["the"], "max_tokens": 2000})
        assert_json_error(r, 504, "did not answer within 0.5 s")
        give_up = time.monotonic() + 15
        while worker.stats.cancelled_calls == 0 and time.monotonic() < give_up:
            time.sleep(0.02)
        assert worker.stats.cancelled_calls == 1 and worker.stats.jobs == 1  # stopped, not run to the end
        done = len(steps)
        assert done < 2000
        del model.step  # the next request (on the same worker) is answered
        assert c.post("/predict", json={"inputs": ["the qu"]}).status_code == 200
        assert c.post("/generate", json={"prompts": ["the"], "max_tokens": 5}).status_code == 200
        assert len(steps) == done  # the stopped generation never went on


def test_a_crash_in_the_model_call_is_a_json_500_and_the_server_goes_on(attention_run):
    class Panic(BaseException):  # what a tokenizer's Rust panic (pyo3 PanicException) is
        pass

    run = load_run(attention_run)
    original = run.task.predict

    def panicking(model, inputs, **kw):
        if "boom" in inputs:
            raise Panic("called `Option::unwrap()` on a `None` value")
        return original(model, inputs, **kw)

    run.task.predict = panicking
    with TestClient(create_app(run)) as c:
        assert_json_error(c.post("/predict", json={"inputs": ["boom"]}), 500, "ModelCrash")
        assert c.post("/predict", json={"inputs": ["a fine film"]}).status_code == 200


# -- Host header (DNS rebinding) --------------------------------------------------------------------------------
def test_only_the_allowed_host_names_are_answered(attention_run):
    app = create_app(attention_run, ServeSettings(allowed_hosts=(*LOOPBACK, "mybox.lan")))
    with TestClient(app, base_url="http://127.0.0.1:8000") as c:
        assert c.get("/health").status_code == 200
        for host in ("localhost:8000", "[::1]:8000", "LOCALHOST", "mybox.lan:80", "127.0.0.1"):
            assert c.get("/health", headers={"host": host}).status_code == 200, host
        for host in ("evil.example:8000", "127.0.0.1.evil.example", "10.0.0.7:8000", "localhost:x", ""):
            r = c.post("/predict", json={"inputs": ["a"]}, headers={"host": host})
            assert_json_error(r, 400, "Host header")
    wildcard = create_app(attention_run, ServeSettings(allowed_hosts=LOOPBACK, allow_ip_hosts=True))
    with TestClient(wildcard, base_url="http://127.0.0.1:8000") as c:
        assert c.get("/health", headers={"host": "10.0.0.7:8000"}).status_code == 200
        assert_json_error(c.get("/health", headers={"host": "evil.example"}), 400)
