"""Text sampling with temperature from a trained run.

    python -m rnnlab.sample --workdir=runs/quickstart --temperature=0.8 --prime="the " \
        --length=500 [--seed=0] [--argmax] [--checkpoint=best|last]

`generate` is the library function; the train loop calls it at every evaluation.
"""

from __future__ import annotations

import functools
import json
import os
import sys

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from etils import epath

from rnnlab import checkpoint as checkpoint_lib
from rnnlab import data, optim, state as state_lib, storage
from rnnlab import model as model_lib

VOCAB_FILE = "vocab.json"


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


def save_vocab(workdir: epath.Path, vocab: data.Vocab, default_prime: str,
               fingerprint: str) -> None:
    record = {"chars": list(vocab.chars), "unk": vocab.unk, "default_prime": default_prime,
              "fingerprint": fingerprint}
    (workdir / VOCAB_FILE).write_text(json.dumps(record, ensure_ascii=False))


def load_vocab(workdir: str | os.PathLike) -> tuple[data.Vocab, str]:
    record = json.loads((storage.path(workdir) / VOCAB_FILE).read_text())
    return data.Vocab(tuple(record["chars"]), record["unk"]), record["default_prime"]


def encode_prime(vocab: data.Vocab, prime: str) -> np.ndarray:
    missing = sorted(set(prime) - set(vocab.chars))
    if missing and vocab.unk is None:
        raise ValueError(
            f"the prime has characters outside the model's vocabulary: {missing!r}; "
            f"the vocabulary is {''.join(vocab.chars)!r}"
        )
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
    """Restores a run's params and returns `prime` followed by `length` sampled characters."""
    if temperature < 0:
        raise ValueError(f"temperature must be >= 0 (0: argmax), got {temperature}")
    if length < 0:
        raise ValueError(f"length must be >= 0, got {length}")
    workdir = storage.path(workdir)
    if not (workdir / "config.json").exists():
        raise FileNotFoundError(f"{workdir} holds no run (no config.json); pass a run's --workdir")
    config = ml_collections.ConfigDict(json.loads((workdir / "config.json").read_text()))
    vocab, default_prime = load_vocab(workdir)
    prime = prime or default_prime
    model = model_lib.build_model(config.model, len(vocab.chars))
    ckpt = checkpoint_lib.Checkpointer(workdir, config.train.keep_checkpoints)
    best = checkpoint == "best" and ckpt.latest_step(best=True) is not None
    like = state_lib.init_state(config, model, optim.make_optimizer(config.optim,
                                                                    config.train.steps))
    restored = ckpt.restore(like, best=best)
    ckpt.close()
    if restored is None:
        raise FileNotFoundError(f"{workdir} has no checkpoint yet; train first")
    params = restored[0].params
    tokens = generate(
        model, params, encode_prime(vocab, prime), length,
        temperature=temperature, key=jax.random.key(seed),
    )
    return prime + data.decode(vocab, np.asarray(tokens))


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
