"""From a RunConfig to what a run trains on: corpora, tokenizer, labels, model, parameters, splits.

Owns the set-up of a run, in two phases so that nothing is written before every input checked:
  `check_inputs`   read-only: reads and validates the data files (or the `datasets` corpus),
                   loads the pretrained encoder; every user error surfaces here, within seconds;
  `prepare`        the tokenizer (the pretrained encoder's, or a WordPiece trained on the
                   training split), the family's label space, model and initial parameters (the
                   encoder's weights, or random from the seed), the encoded splits; a new run
                   writes its config, vocabulary and tokenizer into the run folder, a resumed
                   run reads them back.
The data are the given files, a `datasets` corpus or the synthetic corpus (both written into the
run folder), or by default the public Wojood sample shipped with arner_jax.
"""
from __future__ import annotations

import dataclasses
import logging
from pathlib import Path
from typing import Any

from arner_jax.config import RunConfig
from arner_jax.data import files
from arner_jax.data.sample import wojood_sample_paths
from arner_jax.data.wojood import Corpus, Sentence, read_wojood, write_wojood
from arner_jax.encoders import (
    CheckpointError,
    EncoderConfig,
    load_pretrained_encoder,
    small_bert_config,
    train_wordpiece_tokenizer,
)
from arner_jax.errors import UserError
from arner_jax.models.base import EncodedSplit, ModelFamily, family_for
from arner_jax.runs import run_folder
from arner_jax.runs.loading import init_params
from arner_jax.system import distributed
from arner_jax.system.distributed import barrier, is_primary

log = logging.getLogger("arner_jax")
SPLITS = run_folder.SPLITS


@dataclasses.dataclass
class Inputs:
    """What a run reads, checked before anything is written."""

    corpora: dict[str, Corpus]
    written: dict[str, list[Sentence]]  # corpora to write into the run folder (synthetic, `datasets`)
    pretrained: Any = None  # encoders.PretrainedEncoder when --bert_model is given


@dataclasses.dataclass
class PreparedRun:
    """Everything the loop needs; built once per run."""

    config: RunConfig
    run_dir: Path
    family: ModelFamily
    labels: Any
    tokenizer: Any
    encoder: EncoderConfig
    model: Any
    init_params: dict
    max_length: int
    corpora: dict[str, Corpus]
    splits: dict[str, EncodedSplit]
    pretrained_loaded: bool = False  # init_params hold the pretrained encoder's weights


def check_inputs(config: RunConfig, resume_dir: Path | None = None, encoder_required: bool = True) -> Inputs:
    """Read and check every input of a run (read-only). A resumed run reads its corpus from its folder.

    The pretrained encoder is loaded too: a fresh run starts from it, and so does a resumed run that finds no
    readable checkpoint. `encoder_required=False` (a resume with checkpoints) tolerates an encoder that cannot
    be loaded any more, since the checkpoint holds its trained weights.
    """
    written: dict[str, list[Sentence]] = {}
    if resume_dir is not None and (config.synthetic or config.dataset):
        paths = {s: files.location(resume_dir) / run_folder.DATA / f"{s}.txt" for s in SPLITS}
    elif config.synthetic:
        from arner_jax.data.synthetic import synthetic_splits

        written = synthetic_splits(dict(zip(SPLITS, config.synthetic_sizes)), seed=config.seed)
        paths = {}
    elif config.dataset:
        from arner_jax.data.hf_datasets import dataset_splits

        written = dataset_splits(config.dataset)
        paths = {}
    elif config.train_path:
        paths = {s: files.location(config.get(f"{s}_path")) for s in SPLITS}  # local or gs://
    else:
        paths = wojood_sample_paths()
    corpora = {s: read_wojood(p, config.tag_scheme) for s, p in paths.items()}
    for split, sentences in written.items():
        corpora[split] = Corpus(list(sentences), f"{config.dataset or 'synthetic corpus'} ({split})")
    for split, corpus in corpora.items():
        if not corpus.sentences:
            raise UserError(f"{corpus.path}: no sentences; a {split} file needs at least one sentence "
                            "(a word per line, a blank line between sentences)")
    pretrained = None
    if config.bert_model:
        try:
            pretrained = load_pretrained_encoder(config.bert_model)
        except CheckpointError:
            if encoder_required:
                raise
    return Inputs(corpora, written, pretrained)


def agree_across_processes(config: RunConfig, inputs: Inputs) -> None:
    """Stop every process, naming what differs, unless all were given the same settings and data."""
    named = {f"--{name}": repr(value) for name, value in config.to_dict().items()}
    for split, corpus in inputs.corpora.items():
        named[f"the {split} data"] = "\n".join(f"{w} {' '.join(t)}" for s in corpus.sentences
                                               for w, t in zip(s.words, s.tags))
    distributed.agree(named)


def _scratch_tokenizer(config: RunConfig, corpora: dict[str, Corpus], family: ModelFamily, run_dir: Path):
    """A WordPiece tokenizer trained on the training split by process 0, which saves it; then every process
    loads the saved one (process 0 too: the tokenizer it trained serialises differently from the one read
    back, and a resumed run reads it back), so all processes and a resume use the same tokenizer."""
    if is_primary():
        texts = [" ".join(s.words) for s in corpora["train"].sentences]
        run_folder.save_tokenizer(run_dir, train_wordpiece_tokenizer(texts, vocab_size=config.scratch_vocab_size))
    barrier("scratch tokenizer saved")
    tokenizer = run_folder.load_tokenizer(run_dir, family)
    encoder = small_bert_config(len(tokenizer), config.scratch_hidden_size, config.scratch_layers,
                                config.scratch_heads)
    log.info("encoder trained from scratch: WordPiece vocabulary %d, hidden %d, %d layers", len(tokenizer),
             encoder.hidden_size, encoder.num_hidden_layers)
    return tokenizer, encoder


def prepare(config: RunConfig, run_dir: Path, inputs: Inputs, resume: bool) -> PreparedRun:
    """Tokenizer, labels, model, initial parameters and encoded splits; a new run writes its files."""
    from transformers import AutoTokenizer

    family = family_for(config.kind)
    corpora = inputs.corpora
    recipe = getattr(config.options, "recipe", None)
    if recipe is not None:
        what = ("the UM6P & UL reference trainer exactly: arner_jax/models/tagger/um6p.py" if recipe == "um6p"
                else "first subwords trained, padding masked in attention, windows")
        log.info("recipe %s (%s)", recipe, what)
    if resume:  # the run's own tokenizer, encoder config and labels: the fresh run's, read back
        record = run_folder.read_run(run_dir)
        tokenizer = run_folder.load_tokenizer(run_dir, family)
        encoder, labels = record.encoder, record.labels
    else:
        if inputs.pretrained is not None:
            tokenizer = AutoTokenizer.from_pretrained(str(inputs.pretrained.model_dir))
            family.prepare_tokenizer(tokenizer)
            encoder = inputs.pretrained.config
            log.info("encoder %s from %s", config.bert_model, inputs.pretrained.model_dir)
        else:
            tokenizer, encoder = _scratch_tokenizer(config, corpora, family, run_dir)
        encoder = family.encoder_config(encoder, tokenizer)
        labels = family.label_space(config, list(corpora.values()))
    distributed.agree({"the tokenizer": tokenizer.backend_tokenizer.to_str()})
    for corpus in corpora.values():
        family.check_corpus(config, labels, corpus)
    _warn_untrained_types(corpora)
    model = family.build(config, encoder, labels, tokenizer)
    params = init_params(family, model, labels, config.seed)
    if inputs.pretrained is not None:
        params = family.with_pretrained_encoder(params, inputs.pretrained.params, encoder)
        params, taken = family.with_pretrained_heads(params, inputs.pretrained.model_dir, labels)
        if taken:
            log.info("%s", taken)
    data = _data_files(config, run_dir, inputs)
    if not resume and is_primary():
        run_folder.write_run(run_dir, config, family, labels, encoder, tokenizer, data)
    barrier("run files written")
    max_length = family.max_length(config, encoder)
    splits = {}
    for split, corpus in corpora.items():
        splits[split] = family.encode(config, labels, tokenizer, corpus.sentences, max_length)
        log.info("%s: %s: %s", split, corpus.path, splits[split].describe())
    return PreparedRun(config, run_dir, family, labels, tokenizer, encoder, model, params, max_length, corpora,
                       splits, inputs.pretrained is not None)


def _data_files(config: RunConfig, run_dir: Path, inputs: Inputs) -> dict[str, Path]:
    """The data files of the run; corpora made for it (synthetic, `datasets`) written into its folder once."""
    if inputs.written:
        folder = files.location(run_dir) / run_folder.DATA
        paths = {s: folder / f"{s}.txt" for s in SPLITS}
        if is_primary() and not all(files.is_file(p) for p in paths.values()):
            files.make_folder(folder)
            for split, sentences in inputs.written.items():
                write_wojood(paths[split], sentences)
        return paths
    return {s: files.location(c.path) for s, c in inputs.corpora.items()}


def _warn_untrained_types(corpora: dict[str, Corpus]) -> None:
    """A type in val/test but not in train gets a head that never sees it: say so before training."""
    trained = set(corpora["train"].types)
    for split in ("val", "test"):
        for entity_type in sorted(set(corpora[split].types) - trained):
            count = sum(t[2:] == entity_type and t[0] == "B" for s in corpora[split].sentences for tags in s.tags
                        for t in tags)
            log.warning("entity type %s occurs in %s (%d entities) but never in train: the model cannot learn it",
                        entity_type, split, count)
