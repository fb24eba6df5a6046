"""Our parameters -> Hugging Face names -> transformers: the same outputs (the table both ways)."""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax.traverse_util import flatten_dict
from transformers import AutoModel

from arner_jax.encoders import (
    WEIGHT_TABLE,
    Encoder,
    EncoderConfig,
    hf_to_params,
    load_pretrained_encoder,
    params_to_hf,
    save_pretrained_encoder,
)
from arner_jax.encoders.hf_weights import expand_table
from tests.conftest import tiny_hf_config
from tests.helpers import batch, max_diff, torch_hidden


@pytest.mark.parametrize("family", ["bert", "xlmr"])
def test_random_flax_params_run_identically_in_transformers(tmp_path, family):
    config = EncoderConfig.from_dict(tiny_hf_config(family).to_dict())
    module = Encoder(config)
    ids, mask = batch(family)
    params = module.init(jax.random.PRNGKey(3), jnp.asarray(ids))["params"]
    # Perturb LayerNorms so a scale/bias swap in the table cannot go unnoticed.
    params = jax.tree_util.tree_map_with_path(
        lambda path, p: p + 0.1 * jax.random.normal(jax.random.PRNGKey(len(path)), p.shape)
        if "norm" in jax.tree_util.keystr(path) else p, params)
    save_pretrained_encoder(tmp_path, params, config)
    theirs = AutoModel.from_pretrained(str(tmp_path), attn_implementation="eager").eval()
    assert type(theirs).__name__ == ("BertModel" if family == "bert" else "XLMRobertaModel")
    ours = module.apply({"params": params}, jnp.asarray(ids), jnp.asarray(mask))
    assert max_diff(ours, torch_hidden(theirs, ids, mask), mask) <= 1e-5
    # And back: loading the exported folder gives our exact parameters.
    reloaded = load_pretrained_encoder(tmp_path)
    same = jax.tree_util.tree_map(lambda a, b: np.array_equal(np.asarray(a), np.asarray(b)), params, reloaded.params)
    assert all(jax.tree_util.tree_leaves(same))


def test_table_covers_every_parameter_once():
    config = EncoderConfig(vocab_size=50, hidden_size=16, num_hidden_layers=3, num_attention_heads=2,
                           intermediate_size=24)
    params = Encoder(config).init(jax.random.PRNGKey(0), jnp.zeros((1, 4), jnp.int32))["params"]
    flat = {"/".join(k): v.shape for k, v in flatten_dict(params).items()}
    rows = expand_table(3)
    assert {r[0] for r in rows} == set(flat)
    assert len({r[2] for r in rows}) == len(rows) == 5 + 16 * 3
    assert len(WEIGHT_TABLE) == 21
    # Layer weights are stacked: one array per kind, the layer on the leading axis.
    assert all(flat[ours][0] == 3 for ours, layer, _, _ in rows if layer is not None)
    assert {layer for _, layer, _, _ in rows} == {None, 0, 1, 2}


def test_state_dict_names_are_transformers_names():
    config = EncoderConfig.from_dict(tiny_hf_config("bert").to_dict())
    theirs = AutoModel.from_config(tiny_hf_config("bert"))
    params = Encoder(config).init(jax.random.PRNGKey(0), jnp.zeros((1, 4), jnp.int32))["params"]
    state = params_to_hf(params, config)
    torch_state = {k: v for k, v in theirs.state_dict().items() if not k.startswith("pooler")}
    assert set(state) == set(torch_state)
    assert all(tuple(torch_state[k].shape) == v.shape for k, v in state.items())
    back, _, report = hf_to_params(state, config)
    assert not report.ignored
    assert jax.tree_util.tree_all(jax.tree_util.tree_map(np.array_equal, back, jax.device_get(params)))


def test_layer_i_of_the_stack_is_hugging_face_layer_i():
    """Each layer's weights land at their index of the stacked arrays, both ways."""
    config = EncoderConfig.from_dict(tiny_hf_config("bert").to_dict())
    theirs = {k: v.numpy() for k, v in AutoModel.from_config(tiny_hf_config("bert")).state_dict().items()
              if not k.startswith("pooler")}
    params, _, _ = hf_to_params(theirs, config)
    for i in range(config.num_hidden_layers):
        np.testing.assert_array_equal(params["layers"]["intermediate"]["kernel"][i],
                                      theirs[f"encoder.layer.{i}.intermediate.dense.weight"].T)
        np.testing.assert_array_equal(params["layers"]["output_norm"]["scale"][i],
                                      theirs[f"encoder.layer.{i}.output.LayerNorm.weight"])
    back = params_to_hf(params, config)
    assert set(back) == set(theirs) and all(np.array_equal(back[k], theirs[k]) for k in theirs)
