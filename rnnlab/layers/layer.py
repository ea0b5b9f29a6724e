"""The Layer noun, and the checks of the inputs and carry a layer is applied to.

A Layer has `init(key, input_size) -> params`, `initial_carry(params, batch_shape) -> carry` and

    apply(params, carry, xs, *, reset=None, lengths=None, key=None, window=None, tap=None)
        -> (carry, ys)

over batch-major `xs [B..., T, F]` (any number of leading batch dimensions, including none).
- `carry=None` starts from the initial carry.
- `reset [B..., T]` (bool): where true, the carry is replaced by the initial carry before that
  step: a new stream starts there, inside the window.
- `lengths [B...]` (int): right-padded sequences. Past a sequence's length the carry stops
  changing and the outputs are zero, so the returned carry is the one after the last valid step.
- `key`: randomness (training only: none is used when it is None): dropout between stacked
  layers, zoneout, weight drop, variational recurrent dropout.
- `window`: the index of this window within a sequence that runs over several windows
  (truncated BPTT of one long sequence). The layer then draws its per-window randomness from
  `fold_in(key, window)` and keeps what belongs to the whole sequence (the variational
  recurrent dropout mask) from `key` alone, so pass the same `key` to every window of a
  sequence. None: the window is the sequence.
- `tap`: a `taps.Tap` (or a named one, `taps.enter`) that watches the layer (diagnostics).
"""

from __future__ import annotations

from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp

Params = dict[str, Any]
Carry = Any


class Layer(NamedTuple):
    """A recurrent layer: pure functions and its output size (the last axis of `ys`)."""

    init: Callable[[jax.Array, int], Params]
    initial_carry: Callable[[Params, tuple[int, ...]], Carry]
    apply: Callable[..., tuple[Carry, Any]]
    output_size: int


def main_input(xs):
    """The array that fixes B... and T: `xs`, or `xs["x"]` where the inputs are a dict (a
    Jordan cell's `{"x", "feedback"}`)."""
    return xs["x"] if isinstance(xs, dict) else xs


def check_inputs(xs, reset, lengths, input_size) -> tuple[tuple[int, ...], int]:
    """`(batch_shape, T)` of `xs [B..., T, F]`, or a ValueError naming the argument that does
    not fit (`input_size`: the F the layer was initialised for, None: any)."""
    x = main_input(xs)
    if x.ndim < 2:
        raise ValueError(f"xs must have shape [B..., T, F], got shape {tuple(x.shape)}")
    batch_shape, T = tuple(x.shape[:-2]), x.shape[-2]
    if input_size is not None and x.shape[-1] != input_size:
        raise ValueError(
            f"xs has {x.shape[-1]} features (shape {tuple(x.shape)}), but the layer was "
            f"initialised for input size {input_size}: expected xs of shape [B..., T, {input_size}]"
        )
    if reset is not None and tuple(reset.shape) != (*batch_shape, T):
        raise ValueError(
            f"reset must have shape [B..., T] = {(*batch_shape, T)} to match xs of shape "
            f"{tuple(x.shape)}, got {tuple(reset.shape)}"
        )
    if lengths is not None and tuple(lengths.shape) != batch_shape:
        raise ValueError(
            f"lengths must have shape [B...] = {batch_shape} to match xs of shape "
            f"{tuple(x.shape)}, got {tuple(lengths.shape)}"
        )
    return batch_shape, T


def check_carry(carry, expected) -> None:
    """A ValueError unless `carry` has the shapes of `expected`."""
    got = jax.tree_util.tree_map(lambda c: tuple(c.shape), carry)
    want = jax.tree_util.tree_map(lambda c: tuple(c.shape), expected)
    if got != want:
        raise ValueError(
            f"carry has shapes {got}, expected {want} for these inputs "
            "(was it made for another batch shape?)"
        )


def where(cond, new, old):
    """Per-example select over carry pytrees: `cond [B...]` broadcast over trailing axes."""

    def pick(a, b):
        return jnp.where(cond.reshape(cond.shape + (1,) * (a.ndim - cond.ndim)), a, b)

    return jax.tree_util.tree_map(pick, new, old)
