"""The train state: everything a resumed run needs, as a pytree of arrays."""

from __future__ import annotations

from typing import Any, NamedTuple, Sequence

import jax
import jax.numpy as jnp
import ml_collections
import optax

from rnnlab import models


class TrainState(NamedTuple):
    """Attributes:
    step: int32, updates made so far; also the position in the data (batch index).
    params: the model's params.
    opt_state: the optimizer's state (its hyperparameters included, as arrays).
    carry: the recurrent state handed from one train step to the next (the LM's streams; no
      gradient flows through it across steps); None for tasks whose batches start afresh.
    key: raw PRNG key data (uint32), so that checkpoints hold plain arrays.
    nonfinite: int32, updates skipped because the loss or a gradient was not finite.
    first_nonfinite: int32, the step of the first such update; -1 while there is none.
    sums: the task's train metrics and the gradient norm summed over the updates applied since
      the last log line, and their `count`, so that a resumed run logs the same averages as an
      uninterrupted one.
    """

    step: jax.Array
    params: Any
    opt_state: Any
    carry: Any
    key: jax.Array
    nonfinite: jax.Array
    first_nonfinite: jax.Array
    sums: dict[str, jax.Array]


def zero_sums(metrics: Sequence[str]) -> dict[str, jax.Array]:
    return {**{k: jnp.zeros((), jnp.float32) for k in (*metrics, "grad_norm")},
            "count": jnp.zeros((), jnp.int32)}


def init_state(config: ml_collections.ConfigDict, model: models.Model,
               tx: optax.GradientTransformation, metrics: Sequence[str]) -> TrainState:
    """The state at step 0: params from `config.seed`, the initial carry for the train batch."""
    init_key, train_key = jax.random.split(jax.random.key(config.seed))
    params = model.init(init_key)
    return TrainState(
        step=jnp.zeros((), jnp.int32),
        params=params,
        opt_state=tx.init(params),
        carry=model.initial_carry(params, (config.train.batch_size,)),
        key=jax.random.key_data(train_key),
        nonfinite=jnp.zeros((), jnp.int32),
        first_nonfinite=jnp.full((), -1, jnp.int32),
        sums=zero_sums(metrics),
    )
