"""Orbax checkpoints of the whole train state, verified when they are read back.

A checkpoint holds `state` (a pytree of arrays: params, optimizer state, carry, step, PRNG key
data) and `meta` (JSON: the best validation score so far, ...). Orbax writes each step to a
temporary directory and renames it when complete, so a killed process never leaves a
half-written checkpoint that a resume would pick up. But orbax checks no checksum, so `save`
seals the meta with a checksum of the state (`rnnlab.run.verify`), and `restore` returns the
newest checkpoint whose restored values match it, reporting each one it skipped and why.

A full disk is known by checking, not by reading a dependency's error text: `save` refuses to
start when the file system has less room than the checkpoint takes, and a save that fails (orbax
and TensorStore raise a plain ValueError then) on a disk left with less room than it needed is
raised as `WriteError`, an OSError(ENOSPC) naming the checkpoint.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import sys
import time
import warnings
from typing import Any, Callable, NamedTuple

import jax
import orbax.checkpoint as ocp
from absl import logging as absl_logging
from etils import epath
from jax.experimental import multihost_utils

from rnnlab.run import layout, storage, verify

ITEMS = ("state", "meta")
# Bytes a checkpoint takes beyond its arrays (orbax's metadata files).
OVERHEAD = 256 * 1024


class WriteError(OSError):
    """A checkpoint save that failed on a disk with less room left than the checkpoint takes
    (errno ENOSPC; `filename` is the checkpoint's directory, ckpt/<step>)."""


def size(state: Any) -> int:
    """About what a checkpoint of `state` takes on disk."""
    return sum(x.nbytes for x in jax.tree_util.tree_leaves(state)) + OVERHEAD


class _QuietOrbax(logging.Filter):
    def filter(self, record):
        if record.name == "asyncio" and record.exc_info:
            return False  # the other writes of a failed save (orbax runs them in asyncio)
        if "/orbax/" not in record.pathname:
            return True
        # Orbax logs every step of every save at INFO, and a failed save's traceback before
        # re-raising the error to us: rnnlab reports that error itself, in one line.
        return (record.levelno >= logging.WARNING and not record.exc_info
                and "is read only" not in record.getMessage())  # (we open it so on purpose)


def _unraisable(hook):
    def quiet(unraisable):
        # TensorStore's callbacks of a failed save's other writes land on orbax's closed loop,
        # and a failed restore leaves its other reads (orbax coroutines) unawaited: the failure
        # itself is reported, in one line.
        closed_loop = (isinstance(unraisable.exc_value, RuntimeError)
                       and str(unraisable.exc_value) == "Event loop is closed")
        code = getattr(unraisable.object, "cr_code", None)
        if not closed_loop and "/orbax/" not in getattr(code, "co_filename", ""):
            hook(unraisable)
    return quiet


def quiet_orbax_logs() -> None:
    """Keep only orbax's warnings and errors (without their tracebacks) in the log, and
    silence the echoes of a failed save (rnnlab reports the failure itself, in one line)."""
    absl_logging.get_absl_handler().addFilter(_QuietOrbax())
    sys.unraisablehook = _unraisable(sys.unraisablehook)
    # (the same unawaited reads, when the garbage collector finds them first)
    warnings.filterwarnings("ignore", message=r"coroutine '_read_array\w*' was never awaited",
                            category=RuntimeWarning)


# ------------------------------------------------------------------------------ checkpoints


def _manager(directory: epath.Path, max_to_keep: int, read_only: bool) -> ocp.CheckpointManager:
    # Across processes orbax names its barriers by step; a prefix per directory keeps the
    # concurrent saves of ckpt/N and ckpt_best/N from meeting at one barrier.
    options = ocp.CheckpointManagerOptions(
        max_to_keep=None if read_only else max_to_keep, create=not read_only,
        read_only=read_only, save_interval_steps=0 if read_only else 1,
        multiprocessing_options=ocp.options.MultiprocessingOptions(
            barrier_sync_key_prefix=directory.name))
    if storage.is_local(directory):  # (absolute() would turn gs://b/x into $PWD/gs:/b/x)
        directory = directory.absolute()
    return ocp.CheckpointManager(directory, options=options, item_names=ITEMS)


class Restored(NamedTuple):
    step: int
    state: Any
    meta: dict


class Checkpointer:
    """`ckpt/` keeps the last `keep` checkpoints (for resuming); `ckpt_best/` the best one.

    `read_only=True` opens a run that another process may be training (for sampling): nothing
    is created, moved or deleted.
    """

    def __init__(self, workdir: str | os.PathLike, keep: int, *, read_only: bool = False):
        self.workdir = storage.path(workdir)
        self.keep, self.read_only = keep, read_only
        self._pending: list[tuple[epath.Path, int]] = []  # (checkpoint, bytes) being saved
        self._open()

    def _open(self):
        self.last = _manager(self.workdir / layout.CKPT_DIR, self.keep, self.read_only)
        self.best = _manager(self.workdir / layout.BEST_DIR, 1, self.read_only)

    def save(self, step: int, state: Any, meta: dict, *, best: bool = False,
             replace: bool = False) -> None:
        """Starts saving `state` and `meta` at `step` (asynchronously; `wait` to commit). A
        checkpoint of that step already there is kept, unless `replace` (then it is deleted
        first: the earlier checkpoints are the fallback until the new one commits).

        Raises:
          OSError(ENOSPC): the file system has less room than the state takes (checked first,
            so that a save never starts that would fill the disk halfway).
          WriteError: the save failed at once on a disk left too full for it.
        """
        manager = self.best if best else self.last
        need = size(state)
        directory = self.path(step, best=best).parent
        free = storage.free_bytes(directory)
        if free is not None and free < need:
            raise OSError(errno.ENOSPC, f"No space left on device: a checkpoint needs about "
                          f"{need / 2**20:.1f} MiB, {free / 2**20:.1f} MiB are free",
                          str(directory))
        if manager.latest_step() == step:
            if not replace:
                return
            manager.delete(step)
        meta = verify.seal(state, meta)
        self._pending.append((self.path(step, best=best), need))
        with self._full_disk_named():
            manager.save(step, args=ocp.args.Composite(
                state=ocp.args.StandardSave(state), meta=ocp.args.JsonSave(meta)))

    @contextlib.contextmanager
    def _full_disk_named(self):
        """Raises a failed save as WriteError when the disk has less room left than it needed:
        the cause is read from the disk, not from the failure's message."""
        try:
            yield
        except OSError:
            raise  # (an OSError says what it is)
        except Exception as e:
            for target, need in self._pending:
                free = storage.free_bytes(target.parent)
                if free is not None and free < need:
                    self._pending = []
                    raise WriteError(errno.ENOSPC, "No space left on device",
                                     str(target)) from e
            raise

    def steps(self, *, best: bool = False) -> list[int]:
        """The steps of the committed checkpoints, oldest first."""
        return sorted((self.best if best else self.last).all_steps())

    def latest_step(self, *, best: bool = False) -> int | None:
        return (self.best if best else self.last).latest_step()

    def restore(self, like: Any, *, best: bool = False, at_most: int | None = None,
                on_bad: Callable[[int, str], None] | None = None) -> Restored | None:
        """The newest checkpoint (at or before `at_most`) that reads back as it was saved.

        Args:
          like: a pytree shaped like the state (its arrays' shardings are restored onto).
          best: from ckpt_best/ rather than ckpt/.
          at_most: the newest step to consider.
          on_bad: called with (step, reason) for each checkpoint skipped; the default logs a
            warning.

        Returns:
          `Restored(step, state, meta)` (the meta without its checksums), or None.
        """
        manager = self.best if best else self.last
        abstract = jax.tree_util.tree_map(ocp.utils.to_shape_dtype_struct, like)
        for step in sorted(manager.all_steps(), reverse=True):
            if at_most is not None and step > at_most:
                continue
            try:
                restored = manager.restore(step, args=ocp.args.Composite(
                    state=ocp.args.StandardRestore(abstract), meta=ocp.args.JsonRestore()))
                problem = verify.problem(restored.state, restored.meta)
            except Exception as e:  # noqa: BLE001 - any failure to read is a bad checkpoint
                problem = f"it cannot be read ({first_line(e)})"
            if problem is None:
                return Restored(step, restored.state, verify.unseal(restored.meta))
            (on_bad or self._warn)(step, problem)
        return None

    def _warn(self, step, problem):
        absl_logging.warning("skipping checkpoint %s: %s", self.path(step), problem)

    def path(self, step: int, *, best: bool = False) -> epath.Path:
        return self.workdir / (layout.BEST_DIR if best else layout.CKPT_DIR) / str(step)

    def quarantine(self, step: int, *, best: bool = False) -> epath.Path | None:
        """Moves a bad checkpoint out of ckpt/ (or ckpt_best/) into corrupt/, so that a resumed
        run can save that step again; returns where it went (None on non-primary processes)."""
        self.wait()
        target = None
        if jax.process_index() == 0:
            corrupt = self.workdir / layout.CORRUPT_DIR
            corrupt.mkdir(parents=True, exist_ok=True)
            stamp = time.strftime("%Y%m%d-%H%M%S")
            where = layout.BEST_DIR if best else layout.CKPT_DIR
            target = corrupt / f"{where}-{step}-{stamp}"
            self.path(step, best=best).rename(target)
        if jax.process_count() > 1:
            multihost_utils.sync_global_devices("rnnlab: checkpoint quarantined")
        self.close()
        self._open()  # the managers list the steps once
        return target

    def wait(self) -> None:
        """Until every save started has committed.

        Raises:
          WriteError: a save failed on a disk left with less room than it needed.
          Exception: the error of a save that failed otherwise (orbax's own).
        """
        try:
            with self._full_disk_named():
                self.last.wait_until_finished()
                self.best.wait_until_finished()
        finally:
            self._pending = []

    def close(self) -> None:
        self.last.close()
        self.best.close()


def first_line(error: BaseException) -> str:
    """The first line of an error's message, capped: enough to say what went wrong."""
    text = str(error).strip() or type(error).__name__
    line = text.splitlines()[0]
    return line if len(line) <= 300 else line[:300] + "..."
