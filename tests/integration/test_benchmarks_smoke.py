"""The benchmark scripts still run (smoke runs: small encoders, few steps; no timing asserted)."""
from __future__ import annotations

import json

import numpy as np
import pytest

from tests.conftest import shared_path


@pytest.mark.slow
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
    machine = json.loads(out.read_text())["machine"]
    assert machine["versions"]["seqeval"] == "1.2.2" and machine["cpu"] and "isa" in machine


def test_score_files_benchmark_smoke(tmp_path):
    from benchmarks import score_files

    out = tmp_path / "score_files.json"
    report = score_files.main(["--data", str(shared_path("data", "wojood_sample")), "--sentences", "30", "--copies",
                               "2", "--out", str(out)])
    assert report["nested"]["identical"] and report["flat"]["identical"] and report["nested"]["ours"]["n"] == 2
    saved = json.loads(out.read_text())
    assert saved["machine"]["versions"]["seqeval"] == "1.2.2" and saved["startup_seconds"]["score_help"]["median"] > 0


@pytest.mark.slow
def test_gpu_benchmark_runs_tiny_on_cpu(tmp_path, monkeypatch):
    """benchmarks.gpu end to end on the CPU with a tiny encoder: the cuDNN variant falls back to
    XLA attention with its reason, every figure of the summary is there, the JSON is written."""
    from benchmarks import gpu

    monkeypatch.delenv("OUT", raising=False)
    out = tmp_path / "gpu.json"
    report = gpu.main(["--size", "tiny", "--steps", "2", "--warmup", "1", "--phases", "matmul", "flops", "ours_cudnn",
                       "torch_eager", "--out", str(out)])
    assert json.loads(out.read_text())["summary"] == json.loads(json.dumps(report["summary"]))
    assert not report["errors"], report["errors"]
    ours, eager = report["variants"]["ours cudnn"], report["variants"]["torch eager"]
    assert ours["attention"] == "xla (cudnn refused)" and ours["cudnn_fallback_reason"]
    assert report["phases"]["flops"]["xla"] > 0 and report["phases"]["flops"]["analytic"] > 0
    rows = {r["variant"]: r for r in report["summary"]}
    assert rows["ours cudnn"]["mfu"] > 0 and rows["ours cudnn"]["speedup_vs_eager"] > 0
    assert np.isfinite(ours["last_loss"]) and np.isfinite(eager["last_loss"])


def test_span_marker_benchmark_says_why_it_skips(monkeypatch, capsys):
    from benchmarks import span_marker_vs_pytorch

    monkeypatch.delenv("ARNER_SPAN_MARKER_PYTHON", raising=False)
    assert span_marker_vs_pytorch.main(["--epochs", "1"]) is None
    assert "set ARNER_SPAN_MARKER_PYTHON" in capsys.readouterr().out
