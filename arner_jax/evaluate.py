"""Scoring a trained run folder on labelled files: `python -m arner_jax.evaluate`.

Owns: the command line around the evaluation the training loop scores with
(`train.evaluation.evaluate_split` for taggers, `span_marker.task.SpanTask.evaluate` for span
models): for each file, the Wojood metrics printed and written, with its predictions.txt.

    python -m arner_jax.evaluate --model_path runs/nested --data_paths val.txt test.txt
    # -> runs/nested/eval/<file stem>/{predictions.txt, metrics.json}
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Sequence

from arner_jax.data.align import encode_sentences
from arner_jax.data.wojood import WojoodFormatError, read_wojood
from arner_jax.losses import LossConfig
from arner_jax.metrics import format_per_type, write_predictions
from arner_jax.tagger import class_mask, label_layout


def evaluate_files(model_path: str | Path, data_paths: Sequence[str | Path], output_path: str | Path | None = None,
                   batch_size: int | None = None) -> dict[str, dict]:
    """Metrics of the run's kept model on each Wojood file; predictions and metrics written per file."""
    from arner_jax.train.assemble import load_run
    from arner_jax.train.evaluation import Split, evaluate_split
    from arner_jax.train.parallel import PmapParallel, StepBodies, tagger_bodies

    run = load_run(model_path)
    import jax

    devices = jax.local_devices()
    batch_size = batch_size or run.config.eval_batch  # the training eval batches: the same loss
    batch_size = -(-batch_size // len(devices)) * len(devices)  # a multiple of the device count
    if run.span is not None:
        from arner_jax.span_marker.model import SpanObjective
        from arner_jax.span_marker.task import SpanTask, encode_split

        bodies = StepBodies(SpanObjective(run.model.apply))
    else:
        loss = LossConfig(name=run.config.loss, var_penalty=run.config.var_penalty,
                          head_reduction=run.config.head_reduction)
        bodies = tagger_bodies(run.model.apply, run.kind, class_mask(run.kind, run.vocab), loss)
    parallel = PmapParallel(bodies, devices)
    params = parallel.put_params(run.params)
    out_root = Path(output_path) if output_path else Path(model_path) / "eval"
    results = {}
    for path in map(Path, data_paths):
        corpus = read_wojood(path, run.config.tag_scheme)
        if run.span is not None:
            split = encode_split(path.stem, corpus, run.tokenizer, run.span, run.max_length, run.kind == "span_nested")
            task = SpanTask(run.config, run.span, {path.stem: split}, run.max_length, int(run.tokenizer.pad_token_id))
            res = task.evaluate(parallel, params, path.stem, batch_size)
        else:
            run.vocab.check_corpus(corpus)
            windows, _ = encode_sentences(corpus.sentences, run.tokenizer, run.vocab, label_layout(run.kind),
                                          run.max_length)
            res = evaluate_split(parallel, params, Split(path.stem, corpus, windows), run.kind, run.vocab,
                                 batch_size, run.max_length, int(run.tokenizer.pad_token_id),
                                 run.config.reference_labels)
        folder = out_root / path.stem
        folder.mkdir(parents=True, exist_ok=True)
        write_predictions(folder / "predictions.txt", corpus.sentences, res.tags)
        (folder / "metrics.json").write_text(json.dumps({"data": str(path), **res.metrics}, indent=1) + "\n")
        results[str(path)] = res.metrics
    return results


def main(argv: Sequence[str] | None = None) -> None:
    p = argparse.ArgumentParser(description="Evaluate a trained arner_jax run folder on Wojood files.")
    p.add_argument("--model_path", required=True, help="run folder (the --output_path of a training run)")
    p.add_argument("--data_paths", nargs="+", required=True, help="Wojood files with gold tags")
    p.add_argument("--output_path", help="where to write <file stem>/predictions.txt and metrics.json "
                                         "(default: MODEL_PATH/eval)")
    p.add_argument("--batch_size", type=int, help="default: the run's evaluation batch size (same losses)")
    args = p.parse_args(argv)
    missing = [d for d in args.data_paths if not Path(d).is_file()]
    if missing:
        sys.exit(f"error: no such file: {', '.join(missing)}")
    try:
        results = evaluate_files(args.model_path, args.data_paths, args.output_path, args.batch_size)
    except (FileNotFoundError, ValueError, WojoodFormatError) as err:
        sys.exit(f"error: {err}")
    for path, m in results.items():
        print(f"{path}: {m['mode']} micro P {m['precision']:.4f} R {m['recall']:.4f} F1 {m['f1']:.4f} "
              f"(strict F1 {m['strict']['f1']:.4f}), {m['gold_entities']} gold entities, loss {m['loss']:.5f}")
        print(format_per_type(m))


if __name__ == "__main__":
    main()
