"""Taps: what diagnostics see of the layers they watch, passed to `apply` as `tap=`.

A `Tap` is handed to a layer's `apply` explicitly; `stack` and `bidirectional` pass it on to
their layers named by where they sit (`layer_0/fwd`, `decoder/layer_1`: `enter`). A tapped
`rnn` layer runs the sequential path (`paths.choose_path`: the tap looks inside each step,
which the hand-derived backward and the parallel scan do not have) and records the path it ran
in `Tap.paths`, so a diagnostic says which path it measured.

The tap travels as an argument all the way, from a task's `loss` / `evaluate` (`tap=`) through
the model's `apply` (`rnnlab.models`, which names a seq2seq model's parts `encoder/...` and
`decoder/...`) to the layers: this module holds no state of its own.
"""

from __future__ import annotations

from typing import NamedTuple

from rnnlab.cells import base


class Tap:
    """What diagnostics see of the `rnn` layers that a tap is passed to.

    The hooks run at trace time; a subclass overrides those it needs.
    """

    wants_steps = False  # whether `steps` is called (the layer then keeps its states)

    def __init__(self):
        self.paths: dict[str, str] = {}  # layer name -> the path it ran (see `ran`)

    def ran(self, name: str, path: str) -> None:
        """Told by each tapped layer which path (`paths.PATHS`) it ran."""
        vars(self).setdefault("paths", {})[name] = path  # (a subclass may skip __init__)

    def probe(self, name: str, carry, T: int):
        """A pytree shaped like `carry` with a leading time axis T, added to the carry that
        enters the step at each time t (before a reset; for a reversed layer, the state after
        time t+1), so that its gradient is dL/d(state) per step; or None."""
        return None

    def steps(self, name: str, cell: base.Cell, params, carries_in, xs, carries_out, mask):
        """After a layer's scan, in time-major order `[T, B..., ...]`: the carry each step read
        (after resets), its inputs (unprojected), the carry it wrote, and `mask [T, B...]`
        (valid steps; None when all are)."""

    def outputs(self, ys, lengths):
        """The outputs of a whole stack of layers (a model body) `[B..., T, H]`: returned
        changed or as they are."""
        return ys


class Named(NamedTuple):
    """A tap with the name of the place it is passed to."""

    tap: Tap
    name: str


def enter(tap: Tap | Named | None, name: str) -> Named | None:
    """The tap for the part `name` of what `tap` watches (None: no tap)."""
    if tap is None:
        return None
    if isinstance(tap, Named):
        return Named(tap.tap, f"{tap.name}/{name}" if tap.name else name)
    return Named(tap, name)


def split(tap: Tap | Named | None, default: str = "rnn") -> tuple[Tap | None, str]:
    """`(the Tap or None, the name of the place)`."""
    if isinstance(tap, Named):
        return tap.tap, tap.name or default
    return tap, default
