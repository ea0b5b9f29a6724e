"""Gated and minimal cells of the architecture-search literature: the minimal gated unit,
Jozefowicz et al. 2015's MUT1-3, Collins et al. 2017's UGRNN and +RNN, IndRNN and the
layer-normalised LSTM.

Conventions as in `rnnlab.cells.classic`: `w_x [F, k*H]` and `w_h [H, k*H]` hold one column
block per gate, in the order each docstring gives; every cell splits its step into `project`
(the input terms, hoistable out of the scan) and `recur`.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from rnnlab.cells import base

sigmoid = jax.nn.sigmoid


def _simple_cell(H, init_fn, project, recur, gates=None, dtype=None):
    """A Cell whose carry is h [B..., H] (zeros) and whose step is recur(project(x))."""

    def initial_carry(params, batch_shape):
        return jnp.zeros((*batch_shape, H), base.compute_dtype(params, dtype))

    def step(params, carry, x):
        return recur(params, carry, project(params, x))

    return base.Cell(init_fn, initial_carry, step, project, recur, H, H, gates)


def mgu(hidden_size: int, *, activation="tanh", init="orthogonal", init_scale: float = 1.0,
        param_dtype=jnp.float32, dtype=None) -> base.Cell:
    """Minimal gated unit: one gate, used to reset (before the matmul) and to update.

        f   = sigmoid(x @ W_xf + h @ W_hf + b_f)
        h~  = act(x @ W_xh + (f * h) @ W_hh + b_h)
        h'  = (1 - f) * h + f * h~,    y = h'

    Params: `w_x [F, 2H]`, `w_h [H, 2H]`, `b [2H]`, blocks (f, h~). Carry: `h`, zeros.
    The form of arXiv:1603.09420 as transcribed by RecurrentLayers.jl (the paper's text was not
    checked); Flax's `MGUCell` is a different function (its gate acts after the matmul).

    Zhou, Wu, Zhang & Zhou, "Minimal gated unit for recurrent neural networks" (2016).
    """
    H = base.check_size("hidden_size", hidden_size)
    act, w_init = base.get_activation(activation), base.recurrent_init(init, init_scale)

    def init_fn(key, input_size):
        return {**base.kernels(key, input_size, H, 2, 2, w_init, param_dtype),
                "b": jnp.zeros((2 * H,), param_dtype)}

    def project(params, x):
        p, x = base.cast_inputs(params, x, dtype)
        return x @ p["w_x"] + p["b"]

    def recur(params, h, xp):
        w_hf, w_hh = base.blocks(params["w_h"].astype(h.dtype), 2)
        x_f, x_h = base.blocks(xp, 2)
        f = sigmoid(x_f + h @ w_hf)
        h = (1 - f) * h + f * act(x_h + (f * h) @ w_hh)
        return h, h

    def gates(params, h, x):
        x_f, _ = base.blocks(project(params, x), 2)
        return {"forget": sigmoid(x_f + h @ base.blocks(params["w_h"].astype(h.dtype), 2)[0])}

    return _simple_cell(H, init_fn, project, recur, gates, dtype=dtype)


def _mut(number: int):
    def factory(hidden_size: int, *, init="orthogonal", init_scale: float = 1.0,
                param_dtype=jnp.float32, dtype=None) -> base.Cell:
        H = base.check_size("hidden_size", hidden_size)
        w_init = base.recurrent_init(init, init_scale)
        n_x, n_h = {1: (2, 2), 2: (2, 3), 3: (3, 3)}[number]

        def init_fn(key, input_size):
            k, k_in = jax.random.split(key)
            raw = number in (1, 2)  # the raw input enters a hidden-size sum: it must be H wide
            params = {**base.kernels(k, H if raw else input_size, H, n_x, n_h, w_init, param_dtype),
                      "b": jnp.zeros((3 * H,), param_dtype)}
            if raw and input_size != H:
                params["w_in"] = base.input_kernel(k_in, input_size, H, param_dtype)
                params["b_in"] = jnp.zeros((H,), param_dtype)
            return params

        def project(params, x):
            p, x = base.cast_inputs(params, x, dtype)
            if "w_in" in p:
                x = x @ p["w_in"] + p["b_in"]
            b_z, b_r, b_h = base.blocks(p["b"], 3)
            if number == 1:  # (x @ W_xz + b_z, x @ W_xr + b_r, tanh(x) + b_h)
                x_z, x_r = base.blocks(x @ p["w_x"], 2)
                return jnp.concatenate([x_z + b_z, x_r + b_r, jnp.tanh(x) + b_h], -1)
            if number == 2:  # (x @ W_xz + b_z, x + b_r, x @ W_xh + b_h)
                x_z, x_h = base.blocks(x @ p["w_x"], 2)
                return jnp.concatenate([x_z + b_z, x + b_r, x_h + b_h], -1)
            return x @ p["w_x"] + p["b"]

        def update_reset(params, h, x_z, x_r):
            """The gates z and r from their projected inputs, and W_hh for the candidate."""
            w_h = params["w_h"].astype(h.dtype)
            if number == 1:  # z reads the input only
                (w_hr, w_hh), z = base.blocks(w_h, 2), sigmoid(x_z)
            else:
                w_hz, w_hr, w_hh = base.blocks(w_h, 3)
                z = sigmoid(x_z + (jnp.tanh(h) if number == 3 else h) @ w_hz)
            return z, sigmoid(x_r + h @ w_hr), w_hh

        def recur(params, h, xp):
            x_z, x_r, x_h = base.blocks(xp, 3)
            z, r, w_hh = update_reset(params, h, x_z, x_r)
            h = jnp.tanh((r * h) @ w_hh + x_h) * z + h * (1 - z)
            return h, h

        def gates(params, h, x):
            z, r, _ = update_reset(params, h, *base.blocks(project(params, x), 3)[:2])
            return {"update": z, "reset": r}

        return _simple_cell(H, init_fn, project, recur, gates, dtype=dtype)

    factory.__name__ = f"mut{number}"
    factory.__doc__ = f"""MUT{number}, an architecture found by Jozefowicz et al.'s search.

        MUT1: z = sigmoid(x @ W_xz + b_z)
              r = sigmoid(x @ W_xr + h @ W_hr + b_r)
              h' = tanh((r * h) @ W_hh + tanh(x) + b_h) * z + h * (1 - z)
        MUT2: z = sigmoid(x @ W_xz + h @ W_hz + b_z)
              r = sigmoid(x + h @ W_hr + b_r)
              h' = tanh((r * h) @ W_hh + x @ W_xh + b_h) * z + h * (1 - z)
        MUT3: z = sigmoid(x @ W_xz + tanh(h) @ W_hz + b_z)
              r = sigmoid(x @ W_xr + h @ W_hr + b_r)
              h' = tanh((r * h) @ W_hh + x @ W_xh + b_h) * z + h * (1 - z)

    z gates the NEW candidate (the opposite of the paper's GRU listing). MUT1 and MUT2 add the raw
    input (tanh(x), x) without a weight, so it must be H wide: an input of another size F is
    first projected, `x <- x @ w_in + b_in` (params `w_in [F, H]`, `b_in [H]`, as the +RNN's).
    Params (this one):
    {dict({1: "w_x [F, 2H] (z, r), w_h [H, 2H] (r, h)",
           2: "w_x [F, 2H] (z, h), w_h [H, 3H] (z, r, h)",
           3: "w_x [F, 3H] (z, r, h), w_h [H, 3H] (z, r, h)"})[number]}, b [3H] (z, r, h).
    Carry: `h`, zeros. Equations as three independent transcriptions agree (the paper's text was
    not checked).

    Jozefowicz, Zaremba & Sutskever, "An empirical exploration of recurrent network
    architectures", ICML 2015.
    """
    return factory


mut1, mut2, mut3 = _mut(1), _mut(2), _mut(3)


def ugrnn(hidden_size: int, *, forget_bias: float = 1.0, init="orthogonal",
          init_scale: float = 1.0, param_dtype=jnp.float32, dtype=None) -> base.Cell:
    """Update-gate RNN.

        [g_a, c_a] = x @ W_x + h @ W_h + b           blocks (g, c)
        g  = sigmoid(g_a + forget_bias)              a constant added in the forward pass (1.0)
        h' = g * h + (1 - g) * tanh(c_a),    y = h'

    Params: `w_x [F, 2H]`, `w_h [H, 2H]`, `b [2H]`. Carry: `h`, zeros. As TensorFlow's
    `UGRNNCell` (contrib), which implements arXiv:1611.09913.

    Collins, Sohl-Dickstein & Sussillo, "Capacity and trainability in recurrent neural
    networks", ICLR 2017.
    """
    H = base.check_size("hidden_size", hidden_size)
    w_init = base.recurrent_init(init, init_scale)

    def init_fn(key, input_size):
        return {**base.kernels(key, input_size, H, 2, 2, w_init, param_dtype),
                "b": jnp.zeros((2 * H,), param_dtype)}

    def project(params, x):
        p, x = base.cast_inputs(params, x, dtype)
        return x @ p["w_x"] + p["b"]

    def recur(params, h, xp):
        g_a, c_a = base.blocks(xp + h @ params["w_h"].astype(h.dtype), 2)
        g = sigmoid(g_a + forget_bias)
        h = g * h + (1 - g) * jnp.tanh(c_a)
        return h, h

    def gates(params, h, x):
        g_a, _ = base.blocks(project(params, x) + h @ params["w_h"].astype(h.dtype), 2)
        return {"update": sigmoid(g_a + forget_bias)}

    return _simple_cell(H, init_fn, project, recur, gates, dtype=dtype)


def plus_rnn(hidden_size: int, *, forget_bias: float = 1.0, init="orthogonal",
             init_scale: float = 1.0, param_dtype=jnp.float32, dtype=None) -> base.Cell:
    """Intersection RNN (+RNN): separate gated paths through time (h) and through depth (y).

        x <- x @ W_in + b_in                          only when the input size F != H
        [gh_a, h_a, gy_a, y_a] = x @ W_x + h @ W_h + b
        gh = sigmoid(gh_a + forget_bias),  gy = sigmoid(gy_a + forget_bias)   (constant 1.0)
        h' = gh * h + (1 - gh) * tanh(h_a)            the carry
        y  = gy * x + (1 - gy) * relu(y_a)            the output (y != h')

    Params: `w_x [H, 4H]`, `w_h [H, 4H]`, `b [4H]` (blocks gh, h, gy, y), and `w_in [F, H]`,
    `b_in [H]` when F != H. Carry: `h`, zeros. As TensorFlow's `IntersectionRNNCell` (contrib).
    Designed for deep stacks (the input passes through to the output).

    Collins, Sohl-Dickstein & Sussillo, "Capacity and trainability in recurrent neural
    networks", ICLR 2017.
    """
    H = base.check_size("hidden_size", hidden_size)
    w_init = base.recurrent_init(init, init_scale)

    def init_fn(key, input_size):
        k, k_in = jax.random.split(key)
        params = {**base.kernels(k, H, H, 4, 4, w_init, param_dtype),
                  "b": jnp.zeros((4 * H,), param_dtype)}
        if input_size != H:
            params["w_in"] = base.input_kernel(k_in, input_size, H, param_dtype)
            params["b_in"] = jnp.zeros((H,), param_dtype)
        return params

    def project(params, x):
        p, x = base.cast_inputs(params, x, dtype)
        if "w_in" in p:
            x = x @ p["w_in"] + p["b_in"]
        return x @ p["w_x"] + p["b"], x

    def recur(params, h, xp):
        xp, x = xp
        gh_a, h_a, gy_a, y_a = base.blocks(xp + h @ params["w_h"].astype(h.dtype), 4)
        gh, gy = sigmoid(gh_a + forget_bias), sigmoid(gy_a + forget_bias)
        h = gh * h + (1 - gh) * jnp.tanh(h_a)
        return h, gy * x + (1 - gy) * jax.nn.relu(y_a)

    def gates(params, h, x):
        xp, _ = project(params, x)
        gh_a, _, gy_a, _ = base.blocks(xp + h @ params["w_h"].astype(h.dtype), 4)
        return {"time": sigmoid(gh_a + forget_bias), "depth": sigmoid(gy_a + forget_bias)}

    return _simple_cell(H, init_fn, project, recur, gates, dtype=dtype)


def indrnn(hidden_size: int, *, activation="relu", recurrent_max: float | None = None,
           param_dtype=jnp.float32, dtype=None) -> base.Cell:
    """Independently recurrent network: each unit recurs only on itself.

        h' = act(x @ W_x + b + u * h),    y = h'          act = relu

    Params: `w_x [F, H]`, `u [H]` (drawn from U(0, 1), the authors' init), `b [H]`. Carry: `h`,
    zeros. `recurrent_max` draws u from U(0, recurrent_max) instead (the authors bound |u| by
    MAG^(1/T) for long sequences).

    Li, Li, Cook, Zhu & Gao, "Independently recurrent neural network (IndRNN)", CVPR 2018.
    """
    H = base.check_size("hidden_size", hidden_size)
    act = base.get_activation(activation)
    high = 1.0 if recurrent_max is None else recurrent_max

    def init_fn(key, input_size):
        kx, ku = jax.random.split(key)
        return {"w_x": base.input_kernel(kx, input_size, H, param_dtype),
                "u": jax.random.uniform(ku, (H,), jnp.float32, 0.0, high).astype(param_dtype),
                "b": jnp.zeros((H,), param_dtype)}

    def project(params, x):
        p, x = base.cast_inputs(params, x, dtype)
        return x @ p["w_x"] + p["b"]

    def recur(params, h, xp):
        h = act(xp + params["u"].astype(h.dtype) * h)
        return h, h

    return _simple_cell(H, init_fn, project, recur, dtype=dtype)


def _layer_norm(a, scale, bias, eps=1e-5):
    mean = jnp.mean(a, axis=-1, keepdims=True)
    var = jnp.mean(jnp.square(a - mean), axis=-1, keepdims=True)  # biased, as the authors'
    return scale * (a - mean) * jax.lax.rsqrt(var + eps) + bias


def ln_lstm(hidden_size: int, *, forget_bias: float = 1.0, init="orthogonal",
            init_scale: float = 1.0, param_dtype=jnp.float32, dtype=None) -> base.Cell:
    """Layer-normalised LSTM.

        a = LN(h @ W_h; s_h, b_h) + LN(x @ W_x; s_x, b_x) + b      one LN over all 4H
        [i, f, g, o] = a
        c = sigmoid(f) * c_prev + sigmoid(i) * tanh(g)
        h = sigmoid(o) * tanh(LN(c; s_c, b_c)),    y = h

    LN(v; s, b) = s * (v - mean(v)) / sqrt(var(v) + 1e-5) + b over the feature axis (biased
    variance). Params: `w_x [F, 4H]`, `w_h [H, 4H]`, `b [4H]` (gate order i, f, g, o as the plain
    LSTM's; the authors' code orders i, f, o, g, which LN over all 4H at once does not tell
    apart), `ln_x_scale, ln_x_bias, ln_h_scale, ln_h_bias [4H]`, `ln_c_scale, ln_c_bias [H]`
    (scales 1, shifts 0); `forget_bias` initialises b's f slice (the authors' b is 0).
    Carry: `(h, c)` with the un-normalised c. As the authors' code (ryankiros/layer-norm
    `lnlstm_layer`, without its extra b inside the input LN, which is 0 at init).

    Ba, Kiros & Hinton, "Layer normalization", arXiv:1607.06450 (2016).
    """
    H = base.check_size("hidden_size", hidden_size)
    w_init = base.recurrent_init(init, init_scale)

    def init_fn(key, input_size):
        params = {**base.kernels(key, input_size, H, 4, 4, w_init, param_dtype),
                  "b": jnp.zeros((4 * H,), param_dtype).at[H:2 * H].set(forget_bias)}
        for name, size in (("x", 4 * H), ("h", 4 * H), ("c", H)):
            params[f"ln_{name}_scale"] = jnp.ones((size,), param_dtype)
            params[f"ln_{name}_bias"] = jnp.zeros((size,), param_dtype)
        return params

    def initial_carry(params, batch_shape):
        dt = base.compute_dtype(params, dtype)
        return (jnp.zeros((*batch_shape, H), dt), jnp.zeros((*batch_shape, H), dt))

    def project(params, x):
        p, x = base.cast_inputs(params, x, dtype)
        return _layer_norm(x @ p["w_x"], p["ln_x_scale"], p["ln_x_bias"]) + p["b"]

    def preactivations(params, h, xp):
        p = base.cast(params, h.dtype)
        return xp + _layer_norm(h @ p["w_h"], p["ln_h_scale"], p["ln_h_bias"])

    def recur(params, carry, xp):
        h, c = carry
        p = base.cast(params, h.dtype)
        i, f, g, o = base.blocks(preactivations(params, h, xp), 4)
        c = sigmoid(f) * c + sigmoid(i) * jnp.tanh(g)
        h = sigmoid(o) * jnp.tanh(_layer_norm(c, p["ln_c_scale"], p["ln_c_bias"]))
        return (h, c), h

    def step(params, carry, x):
        return recur(params, carry, project(params, x))

    def gates(params, carry, x):
        i, f, _, o = base.blocks(preactivations(params, carry[0], project(params, x)), 4)
        return {"input": sigmoid(i), "forget": sigmoid(f), "output": sigmoid(o)}

    return base.Cell(init_fn, initial_carry, step, project, recur, H, H, gates)
