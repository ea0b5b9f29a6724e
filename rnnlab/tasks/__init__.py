"""The registry of tasks: `config.task.name` -> the module that builds it.

    task = rnnlab.tasks.build(config)      # data loaded or generated, model built
    lm = rnnlab.tasks.model(config, record)  # the model alone, from a run's vocab.json

Each task module has `check(config)`, `build(config) -> Task`, `model(config, record)` and
`metric_names(config)`; see `rnnlab.tasks.base`.
"""

from __future__ import annotations

from types import ModuleType

import ml_collections

from rnnlab.tasks import base, classify, lm, seq2seq, synthetic
from rnnlab.tasks.base import Task  # noqa: F401  (the public name)

TASKS: dict[str, ModuleType] = {
    "lm": lm,
    "classify": classify,
    "regress": classify,
    "adding": synthetic,
    "copy": synthetic,
    "parity": synthetic,
    "seq2seq": seq2seq,
    "vec2seq": seq2seq,
}


def get(name: str) -> ModuleType:
    if name not in TASKS:
        raise ValueError(f"unknown task.name {name!r}; known tasks: {', '.join(sorted(TASKS))}")
    return TASKS[name]


def check(config: ml_collections.ConfigDict) -> None:
    """Every error of the task's config keys, as a ValueError naming the key."""
    get(config.task.name).check(config)


def build(config: ml_collections.ConfigDict) -> base.Task:
    return get(config.task.name).build(config)


def model(config: ml_collections.ConfigDict, record: dict):
    return get(config.task.name).model(config, record)


def metric_names(config: ml_collections.ConfigDict) -> tuple[str, ...]:
    return get(config.task.name).metric_names(config)
