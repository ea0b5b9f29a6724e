"""What a config means before anything runs: its errors, and which configs train together.

`check_config` finds every bad value that needs no data and no compute. `split_groups` sorts
trials into those that can share one compiled program (they differ only in VALUE_KEYS).
"""

from __future__ import annotations

import json
import math

import ml_collections

from rnnlab import optim, tasks


class ConfigError(ValueError):
    """A bad config value, found before any compute."""


def check_train_config(t: ml_collections.ConfigDict) -> None:
    """Raises ValueError for a bad `config.train`, before any compute."""
    for key in ("steps", "batch_size", "log_every", "eval_every", "ckpt_every",
                "keep_checkpoints", "max_nonfinite", "final_eval_streams"):
        if not isinstance(t[key], int) or t[key] <= 0:
            raise ValueError(f"train.{key} must be a positive integer, got {t[key]!r}")
    if not isinstance(t.bptt_len, int) or t.bptt_len < 0:
        raise ValueError(f"train.bptt_len must be an integer >= 0 (0: full BPTT where the task "
                         f"allows it), got {t.bptt_len!r}")
    for key in ("eval_batches", "eval_batch_size", "sample_length"):
        if t[key] < 0:
            raise ValueError(f"train.{key} must be >= 0 (0: the default), got {t[key]!r}")
    if not isinstance(t.log_gradients, bool):
        raise ValueError(f"train.log_gradients must be True or False, got {t.log_gradients!r}")
    if t.sample_temperature < 0:
        raise ValueError(f"train.sample_temperature must be >= 0, got {t.sample_temperature}")


# A JAX key holds 32 bits of a seed: a larger seed would silently repeat a smaller one's run
# (2**32 gives seed 0's key), and training samples from the key of seed + 1.
MAX_SEED = 2**32 - 2


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
        seed = config.seed
        if not isinstance(seed, int) or isinstance(seed, bool) or not 0 <= seed <= MAX_SEED:
            raise ValueError(f"seed must be an integer from 0 to {MAX_SEED} (a JAX key holds 32 "
                             f"bits: a larger seed would repeat a smaller one's run), got "
                             f"{seed!r}")
        check_finite(config.to_dict())
        check_train_config(config.train)
        tasks.check(config)
        optim.check_optim_config(config.optim, config.train.steps)
    except ValueError as e:
        raise ConfigError(str(e)) from e


# Keys that only change values inside one compiled program: trials differing only in these
# train together under vmap (params come from each trial's own init; hyperparameters live in
# each trial's optimizer state).
VALUE_KEYS = ("seed", "model.init", "model.init_scale", "model.forget_bias") + tuple(
    f"optim.{k}" for k in optim.NUMERIC_KEYS
)


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
