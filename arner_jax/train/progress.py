"""The epoch progress bar: tqdm on a terminal, nothing elsewhere.

Owns: showing training progress to a person at a terminal. In log files, notebooks' captured
output and CI the bar would write a carriage-return frame per batch; there the log's compact
line every `log_every` steps is the progress report, so the bar is off.
"""
from __future__ import annotations

import sys


class Progress:
    def __init__(self, total: int, done: int, description: str, enabled: bool = True):
        self.bar = None
        if enabled and sys.stderr.isatty():
            from tqdm.auto import tqdm

            self.bar = tqdm(total=total, initial=done, desc=description, unit="batch", dynamic_ncols=True,
                            leave=False)

    def update(self, loss: float, tokens_per_second: float) -> None:
        if self.bar is not None:
            self.bar.update(1)
            self.bar.set_postfix(loss=f"{loss:.4f}", tok_s=f"{tokens_per_second:.0f}", refresh=False)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
