"""What a config means before anything runs: its errors, and which configs train together.

`check_config` is the one place that checks a whole config: it finds every bad value that
needs no data and no compute, running the rule tables of `rnnlab.config` (seed, train), the
task's `check` (its data and eval keys, and through `rnnlab.model.check_model_config` its
layers'), and `rnnlab.optim`'s table. `split_groups` sorts trials into those that can share one
compiled program (they differ only in VALUE_KEYS).
"""

from __future__ import annotations

import json
import math

import ml_collections

from rnnlab import config as config_lib
from rnnlab import optim, tasks
from rnnlab.run import trackers


class ConfigError(ValueError):
    """A bad config value, found before any compute."""


# Kept at its old name: the largest seed (see `rnnlab.config.SEED`).
MAX_SEED = config_lib.MAX_SEED


def check_finite(values: dict, prefix: str = "") -> None:
    """Raises ValueError naming the first float of a (nested) config dict that is NaN or
    infinite: every float rnnlab reads is a finite number."""
    for key, value in values.items():
        if isinstance(value, dict):
            check_finite(value, f"{prefix}{key}.")
        elif isinstance(value, float) and not math.isfinite(value):
            raise ValueError(f"{prefix}{key} must be a finite number, got {value}")


def check_config(config: ml_collections.ConfigDict) -> None:
    """Every config error that needs no data or compute, as a ConfigError saying what to do."""
    try:
        config_lib.check(config, config_lib.SEED)
        check_finite(config.to_dict())
        config_lib.check(config, config_lib.TRAIN)
        tasks.check(config)  # the task's data and eval keys, and its model's (model.py)
        optim.check_optim_config(config.optim, config.train.steps)
        if (problem := trackers.check(config)) is not None:
            raise ValueError(problem)
    except ValueError as e:
        raise ConfigError(str(e)) from e


# Keys that only change values inside one compiled program: trials differing only in these
# train together under vmap (params come from each trial's own init; hyperparameters live in
# each trial's optimizer state).
VALUE_KEYS = ("seed", "model.init", "model.init_scale", "model.forget_bias",
              # (not in the program at all: each trial stops on its own)
              "train.patience", "train.min_delta") + tuple(
    f"optim.{k}" for k in optim.NUMERIC_KEYS)


def group_key(config: ml_collections.ConfigDict) -> str:
    """Equal for configs that can train as one vmapped program (they differ in VALUE_KEYS)."""
    resolved = json.loads(config.to_json_best_effort())
    for key in VALUE_KEYS:
        section, _, leaf = key.rpartition(".")
        (resolved[section] if section else resolved).pop(leaf, None)
    resolved["optim_structure"] = optim.structure(config.optim)
    return json.dumps(resolved, sort_keys=True)


def split_groups(configs: list[ml_collections.ConfigDict]) -> list[list[int]]:
    """Indices of `configs`, grouped by `group_key`, in order of first appearance."""
    groups: dict[str, list[int]] = {}
    for i, config in enumerate(configs):
        groups.setdefault(group_key(config), []).append(i)
    return list(groups.values())
