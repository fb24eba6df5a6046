"""Hugging Face <-> arner_jax encoder weights: the one name-mapping table, and checkpoint files.

Owns: `WEIGHT_TABLE` (our parameter path <-> Hugging Face base-model name, with the transform),
used in both directions, for our stacked layer layout (one `layers/...` array per weight kind,
Hugging Face's layer i at index i of its leading axis); reading `model.safetensors` (single or
sharded) and `pytorch_model.bin` (single or sharded, needs torch) into numpy; shape checks
against the config; and writing an encoder back as a Hugging Face folder.
"""
from __future__ import annotations

import dataclasses
import json
import re
from collections.abc import Iterable
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from flax.traverse_util import flatten_dict

from arner_jax.encoders.config import HF_BASE_PREFIX, CheckpointError, EncoderConfig
from arner_jax.encoders.model import Encoder, stack_layer_params

# (our path, Hugging Face name, transform). A Hugging Face name with "{i}" is layer i's weight,
# which is index i of the leading (layer) axis of our stacked array at "layers/...". "T"
# transposes a PyTorch Linear weight [out, in] into a Flax Dense kernel [in, out] (and back).
WEIGHT_TABLE: tuple[tuple[str, str, str], ...] = (
    ("embeddings/word_embeddings/embedding", "embeddings.word_embeddings.weight", ""),
    ("embeddings/position_embeddings/embedding", "embeddings.position_embeddings.weight", ""),
    ("embeddings/token_type_embeddings/embedding", "embeddings.token_type_embeddings.weight", ""),
    ("embeddings/layer_norm/scale", "embeddings.LayerNorm.weight", ""),
    ("embeddings/layer_norm/bias", "embeddings.LayerNorm.bias", ""),
    ("layers/attention/query/kernel", "encoder.layer.{i}.attention.self.query.weight", "T"),
    ("layers/attention/query/bias", "encoder.layer.{i}.attention.self.query.bias", ""),
    ("layers/attention/key/kernel", "encoder.layer.{i}.attention.self.key.weight", "T"),
    ("layers/attention/key/bias", "encoder.layer.{i}.attention.self.key.bias", ""),
    ("layers/attention/value/kernel", "encoder.layer.{i}.attention.self.value.weight", "T"),
    ("layers/attention/value/bias", "encoder.layer.{i}.attention.self.value.bias", ""),
    ("layers/attention/output/kernel", "encoder.layer.{i}.attention.output.dense.weight", "T"),
    ("layers/attention/output/bias", "encoder.layer.{i}.attention.output.dense.bias", ""),
    ("layers/attention_norm/scale", "encoder.layer.{i}.attention.output.LayerNorm.weight", ""),
    ("layers/attention_norm/bias", "encoder.layer.{i}.attention.output.LayerNorm.bias", ""),
    ("layers/intermediate/kernel", "encoder.layer.{i}.intermediate.dense.weight", "T"),
    ("layers/intermediate/bias", "encoder.layer.{i}.intermediate.dense.bias", ""),
    ("layers/output/kernel", "encoder.layer.{i}.output.dense.weight", "T"),
    ("layers/output/bias", "encoder.layer.{i}.output.dense.bias", ""),
    ("layers/output_norm/scale", "encoder.layer.{i}.output.LayerNorm.weight", ""),
    ("layers/output_norm/bias", "encoder.layer.{i}.output.LayerNorm.bias", ""),
)
# Base-model weights we know and do not use (reported as ignored, never an error).
IGNORED_BASE_NAMES = re.compile(r"^(pooler\..*|embeddings\.position_ids|embeddings\.token_type_ids)$")
# Old TF-converted checkpoints name LayerNorm parameters gamma/beta.
LEGACY_RENAMES = ((".LayerNorm.gamma", ".LayerNorm.weight"), (".LayerNorm.beta", ".LayerNorm.bias"))
WORD_EMBEDDINGS = "embeddings.word_embeddings.weight"


@dataclasses.dataclass
class LoadReport:
    """What loading did besides mapping: names it ignored and why, and notes."""

    ignored: list[str] = dataclasses.field(default_factory=list)  # task heads, pooler, buffers
    notes: list[str] = dataclasses.field(default_factory=list)

    def summary(self) -> str:
        lines = list(self.notes)
        if self.ignored:
            shown = ", ".join(self.ignored[:6]) + (" ..." if len(self.ignored) > 6 else "")
            lines.append(f"ignored {len(self.ignored)} weights not part of the encoder: {shown}")
        return "\n".join(lines)


def expand_table(num_layers: int) -> list[tuple[str, int | None, str, str]]:
    """The table for `num_layers` layers: (our path, layer index or None, Hugging Face name,
    transform), one row per Hugging Face weight."""
    rows = []
    for ours, theirs, transform in WEIGHT_TABLE:
        layers = range(num_layers) if "{i}" in theirs else [None]
        rows += [(ours, i, theirs.format(i=i), transform) for i in layers]
    return rows


def _transform(array: np.ndarray, transform: str) -> np.ndarray:
    return np.ascontiguousarray(array.T) if transform == "T" else array


def _set(tree: dict, path: str, value) -> None:
    *parents, leaf = path.split("/")
    for p in parents:
        tree = tree.setdefault(p, {})
    tree[leaf] = value


def _per_layer_path(path: str, layer: int | None) -> str:
    """Where a stacked weight of one layer sits in the per-layer layout: "layers/x" -> "layer_{i}/x"."""
    return path if layer is None else f"layer_{layer}/" + path.split("/", 1)[1]


def _get(tree: dict, path: str):
    for p in path.split("/"):
        tree = tree[p]
    return tree


def find_prefix(names: Iterable[str], prefix: str | None, source: str) -> str:
    """The prefix in front of the base-model names ("", "bert.", "roberta.", "encoder.", ...)."""
    names = set(names)
    if prefix is not None:
        prefix = prefix if prefix == "" or prefix.endswith(".") else prefix + "."
        if prefix + WORD_EMBEDDINGS not in names:
            raise CheckpointError(f"{source}: no weight named {prefix + WORD_EMBEDDINGS!r}.")
        return prefix
    found = sorted(n[: -len(WORD_EMBEDDINGS)] for n in names if n.endswith(WORD_EMBEDDINGS))
    if not found:
        raise CheckpointError(
            f"{source}: no {WORD_EMBEDDINGS!r} under any prefix; this is not a BERT/RoBERTa checkpoint."
        )
    if len(found) > 1:
        raise CheckpointError(f"{source}: several encoders in one checkpoint (prefixes {found}); pass prefix=.")
    return found[0]


def hf_to_params(state: dict[str, np.ndarray], config: EncoderConfig, prefix: str | None = None,
                 source: str = "checkpoint") -> tuple[dict, EncoderConfig, LoadReport]:
    """Map a Hugging Face state dict onto our parameter tree.

    Returns (params, config, report). `config.vocab_size` follows the word-embedding tensor
    (checkpoints may pad it to a multiple of 8). Missing weights and shapes that contradict the
    config raise `CheckpointError` naming every offending weight.
    """
    report = LoadReport()
    state = dict(state)
    for old, new in LEGACY_RENAMES:
        for name in [n for n in state if n.endswith(old)]:
            state[name[: -len(old)] + new] = state.pop(name)
    prefix = find_prefix(state, prefix, source)
    rows_in_tensor = state[prefix + WORD_EMBEDDINGS].shape[0]
    if rows_in_tensor != config.vocab_size:
        report.notes.append(
            f"vocab_size {config.vocab_size} in the config, {rows_in_tensor} rows in the word "
            "embeddings: using the tensor's size"
        )
        config = config.replace(vocab_size=rows_in_tensor)
    expected = expected_shapes(config)
    params: dict = {}  # built in the per-layer layout, stacked at the end
    missing, bad_shapes, used = [], [], set()
    for ours, layer, theirs, transform in expand_table(config.num_hidden_layers):
        name = prefix + theirs
        if name not in state:
            missing.append(name)
            continue
        value = _transform(np.asarray(state[name], dtype=np.float32), transform)
        want = expected[ours][1:] if layer is not None else expected[ours]
        if value.shape != want:
            shown = value.shape if transform != "T" else value.shape[::-1]
            bad_shapes.append(f"{name}: shape {tuple(shown)} in the checkpoint, "
                              f"{tuple(want if transform != 'T' else want[::-1])} from the config")
        used.add(name)
        _set(params, _per_layer_path(ours, layer), value)
    if missing or bad_shapes:
        problems = [f"missing {m}" for m in missing] + bad_shapes
        raise CheckpointError(
            f"{source}: the weights do not match config.json (hidden_size={config.hidden_size}, "
            f"num_hidden_layers={config.num_hidden_layers}, intermediate_size={config.intermediate_size}):\n  "
            + "\n  ".join(problems[:20]) + ("\n  ..." if len(problems) > 20 else "")
            + "\nCheck that config.json belongs to these weights."
        )
    unexpected = []
    for name in sorted(set(state) - used):
        base = name[len(prefix):] if name.startswith(prefix) else None
        if base is None or IGNORED_BASE_NAMES.match(base):
            report.ignored.append(name)
        else:
            unexpected.append(name)
    if unexpected:
        raise CheckpointError(
            f"{source}: weights inside the encoder that arner_jax does not know: {unexpected[:10]}. "
            "The checkpoint's architecture differs from a post-norm BERT/RoBERTa."
        )
    return stack_layer_params(params), config, report


def params_to_hf(params: dict, config: EncoderConfig, prefix: str = "") -> dict[str, np.ndarray]:
    """Our parameter tree as a Hugging Face state dict (float32 numpy, PyTorch layouts)."""
    params = jax.device_get(params)  # one transfer per array, not one per layer
    state = {}
    for ours, layer, theirs, transform in expand_table(config.num_hidden_layers):
        value = np.asarray(_get(params, ours), dtype=np.float32)
        state[prefix + theirs] = _transform(value if layer is None else value[layer], transform)
    return state


def expected_shapes(config: EncoderConfig) -> dict[str, tuple[int, ...]]:
    """Our parameter shapes, derived from the Flax module itself (no second source of truth)."""
    ids = jnp.zeros((1, 4), jnp.int32)
    shapes = jax.eval_shape(lambda: Encoder(config).init(jax.random.PRNGKey(0), ids))["params"]
    return {"/".join(k): tuple(v.shape) for k, v in flatten_dict(shapes).items()}


# ----------------------------------------------------------------------------- files
SAFETENSORS, SAFETENSORS_INDEX = "model.safetensors", "model.safetensors.index.json"
TORCH_BIN, TORCH_BIN_INDEX = "pytorch_model.bin", "pytorch_model.bin.index.json"


def weight_files(model_dir: Path) -> list[Path]:
    """The weight files of a Hugging Face folder, safetensors preferred over .bin."""
    for single, index in ((SAFETENSORS, SAFETENSORS_INDEX), (TORCH_BIN, TORCH_BIN_INDEX)):
        if (model_dir / single).is_file():
            return [model_dir / single]
        if (model_dir / index).is_file():
            weight_map = json.loads((model_dir / index).read_text(encoding="utf-8"))["weight_map"]
            return [model_dir / f for f in sorted(set(weight_map.values()))]
    raise CheckpointError(
        f"{model_dir}: no weights found; expected {SAFETENSORS}, {SAFETENSORS_INDEX}, {TORCH_BIN} "
        f"or {TORCH_BIN_INDEX}. Save the model with `save_pretrained` into this folder."
    )


def read_weight_file(path: Path) -> dict[str, np.ndarray]:
    """One weight file as float32 numpy arrays (bfloat16/float16 tensors are widened)."""
    if not path.is_file():
        raise CheckpointError(f"{path}: listed in the index but missing.")
    if path.suffix == ".safetensors":
        from safetensors import safe_open

        out = {}
        with safe_open(str(path), framework="np") as f:
            for name in f.keys():
                out[name] = np.asarray(f.get_tensor(name), dtype=np.float32)
        return out
    try:
        import torch
    except ImportError:
        raise CheckpointError(
            f"{path}: reading PyTorch .bin weights needs torch; `pip install arner_jax[torch]`, "
            "or convert the checkpoint to model.safetensors."
        ) from None
    state = torch.load(str(path), map_location="cpu", weights_only=True)
    return {k: v.detach().float().numpy() for k, v in state.items() if hasattr(v, "detach")}


def read_state_dict(model_dir: str | Path) -> dict[str, np.ndarray]:
    """Every tensor of a Hugging Face model folder, by name."""
    state: dict[str, np.ndarray] = {}
    for path in weight_files(Path(model_dir)):
        state.update(read_weight_file(path))
    return state


def write_hf_folder(out_dir: str | Path, state: dict[str, np.ndarray], config_dict: dict) -> Path:
    """Write `config.json` and `model.safetensors` (atomically: temp file, then rename)."""
    from safetensors.numpy import save_file

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    tmp = out_dir / (SAFETENSORS + ".tmp")
    save_file({k: np.ascontiguousarray(v) for k, v in state.items()}, str(tmp), metadata={"format": "pt"})
    tmp.replace(out_dir / SAFETENSORS)
    (out_dir / "config.json").write_text(json.dumps(config_dict, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    return out_dir


def hf_config_dict(config: EncoderConfig, architecture: str | None = None, **updates) -> dict:
    """`config.json` content for a base model (or `architecture`, e.g. BertForTokenClassification)."""
    out = config.to_dict()
    default_arch = {"bert": "BertModel", "roberta": "XLMRobertaModel" if config.model_type == "xlm-roberta"
                    else "RobertaModel"}[config.family]
    out["architectures"] = [architecture or default_arch]
    out.update(updates)
    return out


def base_prefix(config: EncoderConfig) -> str:
    """The attribute name task models put in front of encoder weights ("bert." / "roberta.")."""
    return HF_BASE_PREFIX[config.family] + "."
