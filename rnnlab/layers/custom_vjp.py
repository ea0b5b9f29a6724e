"""The hand-derived backward path: a cell's `Kernel` (`rnnlab.cells.kernels`) run over the
whole window under `jax.custom_vjp`.

The forward scan keeps each step's carry and gate activations. The backward scan carries only
the recurrent gradient (dh, and dc for an LSTM) and emits each step's gate gradients dz_t; the
weight, bias and input gradients are then a few large matmuls over all T x B rows, after the
loop (`Kernel.param_grads`). Equal to autodiff through the cell's own step
(tests/test_fused.py, float64). Time-major.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from rnnlab.cells import base
from rnnlab.layers import sequences


def _h(carry):
    """The h part of a carry (an LSTM's is `(h, c)`)."""
    return carry[0] if isinstance(carry, tuple) else carry


def _add_h(carry, dy):
    return (carry[0] + dy, *carry[1:]) if isinstance(carry, tuple) else carry + dy


def _mask(h, hm):
    return h if hm is None else h * hm


def _select(cond, a, b):
    """Per-row select over carry pytrees: `cond [B]`."""
    return jax.tree_util.tree_map(lambda u, v: jnp.where(cond[:, None], u, v), a, b)


def _shifted(states, first, reverse):
    """The carry each step found: the state of the step before it in scan order."""
    def shift(s, f):
        f = f[None]
        return jnp.concatenate([s[1:], f]) if reverse else jnp.concatenate([f, s[:-1]])

    return jax.tree_util.tree_map(shift, states, first)


def run(cell: base.Cell, params, carry, carry0, window: sequences.Window, how):
    """`scan` of the cell's kernel over the window, its batch dimensions made one: the carry
    after the window and `ys [T, B..., H]` in the order the steps ran (`how`: a `paths.How`)."""
    batch_shape, h_mask = how.batch_shape, how.h_mask
    nb, B = len(batch_shape), int(np.prod(batch_shape, dtype=int))

    def rows(a, lead):  # [lead..., B..., rest] -> [lead..., B, rest]
        return None if a is None else a.reshape(*a.shape[:lead], B, *a.shape[lead + nb:])

    carry, carry0 = jax.tree_util.tree_map(lambda a: rows(a, 0), (carry, carry0))
    carry, ys = scan(cell.kernel, params, carry, carry0, rows(window.xs, 1),
                     rows(window.reset, 1), rows(window.mask, 1), h_mask=rows(h_mask, 0),
                     reverse=window.backwards, hoisted=how.hoisted, unroll=how.options.unroll)
    unrows = lambda a, lead: a.reshape(*a.shape[:lead], *batch_shape, *a.shape[lead + 1:])
    return jax.tree_util.tree_map(lambda a: unrows(a, 0), carry), unrows(ys, 1)


def scan(kernel: base.Kernel, params, carry, carry0, xs, reset=None, mask=None, *,
         h_mask=None, reverse: bool = False, hoisted: bool = False, unroll: int = 1):
    """A window of the cell, time-major, with the hand-derived backward.

    Args:
      kernel: the cell's Kernel.
      params: the cell's params.
      carry: the carry entering the window, leaves `[B, ...]`.
      carry0: the carry a reset restores (differentiable: a learned initial carry).
      xs: `[T, B, F]`.
      reset, mask: `[T, B]` bool or None: a stream restarts before the step; the step is valid
        (past a sequence's length the carry stays and the output is zero).
      h_mask: `[B, H]`, the variational dropout mask, or None.
      reverse: run from the last step to the first.
      hoisted: compute the input projection for all steps before the loop.
      unroll: `jax.lax.scan`'s unroll factor.

    The step computes in the dtype of the carry's h, as the cells' own steps do (an LSTM's c
    may be wider: float32 under bfloat16).

    Returns: `(carry after the window, ys [T, B, H])`, as the sequential path computes them.
    """
    dt = _h(carry).dtype
    p = {k: params[k].astype(dt) for k in kernel.params}
    hm = None if h_mask is None else jax.lax.stop_gradient(h_mask).astype(dt)
    carry0 = jax.tree_util.tree_map(lambda a, c: a.astype(c.dtype), carry0, carry)
    return _scan(kernel, reverse, hoisted, unroll)(p, carry, carry0, xs.astype(dt), reset,
                                                    mask, hm)


def _forward_pass(kernel, reverse, hoisted, unroll, p, carry, carry0, xs, reset, mask, hm):
    inputs = kernel.project(p, xs) if hoisted else xs

    def body(carry, step):
        x_t, reset_t, mask_t = step
        prev = carry
        if reset_t is not None:
            carry = _select(reset_t, carry0, carry)
        carry, saved = kernel.forward(p, carry, x_t, hm, hoisted)
        if mask_t is not None:
            carry = _select(mask_t, carry, prev)
        return carry, (carry, saved)

    last, (states, saved) = jax.lax.scan(body, carry, (inputs, reset, mask),
                                         reverse=reverse, unroll=unroll)
    ys = _h(states)
    if mask is not None:
        ys = jnp.where(mask[..., None], ys, 0)
    return (last, ys), (states, saved)


def _backward_body(kernel, p, hm):
    def body(acc, step):
        d_carry, d_carry0 = acc
        dy_t, saved_t, carry_in, carry_t, reset_t, mask_t = step
        d_out = _add_h(d_carry, dy_t)
        if mask_t is not None:  # an invalid step passes the gradient through unchanged
            zero = jax.tree_util.tree_map(jnp.zeros_like, d_out)
            through, d_out = _select(mask_t, zero, d_carry), _select(mask_t, d_out, zero)
        d_in, dz = kernel.backward(p, saved_t, carry_in, carry_t, d_out, hm)
        if reset_t is not None:  # the step read carry0, not the previous carry
            zero = jax.tree_util.tree_map(jnp.zeros_like, d_in)
            d_carry0 = jax.tree_util.tree_map(jnp.add, d_carry0, _select(reset_t, d_in, zero))
            d_in = _select(reset_t, zero, d_in)
        if mask_t is not None:
            d_in = jax.tree_util.tree_map(jnp.add, d_in, through)
        return (d_in, d_carry0), dz

    return body


def _scan(kernel, reverse, hoisted, unroll):
    options = (kernel, reverse, hoisted, unroll)

    @jax.custom_vjp
    def run(p, carry, carry0, xs, reset, mask, hm):
        return _forward_pass(*options, p, carry, carry0, xs, reset, mask, hm)[0]

    def run_fwd(p, carry, carry0, xs, reset, mask, hm):
        out, (states, saved) = _forward_pass(*options, p, carry, carry0, xs, reset, mask, hm)
        return out, (p, carry, carry0, xs, reset, mask, hm, states, saved)

    def run_bwd(residuals, cotangents):
        p, carry, carry0, xs, reset, mask, hm, states, saved = residuals
        d_last, dys = cotangents
        carries_in = _shifted(states, carry, reverse)
        if reset is not None:
            carries_in = jax.tree_util.tree_map(
                lambda c0, c: jnp.where(reset[..., None], c0[None], c), carry0, carries_in)
        d_carry0 = jax.tree_util.tree_map(jnp.zeros_like, carry)
        (d_carry, d_carry0), dz = jax.lax.scan(
            _backward_body(kernel, p, hm), (d_last, d_carry0),
            (dys, saved, carries_in, states, reset, mask), reverse=not reverse, unroll=unroll)
        hs_in = _mask(_h(carries_in), hm)
        d_p, d_xs = kernel.param_grads(p, xs, hs_in, saved, dz)
        return (d_p, d_carry, d_carry0, d_xs, None, None,
                None if hm is None else jnp.zeros_like(hm))

    run.defvjp(run_fwd, run_bwd)
    return run
