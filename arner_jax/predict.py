"""Tagging new text with a trained run folder: the `NERTagger` API and `python -m arner_jax.predict`.

Owns: the user-facing prediction API of any run (every model family: nested, flat and MTN
taggers, span models): texts in, entity records out, with character offsets into the raw input
(or word indices for pre-split input), nested entities included, outer before inner in reading
order. Batching, buckets and windows are the inference driver's (arner_jax.models.inference): any
number of texts in one call, long texts windowed, never cut.

    tagger = NERTagger.from_pretrained("runs/nested")
    tagger.predict("أعلنت وزارة الصحة في رام الله ...")        # [{"text", "label", "start", "end", "score"}, ...]
    tagger.predict(["text one", "text two"])                 # one list per text
    tagger.predict(["word", "word"], is_split_into_words=True)   # word indices, end exclusive
"""
from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

from arner_jax.data import files
from arner_jax.data.entities import entity_records, entity_word_tags, split_words
from arner_jax.data.wojood import (
    Sentence,
    WojoodFormatError,
    format_wojood,
    parse_wojood,
    read_text,
)
from arner_jax.errors import ArgumentParser, UserError, exit_on_user_error, storage_path
from arner_jax.models import inference
from arner_jax.models.base import EncodedSplit, Entity, WordTags
from arner_jax.models.parallel import PmapParallel, StepBodies
from arner_jax.runs.loading import LoadedRun, load_run


class NERTagger:
    """A trained run's kept model, ready to tag text."""

    def __init__(self, run: LoadedRun, batch_size: int | None = None, with_logits: bool = False):
        self.run = run
        self.family, self.config, self.labels = run.family, run.config, run.labels
        self.tokenizer = run.tokenizer
        self.batch_size = batch_size or run.config.eval_batch  # the run's evaluation programs are reused
        objective = self.family.objective(self.config, self.labels, run.model, with_logits)
        self.parallel = PmapParallel(StepBodies(objective))
        self.params = self.parallel.put_params(run.params)

    @classmethod
    def from_pretrained(cls, run_dir: str | Path, dtype: str | None = None, batch_size: int | None = None,
                        with_logits: bool = False) -> NERTagger:
        """The kept model of a run folder (read-only). with_logits: also keep raw logits (parity checks)."""
        return cls(load_run(run_dir, dtype), batch_size, with_logits)

    # ------------------------------------------------------------------ words in
    def encode(self, sentences: Sequence[Sequence[str]]) -> EncodedSplit:
        words = [Sentence(list(w), [["O"] for _ in w]) for w in sentences]
        return self.family.encode(self.config, self.labels, self.tokenizer, words, self.run.max_length,
                                  labelled=False)

    def outputs(self, sentences: Sequence[Sequence[str]]) -> tuple[EncodedSplit, list[dict]]:
        """The encoded sentences and the model's outputs per item (what the family decodes)."""
        split = self.encode(sentences)
        result = inference.run(self.parallel, self.params, split, self.batch_size, self.run.max_length)
        return split, result.outputs

    def word_tags(self, sentences: Sequence[Sequence[str]]) -> WordTags:
        """Wojood word tags (the non-O tags of each word, outermost first, or ["O"]) per sentence."""
        split, outputs = self.outputs(sentences)
        return split.word_tags(outputs)

    def entities(self, sentences: Sequence[Sequence[str]]) -> list[list[Entity]]:
        """Per sentence, its entities as (label, first word, end word exclusive, score)."""
        split, outputs = self.outputs(sentences)
        return split.entities(outputs)

    # ------------------------------------------------------------------ texts in, entity records out
    def predict(self, inputs, is_split_into_words: bool = False):
        """Entities of one text (a list of records) or of several (a list of lists).

        inputs: a string, a list of strings, or with is_split_into_words=True one sentence as a
        list of words or several as a list of lists (records then give word indices).
        """
        if is_split_into_words:
            single = not inputs or isinstance(inputs[0], str)
            sentences = [list(inputs)] if single else [list(s) for s in inputs]
            out = [entity_records(found, words) for words, found in zip(sentences, self.entities(sentences))]
            return out[0] if single else out
        single = isinstance(inputs, str)
        texts = [inputs] if single else list(inputs)
        split = [split_words(t) for t in texts]
        found = self.entities([words for words, _ in split])
        out = [entity_records(f, words, spans, text) for text, (words, spans), f in zip(texts, split, found)]
        return out[0] if single else out


# ---------------------------------------------------------------------- command line
def _read_inputs(path: Path) -> tuple[str, list]:
    """A Wojood file (its sentences' words) or plain text (one text per non-empty line)."""
    text = read_text(path)
    try:
        corpus = parse_wojood(text, str(path))
        if corpus.sentences and any(len(s) > 1 for s in corpus.sentences):
            return "wojood", [s.words for s in corpus.sentences]
    except WojoodFormatError:
        pass
    return "text", [line for line in text.splitlines() if line.strip()]


def main(argv: Sequence[str] | None = None) -> int:
    p = ArgumentParser(prog="python -m arner_jax.predict", description=__doc__.splitlines()[0])
    p.add_argument("--model_path", type=storage_path, required=True,
                   help="run folder (the --output_path of a training run; local or gs://)")
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument("--text", help="one text to tag")
    source.add_argument("--input", type=storage_path,
                        help="a file (local or gs://): one text per line, or a Wojood file (words per line)")
    p.add_argument("--output", type=storage_path, help="write here, local or gs:// (default: standard output)")
    p.add_argument("--format", choices=("jsonl", "conll"), default="jsonl",
                   help="jsonl: one JSON list of entities per text; conll: the Wojood layout, word and tags")
    p.add_argument("--batch_size", type=_positive, help="texts per batch (default: the run's evaluation batch)")
    args = p.parse_args(argv)
    with exit_on_user_error():
        args.input, args.output = (None if a is None else files.location(a) for a in (args.input, args.output))
        if args.input is not None:
            kind, items = _read_inputs(args.input)
        else:
            kind, items = "text", [args.text]
        if args.output is not None and files.is_dir(args.output):
            raise UserError(f"{args.output}: is a folder; --output names a file to write")
        tagger = NERTagger.from_pretrained(args.model_path, batch_size=args.batch_size)
        if args.format == "conll":  # each word's tags outermost first, as Wojood files have them
            sentences = items if kind == "wojood" else [split_words(t)[0] for t in items]
            body = format_wojood(Sentence(w, entity_word_tags(found, len(w)))
                                 for w, found in zip(sentences, tagger.entities(sentences)))
        else:
            records = tagger.predict(items, is_split_into_words=True) if kind == "wojood" else tagger.predict(items)
            body = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records)
        if args.output:
            if files.is_url(str(args.output)):
                files.atomic_write_text(args.output, body)  # one upload
            else:
                args.output.write_text(body, encoding="utf-8")  # as before: a device (/dev/stdout) or a link
        else:
            sys.stdout.write(body)
    return 0


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value}: must be a positive whole number")
    return value


if __name__ == "__main__":
    from arner_jax.system.entrypoint import start

    start("arner_jax.predict:main")
