"""Encoder configuration: what a Hugging Face `config.json` says, reduced to what our encoder needs.

Owns: reading a BERT-family or RoBERTa-family `config.json` into an `EncoderConfig`, refusing
architectures we do not implement (with the file named), and writing the config back for export.
"""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

from arner_jax.errors import UserError


class CheckpointError(UserError, ValueError):
    """A checkpoint folder or file that cannot be used; the message says which file and why."""


# model_type -> family. The family decides position numbering (RoBERTa counts from
# pad_token_id + 1) and the Hugging Face base-model prefix.
FAMILIES = {
    "bert": "bert",
    "roberta": "roberta",
    "xlm-roberta": "roberta",
    "camembert": "roberta",
}
HF_BASE_PREFIX = {"bert": "bert", "roberta": "roberta"}
SUPPORTED_ACTIVATIONS = ("gelu", "gelu_new", "gelu_pytorch_tanh", "gelu_fast", "relu", "silu", "swish")


@dataclasses.dataclass(frozen=True)
class EncoderConfig:
    """Hyper-parameters of a post-norm BERT/RoBERTa encoder (field names as in Hugging Face)."""

    vocab_size: int
    hidden_size: int = 768
    num_hidden_layers: int = 12
    num_attention_heads: int = 12
    intermediate_size: int = 3072
    hidden_act: str = "gelu"  # exact (erf) GELU; "gelu_new"/"gelu_pytorch_tanh" are the tanh form
    hidden_dropout_prob: float = 0.1  # after embeddings, attention output and FFN output
    attention_probs_dropout_prob: float = 0.1  # on attention probabilities
    max_position_embeddings: int = 512
    type_vocab_size: int = 2
    layer_norm_eps: float = 1e-12
    pad_token_id: int = 0
    model_type: str = "bert"  # "bert", "roberta", "xlm-roberta", "camembert"
    # Everything else in the original config.json, kept so that an export writes it back.
    extra: dict = dataclasses.field(default_factory=dict, compare=False, repr=False)

    @property
    def family(self) -> str:
        return FAMILIES[self.model_type]

    @property
    def head_dim(self) -> int:
        return self.hidden_size // self.num_attention_heads

    @property
    def max_text_positions(self) -> int:
        """How many real tokens fit: RoBERTa positions start after the padding index."""
        if self.family == "roberta":
            return self.max_position_embeddings - self.pad_token_id - 1
        return self.max_position_embeddings

    @classmethod
    def from_dict(cls, raw: dict[str, Any], source: str = "config.json") -> EncoderConfig:
        model_type = raw.get("model_type")
        if model_type not in FAMILIES:
            archs = raw.get("architectures")
            raise CheckpointError(
                f"{source}: model_type {model_type!r} (architectures {archs}) is not supported; "
                f"arner_jax encoders implement {sorted(FAMILIES)}. Use a BERT or RoBERTa/XLM-R "
                "checkpoint, or add the architecture to arner_jax.encoders."
            )
        pos_type = raw.get("position_embedding_type", "absolute")
        if pos_type not in (None, "absolute"):
            raise CheckpointError(
                f"{source}: position_embedding_type {pos_type!r} is not supported (only 'absolute')."
            )
        if raw.get("hidden_act", "gelu") not in SUPPORTED_ACTIVATIONS:
            raise CheckpointError(
                f"{source}: hidden_act {raw.get('hidden_act')!r} is not supported; "
                f"expected one of {SUPPORTED_ACTIVATIONS}."
            )
        names = {f.name for f in dataclasses.fields(cls)} - {"extra"}
        known = {k: raw[k] for k in names if k in raw and raw[k] is not None}
        if "vocab_size" not in known:
            raise CheckpointError(f"{source}: no vocab_size.")
        if known.get("hidden_size", 768) % known.get("num_attention_heads", 12):
            raise CheckpointError(f"{source}: hidden_size is not a multiple of num_attention_heads.")
        extra = {k: v for k, v in raw.items() if k not in names}
        return cls(**known, extra=extra)

    @classmethod
    def from_file(cls, path: str | Path) -> EncoderConfig:
        path = Path(path)
        try:
            raw = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise CheckpointError(f"{path}: no config.json; a Hugging Face model folder needs one.") from None
        except json.JSONDecodeError as err:
            raise CheckpointError(f"{path}: not valid JSON (line {err.lineno}): {err.msg}.") from None
        if raw.get("model_type") == "span-marker" and isinstance(raw.get("encoder"), dict):
            # a span_marker folder (its save_pretrained) keeps its encoder's config.json under "encoder"
            return cls.from_dict(raw["encoder"], source=f"{path} [encoder]")
        return cls.from_dict(raw, source=str(path))

    def replace(self, **changes) -> EncoderConfig:
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        """The Hugging Face `config.json` content (original extra keys kept)."""
        out = dict(self.extra)
        out.update({f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "extra"})
        out.setdefault("position_embedding_type", "absolute")
        return out
