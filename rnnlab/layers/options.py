"""The options of a recurrent layer, and their rules: checked here and nowhere else.

`rnn(cell, **options)` and the config checks (`rnnlab.model.check_model_config`) both call
`check`; only the spelling of the messages differs (`reverse=True` for the Python API,
`model.parallel_scan=True` for a config), through a `Spelling`.
"""

from __future__ import annotations

from typing import Any, NamedTuple, Sequence

from rnnlab.cells import base

PROJECTIONS = ("auto", "fused", "hoisted")
BACKWARDS = ("auto", "custom", "autodiff", "native")
MERGES = ("concat", "sum")


class Options(NamedTuple):
    """How an `rnn` layer runs its cell over time (see `rnnlab.layers.rnn.rnn` for each)."""

    reverse: bool = False
    unroll: int = 1
    projection: str = "auto"
    learn_initial_carry: bool = False
    parallel: bool | None = None
    zoneout: float | Sequence[float] = 0.0
    weight_drop: float = 0.0
    recurrent_dropout: float = 0.0
    backward: str = "auto"
    remat: int = 0

    @property
    def zoneout_rates(self) -> tuple[float, ...]:
        """The zoneout rates: one for the whole carry, or one per carry part."""
        z = self.zoneout
        return (z,) if isinstance(z, (int, float)) else tuple(z)

    @property
    def zoning(self) -> bool:
        return any(self.zoneout_rates)


class Spelling(NamedTuple):
    """How the messages name the options.

    Attributes:
      prefix: put before each name (`"model."` for a config).
      names: option -> the caller's name for it where it differs.
      quote: `repr` the values of settings (`backward='custom'`; a config's `model.backward=custom`).
      rate: the phrase of a rate's range rule.
      cell: the cell's name, said in a refusal for a cell that lacks something (None: not said).
    """

    prefix: str = ""
    names: dict[str, str] = {}
    quote: bool = True
    rate: str = "must be a rate in"
    cell: str | None = None

    def name(self, option: str) -> str:
        return self.prefix + self.names.get(option, option)

    def setting(self, option: str, value: Any) -> str:
        return f"{self.name(option)}={value!r}" if self.quote else f"{self.name(option)}={value}"

    def not_cell(self) -> str:
        return "" if self.cell is None else f", not {self.cell}"


PYTHON = Spelling()


def check_rate(value, name: str, spell: Spelling = PYTHON) -> None:
    if not 0.0 <= value < 1.0:
        raise ValueError(f"{spell.name(name)} {spell.rate} [0, 1), got {value}")


def _check_choice(value, option, choices, spell):
    if value not in choices:
        raise ValueError(f"unknown {spell.name(option)} {value!r}: {spell.name(option)} must be "
                         f"one of {choices}")


def _check_count(value, option, spell, least, what):
    if not isinstance(value, int) or isinstance(value, bool) or value < least:
        raise ValueError(f"{spell.name(option)} must be {what}, got {value!r}")


def check(cell: base.Cell, options: Options, spell: Spelling = PYTHON) -> None:
    """Raises ValueError for options that `cell` cannot run, or that contradict each other."""
    o, s = options, spell
    check_rate(o.recurrent_dropout, "recurrent_dropout", s)
    if o.recurrent_dropout and not cell.variational:
        raise ValueError(f"{s.name('recurrent_dropout')} needs a cell that masks its recurrent "
                         f"input (elman, irnn, lstm and its variants, gru){s.not_cell()}")
    if o.parallel and not cell.linear:
        raise ValueError(f"{s.setting('parallel', True)} needs a cell whose recurrence is linear "
                         f"(mingru, minlstm, lru){s.not_cell()}")
    if not all(0.0 <= z < 1.0 for z in o.zoneout_rates) or not 0.0 <= o.weight_drop < 1.0:
        raise ValueError(f"{s.name('zoneout')} and {s.name('weight_drop')} must be rates in "
                         f"[0, 1), got {o.zoneout} and {o.weight_drop}")
    if o.parallel and o.zoning:
        raise ValueError(f"{s.name('zoneout')} needs the sequential scan: set "
                         f"{s.setting('parallel', False)} (or leave it unset)")
    _check_choice(o.projection, "projection", PROJECTIONS, s)
    _check_count(o.unroll, "unroll", s, 1, "a positive integer")
    _check_choice(o.backward, "backward", BACKWARDS, s)
    if o.backward == "custom" and (cell.kernel is None or o.zoning):
        raise ValueError(f"{s.setting('backward', 'custom')} needs a cell with a hand-derived "
                         "backward (elman or irnn with tanh or relu, lstm, gru: no variants, "
                         f"leak or other activations) and no zoneout{s.not_cell()}; use "
                         f"{s.setting('backward', 'auto')} or 'autodiff'")
    _check_count(o.remat, "remat", s, 0,
                 "an integer >= 0 (steps per rematerialised chunk; 0: off)")
    if o.backward in ("custom", "native") and o.remat:
        raise ValueError(f"{s.name('remat')} runs the autodiff path: set "
                         f"{s.setting('backward', 'auto')} with it")
    if o.backward == "native":
        _check_native(cell, o, s)


def _check_native(cell, o, s):
    """`backward='native'`: a cell oneDNN has, options it can run, and the library here."""
    if cell.kernel is None or cell.kernel.native is None or o.zoning or o.recurrent_dropout:
        raise ValueError(f"{s.setting('backward', 'native')} needs a cell oneDNN has (elman or "
                         "irnn with tanh or relu, lstm, gru: no variants, leak or other "
                         f"activations) and no zoneout or recurrent dropout{s.not_cell()}; use "
                         f"{s.setting('backward', 'auto')}")
    import jax

    from rnnlab import native

    if jax.default_backend() != "cpu":
        raise ValueError(f"{s.setting('backward', 'native')} runs on a CPU; this backend is "
                         f"{jax.default_backend()}: use {s.setting('backward', 'auto')}")
    ok, why = native.status()
    if not ok:
        raise ValueError(f"{s.setting('backward', 'native')}: the native path is not available "
                         f"here: {why}")


def check_stack(dropout: float, spell: Spelling = PYTHON) -> None:
    """The options of `stack`: the dropout rate between layers."""
    check_rate(dropout, "dropout", spell)


def check_merge(merge: str, fwd: base.Cell, bwd: base.Cell) -> None:
    """The options of `bidirectional`: how the two directions' outputs are merged."""
    if merge not in MERGES:
        raise ValueError(f"unknown merge {merge!r}; choose one of {MERGES}")
    if merge == "sum" and fwd.output_size != bwd.output_size:
        raise ValueError(f"merge='sum' needs equal output sizes, got {fwd.output_size} and "
                         f"{bwd.output_size}")
