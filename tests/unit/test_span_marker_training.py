"""SpanMarker trained as span_marker 1.8.1 trains it: its rows, its optimizer steps, its dropout, and parity
with the package step by step (recorded, and live when the package is installed)."""
from __future__ import annotations

import json
import math
import os

import numpy as np
import pytest

from arner_jax.models.span_marker import spans as S
from benchmarks import span_marker_training_parity as parity
from tests.conftest import ARABIC_TEXT


def _split(setting: str = "flat", batch_size: int = 8):
    """Our span split of a recording's sentences (the package's tokenizer and labels), and its config."""
    from arner_jax.config import RunConfig
    from arner_jax.data.wojood import Sentence
    from arner_jax.models.base import family_for
    from arner_jax.models.span_marker.checkpoint import read_span_marker

    folder = parity.FIXTURES / setting
    job = json.loads((folder / "job.json").read_text(encoding="utf-8"))
    loaded = read_span_marker(folder / "initial")
    config = RunConfig(kind=f"span_{setting}", max_length=job["model_max_length"],
                       marker_max_length=job["marker_max_length"], entity_max_length=job["entity_max_length"],
                       batch_size=batch_size)
    family = family_for(config.kind)
    sentences = [Sentence(s["words"], s["wojood"]) for s in job["sentences"]]
    return family.encode(config, loaded.span.labels, loaded.tokenizer, sentences, job["model_max_length"]), job


def test_training_rows_are_span_markers_spread_samples():
    """Trainer.spread_sample: one row per text and chunk of spans, a chunk holding what the row has room for,
    (M + 2K - tokens) // 2 spans, in text order; never two texts in a row."""
    from arner_jax.encoders import train_wordpiece_tokenizer

    tok = train_wordpiece_tokenizer(ARABIC_TEXT, vocab_size=200)
    M, K, E = 24, 4, 3
    pieces = [p for i, t in enumerate(ARABIC_TEXT[:4]) for p in S.make_pieces(S.tokenize(tok, t.split()), i, M, E)]
    rows = S.package_rows(pieces, M + 2 * K)
    want = []
    for p, piece in enumerate(pieces):
        room = (M + 2 * K - len(piece)) // 2  # the package's sample_marker_space
        want += [(p, lo, min(lo + room, len(piece.spans))) for lo in range(0, len(piece.spans), room)]
    assert [(c.piece, c.lo, c.hi) for row in rows for c in row.chunks] == want
    assert all(len(row.chunks) == 1 for row in rows) and any(len(c) > K for row in rows for c in row.chunks)
    assert [row.length for row in rows] == [len(pieces[p]) + 2 * (hi - lo) for p, lo, hi in want]
    assert len(rows) > len(pieces)  # some texts are spread over several rows


def test_an_epoch_takes_span_markers_steps():
    """Each step sees `batch_size` rows drawn without replacement (the last step the rest), every row once per
    epoch: ceil(rows / batch_size) optimizer steps, as the Transformers Trainer's shuffled DataLoader; the
    batch code lays each row out whole with a slot for every span; later epochs use only the lengths of the
    first (no compilation after it)."""
    split, job = _split()
    B = 8
    rows = split.rows
    plans = [split.train_plan(B, 3407, epoch, job["model_max_length"]) for epoch in range(3)]
    lengths = {length for length, _ in plans[0]}
    for plan in plans:
        assert len(plan) == math.ceil(len(rows) / B)
        assert [len(indices) for _, indices in plan] == [B] * (len(plan) - 1) + [len(rows) - B * (len(plan) - 1)]
        assert sorted(i for _, indices in plan for i in indices) == list(range(len(rows)))
        assert {length for length, _ in plan} <= lengths
    assert plans[0] != plans[1]  # reshuffled every epoch
    for length, indices in plans[0]:
        batch = split.collate(indices, B, length)
        assert length >= max(rows[i].length for i in indices) and batch["starts"].shape[1] == length // 2
        for r, i in enumerate(indices):
            (chunk,) = rows[i].chunks
            piece = split.pieces[chunk.piece]
            k = len(chunk)
            assert batch["num_spans"][r] == k and batch["label_mask"][r].sum() == k
            first, last = piece.token_positions(piece.spans[chunk.lo:chunk.hi])
            np.testing.assert_array_equal(batch["text_index"][r, batch["starts"][r, :k]], first)
            np.testing.assert_array_equal(batch["text_index"][r, batch["ends"][r, :k]], last)
            np.testing.assert_array_equal(batch["labels"][r, :k], piece.labels[chunk.lo:chunk.hi])
        assert not batch["label_mask"][len(indices):].any()


def test_dropout_where_span_marker_applies_it():
    """span_marker 1.8.1 modeling.py applies its one Dropout module twice: to the encoder's last hidden states
    `[B, L, H]` and to the marker features `[B, K, 2H]`, at the same rate."""
    import flax.linen as nn
    import jax

    from arner_jax.encoders import small_bert_config
    from arner_jax.models.span_marker.model import SpanMarker

    enc = small_bert_config(64, hidden_size=16, num_layers=1, num_heads=2, max_positions=32)
    model = SpanMarker(enc, 3, 60, 61, dropout=0.3)
    B, L, K = 2, 12, 3
    starts, ends = (np.tile(np.arange(at, at + K), (B, 1)).astype(np.int32) for at in (4, 7))
    batch = (np.ones((B, L), np.int32), np.ones((B, L), np.int32), np.zeros((B, L), np.int32), starts, ends,
             np.full((B,), K, np.int32), np.tile(np.arange(4, dtype=np.int32), (B, 1)))
    params = jax.eval_shape(model.init, jax.random.PRNGKey(0), *batch)["params"]  # shapes only: nothing compiles
    seen = []

    def record(next_fun, args, kwargs, context):
        if isinstance(context.module, nn.Dropout) and context.method_name == "__call__" \
                and "encoder" not in context.module.path:
            seen.append((tuple(args[0].shape), context.module.rate))
        return next_fun(*args, **kwargs)

    with nn.intercept_methods(record):
        jax.eval_shape(lambda p: model.apply({"params": p}, *batch, deterministic=False,
                                             rngs={"dropout": jax.random.PRNGKey(1)}), params)
    assert seen == [((B, L, 16), 0.3), ((B, K, 32), 0.3)]


@pytest.mark.parametrize("setting", parity.SETTINGS)
def test_recorded_training_parity_with_span_marker(setting, capsys):
    """Our trainer replays span_marker 1.8.1's recorded training (tests/fixtures/span_marker_training, written by
    `python -m benchmarks.span_marker_training_parity --record`): the same rows, the same steps per epoch, each
    step's loss within 1e-4 relative, the learning rate, and every final weight within 1e-4; in the trainer's
    own layout (each step's rows packed into fewer, with their text keys only), which computes fewer tokens."""
    figures = parity.replay(parity.FIXTURES / setting)
    with capsys.disabled():
        print(f"\n{setting}: {json.dumps(figures)}")
    assert figures["steps"] >= 20
    assert parity.check(figures) == []
    assert figures["weight_largest_change"] > 100 * parity.WEIGHT_ATOL  # the weights did move
    assert figures["packed_steps"] >= 5 and figures["tokens_computed"] < figures["package_tokens_computed"]


@pytest.mark.slow
def test_live_training_parity_with_span_marker(tmp_path):
    """The same, recorded now by the package itself (ARNER_SPAN_MARKER_PYTHON: a python with span_marker 1.8.1,
    transformers 4.x and torch)."""
    python = os.environ.get("ARNER_SPAN_MARKER_PYTHON")
    if not python:
        pytest.skip("set ARNER_SPAN_MARKER_PYTHON to a python with span_marker 1.8.1 (transformers 4.x) installed")
    parity.record(python, tmp_path)
    for setting in parity.SETTINGS:
        figures = parity.replay(tmp_path / setting)
        assert figures["steps"] >= 20 and parity.check(figures) == [], (setting, figures)


def test_marker_rows_start_as_span_markers():
    """Fine-tuning a pretrained encoder: span_marker 1.8.1 grows the embeddings with resize_token_embeddings(
    pad_to_multiple_of=8, mean_resizing=False), so the added rows (the markers, and the padding to a multiple of
    8) are fresh normal(0, 0.02) draws, as any new embedding row, not the other rows' mean; the rest is kept."""
    from arner_jax.encoders import small_bert_config
    from arner_jax.models.base import family_for

    family = family_for("span_flat")
    encoder = small_bert_config(16, hidden_size=64, num_layers=1, num_heads=2, max_positions=32)
    rng = np.random.default_rng(0)
    pretrained = {"embeddings": {"word_embeddings": {"embedding": rng.normal(5.0, 1.0, (10, 64)).astype(np.float32)}}}
    fresh = rng.normal(0.0, 0.02, (16, 64)).astype(np.float32)  # the model's own initialisation from the seed
    params = {"encoder": {"embeddings": {"word_embeddings": {"embedding": fresh}}}, "classifier": {}}
    got = family.with_pretrained_encoder(params, pretrained, encoder)
    table = np.asarray(got["encoder"]["embeddings"]["word_embeddings"]["embedding"])
    assert table.shape == (16, 64)
    np.testing.assert_array_equal(table[:10], pretrained["embeddings"]["word_embeddings"]["embedding"])
    np.testing.assert_array_equal(table[10:], fresh[10:])
    assert got["classifier"] is params["classifier"]
