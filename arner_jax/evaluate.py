"""Scoring a trained run folder on labelled files: `python -m arner_jax.evaluate`.

Owns: the command line and `evaluate_files`, which score the run's kept model on Wojood files
exactly as training scores its validation and test splits (the same family encoding, the same
inference driver and evaluation batches, hence the same loss), and write each file's
predictions.txt and metrics.json into a folder of its own.

    python -m arner_jax.evaluate --model_path runs/nested --data_paths val.txt test.txt
    # -> runs/nested/eval/<file stem>/{predictions.txt, metrics.json}
"""
from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from arner_jax.data import files
from arner_jax.data.files import atomic_write_json, atomic_write_text
from arner_jax.data.wojood import read_wojood
from arner_jax.errors import ArgumentParser, UserError, exit_on_user_error, storage_path
from arner_jax.models import inference
from arner_jax.models.parallel import PmapParallel, StepBodies
from arner_jax.runs.loading import load_run
from arner_jax.runs.run_folder import EVAL
from arner_jax.scoring.metrics import format_per_type, format_predictions


def output_folders(data_paths: Sequence[Path]) -> list[str]:
    """A distinct folder name per file: its stem, with its parent folder's name when stems collide."""
    stems = [p.stem for p in data_paths]
    names = [f"{p.parent.name}_{p.stem}" if stems.count(p.stem) > 1 else p.stem for p in data_paths]
    return [name if names.count(name) == 1 else f"{name}_{i + 1}" for i, name in enumerate(names)]


def evaluate_files(model_path: str | Path, data_paths: Sequence[str | Path], output_path: str | Path | None = None,
                   batch_size: int | None = None) -> dict[str, dict]:
    """Metrics of the run's kept model on each Wojood file; predictions and metrics written per file."""
    paths = [files.location(p) for p in data_paths]  # local files or gs:// objects
    for path in paths:
        if not files.is_file(path):
            raise UserError(f"{path}: {'is a folder' if path.is_dir() else 'no such file'}; "
                            "--data_paths takes Wojood files")
    run = load_run(model_path)
    corpora = [read_wojood(path, run.config.tag_scheme) for path in paths]  # every file checked before scoring
    for corpus in corpora:
        run.family.check_corpus(run.config, run.labels, corpus)
    parallel = PmapParallel(StepBodies(run.family.objective(run.config, run.labels, run.model)))
    batch_size = parallel.round_batch_size(batch_size or run.config.eval_batch)  # the training's: the same loss
    params = parallel.put_params(run.params)
    out_root = files.location(output_path) if output_path else files.location(model_path) / EVAL
    results = {}
    for path, corpus, name in zip(paths, corpora, output_folders(paths)):
        split = run.family.encode(run.config, run.labels, run.tokenizer, corpus.sentences, run.max_length)
        res = inference.evaluate(parallel, params, run.family, run.config, run.labels, split, batch_size,
                                 run.max_length)
        folder = out_root / name
        files.make_folder(folder)
        atomic_write_text(folder / "predictions.txt", format_predictions(corpus.sentences, res.tags))
        atomic_write_json(folder / "metrics.json", {"data": files.absolute(path), **res.metrics})
        results[str(path)] = res.metrics
    return results


def main(argv: Sequence[str] | None = None) -> int:
    p = ArgumentParser(prog="python -m arner_jax.evaluate", description=__doc__.splitlines()[0])
    p.add_argument("--model_path", type=storage_path, required=True,
                   help="run folder (the --output_path of a training run; local or gs://)")
    p.add_argument("--data_paths", type=storage_path, nargs="+", required=True,
                   help="Wojood files with gold tags (local or gs://)")
    p.add_argument("--output_path", type=storage_path, help="where to write <file>/predictions.txt and metrics.json "
                                         "(default: MODEL_PATH/eval)")
    p.add_argument("--batch_size", type=int, help="default: the run's evaluation batch size (same losses)")
    args = p.parse_args(argv)
    with exit_on_user_error():
        if args.batch_size is not None and args.batch_size < 1:
            raise UserError(f"--batch_size {args.batch_size}: must be a positive whole number")
        results = evaluate_files(args.model_path, args.data_paths, args.output_path, args.batch_size)
    for path, m in results.items():
        print(f"{path}: {m['mode']} micro P {m['precision']:.4f} R {m['recall']:.4f} F1 {m['f1']:.4f} "
              f"(strict F1 {m['strict']['f1']:.4f}), {m['gold_entities']} gold entities, loss {m['loss']:.5f}")
        print(format_per_type(m))
    return 0


if __name__ == "__main__":
    from arner_jax.system.entrypoint import start

    start("arner_jax.evaluate:main")
