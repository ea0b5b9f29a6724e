"""Variants of the classic cells for ablation studies: Greff et al.'s peephole LSTM and its
eight variants (`classic.lstm(variant=...)`) and multiplicative integration (`integration=` of
elman, lstm and gru).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from rnnlab.cells import base

sigmoid = jax.nn.sigmoid

GREFF_VARIANTS = ("vanilla", "nig", "nfg", "nog", "niaf", "noaf", "np", "cifg", "fgr")


def greff_lstm(hidden_size: int, *, variant: str = "vanilla", forget_bias: float = 1.0,
               init="orthogonal", init_scale: float = 1.0, param_dtype=jnp.float32,
               dtype=None) -> base.Cell:
    """The vanilla LSTM of Greff et al. (peepholes) and its eight variants.

        z = g(x @ W_z + h @ R_z + b_z)                          g = tanh (block input)
        i = sigmoid(x @ W_i + h @ R_i + p_i * c_prev + b_i)
        f = sigmoid(x @ W_f + h @ R_f + p_f * c_prev + b_f)
        c = z * i + c_prev * f
        o = sigmoid(x @ W_o + h @ R_o + p_o * c + b_o)          the output peephole sees NEW c
        h = o * k(c),    y = h                                  k = tanh (output activation)

    Variants: `nig` i = 1, `nfg` f = 1, `nog` o = 1 (that gate's weights, bias and peephole
    removed), `niaf` g = identity, `noaf` k = identity, `np` no peepholes, `cifg` f = 1 - i
    (no forget-gate params), `fgr` full gate recurrence: each gate's pre-activation also gets
    `[i, f, o]_prev @ R_gates` (nine HxH matrices, `r_gates [3H, 3H]`, rows i, f, o of the
    previous step, columns the i, f, o gates; i_0 = f_0 = o_0 = 0, an assumption).

    Params: `w_x [F, kH]`, `w_h [H, kH]`, `b [kH]` with the gates present in the order i, f, z,
    o (PyTorch's i, f, g, o; k = 4, or 3 without one gate); peepholes `p_i, p_f, p_o [H]` for
    the gates present (not in `np`); `r_gates` for `fgr`. `forget_bias` initialises b_f.
    Carry: `(h, c)`, zeros; `(h, c, gates [B..., 3H])` for `fgr`. Equations as the paper's
    section II as transcribed (its text was not checked here); the peephole placement matches
    TensorFlow's `LSTMCell(use_peepholes=True)`.

    Greff, Srivastava, Koutnik, Steunebrink & Schmidhuber, "LSTM: A search space odyssey",
    IEEE TNNLS 28 (2017), arXiv:1503.04069.
    """
    if variant not in GREFF_VARIANTS:
        raise ValueError(f"unknown LSTM variant {variant!r}; variants: "
                         f"{', '.join(GREFF_VARIANTS)}")
    H = base.check_size("hidden_size", hidden_size)
    w_init = base.recurrent_init(init, init_scale)
    names = [n for n in "ifzo" if not (variant == "nig" and n == "i") and
             not (variant in ("nfg", "cifg") and n == "f") and not (variant == "nog" and n == "o")]
    peep = [n for n in "ifo" if n in names] if variant != "np" else []
    g = (lambda v: v) if variant == "niaf" else jnp.tanh
    k = (lambda v: v) if variant == "noaf" else jnp.tanh
    n = len(names)

    def init_fn(key, input_size):
        k1, k2 = jax.random.split(key)
        b = jnp.zeros((n * H,), param_dtype)
        if "f" in names:
            at = names.index("f") * H
            b = b.at[at:at + H].set(forget_bias)
        params = {**base.kernels(k1, input_size, H, n, n, w_init, param_dtype), "b": b}
        params.update({f"p_{p}": jnp.zeros((H,), param_dtype) for p in peep})
        if variant == "fgr":
            params["r_gates"] = base.recurrent_kernel(k2, w_init, 3 * H, 1, param_dtype)
        return params

    def initial_carry(params, batch_shape):
        dt = base.compute_dtype(params, dtype)
        carry = (jnp.zeros((*batch_shape, H), dt), jnp.zeros((*batch_shape, H), dt))
        return (*carry, jnp.zeros((*batch_shape, 3 * H), dt)) if variant == "fgr" else carry

    def project(params, x):
        p, x = base.cast_inputs(params, x, dtype)
        return x @ p["w_x"] + p["b"]

    def _gates(params, carry, xp):
        h, c_prev = carry[0], carry[1]
        p = base.cast(params, h.dtype)
        a = dict(zip(names, base.blocks(xp + base.recurrent_input(p, h) @ p["w_h"], n)))
        if variant == "fgr":
            extra = dict(zip("ifo", base.blocks(carry[2] @ p["r_gates"], 3)))
            a = {name: v + extra.get(name, 0.0) for name, v in a.items()}
        i = sigmoid(a["i"] + p.get("p_i", 0.0) * c_prev) if "i" in a else 1.0
        if variant == "cifg":
            f = 1.0 - i
        else:
            f = sigmoid(a["f"] + p.get("p_f", 0.0) * c_prev) if "f" in a else 1.0
        c = g(a["z"]) * i + c_prev * f
        o = sigmoid(a["o"] + p.get("p_o", 0.0) * c) if "o" in a else 1.0
        return i, f, o, c

    def recur(params, carry, xp):
        i, f, o, c = _gates(params, carry, xp)
        h = o * k(c)
        if variant == "fgr":
            return (h, c, jnp.concatenate([i, f, o], -1)), h
        return (h, c), h

    def step(params, carry, x):
        return recur(params, carry, project(params, x))

    def gate_values(params, carry, x):
        i, f, o, _ = _gates(params, carry, project(params, x))
        out = {"input": i, "forget": f, "output": o}
        return {name: v for name, v in out.items() if not isinstance(v, float)}

    return base.Cell(init_fn, initial_carry, step, project, recur, H, H, gate_values,
                     variational=True)


INTEGRATIONS = ("additive", "multiplicative")


def multiplicative(kind: str, hidden_size: int, *, activation="tanh", reset_after: bool = True,
                   forget_bias: float = 1.0, init="orthogonal", init_scale: float = 1.0,
                   param_dtype=jnp.float32, dtype=None) -> base.Cell:
    """Multiplicative integration (Wu et al. 2016) of an Elman, LSTM or GRU cell (`kind`):
    each block's additive `x @ W + h @ U + b` becomes

        alpha * (x @ W) * (h @ U) + beta_h * (h @ U) + beta_x * (x @ W) + b

    (the general form; alpha, beta_h, beta_x are vectors over the blocks, all 1 at init, so the
    cell starts as the additive cell plus the product term). The rest of each cell is unchanged.
    For the GRU the h term of the candidate is the reset one: `r * (h @ U_n + b_hn)` (reset
    after) or `(r * h) @ U_n + b_hn` (reset before), and `b_x` plays b. Params: those of the
    additive cell plus `mi_alpha, mi_beta_h, mi_beta_x [kH]`. The form and the init of alpha
    and the betas follow public reimplementations; the paper's text was not checked.

    Wu, Zhang, Zhang, Bengio & Salakhutdinov, "On multiplicative integration with recurrent
    neural networks", NeurIPS 2016.
    """
    H = base.check_size("hidden_size", hidden_size)
    k = {"elman": 1, "lstm": 4, "gru": 3}[kind]
    act = base.get_activation(activation)
    w_init = base.recurrent_init(init, init_scale)

    def init_fn(key, input_size):
        params = base.kernels(key, input_size, H, k, k, w_init, param_dtype)
        if kind == "gru":
            params.update(b_x=jnp.zeros((3 * H,), param_dtype), b_h=jnp.zeros((3 * H,),
                                                                                param_dtype))
        else:
            b = jnp.zeros((k * H,), param_dtype)
            params["b"] = b.at[H:2 * H].set(forget_bias) if kind == "lstm" else b
        params.update({name: jnp.ones((k * H,), param_dtype)
                       for name in ("mi_alpha", "mi_beta_h", "mi_beta_x")})
        return params

    def mi(p, xw, hu, at=slice(None)):
        return (p["mi_alpha"][..., at] * xw * hu + p["mi_beta_h"][..., at] * hu
                + p["mi_beta_x"][..., at] * xw)

    def initial_carry(params, batch_shape):
        shape, dt = (*batch_shape, H), base.compute_dtype(params, dtype)
        if kind == "lstm":  # (two buffers, as the plain LSTM's)
            return (jnp.zeros(shape, dt), jnp.zeros(shape, dt))
        return jnp.zeros(shape, dt)

    def project(params, x):
        p, x = base.cast_inputs(params, x, dtype)
        return x @ p["w_x"]

    def gru_gates(p, h, xw):
        hu = base.recurrent_input(p, h) @ p["w_h"][:, :2 * H] + p["b_h"][:2 * H]
        return base.blocks(sigmoid(mi(p, xw[..., :2 * H], hu, slice(0, 2 * H)) + p["b_x"][:2 * H]),
                       2)

    def recur(params, carry, xw):
        h = carry[0] if kind == "lstm" else carry
        p = base.cast(params, h.dtype)
        h_in = base.recurrent_input(p, h)
        if kind == "elman":
            h = act(mi(p, xw, h_in @ p["w_h"]) + p["b"])
            return h, h
        if kind == "lstm":
            i, f, g, o = base.blocks(mi(p, xw, h_in @ p["w_h"]) + p["b"], 4)
            c = sigmoid(f) * carry[1] + sigmoid(i) * act(g)
            h = sigmoid(o) * act(c)
            return (h, c), h
        r, z = gru_gates(p, h, xw)
        w_n, b_n = p["w_h"][:, 2 * H:], p["b_h"][2 * H:]
        hu = r * (h_in @ w_n + b_n) if reset_after else (r * h_in) @ w_n + b_n
        n = act(mi(p, xw[..., 2 * H:], hu, slice(2 * H, None)) + p["b_x"][2 * H:])
        h = (1 - z) * n + z * h
        return h, h

    def step(params, carry, x):
        return recur(params, carry, project(params, x))

    def gates(params, carry, x):
        h = carry[0] if kind == "lstm" else carry
        p, xw = base.cast(params, h.dtype), project(params, x)
        if kind == "gru":
            r, z = gru_gates(p, h, xw)
            return {"reset": r, "update": z}
        i, f, _, o = base.blocks(mi(p, xw, h @ p["w_h"]) + p["b"], 4)
        return {"input": sigmoid(i), "forget": sigmoid(f), "output": sigmoid(o)}

    return base.Cell(init_fn, initial_carry, step, project, recur, H, H,
                     None if kind == "elman" else gates, variational=True)
