"""The compiled computations of character LM training: one train step, one evaluation.

Both are plain functions (not yet jitted) so that the loop can `jax.vmap` them over a leading
trial axis when it trains several trials as one program.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import optax

from rnnlab import data
from rnnlab import model as model_lib
from rnnlab import state as state_lib


def _reset(batch_reset, carry_state):
    # Without carry_state every window starts from the initial carry (the stateless baseline).
    return batch_reset if carry_state else batch_reset.at[..., 0].set(True)


def make_train_step(model: model_lib.Model, tx: optax.GradientTransformation, bptt_len: int,
                    num_windows: int, carry_state: bool):
    """`(state, streams) -> state`: one truncated-BPTT update on window `state.step`.

    A non-finite loss or gradient norm leaves params, optimizer state and carry as they were
    (the step still advances past that batch) and is counted in `state.nonfinite`.
    """

    def train_step(state: state_lib.TrainState, streams: jax.Array) -> state_lib.TrainState:
        batch = data.get_batch(streams, state.step, bptt_len, num_windows=num_windows)
        reset = _reset(batch["reset"], carry_state)
        key = jax.random.fold_in(jax.random.wrap_key_data(state.key), state.step)

        def loss_fn(params):
            carry, logits = model.apply(params, state.carry, batch["inputs"], reset=reset, key=key)
            ce = optax.softmax_cross_entropy_with_integer_labels(logits, batch["targets"])
            return ce.mean(), (carry, logits)

        (loss, (carry, logits)), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
        updates, opt_state = tx.update(grads, state.opt_state, state.params)
        params = optax.apply_updates(state.params, updates)
        grad_norm = optax.tree.norm(grads)
        # Skip the whole update, carry included: a NaN carry would poison every later window.
        # (optax.apply_if_finite guards only the params and optimizer state.)
        ok = jnp.isfinite(loss) & jnp.isfinite(grad_norm)

        def keep(new, old):
            return jax.tree_util.tree_map(lambda a, b: jnp.where(ok, a, b), new, old)

        accuracy = jnp.mean(jnp.argmax(logits, -1) == batch["targets"])
        step_metrics = {"loss": loss, "accuracy": accuracy, "grad_norm": grad_norm}
        sums = {k: state.sums[k] + step_metrics[k] for k in state_lib.SUMS}
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
            sums={**sums, "count": state.sums["count"] + 1},
        )

    return train_step


def make_evaluate(model: model_lib.Model, bptt_len: int, carry_state: bool, num_windows: int,
                  count: int):
    """`(params, streams) -> (loss_sum, correct)` over the first `count` windows of a split,
    the state carried from window to window as in training, in one scan."""

    def evaluate(params, streams):
        def body(acc, index):
            carry, loss_sum, correct = acc
            batch = data.get_batch(streams, index, bptt_len, num_windows=num_windows)
            reset = _reset(batch["reset"], carry_state)
            carry, logits = model.apply(params, carry, batch["inputs"], reset=reset)
            ce = optax.softmax_cross_entropy_with_integer_labels(logits, batch["targets"])
            hits = jnp.sum(jnp.argmax(logits, -1) == batch["targets"])
            return (carry, loss_sum + ce.sum(), correct + hits), None

        carry = model.initial_carry(params, (streams.shape[0],))
        init = (carry, jnp.zeros((), jnp.float32), jnp.zeros((), jnp.int32))
        (_, loss_sum, correct), _ = jax.lax.scan(body, init, jnp.arange(count))
        return loss_sum, correct

    return evaluate
