"""The encoder's stacked layer layout, its conversion from the per-layer layout of older run
folders, the attention implementations and the remat policies."""
from __future__ import annotations

import warnings

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from arner_jax.encoders import (
    REMAT_POLICIES,
    Encoder,
    EncoderConfig,
    hf_to_params,
    stack_layer_params,
    unstack_layer_params,
)
from arner_jax.encoders import model as model_module
from arner_jax.encoders.hf_weights import expand_table
from arner_jax.encoders.model import resolve_attention
from arner_jax.models.tagger.family import Tagger
from tests.conftest import save_tiny_hf_model
from tests.helpers import TOL, batch, max_diff, torch_hidden


def tiny_config(**changes) -> EncoderConfig:
    return EncoderConfig(vocab_size=120, hidden_size=32, num_hidden_layers=3, num_attention_heads=4,
                         intermediate_size=37, max_position_embeddings=64).replace(**changes)


def same_tree(a, b) -> bool:
    return (jax.tree.structure(a) == jax.tree.structure(b)
            and all(np.array_equal(np.asarray(x), np.asarray(y)) for x, y in zip(jax.tree.leaves(a),
                                                                                  jax.tree.leaves(b))))


def test_stack_and_unstack_are_inverse():
    config = tiny_config()
    model = Tagger(config, num_heads=5, num_classes=3)
    params = jax.device_get(model.init(jax.random.PRNGKey(0), jnp.zeros((1, 6), jnp.int32))["params"])
    old = unstack_layer_params(params)
    assert set(old["encoder"]) == {"embeddings", "layer_0", "layer_1", "layer_2"}
    assert old["encoder"]["layer_2"]["intermediate"]["kernel"].shape == (32, 37)
    np.testing.assert_array_equal(old["encoder"]["layer_1"]["attention"]["query"]["kernel"],
                                  params["encoder"]["layers"]["attention"]["query"]["kernel"][1])
    assert set(old) == {"encoder", "head_kernel", "head_bias"}
    assert same_tree(stack_layer_params(old), params)
    assert same_tree(unstack_layer_params(stack_layer_params(old)), old)
    assert isinstance(stack_layer_params(old)["encoder"]["layers"]["output"]["bias"], np.ndarray)
    # Optimizer states mirror the parameters inside named tuples: converted as well.
    opt_state = optax.adamw(1e-3).init(params)
    old_state = unstack_layer_params(opt_state)
    assert "layer_0" in old_state[0].mu["encoder"]
    assert same_tree(stack_layer_params(old_state), opt_state)


def test_stacking_refuses_gaps_in_the_layer_numbers():
    layer = {"output": {"bias": np.zeros(3)}}
    with pytest.raises(ValueError, match="layer_0 ... layer_"):
        stack_layer_params({"embeddings": {}, "layer_0": layer, "layer_2": layer})


def test_old_layout_tree_gives_the_old_outputs(tmp_path):
    """A per-layer tree named as the old table named it, stacked, runs as transformers does (and
    so as the old unrolled module did, which matched transformers to 1e-5)."""
    model = save_tiny_hf_model(tmp_path, "bert", num_hidden_layers=3)
    state = {k: v.numpy() for k, v in model.state_dict().items() if not k.startswith("pooler")}
    config = EncoderConfig.from_file(tmp_path / "config.json")
    old: dict = {}
    for ours, layer, theirs, transform in expand_table(config.num_hidden_layers):
        path = ours if layer is None else ours.replace("layers/", f"layer_{layer}/", 1)
        node = old
        *parents, leaf = path.split("/")
        for p in parents:
            node = node.setdefault(p, {})
        node[leaf] = state[theirs].T if transform == "T" else state[theirs]
    params = stack_layer_params(old)
    assert same_tree(params, hf_to_params(state, config)[0])
    ids, mask = batch("bert")
    out = Encoder(config).apply({"params": params}, jnp.asarray(ids), jnp.asarray(mask))
    assert max_diff(out, torch_hidden(model, ids, mask), mask) <= TOL


# ----------------------------------------------------------------------------- attention
def masks(B=3, T=9):
    """A [B, T] padding mask and a [B, T, T] pattern with one fully masked query row."""
    _, pad = batch("bert", B=B, T=T)
    full = np.random.default_rng(2).integers(0, 2, (B, T, T))
    full[:, np.arange(T), np.arange(T)] = 1
    full[0, 3] = 0  # a query that sees nothing: finite (uniform) as with float32's most negative bias
    return pad, full


@pytest.mark.parametrize("dtype,tol", [(jnp.float32, 1e-6), (jnp.bfloat16, 0.05)])
def test_xla_and_einsum_attention_agree(dtype, tol):
    config = tiny_config()
    ids, _ = batch("bert")
    params = Encoder(config).init(jax.random.PRNGKey(1), jnp.asarray(ids))["params"]
    for mask in masks():
        outs = [Encoder(config, dtype, attention=a).apply({"params": params}, jnp.asarray(ids), jnp.asarray(mask))
                for a in ("einsum", "xla", "auto")]
        assert all(np.isfinite(np.asarray(o, np.float32)).all() for o in outs)
        assert max_diff(outs[0], outs[1]) <= tol
        assert max_diff(outs[0], outs[2]) == 0.0  # auto is einsum on the CPU


def test_auto_keeps_attention_dropout_in_training(monkeypatch):
    config = tiny_config()
    assert resolve_attention("auto", config, jnp.float32, 2, deterministic=False) == "einsum"
    # on the CPU the einsum path is also the faster one outside training (3-19% in inference)
    assert resolve_attention("auto", config, jnp.float32, 2, deterministic=True) == "einsum"
    no_dropout = config.replace(attention_probs_dropout_prob=0.0)
    assert resolve_attention("auto", no_dropout, jnp.float32, 2, deterministic=False) == "einsum"
    monkeypatch.setattr(jax, "default_backend", lambda: "tpu")
    assert resolve_attention("auto", no_dropout, jnp.float32, 2, deterministic=False) == "xla"
    monkeypatch.setattr(jax, "default_backend", lambda: "gpu")
    assert resolve_attention("auto", config, jnp.bfloat16, 2, deterministic=True) == "cudnn"
    assert resolve_attention("auto", config, jnp.bfloat16, None, deterministic=True) == "cudnn"
    assert resolve_attention("auto", config, jnp.bfloat16, 3, deterministic=True) == "xla"
    assert resolve_attention("auto", config, jnp.float32, 2, deterministic=True) == "xla"
    assert resolve_attention("auto", config, jnp.bfloat16, 2, deterministic=False) == "einsum"
    with pytest.raises(ValueError, match="attention must be one of"):
        resolve_attention("flash", config, jnp.float32, 2, True)


def test_explicit_fused_attention_in_training_warns_that_it_drops_attention_dropout():
    config = tiny_config()
    ids, mask = batch("bert")
    module = Encoder(config, attention="xla")
    params = module.init(jax.random.PRNGKey(1), jnp.asarray(ids))["params"]
    with pytest.warns(UserWarning, match="no attention-probability dropout"):
        module.apply({"params": params}, jnp.asarray(ids), jnp.asarray(mask), deterministic=False,
                     rngs={"dropout": jax.random.PRNGKey(0)})
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        module.apply({"params": params}, jnp.asarray(ids), jnp.asarray(mask))


# ----------------------------------------------------------------------------- remat
@pytest.mark.parametrize("remat", [p if p == "full" else pytest.param(p, marks=pytest.mark.slow)
                                   for p in sorted(set(REMAT_POLICIES) - {"none"})])
def test_remat_policies_give_the_same_gradients(remat):
    """Rematerialisation changes what is stored, never the numbers (dropout included)."""
    config = tiny_config()
    ids, mask = batch("bert")
    model = Tagger(config, 4, 3)
    params = model.init(jax.random.PRNGKey(0), jnp.asarray(ids))["params"]

    def grads(remat):
        def loss(p):
            out = model.clone(remat=remat).apply({"params": p}, jnp.asarray(ids), jnp.asarray(mask),
                                                 deterministic=False, rngs={"dropout": jax.random.PRNGKey(7)})
            return (out ** 2).mean()
        return jax.jit(jax.grad(loss))(params)

    diff = jax.tree.map(lambda a, b: float(jnp.abs(a - b).max()), grads("none"), grads(remat))
    assert max(jax.tree.leaves(diff)) <= 1e-6
    with pytest.raises(ValueError, match="remat must be one of"):
        Encoder(config, remat="some").init(jax.random.PRNGKey(0), jnp.asarray(ids))


@pytest.mark.parametrize("remat", ["none", "full"])
def test_unrolled_layers_compute_what_the_loop_computes(monkeypatch, remat):
    """Up to UNROLLED_UP_TO layers run without a loop: the same outputs and gradients, dropout included."""
    config = tiny_config()  # 3 layers: unrolled by default
    ids, mask = batch("bert")
    model = Tagger(config, 4, 3, remat=remat)
    params = model.init(jax.random.PRNGKey(0), jnp.asarray(ids))["params"]

    def run():
        def loss(p):
            out = model.apply({"params": p}, jnp.asarray(ids), jnp.asarray(mask), deterministic=False,
                              rngs={"dropout": jax.random.PRNGKey(7)})
            return (out ** 2).mean(), out
        text = jax.jit(jax.grad(loss, has_aux=True)).lower(params).as_text()
        return jax.jit(jax.grad(loss, has_aux=True))(params), text.count("stablehlo.while")

    (grads, out), loops = run()
    monkeypatch.setattr(model_module, "UNROLLED_UP_TO", 2)
    (rolled_grads, rolled_out), rolled_loops = run()
    assert loops < rolled_loops  # the rolled program has the layers' loops (forward and backward), this one not
    assert max_diff(out, rolled_out) <= 1e-6
    diff = jax.tree.map(lambda a, b: float(jnp.abs(a - b).max()), grads, rolled_grads)
    assert max(jax.tree.leaves(diff)) <= 1e-6


def test_layers_compile_once():
    """The layers run as one scanned body: the HLO holds one while loop, not one body per layer."""
    config = tiny_config(num_hidden_layers=6)
    ids = jnp.zeros((2, 8), jnp.int32)
    module = Encoder(config)
    params = module.init(jax.random.PRNGKey(0), ids)["params"]
    text = jax.jit(module.apply).lower({"params": params}, ids).as_text()
    assert text.count("stablehlo.while") == 1
