"""What the notebooks (`notebooks/*.ipynb`, Colab TPU and Jupyter) need beyond the library's API.

Owns: the smoke switch (`ARNER_SMOKE=1`: the presets' smoke variant, a tiny offline corpus and
encoder, so a notebook runs top to bottom on a CPU in a minute), where a notebook keeps its files (Google
Drive on Colab, so runs and the compilation cache outlive the runtime), the accelerator summary
and compute dtype (bfloat16 on TPU), fetching Wojood files, and the displays: training curves,
the per-type table, entities highlighted in their text. Training, evaluation, prediction and
conversion are the library's (`presets`, `train.experiment`, `evaluate`, `predict`,
`span_marker`, `convert`); the notebooks call those directly.
"""
from __future__ import annotations

import html
import json
import os
import shutil
from collections.abc import Sequence
from pathlib import Path

from arner_jax.data.sample import SPLITS

SMOKE_ENV = "ARNER_SMOKE"  # read by each notebook's first cell, before arner_jax is installed
WORKSPACE_ENV = "ARNER_WORKSPACE"
# Hugging Face ids of the encoders the Wojood papers use (any BERT/RoBERTa/XLM-R id or folder works).
ENCODERS = {
    "ARBERTv2": "UBC-NLP/ARBERTv2",
    "AraBERTv2": "aubmindlab/bert-base-arabertv2",
    "CAMeLBERT-MSA": "CAMeL-Lab/bert-base-arabic-camelbert-msa",
    "CAMeLBERT-Mix": "CAMeL-Lab/bert-base-arabic-camelbert-mix",
    "QARiB": "qarib/bert-base-qarib",
    "XLM-R base": "xlm-roberta-base",
    "XLM-R large": "xlm-roberta-large",
}
def on_colab() -> bool:
    import importlib.util

    try:
        return importlib.util.find_spec("google.colab") is not None
    except ModuleNotFoundError:  # no `google` package at all
        return False


def workspace(name: str = "arner_jax", drive: bool = True) -> Path:
    """The folder for data, runs and the compilation cache.

    $ARNER_WORKSPACE when set; on Colab (with drive=True) MyDrive/<name> on Google Drive, mounted
    here; otherwise ./<name>_workspace.
    """
    if os.environ.get(WORKSPACE_ENV):
        root = Path(os.environ[WORKSPACE_ENV])
    elif drive and on_colab():
        from google.colab import drive as colab_drive

        colab_drive.mount("/content/drive")
        root = Path("/content/drive/MyDrive") / name
    else:
        root = Path(f"{name}_workspace")
    root.mkdir(parents=True, exist_ok=True)
    return root.resolve()


def runs_folder(root: str | Path, url: str = "") -> Path:
    """Where a notebook's runs go: `url` (a gs://BUCKET/FOLDER, kept when the runtime is recycled) when given,
    else ROOT/runs."""
    from arner_jax.data import files
    from arner_jax.errors import storage_url_problem

    if url and storage_url_problem(url):
        raise ValueError(f"RUNS {url!r}: {storage_url_problem(url)}")
    return files.location(url) if url else Path(root) / "runs"


def setup_accelerator(root: str | Path | None = None) -> dict:
    """Print the devices; turn on JAX's compilation cache under `root`; choose the compute dtype.

    Returns {"backend", "devices", "processes", "dtype"}: dtype is bfloat16 on TPU (its matmul
    units' native type; parameters and the optimizer stay float32), float32 elsewhere.
    """
    import jax

    from arner_jax.system import executables

    if root is not None:
        executables.enable_compilation_cache(Path(root) / "jax_compilation_cache")
    devices = jax.devices()
    backend = jax.default_backend()
    info = {"backend": backend, "devices": len(devices), "processes": jax.process_count(),
            "dtype": "bfloat16" if backend == "tpu" else "float32"}
    kinds = sorted({d.device_kind for d in devices})
    print(f"JAX {jax.__version__}: {len(devices)} {backend} device(s) ({', '.join(kinds)}), "
          f"{info['processes']} process(es); compute dtype {info['dtype']}")
    return info


# ---------------------------------------------------------------------- data
def fetch_wojood(dest: str | Path, source: str = "sample") -> dict[str, Path]:
    """train/val/test Wojood files in `dest`, checked by the reader; returns their paths.

    source: "sample" copies the public Wojood sample shipped with arner_jax; a folder (e.g. on
    Drive) holding train.txt, val.txt and test.txt is copied; "upload" asks for the three files in Colab.
    """
    from arner_jax.data.sample import wojood_sample_paths
    from arner_jax.data.wojood import read_wojood

    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    if source == "upload":
        from google.colab import files as colab_files

        for name, content in colab_files.upload().items():
            (dest / Path(name).name).write_bytes(content)
    if source == "sample":
        origin = wojood_sample_paths()
    else:
        folder = dest if source == "upload" else Path(source)
        origin = {split: folder / f"{split}.txt" for split in SPLITS}
    missing = [str(p) for p in origin.values() if not p.is_file()]
    if missing:
        raise FileNotFoundError(f"missing {', '.join(missing)}: the data needs train.txt, val.txt and test.txt in the "
                                "Wojood layout (a word and its IOB2 tags per line, a blank line between sentences)")
    for split, path in origin.items():
        corpus = read_wojood(path)  # a WojoodFormatError names the file (the user's own) and the line
        print(f"{split}: {path} ({len(corpus.sentences)} sentences)")
    paths = {split: dest / f"{split}.txt" for split in SPLITS}
    for split, path in origin.items():
        if path.resolve() != paths[split].resolve():
            shutil.copyfile(path, paths[split])
    return paths


# ---------------------------------------------------------------------- displays
def _metrics(metrics_or_run: dict | str | Path) -> dict:
    if isinstance(metrics_or_run, dict):
        return metrics_or_run
    from arner_jax.data import files
    from arner_jax.runs.run_folder import METRICS

    return json.loads(files.read_text(files.location(metrics_or_run) / METRICS))  # a local or gs:// run


def training_curves(metrics_or_run: dict | str | Path):
    """Loss (train, validation) and validation P/R/F1 per epoch; the kept epoch marked."""
    import matplotlib.pyplot as plt

    metrics = _metrics(metrics_or_run)
    history = metrics["history"]
    epochs = [h["epoch"] for h in history]
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 3.8))
    left.plot(epochs, [h["train_loss"] for h in history], marker="o", label="train")
    left.plot(epochs, [h["val_loss"] for h in history], marker="o", label="validation")
    left.set(xlabel="epoch", ylabel="loss", title="loss")
    for key in ("precision", "recall", "f1"):
        right.plot(epochs, [h[f"val_{key}"] for h in history], marker="o", label=key)
    right.set(xlabel="epoch", ylabel="validation", title="validation micro P / R / F1", ylim=(0, 1))
    for ax in (left, right):
        if metrics.get("best_epoch"):
            ax.axvline(metrics["best_epoch"], color="grey", linestyle=":", label="kept")
        ax.legend()
        ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig


def per_type_table(metrics_or_run: dict | str | Path, split: str | None = "test"):
    """Precision, recall, F1 and support per entity type, and the micro average (a DataFrame).

    `metrics_or_run`: a run folder, its metrics.json as a dict, or one split's metrics (split=None).
    """
    import pandas as pd

    metrics = _metrics(metrics_or_run)
    scores = metrics[split] if split else metrics
    rows = {t: {k: v[k] for k in ("precision", "recall", "f1", "support")} for t, v in scores["per_type"].items()}
    rows["micro"] = {"precision": scores["precision"], "recall": scores["recall"], "f1": scores["f1"],
                     "support": scores["gold_entities"]}
    return pd.DataFrame.from_dict(rows, orient="index").round(4)


def entity_table(records: Sequence[dict]):
    """Entities of one text (our taggers' or the span model's records) as a DataFrame."""
    import pandas as pd

    return pd.DataFrame([_span_of(r) for r in records], columns=["text", "label", "start", "end", "score"])


_PALETTE = ("#fde68a", "#bfdbfe", "#fecaca", "#bbf7d0", "#e9d5ff", "#fed7aa", "#a5f3fc", "#fbcfe8", "#d9f99d",
            "#c7d2fe", "#e5e7eb")


def _span_of(record: dict) -> dict:
    """(text, label, start, end, score) of a record of NERTagger.predict or SpanMarkerModel.predict."""
    if "char_start_index" in record:
        start, end = record["char_start_index"], record["char_end_index"]
    elif "word_start_index" in record:
        start, end = record["word_start_index"], record["word_end_index"]
    else:
        start, end = record["start"], record["end"]
    return {"text": record.get("text", record.get("span")), "label": record["label"], "start": start, "end": end,
            "score": round(float(record.get("score", float("nan"))), 4)}


def entities_html(text: str | Sequence[str], records: Sequence[dict]) -> str:
    """The text with its entities as coloured, labelled marks, nested ones inside their parent.

    `text` is the string the records' character offsets index, or the list of words their word
    indices index. Entities that cross another (neither inside nor apart) cannot be drawn as
    marks and are left out of the drawing (entity_table lists them all).
    """
    if isinstance(text, str):
        pieces, sep = list(text), ""
    else:
        pieces, sep = list(text), " "
    spans = sorted((_span_of(r) for r in records), key=lambda s: (s["start"], -s["end"]))
    roots: list = []
    stack: list = []
    for span in spans:
        while stack and span["start"] >= stack[-1][0]["end"]:
            stack.pop()
        if stack and span["end"] > stack[-1][0]["end"]:
            continue  # crosses its enclosing entity
        node = (span, [])
        (stack[-1][1] if stack else roots).append(node)
        stack.append(node)
    labels = sorted({s["label"] for s in spans})
    colour = {label: _PALETTE[i % len(_PALETTE)] for i, label in enumerate(labels)}

    def render(lo: int, hi: int, children: list) -> str:
        out, at = [], lo
        for span, inner in children:
            out.append(html.escape(sep.join(pieces[at:span["start"]])))
            if at < span["start"] and sep:
                out.append(sep)
            out.append(f'<mark title="{span["label"]} {span["score"]}" style="background:{colour[span["label"]]};'
                       'padding:0.15em 0.3em;margin:0 0.1em;border-radius:0.35em;border:1px solid #999">'
                       f'{render(span["start"], span["end"], inner)} '
                       f'<b style="font-size:0.7em">{html.escape(span["label"])}</b></mark>')
            at = span["end"]
            if at < hi and sep:
                out.append(sep)
        out.append(html.escape(sep.join(pieces[at:hi])))
        return "".join(out)

    body = render(0, len(pieces), roots)
    return f'<div dir="rtl" style="line-height:2.4;font-size:1.1em">{body}</div>'


def show_entities(text: str | Sequence[str], records: Sequence[dict]):
    """Display the highlighted text in a notebook (returns the IPython HTML object)."""
    from IPython.display import HTML, display

    shown = HTML(entities_html(text, records))
    display(shown)
    return shown
