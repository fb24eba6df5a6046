"""RunConfig: every value checked when made, messages naming the flag; presets as code."""
from __future__ import annotations

import ast

import pytest

from arner_jax.config import SCRATCH_LR, ConfigError, RunConfig
from arner_jax.configs.presets import PRESETS, SMOKE
from tests.conftest import REPO


@pytest.mark.parametrize("changes,message", [
    ({"kind": "nestd"}, "--kind 'nestd': must be one of"),
    ({"loss": "focall"}, "--loss 'focall': must be one of unified, ce, focal, dice, tversky"),
    ({"lr": float("nan")}, "--lr nan: must be a positive number"),
    ({"lr": -1.0}, "--lr -1.0"),
    ({"batch_size": 0}, "--batch_size 0: must be a positive whole number"),
    ({"dropout": 1.0}, "--dropout 1.0: must be in [0, 1)"),
    ({"weight_decay": float("inf")}, "--weight_decay inf"),
    ({"max_length": 2}, "--max_length 2: must be at least 3"),
    ({"synthetic_sizes": (10, 0, 5)}, "--synthetic_sizes"),
    ({"train_path": "a.txt"}, "--val_path --test_path: missing"),
    ({"synthetic": True, "dataset": "wikiann:ar"}, "exclude each other"),
    ({"train_path": "s3://bucket/train.txt", "val_path": "v", "test_path": "t"},
     "--train_path s3://bucket/train.txt: only gs:// URLs are supported"),
    ({"train_path": "gs://b/train.txt", "val_path": "v", "test_path": "t"},
     "gs://b/train.txt: not a Cloud Storage folder"),
    ({"bert_model": "https://example.org/bert"}, "--bert_model https://example.org/bert: a URL"),
])
def test_bad_values_name_their_flag(changes, message):
    with pytest.raises(ConfigError) as err:
        RunConfig(**changes)
    assert str(err.value).startswith("--") and message in str(err.value)


def test_learning_rate_defaults_and_round_trip():
    assert RunConfig().learning_rate(2e-5) == SCRATCH_LR  # from scratch
    assert RunConfig(bert_model="x").learning_rate(1e-5) == 1e-5  # the family's fine-tuning rate
    assert RunConfig(lr=3e-4, bert_model="x").learning_rate(1e-5) == 3e-4
    config = RunConfig(kind="span_flat", marker_max_length=16)
    assert RunConfig.from_dict({**config.to_dict(), "from_a_newer_version": 1}) == config


def test_presets_give_valid_configs_with_smoke_variants_and_documented_commands():
    for name, preset in PRESETS.items():
        for kind in preset.kinds:
            full, smoke = preset.config(kind=kind), preset.config(smoke=True, kind=kind)
            assert full.kind == kind and smoke.synthetic and smoke.max_epochs == SMOKE["max_epochs"]
        assert f"python -m experiments.{name}" in preset.doc
        wrapper = REPO / "experiments" / f"{name}.py"
        tree = ast.parse(wrapper.read_text())
        assert len(wrapper.read_text().splitlines()) < 15 and f'preset="{name}"' in wrapper.read_text(), name
        assert ast.get_docstring(tree)


def test_smoke_variant_ignores_encoder_and_data_overrides():
    smoke = PRESETS["wojood_nested"].config(True, bert_model="UBC-NLP/ARBERTv2", train_path="t.txt",
                                            val_path="v.txt", test_path="x.txt", loss="ce")
    assert (smoke.bert_model, smoke.train_path, smoke.synthetic, smoke.options.loss) == (None, None, True, "ce")


def test_attention_and_remat_choices_are_the_encoders():
    from arner_jax.config import ATTENTION, REMAT
    from arner_jax.encoders import ATTENTION_IMPLEMENTATIONS, REMAT_POLICIES

    assert set(ATTENTION) == set(ATTENTION_IMPLEMENTATIONS) and set(REMAT) == set(REMAT_POLICIES)


def test_gs_data_paths_are_kept_as_urls_and_local_ones_made_absolute(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    config = RunConfig(train_path="gs://my-bucket/wojood/train.txt", val_path="val.txt",
                       test_path="gs://my-bucket/wojood/test.txt").with_absolute_inputs()
    assert config.train_path == "gs://my-bucket/wojood/train.txt" and config.test_path.startswith("gs://my-bucket/")
    assert config.val_path == str(tmp_path / "val.txt")
