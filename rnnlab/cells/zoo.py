"""Gated and minimal cells of the architecture-search literature, for ablation studies.

Greff et al. 2015's peephole LSTM and its eight variants (through `classic.lstm(variant=...)`),
Jozefowicz et al. 2015's MUT1-3, Collins et al. 2017's UGRNN and +RNN, the minimal gated unit,
IndRNN, the layer-normalised LSTM, multiplicative integration (through `integration=` of the
classic cells), and the linear recurrences minGRU, minLSTM and LRU (which a layer scans in
parallel). Shapes and conventions as in `rnnlab.cells.classic`: `w_x [F, k*H]` and
`w_h [H, k*H]` hold one column block per gate, in the order each docstring gives; every cell
splits its step into `project` (the input terms, hoistable out of the scan) and `recur`.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from rnnlab.cells import base

sigmoid = jax.nn.sigmoid


def _blocks(v, n):
    return jnp.split(v, n, axis=-1)


def _kernels(key, input_size, H, n_x, n_h, init, dtype):
    kx, kh = jax.random.split(key)
    return {"w_x": base.input_kernel(kx, input_size, n_x * H, dtype),
            "w_h": base.recurrent_kernel(kh, init, H, n_h, dtype)}


def _simple_cell(H, init_fn, project, recur, gates=None, dtype=None):
    """A Cell whose carry is h [B..., H] (zeros) and whose step is recur(project(x))."""

    def initial_carry(params, batch_shape):
        return jnp.zeros((*batch_shape, H), base.compute_dtype(params, dtype))

    def step(params, carry, x):
        return recur(params, carry, project(params, x))

    return base.Cell(init_fn, initial_carry, step, project, recur, H, H, gates)


def _cast_x(params, x, dtype):
    dt = base.compute_dtype(params, dtype)
    return base.cast(params, dt), x.astype(dt)


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
        return {**_kernels(key, input_size, H, 2, 2, w_init, param_dtype),
                "b": jnp.zeros((2 * H,), param_dtype)}

    def project(params, x):
        p, x = _cast_x(params, x, dtype)
        return x @ p["w_x"] + p["b"]

    def recur(params, h, xp):
        w_hf, w_hh = _blocks(params["w_h"].astype(h.dtype), 2)
        x_f, x_h = _blocks(xp, 2)
        f = sigmoid(x_f + h @ w_hf)
        h = (1 - f) * h + f * act(x_h + (f * h) @ w_hh)
        return h, h

    def gates(params, h, x):
        x_f, _ = _blocks(project(params, x), 2)
        return {"forget": sigmoid(x_f + h @ _blocks(params["w_h"].astype(h.dtype), 2)[0])}

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
            params = {**_kernels(k, H if raw else input_size, H, n_x, n_h, w_init, param_dtype),
                      "b": jnp.zeros((3 * H,), param_dtype)}
            if raw and input_size != H:
                params["w_in"] = base.input_kernel(k_in, input_size, H, param_dtype)
                params["b_in"] = jnp.zeros((H,), param_dtype)
            return params

        def project(params, x):
            p, x = _cast_x(params, x, dtype)
            if "w_in" in p:
                x = x @ p["w_in"] + p["b_in"]
            b_z, b_r, b_h = _blocks(p["b"], 3)
            if number == 1:  # (x @ W_xz + b_z, x @ W_xr + b_r, tanh(x) + b_h)
                x_z, x_r = _blocks(x @ p["w_x"], 2)
                return jnp.concatenate([x_z + b_z, x_r + b_r, jnp.tanh(x) + b_h], -1)
            if number == 2:  # (x @ W_xz + b_z, x + b_r, x @ W_xh + b_h)
                x_z, x_h = _blocks(x @ p["w_x"], 2)
                return jnp.concatenate([x_z + b_z, x + b_r, x_h + b_h], -1)
            return x @ p["w_x"] + p["b"]

        def recur(params, h, xp):
            w_h = params["w_h"].astype(h.dtype)
            x_z, x_r, x_h = _blocks(xp, 3)
            if number == 1:
                w_hr, w_hh = _blocks(w_h, 2)
                z = sigmoid(x_z)
            else:
                w_hz, w_hr, w_hh = _blocks(w_h, 3)
                z = sigmoid(x_z + (jnp.tanh(h) if number == 3 else h) @ w_hz)
            r = sigmoid(x_r + h @ w_hr)
            h = jnp.tanh((r * h) @ w_hh + x_h) * z + h * (1 - z)
            return h, h

        def gates(params, h, x):
            x_z, x_r, _ = _blocks(project(params, x), 3)
            w_h = params["w_h"].astype(h.dtype)
            if number == 1:
                w_hr = _blocks(w_h, 2)[0]
                z = sigmoid(x_z)
            else:
                w_hz, w_hr, _ = _blocks(w_h, 3)
                z = sigmoid(x_z + (jnp.tanh(h) if number == 3 else h) @ w_hz)
            return {"update": z, "reset": sigmoid(x_r + h @ w_hr)}

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
        return {**_kernels(key, input_size, H, 2, 2, w_init, param_dtype),
                "b": jnp.zeros((2 * H,), param_dtype)}

    def project(params, x):
        p, x = _cast_x(params, x, dtype)
        return x @ p["w_x"] + p["b"]

    def recur(params, h, xp):
        g_a, c_a = _blocks(xp + h @ params["w_h"].astype(h.dtype), 2)
        g = sigmoid(g_a + forget_bias)
        h = g * h + (1 - g) * jnp.tanh(c_a)
        return h, h

    def gates(params, h, x):
        g_a, _ = _blocks(project(params, x) + h @ params["w_h"].astype(h.dtype), 2)
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
        params = {**_kernels(k, H, H, 4, 4, w_init, param_dtype),
                  "b": jnp.zeros((4 * H,), param_dtype)}
        if input_size != H:
            params["w_in"] = base.input_kernel(k_in, input_size, H, param_dtype)
            params["b_in"] = jnp.zeros((H,), param_dtype)
        return params

    def project(params, x):
        p, x = _cast_x(params, x, dtype)
        if "w_in" in p:
            x = x @ p["w_in"] + p["b_in"]
        return x @ p["w_x"] + p["b"], x

    def recur(params, h, xp):
        xp, x = xp
        gh_a, h_a, gy_a, y_a = _blocks(xp + h @ params["w_h"].astype(h.dtype), 4)
        gh, gy = sigmoid(gh_a + forget_bias), sigmoid(gy_a + forget_bias)
        h = gh * h + (1 - gh) * jnp.tanh(h_a)
        return h, gy * x + (1 - gy) * jax.nn.relu(y_a)

    def gates(params, h, x):
        xp, _ = project(params, x)
        gh_a, _, gy_a, _ = _blocks(xp + h @ params["w_h"].astype(h.dtype), 4)
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
        p, x = _cast_x(params, x, dtype)
        return x @ p["w_x"] + p["b"]

    def recur(params, h, xp):
        h = act(xp + params["u"].astype(h.dtype) * h)
        return h, h

    return _simple_cell(H, init_fn, project, recur, dtype=dtype)


# ----------------------------------------------------------------------------- Greff et al.

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
        params = {**_kernels(k1, input_size, H, n, n, w_init, param_dtype), "b": b}
        params.update({f"p_{p}": jnp.zeros((H,), param_dtype) for p in peep})
        if variant == "fgr":
            params["r_gates"] = base.recurrent_kernel(k2, w_init, 3 * H, 1, param_dtype)
        return params

    def initial_carry(params, batch_shape):
        dt = base.compute_dtype(params, dtype)
        carry = (jnp.zeros((*batch_shape, H), dt), jnp.zeros((*batch_shape, H), dt))
        return (*carry, jnp.zeros((*batch_shape, 3 * H), dt)) if variant == "fgr" else carry

    def project(params, x):
        p, x = _cast_x(params, x, dtype)
        return x @ p["w_x"] + p["b"]

    def _gates(params, carry, xp):
        h, c_prev = carry[0], carry[1]
        p = base.cast(params, h.dtype)
        a = dict(zip(names, _blocks(xp + h @ p["w_h"], n)))
        if variant == "fgr":
            extra = dict(zip("ifo", _blocks(carry[2] @ p["r_gates"], 3)))
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

    return base.Cell(init_fn, initial_carry, step, project, recur, H, H, gate_values)


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
        params = {**_kernels(key, input_size, H, 4, 4, w_init, param_dtype),
                  "b": jnp.zeros((4 * H,), param_dtype).at[H:2 * H].set(forget_bias)}
        for name, size in (("x", 4 * H), ("h", 4 * H), ("c", H)):
            params[f"ln_{name}_scale"] = jnp.ones((size,), param_dtype)
            params[f"ln_{name}_bias"] = jnp.zeros((size,), param_dtype)
        return params

    def initial_carry(params, batch_shape):
        dt = base.compute_dtype(params, dtype)
        return (jnp.zeros((*batch_shape, H), dt), jnp.zeros((*batch_shape, H), dt))

    def project(params, x):
        p, x = _cast_x(params, x, dtype)
        return _layer_norm(x @ p["w_x"], p["ln_x_scale"], p["ln_x_bias"]) + p["b"]

    def preactivations(params, h, xp):
        p = base.cast(params, h.dtype)
        return xp + _layer_norm(h @ p["w_h"], p["ln_h_scale"], p["ln_h_bias"])

    def recur(params, carry, xp):
        h, c = carry
        p = base.cast(params, h.dtype)
        i, f, g, o = _blocks(preactivations(params, h, xp), 4)
        c = sigmoid(f) * c + sigmoid(i) * jnp.tanh(g)
        h = sigmoid(o) * jnp.tanh(_layer_norm(c, p["ln_c_scale"], p["ln_c_bias"]))
        return (h, c), h

    def step(params, carry, x):
        return recur(params, carry, project(params, x))

    def gates(params, carry, x):
        i, f, _, o = _blocks(preactivations(params, carry[0], project(params, x)), 4)
        return {"input": sigmoid(i), "forget": sigmoid(f), "output": sigmoid(o)}

    return base.Cell(init_fn, initial_carry, step, project, recur, H, H, gates)


# ----------------------------------------------------------------------------- linear


def _g(v):
    """Feng et al.'s positive activation: v + 0.5 for v >= 0, sigmoid(v) below (continuous)."""
    return jnp.where(v >= 0, v + 0.5, sigmoid(v))


def _linear_cell(H, n_blocks, coefficients, param_dtype, dtype):
    def init_fn(key, input_size):
        return {"w_x": base.input_kernel(key, input_size, n_blocks * H, param_dtype),
                "b": jnp.zeros((n_blocks * H,), param_dtype)}

    def project(params, x):
        p, x = _cast_x(params, x, dtype)
        return coefficients(_blocks(x @ p["w_x"] + p["b"], n_blocks))

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


# ----------------------------------------------------------------------------- MI

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
        params = _kernels(key, input_size, H, k, k, w_init, param_dtype)
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
        p, x = _cast_x(params, x, dtype)
        return x @ p["w_x"]

    def gru_gates(p, h, xw):
        hu = h @ p["w_h"][:, :2 * H] + p["b_h"][:2 * H]
        return _blocks(sigmoid(mi(p, xw[..., :2 * H], hu, slice(0, 2 * H)) + p["b_x"][:2 * H]),
                       2)

    def recur(params, carry, xw):
        h = carry[0] if kind == "lstm" else carry
        p = base.cast(params, h.dtype)
        if kind == "elman":
            h = act(mi(p, xw, h @ p["w_h"]) + p["b"])
            return h, h
        if kind == "lstm":
            i, f, g, o = _blocks(mi(p, xw, h @ p["w_h"]) + p["b"], 4)
            c = sigmoid(f) * carry[1] + sigmoid(i) * act(g)
            h = sigmoid(o) * act(c)
            return (h, c), h
        r, z = gru_gates(p, h, xw)
        w_n, b_n = p["w_h"][:, 2 * H:], p["b_h"][2 * H:]
        hu = r * (h @ w_n + b_n) if reset_after else (r * h) @ w_n + b_n
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
        i, f, _, o = _blocks(mi(p, xw, h @ p["w_h"]) + p["b"], 4)
        return {"input": sigmoid(i), "forget": sigmoid(f), "output": sigmoid(o)}

    return base.Cell(init_fn, initial_carry, step, project, recur, H, H,
                     None if kind == "elman" else gates)


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
