"""rnnlab from Python: notebooks and scripts. Train a config, load a run, predict, read its
metrics, plot its curves; progress shows where it runs (log lines in a notebook's output).

    from rnnlab import api
    from configs import quickstart

    run = api.train(quickstart.get_config("smoke"), "runs/notebook", {"train.steps": 60})
    run.result                    # status.json: how it ended, the final valid and test scores
    run.metrics("valid")          # the valid lines of metrics.jsonl, as dicts
    run.predict(["The "], length=80, temperature=0)
    run.plot()                    # its curves (a matplotlib figure)
    again = api.load("runs/notebook")

`train` is the training command's (`python -m rnnlab.main`) in-process form: the same run
directory, the same resume when called again with the same workdir.
"""

from __future__ import annotations

import contextlib
import os

import ml_collections
from absl import logging

from rnnlab.run import layout, storage


class Run:
    """A run directory (trained, or training elsewhere: everything here only reads it)."""

    def __init__(self, workdir: str | os.PathLike):
        self.path = storage.path(workdir)
        if not (self.path / layout.CONFIG_FILE).exists():
            raise FileNotFoundError(f"{self.path} holds no run (no {layout.CONFIG_FILE})")

    def __repr__(self):
        status = self.result or {}
        return f"Run({str(self.path)!r}, status={status.get('status')}, step={status.get('step')})"

    @property
    def config(self) -> ml_collections.ConfigDict:
        from rnnlab.run import load as load_lib

        return load_lib.load_run(self.path)[0]

    @property
    def result(self) -> dict | None:
        """status.json: how the run ended (or that it runs), its final scores."""
        return layout.read_status(self.path)

    def metrics(self, split: str | None = None) -> list[dict]:
        """The lines of metrics.jsonl (of one split: "train", "valid", "test", ...)."""
        return [m for m in layout.read_metrics(self.path) if split in (None, m["split"])]

    def predict(self, inputs, **options) -> list[dict]:
        """`rnnlab.predict.predict` on this run: one dict per input."""
        from rnnlab import predict as predict_lib

        return predict_lib.predict(self.path, [inputs] if isinstance(inputs, str) else
                                   list(inputs), **options)

    def plot(self, metric: str | None = None):
        """The run's curves (`rnnlab.curves.figure`): train and valid `metric` (default: the
        task's headline one) and the learning rate against the step."""
        from rnnlab import curves

        return curves.figure(self.path, metric)


def load(workdir: str | os.PathLike) -> Run:
    return Run(workdir)


def train(config: ml_collections.ConfigDict, workdir: str | os.PathLike,
          overrides: dict | None = None) -> Run:
    """Trains (or resumes) `config` with `overrides` (`{"optim.lr": 1e-3, ...}`) in `workdir`,
    with its progress logged where this runs; returns the Run.

    Raises the training command's errors (`rnnlab.train.train`): a bad config is a
    `validation.ConfigError` (a ValueError) saying what to change.
    """
    from rnnlab import compile_cache, overrides as overrides_lib, train as train_lib
    from rnnlab.run import checkpoint

    config = overrides_lib.apply(config, overrides or {})
    checkpoint.quiet_orbax_logs()
    compile_cache.enable()
    with _progress():
        train_lib.train(config, workdir)
    return Run(workdir)


@contextlib.contextmanager
def _progress():
    """absl's INFO lines (the loop's progress) shown while the block runs: outside `app.run`
    absl logs only warnings, through Python's logging."""
    from absl import flags

    if not flags.FLAGS.is_parsed():  # (else absl warns "Logging before flag parsing")
        flags.FLAGS.mark_as_parsed()
    before = logging.get_verbosity()
    logging.set_verbosity(logging.INFO)
    logging.use_absl_handler()
    try:
        yield
    finally:
        logging.set_verbosity(before)
