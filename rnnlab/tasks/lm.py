"""Next-character language modelling with truncated BPTT (char-rnn; the text8 benchmark).

The corpus (`data.name`: pydoc, python_source, text8 or a text file) is laid out as B contiguous
streams; step i trains on window i of every stream, and the carry flows from window to window
through the train state (`train.carry_state`; the jit step boundary is the truncation point).
Evaluation scores a split window by window with the carry passed along, in one scan. Metrics:
loss (nats per character), bpc, perplexity, accuracy. Samples: `train.sample_length` characters
at every evaluation, from `train.sample_prime`, or by default from 32 characters of the
validation split at a place that changes from one evaluation to the next.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
from absl import logging

from rnnlab import config as config_lib
from rnnlab import data, decode, metrics as metrics_lib, models
from rnnlab import model as model_lib
from rnnlab.tasks import base

PRIME_CHARS = 32  # samples start from this much of the validation split by default


def check(config: ml_collections.ConfigDict) -> None:
    """Raises ValueError for what the LM cannot train, before any data is read."""
    if config.data.name not in data.CORPORA:
        raise ValueError(f"unknown data.name {config.data.name!r} for task.name='lm'; known: "
                         f"{', '.join(data.CORPORA)}")
    if config.data.path and config.data.name != "text":
        raise ValueError(f"data.path={config.data.path!r} is read only with data.name='text' "
                         f"(this run would train on {config.data.name!r} and ignore it): set "
                         "data.name=text, or drop data.path")
    config_lib.check(config, config_lib.DATA, ("data.max_chars",))
    data.check_fractions(config.data.valid_fraction, config.data.test_fraction)
    if config.train.bptt_len <= 0:
        raise ValueError(f"train.bptt_len must be a positive integer for the LM (its window), "
                         f"got {config.train.bptt_len}")
    model_lib.check_model_config(config.model, causal=True)


def best(config: ml_collections.ConfigDict) -> tuple[str, str]:
    """The validation scalar that picks the best checkpoint, and whether lower is better."""
    return ("bpc", "min")


def metric_names(config: ml_collections.ConfigDict) -> tuple[str, ...]:
    del config
    return ("loss", "accuracy")


def model(config: ml_collections.ConfigDict, record: dict) -> models.Model:
    """The LM of a run from its vocab.json record."""
    return models.language_model(config.model, len(record["chars"]))


def vocab(record: dict) -> data.Vocab:
    return data.Vocab(tuple(record["chars"]), record["unk"])


def _streams(ids, batch_size, bptt_len, split):
    try:
        streams = data.make_streams(ids, batch_size)
        return streams, data.num_windows(streams.shape[1], bptt_len)
    except ValueError as e:
        raise ValueError(f"the {split} split: {e}") from e


def _reset(batch_reset, carry_state):
    # Without carry_state every window starts from the initial carry (the stateless baseline).
    return batch_reset if carry_state else batch_reset.at[..., 0].set(True)


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


def _prime_at(ids: np.ndarray, key: jax.Array) -> np.ndarray:
    """PRIME_CHARS of `ids` from a place the key picks: each evaluation's sample during
    training starts from another part of the validation split."""
    start = int(jax.random.randint(key, (), 0, max(1, len(ids) - PRIME_CHARS)))
    return ids[start:start + PRIME_CHARS]


def generate(lm: models.Model, params, prime: np.ndarray, length: int, *,
             temperature, key: jax.Array) -> jax.Array:
    """Feeds `prime` (token ids, at least one), then samples `length` tokens (`decode.sample`:
    softmax(logits / temperature), fed back; temperature 0 takes the argmax)."""
    if len(prime) == 0:
        raise ValueError("sampling needs a non-empty prime to start from")
    return _generate(lm, params, jnp.asarray(prime, jnp.int32), length, temperature, key)


@functools.partial(jax.jit, static_argnums=(0, 3))
def _generate(lm, params, prime, length, temperature, key):
    def step_fn(carry, tokens):
        carry, logits = lm.apply(params, carry, tokens[:, None])
        return carry, logits[:, 0]

    carry = lm.initial_carry(params, (1,))
    carry, _ = lm.apply(params, carry, prime[None, :-1])  # T=0 when the prime is one token
    tokens = decode.sample(step_fn, carry, prime[-1:], key=key, max_len=length,
                           temperature=temperature)
    return tokens[0]


def _layout(corpus: data.Corpus, t: ml_collections.ConfigDict):
    """Each split as streams (`data.make_streams`), and the windows of a pass over them; for
    the final evaluation, which scores every character, valid and test also as
    `data.whole_streams` from `train.final_eval_streams` starts."""
    eval_batch = t.eval_batch_size or t.batch_size
    streams, windows = {}, {}
    for split in data.SPLITS:
        streams[split], windows[split] = _streams(
            corpus.splits[split], t.batch_size if split == "train" else eval_batch, t.bptt_len,
            split)
        if split != "train":
            streams[f"{split}_inputs"], streams[f"{split}_targets"] = data.whole_streams(
                corpus.splits[split], t.final_eval_streams, t.bptt_len)
    return streams, windows


def _sampler(lm: models.Model, vocab: data.Vocab, t: ml_collections.ConfigDict,
             valid_ids: np.ndarray, prime: np.ndarray):
    """`Task.sample`: `train.sample_length` characters from `train.sample_prime`, or else from
    a place in the validation split that the key picks."""

    def sample(params, key):
        start = prime if t.sample_prime else _prime_at(valid_ids, key)
        tokens = generate(lm, params, start, t.sample_length,
                          temperature=t.sample_temperature, key=key)
        return data.to_text(vocab, start) + data.to_text(vocab, np.asarray(tokens))

    return sample if t.sample_length else None


def build(config: ml_collections.ConfigDict) -> base.Task:
    """Loads and splits the corpus and builds the LM task."""
    t, m = config.train, config.model
    corpus = data.load_corpus(config.data)
    lm = models.language_model(m, len(corpus.vocab.chars))
    streams, windows = _layout(corpus, t)
    train_windows = windows.pop("train")
    valid_ids = np.asarray(corpus.splits["valid"])
    default_prime = data.to_text(corpus.vocab, valid_ids[:PRIME_CHARS])
    prime = encode_prime(corpus.vocab, t.sample_prime or default_prime)
    T = t.bptt_len
    scheduled = m.cell == "jordan" and m.jordan_feedback == "scheduled"

    def batch(d, index, key):
        # char-rnn's order: the same for every seed
        b = data.get_batch(d["train"], index, T, num_windows=train_windows)
        b = {**b, "reset": _reset(b["reset"], t.carry_state)}
        if scheduled:  # where the Jordan cell is fed the target rather than its own sample
            p = model_lib.SAMPLING_SCHEDULES[m.sampling_schedule](index, m.sampling_k)
            b["teacher"] = jax.random.bernoulli(key, p, b["inputs"].shape)
        return b

    def loss(params, carry, b, key, tap=None):
        carry, logits = lm.apply(params, carry, b["inputs"], reset=b["reset"], key=key,
                                 teacher=b.get("teacher"), tap=tap)
        ce = optax.softmax_cross_entropy_with_integer_labels(logits, b["targets"]).mean()
        accuracy = jnp.mean(jnp.argmax(logits, -1) == b["targets"])
        return ce, (carry, {"loss": ce, "accuracy": accuracy})

    def evaluate(params, d, split, count, tap=None):
        if count is None or isinstance(count, base.Part):  # the whole split: every character
            return evaluate_whole(lm, params, d[f"{split}_inputs"], d[f"{split}_targets"], T,
                                  t.carry_state, count, tap=tap)
        return evaluate_streams(lm, params, d[split], T, t.carry_state, windows[split], count,
                                tap=tap)

    for split, n in corpus.unknown.items():
        if n:
            logging.warning("%s split: %d characters not in the vocabulary -> unknown", split, n)
    record = {"chars": list(corpus.vocab.chars), "unk": corpus.vocab.unk,
              "default_prime": default_prime}
    return base.Task(
        model=lm, data=streams, row_sharded=("train", "valid", "test"), batch=batch, loss=loss,
        evaluate=evaluate, eval_windows=windows, derive=derive, metrics=metric_names(config),
        best=best(config),
        record=record, fingerprint=base.fingerprint(corpus.splits, record_digest(corpus)),
        describe=f"data: {corpus.description}; {train_windows} train windows/pass",
        throughput=("chars_per_sec", t.batch_size * T),
        sample=_sampler(lm, corpus.vocab, t, valid_ids, prime),
        whole_windows={s: streams[f"{s}_inputs"].shape[1] // T for s in ("valid", "test")})


def record_digest(corpus: data.Corpus) -> dict:
    return {"chars": list(corpus.vocab.chars), "unk": corpus.vocab.unk}


def derive(scalars: dict[str, float]) -> dict[str, float]:
    """bpc and perplexity from the loss (nats per character)."""
    return {**scalars, **metrics_lib.lm_scalars(scalars["loss"], scalars["accuracy"], 1.0)}


def evaluate_whole(lm, params, inputs, targets, bptt_len, carry_state, part=None, *, tap=None):
    """`{"loss", "accuracy", "count"}` sums over every scored pair of `data.whole_streams`
    (targets >= 0), window by window with the carry passed on, in one scan; or over a
    `base.Part` of the windows (its sums then also hold the `carry` the next part starts
    from). `tap`: a diagnostics `layers.Tap` watching the model's layers."""
    S, T = inputs.shape[0], bptt_len
    windows, valid, so_far = base.part_windows(part, inputs.shape[1] // T)

    def body(acc, w_valid):
        w, ok = w_valid
        carry, loss_sum, correct, count = acc
        x = jax.lax.dynamic_slice(inputs, (0, w * T), (S, T))
        y = jax.lax.dynamic_slice(targets, (0, w * T), (S, T))
        reset = jnp.zeros((S, T), bool).at[:, 0].set(w == 0)
        carry, logits = lm.apply(params, carry, x, reset=_reset(reset, carry_state), tap=tap)
        scored = (y >= 0) & ok
        ce = optax.softmax_cross_entropy_with_integer_labels(logits, jnp.maximum(y, 0))
        hits = (jnp.argmax(logits, -1) == y) & scored
        return (carry, loss_sum + jnp.sum(jnp.where(scored, ce, 0.0)),
                correct + jnp.sum(hits), count + jnp.sum(scored)), None

    if so_far is None:
        init = (lm.initial_carry(params, (S,)), jnp.zeros((), jnp.float32),
                jnp.zeros((), jnp.int32), jnp.zeros((), jnp.int32))
    else:
        init = tuple(so_far[k] for k in ("carry", "loss", "accuracy", "count"))
    (carry, loss_sum, correct, count), _ = jax.lax.scan(body, init, (windows, valid))
    sums = {"loss": loss_sum, "accuracy": correct, "count": count}
    return sums if part is None else {**sums, "carry": carry}


def evaluate_streams(lm, params, streams, bptt_len, carry_state, num_windows, count, *,
                     tap=None):
    """`{"loss", "accuracy", "count"}` sums over the first `count` windows of `streams`, the
    carry passed from window to window as in training, in one scan (`tap`: as
    `evaluate_whole`'s)."""

    def body(acc, index):
        carry, loss_sum, correct = acc
        b = data.get_batch(streams, index, bptt_len, num_windows=num_windows)
        carry, logits = lm.apply(params, carry, b["inputs"],
                                 reset=_reset(b["reset"], carry_state), tap=tap)
        ce = optax.softmax_cross_entropy_with_integer_labels(logits, b["targets"])
        hits = jnp.sum(jnp.argmax(logits, -1) == b["targets"])
        return (carry, loss_sum + ce.sum(), correct + hits), None

    carry = lm.initial_carry(params, (streams.shape[0],))
    init = (carry, jnp.zeros((), jnp.float32), jnp.zeros((), jnp.int32))
    (_, loss_sum, correct), _ = jax.lax.scan(body, init, jnp.arange(count))
    return {"loss": loss_sum, "accuracy": correct,
            "count": jnp.asarray(count * streams.shape[0] * bptt_len, jnp.float32)}
