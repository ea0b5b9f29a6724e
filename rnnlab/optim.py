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

import math
import numbers
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import optax
from ml_collections import config_dict

ConfigDict = config_dict.ConfigDict
_Transformation = optax.GradientTransformation


OPTIMIZERS: dict[str, Callable[[ConfigDict, optax.ScalarOrSchedule], _Transformation]] = {
    "sgd": lambda optim, lr: optax.sgd(lr),
    "momentum": lambda optim, lr: optax.sgd(lr, momentum=optim.momentum),
    # char-rnn's torch optim.rmsprop: m starts at 0, update = lr * g / (sqrt(m) + eps). optax's
    # default puts eps inside the sqrt, a much smaller step where m is small.
    "rmsprop": lambda optim, lr: optax.rmsprop(
        lr, decay=optim.rms_decay, eps=optim.eps, eps_in_sqrt=False
    ),
    # min-char-rnn: mem starts at 0, update = lr * g / sqrt(mem + eps). optax's default starts
    # the sum of squares at 0.1, which shrinks the first steps of small gradients.
    "adagrad": lambda optim, lr: optax.adagrad(lr, initial_accumulator_value=0.0, eps=optim.eps),
    "adam": lambda optim, lr: optax.adam(lr, b1=optim.b1, b2=optim.b2, eps=optim.eps),
    "adamw": lambda optim, lr: optax.adamw(
        lr, b1=optim.b1, b2=optim.b2, eps=optim.eps, weight_decay=optim.weight_decay
    ),
}


def _step(optim: ConfigDict, total_steps: int) -> optax.Schedule:
    """char-rnn: lr until step decay_after, then one factor of decay_rate every decay_steps.

    lr(step) = lr                                                     if step < decay_after
             = lr * rate ** (floor((step - decay_after) / decay_steps) + 1)   otherwise
    Steps count from 0 (the first update uses lr(0)), so step decay_after is the first to use
    lr * rate. char-rnn decays after each epoch (iteration i % ntrain == 0, i from 1) once
    epoch >= learning_rate_decay_after: decay_after = that many epochs * ntrain, decay_steps =
    ntrain reproduce it, except that decay_after = 0 here decays from step 0 onwards.
    """
    lr, rate, every, after = optim.lr, optim.decay_rate, optim.decay_steps, optim.decay_after

    def schedule(count: jax.Array) -> jax.Array:
        count = jnp.asarray(count)
        decays = jnp.where(count >= after, (count - after) // every + 1, 0)
        return lr * jnp.power(rate, decays.astype(jnp.result_type(float)))

    return schedule


SCHEDULES: dict[str, Callable[[ConfigDict, int], optax.Schedule]] = {
    "constant": lambda optim, total_steps: optax.constant_schedule(optim.lr),
    "exponential": lambda optim, total_steps: optax.exponential_decay(
        optim.lr, optim.decay_steps, optim.decay_rate, staircase=optim.staircase
    ),
    "step": _step,
    "cosine": lambda optim, total_steps: optax.cosine_decay_schedule(
        optim.lr, total_steps, alpha=optim.final_lr_factor
    ),
    # optax's decay_steps is the whole schedule, warmup included.
    "warmup_cosine": lambda optim, total_steps: optax.warmup_cosine_decay_schedule(
        0.0, optim.lr, optim.warmup_steps, total_steps, end_value=optim.lr * optim.final_lr_factor
    ),
    "linear": lambda optim, total_steps: optax.linear_schedule(
        optim.lr, optim.lr * optim.final_lr_factor, total_steps
    ),
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
_USES_TOTAL_STEPS = ("cosine", "warmup_cosine", "linear")


def _real(x: Any) -> bool:
    return isinstance(x, numbers.Real) and not isinstance(x, bool) and math.isfinite(x)


def _int(x: Any) -> bool:
    return isinstance(x, numbers.Integral) and not isinstance(x, bool)


_UNIT = "a number in [0, 1)"
# key -> (is the value allowed, what is allowed)
_RULES: dict[str, tuple[Callable[[Any], bool], str]] = {
    "lr": (lambda x: _real(x) and x > 0, "a finite number > 0"),
    "clip_norm": (lambda x: _real(x) and x >= 0, "a finite number >= 0 (0: off)"),
    "clip_value": (lambda x: _real(x) and x >= 0, "a finite number >= 0 (0: off)"),
    "weight_decay": (lambda x: _real(x) and x >= 0, "a finite number >= 0 (0: off)"),
    "momentum": (lambda x: _real(x) and 0 <= x < 1, _UNIT),
    "rms_decay": (lambda x: _real(x) and 0 <= x < 1, _UNIT),
    "b1": (lambda x: _real(x) and 0 <= x < 1, _UNIT),
    "b2": (lambda x: _real(x) and 0 <= x < 1, _UNIT),
    "eps": (lambda x: _real(x) and x > 0, "a finite number > 0"),
    "decay_rate": (lambda x: _real(x) and 0 < x <= 1, "a number in (0, 1]"),
    "decay_steps": (lambda x: _int(x) and x > 0, "an integer > 0"),
    "decay_after": (lambda x: _int(x) and x >= 0, "an integer >= 0"),
    "warmup_steps": (lambda x: _int(x) and x >= 0, "an integer >= 0"),
    "final_lr_factor": (lambda x: _real(x) and 0 <= x <= 1, "a number in [0, 1]"),
    "staircase": (lambda x: isinstance(x, bool), "True or False"),
}


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
            raise ValueError(f"optim.{key} is missing{context}; configs/base.py declares it")
        ok, allowed = _RULES[key]
        if not ok(optim[key]):
            raise ValueError(f"optim.{key}={optim[key]!r} is invalid{context}: must be {allowed}")


def _check_schedule(optim: ConfigDict, total_steps: int | None) -> str:
    name = _check_name(optim, "schedule", SCHEDULES, "schedule")
    _check_keys(optim, ("lr",) + _SCHEDULE_KEYS[name], f" for optim.schedule={name!r}")
    if total_steps is not None and name in _USES_TOTAL_STEPS:
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
      optim: the `optim` section of a config (see configs/base.py).
      total_steps: the number of optimizer steps (train.steps); when given, also checked
        against the schedules that span it (cosine, warmup_cosine, linear).
    """
    name = _check_name(optim, "name", OPTIMIZERS, "optimizer")
    _check_keys(optim, _SHARED_KEYS + _OPTIMIZER_KEYS[name], f" for optim.name={name!r}")
    _check_schedule(optim, total_steps)


def make_schedule(optim: ConfigDict, total_steps: int) -> optax.Schedule:
    """Returns the learning rate as a function of the step count s (0 for the first update).

    With lr = optim.lr, r = decay_rate, k = decay_steps, f = final_lr_factor, N = total_steps:
      constant       lr
      exponential    lr * r ** (s / k)   (staircase: floor(s / k))
      step           lr for s < decay_after, then lr * r ** (floor((s - decay_after) / k) + 1)
      cosine         lr * (f + (1 - f) * (1 + cos(pi * min(s, N) / N)) / 2)
      warmup_cosine  lr * s / W for s < W = warmup_steps, then cosine from lr to lr * f over
                     the remaining N - W steps
      linear         lr + (lr * f - lr) * min(s, N) / N

    Args:
      optim: the `optim` section of a config; `optim.schedule` picks one of SCHEDULES.
      total_steps: the number of optimizer steps; cosine, warmup_cosine and linear end there
        at lr * final_lr_factor and stay there.

    Raises:
      ValueError: a schedule key is invalid (see `check_optim_config`).
    """
    name = _check_schedule(optim, total_steps)
    return SCHEDULES[name](optim, total_steps)


def make_optimizer(optim: ConfigDict, total_steps: int) -> optax.GradientTransformation:
    """Returns the optax chain: clip by value, clip by norm, L2 decay, optimizer(schedule).

    The state is an `optax.InjectStatefulHyperparamsState` of arrays only; `current_lr` reads
    the learning rate from it. The learning rate is stored in the dtype of the params.

    Args:
      optim: the `optim` section of a config (see configs/base.py).
      total_steps: the number of optimizer steps (train.steps), the length of the schedule.

    Raises:
      ValueError: a key of `optim` is invalid (see `check_optim_config`).
    """
    check_optim_config(optim, total_steps)
    schedule = make_schedule(optim, total_steps)
    optimizer = OPTIMIZERS[optim.name]

    def chain(learning_rate: jax.Array) -> optax.GradientTransformation:
        parts = []
        if optim.clip_value > 0:
            parts.append(optax.clip(optim.clip_value))
        if optim.clip_norm > 0:
            parts.append(optax.clip_by_global_norm(optim.clip_norm))
        if optim.weight_decay > 0 and optim.name != "adamw":
            parts.append(optax.add_decayed_weights(optim.weight_decay))
        parts.append(optimizer(optim, learning_rate))
        return optax.chain(*parts)

    # Injecting the whole chain (not only the optimizer) puts the learning rate at the top of
    # the state; the schedule lives in the closure and only its step count in the state.
    return optax.inject_hyperparams(chain)(learning_rate=schedule)


def _is_injected(node: Any) -> bool:
    return isinstance(node, optax.InjectStatefulHyperparamsState)


def current_lr(opt_state: Any) -> jax.Array:
    """The learning rate of the last update, read from a `make_optimizer` state.

    After N updates this is schedule(N - 1), the rate the N-th update used; before any update
    it is schedule(0). The state may be wrapped (optax.apply_if_finite, MultiSteps, ...): the
    first injected learning rate found is returned. Under apply_if_finite a skipped update does
    not advance the schedule.

    Raises:
      ValueError: the state holds no injected learning rate.
    """
    for node in jax.tree.leaves(opt_state, is_leaf=_is_injected):
        if _is_injected(node) and "learning_rate" in node.hyperparams:
            return node.hyperparams["learning_rate"]
    raise ValueError("opt_state holds no injected learning_rate; build it with make_optimizer")
