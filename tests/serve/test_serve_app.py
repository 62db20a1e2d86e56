"""``rnnkit serve``'s app through FastAPI's TestClient on tiny run folders: every endpoint, the task views,
micro-batching, timeouts, and every bad request answered with a JSON 4xx."""

from __future__ import annotations

import base64
import json
import threading

import pytest
from fastapi.testclient import TestClient
from serve_helpers import seasonal_csv

from rnnkit.errors import RnnkitError
from rnnkit.serve.app import ServeSettings, create_app
from rnnkit.tasks.runner import load_run


@pytest.fixture
def client(attention_run):
    with TestClient(create_app(attention_run)) as c:
        yield c


def assert_json_error(r, status: int, *fragments: str) -> dict:
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("application/json")
    body = r.json()
    assert isinstance(body["error"], str) and "\n" not in body["error"] and "Traceback" not in r.text
    for f in fragments:
        assert f in body["error"], body["error"]
    return body


# -- endpoints --------------------------------------------------------------------------------------------
def test_health_info_page_and_schema(client, attention_run):
    health = client.get("/health").json()
    assert health["status"] == "ok" and health["task"] == "text-classification"

    info = client.get("/info").json()
    meta = json.loads((attention_run / "meta.json").read_text())
    assert info["task"] == "text-classification" and info["run"] == "att"
    assert info["metrics"] == meta["metrics"] and info["labels"] == ["neg", "pos"]
    assert info["model"]["kind"] == "classifier" and info["model"]["parameters"] > 0
    assert info["page"] == {"view": "classify-text", "input": "text", "binary": False, "accept": "",
                            "highlight": "attention", "generate": False}  # fmt: skip
    assert info["limits"]["max_inputs"] == ServeSettings().max_inputs
    assert {p["name"] for p in info["plots"]} == {"learning_curves.png", "confusion_matrix.png"}
    for p in info["plots"]:
        r = client.get(p["url"])
        assert r.status_code == 200 and r.headers["content-type"] == "image/png" and r.content[:4] == b"\x89PNG"

    page = client.get("/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert '<script src="/static/app.js"' in page.text and "http" not in page.text.split("<body>")[0]
    assert "default-src 'self'" in page.headers["content-security-policy"]
    for asset in ("/static/app.js", "/static/style.css"):
        assert client.get(asset).status_code == 200
    for name in ("app.js", "style.css", "index.html"):  # no CDN, no external fonts or scripts
        text = (client.get(f"/static/{name}") if name != "index.html" else page).text
        assert "//" not in text.replace("http://www.w3.org/2000/svg", "").replace("// ", "").replace("://", "")

    schema = client.get("/openapi.json").json()
    assert {"/predict", "/generate", "/health", "/info"} <= set(schema["paths"])
    schemas = schema["components"]["schemas"]
    assert schemas["PredictRequest"]["properties"]["inputs"]["maxItems"] == ServeSettings().max_inputs
    assert {"PredictResponse", "GenerateRequest", "ErrorResponse", "InfoResponse"} <= set(schemas)
    assert "413" in schema["paths"]["/predict"]["post"]["responses"]


def test_predict_equals_the_task_and_carries_attention(client, attention_run):
    texts = ["a great film", "dull plot, awful cast", ""]
    r = client.post("/predict", json={"inputs": texts})
    assert r.status_code == 200, r.text
    results = r.json()["results"]
    run = load_run(attention_run)
    assert results == run.task.predict(run.model, texts)  # the server adds nothing and loses nothing
    first = results[0]
    assert first["tokens"] == ["a", "great", "film"] and first["offsets"] == [[0, 1], [2, 7], [8, 12]]
    assert sum(first["attention"]) == pytest.approx(1.0, abs=1e-4)
    assert results[2]["tokens"] == ["[UNK]"]  # an empty text is read as one unknown token


def test_saliency_for_a_run_without_attention_pooling(max_run, tagging_run):
    with TestClient(create_app(max_run)) as c:
        assert c.get("/info").json()["page"]["highlight"] == "saliency"
        plain = c.post("/predict", json={"inputs": ["a great film"]}).json()["results"][0]
        assert "saliency" not in plain and "tokens" not in plain and "attention" not in plain
        r = c.post("/predict", json={"inputs": ["a great film", "awful"], "saliency": True}).json()["results"]
        assert r[0]["tokens"] == ["a", "great", "film"] and len(r[0]["saliency"]) == 3
        assert {k: r[0][k] for k in plain} == plain  # the existing keys are unchanged
        assert any(abs(v) > 0 for v in r[0]["saliency"])
    with TestClient(create_app(tagging_run)) as c:
        assert_json_error(c.post("/predict", json={"inputs": ["the cat"], "saliency": True}), 422, "saliency")


def test_seq2seq_returns_the_attention_matrix(seq2seq_run):
    with TestClient(create_app(seq2seq_run)) as c:
        assert c.get("/info").json()["page"]["view"] == "transduce"
        (r,) = c.post("/predict", json={"inputs": ["abcd"]}).json()["results"]
        assert r["source"] == "abcd" and isinstance(r["prediction"], str)
        assert r["source_tokens"] == list("abcd")
        assert len(r["attention"]) == len(r["output_tokens"]) and all(len(row) == 4 for row in r["attention"])
        assert all(sum(row) == pytest.approx(1.0, abs=1e-3) for row in r["attention"])
        assert "".join(t for t in r["output_tokens"] if t != "<eos>") == r["prediction"]
        # input the task refuses is a 422 naming what was wrong
        assert_json_error(c.post("/predict", json={"inputs": ["   "]}), 422, "empty source")


def test_tagging(tagging_run):
    with TestClient(create_app(tagging_run)) as c:
        assert c.get("/info").json()["page"]["view"] == "tag"
        r = c.post("/predict", json={"inputs": ["the cat sees a dog", "a bird"]}).json()["results"]
        assert r[0]["tokens"] == ["the", "cat", "sees", "a", "dog"] and len(r[0]["tags"]) == 5
        assert set(r[0]["tags"]) <= {"DET", "NOUN", "VERB"}


def test_forecasting_takes_file_content_never_a_path(forecasting_run, tmp_path):
    with TestClient(create_app(forecasting_run)) as c:
        info = c.get("/info").json()
        assert (
            info["page"]["view"] == "forecast" and info["page"]["input"] == "file" and info["page"]["accept"] == ".csv"
        )
        r = c.post("/predict", json={"inputs": [{"name": "recent.csv", "content": seasonal_csv(30)}]})
        assert r.status_code == 200, r.text
        (res,) = r.json()["results"]
        assert res["input"] == "recent.csv" and len(res["forecast"]) == len(res["lower"]) == len(res["upper"]) == 4
        assert all(lo <= f <= hi for lo, f, hi in zip(res["lower"], res["forecast"], res["upper"], strict=True))
        assert res["history"]["times"][-1] == "1952-06" and len(res["history"]["values"]) == 30
        assert 0 < res["interval"] < 1

        encoded = base64.b64encode(seasonal_csv(30).encode()).decode()
        same = c.post("/predict", json={"inputs": [{"name": "recent.csv", "content_base64": encoded}]})
        assert same.json()["results"][0]["forecast"] == res["forecast"]

        # a path a client names is text, not a file the server opens
        secret = tmp_path / "secret.csv"
        secret.write_text(seasonal_csv(30))
        assert_json_error(c.post("/predict", json={"inputs": [str(secret)]}), 422, "inputs.0")
        # errors name the client's file, not the server's temporary copy
        body = assert_json_error(
            c.post("/predict", json={"inputs": [{"name": "short.csv", "content": seasonal_csv(5)}]}), 422, "short.csv"
        )
        assert "rnnkit-serve-" not in body["error"]
        assert_json_error(c.post("/predict", json={"inputs": [{"name": "x.csv"}]}), 422, "exactly one of")
        assert_json_error(
            c.post("/predict", json={"inputs": [{"name": "x.csv", "content_base64": "**not base64**"}]}), 422, "base64"
        )


# -- generation -------------------------------------------------------------------------------------------
def test_generate_is_refused_when_the_task_cannot(client):
    assert_json_error(client.post("/generate", json={"prompts": ["a"]}), 400, "does not generate")


def test_generate_with_files_and_limits(attention_run):
    run = load_run(attention_run)
    seen = {}

    def fake_generate(model, prompts, options, out_dir=None):
        seen["options"] = options
        out_dir.mkdir(parents=True)
        samples = []
        for i, p in enumerate(prompts):
            f = out_dir / f"sample-{i}.mid"
            f.write_bytes(b"MThd" + p.encode())
            samples.append({"prompt": p, "text": p + "!", "files": [str(f), "/etc/passwd"]})
        return samples

    run.task.can_generate = True
    run.task.generate_outputs = fake_generate
    with TestClient(create_app(run)) as c:  # a task whose prompts are not text (captions: image files) is refused
        assert c.get("/info").json()["page"]["generate"] is False
        assert_json_error(c.post("/generate", json={"prompts": ["/etc/passwd"]}), 400, "generates from files here")
    run.task.text_prompts = True  # the task declares text prompts: /generate is offered
    with TestClient(create_app(run, ServeSettings(max_generate_tokens=50, max_inputs=4))) as c:
        assert c.get("/info").json()["page"]["generate"] is True
        r = c.post("/generate", json={"prompts": ["la", "do"], "temperature": 0.5, "max_tokens": 20, "seed": 3})
        assert r.status_code == 200, r.text
        samples = r.json()["samples"]
        assert [s["text"] for s in samples] == ["la!", "do!"]
        assert seen["options"].temperature == 0.5 and seen["options"].max_tokens == 20 and seen["options"].seed == 3
        (f,) = samples[0]["files"]  # a file outside the generation's folder is never offered
        assert f["name"] == "sample-0.mid" and f["url"].startswith("/files/")
        download = c.get(f["url"])
        assert download.status_code == 200 and download.content == b"MThdla"
        assert "attachment" in download.headers["content-disposition"]
        gen_id = f["url"].split("/")[2]
        for bad in (f"/files/{gen_id}/../../../etc/passwd", f"/files/{gen_id}/%2e%2e/x", "/files/zzz/sample-0.mid"):
            assert c.get(bad).status_code == 404

        assert_json_error(c.post("/generate", json={"max_tokens": 51}), 422, "max_tokens 51")
        assert_json_error(c.post("/generate", json={"prompts": ["a", "b"], "num_samples": 3}), 422, "3 samples")
        assert_json_error(c.post("/generate", json={"temperature": 0}), 422, "temperature")
        assert_json_error(c.post("/generate", json={"beam": 3}), 422, "beam: Extra inputs")


# -- bad requests ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("body", "status", "fragment"),
    [
        ({"inputs": [1, 2]}, 422, "body.inputs.0: Input should be a valid string"),
        ({"inputs": "a string, not a list"}, 422, "valid list"),
        ({"inputs": []}, 422, "at least 1 item"),
        ({"inputs": ["a"] * 5}, 422, "at most 4 items"),
        ({"inputs": ["x" * 41]}, 422, "at most 40 characters"),
        ({"text": "a"}, 422, "body.inputs: Field required"),
        ({"inputs": ["a"], "saliency": "maybe"}, 422, "saliency"),
        ({"inputs": ["a"], "unknown": 1}, 422, "unknown: Extra inputs are not permitted"),
        ([1, 2], 422, "valid dictionary"),
    ],
)
def test_invalid_requests_are_422_json(attention_run, body, status, fragment):
    with TestClient(create_app(attention_run, ServeSettings(max_inputs=4, max_input_chars=40))) as c:
        body = assert_json_error(c.post("/predict", json=body), status, fragment)
        assert body["detail"] and {"loc", "msg", "type"} <= set(body["detail"][0])


def test_malformed_json_unknown_routes_methods_and_oversize_bodies(attention_run):
    with TestClient(create_app(attention_run, ServeSettings(max_body_bytes=1000))) as c:
        headers = {"content-type": "application/json"}
        assert_json_error(c.post("/predict", content=b'{"inputs": ["a"', headers=headers), 400, "malformed JSON")
        assert_json_error(c.post("/predict", content=b"\xff\xfe", headers=headers), 400, "malformed JSON")
        assert_json_error(c.get("/no/such/route"), 404, "not found: /no/such/route")
        assert_json_error(c.get("/predict"), 405, "GET not allowed")
        assert_json_error(c.get("/plots/../meta.json"), 404)
        assert_json_error(c.post("/predict", json={"inputs": ["x" * 2000]}), 413, "over 1000")

        def chunks():  # no Content-Length: counted as it arrives
            for _ in range(5):
                yield b" " * 400

        assert_json_error(c.post("/predict", content=chunks(), headers=headers), 413, "over 1000 bytes")
        assert_json_error(c.post("/predict", content=b"{}", headers={**headers, "content-length": "x"}), 400)
        # the server still answers after all that
        assert c.post("/predict", json={"inputs": ["a great film"]}).status_code == 200


# -- batching and timeouts ------------------------------------------------------------------------------------
def test_concurrent_requests_are_merged_and_each_gets_its_own_answers(attention_run):
    run = load_run(attention_run)
    calls: list[list[str]] = []
    original = run.task.predict

    def counting(model, inputs, **kw):
        calls.append(list(inputs))
        return original(model, inputs, **kw)

    run.task.predict = counting
    texts = [f"{w} film number {i}" for i, w in enumerate(["great", "dull", "superb", "awful"] * 4)]
    expected = {t: r for t, r in zip(texts, original(run.model, texts), strict=True)}
    answers: dict[str, list] = {}
    with TestClient(create_app(run, ServeSettings(max_batch=64, max_wait_ms=300))) as c:

        def ask(i):
            answers[texts[i]] = c.post("/predict", json={"inputs": [texts[i], texts[i] + " again"]}).json()["results"]

        threads = [threading.Thread(target=ask, args=(i,)) for i in range(len(texts))]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
        health = c.get("/health").json()
    assert len(answers) == len(texts)
    for t in texts:  # every request got its own two answers, in order
        assert answers[t][0] == expected[t] and answers[t][1]["text"] == t + " again"
    assert len(calls) < len(texts)  # merged: fewer model calls than requests
    assert max(len(c) for c in calls) > 2 and sum(len(c) for c in calls) == 2 * len(texts)
    assert health["merged_calls"] >= 1 and health["model_calls"] == len(calls)


def test_timeouts_are_503_while_queued_and_504_while_computing(attention_run):
    """Ordered by events, not by sleeps: the first request's computation holds until both answers are in, so
    the second is queued for its whole timeout however slow the machine is."""
    run = load_run(attention_run)
    original = run.task.predict
    computing, release = threading.Event(), threading.Event()

    def held(model, inputs, **kw):
        computing.set()
        release.wait(60)
        return original(model, inputs, **kw)

    run.task.predict = held
    statuses = {}
    with TestClient(create_app(run, ServeSettings(timeout_s=0.4, max_wait_ms=0))) as c:

        def ask(name):
            statuses[name] = c.post("/predict", json={"inputs": [name]})

        first = threading.Thread(target=ask, args=("first",))
        first.start()
        assert computing.wait(60), "the first request never reached the model"
        second = threading.Thread(target=ask, args=("second",))
        second.start()
        first.join(60)
        second.join(60)
        try:
            assert_json_error(statuses["first"], 504, "did not answer within 0.4 s")
            assert_json_error(statuses["second"], 503, "busy")
            assert statuses["second"].headers["retry-after"] == "1"
        finally:
            run.task.predict = original
            release.set()  # the first computation finishes; the second was never computed
        assert c.post("/predict", json={"inputs": ["fine"]}).status_code == 200


def test_bad_settings_and_runs(tmp_path, attention_run):
    with pytest.raises(RnnkitError, match="max-batch must be at least 1"):
        ServeSettings(max_batch=0)
    with pytest.raises(RnnkitError, match="no run folder"):
        create_app(tmp_path / "missing")


def test_generate_from_a_language_model(lm_run):
    with TestClient(create_app(lm_run)) as c:
        info = c.get("/info").json()
        assert info["page"]["generate"] is True and info["page"]["view"] == "continue"
        body = {"prompts": ["the qu", ""], "max_tokens": 12, "num_samples": 2, "seed": 1, "temperature": 0.8}
        a = c.post("/generate", json=body)
        assert a.status_code == 200, a.text
        samples = a.json()["samples"]
        assert len(samples) == 4 and all(isinstance(s, dict) for s in samples)
        assert c.post("/generate", json=body).json() == a.json()  # seeded
        (r,) = c.post("/predict", json={"inputs": ["the qu"]}).json()["results"]
        assert r["prompt"] == "the qu" and isinstance(r["continuation"], str)
        assert_json_error(c.post("/generate", json={"num_samples": 0}), 422, "num_samples")
