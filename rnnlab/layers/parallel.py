"""The parallel path: a window of a linear cell (h_t = a_t h_{t-1} + b_t, `Cell.linear`) by
`jax.lax.associative_scan` over the affine maps, log T deep instead of T sequential steps.
Time-major."""

from __future__ import annotations

import jax
import jax.numpy as jnp

from rnnlab.layers import sequences


def run(cell, params, carry, carry0, window: sequences.Window, how=None):
    """The carry after the window and `ys [T, B..., H]` in the order the steps ran (resets,
    lengths and reverse mean what they mean on the sequential path; `how`, a `paths.How`,
    tells this path nothing it needs)."""
    xs, reset, mask = window.xs, window.reset, window.mask
    if window.backwards:  # a reversed layer without lengths: the same scan over flipped time
        xs, reset, mask = jax.tree_util.tree_map(lambda v: jnp.flip(v, 0), (xs, reset, mask))
    projected = cell.project(params, xs)
    a, b = projected[:2]
    if reset is not None:  # the step reads carry0 instead: h_t = a_t carry0 + b_t
        r = reset[..., None]
        a, b = jnp.where(r, 0.0, a), jnp.where(r, a * carry0 + b, b)
    if mask is not None:  # past a sequence's length the carry stays: the identity map
        m = mask[..., None]
        a, b = jnp.where(m, a, 1.0), jnp.where(m, b, 0.0)

    def compose(first, then):  # apply `first`, then `then`
        return then[0] * first[0], then[0] * first[1] + then[1]

    a, b = jax.lax.associative_scan(compose, (a, b), axis=0)
    hs = a * carry + b
    ys = hs if cell.emit is None else cell.emit(params, hs, projected)
    ys = ys if mask is None else jnp.where(mask[..., None], ys, 0.0)
    if window.backwards:
        ys = jnp.flip(ys, 0)
    return hs[-1], ys
