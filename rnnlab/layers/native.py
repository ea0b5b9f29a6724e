"""The native path: oneDNN's RNN primitive runs the whole window, forward and backward (under
`jax.custom_vjp`), through XLA's FFI (`rnnlab.native` builds and registers it). CPU, float32,
the cells oneDNN has (`Kernel.native`: LSTM, GRU with the reset after or before the recurrent
matmul, Elman tanh or relu), either direction.

oneDNN cannot restart a stream inside a window, stop at a sequence's length or mask the
recurrent input, so a window with lengths or a recurrent dropout mask runs the hand-derived
path (`layers.custom_vjp`) instead, decided when traced; a window whose resets fall inside it
does so at run time (`lax.cond`), a reset at its first step being the carry it starts from.
Under `vmap` (trials trained together) the primitive runs once per trial; over several devices
each device runs it on its own rows of the batch. Under `backward="auto"` windows too small to
repay oneDNN's threads (`SMALLEST`) stay on the hand-derived path.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from rnnlab import native
from rnnlab.cells import base
from rnnlab.layers import custom_vjp, layer

# Kernel.native -> the cell's code in onednn_rnn.cc.
CODES = {"lstm": 0, "lbr_gru": 1, "rnn_tanh": 2, "rnn_relu": 3, "gru": 4}
FORWARD, REVERSE, CONCAT, SUM = 0, 1, 2, 3  # oneDNN's directions (`rnn`)
# Below this many batch x hidden units a window's steps are too small for oneDNN's threads: the
# hand-derived path ran one layer's gradient 1.02-2.3x faster at B x H = 256-4096 (LSTM and GRU,
# T=32); from 64 x 128 on oneDNN ties or wins (benchmarks/README.md, "The native path against
# the hand-derived one at small sizes"). "auto" runs smaller windows on the hand-derived path; a
# forced `backward="native"` runs them here.
SMALLEST = 64 * 128


def _forward(code: int, direction: int, training: bool, x, h0, c0, wl, wi, b):
    native.load()  # registers the targets (once per process)
    T, N, C = x.shape
    L, D, _, H = h0.shape
    ws = native.workspace_bytes(code, direction, L, T, N, C, H) if training else 0
    f32 = lambda shape: jax.ShapeDtypeStruct(shape, jnp.float32)  # noqa: E731
    out = (f32((T, N, 2 * H if direction == CONCAT else H)), f32(h0.shape), f32(c0.shape),
           jax.ShapeDtypeStruct((ws,), jnp.uint8))
    return jax.ffi.ffi_call("rnnlab_rnn_forward", out, vmap_method="sequential")(
        x, h0, c0, wl, wi, b, cell=np.int64(code), direction=np.int64(direction),
        training=training)


@functools.partial(jax.custom_vjp, nondiff_argnums=(0, 1))
def rnn(code: int, direction: int, x, h0, c0, wl, wi, b):
    """oneDNN's primitive over `L` layers in `D` directions: `x [T, N, C]`, `h0 [L, D, N, H]`,
    `c0` likewise (LSTM; `[0]` otherwise), weights `wl [L, D, C, G*H]`, `wi [L, D, H, G*H]`,
    bias `b [L, D, Gb*H]` in oneDNN's gate order -> `(y, hT, cT)`. `direction`: `FORWARD`,
    `REVERSE` (from `x[T-1]` to `x[0]`; `y[t]` is still the output of the step that read
    `x[t]`), `CONCAT` or `SUM` (D = 2: `y [T, N, 2H]` the directions concatenated, or `[T, N,
    H]` summed). Layers after the first read the previous one's output in the same direction
    (C == H); with both directions each stacks on itself and the directions meet only at the
    last layer's output (not a stack of bidirectional layers, where each layer reads both)."""
    return _forward(code, direction, False, x, h0, c0, wl, wi, b)[:3]


def _rnn_fwd(code, direction, x, h0, c0, wl, wi, b):
    y, hT, cT, ws = _forward(code, direction, True, x, h0, c0, wl, wi, b)
    return (y, hT, cT), (x, h0, c0, wl, wi, b, y, hT, cT, ws)


def _rnn_bwd(code, direction, residuals, cotangents):
    like = lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype)  # noqa: E731
    return jax.ffi.ffi_call("rnnlab_rnn_backward", tuple(map(like, residuals[:6])),
                            vmap_method="sequential")(
        *residuals, *cotangents, cell=np.int64(code), direction=np.int64(direction))


rnn.defvjp(_rnn_fwd, _rnn_bwd)


def _per_device(code: int, direction: int, x, h0, c0, w):
    """`rnn` on each device's rows when the batch is split over several devices (data
    parallelism: `rnnlab.parallel`'s one mesh axis over every device): XLA cannot split a
    foreign call, and would otherwise gather the batch and run it whole on every device. The
    weights' gradients are summed over the devices by `shard_map`'s transpose."""
    if jax.device_count() == 1:
        return rnn(code, direction, x, h0, c0, *w)
    from rnnlab import parallel  # (a layer otherwise knows nothing of meshes)

    P = jax.sharding.PartitionSpec
    split, whole = P(None, None, parallel.AXIS), P()
    c_spec = split if c0.ndim == 4 else whole
    return jax.shard_map(
        lambda x, h0, c0, *w: rnn(code, direction, x, h0, c0, *w), mesh=parallel.make_mesh(),
        in_specs=(P(None, parallel.AXIS), split, c_spec, whole, whole, whole),
        out_specs=(P(None, parallel.AXIS), split, c_spec), check_vma=False)(x, h0, c0, *w)


def onednn_params(name: str, p):
    """rnnlab's cell params -> oneDNN's `(weights_layer, weights_iter, bias)`, differentiably.
    LSTM (i, f, g, o) and Elman are oneDNN's layout already; a GRU's gates (r, z, n) go in
    oneDNN's order (u = z, r, o = n), its two biases summed where oneDNN has one."""
    if not name.endswith("gru"):
        return p["w_x"], p["w_h"], p["b"]
    H = p["w_h"].shape[0]
    zrn = lambda w: jnp.concatenate([w[..., H:2 * H], w[..., :H], w[..., 2 * H:]], -1)  # noqa
    summed = zrn(p["b_x"] + p["b_h"])
    b = (jnp.concatenate([summed[:2 * H], p["b_x"][2 * H:], p["b_h"][2 * H:]])
         if name == "lbr_gru" else summed)
    return zrn(p["w_x"]), zrn(p["w_h"]), b


def runs(cell: base.Cell, params, carry, window, how) -> bool:
    """The window is one the primitive computes (checked when traced): float32 inputs, carry and
    params (a bfloat16 layer computes in its carry's dtype), no lengths, no recurrent dropout
    mask; under "auto", at least `SMALLEST` batch x hidden units; over several devices, rows
    that split evenly."""
    if cell.kernel is None or cell.kernel.native not in CODES or isinstance(window.xs, dict):
        return False
    rows = int(np.prod(how.batch_shape, dtype=int))
    if how.options.backward == "auto" and rows * cell.hidden_size < SMALLEST:
        return False
    if rows % jax.device_count():  # over several devices, each takes an equal share of rows
        return False
    arrays = [window.xs, *jax.tree.leaves(carry), *(params[k] for k in cell.kernel.params)]
    return (all(a.dtype == jnp.float32 for a in arrays) and window.mask is None
            and how.h_mask is None)


def run(cell: base.Cell, params, carry, carry0, window, how):
    """The window through oneDNN (`how`: a `paths.How`); as `custom_vjp.run` where it cannot."""
    if not runs(cell, params, carry, window, how):
        return custom_vjp.run(cell, params, carry, carry0, window, how)
    batch_shape = how.batch_shape
    B = int(np.prod(batch_shape, dtype=int))
    rows = lambda a, lead: a.reshape(*a.shape[:lead], B, *a.shape[lead + len(batch_shape):])  # noqa
    xs = rows(window.xs, 1)
    T = xs.shape[0]
    code = CODES[cell.kernel.native]
    one = lambda a: a[None, None]  # one layer, one direction  # noqa: E731
    w = tuple(map(one, onednn_params(cell.kernel.native, params)))
    lstm = isinstance(carry, tuple)

    def through_onednn(start):
        h0, c0 = ((one(rows(start[0], 0)), one(rows(start[1], 0))) if lstm
                  else (one(rows(start, 0)), jnp.zeros((0,))))
        ys, hT, cT = _per_device(code, REVERSE if window.backwards else FORWARD, xs, h0, c0, w)
        unrows = lambda a, lead: a.reshape(*a.shape[:lead], *batch_shape, *a.shape[lead + 1:])  # noqa
        hT = unrows(hT[0, 0], 0)
        return ((hT, unrows(cT[0, 0], 0)) if lstm else hT), unrows(ys, 1)

    if window.reset is None:
        return through_onednn(carry)
    first = T - 1 if window.backwards else 0
    start = layer.where(window.reset[first], carry0, carry)
    inside = jnp.delete(window.reset, first, axis=0, assume_unique_indices=True)
    return jax.lax.cond(jnp.any(inside),
                        lambda: custom_vjp.run(cell, params, carry, carry0, window, how),
                        lambda: through_onednn(start))
