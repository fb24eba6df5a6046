"""`python -m arner_jax.convert verify`: passes on a good folder, clear errors on bad ones."""
from __future__ import annotations

import json
import shutil
import subprocess
import sys

import pytest

from arner_jax.convert.__main__ import main
from arner_jax.encoders import train_wordpiece_tokenizer
from tests.conftest import ARABIC_TEXT, REPO, save_tiny_hf_model


def test_verify_command_passes_on_saved_folder_with_tokenizer(tmp_path):
    save_tiny_hf_model(tmp_path, "bert", vocab_size=200)
    tok = train_wordpiece_tokenizer(ARABIC_TEXT, vocab_size=200)
    assert len(tok) <= 200
    tok.save_pretrained(str(tmp_path))
    proc = subprocess.run([sys.executable, "-m", "arner_jax.convert", "verify", "--hf_model", str(tmp_path)],
                          capture_output=True, text=True, cwd=REPO, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "from its tokenizer" in proc.stdout
    diff = float(proc.stdout.split("last hidden state: ")[1].split()[0])
    assert diff < 1e-5


def test_verify_xlmr_without_tokenizer(tmp_path, capsys):
    save_tiny_hf_model(tmp_path, "xlmr")
    assert main(["verify", "--hf_model", str(tmp_path)]) == 0
    assert "random token ids" in capsys.readouterr().out


def test_verify_fails_when_tolerance_not_met(tiny_bert_dir, capsys):
    assert main(["verify", "--hf_model", str(tiny_bert_dir), "--dtype", "bfloat16", "--tolerance", "1e-6"]) == 1
    assert "FAIL" in capsys.readouterr().out


def exit_code(argv) -> int:
    """The command's status: 0/1 returned, or 2 from its one-line user error (SystemExit)."""
    try:
        return main(argv)
    except SystemExit as stop:
        return stop.code


def test_folder_without_weights(tmp_path, tiny_bert_dir, capsys):
    shutil.copy(tiny_bert_dir / "config.json", tmp_path / "config.json")
    assert exit_code(["verify", "--hf_model", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "no weights found" in err and "model.safetensors" in err and str(tmp_path) in err


def test_unsupported_architecture(tmp_path, tiny_bert_dir, capsys):
    shutil.copytree(tiny_bert_dir, tmp_path / "m")
    config = json.loads((tmp_path / "m/config.json").read_text())
    config.update(model_type="gpt2", architectures=["GPT2Model"])
    (tmp_path / "m/config.json").write_text(json.dumps(config))
    assert exit_code(["verify", "--hf_model", str(tmp_path / "m")]) == 2
    err = capsys.readouterr().err
    assert "'gpt2'" in err and "not supported" in err and "config.json" in err


@pytest.mark.parametrize("key,value,needle", [("hidden_size", 64, "hidden_size=64"),
                                              ("num_hidden_layers", 3, "missing encoder.layer.2"),
                                              ("intermediate_size", 40, "intermediate.dense.weight: shape (37, 32)")])
def test_shapes_that_contradict_the_config(tmp_path, tiny_bert_dir, capsys, key, value, needle):
    shutil.copytree(tiny_bert_dir, tmp_path / "m")
    config = json.loads((tmp_path / "m/config.json").read_text())
    config[key] = value
    (tmp_path / "m/config.json").write_text(json.dumps(config))
    assert exit_code(["verify", "--hf_model", str(tmp_path / "m")]) == 2
    err = capsys.readouterr().err
    assert "do not match config.json" in err and needle in err, err
    assert len(err.strip().splitlines()) == 1 and err.startswith("error: ")


def test_hub_id_offline_is_a_clear_error(capsys, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert exit_code(["verify", "--hf_model", "arner-jax-tests/no-such-model"]) == 2
    assert "not a local folder" in capsys.readouterr().err


def test_hub_id_loads_from_the_cache_offline(tmp_path, tiny_bert_dir, monkeypatch):
    """A model downloaded once (laid out as huggingface_hub's cache) loads by its id, offline."""
    revision = "0" * 40
    snapshot = tmp_path / "hub" / "models--arner-jax-tests--tiny-bert" / "snapshots" / revision
    shutil.copytree(tiny_bert_dir, snapshot)
    (snapshot.parents[1] / "refs").mkdir()
    (snapshot.parents[1] / "refs" / "main").write_text(revision)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_CACHE", str(tmp_path / "hub"))
    from arner_jax.encoders import load_pretrained_encoder

    enc = load_pretrained_encoder("arner-jax-tests/tiny-bert")
    assert enc.model_dir == snapshot and enc.config.hidden_size == 32
