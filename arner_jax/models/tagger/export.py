"""The taggers' PyTorch export and import (the tagger family's `export` / `verify_export` call these).

Owns:
  export_run      a tagger run's kept model as a PyTorch folder. A flat (single-head) tagger becomes a
                  Hugging Face `BertForTokenClassification` / `XLMRobertaForTokenClassification`
                  folder (id2label, tokenizer, safetensors) that `pipeline("token-classification")`
                  loads; nested and MTN taggers become the Hugging Face encoder folder plus the heads
                  (`arner_heads.safetensors`, `arner_tagger.json`) for
                  `arner_jax.models.tagger.torch_tagger.TorchTagger`.
  verify_export   both frameworks on a labelled file: largest logit difference, identical tags.
  import_token_classifier   a Hugging Face token-classification checkpoint (IOB2 labels) as a run
                  folder of the flat tagger, which predict/evaluate then use like any run.
Every folder written is an export folder (arner_jax.runs.export_folder) with a model card (README.md,
arner_jax.runs.model_card).
"""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import numpy as np

from arner_jax.data import files
from arner_jax.data.vocab import LabelVocab
from arner_jax.encoders import (
    CheckpointError,
    EncoderConfig,
    hf_to_params,
    params_to_hf,
    read_state_dict,
)
from arner_jax.encoders.hf_weights import base_prefix, hf_config_dict, write_hf_folder
from arner_jax.errors import UserError
from arner_jax.models.base import family_for
from arner_jax.runs import run_folder
from arner_jax.runs.checkpoints import save_params
from arner_jax.runs.export_folder import export_target
from arner_jax.runs.loading import load_run

TOKEN_CLASSIFIER = {"bert": "BertForTokenClassification", "xlm-roberta": "XLMRobertaForTokenClassification",
                    "roberta": "RobertaForTokenClassification"}


def _architecture(config: EncoderConfig) -> str:
    return TOKEN_CLASSIFIER.get(config.model_type, TOKEN_CLASSIFIER[config.family])


def export_run(model_path: str | Path, output_path: str | Path, overwrite: bool = False,
               license: str | None = None) -> Path:
    """Write a tagger run's kept model as a PyTorch folder with its model card (README.md, recording
    `license`); returns the folder (local or gs://)."""
    from arner_jax.runs import model_card

    run = load_run(model_path)
    if run.family.name != "tagger":
        raise UserError(f"{model_path}: a {run.config.kind} run is not a tagger; its family writes "
                        f"{', '.join(run.family.export_formats) or 'no export format'}")
    if run.config.options.recipe == "um6p":
        raise UserError(f"{model_path}: a --recipe um6p run has the reference's heads (<pad>, tags, O); write it in "
                        "the reference's layout with `python -m arner_jax.convert to-um6p`")
    spec = run.family.spec(run.config)
    card = model_card.run_card(model_path, model_card.TOKEN_CLASSIFIER if spec.flat_head else model_card.TORCH_TAGGER,
                               output_path, license)
    with export_target(output_path, overwrite, "a PyTorch export") as out:  # local, or staged for gs://
        _write_torch_folder(out, run, spec, model_path, card)
    return files.location(output_path)


def _write_torch_folder(out: Path, run, spec, model_path, card: str) -> None:
    """The PyTorch folder's files in the local folder `out`."""
    from safetensors.numpy import save_file

    from arner_jax.runs import model_card

    params = {k: np.asarray(v) for k, v in run.params.items() if k != "encoder"}
    if spec.flat_head:
        tags = run.labels.flat_tags
        state = params_to_hf(run.params["encoder"], run.encoder, prefix=base_prefix(run.encoder))
        state["classifier.weight"] = params["head_kernel"][:, 0, :].T.copy()  # [C, H]
        state["classifier.bias"] = params["head_bias"][0].copy()
        config = hf_config_dict(run.encoder, _architecture(run.encoder),
                                id2label={str(i): t for i, t in enumerate(tags)},
                                label2id={t: i for i, t in enumerate(tags)})
        write_hf_folder(out, state, config)
    else:
        from arner_jax.encoders import save_pretrained_encoder
        from arner_jax.models.tagger.torch_tagger import HEADS_FILE, META_FILE

        save_pretrained_encoder(out, run.params["encoder"], run.encoder)
        save_file({"kernel": params["head_kernel"], "bias": params["head_bias"]}, str(out / HEADS_FILE))
        meta = {"kind": run.config.kind, "one_tag_per_word": spec.one_tag_per_word, "vocab": run.labels.to_json(),
                "max_length": run.max_length, "source_run": files.absolute(model_path)}
        (out / META_FILE).write_text(json.dumps(meta, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    run.tokenizer.save_pretrained(str(out))
    model_card.write_card(out, card)


@dataclasses.dataclass
class ExportCheck:
    words: int
    max_logit_diff: float
    differing_tags: int  # words whose predicted tags differ

    def passed(self, tolerance: float) -> bool:
        return self.max_logit_diff < tolerance and self.differing_tags == 0


def verify_export(ours: Any, exported: str | Path, sentences: list[list[str]]) -> ExportCheck:
    """Run the kept model (`ours`: arner_jax.predict.NERTagger with logits, which the caller loads) and
    its PyTorch export in `exported` on the same words, and compare."""
    import torch

    split, outputs = ours.outputs(sentences)
    jax_out = split.per_word(outputs)
    if ours.family.spec(ours.config).flat_head:
        theirs = _hf_token_classifier_outputs(exported, split)
    else:
        from arner_jax.models.tagger.torch_tagger import TorchTagger

        with torch.no_grad():
            theirs = TorchTagger.from_pretrained(exported).tag_words(sentences)
    diff, differ, words = 0.0, 0, 0
    for a, b in zip(jax_out, theirs):
        words += len(a["ids"])
        if len(a["ids"]):
            diff = max(diff, float(np.abs(a["logits"] - b["logits"]).max()))
            differ += int((a["ids"] != b["ids"]).any(axis=-1).sum())
    return ExportCheck(words, diff, differ)


def _hf_token_classifier_outputs(folder, split):
    """Logits and argmax of the exported Hugging Face model, on the same windows as ours (one at a time)."""
    import torch
    from transformers import AutoModelForTokenClassification

    from arner_jax.data.align import scatter_to_words

    model = AutoModelForTokenClassification.from_pretrained(str(folder), attn_implementation="eager").eval()
    logits = []
    with torch.no_grad():
        for w in split.windows:
            out = model(torch.tensor(w.input_ids[None], dtype=torch.long)).logits[0].numpy()  # [n, C]
            logits.append(out[:, None, :])  # [n, 1, C]
    per_word = scatter_to_words(split.windows, [len(s) for s in split.sentences], logits)
    return [{"logits": lg, "ids": lg.argmax(-1)} for lg in per_word]


def import_token_classifier(hf_model: str | Path, output_path: str | Path) -> Path:
    """A Hugging Face token-classification folder (IOB2 labels) as a run folder of the flat tagger."""
    from transformers import AutoTokenizer

    from arner_jax.config import RunConfig
    from arner_jax.encoders import resolve_model_dir

    if files.is_url(str(output_path)):  # the command line refuses it too (arner_jax.errors.local_path)
        raise UserError(f"{output_path}: an imported run folder is written locally; give a local --output_path")
    out = Path(output_path)
    run_folder.check_output(out, overwrite=False, resume=False)
    folder = resolve_model_dir(hf_model)
    raw = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    id2label = {int(k): v for k, v in (raw.get("id2label") or {}).items()}
    tags = [id2label.get(i) for i in range(len(id2label))]
    bad = [t for t in tags if t is None or not (t == "O" or (t[:2] in ("B-", "I-") and len(t) > 2))]
    if not tags or bad:
        raise CheckpointError(f"{folder / 'config.json'}: id2label must hold IOB2 tags (O, B-X, I-X); "
                              f"found {bad[:5] or 'none'}. Set id2label in config.json to the tags the model predicts.")
    types = sorted({t[2:] for t in tags if t != "O"})
    vocab = LabelVocab(tuple(types), tuple(tuple(c for c in ("O", "B", "I") if c == "O" or f"{c}-{t}" in tags)
                                           for t in types))
    config = EncoderConfig.from_file(folder / "config.json")
    state = read_state_dict(folder)
    enc_params, config, _ = hf_to_params(state, config, source=str(folder))
    weight, bias = state.get("classifier.weight"), state.get("classifier.bias")
    if weight is None or bias is None or weight.shape[0] != len(tags):
        raise CheckpointError(f"{folder}: no token-classification head 'classifier.weight' with {len(tags)} rows")
    order = [tags.index(t) for t in vocab.flat_tags]  # our flat tag order -> their row
    params = {"encoder": enc_params, "head_kernel": np.asarray(weight, np.float32)[order].T[:, None, :].copy(),
              "head_bias": np.asarray(bias, np.float32)[order][None].copy()}
    tokenizer = AutoTokenizer.from_pretrained(str(folder))
    run_config = RunConfig(kind="flat", bert_model=str(folder), max_length=config.max_text_positions)
    run_folder.create(out, overwrite=False)
    run_folder.write_run(out, run_config, family_for(run_config.kind), vocab, config, tokenizer, {})
    save_params(out, params, {"epoch": 0, "step": 0, "select_by": "imported", "value": None,
                                         "imported_from": str(folder)})
    return out
