"""Where each step of a window sits: the time-major layout every path runs in, the validity
mask of padded sequences, and the reversal of a backward layer (within each sequence's length,
undone once after whichever path ran)."""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp


def flip_sequences(xs: jax.Array, lengths: jax.Array, time_axis: int) -> jax.Array:
    """Reverses each sequence within its length; the padding stays at the end.

    `lengths` has the shape of `xs` before `time_axis` (as Flax's `flip_sequences`).
    """
    T = xs.shape[time_axis]
    t = jnp.arange(T)
    idx = jnp.where(t < lengths[..., None], lengths[..., None] - 1 - t, t)  # [B..., T]
    idx = idx.reshape(idx.shape + (1,) * (xs.ndim - idx.ndim))
    idx = jnp.broadcast_to(idx, xs.shape[: time_axis + 1] + idx.shape[time_axis + 1 :])
    return jnp.take_along_axis(xs, idx, axis=time_axis)


def _flip_time_major(xs, lengths):
    # xs [T, B..., ...], lengths [B...]
    nb = lengths.ndim
    flipped = flip_sequences(jnp.moveaxis(xs, 0, nb), lengths, nb)
    return jnp.moveaxis(flipped, nb, 0)


class Window(NamedTuple):
    """A window laid out for a path, time-major.

    Attributes:
      xs: inputs `[T, B..., F]` (a pytree), in the order the steps run.
      reset: `[T, B...]` bool or None: the carry restarts before the step.
      mask: `[T, B...]` bool or None: the step is valid (within its sequence's length).
      lengths: `[B...]` clipped to T, or None.
      backwards: the path runs its scan from the last step to the first (a reversed layer
        without lengths; with lengths the sequences are flipped instead, see `in_time_order`).
      flipped: the sequences were reversed within their lengths.
      batch_dims: the number of batch dimensions.
    """

    xs: Any
    reset: Any
    mask: Any
    lengths: Any
    backwards: bool
    flipped: bool
    batch_dims: int


def time_major(xs, reset, lengths, T: int, batch_dims: int, reverse: bool) -> Window:
    """The window of batch-major `xs [B..., T, F]`, `reset [B..., T]`, `lengths [B...]`."""
    nb = batch_dims
    xs_tm = jax.tree_util.tree_map(lambda a: jnp.moveaxis(a, nb, 0), xs)  # [T, B..., F]
    reset_tm = None if reset is None else jnp.moveaxis(jnp.asarray(reset, bool), nb, 0)
    mask = None
    if lengths is not None:
        lengths = jnp.clip(lengths, 0, T)  # a length past the window means "all of it"
        mask = jnp.arange(T).reshape((T,) + (1,) * nb) < lengths  # [T, B...]
    if not reverse:
        return Window(xs_tm, reset_tm, mask, lengths, False, False, nb)
    if reset_tm is not None:
        # Backwards, the stream starting at t+1 ends before step t: restart there.
        reset_tm = jnp.concatenate([reset_tm[1:], jnp.zeros_like(reset_tm[:1])])
        if mask is not None:
            reset_tm &= jnp.concatenate([mask[1:], jnp.zeros_like(mask[:1])])
    if lengths is None:
        return Window(xs_tm, reset_tm, mask, lengths, True, False, nb)
    xs_tm = jax.tree_util.tree_map(lambda a: _flip_time_major(a, lengths), xs_tm)
    if reset_tm is not None:
        reset_tm = _flip_time_major(reset_tm, lengths)
    return Window(xs_tm, reset_tm, mask, lengths, False, True, nb)


def in_step_order(window: Window, tree):
    """A pytree of time-major `[T, B..., ...]` arrays given in time order, put in the order the
    window's steps run (the identity unless the window was flipped)."""
    return in_time_order(window, tree)


def in_time_order(window: Window, tree):
    """A pytree of time-major arrays in the order the window's steps ran, put back in time
    order (flipping is its own inverse)."""
    if not window.flipped:
        return tree
    return jax.tree_util.tree_map(lambda a: _flip_time_major(a, window.lengths), tree)


def batch_major(window: Window, tree):
    """Time-major `[T, B..., ...]` -> batch-major `[B..., T, ...]`."""
    return jax.tree_util.tree_map(lambda a: jnp.moveaxis(a, 0, window.batch_dims), tree)
