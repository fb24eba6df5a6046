"""SpanMarker checkpoint folders, the PyTorch package's layout (SPEC 7), both ways.

Owns: reading a folder written by `span_marker`'s `save_pretrained` (config.json with model_type
"span-marker" and the encoder config under "encoder", weights `encoder.*` + `classifier.*` in
model.safetensors or pytorch_model.bin, the folder's own tokenizer with `<start>`/`<end>`), and
writing ours in that same layout so that the PyTorch package (and our loader) can load it.
Never reads the hub id recorded in the config: everything comes from the folder.
"""
from __future__ import annotations

import dataclasses
import json
import logging
from pathlib import Path

import numpy as np

from arner_jax.encoders.config import CheckpointError, EncoderConfig
from arner_jax.encoders.hf_weights import (
    hf_config_dict,
    hf_to_params,
    params_to_hf,
    read_state_dict,
    write_hf_folder,
)

log = logging.getLogger("arner_jax")
MODEL_TYPE = "span-marker"
MARKERS = ("<start>", "<end>")
SPAN_MARKER_VERSION = "1.8.1"  # the package version whose layout we write
DEFAULT_MAX_LENGTH = 512  # SpanMarker's model_max_length_default


@dataclasses.dataclass
class SpanConfig:
    """What a span model needs besides its encoder."""

    labels: list[str]  # class names, "O" first
    marker_max_length: int = 128
    entity_max_length: int = 8
    model_max_length: int = DEFAULT_MAX_LENGTH  # M: text tokens per row, special tokens included

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, raw: dict) -> SpanConfig:
        return cls(**{f.name: raw[f.name] for f in dataclasses.fields(cls) if f.name in raw})


def usable_length(model_max_length: int, encoder: EncoderConfig) -> int:
    """M such that positions M + 1 exist: SpanMarker's text position i is i + 2 (BERT: M <= 510)."""
    return min(model_max_length, encoder.max_position_embeddings - 2)


def is_span_marker_folder(path: str | Path) -> bool:
    from arner_jax.data import files

    config = files.location(path) / "config.json"  # local or gs://
    if not files.is_file(config):
        return False
    try:
        return json.loads(files.read_text(config)).get("model_type") == MODEL_TYPE
    except json.JSONDecodeError:
        return False


def load_tokenizer(folder: str | Path, encoder: EncoderConfig):
    """The folder's tokenizer as SpanMarker prepares it: markers present, XLM-R punctuation split."""
    import transformers
    from transformers import AutoTokenizer

    verbosity = transformers.logging.get_verbosity()
    transformers.logging.set_verbosity_error()  # AutoTokenizer warns about model_type span-marker
    try:
        kwargs = {"add_prefix_space": True} if encoder.family == "roberta" else {}
        tokenizer = AutoTokenizer.from_pretrained(str(folder), **kwargs)
    finally:
        transformers.logging.set_verbosity(verbosity)
    add_markers(tokenizer)
    if encoder.model_type == "xlm-roberta" and tokenizer.is_fast:
        from tokenizers import pre_tokenizers

        backend = tokenizer.backend_tokenizer
        if not isinstance(backend.pre_tokenizer, pre_tokenizers.Sequence):
            backend.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.Punctuation(), backend.pre_tokenizer])
    return tokenizer


def add_markers(tokenizer) -> tuple[int, int]:
    """Add `<start>` and `<end>` as special tokens (no-op when present); their ids."""
    tokenizer.add_tokens(list(MARKERS), special_tokens=True)
    start, end = tokenizer.convert_tokens_to_ids(list(MARKERS))
    return int(start), int(end)


@dataclasses.dataclass
class LoadedSpanMarker:
    encoder: EncoderConfig
    span: SpanConfig
    params: dict  # {"encoder": ..., "classifier": {"kernel", "bias"}}
    tokenizer: object


def read_span_marker(folder: str | Path) -> LoadedSpanMarker:
    """A PyTorch SpanMarker checkpoint folder as our parameters and settings."""
    folder = Path(folder)
    path = folder / "config.json"
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise CheckpointError(f"{folder}: no config.json; pass a folder written by SpanMarker's "
                              "save_pretrained.") from None
    if raw.get("model_type") != MODEL_TYPE:
        raise CheckpointError(f"{path}: model_type is {raw.get('model_type')!r}, not {MODEL_TYPE!r}.")
    if "encoder" not in raw:
        raise CheckpointError(f"{path}: no 'encoder' section (the encoder's config.json).")
    encoder = EncoderConfig.from_dict(raw["encoder"], source=f"{path} [encoder]")
    params, encoder, report = span_marker_params(read_state_dict(folder), encoder, str(folder))
    weight = params["classifier"]["kernel"].T
    # the package keeps no id2label of its own when its labels equal the encoder's (labels given without a
    # tagging scheme): its config reads the encoder's then
    id2label = {int(k): v for k, v in (raw.get("id2label") or raw["encoder"].get("id2label") or {}).items()}
    labels = [id2label[i] for i in range(len(id2label))]
    if weight.shape != (len(labels), 2 * encoder.hidden_size):
        raise CheckpointError(f"{folder}: classifier.weight has shape {tuple(weight.shape)}, expected "
                              f"({len(labels)}, {2 * encoder.hidden_size}) from id2label and hidden_size.")
    tokenizer = load_tokenizer(folder, encoder)
    if len(tokenizer) > encoder.vocab_size:
        raise CheckpointError(f"{folder}: the tokenizer has {len(tokenizer)} tokens (markers included) but the "
                              f"embeddings only {encoder.vocab_size} rows.")
    tok_max = getattr(tokenizer, "model_max_length", None) or DEFAULT_MAX_LENGTH
    m = min(tok_max, raw.get("model_max_length") or raw.get("model_max_length_default", DEFAULT_MAX_LENGTH))
    span = SpanConfig(labels, int(raw.get("marker_max_length", 128)), int(raw.get("entity_max_length", 8)), int(m))
    if usable_length(span.model_max_length, encoder) < span.model_max_length:
        log.info("%s: model_max_length %d overflows %d position embeddings with SpanMarker's +2 offset; "
                 "using %d (longer texts are windowed)", folder, span.model_max_length,
                 encoder.max_position_embeddings, usable_length(span.model_max_length, encoder))
    if report.summary():
        log.info("%s: %s", folder, report.summary())
    return LoadedSpanMarker(encoder, span, params, tokenizer)


def span_marker_params(state: dict[str, np.ndarray], encoder: EncoderConfig, source: str):
    """A SpanMarker state dict (`encoder.*`, `classifier.*`) as our parameters; (params, encoder, report)."""
    if "classifier.weight" not in state or "classifier.bias" not in state:
        raise CheckpointError(f"{source}: no classifier.weight / classifier.bias; not a SpanMarker checkpoint.")
    enc_params, encoder, report = hf_to_params({k: v for k, v in state.items() if k != "classifier.weight"
                                                and k != "classifier.bias"}, encoder, prefix="encoder.",
                                               source=source)
    classifier = {"kernel": np.ascontiguousarray(state["classifier.weight"].T), "bias": state["classifier.bias"]}
    return {"encoder": enc_params, "classifier": classifier}, encoder, report


def span_marker_config(encoder: EncoderConfig, span: SpanConfig, name_or_path: str) -> dict:
    """config.json content in the PyTorch package's layout (the keys of its save_pretrained)."""
    import transformers

    iob = _encoder_tags(encoder, span.labels)
    reduced = {i: span.labels.index(tag[2:]) if tag != "O" else 0 for i, tag in enumerate(iob)}
    enc = hf_config_dict(encoder, _name_or_path=name_or_path, id2label=dict(enumerate(iob)),
                         label2id={t: i for i, t in enumerate(iob)})
    return {
        "architectures": ["SpanMarkerModel"],
        "dtype": "float32",
        "encoder": enc,
        "entity_max_length": span.entity_max_length,
        "id2label": {str(i): label for i, label in enumerate(span.labels)},
        "id2reduced_id": {str(k): v for k, v in reduced.items()},
        "label2id": {label: i for i, label in enumerate(span.labels)},
        "marker_max_length": span.marker_max_length,
        "max_next_context": None,
        "max_prev_context": None,
        "model_max_length": span.model_max_length,
        "model_max_length_default": DEFAULT_MAX_LENGTH,
        "model_type": MODEL_TYPE,
        "span_marker_version": SPAN_MARKER_VERSION,
        "trained_with_document_context": False,
        "transformers_version": transformers.__version__,
        "vocab_size": encoder.vocab_size,
    }


def _encoder_tags(encoder: EncoderConfig, labels: list[str]) -> list[str]:
    """The IOB2 tag space SpanMarker reduces to span labels: the loaded checkpoint's own when it
    fits the labels (so a round trip keeps it), else O, B-/I- of each type in label order."""
    raw = encoder.extra.get("id2label") or {}
    tags = [raw.get(str(i), raw.get(i)) for i in range(len(raw))]
    if tags and all(t == "O" or (isinstance(t, str) and t[:2] in ("B-", "I-") and t[2:] in labels) for t in tags):
        return tags
    return ["O"] + [f"{p}-{t}" for t in labels if t != "O" for p in "BI"]


ENCODER_DIR = "encoder"


def write_span_marker(out_dir: str | Path, encoder: EncoderConfig, span: SpanConfig, params: dict, tokenizer,
                      name_or_path: str = "") -> Path:
    """Write a SpanMarker folder: config.json, model.safetensors, tokenizer files (markers added).

    The PyTorch package rebuilds the encoder from `AutoConfig.from_pretrained(encoder._name_or_path)`
    and reads its tokenizer from there too. `name_or_path` is recorded when given (the hub id
    of the base encoder: the folder then loads anywhere with hub access); otherwise the encoder's
    config and tokenizer are also written to `encoder/` and its absolute path is recorded, which
    loads offline on this machine (after moving the folder, edit that path or pass a hub id).
    """
    out = Path(out_dir)
    state = params_to_hf(params["encoder"], encoder, prefix="encoder.")
    state["classifier.weight"] = np.asarray(params["classifier"]["kernel"], np.float32).T
    state["classifier.bias"] = np.asarray(params["classifier"]["bias"], np.float32)
    tokenizer.model_max_length = span.model_max_length
    if not name_or_path:
        sub = out / ENCODER_DIR
        sub.mkdir(parents=True, exist_ok=True)
        (sub / "config.json").write_text(json.dumps(hf_config_dict(encoder), indent=2, sort_keys=True) + "\n",
                                         encoding="utf-8")
        tokenizer.save_pretrained(str(sub))
        name_or_path = str(sub.resolve())
    config = span_marker_config(encoder, span, name_or_path)
    write_hf_folder(out, state, config)
    tokenizer.save_pretrained(str(out))
    start, end = tokenizer.convert_tokens_to_ids(list(MARKERS))
    (out / "added_tokens.json").write_text(json.dumps({MARKERS[0]: start, MARKERS[1]: end}, indent=2) + "\n",
                                           encoding="utf-8")
    return out
