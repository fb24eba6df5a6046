"""The benchmark runner still runs (a smoke run: small encoder, one repetition; no timing asserted)."""
from __future__ import annotations

import json

from tests.conftest import shared_path


def test_benchmark_runner_smoke(tmp_path):
    from benchmarks import run

    data = shared_path("data", "wojood_sample")
    out = tmp_path / "bench.json"
    run.main(["--data", str(data), "--size", "small", "--repeats", "1", "--steps", "2", "--only", "train_step",
              "inference", "flops", "--out", str(out)])
    report = json.loads(out.read_text())
    assert report["train_step"]["ours_words_per_s"] > 0 and report["train_step"]["torch_eager_words_per_s"] > 0
    assert report["inference"]["ours_shapes"] <= 8
    assert 0 < report["flops"]["share_of_matmul_rate"]


def test_scorer_benchmark_smoke(tmp_path):
    from benchmarks import scorer

    out = tmp_path / "scorer.json"
    report = scorer.main(["--data", str(shared_path("data", "wojood_sample")), "--sentences", "40", "--repeats", "1",
                          "--out", str(out)])
    assert report["sentences"] == 40 and report["nested"]["identical"] and report["flat"]["identical"]
    assert json.loads(out.read_text())["machine"]["seqeval"] == "1.2.2"


def test_span_marker_benchmark_says_why_it_skips(monkeypatch, capsys):
    from benchmarks import span_marker_vs_pytorch

    monkeypatch.delenv("ARNER_SPAN_MARKER_PYTHON", raising=False)
    assert span_marker_vs_pytorch.main(["--epochs", "1"]) is None
    assert "set ARNER_SPAN_MARKER_PYTHON" in capsys.readouterr().out
