"""Our Flax encoder against transformers' PyTorch models built with the same random weights."""
from __future__ import annotations

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
from transformers import (
    BertForMaskedLM,
    BertForTokenClassification,
    XLMRobertaForTokenClassification,
)

from arner_jax.encoders import CheckpointError, load_pretrained_encoder
from tests.conftest import save_tiny_hf_model
from tests.helpers import BF16_MAX_TOL, BF16_MEAN_TOL, TOL, batch, max_diff, torch_hidden


@pytest.fixture(scope="module", params=[("bert", True), ("bert", False), ("xlmr", True), ("xlmr", False)],
                ids=["bert-safetensors", "bert-bin", "xlmr-safetensors", "xlmr-bin"])
def pair(request, tmp_path_factory):
    family, safe = request.param
    folder = tmp_path_factory.mktemp(f"{family}_{safe}")
    model = save_tiny_hf_model(folder, family, safe_serialization=safe)
    expected = "model.safetensors" if safe else "pytorch_model.bin"
    assert (folder / expected).is_file()
    return family, model, load_pretrained_encoder(folder)


def apply(ours, attention: str, *args):
    """The loaded encoder with an attention implementation ("auto" is "einsum" on the CPU; "xla" is jax.nn's)."""
    return ours.module.clone(attention=attention).apply({"params": ours.params}, *map(jnp.asarray, args))


@pytest.mark.parametrize("attention", ["einsum", "xla"])
def test_padding_mask(pair, attention):
    family, model, ours = pair
    ids, mask = batch(family)
    d = max_diff(apply(ours, attention, ids, mask), torch_hidden(model, ids, mask), mask)
    assert d <= TOL, d


@pytest.mark.parametrize("attention", ["einsum", "xla"])
def test_full_matrix_mask(pair, attention):
    """A [B, T, T] mask (SpanMarker's shape): each query row sees its own pattern of keys."""
    family, model, ours = pair
    ids, _ = batch(family)
    rng = np.random.default_rng(1)
    mask3 = rng.integers(0, 2, (3, 9, 9))
    mask3[:, np.arange(9), np.arange(9)] = 1  # every token sees itself
    # transformers 5 takes no 3-D masks; the equivalent 4-D additive mask is its documented form.
    additive = torch.from_numpy(np.where(mask3[:, None], 0.0, np.finfo(np.float32).min).astype(np.float32))
    ref = torch_hidden(model, ids, additive)
    d = max_diff(apply(ours, attention, ids, mask3), ref)
    assert d <= TOL, d
    # And the pattern matters: the padding-only answer differs.
    assert max_diff(ours(jnp.asarray(ids), None), ref) > 1e-3


def test_token_types_and_position_ids(pair):
    family, model, ours = pair
    ids, mask = batch(family)
    types = np.zeros_like(ids) if family == "xlmr" else (np.arange(9)[None] >= 4).repeat(3, 0).astype(np.int64)
    pad = ours.config.pad_token_id
    positions = (np.arange(9)[None] * 2 + 3 + pad).repeat(3, 0) % 60  # arbitrary explicit ids
    ref = torch_hidden(model, ids, mask, token_type_ids=types, position_ids=positions)
    out = ours(jnp.asarray(ids), jnp.asarray(mask), jnp.asarray(types), jnp.asarray(positions))
    d = max_diff(out, ref, mask)
    assert d <= TOL, d
    assert max_diff(ours(jnp.asarray(ids), jnp.asarray(mask)), ref, mask) > 1e-3


def test_bfloat16_within_stated_tolerance(pair):
    family, model, ours = pair
    ids, mask = batch(family)
    ref = torch_hidden(model, ids, mask)
    bf16 = ours.module.clone(dtype=jnp.bfloat16).apply({"params": ours.params}, jnp.asarray(ids), jnp.asarray(mask))
    assert bf16.dtype == jnp.bfloat16
    d = np.abs(np.asarray(bf16, np.float32) - ref)[mask.astype(bool)]
    assert d.max() <= BF16_MAX_TOL and d.mean() <= BF16_MEAN_TOL, (d.max(), d.mean())


def test_dropout_is_active_in_training_only(pair):
    _, _, ours = pair
    ids, mask = batch("bert")
    ids = jnp.asarray(ids % 100 + 3)
    rngs = {"dropout": jax.random.PRNGKey(0)}
    a = ours.module.apply({"params": ours.params}, ids, jnp.asarray(mask), deterministic=False, rngs=rngs)
    b = ours.module.apply({"params": ours.params}, ids, jnp.asarray(mask), deterministic=True)
    assert max_diff(a, b) > 1e-2


def test_jit_and_params_float32(pair):
    _, _, ours = pair
    ids, mask = batch("bert")
    out = jax.jit(ours.module.apply)({"params": ours.params}, jnp.asarray(ids % 100 + 3), jnp.asarray(mask))
    assert out.shape == (3, 9, 32)
    assert all(p.dtype == np.float32 for p in jax.tree_util.tree_leaves(ours.params))


@pytest.mark.parametrize("model_class,family", [(BertForTokenClassification, "bert"), (BertForMaskedLM, "bert"),
                                                (XLMRobertaForTokenClassification, "xlmr")])
def test_task_checkpoints_load_their_encoder(tmp_path, model_class, family):
    """AraBERT-style MLM and token-classification folders: encoder found under its prefix."""
    model = save_tiny_hf_model(tmp_path, family, model_class=model_class)
    ours = load_pretrained_encoder(tmp_path)
    assert ours.report.ignored, "the task head should be reported as ignored"
    ids, mask = batch(family)
    base = model.bert if family == "bert" else model.roberta
    assert max_diff(ours(jnp.asarray(ids), jnp.asarray(mask)), torch_hidden(base, ids, mask), mask) <= TOL


def test_sharded_safetensors_and_legacy_names(tmp_path):
    """A sharded checkpoint with an index, and LayerNorm.gamma/beta names from old TF exports."""
    from safetensors.numpy import load_file, save_file

    model = save_tiny_hf_model(tmp_path, "bert")
    state = load_file(str(tmp_path / "model.safetensors"))
    (tmp_path / "model.safetensors").unlink()
    renamed = {k.replace("LayerNorm.weight", "LayerNorm.gamma").replace("LayerNorm.bias", "LayerNorm.beta"): v
               for k, v in state.items()}
    names = sorted(renamed)
    shards = {"model-00001-of-00002.safetensors": names[::2], "model-00002-of-00002.safetensors": names[1::2]}
    weight_map = {}
    for file, keys in shards.items():
        save_file({k: renamed[k] for k in keys}, str(tmp_path / file))
        weight_map.update(dict.fromkeys(keys, file))
    (tmp_path / "model.safetensors.index.json").write_text(json.dumps({"metadata": {}, "weight_map": weight_map}))
    ours = load_pretrained_encoder(tmp_path)
    ids, mask = batch("bert")
    assert max_diff(ours(jnp.asarray(ids), jnp.asarray(mask)), torch_hidden(model, ids, mask), mask) <= TOL


def test_padded_vocabulary_read_from_tensor(tmp_path):
    """Checkpoints may pad the embedding matrix (e.g. to a multiple of 8): the tensor decides."""
    model = save_tiny_hf_model(tmp_path, "bert")
    model.resize_token_embeddings(128)
    model.save_pretrained(str(tmp_path))
    config = json.loads((tmp_path / "config.json").read_text())
    config["vocab_size"] = 120
    (tmp_path / "config.json").write_text(json.dumps(config))
    ours = load_pretrained_encoder(tmp_path)
    assert ours.config.vocab_size == 128 and ours.report.notes


def test_missing_weight_is_named(tmp_path):
    from safetensors.numpy import load_file, save_file

    save_tiny_hf_model(tmp_path, "bert")
    state = load_file(str(tmp_path / "model.safetensors"))
    del state["encoder.layer.1.output.dense.weight"]
    save_file(state, str(tmp_path / "model.safetensors"))
    with pytest.raises(CheckpointError, match=r"missing encoder\.layer\.1\.output\.dense\.weight"):
        load_pretrained_encoder(tmp_path)
