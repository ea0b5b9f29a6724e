"""The synthetic long-memory tasks on which vanishing gradients and gating are studied.

- `adding` (Hochreiter & Schmidhuber 1997, in the two-channel form of Le et al. 2015 and of
  Arjovsky, Shah & Bengio 2016's `adding_problem.py`): inputs `[T, 2]`, channel 0 i.i.d.
  U[0, 1], channel 1 a marker that is 1 at one step i1 ~ U{0..T/2-1} and one step
  i2 ~ U{T/2..T-1}; the target is x[i1, 0] + x[i2, 0], read from the last step, MSE loss. Always
  predicting 1 scores MSE = Var(U1 + U2) = 1/6 (`baseline_mse`). T = `data.length`.
- `copy` (Arjovsky et al. 2016's `memory_problem.py`): 10 symbols (0 blank, 1-8 data, 9 the
  "go" delimiter); input `[s_1..s_10, 0 x (T-1), 9, 0 x 10]` with s_k ~ U{1..8}; target
  `[0 x (T+10), s_1..s_10]` over 9 classes, cross-entropy at every step averaged over the T+20
  steps. The memoryless strategy (blanks, then a uniform guess among 8) scores
  CE = 10 log 8 / (T + 20) (`baseline_loss`) and accuracy (T + 10 + 10/8) / (T + 20);
  `recall_accuracy` is the accuracy on the last 10 steps alone (chance 1/8). T = `data.delay`.
- `parity`: bits x_t ~ Bernoulli(0.5), t = 1..T; `task.target="final"`: the parity of their
  sum, read from the last step; `"running"`: the parity of the prefix at every step. Chance:
  accuracy 0.5, CE log 2. T = `data.length`.

Train batches are drawn afresh at every step from the trial's key; the validation and test sets
are `data.eval_examples` fixed examples each, drawn from a key that does not depend on the
seed, so every trial of a sweep is scored on the same examples.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from rnnlab import config as config_lib
from rnnlab import model as model_lib
from rnnlab import models
from rnnlab.tasks import base, encoder

TARGETS = ("final", "running")
EVAL_KEY = 20161121  # fixed: every seed is evaluated on the same examples
COPY_SYMBOLS, COPY_CLASSES, COPY_LENGTH = 10, 9, 10


def adding_examples(key, n: int, length: int) -> dict[str, jax.Array]:
    """n adding problems: `inputs [n, T, 2]` (values, markers) and `target [n]`."""
    k_values, k_first, k_second = jax.random.split(key, 3)
    values = jax.random.uniform(k_values, (n, length))
    first = jax.random.randint(k_first, (n,), 0, length // 2)
    second = jax.random.randint(k_second, (n,), length // 2, length)
    steps = jnp.arange(length)[None, :]
    marker = ((steps == first[:, None]) | (steps == second[:, None])).astype(values.dtype)
    rows = jnp.arange(n)
    return {"inputs": jnp.stack([values, marker], axis=-1),
            "target": values[rows, first] + values[rows, second]}


def copy_examples(key, n: int, delay: int) -> dict[str, jax.Array]:
    """n copy problems: `inputs [n, T+20]` symbols and `targets [n, T+20]` classes."""
    data = jax.random.randint(key, (n, COPY_LENGTH), 1, 9)
    blanks = lambda k: jnp.zeros((n, k), jnp.int32)  # noqa: E731
    go = jnp.full((n, 1), 9, jnp.int32)
    return {"inputs": jnp.concatenate([data, blanks(delay - 1), go, blanks(COPY_LENGTH)], 1),
            "targets": jnp.concatenate([blanks(delay + COPY_LENGTH), data], 1)}


def parity_examples(key, n: int, length: int) -> dict[str, jax.Array]:
    """n parity problems: `inputs [n, T]` bits, `targets [n, T]` prefix parities."""
    bits = jax.random.bernoulli(key, 0.5, (n, length)).astype(jnp.int32)
    return {"inputs": bits, "targets": jnp.cumsum(bits, axis=1) % 2}


GENERATORS = {"adding": adding_examples, "copy": copy_examples, "parity": parity_examples}


def _length(config) -> int:
    return config.data.delay if config.task.name == "copy" else config.data.length


def check(config: ml_collections.ConfigDict) -> None:
    d, name = config.data, config.task.name
    length = "data.delay" if name == "copy" else "data.length"
    config_lib.check(config, config_lib.DATA, (length, "data.eval_examples"))
    if d.path:
        raise ValueError(f"data.path={d.path!r}: task.name={name!r} generates its data and "
                         "would ignore the file; drop data.path")
    if name == "parity" and config.task.target not in TARGETS:
        raise ValueError(f"task.target must be one of {TARGETS}, got {config.task.target!r}")
    if per_step(config):
        model_lib.check_model_config(config.model, causal=True, jordan=False)
        steps = _sequence_length(config)
        if config.train.bptt_len and config.train.bptt_len < steps:
            raise ValueError(f"task.name={name!r} scores every step of a sequence of {steps}; "
                             f"it trains with full BPTT: set train.bptt_len=0 (got "
                             f"{config.train.bptt_len})")
    else:
        encoder.check(config, _sequence_length(config))


def per_step(config) -> bool:
    return config.task.name == "copy" or (config.task.name == "parity"
                                          and config.task.target == "running")


def _sequence_length(config) -> int:
    return config.data.delay + 2 * COPY_LENGTH if config.task.name == "copy" else \
        config.data.length


def best(config: ml_collections.ConfigDict) -> tuple[str, str]:
    """The validation scalar that picks the best checkpoint, and whether lower is better."""
    return {"adding": ("mse", "min"), "copy": ("loss", "min")}.get(config.task.name,
                                                                  ("accuracy", "max"))


def metric_names(config: ml_collections.ConfigDict) -> tuple[str, ...]:
    if config.task.name == "adding":
        return ("loss",)
    return ("loss", "accuracy", "recall_accuracy") if config.task.name == "copy" else \
        ("loss", "accuracy")


def model(config: ml_collections.ConfigDict, record: dict | None = None) -> models.Model:
    """The task's model: per step (copy, running parity) or pooled (adding, final parity)."""
    del record
    name, m = config.task.name, config.model
    if per_step(config):
        return models.per_step(m, output_size=COPY_CLASSES if name == "copy" else 2,
                               vocab_size=COPY_SYMBOLS if name == "copy" else 2)
    inputs = {"input_size": 2} if name == "adding" else {"vocab_size": 2}
    return models.pooled(m, pooling=config.task.pooling, bptt_len=config.train.bptt_len,
                         output_size=1 if name == "adding" else 2, full_length=True, **inputs)


def _scores(config, net, params, b, key, tap=None):
    """Per-example loss, and the metrics' per-example values, of a batch (`tap`: a diagnostics
    `layers.Tap` watching the model's layers)."""
    name = config.task.name
    n, T = b["inputs"].shape[0], b["inputs"].shape[1]
    if name == "adding":
        _, out = net.apply(params, None, b["inputs"], lengths=jnp.full((n,), T), key=key,
                           tap=tap)
        return {"loss": (out[:, 0] - b["target"]) ** 2}
    if not per_step(config):  # final parity
        _, logits = net.apply(params, None, b["inputs"], lengths=jnp.full((n,), T), key=key,
                              tap=tap)
        target = b["targets"][:, -1]
        return {"loss": optax.softmax_cross_entropy_with_integer_labels(logits, target),
                "accuracy": (jnp.argmax(logits, -1) == target).astype(jnp.float32)}
    _, logits = net.apply(params, None, b["inputs"], key=key, tap=tap)
    ce = optax.softmax_cross_entropy_with_integer_labels(logits, b["targets"])
    hits = (jnp.argmax(logits, -1) == b["targets"]).astype(jnp.float32)
    scores = {"loss": ce.mean(1), "accuracy": hits.mean(1)}
    if name == "copy":
        scores["recall_accuracy"] = hits[:, -COPY_LENGTH:].mean(1)
    return scores


def derive_for(config):
    name = config.task.name
    T = _length(config)
    if name == "adding":
        baseline = {"baseline_mse": 1.0 / 6.0}
    elif name == "copy":
        baseline = {"baseline_loss": COPY_LENGTH * math.log(8) / (T + 2 * COPY_LENGTH),
                    "baseline_accuracy": (T + COPY_LENGTH + COPY_LENGTH / 8)
                    / (T + 2 * COPY_LENGTH)}
    else:
        baseline = {"baseline_loss": math.log(2.0), "baseline_accuracy": 0.5}

    def derive(scalars):
        out = {**scalars, **baseline}
        if name == "adding":
            out["mse"] = scalars["loss"]
        return out

    return derive


def build(config: ml_collections.ConfigDict) -> base.Task:
    name, t = config.task.name, config.train
    net = model(config)
    T = _length(config)
    generate = GENERATORS[name]
    eval_batch = t.eval_batch_size or t.batch_size
    data, eval_windows = {}, {}
    for i, split in enumerate(("valid", "test")):
        examples = generate(jax.random.fold_in(jax.random.key(EVAL_KEY), i),
                            config.data.eval_examples, T)
        data[split], _ = base.pad_rows(jax.device_get(examples), eval_batch)
        eval_windows[split] = len(data[split]["weight"]) // eval_batch

    def batch(d, index, key):
        del d  # drawn afresh: a pure function of the trial's key and the index
        return generate(jax.random.fold_in(key, index), t.batch_size, T)

    def loss(params, carry, b, key, tap=None):
        scores = _scores(config, net, params, b, key, tap)
        means = {k: v.mean() for k, v in scores.items()}
        return means["loss"], (carry, means)

    def evaluate(params, d, split, windows, tap=None):
        def sums(b):
            scores = _scores(config, net, params, b, None, tap)
            return {**{k: jnp.sum(v * b["weight"]) for k, v in scores.items()},
                    "count": jnp.sum(b["weight"])}

        return base.scan_batches(sums, d[split], eval_batch, windows)

    record = {"task": name, "length": T}
    arrays = {f"{s}/{k}": np.asarray(v) for s in data for k, v in data[s].items()}
    return base.Task(
        model=net, data=data, row_sharded=(), batch=batch, loss=loss, evaluate=evaluate,
        eval_windows=eval_windows, derive=derive_for(config), metrics=metric_names(config),
        best=best(config),
        record=record,
        fingerprint=base.fingerprint(arrays, record),
        describe=(f"{name}: {'delay' if name == 'copy' else 'length'} {T}, fresh train batches, "
                  f"{config.data.eval_examples} fixed valid and test examples"),
        throughput=("examples_per_sec", t.batch_size))
