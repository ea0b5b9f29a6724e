"""A run directory: the only interface between training and everything after it.

    config.json    the resolved config
    vocab.json     the symbols, the default sample prime, and a fingerprint of the corpus
    metrics.jsonl  one JSON object per line: step, split and scalars (rnnlab.metrics)
    samples.txt    a sample at every evaluation
    ckpt/          the last train.keep_checkpoints checkpoints; ckpt_best/ the best by valid bpc
    status.json    {"status": "running" | "interrupted" | "diverged" | "finished", "step": N, ...}
    tb/            TensorBoard events, when tensorboardX is installed

A process holds an exclusive lock on the directory while it trains in it, so two processes can
never write one run (the lock dies with the process, even on SIGKILL). In a multi-process run
only process 0 (`primary`) locks, checks and writes these files; every process reads the
status and writes its shards of each checkpoint.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import re
from typing import Any

import ml_collections
import numpy as np

from rnnlab import checkpoint as checkpoint_lib
from rnnlab import data, metrics as metrics_lib, sample, storage

SAMPLES_FILE = "samples.txt"
STATUS_FILE = "status.json"
CONFIG_FILE = "config.json"
LOCK_FILE = ".lock"

# Keys that may differ when a run is resumed: they change bookkeeping, not the computation.
RESUMABLE_KEYS = {
    "data.dir", "train.log_every", "train.eval_every", "train.ckpt_every",
    "train.keep_checkpoints", "train.sample_length", "train.sample_temperature",
    "train.sample_prime", "train.max_nonfinite",
}
# train.steps may grow on resume, unless the learning-rate schedule spans it.
SCHEDULES_OVER_ALL_STEPS = ("cosine", "warmup_cosine", "linear")


class RunDirError(ValueError):
    """The directory holds another experiment, another corpus, or a run in use."""


def fingerprint(corpus: data.Corpus) -> str:
    """A digest of the symbols and every split's ids: resuming on other data is refused."""
    digest = hashlib.sha1(json.dumps([corpus.vocab.chars, corpus.vocab.unk]).encode())
    for name in data.SPLITS:
        digest.update(name.encode() + np.ascontiguousarray(corpus.splits[name]).tobytes())
    return digest.hexdigest()


def _config_diff(old: dict, new: dict, prefix: str = "") -> list[str]:
    out = []
    for k in sorted(set(old) | set(new)):
        a, b = old.get(k), new.get(k)
        if isinstance(a, dict) and isinstance(b, dict):
            out += _config_diff(a, b, f"{prefix}{k}.")
        elif a != b:
            out.append(f"{prefix}{k}")
    return out


class RunDir:
    """Opens (and locks) a run directory for `config`, refusing one that holds another run."""

    def __init__(self, workdir: str | os.PathLike, config: ml_collections.ConfigDict, *,
                 primary: bool = True):
        self.path = storage.path(workdir)
        self.config = config
        self.primary = primary
        self.writer = self.ckpt = self._lock = None
        if not primary:
            return
        self.path.mkdir(parents=True, exist_ok=True)
        if storage.is_local(self.path):  # a bucket has no locks: one run per gs:// workdir
            self._lock = open(self.path / LOCK_FILE, "w")
            try:
                fcntl.flock(self._lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                self._lock.close()
                raise RunDirError(f"{self.path} is in use by another rnnlab process") from None
        self._check_config()

    def _check_config(self) -> None:
        resolved = json.loads(self.config.to_json_best_effort())
        path = self.path / CONFIG_FILE
        if path.exists():
            allowed = set(RESUMABLE_KEYS)
            if self.config.optim.schedule not in SCHEDULES_OVER_ALL_STEPS:
                allowed.add("train.steps")
            changed = [k for k in _config_diff(json.loads(path.read_text()), resolved)
                       if k not in allowed]
            if changed:
                raise RunDirError(
                    f"{self.path} holds a run with a different config (differs in: "
                    f"{', '.join(changed)}); resuming it would mix two experiments. Use a new "
                    "--workdir, or rerun with the same config to resume."
                )
        path.write_text(json.dumps(resolved, indent=2, sort_keys=True) + "\n")

    def check_corpus(self, corpus: data.Corpus, default_prime: str) -> None:
        """Writes vocab.json on the first run; later runs must see the same corpus."""
        if not self.primary:
            return
        path = self.path / sample.VOCAB_FILE
        digest = fingerprint(corpus)
        if path.exists():
            old = json.loads(path.read_text()).get("fingerprint")
            if old != digest:
                raise RunDirError(
                    f"the corpus differs from the one {self.path} was trained on (a changed "
                    "file, or pydoc/python_source from another Python version); use a new "
                    "--workdir"
                )
            return
        sample.save_vocab(self.path, corpus.vocab, default_prime, digest)

    def status(self) -> dict | None:
        try:
            return json.loads((self.path / STATUS_FILE).read_text())
        except (OSError, ValueError):
            return None

    def set_status(self, status: str, step: int, **extra: Any) -> None:
        if not self.primary:
            return
        record = {"status": status, "step": int(step), **extra}
        (self.path / STATUS_FILE).write_text(json.dumps(record) + "\n")

    def restore(self, like: Any, *, step: int | None = None):
        """Opens the checkpoints; returns `(state, meta)` of the latest (or `step`), or None."""
        if self.ckpt is None:
            self.ckpt = checkpoint_lib.Checkpointer(self.path, self.config.train.keep_checkpoints)
        return self.ckpt.restore(like, step=step)

    def saved_steps(self) -> list[int]:
        return self.ckpt.steps()

    def open_logs(self, step: int) -> None:
        """Starts the metrics and samples at `step`, dropping what a killed run wrote after it."""
        if not self.primary:
            return
        self.writer = metrics_lib.MetricsWriter(self.path, resume_step=step)
        path = self.path / SAMPLES_FILE
        if path.exists():
            text = path.read_text()
            for match in re.finditer(r"^=== step (\d+) ", text, flags=re.M):
                if int(match.group(1)) > step:
                    path.write_text(text[: match.start()])
                    break

    def write(self, step: int, split: str, scalars: dict[str, float]) -> None:
        if self.primary:
            self.writer.write(step, split, scalars)

    def write_sample(self, step: int, temperature: float, text: str) -> None:
        if not self.primary:
            return
        storage.append(self.path / SAMPLES_FILE,
                       f"=== step {step} (temperature {temperature}) ===\n{text}\n\n")

    def save(self, step: int, state: Any, meta: dict, *, best: bool = False) -> None:
        self.ckpt.save(step, state, meta, best=best)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
        if self.ckpt is not None:
            self.ckpt.wait()
            self.ckpt.close()
        if self._lock is not None:
            self._lock.close()
