"""The registry of tasks: `config.task.name` -> the module that builds it.

    task = rnnlab.tasks.build(config)      # data loaded or generated, model built
    lm = rnnlab.tasks.model(config, record)  # the model alone, from a run's vocab.json

Each task module has `check(config)`, `build(config) -> Task`, `model(config, record)` and
`metric_names(config)`, and may have `best(config)` (the scalar that picks the best
checkpoint); see `rnnlab.tasks.base`. Any other name (`task.name=my_task`,
`mypkg.my_task`) imports a task module of one's own.
"""

from __future__ import annotations

import math
import importlib
from types import ModuleType

import jax
import ml_collections
from absl import logging

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


# What a task module defines (see the module docstring).
TASK_FUNCTIONS = ("check", "build", "model", "metric_names")


def get(name: str) -> ModuleType:
    """The task module called `name`: a name in TASKS, or a module of one's own imported."""
    if name in TASKS:
        return TASKS[name]
    try:
        module = importlib.import_module(name)
    except ModuleNotFoundError as e:
        if e.name != name.partition(".")[0]:  # the module itself failed on its own import
            raise ValueError(f"task.name {name!r}: cannot import it: {e}") from None
        raise ValueError(f"unknown task.name {name!r}; known tasks: {', '.join(sorted(TASKS))} "
                         "(or a task module of your own on the PYTHONPATH)") from None
    except ImportError as e:
        raise ValueError(f"task.name {name!r}: cannot import it: {e}") from None
    missing = [f for f in TASK_FUNCTIONS if not callable(getattr(module, f, None))]
    if missing:
        raise ValueError(f"task.name {name!r}: a task module defines {', '.join(TASK_FUNCTIONS)}; "
                         f"it lacks {', '.join(missing)}")
    return module


def check(config: ml_collections.ConfigDict) -> None:
    """Every error of the task's config keys, as a ValueError naming the key."""
    get(config.task.name).check(config)


def build(config: ml_collections.ConfigDict) -> base.Task:
    """The task of `config`. With `model.param_budget` set, first sets `model.hidden_size` (in
    `config`) to the size whose model has the number of parameters closest to the budget."""
    task = get(config.task.name).build(config)
    if not config.model.get("param_budget"):
        return task
    size = fit_budget(config, task.record)
    if size != config.model.hidden_size:
        config.model.hidden_size = size
        task = get(config.task.name).build(config)
    return task


def count_params(config: ml_collections.ConfigDict, record: dict, hidden_size: int) -> int:
    """The number of parameters of the task's model with `model.hidden_size=hidden_size`."""
    sized = ml_collections.ConfigDict(config.to_dict())
    sized.model.hidden_size = hidden_size
    shapes = jax.eval_shape(model(sized, record).init, jax.random.key(0))
    return sum(math.prod(s.shape) for s in jax.tree_util.tree_leaves(shapes))


def fit_budget(config: ml_collections.ConfigDict, record: dict) -> int:
    """The hidden size whose model's parameter count (embedding and readout included) is
    closest to `model.param_budget` (Collins et al. 2017's parameter-matched comparisons)."""
    budget = config.model.param_budget
    if count_params(config, record, 1) > budget:
        raise ValueError(f"model.param_budget={budget} is smaller than the model at hidden size "
                         f"1 ({count_params(config, record, 1)} parameters)")
    low, high = 1, 2
    while count_params(config, record, high) < budget:
        low, high = high, 2 * high
    while high - low > 1:  # count(low) < budget <= count(high)
        middle = (low + high) // 2
        low, high = (middle, high) if count_params(config, record, middle) < budget else (
            low, middle)
    size = min((low, high), key=lambda h: abs(count_params(config, record, h) - budget))
    got = count_params(config, record, size)
    logging.info("model.param_budget=%d: hidden_size %d gives %d parameters (%+.2f%%)", budget,
                 size, got, 100 * (got - budget) / budget)
    return size


def model(config: ml_collections.ConfigDict, record: dict):
    return get(config.task.name).model(config, record)


def best(config: ml_collections.ConfigDict) -> tuple[str, str] | None:
    """(metric, "min" | "max"): the validation scalar that picks the task's best checkpoint,
    known from the config alone; None for a task module of one's own that does not say."""
    module = get(config.task.name)
    return module.best(config) if callable(getattr(module, "best", None)) else None


def metric_names(config: ml_collections.ConfigDict) -> tuple[str, ...]:
    return get(config.task.name).metric_names(config)
