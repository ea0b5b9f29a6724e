"""The classic cells: Elman (and IRNN), LSTM, GRU and Jordan.

Shapes: B... any leading batch shape, F input size, H hidden size, O Jordan output size.
Gate order follows PyTorch/cuDNN (LSTM i, f, g, o; GRU r, z, n), so a PyTorch
`weight_ih_l0` is `w_x.T`, `weight_hh_l0` is `w_h.T`.

Every cell takes `param_dtype` (the dtype `init` makes) and `dtype` (the dtype a step computes
in; default: the params' dtype). Inputs of another dtype are cast to it, and the carry has it.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from rnnlab.cells import base, kernels, variants


def _multiplicative(integration: str, conflict: bool) -> bool:
    """Whether `integration` asks for multiplicative integration (which has no variants)."""
    if integration not in variants.INTEGRATIONS:
        raise ValueError(f"unknown integration {integration!r}; choose one of "
                         f"{', '.join(variants.INTEGRATIONS)}")
    if integration == "multiplicative" and conflict:
        raise ValueError("integration='multiplicative' combines with none of the options "
                         "leak, learn_leak, variant, peepholes or another gate_activation")
    return integration == "multiplicative"


def _concat_matmul(x, h, w_x, w_h):
    # One matmul on [x_t, h] with the stacked kernel: measured faster on XLA:CPU than two
    # matmuls or a hoisted projection (benchmarks/README.md). XLA hoists the weight concat.
    return jnp.concatenate([x, h], axis=-1) @ jnp.concatenate([w_x, w_h], axis=0)


def elman(
    hidden_size: int,
    *,
    activation="tanh",
    init="orthogonal",
    init_scale: float = 1.0,
    leak: float | None = None,
    learn_leak: bool = False,
    integration: str = "additive",
    param_dtype=jnp.float32,
    dtype=None,
) -> base.Cell:
    """Elman simple recurrent network (vanilla RNN), optionally with leaky units.

        h_t = act(x_t @ w_x + h_{t-1} @ w_h + b),    y_t = h_t
        leaky:  h_t = (1 - a) * h_{t-1} + a * act(x_t @ w_x + h_{t-1} @ w_h + b)

    Params: `w_x [F, H]`, `w_h [H, H]`, `b [H]`. Carry: `h [B..., H]`, zeros.
    `init` names the initialiser of `w_h` (orthogonal, identity, normal, lecun_normal, uniform)
    and `init_scale` its gain; `w_x` is LeCun normal and `b` zeros, as in Flax's `SimpleCell`.
    Leaky units (the leaky-integrator / echo-state form: Jaeger et al. 2007; Bengio, Boulanger-
    Lewandowski & Pascanu 2013): `leak=a` in (0, 1] fixes the rate; `learn_leak=True` learns one
    rate per unit, `a = sigmoid(leak_logit)` (param `leak_logit [H]`, starting at `leak`, default
    0.5). Without them the cell is exactly the plain Elman cell. `integration="multiplicative"`
    builds `variants.multiplicative("elman", ...)` (Wu et al. 2016).

    Elman, "Finding structure in time", Cognitive Science 14 (1990).
    """
    if _multiplicative(integration, leak is not None or learn_leak):
        return variants.multiplicative("elman", hidden_size, activation=activation, init=init,
                                  init_scale=init_scale, param_dtype=param_dtype, dtype=dtype)
    H = base.check_size("hidden_size", hidden_size)
    act = base.get_activation(activation)
    w_h_init = base.recurrent_init(init, init_scale)
    if leak is not None and not 0.0 < leak <= 1.0:
        raise ValueError(f"leak must be a rate in (0, 1], got {leak}")
    leaky = leak is not None or learn_leak
    start = 0.5 if leak is None else leak

    def init_fn(key, input_size):
        kx, kh = jax.random.split(key)
        params = {
            "w_x": base.input_kernel(kx, input_size, H, param_dtype),
            "w_h": base.recurrent_kernel(kh, w_h_init, H, 1, param_dtype),
            "b": jnp.zeros((H,), param_dtype),
        }
        if learn_leak:  # logit(start); start = 1 is a plain cell that can learn to leak
            logit = jnp.log(start) - jnp.log1p(-start) if start < 1.0 else 10.0
            params["leak_logit"] = jnp.full((H,), logit, param_dtype)
        return params

    def mix(params, h_prev, h_new):
        if not leaky:
            return h_new
        a = jax.nn.sigmoid(params["leak_logit"].astype(h_new.dtype)) if learn_leak else leak
        return (1 - a) * h_prev + a * h_new

    def initial_carry(params, batch_shape):
        return jnp.zeros((*batch_shape, H), base.compute_dtype(params, dtype))

    def project(params, x):
        dt = base.compute_dtype(params, dtype)
        return x.astype(dt) @ params["w_x"].astype(dt) + params["b"].astype(dt)

    def recur(params, h, xp):
        h_in = base.recurrent_input(params, h)
        h = mix(params, h, act(xp + h_in @ params["w_h"].astype(h.dtype)))
        return h, h

    def step(params, h, x):
        p = base.cast(params, h.dtype)
        h_in = base.recurrent_input(p, h)
        h = mix(p, h, act(_concat_matmul(x.astype(h.dtype), h_in, p["w_x"], p["w_h"]) + p["b"]))
        return h, h

    kernel = kernels.elman(activation) if not leaky and activation in ("tanh", "relu") else None
    return base.Cell(init_fn, initial_carry, step, project, recur, H, H, variational=True,
                     kernel=kernel)


def irnn(
    hidden_size: int, *, init_scale: float = 1.0, param_dtype=jnp.float32, dtype=None
) -> base.Cell:
    """IRNN: an Elman cell with relu and `w_h = init_scale * I`, biases zero.

    Le, Jaitly & Hinton, "A simple way to initialize recurrent networks of rectified linear
    units", arXiv:1504.00941 (2015).
    """
    return elman(
        hidden_size,
        activation="relu",
        init="identity",
        init_scale=init_scale,
        param_dtype=param_dtype,
        dtype=dtype,
    )


def lstm(
    hidden_size: int,
    *,
    forget_bias: float = 1.0,
    activation="tanh",
    gate_activation="sigmoid",
    init="orthogonal",
    init_scale: float = 1.0,
    variant: str | None = None,
    peepholes: bool = False,
    integration: str = "additive",
    param_dtype=jnp.float32,
    dtype=None,
) -> base.Cell:
    """Long short-term memory, the PyTorch/cuDNN form without peepholes.

        [i, f, g, o] = x_t @ w_x + h_{t-1} @ w_h + b          (each [B..., H])
        c_t = gate(f) * c_{t-1} + gate(i) * act(g)
        h_t = gate(o) * act(c_t),    y_t = h_t               gate = sigmoid, act = tanh

    Params: `w_x [F, 4H]`, `w_h [H, 4H]`, `b [4H]`, gate order i, f, g, o. `forget_bias` is
    added to the f slice of `b` at init (default 1, Jozefowicz et al. 2015); it is a parameter,
    not a constant added in the forward pass. Carry: `(h, c)`, each `[B..., H]`, zeros (PyTorch's
    order; Flax's `LSTMCell` carries `(c, h)`); computing in bfloat16, c stays float32.

    `variant=` one of Greff et al.'s (`vanilla`, `nig`, `nfg`, `nog`, `niaf`, `noaf`, `np`,
    `cifg`, `fgr`), or `peepholes=True` (= `vanilla`), builds `variants.greff_lstm` instead;
    `integration="multiplicative"` builds `variants.multiplicative("lstm", ...)` (Wu et al. 2016).

    Hochreiter & Schmidhuber, "Long short-term memory", Neural Computation 9 (1997); forget gate:
    Gers, Schmidhuber & Cummins (2000).
    """
    if _multiplicative(integration, variant is not None or peepholes
                       or gate_activation != "sigmoid"):
        return variants.multiplicative("lstm", hidden_size, activation=activation,
                                  forget_bias=forget_bias, init=init, init_scale=init_scale,
                                  param_dtype=param_dtype, dtype=dtype)
    if variant is not None or peepholes:
        if (activation, gate_activation) != ("tanh", "sigmoid"):
            raise ValueError("the Greff et al. LSTM variants use tanh and sigmoid (variants "
                             "niaf and noaf drop a tanh)")
        if peepholes and variant not in (None, "vanilla"):
            raise ValueError(f"peepholes=True is the vanilla variant; variant={variant!r} "
                             "says its own peepholes")
        return variants.greff_lstm(hidden_size, variant=variant or "vanilla",
                              forget_bias=forget_bias, init=init, init_scale=init_scale,
                              param_dtype=param_dtype, dtype=dtype)
    H = base.check_size("hidden_size", hidden_size)
    act = base.get_activation(activation)
    gate = base.get_activation(gate_activation)
    w_h_init = base.recurrent_init(init, init_scale)

    def init_fn(key, input_size):
        kx, kh = jax.random.split(key)
        return {
            "w_x": base.input_kernel(kx, input_size, 4 * H, param_dtype),
            "w_h": base.recurrent_kernel(kh, w_h_init, H, 4, param_dtype),
            "b": jnp.zeros((4 * H,), param_dtype).at[H : 2 * H].set(forget_bias),
        }

    def initial_carry(params, batch_shape):
        shape, dt = (*batch_shape, H), base.compute_dtype(params, dtype)
        # c, the long-term memory, in float32 at least (mixed precision: h in bfloat16)
        return (jnp.zeros(shape, dt), jnp.zeros(shape, jnp.promote_types(dt, jnp.float32)))

    def project(params, x):
        dt = base.compute_dtype(params, dtype)
        return x.astype(dt) @ params["w_x"].astype(dt) + params["b"].astype(dt)

    def gates(z, c):
        i, f, g, o = jnp.split(z, 4, axis=-1)
        c = gate(f) * c + gate(i) * act(g)
        h = (gate(o) * act(c)).astype(z.dtype)
        return (h, c), h

    def recur(params, carry, xp):
        h, c = carry
        return gates(xp + base.recurrent_input(params, h) @ params["w_h"].astype(h.dtype), c)

    def preactivations(params, h, x):
        p = base.cast(params, h.dtype)
        h = base.recurrent_input(p, h)
        return _concat_matmul(x.astype(h.dtype), h, p["w_x"], p["w_h"]) + p["b"]

    def step(params, carry, x):
        h, c = carry
        return gates(preactivations(params, h, x), c)

    def gate_values(params, carry, x):
        i, f, _, o = jnp.split(preactivations(params, carry[0], x), 4, axis=-1)
        return {"input": gate(i), "forget": gate(f), "output": gate(o)}

    kernel = kernels.lstm() if (activation, gate_activation) == ("tanh", "sigmoid") else None
    return base.Cell(init_fn, initial_carry, step, project, recur, H, H, gate_values,
                     variational=True, kernel=kernel)


def gru(
    hidden_size: int,
    *,
    reset_after: bool = True,
    activation="tanh",
    gate_activation="sigmoid",
    init="orthogonal",
    init_scale: float = 1.0,
    integration: str = "additive",
    param_dtype=jnp.float32,
    dtype=None,
) -> base.Cell:
    """Gated recurrent unit.

    With `reset_after=True` (default; the cuDNN, PyTorch, Keras and Flax form):

        r = gate(x @ W_ir + b_ir + h @ W_hr + b_hr)
        z = gate(x @ W_iz + b_iz + h @ W_hz + b_hz)
        n = act (x @ W_in + b_in + r * (h @ W_hn + b_hn))
        h_t = (1 - z) * n + z * h,    y_t = h_t

    With `reset_after=False` (Cho et al. 2014), the reset gate acts before the matmul:
    `n = act(x @ W_in + b_in + (r * h) @ W_hn + b_hn)`.

    Params: `w_x [F, 3H]`, `w_h [H, 3H]`, `b_x [3H]`, `b_h [3H]`, gate order r, z, n (PyTorch's
    `bias_ih`, `bias_hh`). Carry: `h [B..., H]`, zeros. `integration="multiplicative"` builds
    `variants.multiplicative("gru", ...)` (Wu et al. 2016).

    Cho et al., "Learning phrase representations using RNN encoder-decoder for statistical
    machine translation", EMNLP 2014.
    """
    if _multiplicative(integration, gate_activation != "sigmoid"):
        return variants.multiplicative("gru", hidden_size, activation=activation,
                                  reset_after=reset_after, init=init, init_scale=init_scale,
                                  param_dtype=param_dtype, dtype=dtype)
    H = base.check_size("hidden_size", hidden_size)
    act = base.get_activation(activation)
    gate = base.get_activation(gate_activation)
    w_h_init = base.recurrent_init(init, init_scale)

    def init_fn(key, input_size):
        kx, kh = jax.random.split(key)
        return {
            "w_x": base.input_kernel(kx, input_size, 3 * H, param_dtype),
            "w_h": base.recurrent_kernel(kh, w_h_init, H, 3, param_dtype),
            "b_x": jnp.zeros((3 * H,), param_dtype),
            "b_h": jnp.zeros((3 * H,), param_dtype),
        }

    def initial_carry(params, batch_shape):
        return jnp.zeros((*batch_shape, H), base.compute_dtype(params, dtype))

    def project(params, x):
        dt = base.compute_dtype(params, dtype)
        return x.astype(dt) @ params["w_x"].astype(dt) + params["b_x"].astype(dt)

    def reset_update(params, h, xp):
        w_h, b_h = params["w_h"].astype(h.dtype), params["b_h"].astype(h.dtype)
        x_r, x_z, _ = jnp.split(xp, 3, axis=-1)
        h = base.recurrent_input(params, h)
        h_r, h_z = jnp.split(h @ w_h[:, : 2 * H] + b_h[: 2 * H], 2, axis=-1)
        return gate(x_r + h_r), gate(x_z + h_z)

    def recur(params, h, xp):
        w_h, b_h = params["w_h"].astype(h.dtype), params["b_h"].astype(h.dtype)
        r, z = reset_update(params, h, xp)
        x_n = xp[..., 2 * H:]
        h_in = base.recurrent_input(params, h)
        if reset_after:
            n = act(x_n + r * (h_in @ w_h[:, 2 * H:] + b_h[2 * H:]))
        else:
            n = act(x_n + (r * h_in) @ w_h[:, 2 * H:] + b_h[2 * H:])
        h = (1 - z) * n + z * h
        return h, h

    def step(params, h, x):
        return recur(params, h, project(params, x))

    def gate_values(params, h, x):
        r, z = reset_update(params, h, project(params, x))
        return {"reset": r, "update": z}

    kernel = (kernels.gru(reset_after) if (activation, gate_activation) == ("tanh", "sigmoid")
              else None)
    return base.Cell(init_fn, initial_carry, step, project, recur, H, H, gate_values,
                     variational=True, kernel=kernel)


def jordan(
    hidden_size: int,
    *,
    output_size: int,
    activation="tanh",
    output_activation="softmax",
    mu: float = 0.0,
    init="orthogonal",
    init_scale: float = 1.0,
    param_dtype=jnp.float32,
    dtype=None,
) -> base.Cell:
    """Jordan network: the recurrent input is the previous OUTPUT, not the hidden state.

        s_t = f_t + mu * s_{t-1}                     f_t: the fed-back previous output
        h_t = act(x_t @ w_x + s_t @ w_s + b)
        y_t = h_t @ w_y + b_y                        (the cell emits these logits)

    What is fed back is chosen at apply time by the structure of the input:
      - `x_t` (an array) or `{"x": x_t}`: free running, `f_t = output_activation(y_{t-1})`
        (with the default softmax, the previous output distribution);
      - `{"x": x_t, "feedback": f_t}`: teacher forcing, `f_t` is given, e.g. the one-hot
        previous target;
      - `{"x": x_t, "key": k_t}` (one PRNG key per example and step): free running on a sample,
        `f_t = one_hot(categorical(k_t, y_{t-1}))`;
      - `{"x", "feedback", "key", "teacher": bool}`: scheduled sampling (Bengio et al. 2015),
        the given `f_t` where `teacher` is true, the model's own sample elsewhere.
    `jordan_inputs` builds these. `mu` is the fixed self-connection of the context units in
    Jordan's original (default 0, the common simplified form). With `mu = 0` and teacher
    forcing, the fed-back previous target IS the current input character, so the logits at
    step t depend on the token at t alone: the network is a first-order Markov chain over the
    alphabet (a learned bigram model), however large H is. With `mu > 0` the context is an
    exponentially decaying sum of the previous characters, its only memory.

    Params: `w_x [F, H]`, `w_s [O, H]`, `b [H]`, `w_y [H, O]`, `b_y [O]`.
    Carry: `(s, y)`, each `[B..., O]`, zeros: the context and the previous fed-back output.

    Jordan, "Serial order: a parallel distributed processing approach", ICS report 8604 (1986).
    """
    H = base.check_size("hidden_size", hidden_size)
    O = base.check_size("output_size", output_size)
    act = base.get_activation(activation)
    out_act = (lambda v: jax.nn.softmax(v, axis=-1)) if output_activation == "softmax" else (
        base.get_activation(output_activation)
    )
    w_s_init = base.recurrent_init(init, init_scale)

    def init_fn(key, input_size):
        kx, ks, ky = jax.random.split(key, 3)
        return {
            "w_x": base.input_kernel(kx, input_size, H, param_dtype),
            "w_s": base.draw(w_s_init, ks, (O, H), param_dtype),
            "b": jnp.zeros((H,), param_dtype),
            "w_y": base.input_kernel(ky, H, O, param_dtype),
            "b_y": jnp.zeros((O,), param_dtype),
        }

    def initial_carry(params, batch_shape):
        shape, dt = (*batch_shape, O), base.compute_dtype(params, dtype)
        return (jnp.zeros(shape, dt), jnp.zeros(shape, dt))

    def project(params, x):
        x = dict(x) if isinstance(x, dict) else {"x": x}
        dt = base.compute_dtype(params, dtype)
        x["x"] = x["x"].astype(dt) @ params["w_x"].astype(dt) + params["b"].astype(dt)
        return x

    def recur(params, carry, xp):
        s, y_prev = carry
        p = base.cast(params, s.dtype)
        f = y_prev
        if "feedback" in xp:
            f = xp["feedback"].astype(s.dtype)
            if "teacher" in xp:  # scheduled sampling: the target where true, else own sample
                f = jnp.where(xp["teacher"][..., None], f, y_prev)
        s = f + mu * s
        h = act(xp["x"] + s @ p["w_s"])
        y = h @ p["w_y"] + p["b_y"]
        if "key" in xp:
            sample = jax.vmap(jax.random.categorical)(
                xp["key"].reshape(-1), y.reshape(-1, O)
            ).reshape(y.shape[:-1])
            fed = jax.nn.one_hot(sample, O, dtype=s.dtype)
        else:
            fed = out_act(y)
        return (s, fed), y

    def step(params, carry, x):
        return recur(params, carry, project(params, x))

    return base.Cell(init_fn, initial_carry, step, project, recur, H, O)


def jordan_inputs(xs, *, feedback=None, key=None, teacher=None):
    """Builds a Jordan cell's input: `feedback` for teacher forcing, `key` to sample, all three
    with `teacher` for scheduled sampling.

    Args:
      xs: `[B..., T, F]` inputs.
      feedback: `[B..., T, O]` fed-back values (the previous targets: `feedback[..., t, :]`
        replaces the cell's own output of step t-1).
      key: one PRNG key; split into one key per example and step to sample the fed-back output.
      teacher: `[B..., T]` bool: where to feed `feedback` rather than the sample.
    """
    if feedback is not None and key is not None and teacher is None:
        raise ValueError("jordan_inputs: pass feedback (teacher forcing) or key (sampling), or "
                         "both with teacher (scheduled sampling)")
    if teacher is not None and (feedback is None or key is None):
        raise ValueError("jordan_inputs: teacher (scheduled sampling) needs feedback and key")
    inputs = {"x": xs}
    if teacher is not None:
        inputs["teacher"] = teacher
    if feedback is not None:
        inputs["feedback"] = feedback
    if key is not None:
        if not jnp.issubdtype(key.dtype, jax.dtypes.prng_key):
            key = jax.random.wrap_key_data(key)  # a raw uint32 key from jax.random.PRNGKey
        inputs["key"] = jax.random.split(key, xs.shape[:-1])
    return inputs
