"""Encoders trained from scratch: a WordPiece tokenizer trained on the data, a small BERT config.

Owns: what the experiments and tests use when no pretrained checkpoint is given (no hub, no
network): `train_wordpiece_tokenizer` and `small_bert_config`.
"""
from __future__ import annotations

from typing import Iterable

from arner_jax.encoders.config import EncoderConfig

SPECIAL_TOKENS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]


def train_wordpiece_tokenizer(texts: Iterable[str], vocab_size: int = 4000, min_frequency: int = 1):
    """A BERT-style fast tokenizer (WordPiece, [CLS]/[SEP], offsets) trained on `texts`.

    Uses the `tokenizers` library's trainer and wraps the result in transformers'
    `BertTokenizerFast`, so it saves and loads like any Hugging Face tokenizer.
    """
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers
    from transformers import BertTokenizerFast

    tok = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    # No lowercasing or accent stripping: Arabic diacritics are kept, as in AraBERT-style vocabs.
    tok.normalizer = normalizers.BertNormalizer(lowercase=False, strip_accents=False, clean_text=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    trainer = trainers.WordPieceTrainer(vocab_size=vocab_size, min_frequency=min_frequency,
                                        special_tokens=SPECIAL_TOKENS)
    tok.train_from_iterator(texts, trainer=trainer)
    cls_id, sep_id = tok.token_to_id("[CLS]"), tok.token_to_id("[SEP]")
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B:1 [SEP]:1",
        special_tokens=[("[CLS]", cls_id), ("[SEP]", sep_id)],
    )
    tok.decoder = decoders.WordPiece()
    return BertTokenizerFast(tokenizer_object=tok, do_lower_case=False, strip_accents=False,
                             tokenize_chinese_chars=False)


def small_bert_config(vocab_size: int, hidden_size: int = 128, num_layers: int = 2, num_heads: int = 2,
                      max_positions: int = 512) -> EncoderConfig:
    """A small BERT for from-scratch runs on a CPU (about 0.5M parameters plus embeddings)."""
    return EncoderConfig(
        vocab_size=vocab_size, hidden_size=hidden_size, num_hidden_layers=num_layers,
        num_attention_heads=num_heads, intermediate_size=4 * hidden_size,
        max_position_embeddings=max_positions, model_type="bert",
    )
