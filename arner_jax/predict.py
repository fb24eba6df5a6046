"""Tagging new text with a trained run folder: the `NERTagger` API and `python -m arner_jax.predict`.

Owns: loading a run's kept model for inference, batching any number of texts into few compiled
shapes (one tokenizer call, length buckets, overlapping windows for long texts: nothing is cut
off), and returning entity records with character offsets into the raw input (or word indices
for pre-split input), nested entities included, in reading order.

    tagger = NERTagger.from_pretrained("runs/nested")
    tagger.predict("أعلنت وزارة الصحة في رام الله ...")        # [{"text", "label", "start", "end", "score"}, ...]
    tagger.predict(["text one", "text two"])                 # one list per text
    tagger.predict(["word", "word"], is_split_into_words=True)   # word indices, end exclusive
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np

from arner_jax.data.batching import per_word_outputs
from arner_jax.data.entities import entity_records, entity_tags, ids_to_tags, split_words, word_entities
from arner_jax.data.wojood import Sentence, WojoodFormatError, format_wojood, parse_wojood, read_text
from arner_jax.tagger import class_mask, decode, head_shape, label_layout, masked_log_probs


class NERTagger:
    """A trained tagger (nested, flat or MTN) ready to tag text."""

    def __init__(self, run, batch_size: int = 32):
        self.run = run  # arner_jax.train.assemble.LoadedRun
        self.kind, self.vocab, self.tokenizer = run.kind, run.vocab, run.tokenizer
        self.batch_size = batch_size
        self.params = jax.device_put(run.params)
        mask = jnp.asarray(class_mask(run.kind, run.vocab))
        model, kind = run.model, run.kind

        def body(params, input_ids, attention_mask):
            logits = model.apply({"params": params}, input_ids, attention_mask, deterministic=True)
            ids = decode(kind, logits, mask)  # [B, L, K]
            logp = jnp.take_along_axis(masked_log_probs(logits, mask), ids[..., None], axis=-1)[..., 0]
            return ids.astype(jnp.int32), jnp.exp(logp), logits

        self._step = jax.jit(body)

    @classmethod
    def from_pretrained(cls, run_dir: str | Path, dtype: str | None = None, batch_size: int = 32) -> "NERTagger":
        from arner_jax.train.assemble import load_run

        return cls(load_run(run_dir, dtype), batch_size)

    # ------------------------------------------------------------------ words in, class ids out
    def tag_words(self, sentences: Sequence[Sequence[str]]) -> list[dict[str, np.ndarray]]:
        """Per sentence, per word: "ids" `[n, K]` predicted classes, "probs" `[n, K]` their
        probabilities, "logits" `[n, K, C]` (first subword of each word, from its window)."""
        K, C = head_shape(self.kind, self.vocab)
        empty = {"ids": np.zeros((0, K), np.int32), "probs": np.zeros((0, K), np.float32),
                 "logits": np.zeros((0, K, C), np.float32)}

        def run(input_ids, attention_mask):
            return dict(zip(empty, jax.device_get(self._step(self.params, input_ids, attention_mask))))

        return per_word_outputs(sentences, self.tokenizer, self.vocab, label_layout(self.kind), self.run.max_length,
                                self.batch_size, run, empty)

    def word_tags(self, sentences: Sequence[Sequence[str]]) -> list[list[list[str]]]:
        """Wojood word tags (the non-O tags of each word, or ["O"]) per sentence."""
        return [entity_tags(ids_to_tags(self.kind, self.vocab, t["ids"])) for t in self.tag_words(sentences)]

    # ------------------------------------------------------------------ texts in, entities out
    def predict(self, inputs, is_split_into_words: bool = False):
        """Entities of one text (a list of records) or of several (a list of lists).

        inputs: a string, a list of strings, or with is_split_into_words=True one sentence as a
        list of words or several as a list of lists (records then give word indices).
        """
        if is_split_into_words:
            single = bool(inputs) and isinstance(inputs[0], str) or not inputs
            sentences = [list(inputs)] if single else [list(s) for s in inputs]
            tagged = self.tag_words(sentences)
            out = [entity_records(word_entities(self.kind, self.vocab, t["ids"], t["probs"]), words)
                   for words, t in zip(sentences, tagged)]
            return out[0] if single else out
        single = isinstance(inputs, str)
        texts = [inputs] if single else list(inputs)
        split = [split_words(t) for t in texts]
        tagged = self.tag_words([words for words, _ in split])
        out = [entity_records(word_entities(self.kind, self.vocab, t["ids"], t["probs"]), words, spans, text)
               for text, (words, spans), t in zip(texts, split, tagged)]
        return out[0] if single else out


# ---------------------------------------------------------------------- command line
def _read_inputs(path: Path):
    """A Wojood file (its sentences' words) or plain text (one text per non-empty line)."""
    text = read_text(path)
    try:
        corpus = parse_wojood(text, str(path))
        if corpus.sentences and any(len(s) > 1 for s in corpus.sentences):
            return "wojood", [s.words for s in corpus.sentences]
    except WojoodFormatError:
        pass
    return "text", [line for line in text.splitlines() if line.strip()]


def main(argv: Sequence[str] | None = None) -> None:
    p = argparse.ArgumentParser(description="Tag text with a trained arner_jax run folder.")
    p.add_argument("--model_path", required=True, help="run folder (the --output_path of a training run)")
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument("--text", help="one text to tag")
    source.add_argument("--input", type=Path, help="a file: one text per line, or a Wojood file (words per line)")
    p.add_argument("--output", type=Path, help="write here (default: standard output)")
    p.add_argument("--format", choices=("jsonl", "conll"), default="jsonl",
                   help="jsonl: one JSON list of entities per text; conll: the Wojood layout, word and tags")
    p.add_argument("--batch_size", type=int, default=32)
    args = p.parse_args(argv)
    try:
        tagger = NERTagger.from_pretrained(args.model_path, batch_size=args.batch_size)
    except (FileNotFoundError, ValueError) as err:
        sys.exit(f"error: {err}")
    if args.text is not None:
        kind, items = "text", [args.text]
    else:
        if not args.input.is_file():
            sys.exit(f"error: {args.input}: no such file")
        kind, items = _read_inputs(args.input)
    if args.format == "conll":
        sentences = items if kind == "wojood" else [split_words(t)[0] for t in items]
        body = format_wojood(Sentence(words, tags) for words, tags in zip(sentences, tagger.word_tags(sentences)))
    elif kind == "wojood":
        body = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in tagger.predict(items, is_split_into_words=True))
    else:
        body = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in tagger.predict(items))
    if args.output:
        args.output.write_text(body, encoding="utf-8")
    else:
        sys.stdout.write(body)


if __name__ == "__main__":
    main()
