"""Small helpers that build sweeps: lists of dicts of dotted config overrides.

    from launch import dsl

    def get_sweep(arg=None):
        return dsl.product(
            dsl.sweep("model.cell", ["elman", "lstm"]),
            dsl.sweep("train.bptt_len", [10, 20, 40, 80]),
            dsl.sweep("seed", [0, 1, 2]),
        )

Every helper returns a new `list[dict]`; a trial is one dict such as
`{"model.cell": "gru", "train.bptt_len": 40, "seed": 1}`. Random search draws from seeded
distributions (uniform, log-uniform, choice, integers), as in Greff et al. 2015's search.
"""

from __future__ import annotations

import builtins
import itertools
import math
import random as random_lib
from typing import Any, Callable, Iterable, Sequence

Trial = dict[str, Any]


def sweep(key: str, values: Iterable[Any]) -> list[Trial]:
    """One axis: `[{key: v} for v in values]`."""
    values = list(values)
    if not values:
        raise ValueError(f"sweep({key!r}) needs at least one value")
    return [{key: v} for v in values]


def fixed(key: str, value: Any) -> list[Trial]:
    """One trial that sets `key` to `value`; in a product it applies to every trial."""
    return [{key: value}]


def _merge(trials: Sequence[Trial]) -> Trial:
    out: Trial = {}
    for trial in trials:
        clash = set(out) & set(trial)
        if clash:
            raise ValueError(f"two axes set the same key(s) {sorted(clash)}")
        out.update(trial)
    return out


def product(*sweeps: Sequence[Trial]) -> list[Trial]:
    """The Cartesian product of sweeps (the last one varies fastest), merged into trials."""
    return [_merge(combo) for combo in itertools.product(*sweeps)]


def zip(*sweeps: Sequence[Trial]) -> list[Trial]:  # noqa: A001  (reads as dsl.zip)
    """Trial i merges trial i of every sweep; the sweeps must have the same length."""
    lengths = {len(s) for s in sweeps}
    if len(lengths) > 1:
        raise ValueError(f"zip needs sweeps of one length, got lengths {sorted(lengths)}")
    return [_merge(combo) for combo in builtins.zip(*sweeps)]


def chain(*sweeps: Sequence[Trial]) -> list[Trial]:
    """The trials of each sweep, one sweep after another."""
    return [dict(trial) for s in sweeps for trial in s]


# Distributions for random search: each is `(random.Random) -> value`.
Distribution = Callable[[random_lib.Random], Any]


def uniform(low: float, high: float) -> Distribution:
    return lambda r: r.uniform(low, high)


def loguniform(low: float, high: float) -> Distribution:
    if not 0 < low <= high:
        raise ValueError(f"loguniform needs 0 < low <= high, got {low}, {high}")
    return lambda r: math.exp(r.uniform(math.log(low), math.log(high)))


def choice(values: Sequence[Any]) -> Distribution:
    values = list(values)
    return lambda r: r.choice(values)


def randint(low: int, high: int) -> Distribution:
    """An integer in [low, high], both ends included."""
    return lambda r: r.randint(low, high)


def random(n: int, *, seed: int, **distributions: Distribution) -> list[Trial]:
    """`n` trials, each key drawn from its distribution; the same seed gives the same trials.

    Keys are dotted config keys passed as keyword arguments through a dict, e.g.
    `dsl.random(20, seed=0, **{"optim.lr": dsl.loguniform(1e-4, 1e-2)})`.
    """
    r = random_lib.Random(seed)
    keys = sorted(distributions)  # a fixed order of draws, whatever the call's order
    return [{k: distributions[k](r) for k in keys} for _ in range(n)]
