"""The Cell noun and the small name registries the cells share (activations, initialisers).

A Cell is one time step of a recurrent network written as pure functions over a plain dict of
parameters. Argument order follows `jax.lax.scan`: `functools.partial(cell.step, params)` is a
scan body.
"""

from __future__ import annotations

from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp

Params = dict[str, jax.Array]
Carry = Any  # a pytree of arrays with leading batch dimensions


class Kernel(NamedTuple):
    """One cell's step with its hand-derived backward, for a whole-window scan
    (`rnnlab.layers.custom_vjp`). Shapes: B batch (one axis), F input, H hidden, G gate width.

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
      native: the oneDNN cell computing the same step ("lstm", "lbr_gru", "gru", "rnn_tanh",
        "rnn_relu"), which the native CPU path runs (`rnnlab.layers.native`); None: none.
    """

    params: tuple[str, ...]
    forward: Callable
    backward: Callable
    param_grads: Callable
    project: Callable
    native: str | None = None


class Cell(NamedTuple):
    """One recurrent time step.

    Attributes:
      init: `(key, input_size) -> params`, a dict of arrays with documented names.
      initial_carry: `(params, batch_shape) -> carry`; leaves have shape `(*batch_shape, ...)`.
      step: `(params, carry, x_t) -> (carry, y_t)`, the input projection fused into the step
        (one matmul on `[x_t, h]` where the cell allows it).
      project: `(params, x) -> xp`, the input projection alone; works on any leading shape, so a
        layer can apply it to all time steps at once (hoisted out of the scan, as cuDNN does).
      recur: `(params, carry, xp_t) -> (carry, y_t)`, the rest of the step given `project`'s
        output. `recur(p, c, project(p, x)) == step(p, c, x)`.
      hidden_size: H.
      output_size: the size of `y_t` (H for most cells).
      gates: `(params, carry, x_t) -> {name: [B..., H]}`, the gate activations of the step
        that `step` computes from the same arguments (for diagnostics); None for a cell without
        gates.
      linear: the recurrence is linear in the carry: `project(p, x_t)` gives `(a_t, b_t, ...)`
        and `recur` computes `h_t = a_t * h_{t-1} + b_t` (elementwise, real or complex) and
        `y_t = emit(p, h_t, project(p, x_t))`. A layer can then evaluate a window with a
        parallel scan.
      emit: a linear cell's output from its state (None: `y_t = h_t`).
      variational: the step reads `params["h_mask"]` through `recurrent_input`, so a layer can
        apply variational recurrent dropout (Gal and Ghahramani 2016) to it.
      kernel: a `Kernel` computing the same step with a hand-derived backward pass, which a
        layer runs over a whole window (`rnnlab.layers.custom_vjp`); None: autodiff through
        the step.
    """

    init: Callable[[jax.Array, int], Params]
    initial_carry: Callable[[Params, tuple[int, ...]], Carry]
    step: Callable[[Params, Carry, Any], tuple[Carry, jax.Array]]
    project: Callable[[Params, Any], Any]
    recur: Callable[[Params, Carry, Any], tuple[Carry, jax.Array]]
    hidden_size: int
    output_size: int
    gates: Callable[[Params, Carry, Any], dict[str, jax.Array]] | None = None
    linear: bool = False
    emit: Callable[[Params, Carry, Any], jax.Array] | None = None
    variational: bool = False
    kernel: Kernel | None = None


ACTIVATIONS: dict[str, Callable[[jax.Array], jax.Array]] = {
    "tanh": jnp.tanh,
    "relu": jax.nn.relu,
    "sigmoid": jax.nn.sigmoid,
    "identity": lambda x: x,
    "gelu": jax.nn.gelu,
    "silu": jax.nn.silu,
    "leaky_relu": jax.nn.leaky_relu,
    "elu": jax.nn.elu,
    "selu": jax.nn.selu,
    "softplus": jax.nn.softplus,
    "softsign": jax.nn.soft_sign,
    "hard_tanh": jax.nn.hard_tanh,
    "hard_sigmoid": jax.nn.hard_sigmoid,
    "relu6": jax.nn.relu6,
}


def get_activation(name: str | Callable) -> Callable[[jax.Array], jax.Array]:
    """Returns the activation called `name` (a callable is returned unchanged)."""
    if callable(name):
        return name
    if name not in ACTIVATIONS:
        raise ValueError(
            f"unknown activation {name!r}; known activations: {', '.join(sorted(ACTIVATIONS))}"
        )
    return ACTIVATIONS[name]


def _identity_init(scale):
    def init(key, shape, dtype=jnp.float32):
        del key
        return scale * jnp.eye(shape[0], shape[1], dtype=dtype)

    return init


def _uniform_init(scale):
    # PyTorch's RNN default: U(-1/sqrt(H), 1/sqrt(H)), H = the number of rows of W_hh.
    def init(key, shape, dtype=jnp.float32):
        bound = scale / jnp.sqrt(shape[0])
        return jax.random.uniform(key, shape, dtype, -bound, bound)

    return init


# Initialisers of one square recurrent block [H, H], by name; `scale` is the gain.
RECURRENT_INITS: dict[str, Callable[[float], Callable]] = {
    "orthogonal": lambda scale: jax.nn.initializers.orthogonal(scale),
    "identity": _identity_init,  # IRNN (Le et al. 2015): W_hh = scale * I
    "normal": lambda scale: jax.nn.initializers.variance_scaling(scale**2, "fan_in", "normal"),
    "lecun_normal": lambda scale: jax.nn.initializers.variance_scaling(
        scale**2, "fan_in", "truncated_normal"
    ),
    "uniform": _uniform_init,
}


def recurrent_init(name: str | Callable, scale: float = 1.0) -> Callable:
    """Returns an initialiser `(key, (H, H), dtype)` of one recurrent block, by name."""
    if callable(name):
        return name
    if name not in RECURRENT_INITS:
        raise ValueError(
            f"unknown recurrent init {name!r}; known inits: {', '.join(sorted(RECURRENT_INITS))}"
        )
    return RECURRENT_INITS[name](scale)


def draw(init: Callable, key: jax.Array, shape: tuple[int, ...], dtype) -> jax.Array:
    # Drawn in float32, then cast: the QR inside the orthogonal init has no bfloat16 kernel.
    return init(key, shape, jnp.float32).astype(dtype)


def input_kernel(key: jax.Array, input_size: int, width: int, dtype) -> jax.Array:
    """LeCun-normal input kernel [F, width] (Flax's default), independent of the gate count."""
    return draw(jax.nn.initializers.lecun_normal(), key, (input_size, width), dtype)


def recurrent_kernel(key: jax.Array, init: Callable, hidden_size: int, gates: int, dtype):
    """Recurrent kernel [H, gates*H], each gate's [H, H] block drawn separately (as Flax does)."""
    keys = jax.random.split(key, gates)
    blocks = [draw(init, k, (hidden_size, hidden_size), dtype) for k in keys]
    return jnp.concatenate(blocks, axis=1)


def check_size(name: str, value: int) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return value


def compute_dtype(params: Params, dtype) -> Any:
    """The dtype a step computes in: `dtype` when set, else the params' (all share one)."""
    return jnp.dtype(dtype) if dtype is not None else jax.tree_util.tree_leaves(params)[0].dtype


def cast(params: Params, dtype) -> Params:
    return {k: v.astype(dtype) for k, v in params.items()}


def blocks(v, n: int) -> list:
    """`v` split into n equal blocks along its last axis (one per gate)."""
    return jnp.split(v, n, axis=-1)


def kernels(key, input_size: int, H: int, n_x: int, n_h: int, init: Callable, dtype) -> Params:
    """`w_x [F, n_x*H]` (LeCun normal) and `w_h [H, n_h*H]` (`init` per block)."""
    kx, kh = jax.random.split(key)
    return {"w_x": input_kernel(kx, input_size, n_x * H, dtype),
            "w_h": recurrent_kernel(kh, init, H, n_h, dtype)}


def recurrent_input(params: Params, h: jax.Array) -> jax.Array:
    """`h_{t-1}` as the recurrent matmuls see it: times the layer's variational dropout mask
    `params["h_mask"] [B..., H]` (Gal and Ghahramani 2016) while training with one. The carry
    itself, and every other use of h (a GRU's interpolation, a leaky mix), stay unmasked."""
    mask = params.get("h_mask")
    return h if mask is None else h * mask.astype(h.dtype)


def cast_inputs(params: Params, x, dtype) -> tuple[Params, Any]:
    """The params and the input in the dtype a step computes in."""
    dt = compute_dtype(params, dtype)
    return cast(params, dt), x.astype(dt)
