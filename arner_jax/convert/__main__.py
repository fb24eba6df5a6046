"""Checkpoint conversion and cross-framework checks: `python -m arner_jax.convert COMMAND`.

  verify        our Flax encoder against transformers on a Hugging Face checkpoint
  to-pytorch    a run folder's kept model as a PyTorch folder (`--verify` compares both frameworks)
  from-pytorch  a Hugging Face token-classification checkpoint as a run folder of our flat tagger
  to-span-marker  a span run's kept model as a folder of the PyTorch `span_marker` package
  from-um6p     a checkpoint of the UM6P & UL reference (AbdelkaderMH/ArabicNER) as a --recipe um6p run folder
  to-um6p       a --recipe um6p run's kept model as the reference's state dict (.safetensors or checkpoint .pt)
  export        a run's kept model in any format its model family writes (--format; the to-* commands are
                the built-in families' formats: pytorch, span-marker, um6p)

Every export is the model family's own (`ModelFamily.export` / `verify_export`): this command checks
the flags, loads nothing itself but what --verify compares against, and prints what was written.

Exit status: 0 when the check passes, 1 when it does not, 2 when the input cannot be used (one
line, `error: ...`, says which file and why). An output folder must be new, empty, or an earlier
export of the same kind (replaced with --overwrite); run folders and folders of other files are
refused.
"""
from __future__ import annotations

import contextlib

from arner_jax.data import files
from arner_jax.errors import ArgumentParser, UserError, exit_on_user_error, local_path, storage_path


def main(argv=None) -> int:
    parser = ArgumentParser(prog="python -m arner_jax.convert", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    verify = sub.add_parser("verify", help="compare our Flax encoder with transformers on a checkpoint")
    verify.add_argument("--hf_model", type=local_path, required=True, help="Hugging Face model folder or hub id")
    verify.add_argument("--tolerance", type=float, default=1e-4, help="largest allowed |difference|")
    verify.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"],
                        help="our compute dtype (bfloat16 needs a looser --tolerance, e.g. 5e-2)")
    verify.add_argument("--text", action="append", help="a sentence to run (repeatable); default: built-in Arabic")
    export = sub.add_parser("to-pytorch", help="export a run folder's kept model to PyTorch")
    export.add_argument("--model_path", type=storage_path, required=True,
                        help="run folder (the --output_path of a training run; local or gs://)")
    export.add_argument("--output_path", type=storage_path, required=True, help="folder to write (local or gs://)")
    export.add_argument("--verify", action="store_true", help="run both frameworks and compare logits and tags")
    export.add_argument("--data_path", type=storage_path,
                        help="Wojood file for --verify (default: the run's test file)")
    export.add_argument("--tolerance", type=float, default=1e-4, help="largest allowed |logit difference|")
    export.add_argument("--overwrite", action="store_true", help="replace an earlier export in --output_path")
    export.add_argument("--license", help="the license to state in the model card (README.md), e.g. mit")
    imp = sub.add_parser("from-pytorch", help="a Hugging Face token-classification checkpoint as a flat run folder")
    imp.add_argument("--hf_model", type=local_path, required=True, help="Hugging Face folder or hub id (IOB2 id2label)")
    imp.add_argument("--output_path", type=local_path, required=True, help="run folder to write")
    spans = sub.add_parser("to-span-marker", help="export a span run's kept model in span_marker's layout")
    spans.add_argument("--model_path", type=storage_path, required=True,
                       help="run folder of a span model (span_flat / span_nested; local or gs://)")
    spans.add_argument("--output_path", type=storage_path, required=True, help="folder to write (local or gs://)")
    spans.add_argument("--encoder_name", default="",
                       help="hub id of the base encoder to record (span_marker reads its config and tokenizer "
                            "there); default: write them to OUTPUT/encoder and record that path")
    spans.add_argument("--verify", action="store_true",
                       help="load the written folder back and compare span logits on the run's test file")
    spans.add_argument("--overwrite", action="store_true", help="replace an earlier export in --output_path")
    spans.add_argument("--license", help="the license to state in the model card (README.md), e.g. apache-2.0")
    ref_in = sub.add_parser("from-um6p", help="a UM6P & UL reference checkpoint as a --recipe um6p run folder")
    ref_in.add_argument("--checkpoint", type=local_path, required=True,
                        help="the reference's checkpoints/checkpoint_N.pt (its `model` entry), or a .safetensors "
                             "state dict in its names (bert.*, classifiers.N.*)")
    ref_in.add_argument("--kind", required=True, choices=["nested", "mtn"], help="BertNestedTagger or BertMTNTagger")
    for split in ("train", "val", "test"):
        ref_in.add_argument(f"--{split}_path", type=local_path, required=True,
                            help=f"the {split} file the reference was trained with (its tag vocabularies come "
                                 "from train+val+test)")
    ref_in.add_argument("--bert_model", type=local_path, required=True,
                        help="the encoder folder or hub id it was trained from "
                        "(tokenizer and config)")
    ref_in.add_argument("--var_penalty", type=float, default=5.0, help="5 for the paper's +var runs, 0 otherwise "
                        "(the validation loss counts it)")
    ref_in.add_argument("--output_path", type=local_path, required=True, help="run folder to write")
    ref_out = sub.add_parser("to-um6p", help="a --recipe um6p run's kept model as the reference's state dict")
    ref_out.add_argument("--model_path", type=storage_path, required=True,
                         help="run folder of a --recipe um6p run (local or gs://)")
    ref_out.add_argument("--output_path", type=storage_path, required=True,
                         help="file to write: NAME.safetensors or NAME.pt")
    ref_out.add_argument("--overwrite", action="store_true", help="replace an existing file")
    generic = sub.add_parser("export", help="a run's kept model in a format of its model family")
    generic.add_argument("--model_path", type=storage_path, required=True, help="run folder (local or gs://)")
    generic.add_argument("--format", required=True, help="one of the run's family's export formats")
    generic.add_argument("--output_path", type=storage_path, required=True,
                         help="where to write (a folder, or a file for um6p)")
    generic.add_argument("--verify", action="store_true", help="compare the export with the run's kept model")
    generic.add_argument("--data_path", type=storage_path,
                        help="Wojood file for --verify (default: the run's test file)")
    generic.add_argument("--tolerance", type=float, default=1e-4, help="largest allowed difference for --verify")
    generic.add_argument("--overwrite", action="store_true", help="replace an earlier export in --output_path")
    generic.add_argument("--license", help="the license to state in the model card")
    args = parser.parse_args(argv)
    commands = {"to-span-marker": _to_span_marker, "to-pytorch": _to_pytorch, "from-pytorch": _from_pytorch,
                "verify": _verify, "from-um6p": _from_um6p, "to-um6p": _to_um6p, "export": _export}
    with exit_on_user_error():
        return commands[args.command](args)


def _verify(args) -> int:
    from arner_jax.encoders.verify import SAMPLE_SENTENCES, verify_encoder

    result = verify_encoder(args.hf_model, args.text or SAMPLE_SENTENCES, dtype=args.dtype)
    if result.notes:
        print(result.notes)
    source = "its tokenizer" if result.used_tokenizer else "random token ids (the folder has no tokenizer)"
    print(f"{result.num_sentences} sentences, {result.num_tokens} tokens from {source}")
    ok = result.max_abs_diff < args.tolerance
    print(f"max |difference| of the last hidden state: {result.max_abs_diff:.3e} "
          f"({'OK' if ok else 'FAIL'}, tolerance {args.tolerance:g})")
    return 0 if ok else 1


# The built-in formats' commands, and the command each format has (for messages).
COMMAND_OF_FORMAT = {"pytorch": "to-pytorch", "span-marker": "to-span-marker", "um6p": "to-um6p"}


def _export(args, format: str | None = None, **options) -> int:  # noqa: A002
    """Write a run's kept model in `format` through its family, then (--verify) compare it with the run."""
    from arner_jax.runs.run_folder import read_run

    format = format or args.format
    record = read_run(args.model_path)
    formats = record.family.export_formats
    if format not in formats:
        how = ", ".join(f"{f} (python -m arner_jax.convert {COMMAND_OF_FORMAT.get(f, 'export --format ' + f)})"
                        for f in formats) or "no export format"
        raise UserError(f"{args.model_path}: a {record.config.kind} run; its model family writes {how}, not {format}")
    verify = getattr(args, "verify", False)
    data = files.location(args.data_path) if getattr(args, "data_path", None) else record.data.get("test")
    if verify and (data is None or not files.is_file(data)):
        raise UserError(f"--verify: the run's test file {data} is not available; pass --data_path")
    out = record.family.export(args.model_path, format, args.output_path, overwrite=args.overwrite,
                               license=getattr(args, "license", None), **options)
    card = files.location(out) / "README.md"
    print(f"wrote {out}" + (f" (its model card: {card})" if files.is_file(card) else ""))
    if not verify:
        return 0
    from arner_jax.data.wojood import read_wojood
    from arner_jax.predict import NERTagger

    sentences = [s.words for s in read_wojood(data).sentences]
    ours = NERTagger.from_pretrained(args.model_path, with_logits=True)
    with files.local_copy(out) if files.is_dir(out) else contextlib.nullcontext(out) as exported:
        ok, line = record.family.verify_export(args.model_path, format, exported, sentences, ours, args.tolerance)
    print(f"{data}: {line} -> {'OK' if ok else 'FAIL'}")
    return 0 if ok else 1


def _to_pytorch(args) -> int:
    return _export(args, "pytorch")


def _to_span_marker(args) -> int:
    args.tolerance = 0.0
    return _export(args, "span-marker", encoder_name=args.encoder_name)


def _from_pytorch(args) -> int:
    from arner_jax.models.tagger.export import import_token_classifier

    out = import_token_classifier(args.hf_model, args.output_path)
    print(f"wrote run folder {out}: use it with arner_jax.predict / arner_jax.evaluate")
    return 0


def _from_um6p(args) -> int:
    from arner_jax.models.tagger.reference_checkpoint import import_reference_checkpoint

    out = import_reference_checkpoint(args.checkpoint, args.kind, {s: getattr(args, f"{s}_path") for s in
                                                                   ("train", "val", "test")},
                                      args.bert_model, args.output_path, args.var_penalty)
    print(f"wrote run folder {out}: arner_jax.evaluate / arner_jax.predict read it as the reference does")
    return 0


def _to_um6p(args) -> int:
    status = _export(args, "um6p")
    print("load it with the reference's BertNestedTagger / BertMTNTagger (load_state_dict)")
    return status


if __name__ == "__main__":
    from arner_jax.system.entrypoint import start

    start("arner_jax.convert.__main__:main")
