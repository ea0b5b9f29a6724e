"""A run directory opened for training: the only interface between training and everything
after it. The layout (file names, status values, readers) is `rnnlab.layout`.

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

import errno
import fcntl
import hashlib
import json
import os
import re
import shutil
from typing import Any

import jax
import ml_collections
from absl import logging

from rnnlab import checkpoint as checkpoint_lib
from rnnlab import layout, metrics as metrics_lib, storage

RunDirError = layout.RunDirError
# vocab.json's entries besides the task's record: the data's digest, and the record's own.
FINGERPRINT, RECORD_DIGEST = "fingerprint", "record_digest"

# Keys that may differ when a run is resumed: they change bookkeeping, not the computation.
RESUMABLE_KEYS = {
    "data.dir", "train.log_every", "train.eval_every", "train.ckpt_every",
    "train.keep_checkpoints", "train.sample_length", "train.sample_temperature",
    "train.sample_prime", "train.max_nonfinite",
}
# Bytes held back in .reserve, freed on a full disk so that status.json can still be written.
RESERVE_BYTES = 64 * 1024
# Bytes a checkpoint takes beyond its arrays (orbax's metadata files).
CHECKPOINT_OVERHEAD = 256 * 1024
# train.steps may grow on resume, unless the learning-rate schedule spans it.
SCHEDULES_OVER_ALL_STEPS = ("cosine", "warmup_cosine", "linear")


def read_record(workdir) -> dict:
    """What the run's task keeps in vocab.json (its vocabulary, labels, ...), checked against
    the digest written with it.

    Raises:
      FileNotFoundError: no vocab.json; RunDirError: it is not what the run wrote.
    """
    path = storage.path(workdir) / layout.VOCAB_FILE
    again = ("put back the original, or delete it and rerun the training command to have it "
             "written again from the data (a changed corpus is then caught by the checkpoints)")
    try:
        record = layout.read_json(path)
    except RunDirError as e:
        raise RunDirError(f"{e}: {again}") from e
    if record is None:
        raise FileNotFoundError(f"{workdir} holds no run (no {layout.VOCAB_FILE}); pass a run's "
                                "--workdir")
    if not isinstance(record, dict):
        raise RunDirError(f"{path} is corrupt (not a JSON object): {again}")
    if record.get(RECORD_DIGEST, record_digest(record)) != record_digest(record):
        raise RunDirError(f"{path} was changed after the run wrote it (it no longer matches the "
                          f"digest written in it): {again}")
    return record


def record_digest(record: dict) -> str:
    """A digest of a task's record (vocab.json without its digests)."""
    kept = {k: v for k, v in record.items() if k not in (FINGERPRINT, RECORD_DIGEST)}
    return hashlib.sha1(json.dumps(kept, sort_keys=True).encode()).hexdigest()


def data_mismatch(workdir, fingerprint: str) -> str | None:
    """Why data with `fingerprint` (`tasks.Task.fingerprint`) is not the data the run in
    `workdir` was trained on, or None when it is."""
    recorded = read_record(workdir).get(FINGERPRINT)
    if recorded in (None, fingerprint):
        return None
    return (f"the data differs from the data {workdir} was trained on (a changed file, or "
            "pydoc/python_source from another Python version)")


def checkpoint_bytes(state: Any) -> int:
    """About what a checkpoint of `state` takes on disk."""
    return sum(x.nbytes for x in jax.tree_util.tree_leaves(state)) + CHECKPOINT_OVERHEAD


def _config_diff(old: dict, new: dict, prefix: str = "") -> list[str]:
    out = []
    for k in sorted(set(old) | set(new)):
        a, b = old.get(k), new.get(k)
        if isinstance(a, dict) and isinstance(b, dict):
            out += _config_diff(a, b, f"{prefix}{k}.")
        elif a != b:
            out.append(f"{prefix}{k}")
    return out


def _os_problem(path, e: OSError) -> RunDirError:
    if storage.is_disk_full(e):
        return RunDirError(f"the disk is full: cannot write in {path}; free some space and rerun")
    if e.errno in (errno.EROFS, errno.EACCES, errno.EPERM):
        return RunDirError(f"cannot write to {path} ({e.strerror}): give this process write "
                           "access, or copy the run to a writable --workdir to resume it there")
    return RunDirError(f"cannot use {path} as a run directory: {e.strerror or e}")


class RunDir:
    """Opens (and locks) a run directory for `config`, refusing one that holds another run."""

    def __init__(self, workdir: str | os.PathLike, config: ml_collections.ConfigDict, *,
                 primary: bool = True):
        self.path = storage.path(workdir)
        self.config = config
        self.primary = primary
        self.writer = self.ckpt = self._lock = None
        self._record: dict[str, Any] = {}
        self.quarantined = 0  # checkpoints moved to corrupt/ by this process
        self.logged_every = None  # the train.log_every of the run being resumed
        # The newest checkpoint step known to have committed.
        self.committed = (layout.read_status(self.path) or {}).get("committed_step")
        if not primary:
            return
        if self.path.exists() and not self.path.is_dir():
            raise RunDirError(f"--workdir {self.path} is a file, not a directory: pass a "
                              "directory (new or holding a run)")
        try:
            self.path.mkdir(parents=True, exist_ok=True)
            if storage.is_local(self.path):  # a bucket has no locks: one run per gs:// workdir
                self._take_lock()
                self._reserve()
            self._check_config()
        except OSError as e:
            self.close()
            raise _os_problem(self.path, e) from e
        except BaseException:
            self.close()
            raise

    def _take_lock(self):
        self._lock = open(self.path / layout.LOCK_FILE, "a+")
        try:
            fcntl.flock(self._lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = layout.lock_holder(self.path)
            self._lock.close()
            self._lock = None
            raise RunDirError(f"{self.path} is in use by another rnnlab process"
                              + (f" (pid {holder})" if holder else "")
                              + ": wait for it to end, or stop it first") from None
        self._lock.truncate(0)
        self._lock.write(str(os.getpid()))
        self._lock.flush()

    def _reserve(self):
        path = self.path / layout.RESERVE_FILE
        if not path.exists():
            try:
                storage.write_atomic(path, "\0" * RESERVE_BYTES)
            except OSError:  # already full: nothing to hold back
                pass

    def release_reserve(self) -> None:
        """Frees the reserve (the disk is full): room for a last status.json."""
        if self.primary and storage.is_local(self.path):
            (self.path / layout.RESERVE_FILE).unlink(missing_ok=True)

    def _check_config(self) -> None:
        resolved = json.loads(self.config.to_json_best_effort())
        path = self.path / layout.CONFIG_FILE
        try:
            old = layout.read_json(path)
        except RunDirError as e:
            raise RunDirError(f"{e}: it cannot be compared with this run's config. If "
                              f"{self.path} holds this same experiment, delete that file and "
                              "rerun to resume; otherwise use a new --workdir") from e
        if old is not None:
            self.logged_every = (old.get("train") or {}).get("log_every")
            allowed = set(RESUMABLE_KEYS)
            if self.config.optim.schedule not in SCHEDULES_OVER_ALL_STEPS:
                allowed.add("train.steps")
            changed = [k for k in _config_diff(old, resolved) if k not in allowed]
            if changed:
                raise RunDirError(
                    f"{self.path} holds a run with a different config (differs in: "
                    f"{', '.join(changed)}); resuming it would mix two experiments. Use a new "
                    "--workdir, or rerun with the same config to resume."
                )
            self._check_steps()
        text = json.dumps(resolved, indent=2, sort_keys=True) + "\n"
        if old != resolved:
            storage.write_atomic(path, text)

    def _check_steps(self) -> None:
        """config.json describes what the run did: it never ends before the step it reached."""
        reached = max(layout.checkpoint_steps(self.path), default=0)
        if self.config.train.steps < reached:
            raise RunDirError(
                f"{self.path} has trained to step {reached}, past train.steps="
                f"{self.config.train.steps}: pass train.steps >= {reached} to resume it (or the "
                "same steps to see its results), or a new --workdir to start over")

    def check_data(self, digest: str, record: dict) -> None:
        """Writes vocab.json (the task's `record` and the data's digest) on the first run;
        later runs must see the same data."""
        if not self.primary:
            return
        path = self.path / layout.VOCAB_FILE
        old = read_record(self.path) if path.exists() else None
        if old is None:
            written = {**record, FINGERPRINT: digest, RECORD_DIGEST: record_digest(record)}
            storage.write_atomic(path, json.dumps(written, ensure_ascii=False))
        elif old.get(FINGERPRINT) != digest:
            raise RunDirError(
                f"the corpus differs from the data {self.path} was trained on (a changed file, "
                "or pydoc/python_source from another Python version); use a new --workdir"
            )
        elif record_digest(old) != record_digest(record):
            raise RunDirError(
                f"{path} does not match the data's vocabulary and labels (it was changed after "
                "the run wrote it): put back the original, or delete it and rerun to have it "
                "written again from the data")

    # ---------------------------------------------------------------------- status

    def status(self) -> dict | None:
        return layout.read_status(self.path)

    def set_status(self, status: str, step: int, **extra: Any) -> None:
        """Writes status.json; call it only once the checkpoints it reports have committed."""
        self._record = {"status": status, "step": int(step), **extra}
        self._write_status()

    def _write_status(self):
        if self.primary:
            record = {**self._record, "committed_step": self.committed}
            storage.write_atomic(self.path / layout.STATUS_FILE, json.dumps(record) + "\n")

    # ------------------------------------------------------------------ checkpoints

    def restore(self, like: Any, *, at_most: int | None = None) -> checkpoint_lib.Restored | None:
        """The checkpoint to resume from: the newest that verifies (at or before `at_most`),
        moved back before the best step when the best checkpoint has to be rebuilt. None for a
        run with nothing saved yet.

        Raises:
          RunDirError: the run has history (metrics, committed checkpoints) but no checkpoint
            that verifies: resuming would restart it from step 0 over that history.
        """
        if self.ckpt is None:
            had_dir = (self.path / layout.CKPT_DIR).exists()
            self.ckpt = checkpoint_lib.Checkpointer(self.path, self.config.train.keep_checkpoints)
            if not had_dir and (layout.read_metrics(self.path) or self.committed is not None):
                raise RunDirError(
                    f"{self.path / layout.CKPT_DIR} is missing, but the run has metrics (up to "
                    f"step {self._history_step()}): resuming would start again from step 0 over "
                    f"them. To start over, delete {self.path} or pass a new --workdir.")
        best = self._restore(like, best=True)
        found = self._restore(like, at_most=at_most)
        if self.ckpt.latest_step() is not None:  # listed, so committed
            self.committed = self.ckpt.latest_step()
        if found is None:
            if self.quarantined or self.committed is not None:
                raise RunDirError(
                    f"no checkpoint of {self.path} reads back as it was saved (those that did "
                    f"not are in {self.path / layout.CORRUPT_DIR}), so the run cannot resume; "
                    f"its metrics go to step {self._history_step()}. To start over, delete "
                    f"{self.path} or pass a new --workdir.")
            return None
        best_step = found.meta.get("best_step")
        if best_step is not None and (best is None or best.step < best_step):
            earlier = self._restore(like, at_most=best_step - 1)
            if earlier is not None:
                logging.warning("%s: the best checkpoint (step %d) is missing or corrupt; "
                                "resuming from step %d to rebuild it", self.path, best_step,
                                earlier.step)
                return earlier
            logging.warning("%s: the best checkpoint (step %d) is missing or corrupt and no "
                            "kept checkpoint precedes it to rebuild it from; ckpt_best will "
                            "hold the next improvement", self.path, best_step)
        return found

    def _restore(self, like, **kwargs):
        """Checkpointer.restore, moving every checkpoint that fails verification aside."""
        best = kwargs.get("best", False)
        bad = []
        found = self.ckpt.restore(like, on_bad=lambda step, why: bad.append((step, why)),
                                  **kwargs)
        for step, why in bad:
            target = self.ckpt.quarantine(step, best=best)  # (moved by process 0)
            self.quarantined += 1
            logging.warning("checkpoint %s is skipped: %s%s", self.ckpt.path(step, best=best),
                            why, f"; moved to {target}" if target else "")
        return found

    def _history_step(self) -> int:
        steps = [m["step"] for m in layout.read_metrics(self.path)]
        return max(steps + [self.committed or 0])

    def save(self, step: int, state: Any, meta: dict, *, best: bool = False,
             replace: bool = False) -> None:
        """Starts an asynchronous save; the previous ones have committed when it returns.
        A checkpoint of that step already there is kept, unless `replace`.

        Raises:
          OSError(ENOSPC): the file system has less room than the state takes (checked first,
            so that a save never starts that would fill the disk halfway).
        """
        self.ckpt.wait()
        self._note_commits()
        need = checkpoint_bytes(state)
        free = storage.free_bytes(self.path)
        if free is not None and free < need:
            raise OSError(errno.ENOSPC, f"No space left on device: a checkpoint needs about "
                          f"{need / 2**20:.1f} MiB, {free / 2**20:.1f} MiB are free",
                          str(self.path / layout.CKPT_DIR))
        self.ckpt.save(step, state, meta, best=best, replace=replace)

    def commit(self) -> None:
        """Waits until every checkpoint started has committed (raises if one failed)."""
        self.ckpt.wait()
        self._note_commits()

    def _note_commits(self):
        latest = self.ckpt.latest_step()
        if latest is not None and latest != self.committed:
            self.committed = latest
            if self._record:
                self._write_status()

    # ------------------------------------------------------------------------ logs

    def open_logs(self, step: int) -> None:
        """Starts the metrics and samples at `step`, dropping what a killed run wrote after it
        (and any line it cut short); each file is replaced in one step."""
        if not self.primary:
            return
        self._note_lost_rows(step)
        self.writer = metrics_lib.MetricsWriter(self.path, resume_step=step)
        path = self.path / layout.SAMPLES_FILE
        if path.exists():
            text = path.read_text()
            for match in re.finditer(r"^=== step (\d+) ", text, flags=re.M):
                if int(match.group(1)) > step:
                    storage.write_atomic(path, text[: match.start()])
                    break

    def _note_lost_rows(self, step: int) -> None:
        """Says which steps' rows a resume from `step` finds missing from metrics.jsonl (a cut
        file): they are not written again."""
        if not step or not self.logged_every:
            return
        logged = [m["step"] for m in layout.read_metrics(self.path)
                  if m.get("split") == "train" and m["step"] <= step]
        expected = step - step % self.logged_every
        if max(logged, default=0) < expected:
            logging.warning("%s has the train rows up to step %d only, but the run resumes from "
                            "step %d: the rows of steps %d to %d were lost (the file was cut) "
                            "and are not written again", self.path / layout.METRICS_FILE,
                            max(logged, default=0), step, max(logged, default=0) + 1, expected)

    def write(self, step: int, split: str, scalars: dict[str, float]) -> None:
        if self.primary:
            self.writer.write(step, split, scalars)

    def write_file(self, name: str, text: str) -> None:
        """A file of the run's results (a confusion matrix, ...), replaced atomically."""
        if self.primary:
            storage.write_atomic(self.path / name, text)

    def write_sample(self, step: int, temperature: float, text: str) -> None:
        if not self.primary:
            return
        storage.append(self.path / layout.SAMPLES_FILE,
                       f"=== step {step} (temperature {temperature}) ===\n{text}\n\n")

    def close(self) -> None:
        """Releases the directory. Errors of pending saves are not raised here (`commit`
        raises them); this runs on the way out of failures too."""
        if self.writer is not None:
            self.writer.close()
            self.writer = None
        if self.ckpt is not None:
            try:
                self.ckpt.wait()
            except Exception as e:  # noqa: BLE001 - reported by the caller's own error
                logging.warning("%s: a checkpoint save did not complete: %s", self.path,
                                checkpoint_lib.first_line(e))
            self.ckpt.close()
            self.ckpt = None
        if self._lock is not None:
            self._lock.truncate(0)  # the pid goes with the lock
            self._lock.close()
            self._lock = None


def disk_full(runs: list[RunDir], error: BaseException, checkpoint_size: int, keep: int) -> str:
    """After a write found the disk full: drops the failed saves' leftovers, marks the runs
    interrupted (with the space held in reserve), and returns the one message to show."""
    free = storage.free_bytes(runs[0].path) if runs else None
    kept = []
    for run in runs:
        if run.ckpt is not None:
            try:
                run.ckpt.wait()
            except Exception:  # noqa: BLE001 - the same full disk, reported here
                pass
            for name in (layout.CKPT_DIR, layout.BEST_DIR):
                for p in (run.path / name).glob("*.orbax-checkpoint-tmp*"):
                    shutil.rmtree(p, ignore_errors=True)
        steps = layout.checkpoint_steps(run.path)
        kept.append(f"step {steps[-1]} in {run.path / layout.CKPT_DIR}" if steps else
                    f"none yet in {run.path}")
        try:
            run.release_reserve()
            run.set_status(layout.INTERRUPTED, steps[-1] if steps else 0, message="disk full")
        except OSError:
            kept[-1] += " (status.json could not be updated)"
    return (f"disk full: {_failed_write(error)}. "
            + (f"{free / 2**20:.1f} MiB were free; " if free is not None else "")
            + f"a checkpoint of this run takes about {checkpoint_size / 2**20:.1f} MiB and "
            f"{keep} + 1 are kept. The last checkpoint is intact (" + "; ".join(kept)
            + "). Free some space and rerun the same command to resume.")


def _failed_write(error: BaseException) -> str:
    """What a disk-full error was writing, in a few words."""
    path = getattr(error, "filename", None)
    if path is None and (match := re.search(r'(?:Failed writing|local file):? "([^"]+)"',
                                            str(error))):
        path = match.group(1)
    if path is None:
        return checkpoint_lib.first_line(error)
    if match := re.search(r"(.*)/(\d+)\.orbax-checkpoint-tmp", str(path)):
        return f"saving the checkpoint {match.group(1)}/{match.group(2)} failed"
    return f"writing {path} failed"
