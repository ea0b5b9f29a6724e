"""Text sampling with temperature from a trained run.

    python -m rnnlab.sample --workdir=runs/quickstart --temperature=0.8 --prime="the " \
        --length=500 [--seed=0] [--argmax] [--checkpoint=best|last]

`generate` is the library function; the train loop calls it at every evaluation.
"""

from __future__ import annotations

import functools
import math
import os
import sys
import time

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from absl import logging

from rnnlab import checkpoint as checkpoint_lib
from rnnlab import data, layout, optim, rundir, state as state_lib, storage
from rnnlab import model as model_lib


def generate(
    model: model_lib.Model,
    params,
    prime: np.ndarray,
    length: int,
    *,
    temperature: float,
    key: jax.Array,
) -> jax.Array:
    """Feeds `prime` (token ids, at least one), then samples `length` tokens.

    Each token is drawn from softmax(logits / temperature) and fed back as the next input;
    `temperature=0` takes the argmax (the limit of temperature -> 0).
    """
    if len(prime) == 0:
        raise ValueError("sampling needs a non-empty prime to start from")
    return _generate(model, params, jnp.asarray(prime, jnp.int32), length, temperature, key)


@functools.partial(jax.jit, static_argnums=(0, 3))
def _generate(model, params, prime, length, temperature, key):
    carry = model.initial_carry(params, (1,))
    carry, _ = model.apply(params, carry, prime[None, :-1])  # T=0 when the prime is one token

    def body(state, k):
        carry, token = state
        carry, logits = model.apply(params, carry, token[:, None])
        logits = logits[:, 0].astype(jnp.float32)
        sampled = jax.random.categorical(k, logits / jnp.maximum(temperature, 1e-30))
        token = jnp.where(temperature > 0, sampled, jnp.argmax(logits, axis=-1))
        return (carry, token), token[0]

    _, tokens = jax.lax.scan(body, (carry, prime[-1:]), jax.random.split(key, length))
    return tokens


def encode_prime(vocab: data.Vocab, prime: str) -> np.ndarray:
    """The ids of `prime`; characters outside the vocabulary are an error, or, where the
    vocabulary has an unknown symbol, read as it with a warning that names them."""
    missing = sorted(set(prime) - set(vocab.chars))
    if missing and vocab.unk is None:
        raise ValueError(
            f"the prime has characters outside the model's vocabulary: {missing!r}; "
            f"the vocabulary is {''.join(vocab.chars)!r}"
        )
    if missing:
        logging.warning("the prime has characters outside the vocabulary, read as the unknown "
                        "symbol: %s", ", ".join(map(repr, missing)))
    return data.encode(vocab, prime)


def sample_text(
    workdir: str | os.PathLike,
    *,
    prime: str = "",
    length: int = 500,
    temperature: float = 0.8,
    seed: int = 0,
    checkpoint: str = "best",
) -> str:
    """Restores a run's params and returns `prime` followed by `length` sampled characters.

    Works while the run trains: a checkpoint replaced during the read is read again.
    Characters of `prime` outside the vocabulary are read as the unknown symbol, with a warning.
    """
    if not math.isfinite(temperature) or temperature < 0:
        raise ValueError(f"temperature must be a number >= 0 (0: argmax), got {temperature}")
    if length < 0:
        raise ValueError(f"length must be >= 0, got {length}")
    workdir = storage.path(workdir)
    record = layout.read_json(workdir / layout.CONFIG_FILE)
    if record is None:
        raise FileNotFoundError(f"{workdir} holds no run (no config.json); pass a run's --workdir")
    config = ml_collections.ConfigDict(record)
    vocab, default_prime = rundir.read_vocab(workdir)
    prime = prime or default_prime
    model = model_lib.build_model(config.model, len(vocab.chars))
    params = load_state(workdir, config, model, checkpoint=checkpoint).state.params
    tokens = generate(
        model, params, encode_prime(vocab, prime), length,
        temperature=temperature, key=jax.random.key(seed),
    )
    return prime + data.decode(vocab, np.asarray(tokens))


def load_state(workdir, config: ml_collections.ConfigDict, model: model_lib.Model, *,
               checkpoint: str = "best", attempts: int = 20) -> checkpoint_lib.Restored:
    """A run's newest checkpoint that verifies: "best" (falling back to the last one, with a
    warning, when the run has no usable best) or "last". Reads only, so it is safe while the
    run trains: a checkpoint replaced during the read is looked for again."""
    like = state_lib.init_state(config, model, optim.make_optimizer(config.optim,
                                                                    config.train.steps))
    order = [True, False] if checkpoint == "best" else [False]
    for best in order:
        for _ in range(attempts):
            skipped = []
            ckpt = checkpoint_lib.Checkpointer(workdir, config.train.keep_checkpoints,
                                               read_only=True)
            try:
                found = ckpt.restore(like, best=best,
                                     on_bad=lambda step, why: skipped.append(f"{step}: {why}"))
            finally:
                ckpt.close()
            if found is not None or not skipped:
                break
            time.sleep(0.1)  # a save in progress may have replaced it: look again
        if found is not None:
            break
        if best and skipped:
            logging.warning("%s has no best checkpoint that reads back (%s); using the last "
                            "checkpoint", workdir, "; ".join(skipped))
    if found is None:
        raise FileNotFoundError(f"{workdir} has no checkpoint that reads back yet"
                                + (f" (skipped: {'; '.join(skipped)})" if skipped else
                                   "; train first"))
    status = layout.read_status(workdir) or {}
    if best and status.get("best_step") not in (None, found.step):
        logging.warning("%s: status.json reports the best checkpoint at step %s, but step %d "
                        "is the best that reads back", workdir, status["best_step"], found.step)
    return found


def main(argv):
    del argv
    from absl import flags

    checkpoint_lib.quiet_orbax_logs()
    FLAGS = flags.FLAGS
    temperature = 0.0 if FLAGS.argmax else FLAGS.temperature
    try:
        text = sample_text(
            FLAGS.workdir, prime=FLAGS.prime, length=FLAGS.length, temperature=temperature,
            seed=FLAGS.seed, checkpoint=FLAGS.checkpoint,
        )
    except (ValueError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
    sys.stdout.write(text + "\n")


if __name__ == "__main__":
    from absl import app, flags

    flags.DEFINE_string("workdir", None, "The run directory to sample from.", required=True)
    flags.DEFINE_float("temperature", 0.8, "Softmax temperature; 0 takes the argmax.")
    flags.DEFINE_string("prime", "", "Text to start from (default: the run's validation start).")
    flags.DEFINE_integer("length", 500, "Characters to sample.")
    flags.DEFINE_integer("seed", 0, "Sampling seed.")
    flags.DEFINE_bool("argmax", False, "Take the most likely character at each step.")
    flags.DEFINE_enum("checkpoint", "best", ["best", "last"], "Which checkpoint to sample from.")
    app.run(main)
