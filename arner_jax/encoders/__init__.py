"""Flax BERT-family and RoBERTa/XLM-R encoders and their Hugging Face checkpoints."""
from arner_jax.encoders.config import CheckpointError, EncoderConfig
from arner_jax.encoders.hf_weights import WEIGHT_TABLE, hf_to_params, params_to_hf, read_state_dict
from arner_jax.encoders.model import (
    ATTENTION_IMPLEMENTATIONS,
    REMAT_POLICIES,
    Encoder,
    KeyedMask,
    stack_layer_params,
    unstack_layer_params,
)
from arner_jax.encoders.pretrained import (
    PretrainedEncoder,
    load_pretrained_encoder,
    resolve_model_dir,
    save_pretrained_encoder,
)
from arner_jax.encoders.scratch import small_bert_config, train_wordpiece_tokenizer

__all__ = [
    "ATTENTION_IMPLEMENTATIONS",
    "CheckpointError",
    "Encoder",
    "EncoderConfig",
    "KeyedMask",
    "PretrainedEncoder",
    "REMAT_POLICIES",
    "WEIGHT_TABLE",
    "hf_to_params",
    "load_pretrained_encoder",
    "params_to_hf",
    "read_state_dict",
    "resolve_model_dir",
    "save_pretrained_encoder",
    "small_bert_config",
    "stack_layer_params",
    "train_wordpiece_tokenizer",
    "unstack_layer_params",
]
