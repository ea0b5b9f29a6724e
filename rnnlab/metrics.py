"""Metrics of a run: `metrics.jsonl` in the run directory, and TensorBoard when available.

Each line of `metrics.jsonl` is one JSON object `{"step": N, "split": "train"|"valid"|"test",
<scalar>: value, ...}`; a report reads `valid/bpc` as the `bpc` of the `valid` lines.
"""

from __future__ import annotations

import json
import math
import os

from rnnlab import storage

METRICS_FILE = "metrics.jsonl"


def lm_scalars(loss_sum: float, correct: float, count: float) -> dict[str, float]:
    """Next-character metrics from sums over `count` predicted characters."""
    loss = loss_sum / count
    return {
        "loss": loss,  # nats per character
        "bpc": loss / math.log(2.0),
        "perplexity": math.exp(min(loss, 700.0)),
        "accuracy": correct / count,
    }


def read_metrics(workdir: str | os.PathLike) -> list[dict]:
    """The records of a run's metrics.jsonl; [] when there is none. A line cut short (a killed
    run, or one still writing) is skipped; a resumed run rewrites it."""
    try:
        text = (storage.path(workdir) / METRICS_FILE).read_bytes().decode("utf-8", "replace")
    except OSError:
        return []
    records = []
    for line in text.splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if isinstance(record, dict):
            records.append(record)
    return records


class MetricsWriter:
    """Appends metrics; on resume from `resume_step`, first drops lines logged after it."""

    def __init__(self, workdir: str | os.PathLike, *, resume_step: int | None = None):
        workdir = storage.path(workdir)
        self.path = workdir / METRICS_FILE
        if resume_step is not None and self.path.exists():
            kept = [m for m in read_metrics(workdir) if m["step"] <= resume_step]
            self.path.write_text("".join(json.dumps(m) + "\n" for m in kept))
        self.tensorboard = None
        if not storage.is_local(workdir):
            return  # event files go to local disk only
        try:
            import tensorboardX  # optional: writes event files without TensorFlow

            # purge_step hides the events a killed run wrote after the checkpoint.
            purge = None if resume_step is None else resume_step + 1
            self.tensorboard = tensorboardX.SummaryWriter(
                str(workdir / "tb"), purge_step=purge
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
