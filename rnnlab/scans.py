"""The ways an `rnn` layer runs a window, besides the plain `jax.lax.scan` of its cell's step:
chunks rematerialised in the backward pass, a cell's hand-derived backward over the whole window
(`cells.fused`), and the parallel associative scan of a linear recurrence. Time-major throughout.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from rnnlab.cells import fused


def remat_scan(body, carry, xs, T, *, reverse, unroll, remat):
    """`jax.lax.scan(body, carry, xs)` over T steps; with `remat` > 0, as chunks of `remat` steps
    each rematerialised in the backward pass (the time axis padded with steps that leave the
    carry as it is, their outputs dropped)."""
    if not remat or T <= remat:
        return jax.lax.scan(body, carry, xs, reverse=reverse, unroll=unroll)
    n = -(-T // remat)
    pad = n * remat - T
    valid = jnp.arange(n * remat) < T

    def padded_body(carry, inputs):
        step_inputs, valid_t = inputs
        new, out = body(carry, step_inputs)
        return jax.tree_util.tree_map(lambda a, b: jnp.where(valid_t, a, b), new, carry), out

    def chunk(carry, chunk_inputs):
        return jax.lax.scan(padded_body, carry, chunk_inputs, reverse=reverse, unroll=unroll)

    xs = jax.tree_util.tree_map(
        lambda a: jnp.concatenate([a, jnp.zeros((pad, *a.shape[1:]), a.dtype)]), xs)
    chunks = jax.tree_util.tree_map(lambda a: a.reshape(n, remat, *a.shape[1:]), (xs, valid))
    carry, out = jax.lax.scan(jax.checkpoint(chunk), carry, chunks, reverse=reverse)
    return carry, jax.tree_util.tree_map(lambda a: a.reshape(n * remat, *a.shape[2:])[:T], out)


def kernel_scan(kernel, params, carry, carry0, xs, reset, mask, batch_shape, **options):
    """`fused.scan` over time-major `xs [T, B..., F]`, its batch dimensions made one."""
    nb, B = len(batch_shape), int(np.prod(batch_shape, dtype=int))

    def rows(a, lead):  # [lead..., B..., rest] -> [lead..., B, rest]
        return None if a is None else a.reshape(*a.shape[:lead], B, *a.shape[lead + nb:])

    if "h_mask" in params:
        params = {**params, "h_mask": rows(params["h_mask"], 0)}
    carry, carry0 = jax.tree_util.tree_map(lambda a: rows(a, 0), (carry, carry0))
    carry, ys = fused.scan(kernel, params, carry, carry0, rows(xs, 1), rows(reset, 1),
                           rows(mask, 1), **options)
    unrows = lambda a, lead: a.reshape(*a.shape[:lead], *batch_shape, *a.shape[lead + 1:])
    return jax.tree_util.tree_map(lambda a: unrows(a, 0), carry), unrows(ys, 1)


def parallel_scan(cell, params, carry, carry0, xs, reset, mask, backwards):
    """A linear cell over time-major `xs [T, B..., F]` by an associative scan of the affine maps
    h -> a_t h + b_t: (carry after the window, ys [T, B..., H])."""
    if backwards:  # a reversed layer without lengths: the same scan over flipped time
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
    if backwards:
        ys = jnp.flip(ys, 0)
    return hs[-1], ys
