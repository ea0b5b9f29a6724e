"""Metrics of a run: `metrics.jsonl` in the run directory, and TensorBoard when available.

Each line of `metrics.jsonl` is one JSON object `{"step": N, "split": "train"|"valid"|"test",
<scalar>: value, ...}` (read it with `rnnlab.layout.read_metrics`); a report reads `valid/bpc`
as the `bpc` of the `valid` lines.
"""

from __future__ import annotations

import json
import math
import os

from rnnlab import layout, storage


def lm_scalars(loss_sum: float, correct: float, count: float) -> dict[str, float]:
    """Next-character metrics from sums over `count` predicted characters."""
    loss = loss_sum / count
    return {
        "loss": loss,  # nats per character
        "bpc": loss / math.log(2.0),
        "perplexity": math.exp(min(loss, 700.0)),
        "accuracy": correct / count,
    }


class MetricsWriter:
    """Appends metrics; on resume from `resume_step`, first drops the lines logged after it
    (replacing the file in one step, so a kill then loses nothing)."""

    def __init__(self, workdir: str | os.PathLike, *, resume_step: int | None = None):
        workdir = storage.path(workdir)
        self.path = workdir / layout.METRICS_FILE
        if resume_step is not None and self.path.exists():
            kept = [m for m in layout.read_metrics(workdir) if m["step"] <= resume_step]
            storage.write_atomic(self.path, "".join(json.dumps(m) + "\n" for m in kept))
        self.tensorboard = None
        if not storage.is_local(workdir):
            return  # event files go to local disk only
        try:
            import tensorboardX  # optional: writes event files without TensorFlow

            # purge_step hides the events a killed run wrote after the checkpoint.
            purge = None if resume_step is None else resume_step + 1
            self.tensorboard = tensorboardX.SummaryWriter(
                str(workdir / layout.TB_DIR), purge_step=purge
            )
        except ImportError:
            pass

    def write(self, step: int, split: str, scalars: dict[str, float]) -> None:
        record = {"step": int(step), "split": split, **{k: float(v) for k, v in scalars.items()}}
        storage.append(self.path, json.dumps(record) + "\n")
        if self.tensorboard is not None:
            for name, value in scalars.items():
                self.tensorboard.add_scalar(f"{split}/{name}", float(value), int(step))

    def close(self) -> None:
        if self.tensorboard is not None:
            self.tensorboard.close()
