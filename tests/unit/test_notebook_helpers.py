"""arner_jax.system.notebook: the smoke settings, data fetching checks, tables and entity highlighting."""
from __future__ import annotations

import re

import pytest

from arner_jax.data.wojood import WojoodFormatError, read_wojood
from arner_jax.system import notebook as nb


def test_preset_smoke_variant_overrides_encoder_and_sizes():
    from arner_jax.configs.presets import PRESETS

    preset = PRESETS["wikiann_span_marker"]
    full = preset.config(False, bert_model="xlm-roberta-base", dataset="wikiann:ar", max_epochs=10)
    assert (full.bert_model, full.dataset, full.max_epochs, full.options.marker_max_length) == (
        "xlm-roberta-base", "wikiann:ar", 10, 128)
    smoke = preset.config(True, bert_model="xlm-roberta-base", dataset="wikiann:ar", dtype="bfloat16")
    assert smoke.bert_model is None and smoke.dataset is None and smoke.synthetic and smoke.dtype == "bfloat16"
    assert (smoke.max_epochs, smoke.scratch_hidden_size, smoke.options.marker_max_length) == (1, 32, 16)
    tagger = PRESETS["wojood_nested"].config(True, loss="dice")
    assert tagger.options.loss == "dice" and not hasattr(tagger.options, "marker_max_length")  # the tagger's own


def test_fetch_wojood_sample_is_the_shipped_copy(tmp_path):
    paths = nb.fetch_wojood(tmp_path / "data", "sample")
    assert [len(read_wojood(p).sentences) for p in paths.values()] == [1114, 158, 357]


def test_fetch_wojood_copies_a_folder_and_reports_bad_lines(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    good = "جريدة B-ORG\nفلسطين I-ORG B-GPE\n\n"
    for split in nb.SPLITS:
        (src / f"{split}.txt").write_text(good, encoding="utf-8")
    paths = nb.fetch_wojood(tmp_path / "data", str(src))
    assert [p.read_text(encoding="utf-8") for p in paths.values()] == [good] * 3
    (src / "val.txt").write_text("جريدة X-ORG\n", encoding="utf-8")
    with pytest.raises(WojoodFormatError, match=r"src/val\.txt:1: tag .X-ORG."):
        nb.fetch_wojood(tmp_path / "data2", str(src))
    (src / "test.txt").unlink()
    with pytest.raises(FileNotFoundError, match="test.txt"):
        nb.fetch_wojood(tmp_path / "data3", str(src))


def _marks(html: str) -> list[str]:
    """The label of each mark in document order, with '(' and ')' for its opening and closing."""
    return re.findall(r"<mark title=\"(\w+)|</mark>", html)


def test_entities_html_nests_marks_and_skips_crossing_spans():
    text = "رئيس بلدية نابلس زار رام الله"
    #       0    5     11    17  21  25
    records = [
        {"text": "رئيس بلدية نابلس", "label": "OCC", "start": 0, "end": 16, "score": 0.9},
        {"text": "بلدية نابلس", "label": "ORG", "start": 5, "end": 16, "score": 0.8},
        {"text": "نابلس", "label": "GPE", "start": 11, "end": 16, "score": 0.7},
        {"text": "رام الله", "label": "GPE", "start": 21, "end": 29, "score": 0.9},
        {"text": "نابلس زار", "label": "LOC", "start": 11, "end": 20, "score": 0.1},  # crosses OCC and ORG
    ]
    html = nb.entities_html(text, records)
    # OCC holds ORG holds GPE, then GPE alone; the crossing LOC is not drawn
    assert _marks(html) == ["OCC", "ORG", "GPE", "", "", "", "GPE", ""]
    plain = re.sub(r"<b[^>]*>\w+</b>", "", re.sub(r"<mark[^>]*>|</mark>", "", html))
    plain = re.sub(r"<[^>]+>", "", plain)
    assert plain.split() == text.split()  # every word shown once, in order
    assert 'dir="rtl"' in html


def test_entities_html_word_indices_and_span_marker_records():
    words = ["زار", "الرئيس", "رام", "الله", "<b>"]
    records = [{"span": ["رام", "الله"], "label": "GPE", "score": 0.5, "word_start_index": 2, "word_end_index": 4}]
    html = nb.entities_html(words, records)
    assert _marks(html) == ["GPE", ""]
    assert "&lt;b&gt;" in html and "<b>" not in html.replace('<b style="font-size:0.7em">', "")
    table = nb.entity_table(records)
    assert table.iloc[0].to_dict() == {"text": ["رام", "الله"], "label": "GPE", "start": 2, "end": 4, "score": 0.5}


def test_per_type_table_and_curves():
    split = {"precision": 0.5, "recall": 0.25, "f1": 1 / 3, "gold_entities": 4,
             "per_type": {"GPE": {"precision": 0.5, "recall": 0.5, "f1": 0.5, "support": 2},
                          "ORG": {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 2}}}
    table = nb.per_type_table({"test": split}, "test")
    assert list(table.index) == ["GPE", "ORG", "micro"]
    assert table.loc["micro"].to_dict() == {"precision": 0.5, "recall": 0.25, "f1": 0.3333, "support": 4}
    assert nb.per_type_table(split, split=None).equals(table)
    pytest.importorskip("matplotlib")
    import matplotlib

    matplotlib.use("Agg")
    history = [{"epoch": e, "train_loss": 1 / e, "val_loss": 1.5 / e, "val_precision": 0.1 * e,
                "val_recall": 0.1 * e, "val_f1": 0.1 * e} for e in (1, 2, 3)]
    fig = nb.training_curves({"history": history, "best_epoch": 3})
    left, right = fig.axes
    assert [line.get_label() for line in left.lines] == ["train", "validation", "kept"]
    assert list(right.lines[2].get_ydata()) == [0.1, 0.2, 0.30000000000000004]


def test_runs_folder_is_the_workspace_or_a_bucket(tmp_path):
    from arner_jax.system.notebook import runs_folder

    assert runs_folder(tmp_path) == tmp_path / "runs"
    folder = runs_folder(tmp_path, "gs://my-bucket/arner_runs/")
    assert str(folder / "nested") == "gs://my-bucket/arner_runs/nested"
    with pytest.raises(ValueError, match="only gs:// URLs"):
        runs_folder(tmp_path, "s3://my-bucket/runs")
