"""The PyTorch side of the benchmarks: the same nested tagger, loss and optimizer, run eagerly.

transformers' BertModel (its default attention), the T per-type heads as one Linear, SPEC 4's
unified loss with the variance penalty vectorized over heads (the IRM term in its closed form,
which equals the reference's autograd derivative), AdamW with the reference's parameter groups,
clipping and the linear schedule. Written for speed as a fair baseline, not as a transcription.
"""
from __future__ import annotations

import contextlib

import torch


def unified_loss(logits, labels, mask, gamma=2.0, alpha=0.5, s=1e-6, lam=5.0):
    """logits [B, L, T, C], labels [B, L, T], mask [B, L] bool -> scalar."""
    z, y = logits[mask], labels[mask]  # [N, T, C], [N, T]
    logp = z.log_softmax(-1)
    p = logp.exp()
    Y = torch.nn.functional.one_hot(y, z.shape[-1]).to(z.dtype)
    nll = -(Y * logp).sum(-1)  # [N, T]
    p_y = (-nll).exp()
    tp, sp, sy = (p * Y).sum(0), p.sum(0), Y.sum(0)  # [T, C]
    ce, focal = nll.mean(0), ((1 - p_y) ** gamma * nll).mean(0)
    dice = 1 - ((2 * tp + s) / (sp + sy + s)).mean(-1)
    tversky = 1 - ((tp + s) / (tp + alpha * (sp - tp) + (1 - alpha) * (sy - tp) + s)).mean(-1)
    g = (p * z).sum(-1) - (Y * z).sum(-1)  # d CE(s z)/ds per position and head
    irm = g[0::2].mean(0) * g[1::2].mean(0)
    per_head = 0.2 * dice + 0.2 * tversky + 0.2 * focal + 0.4 * (ce + 5 * irm)
    return per_head.sum() + lam * ((per_head - per_head.mean()) ** 2).mean()


class TorchNestedTagger(torch.nn.Module):
    def __init__(self, bert_config, num_types: int, num_classes: int = 3):
        super().__init__()
        from transformers import BertModel

        self.bert = BertModel(bert_config, add_pooling_layer=False)
        self.heads = torch.nn.Linear(bert_config.hidden_size, num_types * num_classes)
        self.shape = (num_types, num_classes)

    def forward(self, input_ids, attention_mask):
        h = self.bert(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        return self.heads(h).unflatten(-1, self.shape)


def make_optimizer(model, lr=2e-5, total_steps=1000):
    from transformers import get_linear_schedule_with_warmup

    named = list(model.named_parameters())
    plain = [p for n, p in named if n.endswith("bias") or "LayerNorm.weight" in n]
    decay = [p for n, p in named if not (n.endswith("bias") or "LayerNorm.weight" in n)]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.001}, {"params": plain, "weight_decay": 0.0}], lr=lr)
    return opt, get_linear_schedule_with_warmup(opt, 0, total_steps)


def train_step(model, opt, sched, batch, forward=None, autocast: str | None = None):
    """One update; `forward` (default: the model) is what computes the logits (e.g. a torch.compile'd
    model), under bf16 autocast on the `autocast` device type when given; the loss is in float32."""
    forward = forward or model
    context = torch.autocast(device_type=autocast, dtype=torch.bfloat16) if autocast else contextlib.nullcontext()
    with context:
        logits = forward(batch["input_ids"], batch["attention_mask"])
    loss = unified_loss(logits.float(), batch["labels"], batch["label_mask"])
    opt.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
    opt.step()
    sched.step()
    return loss.detach()
