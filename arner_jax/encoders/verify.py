"""Cross-framework check of an encoder checkpoint: our Flax encoder against transformers' PyTorch.

Owns: `verify_encoder`, which loads one Hugging Face checkpoint in both frameworks, runs both on
the same padded batch of sentences and returns the largest absolute difference of the last
hidden state over the real (unpadded) tokens.
"""
from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np

from arner_jax.encoders import (
    CheckpointError,
    load_pretrained_encoder,
    resolve_model_dir,
)

SAMPLE_SENTENCES = (
    "وتدخلت روسيا عسكرياً في سوريا عام 2015 لصالح الأسد .",
    "سكرتير اللجنة القومية العربية في نابلس",
    "أعلنت وزارة الصحة الفلسطينية يوم الأحد عن 12 إصابة جديدة",
    "مجلس الأمن",
)


TOKENIZER_FILES = ("tokenizer.json", "vocab.txt", "sentencepiece.bpe.model", "vocab.json")


@dataclasses.dataclass
class VerifyResult:
    max_abs_diff: float
    num_sentences: int
    num_tokens: int
    used_tokenizer: bool
    notes: str


def _tokenize(model_dir: Path, sentences, vocab_size: int, pad_id: int):
    """Token ids and mask from the folder's tokenizer, or random ids when it has none."""
    # transformers builds an empty tokenizer from config.json alone; only trust real files.
    has_tokenizer = any((model_dir / f).is_file() for f in TOKENIZER_FILES)
    try:
        if not has_tokenizer:
            raise OSError("no tokenizer files")
        from transformers import AutoTokenizer

        tok = AutoTokenizer.from_pretrained(str(model_dir))
        enc = tok(list(sentences), padding=True, return_tensors="np")
        return enc["input_ids"].astype(np.int64), enc["attention_mask"].astype(np.int64), True
    except (OSError, ValueError, TypeError):
        rng = np.random.default_rng(0)
        lengths = [min(64, 2 + len(s.split())) for s in sentences]
        ids = np.full((len(sentences), max(lengths)), pad_id, np.int64)
        mask = np.zeros_like(ids)
        for row, n in enumerate(lengths):
            ids[row, :n] = rng.integers(min(5, vocab_size - 1), vocab_size, n)
            mask[row, :n] = 1
        return ids, mask, False


def verify_encoder(name_or_path: str, sentences=SAMPLE_SENTENCES, dtype: str = "float32") -> VerifyResult:
    """Run the checkpoint in transformers (PyTorch) and in our encoder; compare hidden states."""
    import jax
    import jax.numpy as jnp

    try:
        import torch
        from transformers import AutoModel
    except ImportError as err:
        raise CheckpointError(f"verify needs torch and transformers ({err}); `pip install arner_jax[torch]`.") from None
    model_dir = resolve_model_dir(name_or_path)
    ours = load_pretrained_encoder(model_dir, dtype=jnp.dtype(dtype))
    try:
        theirs = AutoModel.from_pretrained(str(model_dir), attn_implementation="eager").eval()
    except Exception as err:  # noqa: BLE001 - transformers raises many kinds; report which
        raise CheckpointError(f"{model_dir}: transformers could not load it: {type(err).__name__}: {err}") from None
    ids, mask, used_tokenizer = _tokenize(model_dir, sentences, ours.config.vocab_size, ours.config.pad_token_id)
    with torch.no_grad():
        ref = theirs(input_ids=torch.from_numpy(ids), attention_mask=torch.from_numpy(mask)).last_hidden_state
    with jax.default_matmul_precision("highest"):
        out = ours(jnp.asarray(ids), jnp.asarray(mask))
    diff = np.abs(np.asarray(out, np.float32) - ref.float().numpy())[mask.astype(bool)]
    return VerifyResult(float(diff.max()), len(ids), int(mask.sum()), used_tokenizer, ours.report.summary())
