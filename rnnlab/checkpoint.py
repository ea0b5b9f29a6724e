"""Orbax checkpoints of the whole train state: the last K, and the best by validation apart.

A checkpoint holds `state` (a pytree of arrays: params, optimizer state, carry, step, PRNG key
data) and `meta` (JSON: e.g. the best validation bpc so far). Orbax writes each step to a
temporary directory and renames it when complete, so a killed process never leaves a
half-written checkpoint that a resume would pick up.
"""

from __future__ import annotations

import logging
import os
from typing import Any

import jax
import orbax.checkpoint as ocp
from absl import logging as absl_logging
from etils import epath

from rnnlab import storage

ITEMS = ("state", "meta")


class _QuietOrbax(logging.Filter):
    def filter(self, record):
        return record.levelno >= logging.WARNING or "/orbax/" not in record.pathname


def quiet_orbax_logs() -> None:
    """Orbax logs every step of every save at INFO: keep only its warnings and errors."""
    absl_logging.get_absl_handler().addFilter(_QuietOrbax())


def _manager(directory: epath.Path, max_to_keep: int) -> ocp.CheckpointManager:
    # Across processes orbax names its barriers by step; a prefix per directory keeps the
    # concurrent saves of ckpt/N and ckpt_best/N from meeting at one barrier.
    options = ocp.CheckpointManagerOptions(
        max_to_keep=max_to_keep, create=True,
        multiprocessing_options=ocp.options.MultiprocessingOptions(
            barrier_sync_key_prefix=directory.name))
    if storage.is_local(directory):  # (absolute() would turn gs://b/x into $PWD/gs:/b/x)
        directory = directory.absolute()
    return ocp.CheckpointManager(directory, options=options, item_names=ITEMS)


class Checkpointer:
    """`ckpt/` keeps the last `keep` checkpoints (for resuming); `ckpt_best/` the best one."""

    def __init__(self, workdir: str | os.PathLike, keep: int):
        workdir = storage.path(workdir)
        self.last = _manager(workdir / "ckpt", keep)
        self.best = _manager(workdir / "ckpt_best", 1)

    def save(self, step: int, state: Any, meta: dict, *, best: bool = False) -> None:
        args = ocp.args.Composite(state=ocp.args.StandardSave(state), meta=ocp.args.JsonSave(meta))
        manager = self.best if best else self.last
        if manager.latest_step() != step:
            manager.save(step, args=args)

    def steps(self) -> list[int]:
        """The steps of the checkpoints kept in `ckpt/`, oldest first."""
        return sorted(self.last.all_steps())

    def latest_step(self, *, best: bool = False) -> int | None:
        return (self.best if best else self.last).latest_step()

    def restore(self, like: Any, *, best: bool = False, step: int | None = None):
        """Restores `(state, meta)` shaped like the pytree `like`; None when there is none."""
        manager = self.best if best else self.last
        step = manager.latest_step() if step is None else step
        if step is None:
            return None
        abstract = jax.tree_util.tree_map(ocp.utils.to_shape_dtype_struct, like)
        restored = manager.restore(
            step,
            args=ocp.args.Composite(
                state=ocp.args.StandardRestore(abstract), meta=ocp.args.JsonRestore()
            ),
        )
        return restored.state, restored.meta

    def wait(self) -> None:
        self.last.wait_until_finished()
        self.best.wait_until_finished()

    def close(self) -> None:
        self.last.close()
        self.best.close()
