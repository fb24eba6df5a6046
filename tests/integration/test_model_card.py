"""Model cards (arner_jax.runs.model_card): every figure of a card checked against the run it came from.

The run's files are read here with plain Python and JSON (the training file's entities, the
training-set statistics), not with the code that wrote the card. The runs are the session's
shared ones (conftest: nested_run, flat_run, span_run).
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import yaml

from arner_jax.convert.__main__ import main as convert_main
from arner_jax.runs import model_card
from tests.conftest import shared_path


# ----------------------------------------------------------------------------- reading a card
def front_matter(text: str) -> dict:
    assert text.startswith("---\n")
    return yaml.safe_load(text[4:text.index("\n---\n", 4)])


def section(text: str, heading: str) -> str:
    """The text under `heading` (a '## ' or '### ' line) up to the next heading."""
    lines = text.splitlines()
    start = lines.index(heading) + 1
    end = next((i for i in range(start, len(lines)) if lines[i].startswith("#") and not lines[i].startswith("#!")),
               len(lines))
    return "\n".join(lines[start:end])


def table_rows(block: str) -> list[list[str]]:
    rows = [line for line in block.splitlines() if line.startswith("|")]
    return [[c.strip().replace("\\|", "|") for c in row.strip("|").split(" | ")] for row in rows[2:]]


def bullets(block: str) -> dict[str, str]:
    return dict(line[2:].split(": ", 1) for line in block.splitlines() if line.startswith("- "))


def code_blocks(text: str) -> list[str]:
    parts = text.split("```python\n")[1:]
    return [p.split("```", 1)[0] for p in parts]


# ----------------------------------------------------------------------------- the run, read independently
def read_sentences(path: Path) -> list[tuple[list[str], list[list[str]]]]:
    sentences, words, tags = [], [], []
    for line in path.read_text(encoding="utf-8").splitlines() + [""]:
        fields = line.split()
        if not fields:
            if words:
                sentences.append((words, tags))
            words, tags = [], []
            continue
        words.append(fields[0])
        tags.append(fields[1:])
    return sentences


def iob2_entities(layer: list[str]) -> list[tuple[str, int, int]]:
    out, open_entity = [], None
    for i, tag in enumerate(layer + ["O"]):
        if open_entity and (tag == "O" or tag.startswith("B-") or tag[2:] != open_entity[0]):
            out.append((open_entity[0], open_entity[1], i))
            open_entity = None
        if tag != "O" and open_entity is None:
            open_entity = (tag[2:], i)
    return out


def sentence_entities(tags: list[list[str]], nested: bool) -> list[tuple[str, int, int]]:
    if not nested:
        return iob2_entities([t[0] for t in tags])
    types = {t[2:] for word in tags for t in word if t != "O"}
    found = []
    for entity_type in types:
        found += iob2_entities([next((t for t in word if t[2:] == entity_type), "O") for word in tags])
    return sorted(found, key=lambda e: (e[1], e[2], e[0]))


def median(values: list[int]) -> float:
    s, n = sorted(values), len(values)
    return s[n // 2] if n % 2 else (s[n // 2 - 1] + s[n // 2]) / 2


def check_run_card(text: str, run_dir: Path) -> None:
    """Every figure of `text` against the run folder's files."""
    config = json.loads((run_dir / "config.json").read_text(encoding="utf-8"))
    metrics = json.loads((run_dir / "metrics.json").read_text(encoding="utf-8"))
    vocab = json.loads((run_dir / "vocab.json").read_text(encoding="utf-8"))
    run = config["run"]
    nested = run["kind"] in ("nested", "span_nested")
    meta = front_matter(text)

    # the evaluated splits: P/R/F1 of metrics.json, as they are
    results = {r["dataset"]["split"]: {m["type"]: m["value"] for m in r["metrics"]}
               for r in meta["model-index"][0]["results"]}
    assert set(results) == {"val", "test"}
    for split, got in results.items():
        assert got == {k: metrics[split][k] for k in ("precision", "recall", "f1")}
    rows = {r[0]: r[1:] for r in table_rows(section(text, "### Metrics"))}
    for split in ("val", "test"):
        assert rows[split] == [f"{metrics[split][k]:.4f}" for k in ("precision", "recall", "f1")]
    assert meta["metrics"] == ["precision", "recall", "f1"] and run["kind"] in meta["tags"]

    # labels and their examples: the first three distinct entity texts of each type in the training file
    labels = vocab.get("types") or vocab["labels"][1:]
    train = Path(config["data"]["train"])
    train = train if train.is_absolute() else run_dir / train
    sentences = read_sentences(train)
    expected = {label: [] for label in labels}
    for words, tags in sentences:
        for label, start, end in sentence_entities(tags, nested):
            text_ = " ".join(words[start:end])
            if len(expected[label]) < 3 and text_ not in expected[label]:
                expected[label].append(text_)
    got = {row[0]: [x[1:-1] for x in row[1].split(", ")] if row[1].startswith('"') else row[1]
           for row in table_rows(section(text, "### Model Labels"))}
    # a label without an example says why: none at all, or (a flat model) none among the outermost tags
    none = "(none in the training file)" if nested else "(none among the training file's outermost tags: never trained)"
    assert got == {label: examples or none for label, examples in expected.items()}
    assert any(len(v) == 3 for v in expected.values())
    assert meta["language"] == "ar"

    # training-set statistics, recomputed
    lengths = [len(w) for w, _ in sentences]
    counts = [len(sentence_entities(t, nested)) for _, t in sentences]
    stats = {r[0]: r[1:] for r in table_rows(section(text, "### Training Set Metrics"))}
    for name, values in (("Sentence length", lengths), ("Entities per sentence", counts)):
        lo, med, hi = stats[name]
        assert (int(lo), float(med), int(hi)) == (min(values), median(values), max(values))

    # hyperparameters as config.json and metrics.json record them
    hp = bullets(section(text, "### Training Hyperparameters"))
    if run["lr"] is not None:
        assert float(hp["learning_rate"]) == run["lr"]
    for name, key in (("train_batch_size", "batch_size"), ("gradient_accumulation_steps", "grad_accum"),
                      ("seed", "seed"), ("num_epochs", "max_epochs"), ("early_stopping_patience", "patience")):
        assert int(hp[name]) == run[key], name
    assert int(hp["total_train_batch_size"]) == run["batch_size"] * run["grad_accum"]
    for name in ("weight_decay", "lr_scheduler_warmup_ratio", "dropout"):
        assert float(hp[name]) == run[{"lr_scheduler_warmup_ratio": "warmup_ratio"}.get(name, name)], name
    assert float(hp["max_grad_norm"]) == run["clip_norm"] and int(hp["max_length"]) == run["max_length"]
    assert hp["select_by"] == run["select_by"] and hp["dtype"] == run["dtype"]
    for name in (("marker_max_length", "entity_max_length") if run["kind"].startswith("span") else ("loss",)):
        assert hp[name] == str(run[name]), name
    assert int(hp["epochs_run"]) == metrics["epochs_run"] and int(hp["steps"]) == metrics["steps"]

    # the per-epoch validation table, from metrics.json's history (the kept model's row bold)
    table = table_rows(section(text, "### Training Results"))
    assert len(table) == len(metrics["history"]) >= 2
    for row, h in zip(table, metrics["history"]):
        bold = all(c.startswith("**") and c.endswith("**") for c in row)
        assert bold == (h["epoch"] == metrics["best_epoch"])
        row = [c.strip("*") for c in row]
        assert [int(row[0]), int(row[1])] == [h["epoch"], h["step"]]
        for cell, key in zip(row[2:], ("train_loss", "val_loss", "val_precision", "val_recall", "val_f1")):
            assert abs(float(cell) - h[key]) <= 5e-5, key
    assert metrics["history"][-1]["step"] == metrics["steps"]

    # framework versions as trained (config.json) and as exported
    versions = {r[0]: r[1:] for r in table_rows(section(text, "### Framework Versions"))}
    for name in ("arner_jax", "jax", "flax", "optax", "transformers", "tokenizers", "python"):
        assert versions[name][0] == config["versions"][name], name


# ----------------------------------------------------------------------------- exports
def test_span_export_card(span_run, tmp_path):
    run_dir, _, _ = span_run
    out = tmp_path / "exported"
    assert convert_main(["to-span-marker", "--model_path", str(run_dir), "--output_path", str(out),
                         "--license", "apache-2.0"]) == 0
    text = (out / "README.md").read_text(encoding="utf-8")
    check_run_card(text, run_dir)
    config = json.loads((run_dir / "config.json").read_text(encoding="utf-8"))
    meta = front_matter(text)
    assert (meta["library_name"], meta["pipeline_tag"], meta["license"]) == ("span-marker", "token-classification",
                                                                             "apache-2.0")
    assert "base_model" not in meta  # a local encoder folder is no hub id
    details = bullets(section(text, "### Model Description").replace("**", ""))
    written = json.loads((out / "config.json").read_text(encoding="utf-8"))
    assert details["Maximum Sequence Length"] == f"{written['model_max_length']} tokens"
    assert written["model_max_length"] == min(config["run"]["max_length"],
                                              config["encoder"]["max_position_embeddings"] - 2)
    assert details["Maximum Entity Length"] == f"{config['run']['entity_max_length']} words"
    # the usage works for this folder
    ours = code_blocks(text)[0]
    assert str(out.resolve()) in ours
    scope: dict = {}
    exec(ours, scope)
    assert isinstance(scope["entities"], list)


def test_tagger_export_cards(nested_run, flat_run, tmp_path):
    nested_out, flat_out = tmp_path / "nested", tmp_path / "flat"
    assert convert_main(["to-pytorch", "--model_path", str(nested_run), "--output_path", str(nested_out)]) == 0
    assert convert_main(["to-pytorch", "--model_path", str(flat_run), "--output_path", str(flat_out)]) == 0
    nested_text = (nested_out / "README.md").read_text(encoding="utf-8")
    flat_text = (flat_out / "README.md").read_text(encoding="utf-8")
    check_run_card(nested_text, nested_run)
    check_run_card(flat_text, flat_run)
    nested_meta, flat_meta = front_matter(nested_text), front_matter(flat_text)
    assert nested_meta["library_name"] == "arner_jax" and "pipeline_tag" not in nested_meta
    assert "license" not in nested_meta and "nested-ner" in nested_meta["tags"]
    assert (flat_meta["library_name"], flat_meta["pipeline_tag"]) == ("transformers", "token-classification")
    assert "pipeline(\"token-classification\"" in code_blocks(flat_text)[0]
    hp = bullets(section(nested_text, "### Training Hyperparameters"))
    assert hp["loss"] == json.loads((nested_run / "config.json").read_text(encoding="utf-8"))["run"]["loss"]
    scope: dict = {}
    exec(code_blocks(nested_text)[0], scope)  # PyTorch, from the exported folder
    assert len(scope["tags"]) == 1 and all(isinstance(t, list) for t in scope["tags"][0])


def copy_run_files(run_dir: Path, dest: Path) -> Path:
    """The files a card reads (no checkpoints), in a folder of its own that a test may change."""
    dest.mkdir()
    for name in (".arner_jax_run", "config.json", "vocab.json", "metrics.json"):
        shutil.copy(run_dir / name, dest / name)
    shutil.copytree(run_dir / "data", dest / "data")
    return dest


def test_card_follows_the_run_files(nested_run, tmp_path):
    run_dir = copy_run_files(nested_run, tmp_path / "run")
    before = model_card.run_card(run_dir, model_card.TORCH_TAGGER, tmp_path / "out")
    check_run_card(before, run_dir)
    metrics = json.loads((run_dir / "metrics.json").read_text(encoding="utf-8"))
    metrics["test"]["f1"] = 0.123456789
    metrics["history"][0]["val_f1"] = 0.9876
    metrics["history"][0]["step"] = 7
    (run_dir / "metrics.json").write_text(json.dumps(metrics), encoding="utf-8")
    after = model_card.run_card(run_dir, model_card.TORCH_TAGGER, tmp_path / "out")
    assert after != before
    with pytest.raises(AssertionError):  # the checks see the old figures
        check_run_card(before, run_dir)
    check_run_card(after, run_dir)  # the changed figures are the card's now
    assert "| test | " in after and "0.1235 |" in section(after, "### Metrics")
    # a run without metrics.json and without its training file: the card says what is unknown
    (run_dir / "metrics.json").unlink()
    shutil.rmtree(run_dir / "data")
    text = model_card.run_card(run_dir, model_card.TORCH_TAGGER, tmp_path / "out")
    assert "model-index" not in front_matter(text)
    notes = section(text, "## Notes")
    assert "metrics.json does not exist" in notes and "data/train.txt recorded in config.json is not there" in notes
    assert "(none in the training file)" not in text and "Training Set Metrics" in text


def test_damaged_metrics_is_a_user_error(nested_run, tmp_path, capsys):
    run_dir = tmp_path / "run"
    shutil.copytree(nested_run, run_dir)
    (run_dir / "metrics.json").write_text("{not json", encoding="utf-8")
    with pytest.raises(SystemExit) as exit_info:
        convert_main(["to-pytorch", "--model_path", str(run_dir), "--output_path", str(tmp_path / "out")])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "metrics.json: not valid JSON" in err
    assert not (tmp_path / "out").exists()  # nothing half written


def test_package_checkpoint_card(tmp_path):
    """A model converted from the PyTorch package: the fields it has; its training unknown."""
    from arner_jax.models.span_marker import SpanMarkerModel

    source = shared_path("fixtures", "span_marker_tiny", "model")
    raw = json.loads((source / "config.json").read_text(encoding="utf-8"))
    out = SpanMarkerModel.from_pretrained(source).save_pretrained(tmp_path / "pkg")
    text = (out / "README.md").read_text(encoding="utf-8")
    meta = front_matter(text)
    assert meta["library_name"] == "span-marker" and "model-index" not in meta and "language" not in meta
    labels = [row[0] for row in table_rows(section(text, "### Model Labels"))]
    assert labels == [raw["id2label"][str(i)] for i in range(len(raw["id2label"])) if raw["id2label"][str(i)] != "O"]
    details = bullets(section(text, "### Model Description").replace("**", ""))
    assert details["Maximum Sequence Length"] == f"{raw['model_max_length']} tokens"
    assert details["Maximum Entity Length"] == f"{raw['entity_max_length']} words"
    assert details["Maximum Marker Length"].startswith(f"{raw['marker_max_length']} ")
    assert details["Encoder"].startswith(raw["encoder"]["_name_or_path"])
    assert "training of this model is unknown" in section(text, "## Training Details")
    assert "### Training Hyperparameters" not in text and "### Training Results" not in text
    versions = {r[0]: r[1:] for r in table_rows(section(text, "### Framework Versions"))}
    assert versions["span_marker"][0] == raw["span_marker_version"]
    assert versions["transformers"][0] == raw["transformers_version"]
    assert versions["jax"][0] == "not recorded"
    scope: dict = {}
    exec(code_blocks(text)[0], scope)
    assert isinstance(scope["entities"], list)
