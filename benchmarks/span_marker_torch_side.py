"""The PyTorch `span_marker` package's side of benchmarks/span_marker_vs_pytorch.py.

Runs in the package's own environment (span_marker 1.8.1, transformers 4.x, torch; no JAX, no
arner_jax): `python span_marker_torch_side.py job.json result.json`. The job names the encoder
folder, the data (pre-tokenized sentences with IOB2 tags), the labels and the hyperparameters;
this saves the package's initial model to job["initial"] (save_pretrained, before any step: the
other side starts from it; drawn from job["seed"]), trains (its shuffles and dropout drawn from
job["train_seed"], the seed unless given: another training seed gives the same start and other
random streams) with the package's Trainer and writes, per epoch, the train
seconds (from the trainer's epoch begin to its end, so tokenization and prediction are not
counted), the mean training loss and the validation and test predictions (word spans), for the
caller to score.
"""
from __future__ import annotations

import hashlib
import json
import sys
import tempfile
import time

import torch
from datasets import Dataset
from span_marker import SpanMarkerModel, Trainer
from transformers import TrainerCallback, TrainingArguments


class EpochRecorder(TrainerCallback):
    """Times each epoch, then predicts the validation sentences with the model of that epoch."""

    def __init__(self, model: SpanMarkerModel, words: dict[str, list[list[str]]], batch_size: int):
        self.model, self.words, self.batch_size = model, words, batch_size
        self.epochs: list[dict] = []
        self.started = 0.0

    def on_epoch_begin(self, args, state, control, **kwargs):
        self.started = time.perf_counter()

    def on_epoch_end(self, args, state, control, **kwargs):
        seconds = time.perf_counter() - self.started
        record = {"train_seconds": seconds, "steps": state.global_step}
        for split, words in self.words.items():
            found = self.model.predict(words, batch_size=self.batch_size)
            record[f"{split}_entities"] = [[(e["label"], e["word_start_index"], e["word_end_index"]) for e in f]
                                           for f in found]
        self.epochs.append(record)


def main(job_path: str, result_path: str) -> None:
    job = json.loads(open(job_path, encoding="utf-8").read())
    torch.manual_seed(job["seed"])
    torch.set_num_threads(job["threads"])
    labels = job["labels"]  # IOB2 tags, "O" first: the package reduces them to entity types itself
    model = SpanMarkerModel.from_pretrained(job["encoder"], labels=labels, model_max_length=job["model_max_length"],
                                            marker_max_length=job["marker_max_length"],
                                            entity_max_length=job["entity_max_length"])
    model.save_pretrained(job["initial"])
    digest = hashlib.sha256()  # of the initial weights: two runs that report the same one started equal
    for name, tensor in sorted(model.state_dict().items()):
        digest.update(name.encode() + tensor.detach().cpu().contiguous().numpy().tobytes())
    index = {tag: i for i, tag in enumerate(labels)}
    train = Dataset.from_dict({"tokens": [s["words"] for s in job["train"]],
                               "ner_tags": [[index[t] for t in s["tags"]] for s in job["train"]]})
    recorder = EpochRecorder(model, {split: [s["words"] for s in job[split]] for split in ("val", "test")},
                             job["batch_size"])
    with tempfile.TemporaryDirectory() as out:
        args = TrainingArguments(
            output_dir=out, per_device_train_batch_size=job["batch_size"], learning_rate=job["lr"],
            num_train_epochs=job["epochs"], weight_decay=job["weight_decay"], warmup_ratio=job["warmup_ratio"],
            lr_scheduler_type="linear", max_grad_norm=job["clip_norm"], adam_epsilon=1e-8,
            seed=job.get("train_seed", job["seed"]),
            save_strategy="no", eval_strategy="no", report_to="none", logging_steps=10 ** 6, use_cpu=True,
            dataloader_num_workers=0, disable_tqdm=True)
        trainer = Trainer(model=model, args=args, train_dataset=train, callbacks=[recorder])
        output = trainer.train()
    result = {"epochs": recorder.epochs, "train_loss": output.training_loss, "torch": torch.__version__,
              "threads": torch.get_num_threads(), "initial_sha256": digest.hexdigest()}
    with open(result_path, "w", encoding="utf-8") as f:
        json.dump(result, f)


if __name__ == "__main__":
    main(*sys.argv[1:3])
