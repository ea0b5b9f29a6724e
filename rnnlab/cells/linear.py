"""Cells whose recurrence is linear in the carry (`Cell.linear`), which a layer evaluates over a
window with a parallel scan: minGRU and minLSTM (Feng et al. 2024) and the LRU (Orvieto et al.
2023).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from rnnlab.cells import base

sigmoid = jax.nn.sigmoid



def _g(v):
    """Feng et al.'s positive activation: v + 0.5 for v >= 0, sigmoid(v) below (continuous)."""
    return jnp.where(v >= 0, v + 0.5, sigmoid(v))


def _linear_cell(H, n_blocks, coefficients, param_dtype, dtype):
    def init_fn(key, input_size):
        return {"w_x": base.input_kernel(key, input_size, n_blocks * H, param_dtype),
                "b": jnp.zeros((n_blocks * H,), param_dtype)}

    def project(params, x):
        p, x = base.cast_inputs(params, x, dtype)
        return coefficients(base.blocks(x @ p["w_x"] + p["b"], n_blocks))

    def recur(params, h, ab):
        a, b = ab
        h = a * h + b
        return h, h

    def initial_carry(params, batch_shape):
        return jnp.zeros((*batch_shape, H), base.compute_dtype(params, dtype))

    def step(params, carry, x):
        return recur(params, carry, project(params, x))

    return base.Cell(init_fn, initial_carry, step, project, recur, H, H, linear=True)


def mingru(hidden_size: int, *, param_dtype=jnp.float32, dtype=None) -> base.Cell:
    """minGRU: a GRU whose gate and candidate see only the input, so the recurrence is linear.

        z  = sigmoid(x @ W_z + b_z),   h~ = g(x @ W_h + b_h)
        h' = (1 - z) * h + z * h~,     y = h'          g(v) = v + 0.5 (v >= 0), sigmoid(v) (v < 0)

    Params: `w_x [F, 2H]` (blocks z, h~), `b [2H]`. Carry: `h`, zeros, used as given (not
    g(h_0), which the widely copied log-space listing makes of it). A layer evaluates a window
    with a parallel scan over the pairs (1 - z_t, z_t * h~_t); composing pairs needs no division
    by cumulative products, so no log space is needed for stability.

    Feng, Tung, Ahmed, Bengio & Hajimirsadeghi, "Were RNNs all we needed?", arXiv:2410.01201.
    """
    H = base.check_size("hidden_size", hidden_size)

    def coefficients(blocks):
        k, v = blocks
        z = sigmoid(k)
        return 1 - z, z * _g(v)

    return _linear_cell(H, 2, coefficients, param_dtype, dtype)


def minlstm(hidden_size: int, *, param_dtype=jnp.float32, dtype=None) -> base.Cell:
    """minLSTM: input and forget gates of the input alone, normalised to sum to one.

        f = sigmoid(x @ W_f + b_f),  i = sigmoid(x @ W_i + b_i),  h~ = g(x @ W_h + b_h)
        h' = f / (f + i) * h + i / (f + i) * h~,    y = h'

    Params: `w_x [F, 3H]` (blocks f, i, h~), `b [3H]`. Carry: `h`, zeros, used as given. Linear
    in h: a layer evaluates a window with a parallel scan (see `mingru`).

    Feng, Tung, Ahmed, Bengio & Hajimirsadeghi, "Were RNNs all we needed?", arXiv:2410.01201.
    """
    H = base.check_size("hidden_size", hidden_size)

    def coefficients(blocks):
        k_f, k_i, v = blocks
        # f/(f+i) = sigmoid(d), i/(f+i) = sigmoid(-d) with d = softplus(-k_i) - softplus(-k_f):
        # the stable form of the normalised gates.
        d = jax.nn.softplus(-k_i) - jax.nn.softplus(-k_f)
        return sigmoid(d), sigmoid(-d) * _g(v)

    return _linear_cell(H, 3, coefficients, param_dtype, dtype)


def lru(hidden_size: int, *, state_size: int | None = None, r_min: float = 0.0,
        r_max: float = 1.0, max_phase: float = 6.28, param_dtype=jnp.float32,
        dtype=None) -> base.Cell:
    """Linear recurrent unit: a complex diagonal linear recurrence, read out linearly.

        x <- x @ W_in + b_in                          only when the input size F != H
        lambda = exp(-exp(nu_log) + 1j * exp(theta_log)),   gamma = exp(gamma_log)     [N]
        h_t = lambda * h_{t-1} + gamma * (x_t @ B),          B = B_re + 1j * B_im       [H, N]
        y_t = Re(h_t @ C) + D * x_t,                         C = C_re + 1j * C_im       [N, H]

    `hidden_size` is the model size H (input and output), `state_size` N (default H).
    Ring initialisation: |lambda| uniform on the ring r_min..r_max (|lambda|^2 uniform on
    [r_min^2, r_max^2]), phases uniform on [0, max_phase], gamma_log = log sqrt(1 - |lambda|^2),
    B ~ N(0, 1/(2H)), C ~ N(0, 1/N), D ~ N(0, 1); the defaults (0, 1, 6.28) are those of the
    paper's pseudo-code (its experiments use other rings). Params: `nu_log, theta_log,
    gamma_log [N]`, `B_re, B_im [H, N]`, `C_re, C_im [N, H]`, `D [H]` (and `w_in [F, H]`,
    `b_in [H]`). Carry: complex `h [B..., N]`, zeros. Linear in h: a layer evaluates a window
    with a parallel scan.

    Orvieto, Smith, Gu, Fernando, Gulcehre, Pascanu & De, "Resurrecting recurrent neural
    networks for long sequences", ICML 2023.
    """
    H = base.check_size("hidden_size", hidden_size)
    N = base.check_size("state_size", state_size or H)
    if not 0.0 <= r_min < r_max <= 1.0:
        raise ValueError(f"need 0 <= r_min < r_max <= 1, got {r_min} and {r_max}")

    def init_fn(key, input_size):
        k = jax.random.split(key, 8)
        u1 = jax.random.uniform(k[0], (N,), minval=1e-7, maxval=1 - 1e-7)
        u2 = jax.random.uniform(k[1], (N,))
        nu_log = jnp.log(-0.5 * jnp.log(u1 * (r_max ** 2 - r_min ** 2) + r_min ** 2))
        modulus = jnp.exp(-jnp.exp(nu_log))
        params = {
            "nu_log": nu_log, "theta_log": jnp.log(max_phase * u2),
            "gamma_log": jnp.log(jnp.sqrt(jnp.maximum(1 - modulus ** 2, 1e-12))),
            "B_re": jax.random.normal(k[2], (H, N)) / jnp.sqrt(2 * H),
            "B_im": jax.random.normal(k[3], (H, N)) / jnp.sqrt(2 * H),
            "C_re": jax.random.normal(k[4], (N, H)) / jnp.sqrt(N),
            "C_im": jax.random.normal(k[5], (N, H)) / jnp.sqrt(N),
            "D": jax.random.normal(k[6], (H,)),
        }
        if input_size != H:
            params["w_in"] = base.input_kernel(k[7], input_size, H, jnp.float32)
            params["b_in"] = jnp.zeros((H,))
        return {name: v.astype(param_dtype) for name, v in params.items()}

    def _complex(params):
        return jnp.complex128 if base.compute_dtype(params, dtype) == jnp.float64 else \
            jnp.complex64

    def initial_carry(params, batch_shape):
        return jnp.zeros((*batch_shape, N), _complex(params))

    def project(params, x):
        real = jnp.float64 if _complex(params) == jnp.complex128 else jnp.float32
        p, x = base.cast(params, real), x.astype(real)
        if "w_in" in p:
            x = x @ p["w_in"] + p["b_in"]
        lam = jnp.exp(-jnp.exp(p["nu_log"]) + 1j * jnp.exp(p["theta_log"]))
        b = jnp.exp(p["gamma_log"]) * (x @ (p["B_re"] + 1j * p["B_im"]))
        return jnp.broadcast_to(lam, b.shape), b, x

    def emit(params, h, xp):
        p = base.cast(params, jnp.real(h).dtype)
        return jnp.real(h) @ p["C_re"] - jnp.imag(h) @ p["C_im"] + p["D"] * xp[2]

    def recur(params, h, xp):
        a, b, _ = xp
        h = a * h + b
        return h, emit(params, h, xp)

    def step(params, carry, x):
        return recur(params, carry, project(params, x))

    return base.Cell(init_fn, initial_carry, step, project, recur, H, H, linear=True, emit=emit)
