"""The table of a sweep: `python -m arner_jax.sweep report DIR [--output DIR2]` (or `python -m arner_jax.report`).

Owns turning what a sweep's runs wrote into its results: DIR/sweep.json (the expected rows: the
grid's configurations, seeds, published figures and notes), each run folder's metrics.json (F1,
per-epoch history) and config.json (the seed it used), and a failed run's sweep_failure.json.
Writes, atomically, into DIR (or --output):
  results.md, results.csv, results.json   one row per configuration: seeds finished, val and test
                                          micro-F1 mean ± std over them, the paper's figure, val - paper
  curves_f1.png, curves_loss.png          per configuration (small multiples), one line per seed:
                                          validation micro-F1, and train (dashed) / validation loss, per epoch
It only reads the runs (never writes in a run folder), so it can run while the sweep trains: a
partial sweep gives its finished seeds (n = 0 for rows not run yet) and lists its failed runs.
"""
from __future__ import annotations

import csv
import io
import json
import math
import statistics
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from arner_jax.data import files
from arner_jax.data.files import atomic_write_bytes, atomic_write_json, atomic_write_text
from arner_jax.errors import ArgumentParser, exit_on_user_error, storage_path
from arner_jax.runs import run_folder
from arner_jax.sweep import folder as sweep

MARKDOWN, CSV, JSON = "results.md", "results.csv", "results.json"
CURVES_F1, CURVES_LOSS = "curves_f1.png", "curves_loss.png"
# the row keys that are figures (the others are the configuration's name and labels: the table's first columns)
FIGURES = ("seeds_finished", "seeds_expected", "seeds_failed", "seeds_used", "val_f1_mean", "val_f1_std",
           "test_f1_mean", "test_f1_std", "paper_val_f1", "val_minus_paper")


def _mean_std(values: Sequence[float]) -> tuple[float | None, float | None]:
    """Mean and sample standard deviation (None without values; the deviation needs two)."""
    if not values:
        return None, None
    return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else None


def collect(root: str | Path) -> dict[str, Any]:
    """The report's content: {grid, description, smoke, notes, rows, failures, runs, counts}.

    `rows` has one dict per configuration (the same keys in results.csv and results.json);
    `runs` holds each finished run's history for the curves.
    """
    root = files.location(root)  # local or gs://
    record = sweep.read_record(root)
    rows, runs, failures = [], [], []
    counts = dict.fromkeys(sweep.STATES, 0)
    for entry in record["configurations"]:
        finished, seeds, failed = [], [], 0
        for seed_index in range(entry["seeds"]):
            folder = sweep.run_dir(root, entry["name"], seed_index)
            state = sweep.status(folder)
            counts[state] += 1
            if state == "failed":
                failure = json.loads((folder / sweep.FAILURE).read_text(encoding="utf-8"))
                failures.append({"run": failure["run"], "error": f"{failure['type']}: {failure['error']}"})
                failed += 1
            if state != "finished":
                continue
            metrics = json.loads((folder / run_folder.METRICS).read_text(encoding="utf-8"))
            settings = json.loads((folder / run_folder.CONFIG).read_text(encoding="utf-8"))["run"]
            finished.append(metrics)
            seeds.append(settings["seed"])
            runs.append({"configuration": entry["name"], "seed_index": seed_index, "history": metrics["history"]})
        val_mean, val_std = _mean_std([m["val"]["f1"] for m in finished])
        test_mean, test_std = _mean_std([m["test"]["f1"] for m in finished])
        paper = entry.get("paper")
        rows.append({"configuration": entry["name"], **entry["labels"],
                     "seeds_finished": len(finished), "seeds_expected": entry["seeds"], "seeds_failed": failed,
                     "seeds_used": " ".join(str(s) for s in seeds),
                     "val_f1_mean": val_mean, "val_f1_std": val_std, "test_f1_mean": test_mean, "test_f1_std": test_std,
                     "paper_val_f1": paper,
                     "val_minus_paper": None if val_mean is None or paper is None else val_mean - paper})
    return {"grid": record["grid"], "description": record.get("description", ""), "smoke": record["smoke"],
            "notes": record.get("notes", []), "rows": rows, "failures": failures, "runs": runs, "counts": counts}


# ---------------------------------------------------------------------- tables
def _f(value: float | None, sign: bool = False) -> str:
    return "" if value is None else f"{value:+.4f}" if sign else f"{value:.4f}"


def _pm(mean: float | None, std: float | None) -> str:
    return "" if mean is None else _f(mean) + ("" if std is None else f" ± {std:.4f}")


def markdown(report: dict[str, Any], figures: Sequence[str]) -> str:
    rows = report["rows"]
    labels = [k for k in _columns(rows) if k not in FIGURES]
    counts = report["counts"]
    lines = [f"# Sweep `{report['grid']}`: results", "", report["description"], ""]
    if report["smoke"]:
        lines += [("**Smoke sweep** (each run the preset's smoke variant: a tiny encoder, the synthetic corpus, one "
                   "epoch): the figures check the machinery and are not comparable with the paper's."), ""]
    lines += [("Micro-F1 as the Wojood scorer computes it (seqeval's default mode), mean ± sample standard deviation "
               "over the finished seeds; `val - paper` is our mean validation F1 minus the published one."), "",
              "| " + " | ".join(labels + ["seeds", "val F1", "test F1", "paper val F1", "val - paper"]) + " |",
              "|" + " --- |" * (len(labels) + 5)]
    for row in rows:
        seeds = f"{row['seeds_finished']}/{row['seeds_expected']}" + (
            f" ({row['seeds_failed']} failed)" if row["seeds_failed"] else "")
        cells = [str(row.get(k, "")) for k in labels] + [seeds, _pm(row["val_f1_mean"], row["val_f1_std"]),
                                                  _pm(row["test_f1_mean"], row["test_f1_std"]),
                                                  _f(row["paper_val_f1"]), _f(row["val_minus_paper"], sign=True)]
        lines.append("| " + " | ".join(cells) + " |")
    lines += ["", "Runs: " + ", ".join(f"{n} {state}" for state, n in counts.items() if n)
              + f" (of {sum(counts.values())}).", ""]
    if report["notes"]:
        lines += ["## Notes", ""] + [f"- {note}" for note in report["notes"]] + [""]
    if report["failures"]:
        lines += ["## Failed runs", "", ("Their exceptions are in `sweep_failure.json` in each run folder; "
                                         "the same sweep command tries them again."), ""]
        lines += [f"- `{f['run']}`: {f['error']}" for f in report["failures"]] + [""]
    lines += ["## Learning curves", ""] + [f"![{name}]({name})" for name in figures] + [""]
    return "\n".join(lines)



def _columns(rows: Sequence[dict]) -> list[str]:
    """The configuration's name, every label any row has (grids may label rows differently), the figures."""
    labels = dict.fromkeys(k for row in rows for k in row if k not in FIGURES and k != "configuration")
    return ["configuration", *labels, *FIGURES]


def csv_text(rows: Sequence[dict]) -> str:
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=_columns(rows), lineterminator="\n")
    writer.writeheader()
    writer.writerows({k: "" if v is None else v for k, v in row.items()} for row in rows)
    return out.getvalue()


# ---------------------------------------------------------------------- curves
def plot_curves(report: dict[str, Any], output: Path) -> list[str]:
    """curves_f1.png and curves_loss.png: one small panel per configuration, one line per seed."""
    # The Figure API draws on its own Agg canvas: no pyplot, so no display is needed and a notebook's
    # pyplot backend is left as it is (matplotlib.use("Agg") would switch it for the whole kernel).
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    names = [row["configuration"] for row in report["rows"]]
    paper = {row["configuration"]: row["paper_val_f1"] for row in report["rows"]}
    columns = min(4, max(1, len(names)))
    rows = math.ceil(len(names) / columns) if names else 1
    written = []
    for filename, title in ((CURVES_F1, "validation micro-F1"), (CURVES_LOSS, "loss (train dashed, validation)")):
        fig = Figure(figsize=(3.4 * columns, 2.5 * rows + 0.5), layout="constrained")
        axes = fig.subplots(rows, columns, squeeze=False).ravel()
        for ax, name in zip(axes, names):
            runs = [r for r in report["runs"] if r["configuration"] == name]
            for run in runs:
                epochs = [h["epoch"] for h in run["history"]]
                label = f"seed{run['seed_index']}"
                if filename == CURVES_F1:
                    ax.plot(epochs, [h["val_f1"] for h in run["history"]], marker="o", markersize=3, label=label)
                else:
                    line, = ax.plot(epochs, [h["val_loss"] for h in run["history"]], marker="o", markersize=3,
                                    label=label)
                    ax.plot(epochs, [h["train_loss"] for h in run["history"]], linestyle="--", marker="x",
                            markersize=3, color=line.get_color())
            if filename == CURVES_F1 and paper[name] is not None:
                ax.axhline(paper[name], color="grey", linestyle=":", label="paper")
            if not runs:
                ax.text(0.5, 0.5, "no finished run", ha="center", va="center", transform=ax.transAxes, color="grey")
            elif len(runs) > 1 or (filename == CURVES_F1 and paper[name] is not None):
                ax.legend(fontsize=6)
            ax.set_title(name, fontsize=8)
            ax.set_xlabel("epoch", fontsize=7)
            ax.xaxis.set_major_locator(MaxNLocator(integer=True, min_n_ticks=1))
            if runs:  # whole epochs, also for one-epoch runs (matplotlib would pad a lone point by ±5%)
                ax.set_xlim(0.5, max(h["epoch"] for r in runs for h in r["history"]) + 0.5)
            ax.tick_params(labelsize=6)
            ax.grid(alpha=0.3)
        for ax in axes[len(names):]:
            ax.set_visible(False)
        fig.suptitle(f"{report['grid']}: {title}" + (" (smoke)" if report["smoke"] else ""))
        data = io.BytesIO()
        fig.savefig(data, format="png", dpi=100)
        atomic_write_bytes(output / filename, data.getvalue())
        written.append(filename)
    return written


# ---------------------------------------------------------------------- writing
def write_report(root: str | Path, output: str | Path | None = None) -> dict[str, Path]:
    """Write the results files and the curves of the sweep in `root` into `output` (default: `root`)."""
    report = collect(root)
    output = files.location(output or root)
    files.make_folder(output)
    figures = plot_curves(report, output)
    rows = report["rows"]
    atomic_write_text(output / MARKDOWN, markdown(report, figures))
    atomic_write_text(output / CSV, csv_text(rows))
    atomic_write_json(output / JSON, {k: report[k] for k in ("grid", "description", "smoke", "notes",
                                                                        "counts", "rows", "failures")})
    return {name: output / name for name in (MARKDOWN, CSV, JSON, *figures)}


def main(argv: Sequence[str] | None = None, prog: str = "python -m arner_jax.sweep report") -> dict[str, Path]:
    parser = ArgumentParser(prog=prog,
                            description="Tables and learning curves of a sweep (python -m arner_jax.sweep).")
    parser.add_argument("sweep_dir", type=storage_path, help="the sweep's --output_path (local or gs://)")
    parser.add_argument("--output", type=storage_path,
                        help="folder for the results, local or gs:// (default: the sweep folder)")
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    with exit_on_user_error():
        for folder in (args.sweep_dir, args.output):
            files.check_reachable(folder or args.sweep_dir)
        with files.storage_errors(args.sweep_dir):
            written = write_report(args.sweep_dir, args.output)
    print(files.read_text(written[MARKDOWN]))
    print("wrote " + ", ".join(str(p) for p in written.values()))
    return written

