"""Orbax checkpoints of the whole train state, verified when they are read back.

A checkpoint holds `state` (a pytree of arrays: params, optimizer state, carry, step, PRNG key
data) and `meta` (JSON: the best validation score so far, ...). Orbax writes each step to a
temporary directory and renames it when complete, so a killed process never leaves a
half-written checkpoint that a resume would pick up. But orbax checks no checksum: a truncated
file fails deep in TensorStore, and flipped bits restore silently with changed values. So `save`
records a checksum of the state (and a digest of the meta) in the meta, and `restore` returns
the newest checkpoint whose restored values match them, reporting each one it skipped and why.

The checksum runs where the arrays are (one jitted reduction, also over sharded arrays on many
hosts): every element's bits, mixed with its position and leaf, summed modulo 2**32 in two
lanes. Integer sums are exact in any order, so it is the same for any sharding, and any single
changed element changes it (the mix is a bijection).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import sys
import time
import warnings
from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp
from absl import logging as absl_logging
from etils import epath
from jax.experimental import multihost_utils

from rnnlab import layout, storage

ITEMS = ("state", "meta")


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


# --------------------------------------------------------------------------------- checksums


def _fmix(h):
    """MurmurHash3's 32-bit finaliser: a bijection of uint32 that mixes every bit."""
    h = h ^ (h >> 16)
    h = h * jnp.uint32(0x85EBCA6B)
    h = h ^ (h >> 13)
    h = h * jnp.uint32(0xC2B2AE35)
    return h ^ (h >> 16)


def _bits(x: jax.Array) -> jax.Array:
    """The bits of every element as uint32 (8-byte elements as two)."""
    if x.dtype == jnp.bool_:
        return x.astype(jnp.uint32)
    if jnp.issubdtype(x.dtype, jax.dtypes.prng_key):
        x = jax.random.key_data(x)
    if jnp.issubdtype(x.dtype, jnp.complexfloating):  # (an LRU's carry): its two parts
        x = jnp.stack([jnp.real(x), jnp.imag(x)], axis=-1)
    size = x.dtype.itemsize
    unsigned = {1: jnp.uint8, 2: jnp.uint16, 4: jnp.uint32, 8: jnp.uint32}[size]
    return jax.lax.bitcast_convert_type(x, unsigned).astype(jnp.uint32)


def _position(shape) -> jax.Array:
    """Each element's row-major index (mod 2**32), without materialising a reshape."""
    index, stride = jnp.zeros(shape, jnp.uint32), 1
    for axis in reversed(range(len(shape))):
        index = index + jax.lax.broadcasted_iota(jnp.uint32, shape, axis) * jnp.uint32(stride)
        stride = stride * shape[axis] % 2**32
    return index


@jax.jit
def _lanes(leaves: list[jax.Array]) -> jax.Array:
    total = jnp.zeros((2,), jnp.uint32)
    for i, leaf in enumerate(leaves):
        bits = _bits(leaf)
        salt = _fmix(_position(bits.shape) * jnp.uint32(0x9E3779B9) + jnp.uint32(i + 1))
        for lane, key in enumerate((0, 0x5BD1E995)):
            term = _fmix(bits ^ salt ^ jnp.uint32(key))
            total = total.at[lane].add(jnp.sum(term, dtype=jnp.uint32))
    return total


def checksum(tree: Any) -> str:
    """A checksum of the values, shapes and dtypes of the arrays of `tree`."""
    leaves, treedef = jax.tree_util.tree_flatten(tree)
    leaves = [jnp.asarray(x) for x in leaves]
    shapes = [(x.shape, str(x.dtype)) for x in leaves]
    structure = hashlib.sha1(repr((str(treedef), shapes)).encode()).hexdigest()[:8]
    lanes = _lanes(leaves) if leaves else jnp.zeros(2, jnp.uint32)
    # Replicated, so every process holds the whole value.
    values = np.asarray(lanes.addressable_data(0))
    return f"{structure}-{int(values[0]):08x}{int(values[1]):08x}"


def _digest(meta: dict) -> str:
    return hashlib.sha1(json.dumps({k: v for k, v in meta.items() if k != "digest"},
                                   sort_keys=True).encode()).hexdigest()


def _problem(state: Any, meta: Any) -> str | None:
    """Why a restored (state, meta) is not what was saved, or None if it is."""
    if not isinstance(meta, dict) or "checksum" not in meta:
        return "its metadata has no checksum (not written by this version of rnnlab?)"
    if meta.get("digest") != _digest(meta):
        return "its metadata does not match its digest (changed on disk)"
    if checksum(state) != meta["checksum"]:
        return "its values do not match the checksum recorded when it was saved"
    return None


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
        self._open()

    def _open(self):
        self.last = _manager(self.workdir / layout.CKPT_DIR, self.keep, self.read_only)
        self.best = _manager(self.workdir / layout.BEST_DIR, 1, self.read_only)

    def save(self, step: int, state: Any, meta: dict, *, best: bool = False,
             replace: bool = False) -> None:
        """Starts saving `state` and `meta` at `step` (asynchronously; `wait` to commit). A
        checkpoint of that step already there is kept, unless `replace` (then it is deleted
        first: the earlier checkpoints are the fallback until the new one commits)."""
        manager = self.best if best else self.last
        if manager.latest_step() == step:
            if not replace:
                return
            manager.delete(step)
        meta = {**meta, "checksum": checksum(state)}
        meta["digest"] = _digest(meta)
        manager.save(step, args=ocp.args.Composite(
            state=ocp.args.StandardSave(state), meta=ocp.args.JsonSave(meta)))

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
                problem = _problem(restored.state, restored.meta)
            except Exception as e:  # noqa: BLE001 - any failure to read is a bad checkpoint
                problem = f"it cannot be read ({first_line(e)})"
            if problem is None:
                meta = {k: v for k, v in restored.meta.items() if k not in ("checksum", "digest")}
                return Restored(step, restored.state, meta)
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
        """Until every save started has committed (raises the error of one that failed)."""
        self.last.wait_until_finished()
        self.best.wait_until_finished()

    def close(self) -> None:
        self.last.close()
        self.best.close()


def first_line(error: BaseException) -> str:
    """The first line of an error's message, capped: enough to say what went wrong."""
    text = str(error).strip() or type(error).__name__
    line = text.splitlines()[0]
    return line if len(line) <= 300 else line[:300] + "..."
