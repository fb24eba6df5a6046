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
