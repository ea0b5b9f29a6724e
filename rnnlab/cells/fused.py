"""Whole-window scans with a hand-derived backward pass (`jax.custom_vjp`) for the classic cells.

This is the structure of cuDNN's and oneDNN's RNN kernels. The forward scan keeps each step's
carry and gate activations. The backward scan carries only the recurrent gradient (dh, and dc
for an LSTM) and emits each step's gate gradients dz_t. The weight, bias and input gradients
are then a few large matmuls over all T x B rows, after the loop. Autodiff through
`jax.lax.scan` instead does a small weight-gradient matmul inside every step and carries the
weight-gradient accumulators through the loop.

A `Kernel` describes one cell's step, its backward and its parameter gradients; `scan` runs it
over a window with the layer's semantics (resets, lengths, reverse, the variational recurrent
dropout mask), and `recurrent.rnn` uses it when the cell has one (`Cell.kernel`). The gradients
equal autodiff through the cell's own step (tests/test_fused.py, float64).

The backward reads the saved activations and never recomputes a pre-activation, so the
activations are those whose derivative is a function of their output (tanh, sigmoid, relu).
"""

from __future__ import annotations

from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp



def _sigmoid(x):
    # sigmoid(x) = (1 + tanh(x / 2)) / 2: one transcendental, and exact at both tails.
    return 0.5 * jnp.tanh(0.5 * x) + 0.5


# An Elman cell's activation -> (function, derivative as a function of the function's value).
ACTIVATIONS = {
    "tanh": (jnp.tanh, lambda y: 1 - y * y),
    "relu": (jax.nn.relu, lambda y: (y > 0).astype(y.dtype)),
}


class Kernel(NamedTuple):
    """One cell, for `scan`. Shapes: B batch (one axis), F input, H hidden, G gate width.

    Attributes:
      params: the names of the cell params the kernel reads.
      forward: `(p, carry_in, x_t, hm, hoisted) -> (carry, saved_t)`: one step from the carry
        after resets. `x_t [B, F]`, or with `hoisted` the projected input `project(p, x_t)`.
        `hm [B, H]` is the variational dropout mask or None. `saved_t`: what the backward needs
        besides the carries (the gate activations).
      backward: `(p, saved_t, carry_in, carry, d_carry, hm) -> (d_carry_in, dz_t)`: the step's
        gradients given the gradient reaching its output carry (`d_carry`, the output's
        gradient added to h). `dz_t`: the gate gradients `param_grads` needs.
      param_grads: `(p, xs, hs_in, saved, dz) -> (d_params, d_xs)` over all steps:
        `xs [T, B, F]`, `hs_in [T, B, H]` the h each step read (after resets, masked), `saved`
        and `dz` stacked over time.
      project: `(p, xs) -> xp`, the hoisted input projection (bias included).
    """

    params: tuple[str, ...]
    forward: Callable
    backward: Callable
    param_grads: Callable
    project: Callable


def _h(carry):
    """The h part of a carry (an LSTM's is `(h, c)`)."""
    return carry[0] if isinstance(carry, tuple) else carry


def _add_h(carry, dy):
    return (carry[0] + dy, *carry[1:]) if isinstance(carry, tuple) else carry + dy


def _mask(h, hm):
    return h if hm is None else h * hm


def _times_w_t(dz, w, blocks):
    """`dz @ w.T` for the recurrent gradient, `w [H, blocks*H]`. Up to H = 128 as one
    `[B, H]` x `[H, H]` matmul per gate block, summed: on XLA:CPU that measured 10% faster per
    LSTM layer at H=128 and 20% slower at H=256 (benchmarks/README.md)."""
    H = w.shape[0]
    if H > 128:
        return dz @ w.T
    return sum(dz[:, k * H:(k + 1) * H] @ w[:, k * H:(k + 1) * H].T for k in range(blocks))


def _outer(a, b):
    """sum over T and B of a^T b: `[T, B, M], [T, B, N] -> [M, N]` (one large matmul)."""
    return a.reshape(-1, a.shape[-1]).T @ b.reshape(-1, b.shape[-1])


def _fused_matmul(p, x, h_in):
    # The input projection fused into the step: one matmul on [x_t, h] (faster on XLA:CPU than
    # two, or than hoisting x @ w_x out of the loop: benchmarks/README.md).
    return jnp.concatenate([x, h_in], -1) @ jnp.concatenate([p["w_x"], p["w_h"]], 0) + p["b"]


def _single_bias_grads(p, xs, hs_in, saved, dz):
    """Gradients of `z = x @ w_x + h_in @ w_h + b` from dz: (params, xs)."""
    F = xs.shape[-1]
    dw = _outer(jnp.concatenate([xs, hs_in], -1), dz)  # one matmul for both kernels
    grads = {"w_x": dw[:F], "w_h": dw[F:], "b": dz.sum((0, 1))}
    return grads, dz @ p["w_x"].T


def _project_single_bias(p, xs):
    return xs @ p["w_x"] + p["b"]


def elman(activation: str) -> Kernel:
    """h_t = act(x_t @ w_x + h_{t-1} @ w_h + b)."""
    act, dact = ACTIVATIONS[activation]

    def forward(p, h, x, hm, hoisted):
        h_in = _mask(h, hm)
        z = x + h_in @ p["w_h"] if hoisted else _fused_matmul(p, x, h_in)
        return act(z), ()

    def backward(p, saved, h_in, h, dh, hm):
        dz = dh * dact(h)
        return _mask(dz @ p["w_h"].T, hm), dz

    return Kernel(("w_x", "w_h", "b"), forward, backward, _single_bias_grads, _project_single_bias)


def lstm() -> Kernel:
    """[i, f, g, o] = x_t @ w_x + h @ w_h + b; c = sig(f) c + sig(i) tanh(g); h = sig(o) tanh(c)."""

    def forward(p, carry, x, hm, hoisted):
        h, c = carry
        h_in = _mask(h, hm)
        z = x + h_in @ p["w_h"] if hoisted else _fused_matmul(p, x, h_in)
        H = h.shape[-1]
        i, f, o = (_sigmoid(z[:, k * H:(k + 1) * H]) for k in (0, 1, 3))
        g = jnp.tanh(z[:, 2 * H:3 * H])
        c = f * c + i * g
        return ((o * jnp.tanh(c)).astype(h.dtype), c), jnp.concatenate([i, f, g, o], -1)

    def backward(p, saved, carry_in, carry, d, hm):
        (_, c_in), (_, c), (dh, dc) = carry_in, carry, d
        H = c.shape[-1]
        i, f, g, o = (saved[:, k * H:(k + 1) * H] for k in range(4))
        tc = jnp.tanh(c)
        dc = dc + dh * o * (1 - tc * tc)
        dz = jnp.concatenate([dc * g * i * (1 - i), dc * c_in * f * (1 - f),
                              dc * i * (1 - g * g), dh * tc * o * (1 - o)], -1).astype(dh.dtype)
        return (_mask(_times_w_t(dz, p["w_h"], 4), hm), dc * f), dz

    return Kernel(("w_x", "w_h", "b"), forward, backward, _single_bias_grads, _project_single_bias)


def gru(reset_after: bool) -> Kernel:
    """r, z = sig(x @ w_x[r, z] + b_x + h @ w_h[r, z] + b_h); n = tanh(x @ w_xn + b_xn +
    r * (h @ w_hn + b_hn)) (reset_after) or tanh(x @ w_xn + b_xn + (r * h) @ w_hn + b_hn);
    h_t = (1 - z) n + z h_{t-1}."""

    def project(p, xs):
        return xs @ p["w_x"] + p["b_x"]

    def forward(p, h, x, hm, hoisted):
        H = h.shape[-1]
        xp = x if hoisted else project(p, x)
        h_in = _mask(h, hm)
        if reset_after:
            hp = h_in @ p["w_h"] + p["b_h"]
            r = _sigmoid(xp[:, :H] + hp[:, :H])
            z = _sigmoid(xp[:, H:2 * H] + hp[:, H:2 * H])
            hn = hp[:, 2 * H:]
            n = jnp.tanh(xp[:, 2 * H:] + r * hn)
            saved = jnp.concatenate([r, z, n, hn], -1)
        else:
            hp = h_in @ p["w_h"][:, :2 * H] + p["b_h"][:2 * H]
            r = _sigmoid(xp[:, :H] + hp[:, :H])
            z = _sigmoid(xp[:, H:2 * H] + hp[:, H:])
            n = jnp.tanh(xp[:, 2 * H:] + (r * h_in) @ p["w_h"][:, 2 * H:] + p["b_h"][2 * H:])
            saved = jnp.concatenate([r, z, n], -1)
        return (1 - z) * n + z * h, saved

    def backward(p, saved, h_prev, h, dh, hm):
        H = h.shape[-1]
        r, z, n = (saved[:, k * H:(k + 1) * H] for k in range(3))
        dn = dh * (1 - z) * (1 - n * n)  # the gradient of n's pre-activation
        dzz = dh * (h_prev - n) * z * (1 - z)
        if reset_after:
            hn = saved[:, 3 * H:]
            dzr = dn * hn * r * (1 - r)
            dzh = jnp.concatenate([dzr, dzz, dn * r], -1)  # of h_in @ w_h + b_h
            return dh * z + _mask(_times_w_t(dzh, p["w_h"], 3), hm), (dzh, dn)
        h_in = _mask(h_prev, hm)
        drh = dn @ p["w_h"][:, 2 * H:].T  # of r * h_in
        dzr = drh * h_in * r * (1 - r)
        dzx = jnp.concatenate([dzr, dzz, dn], -1)
        dh_in = dzx[:, :2 * H] @ p["w_h"][:, :2 * H].T + drh * r
        return dh * z + _mask(dh_in, hm), dzx

    def param_grads(p, xs, hs_in, saved, dz):
        H = hs_in.shape[-1]
        if reset_after:
            dzh, dn = dz
            dzx = jnp.concatenate([dzh[..., :2 * H], dn], -1)
            grads = {"w_h": _outer(hs_in, dzh), "b_h": dzh.sum((0, 1))}
        else:
            dzx = dz
            r = saved[..., :H]
            grads = {"w_h": jnp.concatenate([_outer(hs_in, dzx[..., :2 * H]),
                                             _outer(r * hs_in, dzx[..., 2 * H:])], -1),
                     "b_h": dzx.sum((0, 1))}
        grads |= {"w_x": _outer(xs, dzx), "b_x": dzx.sum((0, 1))}
        return grads, dzx @ p["w_x"].T

    return Kernel(("w_x", "w_h", "b_x", "b_h"), forward, backward, param_grads, project)


def _select(cond, a, b):
    """Per-row select over carry pytrees: `cond [B]`."""
    return jax.tree_util.tree_map(lambda u, v: jnp.where(cond[:, None], u, v), a, b)


def _shifted(states, first, reverse):
    """The carry each step found: the state of the step before it in scan order."""
    def shift(s, f):
        f = f[None]
        return jnp.concatenate([s[1:], f]) if reverse else jnp.concatenate([f, s[:-1]])

    return jax.tree_util.tree_map(shift, states, first)


def scan(kernel: Kernel, params, carry, carry0, xs, reset=None, mask=None, *,
         reverse: bool = False, hoisted: bool = False, unroll: int = 1):
    """A window of the cell, time-major, with the hand-derived backward.

    Args:
      kernel: the cell's Kernel.
      params: the cell's params (`params["h_mask"] [B, H]`: the variational dropout mask).
      carry: the carry entering the window, leaves `[B, ...]`.
      carry0: the carry a reset restores (differentiable: a learned initial carry).
      xs: `[T, B, F]`.
      reset, mask: `[T, B]` bool or None: a stream restarts before the step; the step is valid
        (past a sequence's length the carry stays and the output is zero).
      reverse: run from the last step to the first.
      hoisted: compute the input projection for all steps before the loop.
      unroll: `jax.lax.scan`'s unroll factor.

    The step computes in the dtype of the carry's h, as the cells' own steps do (an LSTM's c
    may be wider: float32 under bfloat16).

    Returns: `(carry after the window, ys [T, B, H])`, as `recurrent.rnn`'s scan computes them.
    """
    dt = _h(carry).dtype
    p = {k: params[k].astype(dt) for k in kernel.params}
    hm = params.get("h_mask")
    hm = None if hm is None else jax.lax.stop_gradient(hm).astype(dt)
    carry0 = jax.tree_util.tree_map(lambda a, c: a.astype(c.dtype), carry0, carry)
    return _scan(kernel, reverse, hoisted, unroll)(p, carry, carry0, xs.astype(dt), reset,
                                                    mask, hm)


def _scan(kernel, reverse, hoisted, unroll):
    def forward_pass(p, carry, carry0, xs, reset, mask, hm):
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

    @jax.custom_vjp
    def run(p, carry, carry0, xs, reset, mask, hm):
        return forward_pass(p, carry, carry0, xs, reset, mask, hm)[0]

    def run_fwd(p, carry, carry0, xs, reset, mask, hm):
        out, (states, saved) = forward_pass(p, carry, carry0, xs, reset, mask, hm)
        return out, (p, carry, carry0, xs, reset, mask, hm, states, saved)

    def run_bwd(residuals, cotangents):
        p, carry, carry0, xs, reset, mask, hm, states, saved = residuals
        d_last, dys = cotangents
        carries_in = _shifted(states, carry, reverse)
        if reset is not None:
            carries_in = jax.tree_util.tree_map(
                lambda c0, c: jnp.where(reset[..., None], c0[None], c), carry0, carries_in)

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
                d_carry0 = jax.tree_util.tree_map(jnp.add, d_carry0,
                                                  _select(reset_t, d_in, zero))
                d_in = _select(reset_t, zero, d_in)
            if mask_t is not None:
                d_in = jax.tree_util.tree_map(jnp.add, d_in, through)
            return (d_in, d_carry0), dz

        d_carry0 = jax.tree_util.tree_map(jnp.zeros_like, carry)
        (d_carry, d_carry0), dz = jax.lax.scan(
            body, (d_last, d_carry0), (dys, saved, carries_in, states, reset, mask),
            reverse=not reverse, unroll=unroll)
        hs_in = _mask(_h(carries_in), hm)
        d_p, d_xs = kernel.param_grads(p, xs, hs_in, saved, dz)
        return (d_p, d_carry, d_carry0, d_xs, None, None,
                None if hm is None else jnp.zeros_like(hm))

    run.defvjp(run_fwd, run_bwd)
    return run
