"""Recurrent cells as pure functions, and the registry that looks them up by name.

    cell = rnnlab.cells.get_cell("lstm", hidden_size=256, forget_bias=1.0)
    params = cell.init(key, input_size)
    carry = cell.initial_carry(params, (batch,))
    carry, y = cell.step(params, carry, x_t)

A name of the form `"package.module:factory"` imports a cell defined outside the library; the
factory takes `hidden_size` and options and returns a `Cell`.
"""

from __future__ import annotations

import importlib
import inspect
from typing import Callable

from rnnlab.cells import classic, gated, linear
from rnnlab.cells.base import ACTIVATIONS, Cell, get_activation  # noqa: F401  (public names)
from rnnlab.cells.classic import jordan_inputs  # noqa: F401

CELLS: dict[str, Callable[..., Cell]] = {
    "elman": classic.elman,
    "irnn": classic.irnn,
    "lstm": classic.lstm,
    "gru": classic.gru,
    "jordan": classic.jordan,
    "mgu": gated.mgu,
    "mut1": gated.mut1,
    "mut2": gated.mut2,
    "mut3": gated.mut3,
    "ugrnn": gated.ugrnn,
    "plus_rnn": gated.plus_rnn,
    "indrnn": gated.indrnn,
    "ln_lstm": gated.ln_lstm,
    "mingru": linear.mingru,
    "minlstm": linear.minlstm,
    "lru": linear.lru,
}


def _factory(name: str) -> Callable[..., Cell]:
    if ":" in name:
        module_name, _, attr = name.partition(":")
        try:
            module = importlib.import_module(module_name)
        except ImportError as e:
            raise ValueError(f"cell {name!r}: cannot import module {module_name!r}: {e}") from e
        if not hasattr(module, attr):
            raise ValueError(f"cell {name!r}: module {module_name!r} has no attribute {attr!r}")
        return getattr(module, attr)
    if name not in CELLS:
        raise ValueError(
            f"unknown cell {name!r}; known cells: {', '.join(sorted(CELLS))} "
            "(or 'package.module:factory' for a cell defined elsewhere)"
        )
    return CELLS[name]


def get_cell(name: str, *, hidden_size: int, **options) -> Cell:
    """Builds the cell registered as `name` with `hidden_size` and cell-specific `options`."""
    factory = _factory(name)
    signature = inspect.signature(factory)
    takes_any = any(p.kind is p.VAR_KEYWORD for p in signature.parameters.values())
    if not takes_any:
        unknown = sorted(set(options) - set(signature.parameters))
        if unknown:
            known = sorted(set(signature.parameters) - {"hidden_size"})
            raise ValueError(
                f"cell {name!r} has no option {', '.join(map(repr, unknown))}; "
                f"its options: {', '.join(known)}"
            )
    cell = factory(hidden_size=hidden_size, **options)
    if not isinstance(cell, Cell):
        raise TypeError(f"cell factory {name!r} returned {type(cell).__name__}, not a Cell")
    return cell
