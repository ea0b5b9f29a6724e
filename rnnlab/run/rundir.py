"""A run directory opened for training (`RunDir`): the only interface between training and
everything after it. The layout (file names, status values, readers) is `rnnlab.run.layout`.

A process holds an exclusive lock on the directory while it trains in it, so two processes can
never write one run (the lock dies with the process, even on SIGKILL). In a multi-process run
only process 0 (`primary`) locks, checks and writes these files; every process reads the
status and writes its shards of each checkpoint.

Nothing is lost: files are replaced atomically; status.json reports only checkpoints that have
committed; a checkpoint that does not read back as it was saved is moved to corrupt/ and the
run resumes from the newest one that does; and a run whose checkpoints are all gone is refused
rather than restarted over its history.
"""

from __future__ import annotations

import json
import os
from typing import Any

import ml_collections

from rnnlab.run import checkpoint, experiment, failures, layout, lock, logs, saves, storage

RunDirError = layout.RunDirError


class RunDir:
    """Opens (and locks) a run directory for `config`, refusing one that holds another run."""

    def __init__(self, workdir: str | os.PathLike, config: ml_collections.ConfigDict, *,
                 primary: bool = True):
        self.path = storage.path(workdir)
        self.config = config
        self.primary = primary
        self.writer = self._lock = None
        self._record: dict[str, Any] = {}
        self.logged_every = None  # the train.log_every of the run being resumed
        self.saves = saves.Saves(self.path, config.train.keep_checkpoints,
                                 (layout.read_status(self.path) or {}).get("committed_step"))
        if not primary:
            return
        if self.path.exists() and not self.path.is_dir():
            raise RunDirError(f"--workdir {self.path} is a file, not a directory: pass a "
                              "directory (new or holding a run)")
        try:
            self.path.mkdir(parents=True, exist_ok=True)
            if storage.is_local(self.path):  # a bucket has no locks: one run per gs:// workdir
                self._lock = lock.take(self.path)
                lock.reserve(self.path)
            old = experiment.check_config(self.path, config)
            if old is not None:
                self.logged_every = (old.get("train") or {}).get("log_every")
        except OSError as e:
            self.close()
            raise failures.os_problem(self.path, e) from e
        except BaseException:
            self.close()
            raise

    @property
    def ckpt(self) -> checkpoint.Checkpointer | None:
        """The run's checkpoints (opened by `restore`)."""
        return self.saves.ckpt

    @property
    def committed(self) -> int | None:
        """The newest checkpoint step known to have committed."""
        return self.saves.committed

    def release_reserve(self) -> None:
        """Frees the reserve (the disk is full): room for a last status.json."""
        if self.primary and storage.is_local(self.path):
            lock.free_reserve(self.path)

    def check_data(self, digest: str, record: dict) -> None:
        """Writes vocab.json (the task's `record` and the data's digest) on the first run;
        later runs must see the same data."""
        if self.primary:
            experiment.check_data(self.path, digest, record)

    def status(self) -> dict | None:
        return layout.read_status(self.path)

    def set_status(self, status: str, step: int, **extra: Any) -> None:
        """Writes status.json; call it only once the checkpoints it reports have committed."""
        self._record = {"status": status, "step": int(step), **extra}
        self._write_status()
        if self.writer is not None:
            self.writer.status(status)

    def _write_status(self):
        if self.primary:
            record = {**self._record, "committed_step": self.committed}
            storage.write_atomic(self.path / layout.STATUS_FILE, json.dumps(record) + "\n")

    def restore(self, like: Any, *, at_most: int | None = None) -> checkpoint.Restored | None:
        """The checkpoint to resume from (`saves.Saves.restore`): the newest that verifies."""
        return self.saves.restore(like, at_most=at_most)

    def save(self, step: int, state: Any, meta: dict, *, best: bool = False,
             replace: bool = False) -> None:
        """Starts an asynchronous save; the previous ones have committed when it returns.
        A checkpoint of that step already there is kept, unless `replace`.

        Raises:
          OSError(ENOSPC): the file system has less room than the state takes (checked first,
            so that a save never starts that would fill the disk halfway).
        """
        self.commit()
        self.saves.ckpt.save(step, state, meta, best=best, replace=replace)

    def commit(self) -> None:
        """Waits until every checkpoint started has committed (raises if one failed)."""
        if self.saves.commit() and self._record:
            self._write_status()

    def open_logs(self, step: int) -> None:
        """Starts the metrics and samples at `step`, dropping what a killed run wrote after it
        (and any line it cut short); each file is replaced in one step."""
        if self.primary:
            self.writer = logs.open_at(self.path, step, self.logged_every, self.config)

    def write(self, step: int, split: str, scalars: dict[str, float]) -> None:
        if self.primary:
            self.writer.write(step, split, scalars)

    def write_file(self, name: str, text: str) -> None:
        """A file of the run's results (a confusion matrix, ...), replaced atomically."""
        if self.primary:
            storage.write_atomic(self.path / name, text)

    def write_sample(self, step: int, temperature: float, text: str) -> None:
        if self.primary:
            logs.append_sample(self.path, step, temperature, text)

    def close(self) -> None:
        """Releases the directory. Errors of pending saves are not raised here (`commit`
        raises them); this runs on the way out of failures too."""
        if self.writer is not None:
            self.writer.close()
            self.writer = None
        self.saves.close()
        if self._lock is not None:
            lock.release(self._lock)
            self._lock = None
