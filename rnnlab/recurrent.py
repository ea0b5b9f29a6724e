"""Recurrent layers: a Cell lifted over time, and combinators over layers.

A Layer has `init(key, input_size) -> params`, `initial_carry(params, batch_shape) -> carry` and

    apply(params, carry, xs, *, reset=None, lengths=None, key=None, window=None) -> (carry, ys)

over batch-major `xs [B..., T, F]` (any number of leading batch dimensions, including none).
- `carry=None` starts from the initial carry.
- `reset [B..., T]` (bool): where true, the carry is replaced by the initial carry before that
  step: a new stream starts there, inside the window.
- `lengths [B...]` (int): right-padded sequences. Past a sequence's length the carry stops
  changing and the outputs are zero, so the returned carry is the one after the last valid step.
- `key`: randomness (training only: none is used when it is None): dropout between stacked
  layers, zoneout, weight drop, variational recurrent dropout.
- `window`: the index of this window within a sequence that runs over several windows
  (truncated BPTT of one long sequence). The layer then draws its per-window randomness from
  `fold_in(key, window)` and keeps what belongs to the whole sequence (the variational
  recurrent dropout mask) from `key` alone, so pass the same `key` to every window of a
  sequence. None: the window is the sequence.

`rnn` runs a cell over time (the ways it runs a window: `rnnlab.scans`); `stack` and
`bidirectional` compose layers.

Diagnostics look inside the layers through a `Tap` (`with tapping(tap): ...` around the code
being traced): each `rnn` layer, named by where it sits (`layer_0/fwd`, `decoder/layer_1`),
offers the tap its states, inputs and gradients without any change to the model code.
"""

from __future__ import annotations

import contextlib
from typing import Any, Callable, NamedTuple, Sequence

import jax
import jax.numpy as jnp

from rnnlab import scans
from rnnlab.cells import base

Params = dict[str, Any]
Carry = Any

PROJECTIONS = ("fused", "hoisted")
BACKWARDS = ("auto", "custom", "autodiff")
MERGES = ("concat", "sum")


class Layer(NamedTuple):
    """A recurrent layer: pure functions and its output size (the last axis of `ys`)."""

    init: Callable[[jax.Array, int], Params]
    initial_carry: Callable[[Params, tuple[int, ...]], Carry]
    apply: Callable[..., tuple[Carry, Any]]
    output_size: int


class Tap:
    """What diagnostics see of the `rnn` layers traced while it is active (`tapping`).

    The hooks run at trace time; a subclass overrides those it needs.
    """

    def probe(self, name: str, carry, T: int):
        """A pytree shaped like `carry` with a leading time axis T, added to the carry that
        enters the step at each time t (before a reset; for a reversed layer, the state after
        time t+1), so that its gradient is dL/d(state) per step; or None."""
        return None

    wants_steps = False  # whether `steps` is called (the layer then keeps its states)

    def steps(self, name: str, cell: base.Cell, params, carries_in, xs, carries_out, mask):
        """After a layer's scan, in time-major order `[T, B..., ...]`: the carry each step read
        (after resets), its inputs (unprojected), the carry it wrote, and `mask [T, B...]`
        (valid steps; None when all are)."""

    def outputs(self, ys, lengths):
        """The outputs of a whole stack of layers (a model body) `[B..., T, H]`: returned
        changed or as they are."""
        return ys


_TAPS: list[Tap] = []
_SCOPE: list[str] = []


@contextlib.contextmanager
def tapping(tap: Tap):
    """Makes `tap` see every `rnn` layer traced inside the block."""
    _TAPS.append(tap)
    try:
        yield tap
    finally:
        _TAPS.pop()


@contextlib.contextmanager
def scope(name: str):
    """Names the layers traced inside the block `name/...` (for taps)."""
    _SCOPE.append(name)
    try:
        yield
    finally:
        _SCOPE.pop()


def _main_input(xs):
    # Inputs may be a dict (e.g. a Jordan cell's {"x", "feedback"}); "x" fixes B... and T.
    return xs["x"] if isinstance(xs, dict) else xs


def _check_inputs(xs, reset, lengths, input_size):
    x = _main_input(xs)
    if x.ndim < 2:
        raise ValueError(f"xs must have shape [B..., T, F], got shape {tuple(x.shape)}")
    batch_shape, T = tuple(x.shape[:-2]), x.shape[-2]
    if input_size is not None and x.shape[-1] != input_size:
        raise ValueError(
            f"xs has {x.shape[-1]} features (shape {tuple(x.shape)}), but the layer was "
            f"initialised for input size {input_size}: expected xs of shape [B..., T, {input_size}]"
        )
    if reset is not None and tuple(reset.shape) != (*batch_shape, T):
        raise ValueError(
            f"reset must have shape [B..., T] = {(*batch_shape, T)} to match xs of shape "
            f"{tuple(x.shape)}, got {tuple(reset.shape)}"
        )
    if lengths is not None and tuple(lengths.shape) != batch_shape:
        raise ValueError(
            f"lengths must have shape [B...] = {batch_shape} to match xs of shape "
            f"{tuple(x.shape)}, got {tuple(lengths.shape)}"
        )
    return batch_shape, T


def _check_carry(carry, expected):
    got = jax.tree_util.tree_map(lambda c: tuple(c.shape), carry)
    want = jax.tree_util.tree_map(lambda c: tuple(c.shape), expected)
    if got != want:
        raise ValueError(
            f"carry has shapes {got}, expected {want} for these inputs "
            "(was it made for another batch shape?)"
        )


def _where(cond, new, old):
    """Per-example select over carry pytrees: `cond [B...]` broadcast over trailing axes."""

    def pick(a, b):
        return jnp.where(cond.reshape(cond.shape + (1,) * (a.ndim - cond.ndim)), a, b)

    return jax.tree_util.tree_map(pick, new, old)


def flip_sequences(xs: jax.Array, lengths: jax.Array, time_axis: int) -> jax.Array:
    """Reverses each sequence within its length; the padding stays at the end.

    `lengths` has the shape of `xs` before `time_axis` (as Flax's `flip_sequences`).
    """
    T = xs.shape[time_axis]
    t = jnp.arange(T)
    idx = jnp.where(t < lengths[..., None], lengths[..., None] - 1 - t, t)  # [B..., T]
    idx = idx.reshape(idx.shape + (1,) * (xs.ndim - idx.ndim))
    idx = jnp.broadcast_to(idx, xs.shape[: time_axis + 1] + idx.shape[time_axis + 1 :])
    return jnp.take_along_axis(xs, idx, axis=time_axis)


def _flip_time_major(xs, lengths):
    # xs [T, B..., ...], lengths [B...]
    nb = lengths.ndim
    flipped = flip_sequences(jnp.moveaxis(xs, 0, nb), lengths, nb)
    return jnp.moveaxis(flipped, nb, 0)


def rnn(
    cell: base.Cell,
    *,
    reverse: bool = False,
    unroll: int = 1,
    projection: str = "fused",
    learn_initial_carry: bool = False,
    parallel: bool | None = None,
    zoneout: float | Sequence[float] = 0.0,
    weight_drop: float = 0.0,
    recurrent_dropout: float = 0.0,
    backward: str = "auto",
    remat: int = 0,
) -> Layer:
    """A cell scanned over time with `jax.lax.scan`, or for a linear cell with a parallel scan.

    Args:
      cell: the Cell.
      reverse: process each sequence from its last valid step to its first (within `lengths`).
        `reset[t]` still marks where a stream starts, so going backwards the carry restarts
        after step t, before step t-1.
      unroll: `jax.lax.scan`'s unroll factor (a compiler knob; not the truncated-BPTT length).
      projection: "fused" computes the input projection inside each step (one matmul on
        [x_t, h]); "hoisted" computes it for all steps before the scan (one large matmul, the
        cuDNN approach). Fused is the default: it measured faster on XLA:CPU
        (benchmarks/README.md).
      learn_initial_carry: make the initial carry a parameter (`params["carry0"]`, unbatched),
        used at the start and at every reset.
      parallel: for a cell whose recurrence is linear (`cell.linear`: h_t = a_t h_{t-1} + b_t),
        evaluate a window with `jax.lax.associative_scan` over the (a_t, b_t) pairs (log T
        depth) instead of T sequential steps; True forces it, False forces the sequential scan,
        None (default) chooses the parallel scan for linear cells on accelerators and the
        sequential one on CPU, where it measured faster at training sizes (1.0-2.2x at B=16,
        H=128, T=256-4096; the parallel scan won only for latency-bound tiny layers, B=1, H=32:
        benchmarks/README.md). Resets, lengths and reverse mean the same in both. (While a
        diagnostics Tap watches, the sequential form runs.)
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
      backward: how gradients are computed. "custom": the cell's hand-derived backward pass over
        the whole window (`cell.kernel`, see `cells.fused`: elman and irnn with tanh or relu,
        lstm, gru); "autodiff": autodiff through the scan of `cell.step`; "auto" (default):
        custom when the cell has a kernel and neither zoneout nor remat is asked for, else
        autodiff. Both compute the same values and gradients (tested in float64). While a
        diagnostics Tap watches, autodiff runs.
      remat: rematerialise the scan every `remat` steps (`jax.checkpoint` around chunks of that
        many steps): the backward pass keeps the carries at the chunk boundaries and recomputes
        one chunk at a time, so memory grows with T / remat + remat steps instead of T, for
        one more forward pass. 0 (default): off. It runs the autodiff path.

    Params: `{"cell": cell params, "carry0": carry (only when learned)}`.
    """
    if recurrent_dropout and not cell.variational:
        raise ValueError("recurrent_dropout needs a cell that masks its recurrent input "
                         "(elman, irnn, lstm and its variants, gru)")
    if not 0.0 <= recurrent_dropout < 1.0:
        raise ValueError(f"recurrent_dropout must be a rate in [0, 1), got {recurrent_dropout}")
    if parallel and not cell.linear:
        raise ValueError("parallel=True needs a cell whose recurrence is linear (cell.linear)")
    rates = (zoneout,) if isinstance(zoneout, (int, float)) else tuple(zoneout)
    if not all(0.0 <= z < 1.0 for z in rates) or not 0.0 <= weight_drop < 1.0:
        raise ValueError(f"zoneout and weight_drop must be rates in [0, 1), got {zoneout} and "
                         f"{weight_drop}")
    zoning = any(rates)
    if parallel and zoning:
        raise ValueError("zoneout needs the sequential scan: set parallel=False (or None)")
    if parallel is None:
        parallel = cell.linear and not zoning and jax.default_backend() != "cpu"
    if projection not in PROJECTIONS:
        raise ValueError(f"unknown projection {projection!r}; choose one of {PROJECTIONS}")
    if not isinstance(unroll, int) or unroll < 1:
        raise ValueError(f"unroll must be a positive integer, got {unroll!r}")
    if backward not in BACKWARDS:
        raise ValueError(f"unknown backward {backward!r}; choose one of {BACKWARDS}")
    if backward == "custom" and (cell.kernel is None or zoning):
        raise ValueError("backward='custom' needs a cell with a hand-derived backward (elman or "
                         "irnn with tanh or relu, lstm, gru: no variants, leak or other "
                         "activations) and no zoneout; use backward='auto' or 'autodiff'")
    if not isinstance(remat, int) or remat < 0:
        raise ValueError(f"remat must be an integer >= 0 (steps per chunk; 0: off), got {remat!r}")
    if backward == "custom" and remat:
        raise ValueError("remat runs the autodiff path: use backward='auto' with it")
    custom = backward != "autodiff" and cell.kernel is not None and not zoning and not remat
    hoisted = projection == "hoisted"

    def init(key, input_size):
        params = {"cell": cell.init(key, base.check_size("input_size", input_size))}
        if learn_initial_carry:
            params["carry0"] = cell.initial_carry(params["cell"], ())
        return params

    def initial_carry(params, batch_shape):
        batch_shape = tuple(batch_shape)
        if "carry0" in params:
            return jax.tree_util.tree_map(
                lambda c: jnp.broadcast_to(c, (*batch_shape, *c.shape)), params["carry0"]
            )
        return cell.initial_carry(params["cell"], batch_shape)

    def apply(params, carry, xs, *, reset=None, lengths=None, key=None, window=None):
        cell_params = params["cell"]
        sequence_key, key = key, _window_key(key, window)
        if key is not None and weight_drop > 0.0 and "w_h" in cell_params:
            cell_params = _drop_connect(cell_params, jax.random.fold_in(key, 1), weight_drop)
        # The input kernel (an input projection `w_in` first) tells the input size expected.
        kernel = cell_params.get("w_in", cell_params.get("w_x"))
        input_size = None if kernel is None else kernel.shape[0]
        batch_shape, T = _check_inputs(xs, reset, lengths, input_size)
        nb = len(batch_shape)
        if sequence_key is not None and recurrent_dropout > 0.0:
            cell_params = {**cell_params, "h_mask": variational_mask(
                sequence_key, (*batch_shape, cell.hidden_size), recurrent_dropout)}
        carry0 = initial_carry(params, batch_shape)
        if carry is None:
            carry = carry0
        else:
            _check_carry(carry, carry0)

        xs_tm = jax.tree_util.tree_map(lambda a: jnp.moveaxis(a, nb, 0), xs)  # [T, B..., F]
        reset_tm = None if reset is None else jnp.moveaxis(jnp.asarray(reset, bool), nb, 0)
        mask = None
        if lengths is not None:
            lengths = jnp.clip(lengths, 0, T)  # a length past the window means "all of it"
            mask = jnp.arange(T).reshape((T,) + (1,) * nb) < lengths  # [T, B...]
        scan_reverse = False
        if reverse:
            if reset_tm is not None:
                # Backwards, the stream starting at t+1 ends before step t: restart there.
                reset_tm = jnp.concatenate([reset_tm[1:], jnp.zeros_like(reset_tm[:1])])
                if mask is not None:
                    reset_tm &= jnp.concatenate([mask[1:], jnp.zeros_like(mask[:1])])
            if lengths is None:
                scan_reverse = True
            else:
                xs_tm = jax.tree_util.tree_map(lambda a: _flip_time_major(a, lengths), xs_tm)
                if reset_tm is not None:
                    reset_tm = _flip_time_major(reset_tm, lengths)
        tap = _TAPS[-1] if _TAPS else None
        if parallel and tap is None:
            carry, ys = scans.parallel_scan(cell, cell_params, carry, carry0, xs_tm, reset_tm,
                                            mask, scan_reverse)
            if reverse and lengths is not None:
                ys = _flip_time_major(ys, lengths)
            return carry, jnp.moveaxis(ys, 0, nb)
        if custom and tap is None:
            carry, ys = scans.kernel_scan(cell.kernel, cell_params, carry, carry0, xs_tm,
                                          reset_tm, mask, batch_shape, reverse=scan_reverse,
                                          hoisted=hoisted, unroll=unroll)
            if reverse and lengths is not None:
                ys = _flip_time_major(ys, lengths)
            return carry, jnp.moveaxis(ys, 0, nb)
        name = "/".join(_SCOPE) or "rnn"
        probe = None if tap is None else tap.probe(name, carry, T)
        if probe is not None and reverse and lengths is not None:  # probe[t]: the step at t
            probe = jax.tree_util.tree_map(lambda a: _flip_time_major(a, lengths), probe)
        raw_tm = xs_tm if tap is not None and tap.wants_steps else None
        part_rates, zone = _zoneout_masks(carry, rates, key, T) if zoning else (None, None)
        if hoisted:
            xs_tm = cell.project(cell_params, xs_tm)
        step = cell.recur if hoisted else cell.step

        def body(carry, inputs):
            x_t, reset_t, mask_t, probe_t, zone_t = inputs
            if probe_t is not None:
                carry = jax.tree_util.tree_map(jnp.add, carry, probe_t)
            old = carry
            if reset_t is not None:
                carry = _where(reset_t, carry0, carry)
            carry_in = carry
            carry, y_t = step(cell_params, carry, x_t)
            if zone_t is not None:
                carry = _zoneout(carry_in, carry, part_rates, zone_t)
            if mask_t is not None:
                carry = _where(mask_t, carry, old)
                y_t = _where(mask_t, y_t, jax.tree_util.tree_map(jnp.zeros_like, y_t))
            return carry, (y_t, (carry_in, carry) if raw_tm is not None else None)

        carry, (ys, states) = scans.remat_scan(
            body, carry, (xs_tm, reset_tm, mask, probe, zone), T, reverse=scan_reverse,
            unroll=unroll, remat=remat)
        if reverse and lengths is not None:
            ys, states, raw_tm, mask = jax.tree_util.tree_map(
                lambda a: _flip_time_major(a, lengths), (ys, states, raw_tm, mask))
        if states is not None:
            tap.steps(name, cell, cell_params, states[0], raw_tm, states[1], mask)
        return carry, jax.tree_util.tree_map(lambda a: jnp.moveaxis(a, 0, nb), ys)

    return Layer(init, initial_carry, apply, cell.output_size)


def _window_key(key, window):
    return key if key is None or window is None else jax.random.fold_in(key, window)


def variational_mask(key: jax.Array, shape: tuple[int, ...], rate: float) -> jax.Array:
    """The variational recurrent dropout mask an `rnn` layer draws from its sequence key:
    0 where a unit is dropped, 1/(1-rate) where kept (float32)."""
    keep = jax.random.bernoulli(jax.random.fold_in(key, 3), 1.0 - rate, shape)
    return jnp.where(keep, 1.0 / (1.0 - rate), 0.0)


def _drop_connect(cell_params, key, rate):
    """The cell's params with entries of `w_h` dropped (and the rest scaled by 1/(1-rate))."""
    w_h = cell_params["w_h"]
    keep = jax.random.bernoulli(key, 1.0 - rate, w_h.shape)
    return {**cell_params, "w_h": jnp.where(keep, w_h / (1.0 - rate), 0.0).astype(w_h.dtype)}


def _zoneout_masks(carry, rates, key, T):
    """Per part of the carry: its rate, and its keep-masks of every step `[T, ...]` (None
    without a key: evaluation)."""
    parts = jax.tree_util.tree_leaves(carry)
    if len(rates) not in (1, len(parts)):
        raise ValueError(f"zoneout has {len(rates)} rates for a carry of {len(parts)} parts: "
                         "give one rate, or one per part")
    rates = rates if len(rates) == len(parts) else rates * len(parts)
    return rates, [None if key is None else jax.random.bernoulli(
        jax.random.fold_in(key, 2 + i), z, (T, *part.shape))
        for i, (z, part) in enumerate(zip(rates, parts))]


def _zoneout(old, new, rates, keep_t):
    """Each part of the carry: the old value where its mask keeps it (training), else the new
    one; without masks the mixture z * old + (1 - z) * new (evaluation)."""
    olds, treedef = jax.tree_util.tree_flatten(old)
    mixed = [z * o + (1 - z) * n if keep is None else jnp.where(keep, o, n)
             for o, n, z, keep in zip(olds, jax.tree_util.tree_leaves(new), rates, keep_t)]
    return jax.tree_util.tree_unflatten(treedef, mixed)


def stack(layers: Sequence[Layer], *, dropout: float = 0.0, residual: bool = False) -> Layer:
    """Layers applied one after another (a deep RNN).

    Args:
      layers: the layers, first to last; each one's input size is the previous one's output.
      dropout: drop rate on the outputs of each layer but the last, applied only when `apply`
        gets a `key` (so evaluation passes none).
      residual: add each layer's input to its output where their sizes match.

    Params: `{"layer_0": ..., "layer_1": ...}`. Carry: a tuple with one carry per layer.
    """
    layers = tuple(layers)
    if not layers:
        raise ValueError("stack needs at least one layer")
    if not 0.0 <= dropout < 1.0:
        raise ValueError(f"dropout must be in [0, 1), got {dropout!r}")

    def init(key, input_size):
        params = {}
        for i, (layer, k) in enumerate(zip(layers, jax.random.split(key, len(layers)))):
            params[f"layer_{i}"] = layer.init(k, input_size)
            input_size = layer.output_size
        return params

    def initial_carry(params, batch_shape):
        return tuple(
            layer.initial_carry(params[f"layer_{i}"], batch_shape) for i, layer in enumerate(layers)
        )

    def apply(params, carry, xs, *, reset=None, lengths=None, key=None, window=None):
        carries = []
        tap = _TAPS[-1] if _TAPS else None
        for i, layer in enumerate(layers):
            layer_key = None
            if key is not None:
                drop_key, layer_key = jax.random.split(jax.random.fold_in(key, i))
                drop_key = _window_key(drop_key, window)
                if i > 0 and dropout > 0.0:
                    keep = jax.random.bernoulli(drop_key, 1.0 - dropout, xs.shape)
                    xs = jnp.where(keep, xs / (1.0 - dropout), 0.0).astype(xs.dtype)
            layer_carry = None if carry is None else carry[i]
            with scope(f"layer_{i}"):
                c, ys = layer.apply(params[f"layer_{i}"], layer_carry, xs, reset=reset,
                                    lengths=lengths, key=layer_key, window=window)
            if residual and ys.shape == _main_input(xs).shape:
                ys = ys + _main_input(xs)
            carries.append(c)
            xs = ys
        return tuple(carries), xs if tap is None else tap.outputs(xs, lengths)

    return Layer(init, initial_carry, apply, layers[-1].output_size)


def bidirectional(
    fwd_cell: base.Cell, bwd_cell: base.Cell, *, merge: str = "concat", **rnn_options
) -> Layer:
    """A forward and a backward `rnn` over the same inputs, outputs merged.

    The backward direction reverses each sequence within its own length, so padding stays at
    the end (Flax's `flip_sequences`), and its outputs are put back in time order.

    Args:
      fwd_cell, bwd_cell: the cells of the two directions.
      merge: "concat" (output size H_fwd + H_bwd) or "sum" (the sizes must match).
      **rnn_options: passed to both `rnn` layers (unroll, projection, learn_initial_carry).

    Params: `{"fwd": ..., "bwd": ...}`. Carry: `(fwd carry, bwd carry)`.
    """
    if merge not in MERGES:
        raise ValueError(f"unknown merge {merge!r}; choose one of {MERGES}")
    if merge == "sum" and fwd_cell.output_size != bwd_cell.output_size:
        raise ValueError(
            f"merge='sum' needs equal output sizes, got {fwd_cell.output_size} and "
            f"{bwd_cell.output_size}"
        )
    fwd = rnn(fwd_cell, **rnn_options)
    bwd = rnn(bwd_cell, reverse=True, **rnn_options)

    def init(key, input_size):
        kf, kb = jax.random.split(key)
        return {"fwd": fwd.init(kf, input_size), "bwd": bwd.init(kb, input_size)}

    def initial_carry(params, batch_shape):
        return (
            fwd.initial_carry(params["fwd"], batch_shape),
            bwd.initial_carry(params["bwd"], batch_shape),
        )

    def apply(params, carry, xs, *, reset=None, lengths=None, key=None, window=None):
        carry_f, carry_b = (None, None) if carry is None else carry
        key_f, key_b = (None, None) if key is None else jax.random.split(key)
        with scope("fwd"):
            carry_f, ys_f = fwd.apply(params["fwd"], carry_f, xs, reset=reset, lengths=lengths,
                                      key=key_f, window=window)
        with scope("bwd"):
            carry_b, ys_b = bwd.apply(params["bwd"], carry_b, xs, reset=reset, lengths=lengths,
                                      key=key_b, window=window)
        ys = jnp.concatenate([ys_f, ys_b], axis=-1) if merge == "concat" else ys_f + ys_b
        return (carry_f, carry_b), ys

    size = fwd.output_size + bwd.output_size if merge == "concat" else fwd.output_size
    return Layer(init, initial_carry, apply, size)
