"""`rnn`: a Cell lifted over time, one layer. Its options are checked once (`options.check`);
the path that runs it is chosen by `paths.choose_path`; the paths, the regularisers and the
reversal of a backward layer each live in their own module."""

from __future__ import annotations

from typing import Sequence

import jax
import jax.numpy as jnp

from rnnlab.cells import base
from rnnlab.layers import layer, paths, regularisers, sequences
from rnnlab.layers import options as options_lib
from rnnlab.layers import taps


def rnn(
    cell: base.Cell,
    *,
    reverse: bool = False,
    unroll: int = 1,
    projection: str = "auto",
    learn_initial_carry: bool = False,
    parallel: bool | None = None,
    zoneout: float | Sequence[float] = 0.0,
    weight_drop: float = 0.0,
    recurrent_dropout: float = 0.0,
    backward: str = "auto",
    remat: int = 0,
) -> layer.Layer:
    """A cell scanned over time (see `layer` for `apply`'s arguments).

    Args:
      cell: the Cell.
      reverse: process each sequence from its last valid step to its first (within `lengths`).
        `reset[t]` still marks where a stream starts, so going backwards the carry restarts
        after step t, before step t-1.
      unroll: `jax.lax.scan`'s unroll factor (a compiler knob; not the truncated-BPTT length).
      projection: "fused" computes the input projection inside each step (one matmul on
        [x_t, h]); "hoisted" computes it for all steps before the scan (one large matmul, the
        cuDNN approach); "auto" (default): the backend's choice (`paths.choose_path`: fused on
        CPU, where it measured faster; hoisted on accelerators).
      learn_initial_carry: make the initial carry a parameter (`params["carry0"]`, unbatched),
        used at the start and at every reset.
      parallel: for a cell whose recurrence is linear (`cell.linear`: h_t = a_t h_{t-1} + b_t),
        evaluate a window with `jax.lax.associative_scan` over the (a_t, b_t) pairs (log T
        depth) instead of T sequential steps; True forces it, False forces the sequential scan,
        None (default): the backend's choice (`paths.choose_path`). Resets, lengths and
        reverse mean the same in both.
      zoneout: Krueger et al. 2016: with a `key` (training), each unit of the carry keeps its
        previous value with this probability, afresh at every step; without one (evaluation),
        the carry is the mixture `z * previous + (1 - z) * new`. One rate for the whole carry,
        or one per carry part (an LSTM's `(z_h, z_c)`). The layer emits the cell's un-zoned
        output. Zoneout makes the layer sequential.
      weight_drop: DropConnect on the recurrent matrix `w_h` (Merity et al. 2017): with a
        `key`, each entry is dropped with this probability (and the rest scaled by 1/(1-p)),
        one mask for the whole window; nothing at evaluation.
      recurrent_dropout: variational recurrent dropout (Gal and Ghahramani 2016): with a `key`,
        one mask per sequence over the units of h (each dropped with this probability, the rest
        scaled by 1/(1-p)), the same at every step, applied to h_{t-1} where it enters the
        recurrent matmuls only (the carry, an LSTM's c and a GRU's interpolation stay
        unmasked); nothing at evaluation. The mask comes from `key` (see `window`): the
        windows of one sequence share it, and a language model's streams, whose windows each
        get a new key, draw a new one per window as in Gal's PTB setup. Needs a cell that
        reads the mask (`cell.variational`: elman, irnn, lstm and its variants, gru).
      backward: which path computes the window and its gradients. "native": oneDNN's RNN
        primitive through XLA's FFI (`layers.native`, CPU, float32, the cells oneDNN has: elman
        and irnn with tanh or relu, lstm, gru; built on first use, see `rnnlab.native`);
        "custom": the cell's hand-derived backward pass over the whole window (`cell.kernel`,
        see `cells.kernels`, the same cells); "autodiff": autodiff through the scan of
        `cell.step`; "auto" (default): the backend's choice (`paths.choose_path`: on a CPU
        where it is built, native for lstm and gru windows large enough to repay it; custom
        when the cell has a kernel and neither zoneout nor remat is asked for; else autodiff).
        All compute the same values and gradients (custom and autodiff tested equal in
        float64; native in float32 against them, float64 NumPy loops of the equations and
        PyTorch).
      remat: rematerialise the scan every `remat` steps (`jax.checkpoint` around chunks of that
        many steps): the backward pass keeps the carries at the chunk boundaries and recomputes
        one chunk at a time, so memory grows with T / remat + remat steps instead of T, for
        one more forward pass. 0 (default): off. It runs the autodiff path.

    A tapped layer (`apply(..., tap=...)`) runs the sequential path and tells the tap so.

    Params: `{"cell": cell params, "carry0": carry (only when learned)}`.
    """
    options = options_lib.Options(reverse, unroll, projection, learn_initial_carry, parallel,
                                  zoneout, weight_drop, recurrent_dropout, backward, remat)
    options_lib.check(cell, options)
    return layer.Layer(_init(cell, options), _initial_carry(cell),
                       _apply(cell, options), cell.output_size)


def _init(cell, options):
    def init(key, input_size):
        params = {"cell": cell.init(key, base.check_size("input_size", input_size))}
        if options.learn_initial_carry:
            params["carry0"] = cell.initial_carry(params["cell"], ())
        return params

    return init


def _initial_carry(cell):
    def initial_carry(params, batch_shape):
        batch_shape = tuple(batch_shape)
        if "carry0" in params:
            return jax.tree_util.tree_map(
                lambda c: jnp.broadcast_to(c, (*batch_shape, *c.shape)), params["carry0"])
        return cell.initial_carry(params["cell"], batch_shape)

    return initial_carry


def _input_size(cell_params):
    # The input kernel (an input projection `w_in` first) tells the input size expected.
    kernel = cell_params.get("w_in", cell_params.get("w_x"))
    return None if kernel is None else kernel.shape[0]


def _apply(cell, options):
    initial_carry = _initial_carry(cell)

    def apply(params, carry, xs, *, reset=None, lengths=None, key=None, window=None, tap=None):
        watcher, name = taps.split(tap)
        window_key = regularisers.window_key(key, window)
        cell_params = regularisers.weight_drop(params["cell"], window_key, options.weight_drop)
        batch_shape, T = layer.check_inputs(xs, reset, lengths, _input_size(cell_params))
        h_mask = None
        if key is not None and options.recurrent_dropout > 0.0:  # from the sequence's key
            h_mask = regularisers.variational_mask(
                key, (*batch_shape, cell.hidden_size), options.recurrent_dropout)
        carry0 = initial_carry(params, batch_shape)
        if carry is None:
            carry = carry0
        else:
            layer.check_carry(carry, carry0)
        steps = sequences.time_major(xs, reset, lengths, T, len(batch_shape), options.reverse)
        choice = paths.choose_path(cell, options, jax.default_backend(),
                                   tapped=watcher is not None)
        if watcher is not None:
            watcher.ran(name, choice.path)
        how = paths.How(options, choice.hoisted, batch_shape, h_mask, window_key, watcher, name)
        carry, ys = paths.PATHS[choice.path].run(cell, cell_params, carry, carry0, steps, how)
        return carry, sequences.batch_major(steps, sequences.in_time_order(steps, ys))

    return apply
