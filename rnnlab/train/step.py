"""The compiled computation of training, the same for every task: one update.

A plain function (not yet jitted) so that the loop can `jax.vmap` it over a leading trial axis
when it trains several trials as one program.
"""

from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp
import optax

from rnnlab.train import state as state_lib
from rnnlab.tasks import base

# Folded into a step's key for the task's batch (the key itself drives dropout).
BATCH_KEY = 0x62617463


def step_key(state: state_lib.TrainState) -> jax.Array:
    """The key of the state's step: it drives dropout, and (folded with BATCH_KEY) the batch."""
    return jax.random.fold_in(jax.random.wrap_key_data(state.key), state.step)


def train_batch(task: base.Task, state: state_lib.TrainState, data):
    """The train batch of the state's step (the one its update reads)."""
    return task.batch(data, state.step, jax.random.fold_in(step_key(state), BATCH_KEY))


def make_train_step(task: base.Task, tx: optax.GradientTransformation,
                    shard_batch: Callable = lambda batch: batch):
    """`(state, data) -> state`: one update on train batch `state.step`.

    A non-finite loss or gradient norm leaves params, optimizer state and carry as they were
    (the step still advances past that batch), is counted in `state.nonfinite`, and is left out
    of the metric sums. `shard_batch` places the batch's rows (data parallelism).
    """

    def train_step(state: state_lib.TrainState, data) -> state_lib.TrainState:
        key = step_key(state)
        batch = shard_batch(train_batch(task, state, data))

        def loss_fn(params):
            return task.loss(params, state.carry, batch, key)

        (loss, (carry, metrics)), grads = jax.value_and_grad(loss_fn, has_aux=True)(
            state.params)
        updates, opt_state = tx.update(grads, state.opt_state, state.params)
        params = optax.apply_updates(state.params, updates)
        grad_norm = optax.tree.norm(grads)
        # Skip the whole update, carry included: a NaN carry would poison every later window.
        # (optax.apply_if_finite guards only the params and optimizer state.)
        ok = jnp.isfinite(loss) & jnp.isfinite(grad_norm)

        def keep(new, old):
            return jax.tree_util.tree_map(lambda a, b: jnp.where(ok, a, b), new, old)

        metrics = {**metrics, "grad_norm": grad_norm}
        sums = {k: state.sums[k] + jnp.where(ok, v, 0.0) for k, v in metrics.items()}
        return state_lib.TrainState(
            step=state.step + 1,
            params=keep(params, state.params),
            opt_state=keep(opt_state, state.opt_state),
            carry=keep(jax.lax.stop_gradient(carry), state.carry),
            key=state.key,
            nonfinite=state.nonfinite + (~ok).astype(jnp.int32),
            first_nonfinite=jnp.where(
                ok | (state.first_nonfinite >= 0), state.first_nonfinite, state.step
            ),
            sums={**sums, "count": state.sums["count"] + ok.astype(jnp.int32)},
        )

    return train_step
