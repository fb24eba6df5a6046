"""From a RunConfig to everything a run trains and evaluates.

Owns: reading the three splits (or writing the synthetic corpus into the run folder), the
tokenizer (the pretrained encoder's, or a WordPiece trained on the training split), the label
vocabulary, the windows of each split, the tagger module and its initial parameters (a Hugging
Face encoder's weights, or random from the seed), and writing/reading these in the run folder.
`load_run` rebuilds the same pieces from a finished run folder.
"""
from __future__ import annotations

import dataclasses
import logging
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from arner_jax.data.align import AlignStats, encode_sentences
from arner_jax.data.synthetic import write_synthetic_corpus
from arner_jax.data.vocab import LabelVocab
from arner_jax.data.wojood import Corpus, read_wojood
from arner_jax.encoders import EncoderConfig, load_pretrained_encoder, small_bert_config, train_wordpiece_tokenizer
from arner_jax.tagger import Tagger, head_shape, label_layout
from arner_jax.train import config as files
from arner_jax.train.config import RunConfig, read_run_config, write_run_config
from arner_jax.train.evaluation import Split
from arner_jax.train.runtime import barrier, is_primary

log = logging.getLogger("arner_jax")
SPLITS = ("train", "val", "test")


@dataclasses.dataclass
class Assembled:
    config: RunConfig
    run_dir: Path
    tokenizer: object
    vocab: LabelVocab
    encoder: EncoderConfig
    model: Tagger
    splits: dict[str, Split]
    max_length: int
    init_params: dict  # a pretrained encoder's weights, or random; the restore template on resume

    @property
    def pad_id(self) -> int:
        return int(self.tokenizer.pad_token_id)


def build_model(kind: str, encoder: EncoderConfig, vocab: LabelVocab, dropout: float, dtype: str) -> Tagger:
    num_heads, num_classes = head_shape(kind, vocab)
    return Tagger(encoder, num_heads, num_classes, dropout=dropout,
                  dtype=jnp.bfloat16 if dtype == "bfloat16" else jnp.float32)


def init_params(model: Tagger, seed: int) -> dict:
    ids = np.zeros((1, 8), np.int32)
    return jax.jit(model.init)(jax.random.fold_in(jax.random.PRNGKey(seed), 0), ids)["params"]


def data_paths(config: RunConfig, run_dir: Path) -> dict[str, Path]:
    if config.train_path:
        return {"train": Path(config.train_path), "val": Path(config.val_path), "test": Path(config.test_path)}
    folder = run_dir / files.DATA
    paths = {s: folder / f"{s}.txt" for s in SPLITS}
    if not all(p.exists() for p in paths.values()) and is_primary():
        write_synthetic_corpus(folder, seed=config.seed, sizes=dict(zip(SPLITS, config.synthetic_sizes)))
    barrier("synthetic corpus written")
    return paths


def _encode(name: str, corpus: Corpus, tokenizer, vocab: LabelVocab, kind: str, max_length: int) -> Split:
    windows, stats = encode_sentences(corpus.sentences, tokenizer, vocab, label_layout(kind), max_length)
    _log_alignment(name, corpus, stats)
    return Split(name, corpus, windows)


def _log_alignment(name: str, corpus: Corpus, stats: AlignStats) -> None:
    log.info("%s: %s, %d sentences, %d words, %d windows (%d sentences split), %d same-type duplicate tags "
             "dropped, %d words without subwords, %d over-long words clipped", name, corpus.path, stats.sentences,
             stats.words, stats.windows, stats.split_sentences, corpus.dropped_duplicates,
             stats.words_without_subwords, stats.clipped_words)


def assemble(config: RunConfig, run_dir: Path, resume: bool) -> Assembled:
    """Data, tokenizer, vocabulary, model and initial parameters; written to the run folder on a new run."""
    from transformers import AutoTokenizer

    paths = data_paths(config, run_dir)
    corpora = {s: read_wojood(paths[s]) for s in SPLITS}
    pretrained = None
    if resume:
        tokenizer = AutoTokenizer.from_pretrained(str(run_dir / files.TOKENIZER))
        vocab = LabelVocab.load(run_dir / files.VOCAB)
        encoder = EncoderConfig.from_dict(read_run_config(run_dir)["encoder"])
    else:
        if config.bert_model:
            pretrained = load_pretrained_encoder(config.bert_model)
            tokenizer = AutoTokenizer.from_pretrained(str(pretrained.model_dir))
            encoder = pretrained.config
            log.info("encoder %s from %s", config.bert_model, pretrained.model_dir)
        else:
            texts = [" ".join(s.words) for s in corpora["train"].sentences]
            tokenizer = train_wordpiece_tokenizer(texts, vocab_size=config.scratch_vocab_size)
            encoder = small_bert_config(len(tokenizer), config.scratch_hidden_size, config.scratch_layers,
                                        config.scratch_heads)
            log.info("encoder trained from scratch: WordPiece vocabulary %d, hidden %d, %d layers",
                     len(tokenizer), encoder.hidden_size, encoder.num_hidden_layers)
        # The label space of all three splits, as the reference builds it.
        everything = Corpus([s for c in corpora.values() for s in c.sentences], "train+val+test")
        vocab = LabelVocab.from_corpus(everything)
    for split, corpus in corpora.items():
        vocab.check_corpus(corpus)
    max_length = min(config.max_length, encoder.max_text_positions)
    model = build_model(config.kind, encoder, vocab, config.dropout, config.dtype)
    params = init_params(model, config.seed)
    if pretrained is not None:
        params = {**params, "encoder": pretrained.params}
    if not resume and is_primary():
        tokenizer.save_pretrained(str(run_dir / files.TOKENIZER))
        vocab.save(run_dir / files.VOCAB)
        write_run_config(run_dir, config, encoder.to_dict(), head_shape(config.kind, vocab),
                         {"data": {s: str(p) for s, p in paths.items()}, "max_length": max_length})
    splits = {s: _encode(s, corpora[s], tokenizer, vocab, config.kind, max_length) for s in SPLITS}
    return Assembled(config, run_dir, tokenizer, vocab, encoder, model, splits, max_length, params)


@dataclasses.dataclass
class LoadedRun:
    """A trained run folder's model, without the training data."""

    run_dir: Path
    config: RunConfig
    kind: str
    tokenizer: object
    vocab: LabelVocab
    encoder: EncoderConfig
    model: Tagger
    params: dict
    max_length: int


def load_run(run_dir: str | Path, dtype: str | None = None) -> LoadedRun:
    """The kept (best) model of a run folder, with its tokenizer and vocabulary."""
    from transformers import AutoTokenizer

    from arner_jax.train.checkpoints import read_best_params

    run_dir = Path(run_dir)
    raw = read_run_config(run_dir)
    config = RunConfig.from_dict(raw["run"])
    encoder = EncoderConfig.from_dict(raw["encoder"])
    vocab = LabelVocab.load(run_dir / files.VOCAB)
    tokenizer = AutoTokenizer.from_pretrained(str(run_dir / files.TOKENIZER))
    model = build_model(config.kind, encoder, vocab, config.dropout, dtype or config.dtype)
    template = jax.eval_shape(lambda: init_params(model, 0))
    params, _ = read_best_params(run_dir, template)
    return LoadedRun(run_dir, config, config.kind, tokenizer, vocab, encoder, model, params, raw["max_length"])
