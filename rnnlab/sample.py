"""Text sampling with temperature from a trained run, or decoding for a seq2seq run.

    python -m rnnlab.sample --workdir=runs/quickstart --temperature=0.8 --prime="the " \
        --length=500 [--seed=0] [--argmax] [--checkpoint=best|last]
    python -m rnnlab.sample --workdir=runs/addition --input="12+345" [--beam=4]

`load_run` and `load_state` read a run (also one that is training); the sampling itself is
`rnnlab.tasks.lm.generate`, which the train loop calls at every evaluation too.
"""

from __future__ import annotations

import math
import os
import sys
import time

import jax
import ml_collections
import numpy as np
from absl import logging

from rnnlab import checkpoint as checkpoint_lib
from rnnlab import compile_cache
from rnnlab import data, layout, optim, rundir, state as state_lib, storage, tasks
from rnnlab import models
from rnnlab.tasks import lm, seq2seq


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
    config, record = load_run(workdir)
    if config.task.name in ("seq2seq", "vec2seq"):
        raise ValueError(f"{workdir} is a {config.task.name!r} run: pass --input=SOURCE to "
                         "decode one (sampling text is for language models, task.name='lm')")
    if config.task.name != "lm":
        raise ValueError(f"{workdir} is a {config.task.name!r} run, which has no text to "
                         "sample (that is for language models, task.name='lm'); "
                         "python -m rnnlab.evaluate scores it")
    vocab = lm.vocab(record)
    prime = prime or record["default_prime"]
    model = tasks.model(config, record)
    params = load_state(workdir, config, model, checkpoint=checkpoint).state.params
    tokens = lm.generate(model, params, lm.encode_prime(vocab, prime), length,
                         temperature=temperature, key=jax.random.key(seed))
    return prime + data.to_text(vocab, np.asarray(tokens))


def decode_input(workdir: str | os.PathLike, text: str, *, beam_size: int = 1,
                 length_penalty: float = 0.0, checkpoint: str = "best") -> str:
    """A seq2seq or vec2seq run's free-running decoding of one input (greedy, or beam)."""
    if beam_size < 1:
        raise ValueError(f"--beam must be >= 1, got {beam_size}")
    config, record = load_run(workdir)
    if config.task.name not in ("seq2seq", "vec2seq"):
        raise ValueError(f"{workdir} is a {config.task.name!r} run; --input decodes seq2seq and "
                         "vec2seq runs (use --prime to sample a language model)")
    params = load_state(workdir, config, tasks.model(config, record),
                        checkpoint=checkpoint).state.params
    return seq2seq.translate(config, record, params, text, beam_size=beam_size,
                             length_penalty=length_penalty)


def load_run(workdir) -> tuple[ml_collections.ConfigDict, dict]:
    """A run's config and its task's record (vocab.json). Keys added to the library since the
    run was made take their defaults (which keep the behaviour from before they existed)."""
    workdir = storage.path(workdir)
    resolved = layout.read_json(workdir / layout.CONFIG_FILE)
    if resolved is None:
        raise FileNotFoundError(f"{workdir} holds no run (no config.json); pass a run's --workdir")
    return with_defaults(resolved), rundir.read_record(workdir)


def with_defaults(resolved: dict) -> ml_collections.ConfigDict:
    """`resolved` (a config as a dict) over the defaults of `configs.base`."""
    from configs import base

    config = base.get_config()

    def merge(section, values):
        for key, value in values.items():
            if isinstance(value, dict) and isinstance(section.get(key), ml_collections.ConfigDict):
                merge(section[key], value)
            else:
                section[key] = value

    with config.unlocked():
        merge(config, resolved)
    return ml_collections.ConfigDict(config.to_dict())


def load_state(workdir, config: ml_collections.ConfigDict, model: models.Model, *,
               checkpoint: str = "best", attempts: int = 20) -> checkpoint_lib.Restored:
    """A run's newest checkpoint that verifies: "best" (falling back to the last one, with a
    warning, when the run has no usable best), "last", or the one of a step (a number). Reads
    only, so it is safe while the run trains: a checkpoint replaced during the read is looked
    for again."""
    at_most = int(checkpoint) if str(checkpoint).isdigit() else None
    like = state_lib.init_state(config, model, optim.make_optimizer(config.optim,
                                                                    config.train.steps),
                                tasks.metric_names(config))
    order = [True, False] if checkpoint == "best" else [False]
    for best in order:
        for _ in range(attempts):
            skipped, found = [], None
            try:  # (listing the steps may meet one that a save is deleting)
                ckpt = checkpoint_lib.Checkpointer(workdir, config.train.keep_checkpoints,
                                                   read_only=True)
                try:
                    found = ckpt.restore(like, best=best, at_most=at_most,
                                         on_bad=lambda step, why: skipped.append(
                                             f"{step}: {why}"))
                finally:
                    ckpt.close()
            except OSError as e:
                skipped.append(checkpoint_lib.first_line(e))
            if found is not None or not skipped:
                break
            time.sleep(0.1)  # a save in progress may have replaced it: look again
        if found is not None:
            break
        if best and skipped:
            logging.warning("%s has no best checkpoint that reads back (%s); using the last "
                            "checkpoint", workdir, "; ".join(skipped))
    if at_most is not None and (found is None or found.step != at_most):
        steps = layout.checkpoint_steps(workdir)
        raise FileNotFoundError(f"{workdir} has no checkpoint of step {at_most} that reads back "
                                f"(its checkpoints: {', '.join(map(str, steps)) or 'none'})")
    if found is None:
        raise FileNotFoundError(f"{workdir} has no checkpoint that reads back yet"
                                + (f" (skipped: {'; '.join(skipped)}; if its config.json or "
                                   "vocab.json was edited, the model they describe no longer "
                                   "fits its checkpoints)" if skipped else "; train first"))
    status = layout.read_status(workdir) or {}
    if best and status.get("best_step") not in (None, found.step):
        logging.warning("%s: status.json reports the best checkpoint at step %s, but step %d "
                        "is the best that reads back", workdir, status["best_step"], found.step)
    return found


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
    from absl import app, flags

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

    app.run(main, flags_parser=overrides.parse_flags)
