"""Loading and saving encoders as Hugging Face folders.

Owns: turning a local folder or a hub id into a local folder (through huggingface_hub's cache,
so that a model once downloaded loads offline), and the two user-facing calls
`load_pretrained_encoder` and `save_pretrained_encoder`.
"""
from __future__ import annotations

import dataclasses
import logging
import os
from pathlib import Path
from typing import Any

import jax.numpy as jnp

from arner_jax.encoders.config import CheckpointError, EncoderConfig
from arner_jax.encoders.hf_weights import (
    LoadReport,
    base_prefix,
    hf_config_dict,
    hf_to_params,
    params_to_hf,
    read_state_dict,
    write_hf_folder,
)
from arner_jax.encoders.model import Encoder

log = logging.getLogger(__name__)

# Files a model folder needs; .bin weights are fetched only when there are no safetensors.
_HUB_PATTERNS = ["*.json", "*.txt", "*.model", "*.safetensors"]


def resolve_model_dir(name_or_path: str | os.PathLike) -> Path:
    """A local folder for `name_or_path`: the folder itself, or the hub snapshot in the cache.

    The cache is tried first without network, so that a model downloaded once keeps loading
    offline (also with HF_HUB_OFFLINE=1).
    """
    path = Path(name_or_path).expanduser()
    if path.is_dir():
        return path
    if path.exists():
        raise CheckpointError(f"{path}: is a file; pass the model folder that holds config.json.")
    name = str(name_or_path)
    if name.startswith((".", "/", "~")) or name.count("/") > 1:
        raise CheckpointError(f"{name}: no such folder (and it does not look like a hub id 'org/name').")
    from huggingface_hub import snapshot_download

    errors = []
    for local_only in (True, False):
        try:
            folder = Path(snapshot_download(name, allow_patterns=_HUB_PATTERNS, local_files_only=local_only))
            if not any(folder.glob("*.safetensors")) and not (folder / "model.safetensors.index.json").exists():
                folder = Path(snapshot_download(name, allow_patterns=_HUB_PATTERNS + ["pytorch_model.bin*"],
                                                local_files_only=local_only))
            return folder
        except Exception as err:  # noqa: BLE001 - the hub raises many kinds; all mean "not there"
            errors.append(f"{'cache' if local_only else 'hub'}: {type(err).__name__}: {err}")
    raise CheckpointError(
        f"{name}: not a local folder, and not loadable from the Hugging Face hub or its cache.\n  "
        + "\n  ".join(errors)
        + "\nPass a folder made by `save_pretrained`, or download the model once with network access."
    )


@dataclasses.dataclass
class PretrainedEncoder:
    """An encoder module with its weights, and where they came from."""

    module: Encoder
    params: dict  # float32 numpy tree; `module.apply({"params": params}, ...)`
    config: EncoderConfig
    model_dir: Path
    report: LoadReport

    def __call__(self, *args, **kwargs):
        return self.module.apply({"params": self.params}, *args, **kwargs)


def load_pretrained_encoder(name_or_path: str | os.PathLike, dtype: Any = jnp.float32,
                            prefix: str | None = None) -> PretrainedEncoder:
    """Load a BERT/RoBERTa/XLM-R encoder from a Hugging Face folder or hub id.

    Any Hugging Face model of those families works (base model, masked LM, token
    classification, SpanMarker's `encoder.` prefix): its encoder weights are found by prefix,
    the heads are ignored and listed in `report`.
    """
    model_dir = resolve_model_dir(name_or_path)
    config = EncoderConfig.from_file(model_dir / "config.json")
    state = read_state_dict(model_dir)
    params, config, report = hf_to_params(state, config, prefix=prefix, source=str(model_dir))
    if report.summary():
        log.info("%s: %s", model_dir, report.summary())
    return PretrainedEncoder(Encoder(config, dtype=dtype), params, config, model_dir, report)


def save_pretrained_encoder(out_dir: str | os.PathLike, params: dict, config: EncoderConfig,
                            tokenizer=None) -> Path:
    """Write our encoder as a Hugging Face base-model folder that `AutoModel` loads."""
    out = write_hf_folder(out_dir, params_to_hf(params, config), hf_config_dict(config))
    if tokenizer is not None:
        tokenizer.save_pretrained(str(out))
    return out


__all__ = [
    "CheckpointError",
    "PretrainedEncoder",
    "base_prefix",
    "load_pretrained_encoder",
    "resolve_model_dir",
    "save_pretrained_encoder",
]
