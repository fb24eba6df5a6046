"""The PyTorch side of exported nested and MTN taggers: no JAX needed to use them.

Owns: `TorchTagger`, a `torch.nn.Module` that loads a folder written by
`python -m arner_jax.convert to-pytorch` (a Hugging Face encoder folder, plus the per-type
heads in `arner_heads.safetensors` and `arner_tagger.json`), computes the same logits
`[B, L, T, C]` as the JAX tagger, and decodes them the same way (per-type argmax over each type's
own classes; with `one_tag_per_word` (MTN) the most probable non-O type is kept). Word alignment,
windows and batches come from `arner_jax.data` (numpy only). Imports torch, transformers,
safetensors and numpy; never JAX.

    tagger = TorchTagger.from_pretrained("exported/")
    tagger.word_tags([["وزارة", "الصحة", "في", "رام", "الله"]])    # Wojood tags per word
"""
from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from arner_jax.data.align import encode_sentences, scatter_to_words
from arner_jax.data.batching import bucket_lengths, collate_windows, eval_batches
from arner_jax.data.entities import entity_tags
from arner_jax.data.vocab import LabelVocab
from arner_jax.data.wojood import Sentence

HEADS_FILE = "arner_heads.safetensors"
META_FILE = "arner_tagger.json"


class TorchTagger(torch.nn.Module):
    def __init__(self, encoder, kernel: torch.Tensor, bias: torch.Tensor, vocab: LabelVocab, max_length: int,
                 one_tag_per_word: bool, tokenizer=None):
        super().__init__()
        self.encoder = encoder
        self.kernel = torch.nn.Parameter(kernel)  # [H, T, C]
        self.bias = torch.nn.Parameter(bias)  # [T, C]
        self.vocab, self.max_length, self.tokenizer = vocab, max_length, tokenizer
        self.one_tag_per_word = one_tag_per_word
        self.register_buffer("class_mask", torch.tensor(vocab.class_mask()))

    @classmethod
    def from_pretrained(cls, folder: str | Path) -> TorchTagger:
        from safetensors.torch import load_file
        from transformers import AutoModel, AutoTokenizer

        folder = Path(folder)
        if not (folder / META_FILE).is_file():
            raise FileNotFoundError(f"{folder}: no {META_FILE}; export a nested/MTN run with "
                                    "`python -m arner_jax.convert to-pytorch` (flat runs load with transformers)")
        meta = json.loads((folder / META_FILE).read_text(encoding="utf-8"))
        if "one_tag_per_word" not in meta:
            raise FileNotFoundError(f"{folder / META_FILE}: written by an older arner_jax; export the run again with "
                                    "`python -m arner_jax.convert to-pytorch`")
        heads = load_file(str(folder / HEADS_FILE))
        encoder = AutoModel.from_pretrained(str(folder), add_pooling_layer=False, attn_implementation="eager")
        return cls(encoder.eval(), heads["kernel"], heads["bias"], LabelVocab.from_json(meta["vocab"]),
                   meta["max_length"], meta["one_tag_per_word"], AutoTokenizer.from_pretrained(str(folder))).eval()

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        hidden = self.encoder(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        return torch.einsum("blh,htc->bltc", hidden, self.kernel) + self.bias

    def decode(self, logits: torch.Tensor) -> torch.Tensor:
        """Class ids `[..., T]`, exactly as `arner_jax.models.tagger.family.decode_class_ids`."""
        logp = torch.log_softmax(logits.masked_fill(~self.class_mask, float("-inf")), dim=-1)
        best_logp, best = logp.max(dim=-1)
        if not self.one_tag_per_word:
            return best
        candidate = best_logp.masked_fill(best == 0, float("-inf"))
        winner = candidate.argmax(dim=-1, keepdim=True)
        keep = (torch.arange(best.shape[-1]) == winner) & (best > 0)
        return torch.where(keep, best, torch.zeros_like(best))

    @torch.no_grad()
    def tag_words(self, sentences: Sequence[Sequence[str]], batch_size: int = 32) -> list[dict[str, np.ndarray]]:
        """Per sentence, per word (its first subword, in the window that scores it): "ids" `[n, T]`
        and "logits" `[n, T, C]`, from windows and length buckets as the JAX tagger makes them."""
        T, C = self.kernel.shape[1:]
        sents = [Sentence(list(w), [["O"] for _ in w]) for w in sentences]
        windows, _ = encode_sentences(sents, self.tokenizer, self.vocab, "per_type", self.max_length)
        outputs: list[dict | None] = [None] * len(windows)
        for length, indices in eval_batches([len(w) for w in windows], batch_size, bucket_lengths(self.max_length)):
            batch = collate_windows(windows, indices, batch_size, length, int(self.tokenizer.pad_token_id))
            logits = self(torch.tensor(batch["input_ids"], dtype=torch.long), torch.tensor(batch["attention_mask"]))
            ids = self.decode(logits).numpy()
            for row, i in enumerate(indices):
                outputs[i] = {"ids": ids[row, :len(windows[i])], "logits": logits[row, :len(windows[i])].numpy()}
        if not windows:
            return [{"ids": np.zeros((0, T), np.int64), "logits": np.zeros((0, T, C), np.float32)} for _ in sents]
        num_words = [len(s) for s in sents]
        per_name = {k: scatter_to_words(windows, num_words, [o[k] for o in outputs]) for k in ("ids", "logits")}
        return [{k: v[i] for k, v in per_name.items()} for i in range(len(sents))]

    def word_tags(self, sentences: Sequence[Sequence[str]]) -> list[list[list[str]]]:
        """Wojood word tags (the non-O tags of each word, or ["O"]) per sentence."""
        return [entity_tags([[self.vocab.type_tag(t, int(c)) for t, c in enumerate(word)] for word in out["ids"]])
                for out in self.tag_words(sentences)]
