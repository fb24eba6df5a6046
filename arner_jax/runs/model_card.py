"""Model cards: the README.md written beside every model that leaves the project.

Owns the card's content and layout, after the PyTorch `span_marker` package's generated cards
(span_marker/model_card_template.md): YAML front matter (language, license, library_name, tags,
datasets, metrics, base_model, pipeline_tag, model-index with the precision, recall and F1 of
each evaluated split), then the model's details (encoder, maximum lengths, labels with up to
three examples from the training data), its evaluation, how to use the written folder, the
training set's statistics, the hyperparameters as trained, the per-epoch validation table and
the framework versions.

Every figure comes from the run folder (config.json, vocab.json, metrics.json and the training
file config.json records) or, for a model converted from the PyTorch package without a run of
ours, from that checkpoint's config.json; a card of such a model says that its training is
unknown. Where the run folder lacks something (a training file that was moved, a run that has
not written metrics.json yet) the card says so instead of leaving it out.

    text = run_card("runs/span", SPAN_MARKER, "exported/")              # a run's export
    text = checkpoint_card(encoder, span, "exported/", source_config)  # a package checkpoint's
    write_card("exported/", text)                                       # exported/README.md

Unlike the package's cards, the median of the training-set statistics is the median (the
package prints the mean under that name).
"""
from __future__ import annotations

import dataclasses
import importlib.metadata
import json
import platform
import statistics
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml

from arner_jax import __version__
from arner_jax.data import files
from arner_jax.errors import UserError

CARD = "README.md"
# What a card is for: the export format decides the library, the pipeline and the usage shown.
SPAN_MARKER = "span-marker"  # span_marker's layout (ours and the PyTorch package load it)
TOKEN_CLASSIFIER = "token-classifier"  # a Hugging Face token-classification folder (flat taggers)
TORCH_TAGGER = "torch-tagger"  # a Hugging Face encoder plus arner_jax's heads (nested, MTN taggers)
FORMATS = (SPAN_MARKER, TOKEN_CLASSIFIER, TORCH_TAGGER)
EXAMPLES_PER_LABEL = 3
REPOSITORY = "https://github.com/tomaarsen/SpanMarkerNER"
# The example of a card that has no training data to take one from (the README's SpanMarker example).
FALLBACK_EXAMPLE = "جريدة فلسطين 19 تشرين الأول 1921 ."
# A label without an example: a flat model's label space holds the types of every layer, its training
# only the outermost tags'.
NO_EXAMPLE = {True: "(none in the training file)",
              False: "(none among the training file's outermost tags: never trained)"}
PACKAGES = ("arner_jax", "jax", "flax", "optax", "transformers", "tokenizers", "python")


class CardError(UserError):
    """A run folder file the card needs that cannot be read; the message names it."""


@dataclasses.dataclass
class TrainingData:
    """The entities of the training file as the model was trained to find them."""

    path: Path
    sentences: list[tuple[list[str], list[tuple[str, int, int]]]]  # words, entities (type, start, end excl.)
    nested: bool  # entities of every type layer; else of each word's outermost tag

    def examples(self, labels: Sequence[str]) -> dict[str, list[str]]:
        """Per label, its first EXAMPLES_PER_LABEL distinct entity texts in file order."""
        found: dict[str, list[str]] = {label: [] for label in labels}
        for words, entities in self.sentences:
            for label, start, end in entities:
                text = " ".join(words[start:end])
                got = found.get(label)
                if got is not None and len(got) < EXAMPLES_PER_LABEL and text not in got:
                    got.append(text)
        return found

    def statistics(self) -> list[tuple[str, int, float, int]]:
        """(name, min, median, max) of the sentence length in words and of the entities per sentence."""
        rows = []
        for name, values in (("Sentence length", [len(w) for w, _ in self.sentences]),
                             ("Entities per sentence", [len(e) for _, e in self.sentences])):
            rows.append((name, min(values), statistics.median(values), max(values)))
        return rows

    def predict_example(self) -> str:
        """The sentence with the most entity types, the shortest of those, the first of those."""
        best = min(range(len(self.sentences)), key=lambda i: (-len({e[0] for e in self.sentences[i][1]}),
                                                             len(self.sentences[i][0]), i))
        return " ".join(self.sentences[best][0])

    def language(self) -> str | None:
        """'ar' when most letters are Arabic script; None (not stated) otherwise."""
        letters = [c for words, _ in self.sentences for w in words for c in w if c.isalpha()]
        arabic = sum("\u0600" <= c <= "\u06ff" or "\u0750" <= c <= "\u077f" for c in letters)
        return "ar" if letters and arabic > len(letters) / 2 else None


def read_training_data(path: Path, tag_scheme: str, nested: bool) -> TrainingData:
    """The training file's sentences and entities: every type layer's (nested) or the outermost tags'."""
    from arner_jax.data.schemes import tag_spans
    from arner_jax.data.wojood import read_wojood, type_layer

    sentences = []
    for s in read_wojood(path, tag_scheme).sentences:
        if nested:
            types = sorted({t[2:] for tags in s.tags for t in tags if t != "O"})
            entities = [e for t in types for e in tag_spans(type_layer(s.tags, t))]
        else:
            entities = tag_spans(s.flat_tags())
        sentences.append((list(s.words), sorted(entities, key=lambda e: (e[1], e[2], e[0]))))
    return TrainingData(files.location(path), sentences, nested)


# ----------------------------------------------------------------------------- what a card shows
@dataclasses.dataclass
class Card:
    """Everything a card shows; `render` lays it out. Training fields are None when unknown."""

    title: str
    intro: str
    export_format: str
    folder: str  # where the export was written: a local folder, resolved, or a gs:// URL
    labels: list[str]  # entity types (no O)
    details: list[tuple[str, str]]  # Model Description bullets
    versions: list[tuple[str, str, str]]  # package, as trained, this export
    license: str | None = None
    language: str | None = None
    base_model: str | None = None
    dataset_id: str | None = None  # a `datasets` hub id
    dataset_name: str = "unknown"
    tags: list[str] = dataclasses.field(default_factory=list)
    examples: dict[str, list[str]] | None = None  # per label; None: no training data
    examples_nested: bool = True  # the examples are of every type layer (else of the outermost tags)
    predict_example: str = FALLBACK_EXAMPLE
    evaluation: dict[str, dict] = dataclasses.field(default_factory=dict)  # split -> metrics.json's dict
    train_statistics: list[tuple[str, int, float, int]] | None = None
    hyperparameters: list[tuple[str, Any]] | None = None
    history: list[dict] | None = None  # metrics.json's, each with a step
    best_epoch: int | None = None
    notes: list[str] = dataclasses.field(default_factory=list)  # what the run folder lacked

    # ------------------------------------------------------------------ YAML
    def metadata(self) -> dict:
        library, pipeline = {SPAN_MARKER: ("span-marker", "token-classification"),
                             TOKEN_CLASSIFIER: ("transformers", "token-classification"),
                             TORCH_TAGGER: ("arner_jax", None)}[self.export_format]
        meta: dict[str, Any] = {}
        if self.language:
            meta["language"] = self.language
        if self.license:
            meta["license"] = self.license
        meta["library_name"] = library
        meta["tags"] = self.tags
        if self.dataset_id:
            meta["datasets"] = [self.dataset_id]
        meta["metrics"] = ["precision", "recall", "f1"]
        if pipeline:
            meta["pipeline_tag"] = pipeline
        if self.base_model:
            meta["base_model"] = self.base_model
        results = []
        for split, m in self.evaluation.items():
            results.append({
                "task": {"type": "token-classification", "name": "Named Entity Recognition"},
                "dataset": {"name": self.dataset_name, "type": self.dataset_id or self.dataset_name, "split": split},
                "metrics": [{"type": key, "value": float(m[key]), "name": key.capitalize() if key != "f1" else "F1"}
                            for key in ("f1", "precision", "recall")],
            })
        if results:
            meta["model-index"] = [{"name": self.title, "results": results}]
        return meta

    # ------------------------------------------------------------------ Markdown
    def render(self) -> str:
        front = yaml.safe_dump(self.metadata(), sort_keys=False, allow_unicode=True, width=1000).strip()
        out = ["---", front, "---", "", f"# {self.title}", "", self.intro, "", "## Model Details", "",
               "### Model Description"]
        out += [f"- **{key}:** {value}" for key, value in self.details]
        out += ["", "### Model Labels"]
        if self.examples is None:
            out += ["The training data is unknown: the labels, without examples.", ""]
            out += table(["Label"], [[label] for label in self.labels])
        else:
            out += [f"Up to {EXAMPLES_PER_LABEL} distinct examples of each label, the first in the training file.",
                    ""]
            none = NO_EXAMPLE[self.examples_nested]
            out += table(["Label", "Examples"], [[label, ", ".join(f'"{x}"' for x in self.examples[label]) or none]
                                                 for label in self.labels])
        out += ["", "## Evaluation", ""]
        out += self._evaluation()
        out += ["", "## Uses", "", "### Direct Use for Inference", "", *usage(self.export_format, self.folder,
                                                                          self.predict_example)]
        out += ["", "## Training Details", ""]
        out += self._training()
        out += ["", "### Framework Versions", ""]
        out += table(["Package", "Training", "This export"], [list(v) for v in self.versions])
        if self.notes:
            out += ["", "## Notes", ""] + [f"- {n}" for n in self.notes]
        out += ["", "## Citation", "", "SpanMarker (the span model and the layout of this card):", "", "```",
                "@software{Aarsen_SpanMarker,", "    author = {Aarsen, Tom},", "    license = {Apache-2.0},",
                "    title = {{SpanMarker for Named Entity Recognition}},", f"    url = {{{REPOSITORY}}}", "}",
                "```", ""]
        return "\n".join(out)

    def _evaluation(self) -> list[str]:
        if not self.evaluation:
            return ["Unknown (see Notes)."]
        pooled = next(iter(self.evaluation.values())).get("mode") == "nested"
        out = ["### Metrics", "", "The kept model, micro-averaged over entities (seqeval's default mode"
               + ("; Wojood's nested metric pools every type layer)." if pooled else ")."), ""]
        out += table(["Split", "Precision", "Recall", "F1"],
                     [[split, *(f"{m[k]:.4f}" for k in ("precision", "recall", "f1"))]
                      for split, m in self.evaluation.items()])
        split, m = next(reversed(self.evaluation.items()))
        if m.get("per_type"):
            out += ["", f"Per label on {split}:", ""]
            out += table(["Label", "Precision", "Recall", "F1", "Support"],
                         [[label, f"{v['precision']:.4f}", f"{v['recall']:.4f}", f"{v['f1']:.4f}", str(v["support"])]
                          for label, v in sorted(m["per_type"].items())])
        return out

    def _training(self) -> list[str]:
        if self.hyperparameters is None:
            return ["The training of this model is unknown: it was converted from a checkpoint that records no "
                    "training data, hyperparameters or validation results."]
        out = ["### Training Set Metrics", ""]
        if self.train_statistics is None:
            out += ["Unknown: the training file cannot be read (see Notes)."]
        else:
            out += table(["Training set", "Min", "Median", "Max"],
                         [[name, str(lo), f"{med:g}", str(hi)] for name, lo, med, hi in self.train_statistics])
        out += ["", "### Training Hyperparameters", ""]
        out += [f"- {name}: {value}" for name, value in self.hyperparameters]
        out += ["", "### Training Results", ""]
        if not self.history:
            out += ["Unknown: the run has not written metrics.json (see Notes)."]
            return out
        rows = []
        for h in self.history:
            row = [str(h["epoch"]), str(h["step"])] + [f"{h[k]:.4f}" for k in
                                                        ("train_loss", "val_loss", "val_precision", "val_recall",
                                                         "val_f1")]
            rows.append([f"**{c}**" for c in row] if h["epoch"] == self.best_epoch else row)
        out += table(["Epoch", "Step", "Training Loss", "Validation Loss", "Validation Precision",
                      "Validation Recall", "Validation F1"], rows)
        out += ["", "* The bold row is the kept model (its epoch's checkpoint is what this folder holds)."]
        return out


def table(header: list[str], rows: list[list[str]]) -> list[str]:
    def cell(x: str) -> str:
        return str(x).replace("|", "\\|")
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(":--" for _ in header) + "|"]
    return lines + ["| " + " | ".join(cell(c) for c in row) + " |" for row in rows]


def usage(export_format: str, folder: str, example: str) -> list[str]:
    """Code that loads this folder and predicts (a folder in a bucket: downloaded first, since the loaders read
    local folders)."""
    download = []
    if files.is_url(folder):
        download = ["Copy the folder from its bucket first (the loaders below read local folders):", "",
                    "```bash", f"gsutil -m cp -r {folder} .", "```", ""]
        folder = folder.rstrip("/").rsplit("/", 1)[-1]
    return download + _usage(export_format, folder, example)


def _usage(export_format: str, folder: str, example: str) -> list[str]:
    path, text = json.dumps(str(folder), ensure_ascii=False), json.dumps(example, ensure_ascii=False)
    if export_format == SPAN_MARKER:
        return ["With arner_jax (JAX):", "", "```python", "from arner_jax import SpanMarkerModel", "",
                f"model = SpanMarkerModel.from_pretrained({path})", f"entities = model.predict({text})", "```", "",
                "With the PyTorch `span_marker` package (it reads the encoder's config and tokenizer where "
                "config.json's `encoder._name_or_path` says):", "", "```python",
                "from span_marker import SpanMarkerModel", "", f"model = SpanMarkerModel.from_pretrained({path})",
                f"entities = model.predict({text})", "```"]
    if export_format == TOKEN_CLASSIFIER:
        return ["```python", "from transformers import pipeline", "",
                f"ner = pipeline(\"token-classification\", model={path}, aggregation_strategy=\"first\")",
                f"entities = ner({text})", "```"]
    words = json.dumps(example.split(), ensure_ascii=False)
    return ["PyTorch, without JAX (`pip install arner_jax[torch]`):", "", "```python",
            "from arner_jax.models.tagger.torch_tagger import TorchTagger", "",
            f"tagger = TorchTagger.from_pretrained({path})",
            f"tags = tagger.word_tags([{words}])  # per word, its Wojood tags (outermost first)", "```"]


def _versions(trained: dict[str, str] | None, extra: Sequence[tuple[str, str, str]] = ()) -> list[tuple[str, str, str]]:
    now = {"arner_jax": __version__, "python": platform.python_version()}
    for name in PACKAGES:
        if name not in now:
            try:
                now[name] = importlib.metadata.version(name)
            except importlib.metadata.PackageNotFoundError:
                now[name] = "not installed"
    trained = trained or {}
    return [*extra, *((name, trained.get(name, "not recorded"), now[name]) for name in PACKAGES)]


# ----------------------------------------------------------------------------- a run's card
def _read_json(path: Path, what: str) -> dict:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except ValueError as err:
        raise CardError(f"{path}: not valid JSON ({err}); the {what} is damaged") from None


def _dataset(config, data: dict[str, Path]) -> tuple[str | None, str]:
    """(hub id or None, a name) of the run's data."""
    if config.dataset:
        if Path(config.dataset).is_absolute():
            return None, Path(config.dataset).name
        name, _, subset = config.dataset.partition(":")
        return name, f"{name} ({subset})" if subset else name
    if config.synthetic:
        return None, "synthetic"
    train = data.get("train")
    return None, train.parent.name if train else "unknown"


def _encoder_line(config, encoder) -> str:
    shape = (f"{encoder.model_type}, {encoder.num_hidden_layers} layers, hidden size {encoder.hidden_size}, "
             f"{encoder.vocab_size} tokens")
    if not config.bert_model:
        return f"trained from scratch ({shape})"
    if Path(config.bert_model).is_absolute():
        return f"the local folder {config.bert_model} ({shape})"
    return f"[{config.bert_model}](https://huggingface.co/{config.bert_model}) ({shape})"


def _hyperparameters(record, metrics: dict | None) -> list[tuple[str, Any]]:
    from arner_jax.config import ADAM_B1, ADAM_B2, ADAM_EPS

    cfg, family = record.config, record.family
    lr = cfg.learning_rate(family.fine_tune_lr)
    kind_of_run = "fine-tuning" if cfg.bert_model else "from-scratch"
    rows: list[tuple[str, Any]] = [
        ("learning_rate", lr if cfg.lr is not None else f"{lr} (no --lr: the default of {kind_of_run} runs)"),
        ("train_batch_size", cfg.batch_size),
        ("gradient_accumulation_steps", cfg.grad_accum),
        ("total_train_batch_size", cfg.batch_size * cfg.grad_accum),
        ("eval_batch_size", cfg.eval_batch),
        ("seed", cfg.seed),
        ("optimizer", f"AdamW with betas=({ADAM_B1},{ADAM_B2}) and epsilon={ADAM_EPS} (arner_jax's fixed values), "
                      "weight decay on weight matrices and embeddings only"),
        ("weight_decay", cfg.weight_decay),
        ("lr_scheduler_type", "linear (warmup from 0, then decay to 0 at the last update)"),
        ("lr_scheduler_warmup_ratio", cfg.warmup_ratio),
        ("max_grad_norm", cfg.clip_norm if cfg.clip_norm > 0 else "none (no clipping)"),
        ("num_epochs", cfg.max_epochs),
        ("early_stopping_patience", cfg.patience),
        ("select_by", cfg.select_by),
        ("dropout", cfg.dropout),
        ("max_length", cfg.max_length),
        ("dtype", cfg.dtype),
    ]
    if "loss" not in family.option_names():
        rows.append(("loss", "cross-entropy over every candidate span" if family.name == "span"
                     else f"the {family.name} family's objective"))
    rows += list(cfg.options.to_dict().items())
    if metrics is not None:
        timing = metrics.get("timing", {})
        rows += [("epochs_run", metrics["epochs_run"]), ("stopped_early", metrics["stopped_early"]),
                 ("steps", metrics["steps"])]
        if "devices" in timing:
            rows.append(("devices", f"{timing['devices']} ({timing.get('parallel', cfg.parallel)})"))
    return rows


def _history(metrics: dict, notes: list[str]) -> list[dict]:
    """metrics.json's history, each epoch with its step (derived for runs that predate the field)."""
    history = [dict(h) for h in metrics.get("history", [])]
    if history and any("step" not in h for h in history):
        steps, epochs = metrics["steps"], metrics["epochs_run"]
        if epochs and steps % epochs == 0:
            for h in history:
                h.setdefault("step", h["epoch"] * steps // epochs)
            notes.append("metrics.json predates per-epoch steps: a step is the epoch times the steps per epoch "
                         f"({steps} steps / {epochs} epochs).")
        else:
            for h in history:
                h.setdefault("step", "not recorded")
    return history


def run_card(run_dir: str | Path, export_format: str, folder: str | Path, license: str | None = None,
             span=None) -> str:
    """The card of a run's kept model exported to `folder` in `export_format`.

    `span` (a SpanConfig) gives a span export's lengths as written; by default they come from the run.
    """
    from arner_jax.runs.run_folder import METRICS, VOCAB, read_run

    if export_format not in FORMATS:
        raise ValueError(f"export_format must be one of {FORMATS}, got {export_format!r}")
    record = read_run(run_dir)
    raw = _read_json(record.run_dir / "config.json", "run folder's config.json")
    _read_json(record.run_dir / VOCAB, "run folder's vocab.json")  # read_run parsed it; a clear error if damaged
    cfg, family = record.config, record.family
    notes: list[str] = []
    metrics_path = record.run_dir / METRICS
    metrics = _read_json(metrics_path, "run's metrics.json") if files.is_file(metrics_path) else None
    if metrics is None:
        notes.append(f"{metrics_path} does not exist (the run has not finished): the evaluation, the epochs run and "
                     "the per-epoch results are unknown.")
    train_path = record.data.get("train")
    data = None
    if train_path is not None and files.is_file(train_path):  # may be in a bucket: failures are one line
        with files.storage_errors(train_path):
            data = read_training_data(train_path, cfg.tag_scheme, family.nested(cfg))
    else:
        notes.append(f"the training file {train_path} recorded in config.json is not there: label examples and "
                     "training-set metrics are unknown.")
    labels = list(family.entity_types(record.labels))
    dataset_id, dataset_name = _dataset(cfg, record.data)
    max_length = span.model_max_length if span is not None else family.max_length(cfg, record.encoder)
    is_span = family.name == "span"
    model_type = "SpanMarker" if is_span else "Wojood tagger"
    encoder_name = cfg.bert_model and Path(cfg.bert_model).name
    title = f"{model_type} ({cfg.kind})" + (f" with {encoder_name}" if encoder_name else "") + f" on {dataset_name}"
    nested = family.nested(cfg)
    what = ("nested entities (every type layer of the Wojood tags)" if nested
            else "flat entities (each word's outermost tag)")
    intro = (f"A {cfg.kind} model for Named Entity Recognition trained with arner_jax (JAX/Flax) on {dataset_name}; "
             f"it finds {what}.")
    if is_span:
        intro += f" The span model is SpanMarker's ({REPOSITORY}), written in the PyTorch package's layout."
    details = [("Model Type", f"{model_type}, kind {cfg.kind}"), ("Encoder", _encoder_line(cfg, record.encoder)),
               ("Maximum Sequence Length", f"{max_length} tokens")]
    if is_span:
        entity_max = span.entity_max_length if span is not None else cfg.options.entity_max_length
        marker_max = span.marker_max_length if span is not None else cfg.options.marker_max_length
        details += [("Maximum Entity Length", f"{entity_max} words"),
                    ("Maximum Marker Length", f"{marker_max} span markers per row")]
    data_line = f"{dataset_name} (training file {train_path})" if train_path else dataset_name
    language = data.language() if data else None
    details += [("Training Dataset", data_line), ("Language", language or "not stated"),
                ("License", license or "not stated (pass --license)"), ("Source run", files.absolute(record.run_dir))]
    evaluation = {split: metrics[split] for split in ("val", "test") if metrics and split in metrics}
    tags = ["token-classification", "ner", "named-entity-recognition", "arner_jax", cfg.kind]
    if is_span:
        tags.insert(0, "span-marker")
    if nested:
        tags.append("nested-ner")
    return Card(
        title=title, intro=intro, export_format=export_format, folder=files.absolute(folder), labels=labels,
        details=details, versions=_versions(raw.get("versions")), license=license, language=language,
        base_model=cfg.bert_model if cfg.bert_model and not Path(cfg.bert_model).is_absolute() else None,
        dataset_id=dataset_id, dataset_name=dataset_name, tags=tags,
        examples=data.examples(labels) if data else None, examples_nested=nested,
        predict_example=data.predict_example() if data else FALLBACK_EXAMPLE, evaluation=evaluation,
        train_statistics=data.statistics() if data else None,
        hyperparameters=_hyperparameters(record, metrics),
        history=_history(metrics, notes) if metrics else None, best_epoch=metrics["best_epoch"] if metrics else None,
        notes=notes).render()


# ----------------------------------------------------------------------------- a package checkpoint's card
def checkpoint_card(encoder, span, folder: str | Path, source: str | Path | None = None,
                    source_config: dict | None = None, license: str | None = None) -> str:
    """The card of a span model that is not one of our runs (a PyTorch package checkpoint, or built in
    memory): the fields it has, and that its training is unknown."""
    source_config = source_config or {}
    name = (source_config.get("encoder") or {}).get("_name_or_path") or ""
    shape = (f"{encoder.model_type}, {encoder.num_hidden_layers} layers, hidden size {encoder.hidden_size}, "
             f"{encoder.vocab_size} tokens")
    origin = f"the SpanMarker checkpoint {files.absolute(source)}" if source else "a span model built in memory"
    details = [("Model Type", "SpanMarker"),
               ("Encoder", f"{name} as the checkpoint's config.json names it ({shape})" if name else shape),
               ("Maximum Sequence Length", f"{span.model_max_length} tokens"),
               ("Maximum Entity Length", f"{span.entity_max_length} words"),
               ("Maximum Marker Length", f"{span.marker_max_length} span markers per row"),
               ("Training Dataset", "unknown"), ("Language", "not stated"),
               ("License", license or "not stated (pass --license)"), ("Source", origin)]
    trained = {"transformers": source_config["transformers_version"]} if "transformers_version" in source_config \
        else {}
    extra = []
    if "span_marker_version" in source_config:
        extra.append(("span_marker", source_config["span_marker_version"], "not used"))
    intro = (f"A SpanMarker model ({REPOSITORY}) for Named Entity Recognition, converted by arner_jax from "
             f"{origin}. How it was trained is unknown.")
    return Card(
        title="SpanMarker" + (f" with {name}" if name else ""), intro=intro, export_format=SPAN_MARKER,
        folder=files.absolute(folder), labels=[label for label in span.labels if label != "O"], details=details,
        versions=_versions(trained, extra), license=license,
        tags=["span-marker", "token-classification", "ner", "named-entity-recognition", "arner_jax"],
        notes=["training details unknown: the source records no training data, hyperparameters or results; "
               "the versions' Training column holds what its config.json records."]).render()


def write_card(folder: str | Path, text: str) -> Path:
    """Write the card as folder/README.md."""
    path = files.location(folder) / CARD
    files.atomic_write_text(path, text)
    return path


def front_matter(text: str) -> dict:
    """A card's YAML front matter as a dict."""
    if not text.startswith("---\n"):
        raise ValueError("a card starts with '---' and its YAML front matter")
    return yaml.safe_load(text[4:text.index("\n---\n", 4)])
