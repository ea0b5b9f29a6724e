"""The backend policy: which path runs a layer, and which form of the input projection.

`choose_path(cell, options, backend)` is the one place that decides. Each choice cites the
measurement behind it; `benchmarks/layer_speed.py` measures every choice on the backend it runs
on, so a run of it on a GPU or TPU settles the choices that have no measurement yet.

The paths (each its own module), in `PATHS`, in the order they are tried:
- "parallel": the associative scan of a linear recurrence (`layers.parallel`);
- "native": oneDNN's RNN primitive through XLA's FFI (`layers.native`), CPU only;
- "custom_vjp": the cell's hand-derived backward over the whole window (`layers.custom_vjp`);
- "sequential": `jax.lax.scan` of the cell's step (`layers.sequential`), optionally in
  rematerialised chunks; runs every option, so it comes last and always applies.
Each is a `Path`: when it applies, and how it runs a window. A path of one's own is one more
entry (docs/ARCHITECTURE.md, "Adding a layer path").
"""

from __future__ import annotations

from typing import Any, Callable, NamedTuple

from rnnlab import native as native_lib
from rnnlab.cells import base
from rnnlab.layers import custom_vjp, native, parallel, sequential
from rnnlab.layers import options as options_lib


class Choice(NamedTuple):
    """The path that runs a layer and whether its input projection is hoisted out of the scan
    (one matmul over all steps before it) rather than computed inside each step."""

    path: str
    hoisted: bool


class Path(NamedTuple):
    """A way to run a layer's window.

    Attributes:
      applies: `(cell, options, backend) -> bool`: this path runs the layer (the first path of
        `PATHS` that applies does).
      run: `(cell, params, carry, carry0, window, how) -> (carry, ys [T, B..., H])`, `window` a
        `sequences.Window` (time-major), `how` a `How`; `ys` in the order the steps ran.
    """

    applies: Callable[[base.Cell, options_lib.Options, str], bool]
    run: Callable[..., Any]


class How(NamedTuple):
    """What a path is told besides the cell, its params and the window."""

    options: options_lib.Options
    hoisted: bool  # project the inputs of all steps before the loop
    batch_shape: tuple[int, ...]
    h_mask: Any = None  # the variational recurrent dropout mask [B..., H], or None
    zone_key: Any = None  # the window's key for zoneout's masks (None: evaluation)
    tap: Any = None  # the `taps.Tap` watching the layer, or None
    name: str = "rnn"  # the layer's name for the tap


def _parallel(cell: base.Cell, o: options_lib.Options, backend: str) -> bool:
    if o.parallel is not None:
        return o.parallel
    # CPU: the sequential scan measured faster at training sizes (the parallel scan 0.46-0.99x
    # at B=16, H=128, T=256-4096; it won only for latency-bound tiny layers, B=1, H=32:
    # benchmarks/README.md, "parallel_scan.py"). GPU, TPU: no measurement here yet; the parallel
    # scan is the form accelerators use for linear recurrences (log T depth keeps the device
    # busy): benchmarks/layer_speed.py settles it.
    return cell.linear and not o.zoning and backend != "cpu"


def _native(cell: base.Cell, o: options_lib.Options, backend: str) -> bool:
    if o.backward == "native":
        return True  # forced (`options.check` made sure it can run here)
    # CPU: oneDNN's primitive against the hand-derived backward, per training step of a char
    # model over L = 1, 2; H = 128, 512; B, T = (64, 100), (128, 64), (64, 64), (128, 100): LSTM
    # 0.99-1.34x, GRU 1.06-1.56x; Elman 0.75-1.09x, no consistent gain (its 2-layer H=128 slower
    # in every table), so an Elman layer stays on the hand-derived path unless forced (benchmarks/
    # README.md, "With the native CPU path", 2026-12-07). Small windows stay on the
    # hand-derived path too (`native.SMALLEST`). GPU, TPU: oneDNN is a CPU library.
    return (o.backward == "auto" and backend == "cpu" and cell.kernel is not None
            and cell.kernel.native in ("lstm", "lbr_gru", "gru") and not o.zoning
            and not o.remat and not o.recurrent_dropout and native_lib.available())


def _custom(cell: base.Cell, o: options_lib.Options, backend: str) -> bool:
    # CPU: the hand-derived backward against autodiff through the scan, per training step:
    # Elman 1.05-1.78x, GRU 0.93-1.19x, LSTM 0.96-1.16x (benchmarks/README.md, "train_step.py").
    # GPU, TPU: no measurement here yet; kept, as the form of cuDNN's kernels (only the dh
    # chain in the loop, weight gradients as large matmuls after it): benchmarks/layer_speed.py
    # settles it. It has no zoneout and no rematerialisation.
    return o.backward != "autodiff" and cell.kernel is not None and not o.zoning and not o.remat


def _hoisted(o: options_lib.Options, backend: str) -> bool:
    if o.projection != "auto":
        return o.projection == "hoisted"
    # CPU: the projection inside each step (one matmul on [x_t, h]) ran 1.2-1.6x faster than
    # hoisting x @ W_x out of the loop (hoisted at 0.63-0.85x of Flax, in-step at 1.00-1.07x:
    # benchmarks/README.md, "layer_speed.py"). GPU, TPU: no measurement
    # here yet; the form accelerators use (cuDNN's): the input projection hoisted, one
    # recurrent matmul per step. benchmarks/layer_speed.py settles it.
    return backend != "cpu"


PATHS: dict[str, Path] = {
    "parallel": Path(_parallel, parallel.run),
    "native": Path(_native, native.run),
    "custom_vjp": Path(_custom, custom_vjp.run),
    "sequential": Path(lambda cell, options, backend: True, sequential.run),
}


def choose_path(cell: base.Cell, options: options_lib.Options, backend: str, *,
                tapped: bool = False) -> Choice:
    """The path and projection that run `cell` with `options` on `backend` ("cpu", "gpu",
    "tpu": `jax.default_backend()`): the first of `PATHS` that applies.

    A tapped layer (diagnostics watching it) runs the sequential path: a tap looks inside each
    step, which the hand-derived backward and the parallel scan do not show.
    """
    hoisted = _hoisted(options, backend)
    if tapped:
        return Choice("sequential", hoisted)
    return Choice(next(name for name, path in PATHS.items()
                       if path.applies(cell, options, backend)), hoisted)
