r"""Text sampling with temperature from a trained run, or decoding for a seq2seq run.

    python -m rnnlab.sample --workdir=runs/quickstart --temperature=0.8 --prime="the " \
        --length=500 [--seed=0] [--argmax] [--checkpoint=best|last]
    python -m rnnlab.sample --workdir=runs/addition --input="12+345" [--beam=4]

Reading the run (also one that is training) is `rnnlab.run.load`; the sampling itself is
`rnnlab.tasks.lm.generate`, which the train loop calls at every evaluation too.
"""

from __future__ import annotations

import math
import os
import sys

import jax
import numpy as np

from rnnlab import compile_cache, data, tasks
from rnnlab.run import checkpoint as checkpoint_lib
from rnnlab.run import load, storage
from rnnlab.tasks import lm, seq2seq

# Their old home, kept importable (scripts and tests call `sample.load_run`).
load_run, with_defaults, load_state = load.load_run, load.with_defaults, load.load_state


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
    config, record = load.load_run(workdir)
    if config.task.name in ("seq2seq", "vec2seq"):
        raise ValueError(f"{workdir} is a {config.task.name!r} run: pass --input=SOURCE to "
                         "decode one (sampling text is for language models, task.name='lm')")
    if config.task.name != "lm":
        raise ValueError(f"{workdir} is a {config.task.name!r} run, which has no text to "
                         "sample (that is for language models, task.name='lm'): "
                         f"python -m rnnlab.predict --workdir={workdir} --input=... predicts "
                         "with it, python -m rnnlab.evaluate scores it")
    vocab = lm.vocab(record)
    prime = prime or record["default_prime"]
    model = tasks.model(config, record)
    params = load.load_state(workdir, config, model, checkpoint=checkpoint).state.params
    tokens = lm.generate(model, params, lm.encode_prime(vocab, prime), length,
                         temperature=temperature, key=jax.random.key(seed))
    return prime + data.to_text(vocab, np.asarray(tokens))


def decode_input(workdir: str | os.PathLike, text: str, *, beam_size: int = 1,
                 length_penalty: float = 0.0, checkpoint: str = "best") -> str:
    """A seq2seq or vec2seq run's free-running decoding of one input (greedy, or beam)."""
    if beam_size < 1:
        raise ValueError(f"--beam must be >= 1, got {beam_size}")
    config, record = load.load_run(workdir)
    if config.task.name not in ("seq2seq", "vec2seq"):
        raise ValueError(f"{workdir} is a {config.task.name!r} run; --input decodes seq2seq and "
                         "vec2seq runs (use --prime to sample a language model, and "
                         "python -m rnnlab.predict for every task)")
    params = load.load_state(workdir, config, tasks.model(config, record),
                        checkpoint=checkpoint).state.params
    return seq2seq.translate(config, record, params, text, beam_size=beam_size,
                             length_penalty=length_penalty)


def main(argv):
    del argv
    from absl import flags

    checkpoint_lib.quiet_orbax_logs()
    compile_cache.enable()
    FLAGS = flags.FLAGS
    temperature = 0.0 if FLAGS.argmax else FLAGS.temperature
    try:
        if FLAGS.input is not None:
            text = decode_input(FLAGS.workdir, FLAGS.input, beam_size=FLAGS.beam,
                                length_penalty=FLAGS.length_penalty,
                                checkpoint=FLAGS.checkpoint)
        else:
            text = sample_text(
                FLAGS.workdir, prime=FLAGS.prime, length=FLAGS.length, temperature=temperature,
                seed=FLAGS.seed, checkpoint=FLAGS.checkpoint,
            )
    except (ValueError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
    sys.stdout.write(text + "\n")


if __name__ == "__main__":
    from absl import flags

    flags.DEFINE_string("workdir", None, "The run directory to sample from.", required=True)
    flags.DEFINE_float("temperature", 0.8, "Softmax temperature; 0 takes the argmax.")
    flags.DEFINE_string("prime", "", "Text to start from (default: the run's validation start).")
    flags.DEFINE_integer("length", 500, "Characters to sample.")
    flags.DEFINE_integer("seed", 0, "Sampling seed.")
    flags.DEFINE_bool("argmax", False, "Take the most likely character at each step.")
    flags.DEFINE_enum("checkpoint", "best", ["best", "last"], "Which checkpoint to sample from.")
    flags.DEFINE_string("input", None, "seq2seq/vec2seq runs: the source to decode (a text, or "
                        "a number for vec2seq).")
    flags.DEFINE_integer("beam", 1, "With --input: the beam size (1: greedy).")
    flags.DEFINE_float("length_penalty", 0.0, "With --input and a beam: GNMT's alpha.")
    from rnnlab import overrides

    overrides.run(main)
