"""Layers made of layers: `stack` (a deep RNN) and `bidirectional` (two directions merged)."""

from __future__ import annotations

from typing import Sequence

import jax
import jax.numpy as jnp

from rnnlab.cells import base
from rnnlab.layers import layer, regularisers, taps
from rnnlab.layers import options as options_lib
from rnnlab.layers import lifted


def stack(layers: Sequence[layer.Layer], *, dropout: float = 0.0,
          residual: bool = False) -> layer.Layer:
    """Layers applied one after another (a deep RNN).

    Args:
      layers: the layers, first to last; each one's input size is the previous one's output.
      dropout: drop rate on the outputs of each layer but the last, applied only when `apply`
        gets a `key` (so evaluation passes none).
      residual: add each layer's input to its output where their sizes match.

    Params: `{"layer_0": ..., "layer_1": ...}`. Carry: a tuple with one carry per layer.
    A tap passed to `apply` watches layer i as `layer_i` (and sees the stack's outputs).
    """
    layers = tuple(layers)
    if not layers:
        raise ValueError("stack needs at least one layer")
    options_lib.check_stack(dropout)

    def init(key, input_size):
        params = {}
        for i, (sub, k) in enumerate(zip(layers, jax.random.split(key, len(layers)))):
            params[f"layer_{i}"] = sub.init(k, input_size)
            input_size = sub.output_size
        return params

    def initial_carry(params, batch_shape):
        return tuple(sub.initial_carry(params[f"layer_{i}"], batch_shape)
                     for i, sub in enumerate(layers))

    def apply(params, carry, xs, *, reset=None, lengths=None, key=None, window=None, tap=None):
        carries = []
        for i, sub in enumerate(layers):
            layer_key = None
            if key is not None:
                drop_key, layer_key = jax.random.split(jax.random.fold_in(key, i))
                if i > 0 and dropout > 0.0:
                    xs = regularisers.dropout(xs, regularisers.window_key(drop_key, window),
                                              dropout)
            c, ys = sub.apply(params[f"layer_{i}"], None if carry is None else carry[i], xs,
                              reset=reset, lengths=lengths, key=layer_key, window=window,
                              tap=taps.enter(tap, f"layer_{i}"))
            if residual and ys.shape == layer.main_input(xs).shape:
                ys = ys + layer.main_input(xs)
            carries.append(c)
            xs = ys
        watcher, _ = taps.split(tap)
        return tuple(carries), xs if watcher is None else watcher.outputs(xs, lengths)

    return layer.Layer(init, initial_carry, apply, layers[-1].output_size)


def bidirectional(fwd_cell: base.Cell, bwd_cell: base.Cell, *, merge: str = "concat",
                  **rnn_options) -> layer.Layer:
    """A forward and a backward `rnn` over the same inputs, outputs merged.

    The backward direction reverses each sequence within its own length, so padding stays at
    the end (Flax's `flip_sequences`), and its outputs are put back in time order.

    Args:
      fwd_cell, bwd_cell: the cells of the two directions.
      merge: "concat" (output size H_fwd + H_bwd) or "sum" (the sizes must match).
      **rnn_options: passed to both `rnn` layers (unroll, projection, learn_initial_carry, ...).

    Params: `{"fwd": ..., "bwd": ...}`. Carry: `(fwd carry, bwd carry)`. A tap passed to
    `apply` watches the directions as `fwd` and `bwd`.
    """
    options_lib.check_merge(merge, fwd_cell, bwd_cell)
    fwd = lifted.rnn(fwd_cell, **rnn_options)
    bwd = lifted.rnn(bwd_cell, reverse=True, **rnn_options)

    def init(key, input_size):
        kf, kb = jax.random.split(key)
        return {"fwd": fwd.init(kf, input_size), "bwd": bwd.init(kb, input_size)}

    def initial_carry(params, batch_shape):
        return (fwd.initial_carry(params["fwd"], batch_shape),
                bwd.initial_carry(params["bwd"], batch_shape))

    def apply(params, carry, xs, *, reset=None, lengths=None, key=None, window=None, tap=None):
        carry_f, carry_b = (None, None) if carry is None else carry
        key_f, key_b = (None, None) if key is None else jax.random.split(key)
        carry_f, ys_f = fwd.apply(params["fwd"], carry_f, xs, reset=reset, lengths=lengths,
                                  key=key_f, window=window, tap=taps.enter(tap, "fwd"))
        carry_b, ys_b = bwd.apply(params["bwd"], carry_b, xs, reset=reset, lengths=lengths,
                                  key=key_b, window=window, tap=taps.enter(tap, "bwd"))
        ys = jnp.concatenate([ys_f, ys_b], axis=-1) if merge == "concat" else ys_f + ys_b
        return (carry_f, carry_b), ys

    size = fwd.output_size + bwd.output_size if merge == "concat" else fwd.output_size
    return layer.Layer(init, initial_carry, apply, size)
