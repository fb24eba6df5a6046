"""The training loop's own rules: its state survives a checkpoint round trip; early stopping."""
from __future__ import annotations

import json

import pytest

from arner_jax.train.loop import LoopState
from tests.conftest import train_run


def test_loop_state_round_trips_through_json():
    state = LoopState(epoch=2, batch=5, step=37, loss_sum=1.5, loss_count=5, best=0.25, best_epoch=2,
                      history=[{"epoch": 1, "val_f1": 0.1}], timing=[{"epoch": 1, "train_seconds": 1.0}])
    assert LoopState.from_dict(json.loads(json.dumps(state.to_dict()))) == state
    assert LoopState.from_dict({"epoch": 1, "unknown_key": 3}) == LoopState(epoch=1)


@pytest.mark.slow
def test_patience_stops_the_run_after_epochs_without_improvement(tiny_bert, tmp_path):
    """With a learning rate too small to change the predictions, validation F1 never improves after epoch 1:
    the run stops after `patience` more epochs and keeps epoch 1."""
    metrics = train_run(tmp_path / "run", "wojood_nested", "--synthetic", "--synthetic_sizes", "64", "16", "16",
                        "--bert_model", str(tiny_bert), "--max_length", "64", "--batch_size", "8", "--lr", "1e-12",
                        "--select_by", "f1", "--max_epochs", "6", "--patience", "2")
    assert (metrics["epochs_run"], metrics["best_epoch"], metrics["stopped_early"]) == (3, 1, True)
    assert [h["improved"] for h in metrics["history"]] == [True, False, False]
