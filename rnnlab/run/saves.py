"""A training run's checkpoints: where it resumes from, and the newest step known to have
committed (what status.json reports).

A run resumes from its newest checkpoint that verifies; one that does not is moved to corrupt/
(never deleted) with a warning, and a best checkpoint that is lost is rebuilt by resuming from
before it. A run that has history (metrics, committed checkpoints) but no checkpoint to resume
from is refused rather than restarted from step 0 over that history.
"""

from __future__ import annotations

from typing import Any

from absl import logging

from rnnlab.run import checkpoint, layout, storage

RunDirError = layout.RunDirError


class Saves:
    """The checkpoints of the run in `workdir` (opened at the first `restore`), keeping the
    last `keep`; `committed` is the step of the newest one known to have committed."""

    def __init__(self, workdir, keep: int, committed: int | None):
        self.path = storage.path(workdir)
        self.keep = keep
        self.committed = committed
        self.ckpt: checkpoint.Checkpointer | None = None
        self.quarantined = 0  # checkpoints moved to corrupt/ by this process

    def restore(self, like: Any, *, at_most: int | None = None) -> checkpoint.Restored | None:
        """The checkpoint to resume from: the newest that verifies (at or before `at_most`),
        moved back before the best step when the best checkpoint has to be rebuilt. None for a
        run with nothing saved yet.

        Raises:
          RunDirError: the run has history (metrics, committed checkpoints) but no checkpoint
            that verifies: resuming would restart it from step 0 over that history.
        """
        if self.ckpt is None:
            self._open()
        best = self._verified(like, best=True)
        found = self._verified(like, at_most=at_most)
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
            earlier = self._verified(like, at_most=best_step - 1)
            if earlier is not None:
                logging.warning("%s: the best checkpoint (step %d) is missing or corrupt; "
                                "resuming from step %d to rebuild it", self.path, best_step,
                                earlier.step)
                return earlier
            logging.warning("%s: the best checkpoint (step %d) is missing or corrupt and no "
                            "kept checkpoint precedes it to rebuild it from; ckpt_best will "
                            "hold the next improvement", self.path, best_step)
        return found

    def _open(self):
        had_dir = (self.path / layout.CKPT_DIR).exists()
        self.ckpt = checkpoint.Checkpointer(self.path, self.keep)
        if not had_dir and (layout.read_metrics(self.path) or self.committed is not None):
            raise RunDirError(
                f"{self.path / layout.CKPT_DIR} is missing, but the run has metrics (up to "
                f"step {self._history_step()}): resuming would start again from step 0 over "
                f"them. To start over, delete {self.path} or pass a new --workdir.")

    def _verified(self, like, **kwargs):
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

    def commit(self) -> bool:
        """Waits until every save started has committed (raises if one failed); returns
        whether `committed` moved on."""
        self.ckpt.wait()
        latest = self.ckpt.latest_step()
        if latest is None or latest == self.committed:
            return False
        self.committed = latest
        return True

    def close(self) -> None:
        """Closes the checkpoints. Errors of pending saves are not raised here (`commit`
        raises them); this runs on the way out of failures too."""
        if self.ckpt is None:
            return
        try:
            self.ckpt.wait()
        except Exception as e:  # noqa: BLE001 - reported by the caller's own error
            logging.warning("%s: a checkpoint save did not complete: %s", self.path,
                            checkpoint.first_line(e))
        self.ckpt.close()
        self.ckpt = None
