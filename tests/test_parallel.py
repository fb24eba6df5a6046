"""Data parallelism: 1, 2 and 4 (fake CPU) devices give the same training, under pmap and shard_map.

The worker runs in its own process because the device count is fixed when JAX starts.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from tests.conftest import REPO


@pytest.fixture(scope="module")
def report():
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=4", JAX_PLATFORMS="cpu")
    out = subprocess.run([sys.executable, "-m", "tests.parallel_worker"], cwd=REPO, env=env, capture_output=True,
                         text=True, timeout=900)
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(out.stdout)


@pytest.mark.parametrize("wrapper", ["pmap", "shard_map"])
@pytest.mark.parametrize("accum", [1, 2])
@pytest.mark.parametrize("devices", [1, 2, 4])
def test_same_losses_and_parameters_on_any_device_count(report, wrapper, accum, devices):
    run, base = report[f"{wrapper}/accum{accum}/{devices}"], report[f"pmap/accum{accum}/1"]
    assert run["losses"] == pytest.approx(base["losses"], rel=2e-6)
    assert run["eval_loss"] == pytest.approx(base["eval_loss"], rel=2e-6)
    assert run["max_param_diff"] < 1e-5
    assert run["param_change"] > 1e-3  # the steps moved the weights (so equal weights mean something)
    assert run["same_predictions"]


@pytest.mark.parametrize("name", ["span/pmap/2", "span/pmap/4", "span/shard_map/4"])
def test_span_model_trains_the_same_on_any_device_count(report, name):
    run, base = report[name], report["span/pmap/1"]
    assert run["losses"] == pytest.approx(base["losses"], rel=2e-6)
    assert run["eval_loss"] == pytest.approx(base["eval_loss"], rel=2e-6)
    assert run["max_param_diff"] < 1e-5 and run["param_change"] > 1e-3
    assert run["same_predictions"]


def test_each_step_compiles_once(report):
    for name, run in report.items():
        if isinstance(run, dict):
            assert run["compiles_per_step"][0] >= 1, name
            assert not any(run["compiles_per_step"][1:]), name


def test_gradient_accumulation_updates_every_k_steps(report):
    # with k = 2 the weights move only on every second micro-step: the loss of step 2 equals step 1's
    # model on a new batch; check the sequence differs from the k = 1 run after the first step
    one, two = report["pmap/accum1/1"]["losses"], report["pmap/accum2/1"]["losses"]
    assert one[0] == pytest.approx(two[0], rel=1e-6)
    assert one[1] != pytest.approx(two[1], rel=1e-4)


def test_uneven_global_batch_is_a_clear_error(report):
    assert "cannot be split evenly over 4 devices" in report["uneven_error"]
