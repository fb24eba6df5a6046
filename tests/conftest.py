"""Shared test fixtures: tiny random Hugging Face encoders saved to disk, the shared data path.

Tests never touch the network: every model is built here with random weights and saved with
`save_pretrained`; tokenizers are trained on inline text or on the Wojood sample.
"""
from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
# The shared folder (SPEC, data, fixtures) beside the checkout; ARNER_SHARED overrides it.
SHARED = Path(os.environ.get("ARNER_SHARED", REPO.parent / "shared"))

ARABIC_TEXT = [
    "وتدخلت روسيا عسكرياً في سوريا لصالح الأسد",
    "سكرتير اللجنة القومية العربية في نابلس",
    "أعلنت وزارة الصحة يوم الأحد عن 12 إصابة جديدة في رام الله",
    "مجلس الأمن الدولي يعقد جلسة طارئة",
] * 5


def shared_path(*parts: str) -> Path:
    """A path under ../shared, or a skip naming the variable to set when it is absent."""
    path = SHARED.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"{path} not found: set ARNER_SHARED to the folder holding data/ and fixtures/")
    return path


def tiny_hf_config(family: str, **overrides):
    """A 2-layer random config of the family ('bert' or 'xlmr'), odd sizes to catch transposes."""
    from transformers import BertConfig, XLMRobertaConfig

    common = dict(vocab_size=120, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                  intermediate_size=37, max_position_embeddings=64, hidden_act="gelu")
    common.update(overrides)
    if family == "bert":
        return BertConfig(**common)
    return XLMRobertaConfig(pad_token_id=1, bos_token_id=0, eos_token_id=2, type_vocab_size=1, **common)


def save_tiny_hf_model(folder: Path, family: str, model_class=None, safe_serialization=True,
                       seed=0, **overrides):
    """Build a random transformers model, save it to `folder`, return the PyTorch model (eval)."""
    import torch
    from transformers import BertModel, XLMRobertaModel

    torch.manual_seed(seed)
    config = tiny_hf_config(family, **overrides)
    config._attn_implementation = "eager"
    model_class = model_class or (BertModel if family == "bert" else XLMRobertaModel)
    model = model_class(config).eval()
    with torch.no_grad():  # non-trivial LayerNorm parameters, so that a swapped scale/bias shows
        for name, p in model.named_parameters():
            if "LayerNorm" in name:
                p.add_(0.1 * torch.randn_like(p))
    model.save_pretrained(str(folder))
    if not safe_serialization:  # transformers 5 writes only safetensors; make the legacy .bin
        (folder / "model.safetensors").unlink()
        torch.save(model.state_dict(), folder / "pytorch_model.bin")
    return model


@pytest.fixture(scope="session")
def tiny_bert_dir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("tiny_bert")
    save_tiny_hf_model(folder, "bert")
    return folder


@pytest.fixture(scope="session")
def tiny_bert(tmp_path_factory):
    """A random tiny BERT with a WordPiece tokenizer (saved once: every run uses the same one)."""
    import torch
    from transformers import BertConfig, BertModel

    from arner_jax.data.synthetic import generate_sentences
    from arner_jax.encoders import train_wordpiece_tokenizer

    folder = tmp_path_factory.mktemp("tiny_bert")
    tok = train_wordpiece_tokenizer([" ".join(s.words) for s in generate_sentences(300, seed=5)], vocab_size=400)
    tok.save_pretrained(str(folder))
    torch.manual_seed(0)
    BertModel(BertConfig(vocab_size=len(tok), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                         intermediate_size=64, max_position_embeddings=64)).save_pretrained(str(folder))
    return folder


# ----------------------------------------------------------------------------- trained runs, shared
# Every test that only needs a trained model uses one of these: trained once per session, in-process,
# also when pytest-xdist runs the tests in several processes (the README's command: `-n 2`), where the
# first worker to ask trains it under a file lock and the others read the finished folder.
QUIET = ["--log_every", "100000"]


def session_folder(tmp_path_factory) -> Path:
    """A folder of this test session that every xdist worker sees (each worker's basetemp is a child)."""
    base = tmp_path_factory.getbasetemp()
    return base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base


def made_once(tmp_path_factory, name: str, make) -> Path:
    """`session_folder/name`, filled by `make(folder)` by the first process of the session to ask."""
    from filelock import FileLock

    folder = session_folder(tmp_path_factory) / name
    with FileLock(f"{folder}.lock"):
        if not (folder / ".complete").is_file():
            if folder.exists():  # a worker that died while making it: start again
                import shutil

                shutil.rmtree(folder)
            folder.mkdir(parents=True)
            make(folder)
            (folder / ".complete").touch()
    return folder


@pytest.fixture(scope="session")
def compilation_cache(tmp_path_factory):
    """One persistent compilation cache for the session's runs (identical programs compile once)."""
    return made_once(tmp_path_factory, "jax_cache", lambda folder: None)


def train_run(out: Path, preset: str, *flags: str, cache: Path | None = None) -> dict:
    """A training run through the CLI's main, in this process; returns its metrics."""
    from arner_jax.train import cli

    cache_flags = ["--compilation_cache", str(cache)] if cache else ["--no_compilation_cache"]
    return cli.main(["--output_path", str(out), *QUIET, *cache_flags, *flags], preset=preset)


@pytest.fixture(scope="session")
def nested_run(tmp_path_factory, compilation_cache):
    """A nested tagger from scratch that has learned the synthetic corpus (its data in run/data)."""
    return made_once(tmp_path_factory, "nested", lambda folder: train_run(
        folder / "run", "wojood_nested", "--synthetic", "--synthetic_sizes", "800", "80", "80", "--max_epochs", "6",
        "--scratch_hidden_size", "64", "--lr", "2e-3", "--max_length", "512", cache=compilation_cache)) / "run"


@pytest.fixture(scope="session")
def flat_run(tmp_path_factory, compilation_cache):
    return made_once(tmp_path_factory, "flat", lambda folder: train_run(
        folder / "run", "wojood_flat", "--synthetic", "--synthetic_sizes", "800", "80", "80", "--max_epochs", "6",
        "--scratch_hidden_size", "64", "--lr", "2e-3", cache=compilation_cache)) / "run"


@pytest.fixture(scope="session")
def span_run(tmp_path_factory, tiny_bert, compilation_cache):
    """A span_nested model fine-tuned from the tiny BERT on a small synthetic corpus; (folder, metrics, corpus)."""
    import json

    from arner_jax.data.synthetic import write_synthetic_corpus

    def make(folder: Path) -> None:
        corpus = write_synthetic_corpus(folder / "corpus", seed=4, sizes={"train": 240, "val": 40, "test": 40})
        train_run(folder / "run", "wojood_span_nested", "--train_path", str(corpus["train"]), "--val_path",
                  str(corpus["val"]), "--test_path", str(corpus["test"]), "--bert_model", str(tiny_bert),
                  "--max_length", "62", "--marker_max_length", "32", "--max_epochs", "6", "--batch_size", "8",
                  "--lr", "4e-3", cache=compilation_cache)

    folder = made_once(tmp_path_factory, "span", make)
    corpus = {split: folder / "corpus" / f"{split}.txt" for split in ("train", "val", "test")}
    assert all(path.is_file() for path in corpus.values()), sorted((folder / "corpus").iterdir())
    return folder / "run", json.loads((folder / "run" / "metrics.json").read_text()), corpus


# ----------------------------------------------------------------------------- a local GCS server
# tests/gcs_server.py: one server per session (gcsfs and tensorstore read some settings once per
# process), a fresh gs:// prefix per test. gcsfs, fsspec and google-auth read IMPORT_TIME_ENV when
# imported, so it is set here, before any test module imports them.
def _gcs_server_module():
    import importlib
    import importlib.util

    if importlib.util.find_spec("gcp_storage_emulator") is None:  # not installed: the gs:// tests skip
        return None
    return importlib.import_module("tests.gcs_server")


_GCS = _gcs_server_module()
if _GCS is not None:
    os.environ.update(_GCS.IMPORT_TIME_ENV)


@pytest.fixture(scope="session")
def gcs_server():
    """The session's local GCS server (bucket gcs_server.bucket); its variables are in os.environ."""
    if _GCS is None:
        pytest.skip("gcp-storage-emulator is not installed: pip install -e '.[test]'")
    with _GCS.serve() as server:
        yield server


@pytest.fixture
def gcs_prefix(gcs_server, request):
    """A fresh, empty gs://<bucket>/<test name>-<random> on the session's server."""
    return gcs_server.new_prefix(request.node.name)
