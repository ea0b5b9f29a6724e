"""The layout of a run directory, and how to read one. Imports no JAX: training, sampling and
`launch/` all read run directories through this module.

    config.json    the resolved config
    vocab.json     the symbols, the default sample prime, and a fingerprint of the corpus
    metrics.jsonl  one JSON object per line: {"step": N, "split": "train" | "valid" | ...,
                   <scalar>: value, ...}
    samples.txt    a sample at every evaluation
    status.json    {"status": "running" | "interrupted" | "diverged" | "finished", "step": N,
                    "committed_step": the newest checkpoint known to be complete, ...}
    ckpt/<step>/   the last train.keep_checkpoints checkpoints (orbax); ckpt_best/<step>/ the
                   best by validation; a save in progress is ckpt/<step>.orbax-checkpoint-tmp
    corrupt/       checkpoints that failed verification, moved aside (never deleted)
    tb/            TensorBoard events (train.trackers), when tensorboardX is installed
    mlflow.json    the MLflow run this run logs to (train.trackers=mlflow)
    .lock          locked by the process that trains in the directory (its pid inside)
    .reserve       a few KiB held back, freed when the disk is full so that status.json can
                   still say so

Every file is replaced atomically (`rnnlab.run.storage`). status.json is written only after the
checkpoints it reports have committed, so a run that says "finished" has its final checkpoint.
"""

from __future__ import annotations

import fcntl
import json
import os
from typing import Any

from rnnlab.run import storage

CONFIG_FILE = "config.json"
VOCAB_FILE = "vocab.json"
METRICS_FILE = "metrics.jsonl"
SAMPLES_FILE = "samples.txt"
STATUS_FILE = "status.json"
GROUP_FILE = "group.json"  # a vmapped trial: the trials it trained with, how to reproduce it
LOCK_FILE = ".lock"
RESERVE_FILE = ".reserve"
CKPT_DIR = "ckpt"
BEST_DIR = "ckpt_best"
CORRUPT_DIR = "corrupt"
TB_DIR = "tb"

RUNNING, INTERRUPTED, DIVERGED, FINISHED = "running", "interrupted", "diverged", "finished"
DONE = (FINISHED, DIVERGED)  # a run in one of these states is a result: never trained again


class RunDirError(ValueError):
    """A run directory that cannot be used as asked: another experiment or corpus, in use,
    unwritable, or with files that are corrupt."""


def read_json(path) -> Any:
    """The JSON in `path`; None when the file does not exist.

    Raises:
      RunDirError: the file cannot be read or is not JSON (the message names the file).
    """
    try:
        text = path.read_text()
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError) as e:
        raise RunDirError(f"cannot read {path}: {getattr(e, 'strerror', None) or e}") from e
    try:
        return json.loads(text)
    except ValueError as e:
        raise RunDirError(f"{path} is corrupt (not JSON: {e})") from e


def read_status(workdir) -> dict | None:
    """status.json of a run; None when it is absent or unreadable."""
    try:
        status = read_json(storage.path(workdir) / STATUS_FILE)
    except RunDirError:
        return None
    return status if isinstance(status, dict) and "status" in status else None


def read_metrics(workdir) -> list[dict]:
    """The records of a run's metrics.jsonl; [] when there is none. A line cut short (a killed
    run, or one still writing) is skipped; a resumed run drops it."""
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
        if isinstance(record, dict) and isinstance(record.get("step"), int):
            records.append(record)
    return records


def checkpoint_steps(workdir, *, best: bool = False) -> list[int]:
    """The steps of the committed checkpoints in ckpt/ (or ckpt_best/), oldest first. A save
    that has not committed (`<step>.orbax-checkpoint-tmp`) is not one."""
    directory = storage.path(workdir) / (BEST_DIR if best else CKPT_DIR)
    try:
        names = [p.name for p in directory.iterdir()]
    except OSError:
        return []
    return sorted(int(n) for n in names if n.isdigit())


def lock_holder(workdir) -> int | None:
    """The pid of the process that trains in `workdir` (0 if it wrote none yet), or None."""
    path = storage.path(workdir) / LOCK_FILE
    if not storage.is_local(path):
        return None
    try:
        fd = os.open(str(path), os.O_RDONLY)
    except OSError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        text = os.pread(fd, 32, 0).decode(errors="replace").strip()
        return int(text) if text.isdigit() else 0
    finally:
        os.close(fd)  # (closing drops our shared lock, if we took it)
    return None


def result(workdir) -> str | None:
    """"finished" or "diverged" when the run is a result whose files agree (a finished run has
    its final checkpoint), else None: the run is still to train, or to repair."""
    status = read_status(workdir)
    if status is None or status["status"] not in DONE:
        return None
    if status["status"] == FINISHED and status.get("step") not in checkpoint_steps(workdir):
        return None
    return status["status"]
