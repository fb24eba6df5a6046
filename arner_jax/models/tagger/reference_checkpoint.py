"""Checkpoints of the UM6P & UL reference (AbdelkaderMH/ArabicNER) read into our tagger and written back.

The reference's `BertNestedTagger` / `BertMTNTagger` state dict holds `bert.*` (Hugging Face
BertModel names, the pooler included and unused) and one `classifiers.N.weight` [C_N, H] /
`classifiers.N.bias` [C_N] per type, in type order. Nested heads have as many outputs as their
type's tag vocabulary (3 or 4); MTN heads all have the widest vocabulary's. Ours fuse them into
`head_kernel` [H, T, C] and `head_bias` [T, C]; a narrower nested head's extra column is 0, so its
logit is exactly the 0 the reference pads with. Files: a `checkpoint_N.pt` (its `model` entry; needs
torch), a plain state dict `.pt`/`.bin`, or a `.safetensors` file. No JAX here beyond numpy trees.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from arner_jax.encoders.config import CheckpointError, EncoderConfig
from arner_jax.encoders.hf_weights import hf_to_params, params_to_hf
from arner_jax.models.tagger.um6p import ReferenceVocab
from arner_jax.runs.checkpoints import save_params

PREFIX = "bert."


def read_reference_state(path: str | Path) -> dict[str, np.ndarray]:
    """A reference checkpoint's tensors by name, float32 numpy."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such file; give a checkpoint_N.pt of the reference or a .safetensors file")
    if path.suffix == ".safetensors":
        from safetensors.numpy import load_file

        return {k: np.asarray(v, np.float32) for k, v in load_file(str(path)).items()}
    try:
        import torch
    except ImportError:
        raise CheckpointError(f"{path}: reading a PyTorch checkpoint needs torch; `pip install arner_jax[torch]`, "
                              "or save the state dict as .safetensors") from None
    raw = torch.load(str(path), map_location="cpu", weights_only=True)
    state = raw.get("model", raw) if isinstance(raw, dict) else raw
    # a model saved from inside torch.nn.DataParallel (as Wojood's original train.py wraps it) has "module."
    return {k.removeprefix("module."): v.detach().float().numpy() for k, v in state.items() if hasattr(v, "detach")}


def expected_outputs(vocab: ReferenceVocab) -> list[int]:
    """Outputs of each reference head: nested its vocabulary's size, MTN the widest (4)."""
    return [vocab.width] * vocab.num_types if vocab.kind == "mtn" else vocab.num_labels


def reference_to_params(state: dict[str, np.ndarray], encoder: EncoderConfig, vocab: ReferenceVocab,
                        source: str = "checkpoint") -> tuple[dict, EncoderConfig]:
    """Our parameter tree ({"encoder", "head_kernel", "head_bias"}) of a reference state dict."""
    enc_params, encoder, _ = hf_to_params({k: v for k, v in state.items() if k.startswith(PREFIX)}, encoder,
                                          prefix=PREFIX, source=source)
    H, T, C = encoder.hidden_size, vocab.num_types, vocab.width
    found = sorted({int(k.split(".")[1]) for k in state if k.startswith("classifiers.")})
    if found != list(range(T)):
        raise CheckpointError(f"{source}: heads classifiers.{found[:3]}... in the checkpoint, but the training files "
                              f"define {T} types ({', '.join(vocab.types)}); give the files it was trained on")
    kernel, bias = np.zeros((H, T, C), np.float32), np.zeros((T, C), np.float32)
    for t, (name, outputs) in enumerate(zip(vocab.types, expected_outputs(vocab))):
        w, b = state[f"classifiers.{t}.weight"], state[f"classifiers.{t}.bias"]
        if w.shape != (outputs, H) or b.shape != (outputs,):
            raise CheckpointError(f"{source}: head classifiers.{t} (type {name}) has weight {tuple(w.shape)} and bias "
                                  f"{tuple(b.shape)}; the {vocab.kind} recipe expects ({outputs}, {H}) and "
                                  f"({outputs},) for that type; give the training files this checkpoint was made with")
        kernel[:, t, :outputs], bias[t, :outputs] = w.T, b
    return {"encoder": enc_params, "head_kernel": kernel, "head_bias": bias}, encoder


def params_to_reference(params: dict, encoder: EncoderConfig, vocab: ReferenceVocab,
                        pooler: dict[str, np.ndarray] | None = None) -> dict[str, np.ndarray]:
    """A reference state dict of our parameters (the pooler, which no output reads, from `pooler` or zeros)."""
    import jax

    params = jax.device_get(params)
    state = params_to_hf(params["encoder"], encoder, prefix=PREFIX)
    H = encoder.hidden_size
    for name, shape in (("pooler.dense.weight", (H, H)), ("pooler.dense.bias", (H,))):
        state[PREFIX + name] = np.asarray((pooler or {}).get(PREFIX + name, np.zeros(shape, np.float32)))
    kernel, bias = np.asarray(params["head_kernel"]), np.asarray(params["head_bias"])
    for t, outputs in enumerate(expected_outputs(vocab)):
        state[f"classifiers.{t}.weight"] = np.ascontiguousarray(kernel[:, t, :outputs].T)
        state[f"classifiers.{t}.bias"] = np.ascontiguousarray(bias[t, :outputs])
    return state


# ----------------------------------------------------------------------------- run folders
def import_reference_checkpoint(checkpoint: str | Path, kind: str, data_paths: dict[str, str | Path],
                                bert_model: str | Path, output_path: str | Path, var_penalty: float = 5.0) -> Path:
    """A reference checkpoint as a run folder of `--recipe um6p`, evaluating and predicting as the reference.

    The tag vocabularies come from the training files (train, val, test, as the reference builds them);
    the tokenizer and encoder config from `bert_model` (the folder or hub id the reference was trained
    from). Everything is read and checked before the run folder is created.
    """
    from transformers import AutoTokenizer

    from arner_jax.config import RunConfig
    from arner_jax.data.wojood import read_wojood
    from arner_jax.encoders import resolve_model_dir
    from arner_jax.models.base import family_for
    from arner_jax.runs import run_folder

    out = Path(output_path)
    run_folder.check_output(out, overwrite=False, resume=False)
    config = RunConfig(kind=kind, recipe="um6p", var_penalty=var_penalty, bert_model=str(bert_model),
                       **{f"{s}_path": str(Path(p).resolve()) for s, p in data_paths.items()})
    family = family_for(kind)
    corpora = [read_wojood(data_paths[s]) for s in ("train", "val", "test")]
    vocab = family.label_space(config, corpora)
    folder = resolve_model_dir(bert_model)
    encoder = EncoderConfig.from_file(folder / "config.json")
    params, encoder = reference_to_params(read_reference_state(checkpoint), encoder, vocab, source=str(checkpoint))
    tokenizer = AutoTokenizer.from_pretrained(str(folder))
    run_folder.create(out, overwrite=False)
    run_folder.write_run(out, config, family, vocab, encoder, tokenizer,
                         {s: Path(p) for s, p in data_paths.items()})
    save_params(out, params, {"epoch": 0, "step": 0, "select_by": "imported", "value": None,
                                         "imported_from": str(Path(checkpoint).resolve())})
    return out


def export_reference_checkpoint(model_path: str | Path, output_path: str | Path, overwrite: bool = False) -> Path:
    """A `--recipe um6p` run's kept model as the reference's state dict (`.safetensors`, or `.pt` as
    `checkpoint_N.pt` holds it: {"model": state_dict}, needs torch); the pooler is written as zeros."""
    from arner_jax.data import files
    from arner_jax.errors import UserError
    from arner_jax.models.tagger.um6p import ReferenceVocab
    from arner_jax.runs.loading import load_run

    out = files.location(output_path)  # local or gs://
    if out.suffix not in (".safetensors", ".pt"):
        raise UserError(f"{out}: name the file .safetensors or .pt (the reference's checkpoint_N.pt layout)")
    files.check_reachable(out)
    with files.storage_errors(out):
        exists = out.exists()
    if exists and not overwrite:
        raise UserError(f"{out}: exists; pass --overwrite to replace it, or name another file")
    run = load_run(model_path)
    if not isinstance(run.labels, ReferenceVocab):
        raise UserError(f"{model_path}: not a --recipe um6p run (its heads are not the reference's); train it with "
                        "--recipe um6p, or export it with `to-pytorch`")
    state = {k: np.ascontiguousarray(v) for k, v in params_to_reference(run.params, run.encoder, run.labels).items()}
    if out.suffix == ".safetensors":
        from safetensors.numpy import save

        data = save(state)
    else:
        import io

        import torch

        buffer = io.BytesIO()
        torch.save({"model": {k: torch.from_numpy(v) for k, v in state.items()}}, buffer)
        data = buffer.getvalue()
    files.make_folder(out.parent)
    files.atomic_write_bytes(out, data)  # whole or not at all: a rename locally, one upload on gs://
    return out
