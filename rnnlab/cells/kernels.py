"""The hand-derived backward passes of the classic cells: each cell's `base.Kernel`.

This is the structure of cuDNN's and oneDNN's RNN kernels. A kernel's forward step keeps the
gate activations; its backward step carries only the recurrent gradient (dh, and dc for an
LSTM) and emits each step's gate gradients dz_t; its `param_grads` then computes the weight,
bias and input gradients as a few large matmuls over all T x B rows, after the loop. Autodiff
through `jax.lax.scan` instead does a small weight-gradient matmul inside every step and
carries the weight-gradient accumulators through the loop. The scan that runs a kernel over a
window, with the layer's semantics, is a layer path: `rnnlab.layers.custom_vjp`. The gradients
equal autodiff through the cell's own step (tests/test_fused.py, float64).

The backward reads the saved activations and never recomputes a pre-activation, so the
activations are those whose derivative is a function of their output (tanh, sigmoid, relu).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from rnnlab.cells import base


def _sigmoid(x):
    # sigmoid(x) = (1 + tanh(x / 2)) / 2: one transcendental, and exact at both tails.
    return 0.5 * jnp.tanh(0.5 * x) + 0.5


# An Elman cell's activation -> (function, derivative as a function of the function's value).
ACTIVATIONS = {
    "tanh": (jnp.tanh, lambda y: 1 - y * y),
    "relu": (jax.nn.relu, lambda y: (y > 0).astype(y.dtype)),
}


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


def elman(activation: str) -> base.Kernel:
    """h_t = act(x_t @ w_x + h_{t-1} @ w_h + b)."""
    act, dact = ACTIVATIONS[activation]

    def forward(p, h, x, hm, hoisted):
        h_in = _mask(h, hm)
        z = x + h_in @ p["w_h"] if hoisted else _fused_matmul(p, x, h_in)
        return act(z), ()

    def backward(p, saved, h_in, h, dh, hm):
        dz = dh * dact(h)
        return _mask(dz @ p["w_h"].T, hm), dz

    return base.Kernel(("w_x", "w_h", "b"), forward, backward, _single_bias_grads,
                       _project_single_bias, native=f"rnn_{activation}")


def lstm() -> base.Kernel:
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

    return base.Kernel(("w_x", "w_h", "b"), forward, backward, _single_bias_grads,
                       _project_single_bias, native="lstm")


def gru(reset_after: bool) -> base.Kernel:
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

    return base.Kernel(("w_x", "w_h", "b_x", "b_h"), forward, backward, param_grads, project,
                       native="lbr_gru" if reset_after else "gru")
