"""The PyTorch side of exported nested and MTN taggers: no JAX needed to use them.

Owns: `TorchTagger`, a `torch.nn.Module` that loads a folder written by
`python -m arner_jax.convert to-pytorch` (a Hugging Face encoder folder, plus the per-type
heads in `arner_heads.safetensors` and `arner_tagger.json`), computes the same logits
`[B, L, T, C]` as the JAX tagger, and decodes them the same way (per-type argmax over each type's
own classes; MTN keeps the most probable non-O type). Word alignment and windows come from
`arner_jax.data` (numpy only). Imports torch, transformers, safetensors and numpy; never JAX.

    tagger = TorchTagger.from_pretrained("exported/")
    tagger.word_tags([["وزارة", "الصحة", "في", "رام", "الله"]])    # Wojood tags per word
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from arner_jax.data.batching import per_word_outputs
from arner_jax.data.entities import entity_tags, ids_to_tags
from arner_jax.data.vocab import LabelVocab

HEADS_FILE = "arner_heads.safetensors"
META_FILE = "arner_tagger.json"


class TorchTagger(torch.nn.Module):
    def __init__(self, encoder, kernel: torch.Tensor, bias: torch.Tensor, kind: str, vocab: LabelVocab,
                 max_length: int, tokenizer=None):
        super().__init__()
        self.encoder = encoder
        self.kernel = torch.nn.Parameter(kernel)  # [H, T, C]
        self.bias = torch.nn.Parameter(bias)  # [T, C]
        self.kind, self.vocab, self.max_length, self.tokenizer = kind, vocab, max_length, tokenizer
        self.register_buffer("class_mask", torch.tensor(vocab.class_mask() if kind != "flat"
                                                        else np.ones((1, len(vocab.flat_tags)), bool)))

    @classmethod
    def from_pretrained(cls, folder: str | Path) -> "TorchTagger":
        from safetensors.torch import load_file
        from transformers import AutoModel, AutoTokenizer

        folder = Path(folder)
        if not (folder / META_FILE).is_file():
            raise FileNotFoundError(f"{folder}: no {META_FILE}; export a nested/MTN run with "
                                    "`python -m arner_jax.convert to-pytorch` (flat runs load with transformers)")
        meta = json.loads((folder / META_FILE).read_text(encoding="utf-8"))
        heads = load_file(str(folder / HEADS_FILE))
        vocab = LabelVocab(tuple(meta["vocab"]["types"]),
                           tuple(tuple(meta["vocab"]["type_classes"][t]) for t in meta["vocab"]["types"]))
        encoder = AutoModel.from_pretrained(str(folder), add_pooling_layer=False, attn_implementation="eager")
        return cls(encoder.eval(), heads["kernel"], heads["bias"], meta["kind"], vocab, meta["max_length"],
                   AutoTokenizer.from_pretrained(str(folder))).eval()

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        hidden = self.encoder(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        return torch.einsum("blh,htc->bltc", hidden, self.kernel) + self.bias

    def decode(self, logits: torch.Tensor) -> torch.Tensor:
        """Class ids `[..., T]`, exactly as `arner_jax.tagger.decode`."""
        logp = torch.log_softmax(logits.masked_fill(~self.class_mask, float("-inf")), dim=-1)
        best_logp, best = logp.max(dim=-1)
        if self.kind != "mtn":
            return best
        candidate = best_logp.masked_fill(best == 0, float("-inf"))
        winner = candidate.argmax(dim=-1, keepdim=True)
        keep = (torch.arange(best.shape[-1]) == winner) & (best > 0)
        return torch.where(keep, best, torch.zeros_like(best))

    @torch.no_grad()
    def tag_words(self, sentences: Sequence[Sequence[str]], batch_size: int = 32) -> list[dict[str, np.ndarray]]:
        """Per sentence, per word: "ids" `[n, T]` and "logits" `[n, T, C]`."""
        T, C = self.kernel.shape[1:]
        empty = {"ids": np.zeros((0, T), np.int64), "logits": np.zeros((0, T, C), np.float32)}

        def run(input_ids, attention_mask):
            logits = self(torch.tensor(input_ids, dtype=torch.long), torch.tensor(attention_mask))
            return {"ids": self.decode(logits).numpy(), "logits": logits.numpy()}

        layout = "flat" if self.kind == "flat" else "per_type"
        return per_word_outputs(sentences, self.tokenizer, self.vocab, layout, self.max_length, batch_size, run, empty)

    def word_tags(self, sentences: Sequence[Sequence[str]]) -> list[list[list[str]]]:
        """Wojood word tags (the non-O tags of each word, or ["O"]) per sentence."""
        return [entity_tags(ids_to_tags(self.kind, self.vocab, t["ids"])) for t in self.tag_words(sentences)]
