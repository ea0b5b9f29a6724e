"""The sequential path: `jax.lax.scan` of the cell's step over the window, optionally in
rematerialised chunks. Every option runs here: zoneout, taps (probes and per-step states), the
hoisted or in-step input projection. Time-major throughout."""

from __future__ import annotations

import jax
import jax.numpy as jnp

from rnnlab.layers import layer, regularisers, sequences


def remat_scan(body, carry, xs, T, *, reverse, unroll, remat):
    """`jax.lax.scan(body, carry, xs)` over T steps; with `remat` > 0, as chunks of `remat` steps
    each rematerialised in the backward pass (the time axis padded with steps that leave the
    carry as it is, their outputs dropped): memory grows with T / remat + remat steps instead of
    T, for one more forward pass."""
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


def _body(step, params, carry0, rates, keep_states):
    """The scan body: probe, reset, step, zoneout, mask."""

    def body(carry, inputs):
        x_t, reset_t, mask_t, probe_t, zone_t = inputs
        if probe_t is not None:
            carry = jax.tree_util.tree_map(jnp.add, carry, probe_t)
        old = carry
        if reset_t is not None:
            carry = layer.where(reset_t, carry0, carry)
        carry_in = carry
        carry, y_t = step(params, carry, x_t)
        if zone_t is not None:
            carry = regularisers.zoneout(carry_in, carry, rates, zone_t)
        if mask_t is not None:
            carry = layer.where(mask_t, carry, old)
            y_t = layer.where(mask_t, y_t, jax.tree_util.tree_map(jnp.zeros_like, y_t))
        return carry, (y_t, (carry_in, carry) if keep_states else None)

    return body


def run(cell, params, carry, carry0, window: sequences.Window, how):
    """The carry after the window and `ys [T, B..., H]` in the order the steps ran.

    Args:
      cell: the Cell; `params`: its params.
      carry, carry0: the carry entering the window; the one a reset restores.
      window: the time-major window.
      how: a `paths.How`: the layer's options (zoneout, unroll, remat), the hoisted
        projection, the variational mask, zoneout's key, the tap watching and the layer's name.
    """
    options, hoisted, zone_key, tap, name = (how.options, how.hoisted, how.zone_key, how.tap,
                                             how.name)
    params = regularisers.with_recurrent_mask(params, how.h_mask)
    T = jax.tree_util.tree_leaves(window.xs)[0].shape[0]
    probe = None if tap is None else tap.probe(name, carry, T)
    if probe is not None:  # probe[t]: the step at time t
        probe = sequences.in_step_order(window, probe)
    raw = window.xs if tap is not None and tap.wants_steps else None
    rates, zone = (regularisers.zoneout_masks(carry, options.zoneout_rates, zone_key, T)
                   if options.zoning else (None, None))
    xs = cell.project(params, window.xs) if hoisted else window.xs
    body = _body(cell.recur if hoisted else cell.step, params, carry0, rates, raw is not None)
    carry, (ys, states) = remat_scan(
        body, carry, (xs, window.reset, window.mask, probe, zone), T,
        reverse=window.backwards, unroll=options.unroll, remat=options.remat)
    if states is not None:
        states, raw, mask = sequences.in_time_order(window, (states, raw, window.mask))
        tap.steps(name, cell, params, states[0], raw, states[1], mask)
    return carry, ys
