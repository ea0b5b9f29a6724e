"""The logs of a training run: metrics.jsonl (mirrored to the trackers of `train.trackers`:
TensorBoard, MLflow) and samples.txt, appended as training goes and cut back to the step a run
resumes from.

Each line of `metrics.jsonl` is one JSON object `{"step": N, "split": "train"|"valid"|"test",
<scalar>: value, ...}` (read it with `rnnlab.run.layout.read_metrics`); a report reads
`valid/bpc` as the `bpc` of the `valid` lines. A killed run may have written lines past its
last checkpoint, or cut one short: a resume drops them, replacing each file in one step.
"""

from __future__ import annotations

import json
import os
import re

from absl import logging

from rnnlab.run import layout, storage, trackers


class MetricsWriter:
    """Appends metrics (and mirrors them to the trackers of `config`, `rnnlab.run.trackers`);
    on resume from `resume_step`, first drops the lines logged after it (replacing the file in
    one step, so a kill then loses nothing)."""

    def __init__(self, workdir: str | os.PathLike, *, resume_step: int | None = None,
                 config=None):
        workdir = storage.path(workdir)
        self.path = workdir / layout.METRICS_FILE
        if resume_step is not None and self.path.exists():
            kept = [m for m in layout.read_metrics(workdir) if m["step"] <= resume_step]
            storage.write_atomic(self.path, "".join(json.dumps(m) + "\n" for m in kept))
        self.trackers = trackers.Mirror(
            [] if config is None else trackers.open_all(workdir, config, resume_step))

    def write(self, step: int, split: str, scalars: dict[str, float]) -> None:
        """Appends one line of `scalars` of `split` at `step`."""
        record = {"step": int(step), "split": split, **{k: float(v) for k, v in scalars.items()}}
        storage.append(self.path, json.dumps(record) + "\n")
        self.trackers.write(step, split, scalars)

    def status(self, status: str) -> None:
        self.trackers.status(status)

    def close(self) -> None:
        self.trackers.close()


def open_at(workdir, step: int, logged_every: int | None, config=None) -> MetricsWriter:
    """Starts the metrics and samples of a run at `step`, dropping what a killed run wrote
    after it (and any line it cut short); returns the metrics writer.

    Args:
      workdir: the run directory.
      step: the step the run starts from (0: a new run).
      logged_every: the train.log_every the run was logged with, to tell rows a cut file lost
        (None for a new run).
      config: the run's config, whose `train.trackers` mirror the metrics.
    """
    workdir = storage.path(workdir)
    _note_lost_rows(workdir, step, logged_every)
    writer = MetricsWriter(workdir, resume_step=step, config=config)
    path = workdir / layout.SAMPLES_FILE
    if path.exists():
        text = path.read_text()
        for match in re.finditer(r"^=== step (\d+) ", text, flags=re.M):
            if int(match.group(1)) > step:
                storage.write_atomic(path, text[: match.start()])
                break
    return writer


def _note_lost_rows(workdir, step: int, logged_every: int | None) -> None:
    """Says which steps' rows a resume from `step` finds missing from metrics.jsonl (a cut
    file): they are not written again."""
    if not step or not logged_every:
        return
    logged = [m["step"] for m in layout.read_metrics(workdir)
              if m.get("split") == "train" and m["step"] <= step]
    expected = step - step % logged_every
    if max(logged, default=0) < expected:
        logging.warning("%s has the train rows up to step %d only, but the run resumes from "
                        "step %d: the rows of steps %d to %d were lost (the file was cut) "
                        "and are not written again", workdir / layout.METRICS_FILE,
                        max(logged, default=0), step, max(logged, default=0) + 1, expected)


def append_sample(workdir, step: int, temperature: float, text: str) -> None:
    """Appends a sample taken at `step` to samples.txt."""
    storage.append(storage.path(workdir) / layout.SAMPLES_FILE,
                   f"=== step {step} (temperature {temperature}) ===\n{text}\n\n")
