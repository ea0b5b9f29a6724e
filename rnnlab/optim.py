"""Optimizers and learning-rate schedules built from the `optim` section of a config.

    tx = rnnlab.optim.make_optimizer(config.optim, total_steps=config.train.steps)
    opt_state = tx.init(params)
    updates, opt_state = tx.update(grads, opt_state, params)
    params = optax.apply_updates(params, updates)
    lr = rnnlab.optim.current_lr(opt_state)  # for logging

The chain, in order: clip each gradient element to [-clip_value, clip_value] (char-rnn's
grad_clip), rescale to global norm <= clip_norm, add weight_decay * params to the gradient
(L2; every optimizer but adamw, whose decay is decoupled), then the optimizer with the
scheduled learning rate. The whole chain sits inside `optax.inject_hyperparams`, so the state
holds the learning rate as an array and contains only arrays: it jits and checkpoints.

`check_optim_config` runs before anything is built. Shared keys (lr, clip_norm, clip_value,
weight_decay) are always checked; an optimizer's or schedule's own keys only when that optimizer
or schedule is selected, so a sweep over optimizers can leave the others' keys as they are.
"""

from __future__ import annotations

import inspect
import math
import numbers
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax
from ml_collections import config_dict

from rnnlab import config as config_lib

ConfigDict = config_dict.ConfigDict
_Transformation = optax.GradientTransformation


# Each optimizer at learning rate 1: the schedule multiplies its update afterwards (exactly
# the same numbers, since every one of these ends in a scale by -lr). `hp` holds the values.
OPTIMIZERS: dict[str, Callable[[dict[str, Any]], _Transformation]] = {
    "sgd": lambda hp: optax.sgd(1.0),
    "momentum": lambda hp: optax.sgd(1.0, momentum=hp["momentum"]),
    # char-rnn's torch optim.rmsprop: m starts at 0, update = lr * g / (sqrt(m) + eps). optax's
    # default puts eps inside the sqrt, a much smaller step where m is small.
    "rmsprop": lambda hp: optax.rmsprop(
        1.0, decay=hp["rms_decay"], eps=hp["eps"], eps_in_sqrt=False
    ),
    # min-char-rnn: mem starts at 0, update = lr * g / sqrt(mem + eps). optax's default starts
    # the sum of squares at 0.1, which shrinks the first steps of small gradients.
    "adagrad": lambda hp: optax.adagrad(1.0, initial_accumulator_value=0.0, eps=hp["eps"]),
    "adam": lambda hp: optax.adam(1.0, b1=hp["b1"], b2=hp["b2"], eps=hp["eps"]),
    "adamw": lambda hp: optax.adamw(
        1.0, b1=hp["b1"], b2=hp["b2"], eps=hp["eps"], weight_decay=hp["weight_decay"]
    ),
}


def _step(count, hp, total_steps, staircase):
    """char-rnn: lr until step decay_after, then one factor of decay_rate every decay_steps.

    lr(step) = lr                                                     if step < decay_after
             = lr * rate ** (floor((step - decay_after) / decay_steps) + 1)   otherwise
    Steps count from 0 (the first update uses lr(0)), so step decay_after is the first to use
    lr * rate. char-rnn decays after each epoch (iteration i % ntrain == 0, i from 1) once
    epoch >= learning_rate_decay_after: decay_after = that many epochs * ntrain, decay_steps =
    ntrain reproduce it, except that decay_after = 0 here decays from step 0 onwards.
    """
    after = hp["decay_after"]
    decays = jnp.where(count >= after, (count - after) // hp["decay_steps"] + 1, 0)
    return hp["lr"] * jnp.power(hp["decay_rate"], decays.astype(jnp.float32))


def _exponential(count, hp, total_steps, staircase):
    p = count / hp["decay_steps"]
    return hp["lr"] * hp["decay_rate"] ** (jnp.floor(p) if staircase else p)


def _cosine_factor(count, steps, final):
    # (1 - f) * (1 + cos(pi * min(s, N) / N)) / 2 + f, as optax.cosine_decay_schedule.
    progress = jnp.minimum(count, steps) / steps
    return (1 - final) * 0.5 * (1 + jnp.cos(jnp.pi * progress)) + final


def _warmup_cosine(count, hp, total_steps, staircase):
    warmup = hp["warmup_steps"]
    rise = hp["lr"] * count / jnp.maximum(warmup, 1)
    fall = hp["lr"] * _cosine_factor(count - warmup, total_steps - warmup, hp["final_lr_factor"])
    return jnp.where(count < warmup, rise, fall)


def _linear(count, hp, total_steps, staircase):
    progress = jnp.minimum(count, total_steps) / total_steps
    return hp["lr"] + (hp["lr"] * hp["final_lr_factor"] - hp["lr"]) * progress


# Schedules as jnp formulas of (count, hp, total_steps, staircase): the values in `hp` may be
# traced arrays, so trials that differ only in them can share one compiled program (vmap).
SCHEDULES: dict[str, Callable[..., jax.Array]] = {
    "constant": lambda count, hp, total_steps, staircase: hp["lr"] * jnp.ones_like(count),
    "exponential": _exponential,
    "step": _step,
    "cosine": lambda count, hp, total_steps, staircase: hp["lr"] * _cosine_factor(
        count, total_steps, hp["final_lr_factor"]
    ),
    "warmup_cosine": _warmup_cosine,
    "linear": _linear,
}

# The keys each optimizer and schedule reads, beyond the shared ones: only these are checked.
_SHARED_KEYS = ("lr", "clip_norm", "clip_value", "weight_decay")
_OPTIMIZER_KEYS = {
    "sgd": (),
    "momentum": ("momentum",),
    "rmsprop": ("rms_decay", "eps"),
    "adagrad": ("eps",),
    "adam": ("b1", "b2", "eps"),
    "adamw": ("b1", "b2", "eps"),
}
_SCHEDULE_KEYS = {
    "constant": (),
    "exponential": ("decay_rate", "decay_steps", "staircase"),
    "step": ("decay_rate", "decay_steps", "decay_after"),
    "cosine": ("final_lr_factor",),
    "warmup_cosine": ("warmup_steps", "final_lr_factor"),
    "linear": ("final_lr_factor",),
}
USES_TOTAL_STEPS = ("cosine", "warmup_cosine", "linear")


def _real(x: Any) -> bool:
    return isinstance(x, numbers.Real) and not isinstance(x, bool) and math.isfinite(x)


def _int(x: Any) -> bool:
    return isinstance(x, numbers.Integral) and not isinstance(x, bool)


_Rule = config_lib.Rule
_UNIT = "a number in [0, 1)"
# key -> (is the value allowed, what is allowed): the optimizer keys' rule table.
_RULES: dict[str, config_lib.Rule] = {
    "lr": _Rule(lambda x: _real(x) and x > 0, "a finite number > 0"),
    "clip_norm": _Rule(lambda x: _real(x) and x >= 0, "a finite number >= 0 (0: off)"),
    "clip_value": _Rule(lambda x: _real(x) and x >= 0, "a finite number >= 0 (0: off)"),
    "weight_decay": _Rule(lambda x: _real(x) and x >= 0, "a finite number >= 0 (0: off)"),
    "momentum": _Rule(lambda x: _real(x) and 0 <= x < 1, _UNIT),
    "rms_decay": _Rule(lambda x: _real(x) and 0 <= x < 1, _UNIT),
    "b1": _Rule(lambda x: _real(x) and 0 <= x < 1, _UNIT),
    "b2": _Rule(lambda x: _real(x) and 0 <= x < 1, _UNIT),
    "eps": _Rule(lambda x: _real(x) and x > 0, "a finite number > 0"),
    "decay_rate": _Rule(lambda x: _real(x) and 0 < x <= 1, "a number in (0, 1]"),
    "decay_steps": _Rule(lambda x: _int(x) and x > 0, "an integer > 0"),
    "decay_after": _Rule(lambda x: _int(x) and x >= 0, "an integer >= 0"),
    "warmup_steps": _Rule(lambda x: _int(x) and x >= 0, "an integer >= 0"),
    "final_lr_factor": _Rule(lambda x: _real(x) and 0 <= x <= 1, "a number in [0, 1]"),
    "staircase": _Rule(lambda x: isinstance(x, bool), "True or False"),
}


# Every numeric hyperparameter: a value in the optimizer state, never structure.
NUMERIC_KEYS = tuple(k for k in _RULES if k != "staircase")


def _check_name(optim: ConfigDict, key: str, registry: dict[str, Any], what: str) -> str:
    name = optim.get(key)
    if name not in registry:
        raise ValueError(
            f"optim.{key}={name!r} is not a known {what}; choose one of: {', '.join(sorted(registry))}"
        )
    return name


def _check_keys(optim: ConfigDict, keys: tuple[str, ...], context: str) -> None:
    for key in keys:
        if key not in optim:
            raise ValueError(f"optim.{key} is missing{context}; rnnlab/config.py declares it")
        ok, allowed = _RULES[key]
        if not ok(optim[key]):
            raise ValueError(f"optim.{key}={optim[key]!r} is invalid{context}: must be {allowed}")


def _check_schedule(optim: ConfigDict, total_steps: int | None) -> str:
    name = _check_name(optim, "schedule", SCHEDULES, "schedule")
    _check_keys(optim, ("lr",) + _SCHEDULE_KEYS[name], f" for optim.schedule={name!r}")
    if total_steps is not None and name in USES_TOTAL_STEPS:
        if not (_int(total_steps) and total_steps > 0):
            raise ValueError(
                f"total_steps={total_steps!r} is invalid for optim.schedule={name!r}: "
                "must be an integer > 0 (the schedule spans train.steps)"
            )
        if name == "warmup_cosine" and optim.warmup_steps >= total_steps:
            raise ValueError(
                f"optim.warmup_steps={optim.warmup_steps!r} is invalid for "
                f"optim.schedule='warmup_cosine': must be < total_steps={total_steps}"
            )
    return name


def check_optim_config(optim: ConfigDict, total_steps: int | None = None) -> None:
    """Raises ValueError naming the key, its value and what is allowed, for a bad `optim`.

    Args:
      optim: the `optim` section of a config (see rnnlab/config.py).
      total_steps: the number of optimizer steps (train.steps); when given, also checked
        against the schedules that span it (cosine, warmup_cosine, linear).
    """
    name = _check_name(optim, "name", OPTIMIZERS, "optimizer")
    _check_keys(optim, _SHARED_KEYS + _OPTIMIZER_KEYS[name], f" for optim.name={name!r}")
    _check_schedule(optim, total_steps)


def hyperparams(optim: ConfigDict) -> dict[str, float]:
    """The numeric values the optimizer and schedule of `optim` use (staircase is structure)."""
    keys = _SHARED_KEYS + _OPTIMIZER_KEYS[optim.name] + _SCHEDULE_KEYS[optim.schedule]
    return {k: optim[k] for k in keys if k != "staircase"}


def structure(optim: ConfigDict) -> tuple:
    """What fixes the shape of the optimizer's computation; the rest are values."""
    return (optim.name, optim.schedule, optim.staircase, optim.clip_value > 0,
            optim.clip_norm > 0, optim.weight_decay > 0)


class ScheduleState(NamedTuple):
    count: jax.Array  # updates made
    lr: jax.Array  # the learning rate of the last update (of the next, before any)


def _scale_by_schedule(schedule: Callable[[jax.Array], jax.Array]) -> _Transformation:
    # optax.scale_by_schedule, keeping the rate it used in the state so that it can be logged.
    def init(params):
        del params
        return ScheduleState(jnp.zeros((), jnp.int32), schedule(jnp.zeros((), jnp.int32)))

    def update(updates, state, params=None):
        del params
        lr = schedule(state.count)
        updates = jax.tree.map(lambda u: (u * lr).astype(u.dtype), updates)
        return updates, ScheduleState(state.count + 1, lr)

    return optax.GradientTransformation(init, update)


def make_optimizer(optim: ConfigDict, total_steps: int) -> optax.GradientTransformation:
    """Returns the optax chain: clip by value, clip by norm, L2 decay, optimizer, schedule.

    Every numeric hyperparameter (`hyperparams(optim)`) lives in the state as an array, through
    `optax.inject_hyperparams`; `structure(optim)` fixes the rest. So trials that share a
    structure share one `update` function: each trial's own `init` puts its values in its
    state, and a `jax.vmap` over stacked states trains them all in one program. The state is
    arrays only (it jits and checkpoints); `current_lr` reads the rate of the last update.

    Args:
      optim: the `optim` section of a config (see rnnlab/config.py).
      total_steps: the number of optimizer steps (train.steps), the length of the schedule.

    Raises:
      ValueError: a key of `optim` is invalid (see `check_optim_config`).
    """
    check_optim_config(optim, total_steps)
    name, schedule, staircase, clip_value, clip_norm, decay = structure(optim)

    def chain(**hp) -> optax.GradientTransformation:
        parts = []
        if clip_value:
            parts.append(optax.clip(hp["clip_value"]))
        if clip_norm:
            parts.append(optax.clip_by_global_norm(hp["clip_norm"]))
        if decay and name != "adamw":
            parts.append(optax.add_decayed_weights(hp["weight_decay"]))
        parts.append(OPTIMIZERS[name](hp))
        parts.append(_scale_by_schedule(
            lambda count: SCHEDULES[schedule](count, hp, total_steps, staircase)
        ))
        return optax.chain(*parts)

    values = hyperparams(optim)
    # inject_hyperparams binds the factory's signature: name each value as a parameter.
    chain.__signature__ = inspect.Signature(
        [inspect.Parameter(k, inspect.Parameter.KEYWORD_ONLY) for k in values]
    )
    return optax.inject_hyperparams(chain)(**values)


def _is_schedule_state(node: Any) -> bool:
    return isinstance(node, ScheduleState)


def current_lr(opt_state: Any) -> jax.Array:
    """The learning rate of the last update, read from a `make_optimizer` state.

    After N updates this is schedule(N - 1), the rate the N-th update used; before any update
    it is schedule(0). The state may be wrapped (optax.apply_if_finite, MultiSteps, ...). Under
    apply_if_finite a skipped update does not advance the schedule.

    Raises:
      ValueError: the state holds no learning_rate schedule state (not from make_optimizer).
    """
    for node in jax.tree.leaves(opt_state, is_leaf=_is_schedule_state):
        if _is_schedule_state(node):
            return node.lr
    raise ValueError("opt_state holds no learning_rate schedule; build it with make_optimizer")
