"""Data parallelism: 1, 2 and 4 (fake CPU) devices give the same training, under pmap and shard_map,
with and without gradient accumulation.

The worker runs in its own process because the device count is fixed when JAX starts.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from tests.conftest import REPO
from tests.parallel_worker import CONFIGS, GRADIENT_QUICK, QUICK, SPAN_CONFIGS, SPAN_QUICK


def worker_report(*flags: str) -> dict:
    # the caller's XLA flags (--xla_cpu_max_isa=AVX2, say) stay: the worker runs under the same ISA as the tests
    xla = " ".join(f for f in os.environ.get("XLA_FLAGS", "").split() if "host_platform_device_count" not in f)
    env = dict(os.environ, XLA_FLAGS=f"{xla} --xla_force_host_platform_device_count=4".strip(), JAX_PLATFORMS="cpu")
    out = subprocess.run([sys.executable, "-m", "tests.parallel_worker", *flags], cwd=REPO, env=env,
                         capture_output=True, text=True, timeout=900)
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(out.stdout)


@pytest.fixture(scope="module")
def report():
    """The default set's configurations (`QUICK`, `SPAN_QUICK`): the one-device base, 4-device pmap with
    accumulation, the span model under 2-device shard_map; the gradient report and the batch-size error."""
    return worker_report("--quick")


@pytest.fixture(scope="module")
def full_report():
    """Every configuration (the slow set)."""
    return worker_report()


def configuration_report(request, quick: bool) -> dict:
    return request.getfixturevalue("report" if quick else "full_report")


@pytest.mark.parametrize("wrapper,accum,devices", [
    c if c in QUICK else pytest.param(*c, marks=pytest.mark.slow) for c in CONFIGS])
def test_same_losses_and_parameters_on_any_device_count(request, wrapper, accum, devices):
    """Every configuration trains on the same rows (with accumulation: 2 micro-batches of 4): all equal
    the one-device whole-batch run."""
    report = configuration_report(request, (wrapper, accum, devices) in QUICK)
    run, base = report[f"{wrapper}/accum{accum}/{devices}"], report["pmap/accum1/1"]
    assert run["losses"] == pytest.approx(base["losses"], rel=2e-6)
    assert run["eval_loss"] == pytest.approx(base["eval_loss"], rel=2e-6)
    assert run["max_param_diff"] < 1e-5
    assert run["param_change"] > 1e-3  # the steps moved the weights (so equal weights mean something)
    assert run["same_predictions"]


@pytest.mark.parametrize("wrapper,devices", [
    c if c in SPAN_QUICK else pytest.param(*c, marks=pytest.mark.slow) for c in SPAN_CONFIGS[1:]])
def test_span_model_trains_the_same_on_any_device_count(request, wrapper, devices):
    report = configuration_report(request, (wrapper, devices) in SPAN_QUICK)
    run, base = report[f"span/{wrapper}/{devices}"], report["span/pmap/1"]
    assert run["losses"] == pytest.approx(base["losses"], rel=2e-6)
    assert run["eval_loss"] == pytest.approx(base["eval_loss"], rel=2e-6)
    assert run["max_param_diff"] < 1e-5 and run["param_change"] > 1e-3
    assert run["same_predictions"]


def test_each_step_compiles_once(report):
    for name, run in report.items():
        if isinstance(run, dict) and "compiles_per_step" in run:  # a training run (not the gradient report)
            assert run["compiles_per_step"][0] >= 1, name
            assert not any(run["compiles_per_step"][1:]), name


@pytest.mark.parametrize("name", [n if n in GRADIENT_QUICK else pytest.param(n, marks=pytest.mark.slow)
                                  for n in ("accum2/1", "accum4/1", "accum2/2")])
def test_accumulated_gradient_equals_the_whole_batch(request, name):
    """k micro-batches give the whole batch's loss and every gradient entry (to 1e-6), on 1 and 2 devices."""
    got = configuration_report(request, name in GRADIENT_QUICK)["accumulated_gradient"][name]
    assert got["largest_grad"] > 1e-3  # gradients are not trivially zero
    assert got["max_grad_diff"] <= 1e-6 and got["loss_diff"] <= 1e-6


def test_uneven_global_batch_is_a_clear_error(report):
    assert "cannot be split evenly over 4 devices" in report["uneven_error"]
