"""`SpanMarkerModel`: SpanMarker's user interface on the JAX model.

Owns: `from_pretrained` (a folder written by the PyTorch `span_marker` package, or a span run
folder of ours), `predict` returning SpanMarker's records, `span_logits` (every candidate's
logits, for parity checks) and `save_pretrained` in the PyTorch package's layout. Prediction
runs through the inference driver and the data-parallel eval step, as evaluation does.

    model = SpanMarkerModel.from_pretrained("path/to/span-marker-checkpoint")
    model.predict("جريدة فلسطين 19 تشرين الأول 1921 .")
    model.predict(["جريدة", "فلسطين"], nested=True, threshold=0.5)
"""
from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from arner_jax.data import files
from arner_jax.encoders import EncoderConfig
from arner_jax.errors import UserError
from arner_jax.models import inference
from arner_jax.models.parallel import PmapParallel, StepBodies
from arner_jax.models.span_marker import spans as S
from arner_jax.models.span_marker.checkpoint import (
    SpanConfig,
    add_markers,
    is_span_marker_folder,
    read_span_marker,
    usable_length,
    write_span_marker,
)
from arner_jax.models.span_marker.family import SpanFamily, SpanSplit, encode_texts
from arner_jax.models.span_marker.model import SpanMarker, SpanObjective
from arner_jax.runs.loading import load_run
from arner_jax.runs.run_folder import RunFolderError

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
        # where the weights came from, for the model card save_pretrained writes: ("run", run folder),
        # ("span-marker", checkpoint folder, its config.json) or None (built here: training unknown)
        self.source: tuple | None = None
        self.module = SpanMarker(encoder, len(span.labels), self.start_id, self.end_id,
                                 dropout=encoder.hidden_dropout_prob,
                                 dtype=jnp.bfloat16 if dtype == "bfloat16" else jnp.float32)
        self.parallel = PmapParallel(StepBodies(SpanObjective(self.module.apply, with_logits=True)))
        self.params = self.parallel.put_params(params)

    @property
    def labels(self) -> list[str]:
        return self.config.labels

    @classmethod
    def from_pretrained(cls, path: str | Path, dtype: str | None = None, batch_size: int = 16,
                        truncate: bool = False) -> SpanMarkerModel:
        """Load a PyTorch SpanMarker checkpoint folder, or the kept model of one of our span runs (either local or
        on gs://)."""
        path = files.location(path)
        if is_span_marker_folder(path):
            with files.local_copy(path) as local:  # the tokenizer and safetensors readers need a local folder
                got = read_span_marker(local)
                raw = json.loads((local / "config.json").read_text(encoding="utf-8"))
            model = cls(got.encoder, got.span, got.params, got.tokenizer, dtype or "float32", batch_size, truncate)
            model.source = ("span-marker", path, raw)
            return model
        run = load_run(path, dtype)
        if not isinstance(run.family, SpanFamily):
            raise RunFolderError(f"{path}: a {run.config.kind} run, not a span model; use "
                                 "arner_jax.predict.NERTagger")
        span = run.family.span_config(run.config, run.labels, run.encoder)
        model = cls(run.encoder, span, run.params, run.tokenizer, run.config.dtype, batch_size, truncate)
        model.source = ("run", path)
        return model

    def save_pretrained(self, out_dir: str | Path, name_or_path: str = "", license: str | None = None) -> Path:
        """Write the PyTorch package's layout (config.json, model.safetensors, tokenizer files) and a
        model card (README.md: from the run folder when the model is one of our runs; `license` is
        recorded in it). `out_dir` may be a gs:// folder, given the base encoder's hub id as `name_or_path`
        (the package reads the encoder's config there; a folder in a bucket it cannot read)."""
        from arner_jax.runs import model_card

        if files.is_url(str(out_dir)) and not name_or_path:
            raise UserError(f"{out_dir}: a span_marker folder in a bucket needs the base encoder's hub id "
                            "(--encoder_name): span_marker reads the encoder's config from that name, and "
                            "cannot read a path in a bucket")
        if self.source is not None and self.source[0] == "run":
            card = model_card.run_card(self.source[1], model_card.SPAN_MARKER, out_dir, license, span=self.config)
        else:
            folder, raw = (self.source[1], self.source[2]) if self.source is not None else (None, None)
            card = model_card.checkpoint_card(self.encoder, self.config, out_dir, folder, raw, license)
        params = jax.tree.map(np.asarray, self.parallel.get_state(self.params))
        with files.staged(out_dir) as local:  # out_dir itself, or a folder uploaded to gs:// at the end
            write_span_marker(local, self.encoder, self.config, params, self.tokenizer, name_or_path)
            model_card.write_card(local, card)
        return files.location(out_dir)

    # ------------------------------------------------------------------ scoring
    def _run(self, texts: Sequence) -> tuple[SpanSplit, list[dict]]:
        split = encode_texts(texts, self.tokenizer, self.config, self.max_tokens, int(self.tokenizer.pad_token_id),
                             nested=False, truncate=self.truncate)
        result = inference.run(self.parallel, self.params, split, self.batch_size, self.max_tokens)
        return split, result.outputs

    def span_logits(self, texts: Sequence[str | Sequence[str]]) -> list[tuple[np.ndarray, np.ndarray]]:
        """Per text: its candidate spans [S, 2] (word start, end exclusive) and their logits [S, C]."""
        split, outputs = self._run(texts)
        C = len(self.labels)
        return [(spans, out.get("logits", np.zeros((0, C), np.float32))) for spans, out in split.per_text(outputs)]

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
        split, outputs = self._run(list(inputs))
        found = split.decoded(outputs, nested, threshold)
        return [[self._record(text, tok, e) for e in entities]
                for text, tok, entities in zip(inputs, split.tokenized, found)]

    def _record(self, text, tok: S.Tokenized, entity: S.Entity) -> dict:
        s, e, label, score = entity
        record = {"span": None, "label": self.labels[label], "score": score}
        if isinstance(text, str):
            start, end = tok.char_spans[s][0], tok.char_spans[e - 1][1]
            record.update(span=text[start:end], char_start_index=start, char_end_index=end)
        else:
            record.update(span=list(text[s:e]), word_start_index=s, word_end_index=e)
        return record
