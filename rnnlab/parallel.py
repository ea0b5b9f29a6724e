"""Data parallelism over every device of every process: one mesh axis, "data".

The B training streams (and the carry, which has one row per stream) are split over the
devices; params, optimizer state and everything else are replicated. The train step stays a
plain `jax.jit` of the single-device step: XLA inserts the all-reduce of the gradients, and no
value leaves the devices between steps. With one device this is exactly the single-device
program.

Several processes (hosts of a TPU slice, or local processes on CPU with gloo) each run the same
program after `jax.distributed.initialize()`; each builds its own part of every global array
from host data that all of them hold (the corpus, the seed), so no process sends data to
another outside the compiled collectives. Process 0 writes the run directory's files; all of
them write their shards of a checkpoint, so a multi-process run needs a workdir that every
process sees.
"""

from __future__ import annotations

import secrets
from typing import Any

import jax
import numpy as np
from jax.experimental import multihost_utils
from jax.sharding import NamedSharding, PartitionSpec

AXIS = "data"


def make_mesh() -> jax.sharding.Mesh:
    """A 1-D mesh over all devices. `Auto` axes: the embedding gather of a batch-sharded index
    raises a ShardingTypeError under the default `Explicit` axes."""
    return jax.make_mesh((jax.device_count(),), (AXIS,),
                         axis_types=(jax.sharding.AxisType.Auto,))


def replicated(mesh) -> NamedSharding:
    return NamedSharding(mesh, PartitionSpec())


def split(mesh, axis: int) -> NamedSharding:
    """Sharded along `axis` (the batch axis), replicated along the others."""
    return NamedSharding(mesh, PartitionSpec(*[None] * axis, AXIS))


def constrain_rows(tree: Any, mesh) -> Any:
    """Inside jit: every array leaf split over the devices along its first axis (the batch
    rows of a batch a task generates or gathers on the devices)."""
    rows = split(mesh, 0)
    return jax.tree_util.tree_map(
        lambda x: jax.lax.with_sharding_constraint(x, rows) if x.ndim else x, tree)


def state_shardings(state, mesh, batch_axis: int):
    """The carry split along `batch_axis`, every other leaf of the train state replicated."""
    rep, rows = replicated(mesh), split(mesh, batch_axis)
    shardings = jax.tree_util.tree_map(lambda _: rep, state)
    return shardings._replace(carry=jax.tree_util.tree_map(lambda _: rows, state.carry))


def put(tree: Any, shardings: Any) -> Any:
    """Host (or single-device) values that every process holds -> global arrays.

    Each process makes only its own devices' shards, so this works across hosts, where
    `jax.device_put` of a local value onto other hosts' devices cannot.
    """
    host = jax.device_get(tree)
    if isinstance(shardings, jax.sharding.Sharding):  # one sharding for every leaf
        shardings = jax.tree_util.tree_map(lambda _: shardings, host)

    def one(x, sharding):
        x = np.asarray(x)
        return jax.make_array_from_callback(x.shape, sharding, lambda index: x[index])

    return jax.tree_util.tree_map(one, host, shardings)


def check_batch(name: str, size: int) -> str | None:
    """An error message if `size` rows do not split evenly over the devices, else None."""
    n = jax.device_count()
    if size % n:
        return (f"{name}={size} does not split over {n} devices (data parallelism puts "
                f"{name}/{n} streams on each); use a multiple of {n}, or fewer devices "
                "(CUDA_VISIBLE_DEVICES=..., or JAX_PLATFORMS=cpu)")
    return None


def is_primary() -> bool:
    """Process 0 writes the files of a run; the others only compute and checkpoint."""
    return jax.process_index() == 0


def check_shared(path) -> str | None:
    """Across processes: None if all of them see `path` as the same directory, else why not.

    Process 0 writes a random token there and every process reads it back; a workdir on each
    host's own disk would leave each host its own checkpoints and a run that cannot resume.
    """
    if jax.process_count() == 1:
        return None
    token_file = path / ".shared_check"
    token = secrets.token_hex(8) if is_primary() else ""
    if is_primary():
        token_file.write_text(token)
    multihost_utils.sync_global_devices("rnnlab: token written")
    expected = multihost_utils.broadcast_one_to_all(
        np.frombuffer(token.encode().ljust(16), np.uint8) if is_primary() else
        np.zeros(16, np.uint8))
    try:
        seen = token_file.read_text()
    except OSError:
        seen = ""
    ok = seen.encode().ljust(16) == bytes(np.asarray(expected))
    oks = multihost_utils.process_allgather(np.array([ok]))  # also: everyone has read it
    if is_primary():
        token_file.unlink()
    if not np.all(oks):
        bad = [i for i, o in enumerate(np.ravel(oks)) if not o]
        return (f"{path} is not the same directory on every process (processes {bad} do not "
                "see what process 0 wrote): a multi-host run checkpoints from every host, so "
                "its --workdir must be one they all see: gs://BUCKET/..., or a shared mount")
    return None
