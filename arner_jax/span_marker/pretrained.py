"""`SpanMarkerModel`: SpanMarker's user interface on the JAX model.

Owns: `from_pretrained` (a folder written by the PyTorch `span_marker` package, or a span run
folder of ours), `predict` returning SpanMarker's records, `span_logits` (every candidate's
logits, for parity checks) and `save_pretrained` in the PyTorch package's layout.

    model = SpanMarkerModel.from_pretrained("path/to/span-marker-checkpoint")
    model.predict("جريدة فلسطين 19 تشرين الأول 1921 .")
    model.predict(["جريدة", "فلسطين"], nested=True, threshold=0.5)
"""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np

from arner_jax.data.batching import eval_batches
from arner_jax.encoders import EncoderConfig
from arner_jax.span_marker import spans as S
from arner_jax.span_marker.checkpoint import (
    SpanConfig,
    add_markers,
    is_span_marker_folder,
    read_span_marker,
    usable_length,
    write_span_marker,
)
from arner_jax.span_marker.model import SpanMarker

Inputs = str | Sequence[str] | Sequence[Sequence[str]]


class SpanMarkerModel:
    """A span model with its tokenizer; `predict` as SpanMarker's, plus nested output and windows."""

    def __init__(self, encoder: EncoderConfig, span: SpanConfig, params: dict, tokenizer, dtype: str = "float32",
                 batch_size: int = 16, truncate: bool = False):
        """truncate=True cuts texts longer than model_max_length as SpanMarker does (default: windows)."""
        self.encoder, self.config, self.tokenizer = encoder, span, tokenizer
        self.truncate = truncate
        self.start_id, self.end_id = add_markers(tokenizer)
        self.max_tokens = usable_length(span.model_max_length, encoder)
        self.batch_size = batch_size
        self.module = SpanMarker(encoder, len(span.labels), self.start_id, self.end_id,
                                 dropout=encoder.hidden_dropout_prob,
                                 dtype=jnp.bfloat16 if dtype == "bfloat16" else jnp.float32)
        self.params = jax.device_put(params)
        self._apply = jax.jit(lambda p, b: self.module.apply({"params": p}, b["input_ids"], b["text_len"],
                                                             b["starts"], b["ends"], b["num_spans"]))

    @property
    def labels(self) -> list[str]:
        return self.config.labels

    @classmethod
    def from_pretrained(cls, path: str | Path, dtype: str | None = None, batch_size: int = 16,
                        truncate: bool = False) -> "SpanMarkerModel":
        """Load a PyTorch SpanMarker checkpoint folder, or the kept model of one of our span runs."""
        path = Path(path)
        if is_span_marker_folder(path):
            got = read_span_marker(path)
            return cls(got.encoder, got.span, got.params, got.tokenizer, dtype or "float32", batch_size, truncate)
        from arner_jax.train.assemble import load_run

        run = load_run(path, dtype)
        if run.span is None:
            raise ValueError(f"{path}: a {run.kind} tagger run, not a span model; use arner_jax.predict.NERTagger.")
        return cls(run.encoder, run.span, run.params, run.tokenizer, dtype or run.config.dtype, batch_size, truncate)

    def save_pretrained(self, out_dir: str | Path, name_or_path: str = "") -> Path:
        """Write the PyTorch package's layout (config.json, model.safetensors, tokenizer files)."""
        params = jax.device_get(self.params)
        return write_span_marker(out_dir, self.encoder, self.config, params, self.tokenizer, name_or_path)

    # ------------------------------------------------------------------ scoring
    def span_logits(self, texts: Sequence[str | Sequence[str]]) -> list[tuple[np.ndarray, np.ndarray]]:
        """Per text: its candidate spans [S, 2] (word start, end exclusive) and their logits [S, C]."""
        return [(spans, out["logits"]) for spans, out, _ in self._run(texts, logits=True)]

    def _run(self, texts, logits: bool = False):
        toks = [S.tokenize(self.tokenizer, t) for t in texts]
        pieces = [p for i, tok in enumerate(toks)
                  for p in S.make_pieces(tok, i, self.max_tokens, self.config.entity_max_length,
                                         truncate=self.truncate)]
        most = max((len(p.spans) for p in pieces), default=1)
        slots = min(self.config.marker_max_length, max(8, 1 << (most - 1).bit_length()))
        rows = S.pack_rows(pieces, slots)
        outputs: list[dict | None] = [None] * len(rows)
        batch_rows = min(self.batch_size, 1 << max(len(rows) - 1, 0).bit_length())
        for width, indices in eval_batches(rows, batch_rows, self.max_tokens):
            batch = S.collate_rows(pieces, rows, indices, batch_rows, width, slots, int(self.tokenizer.pad_token_id))
            out = np.asarray(self._apply(self.params, batch))
            probs = _softmax(out)
            for r, i in enumerate(indices):
                row = {"label": probs[r].argmax(-1), "score": probs[r].max(-1)}
                if logits:
                    row["logits"] = out[r]
                outputs[i] = row
        return [(sp, out, tok) for (sp, out), tok in zip(S.per_text(pieces, rows, outputs, len(texts)), toks)]

    # ------------------------------------------------------------------ predict
    def predict(self, inputs: Inputs, nested: bool = False, threshold: float = 0.0):
        """Entities as SpanMarker's records, for one input or a list of inputs.

        A string is split into words by the tokenizer's pre-tokenizer and gets character indices
        (`char_start_index`, `char_end_index`, end exclusive); a list of words (one pre-tokenized
        sentence) gets word indices. A list of strings or of word lists gives a list of results.
        nested=True keeps spans that nest or are disjoint (SpanMarker: no overlap at all);
        `threshold` drops entities whose score is lower.
        """
        if isinstance(inputs, str) or (isinstance(inputs, (list, tuple)) and inputs
                                       and all(isinstance(w, str) and " " not in w for w in inputs)):
            return self.predict([inputs], nested, threshold)[0] if inputs else []
        if not inputs:
            return []
        results = []
        for text, (spans, out, tok) in zip(inputs, self._run(list(inputs))):
            if not len(spans):
                results.append([])
                continue
            found = S.decode(spans, out["label"], out["score"], nested=nested, threshold=threshold)
            results.append([self._record(text, tok, e) for e in found])
        return results

    def _record(self, text, tok: S.Tokenized, entity: S.Entity) -> dict:
        s, e, label, score = entity
        record = {"span": None, "label": self.labels[label], "score": score}
        if isinstance(text, str):
            start, end = tok.char_spans[s][0], tok.char_spans[e - 1][1]
            record.update(span=text[start:end], char_start_index=start, char_end_index=end)
        else:
            record.update(span=list(text[s:e]), word_start_index=s, word_end_index=e)
        return record


def _softmax(logits: np.ndarray) -> np.ndarray:
    z = np.exp(logits - logits.max(-1, keepdims=True))
    return z / z.sum(-1, keepdims=True)
