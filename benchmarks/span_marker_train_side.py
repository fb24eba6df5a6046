"""The `span_marker` package's side of the training parity check (benchmarks/span_marker_training_parity.py).

Runs in the package's own environment (span_marker 1.8.1, transformers 4.x, torch; no JAX, no
arner_jax): `python span_marker_train_side.py job.json OUT`. It trains with the package's own
Trainer (its tokenizer, Trainer.spread_sample, its data collator, the Transformers Trainer's
shuffling, AdamW, linear warmup/decay schedule and gradient clipping) and records into OUT:
  initial/            the model before the first step (SpanMarkerModel.save_pretrained);
  final.safetensors   its state dict after the last step;
  trajectory.json     the rows the collator produced, each once (text ids; each span's start and
                      end marker position minus 2, i.e. its first and last subword; its label),
                      and per optimizer step: the rows it saw, in batch order, its loss (the
                      model's own loss, recorded inside compute_loss), the learning rate it used
                      and the gradient norm after clipping; also the versions and the settings.
Job: "encoder" (a folder with a Hugging Face encoder and its tokenizer), "labels", "sentences"
(words and either IOB2 "tags" or gold "spans" [label id, start, end exclusive], given to the
package's tokenizer as its label normalizer would: the package has no nested reader, so a nested
set of spans is passed as spans), lengths, optimizer settings, epochs, seed, threads.
"""
from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path

import torch
from datasets import Dataset
from safetensors.torch import save_file
from span_marker import SpanMarkerModel, Trainer
from span_marker.label_normalizer import LabelNormalizer
from transformers import TrainerCallback, TrainingArguments


class GivenSpans(LabelNormalizer):
    """The gold spans as given (label id, start, end exclusive): nested sets included."""

    def ner_tags_to_entities(self, ner_tags):
        return [tuple(int(x) for x in span) for span in ner_tags]


class StepRecorder(TrainerCallback):
    """The learning rate each update uses and the gradient norm after clipping."""

    def __init__(self):
        self.steps: list[dict] = []
        self.trainer = None

    def on_pre_optimizer_step(self, args, state, control, **kwargs):
        grads = [p.grad.detach().double() for p in self.trainer.model.parameters() if p.grad is not None]
        self.steps.append({"lr": float(self.trainer.lr_scheduler.get_last_lr()[0]),
                           "clipped_grad_norm": float(torch.linalg.vector_norm(torch.stack(
                               [torch.linalg.vector_norm(g) for g in grads])))})


class RecordingTrainer(Trainer):
    """The package's Trainer, recording what each step's model call saw and its loss."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.rows: dict[tuple, int] = {}
        self.step_rows: list[list[int]] = []
        self.losses: list[float] = []

    def _row_id(self, inputs: dict, b: int) -> int:
        ids = inputs["input_ids"][b].tolist()
        pos = inputs["position_ids"][b].tolist()
        at, k = int(inputs["start_marker_indices"][b]), int(inputs["num_marker_pairs"][b])
        n = next((i for i in range(at) if pos[i] == 1), at)  # text tokens: positions 2.. until padding
        row = (tuple(ids[:n]), tuple(p - 2 for p in pos[at:at + k]), tuple(p - 2 for p in pos[at + k:at + 2 * k]),
               tuple(inputs["labels"][b, :k].tolist()))
        assert all(x == -100 for x in inputs["labels"][b, k:].tolist())  # nothing past the row's spans counts
        return self.rows.setdefault(row, len(self.rows))

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        self.step_rows.append([self._row_id(inputs, b) for b in range(inputs["input_ids"].shape[0])])
        out = super().compute_loss(model, inputs, return_outputs, num_items_in_batch)
        self.losses.append(float((out[0] if return_outputs else out).detach()))
        return out


def main(job_path: str, out: str) -> None:
    job = json.loads(Path(job_path).read_text(encoding="utf-8"))
    out_dir = Path(out)
    torch.manual_seed(job["seed"])
    torch.set_num_threads(job["threads"])
    model = SpanMarkerModel.from_pretrained(job["encoder"], labels=job["labels"],
                                            model_max_length=job["model_max_length"],
                                            marker_max_length=job["marker_max_length"],
                                            entity_max_length=job["entity_max_length"])
    model.save_pretrained(str(out_dir / "initial"))
    (out_dir / "initial" / "README.md").unlink(missing_ok=True)  # the package's model card: not needed here
    (out_dir / "initial" / "pytorch_model.bin").unlink(missing_ok=True)  # as safetensors: readable without torch
    save_file({k: v.detach().contiguous() for k, v in model.state_dict().items()},
              str(out_dir / "initial" / "model.safetensors"), metadata={"format": "pt"})
    sentences = job["sentences"]
    spans = "spans" in sentences[0]
    index = {tag: i for i, tag in enumerate(job["labels"])}
    train = Dataset.from_dict({"tokens": [s["words"] for s in sentences],
                               "ner_tags": [s["spans"] if spans else [index[t] for t in s["tags"]]
                                            for s in sentences]})
    recorder = StepRecorder()
    with tempfile.TemporaryDirectory() as tmp:
        args = TrainingArguments(
            output_dir=tmp, per_device_train_batch_size=job["batch_size"], learning_rate=job["lr"],
            num_train_epochs=job["epochs"], weight_decay=job["weight_decay"], warmup_ratio=job["warmup_ratio"],
            lr_scheduler_type="linear", max_grad_norm=job["clip_norm"], seed=job["seed"], save_strategy="no",
            eval_strategy="no", report_to="none", logging_steps=10 ** 6, use_cpu=True, dataloader_num_workers=0,
            disable_tqdm=True)
        trainer = RecordingTrainer(model=model, args=args, train_dataset=train, callbacks=[recorder])
        recorder.trainer = trainer
        if spans:
            trainer.label_normalizer = GivenSpans(model.config)
        trainer.train()
    state = {k: v.detach().contiguous() for k, v in model.state_dict().items()}
    save_file(state, str(out_dir / "final.safetensors"))
    import span_marker
    import transformers

    rows = sorted(trainer.rows, key=trainer.rows.get)
    steps = [dict(rows=r, loss=loss, **extra) for r, loss, extra in zip(trainer.step_rows, trainer.losses,
                                                                         recorder.steps)]
    assert len(steps) == len(trainer.step_rows) == trainer.state.global_step
    trajectory = {"versions": {"span_marker": span_marker.__version__, "transformers": transformers.__version__,
                               "torch": torch.__version__},
                  "settings": {k: v for k, v in job.items() if k not in ("sentences", "encoder")},
                  "warmup_steps": args.get_warmup_steps(len(steps)), "total_steps": len(steps),
                  "rows": [{"ids": list(ids), "starts": list(s), "ends": list(e), "labels": list(y)}
                           for ids, s, e, y in rows],
                  "steps": steps}
    (out_dir / "trajectory.json").write_text(json.dumps(trajectory, separators=(",", ":")) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main(*sys.argv[1:3])
