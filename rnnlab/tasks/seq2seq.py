"""Sequence to sequence and vector to sequence: a decoder that writes a token sequence, trained
with teacher forcing and scored by free-running decoding (`rnnlab.decode`).

`task.name="seq2seq"`: an encoder (the layers of `config.model`, bidirectional allowed) reads
the source; its final carry starts the decoder (the layers of `config.model` with the
`config.decoder` keys that are set), through a learned projection where the two carries differ
in shape (the model: `rnnlab.models.seq2seq`). Data (`data.name`; `rnnlab.tasks.seq2seq_data`):
  - "addition" (default): integer addition as character strings, the task of Flax's
    `examples/seq2seq`: a ~ U{0..99}, b ~ U{0..10^D - 1} (D = `data.max_digits`), sorted; the
    source is "a+b" and the target "=" + str(a + b), both ending with EOS. Train batches are
    drawn afresh every step; valid and test are `data.eval_examples` fixed problems each.
  - "pairs": the user's parallel text file `data.path`, one "source<TAB>target" per line,
    split by `data.valid_fraction` / `data.test_fraction` with `data.split_seed`; characters.
`task.name="vec2seq"` (one to many, the image-captioning set-up): a conditioning vector sets
the decoder's initial carry through a learned projection (and with `task.feed_vector=True` is
fed at every step too); the synthetic task writes the decimal digits of a number n < 10^D from
the vector of its binary digits (+-1).

The decoder reads the target shifted right (its first token is the start symbol: "=" for
addition, BOS otherwise) and predicts the next token up to and including EOS; the loss is the
mean cross-entropy over those tokens (padding has no weight and no gradient). Metrics:
`teacher_forced_accuracy` (each next token given the true ones before it: what Flax's example
reports; not a decoding result), and from free-running decoding (greedy; beam search with
`eval.beam_size` > 1 and `eval.length_penalty`): `token_accuracy` (target tokens matched
position by position) and `exact_match` (whole answers right; with a beam, also
`greedy_exact_match`).
"""

from __future__ import annotations


import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from rnnlab import config as config_lib
from rnnlab import data as data_lib
from rnnlab import decode, models
from rnnlab import model as model_lib
from rnnlab.tasks import base, seq2seq_data
from rnnlab.tasks import decoder  # (its old name of `models`: `check` reads decoder_section)

PAD, EOS, BOS = seq2seq_data.PAD, seq2seq_data.EOS, seq2seq_data.BOS
read_pairs = seq2seq_data.read_pairs  # (its old home)
SOURCES = ("addition", "pairs")


def check(config: ml_collections.ConfigDict) -> None:
    d = config.data
    if config.task.name == "seq2seq" and d.name not in SOURCES:
        raise ValueError(f"data.name for task.name='seq2seq' must be one of {SOURCES}, got "
                         f"{d.name!r}")
    if config.task.name == "seq2seq" and d.name == "pairs":
        if not d.path:
            raise ValueError("data.name='pairs' reads the tab-separated file at data.path, "
                             "which is empty")
        data_lib.check_fractions(d.valid_fraction, d.test_fraction)
        config_lib.check(config, config_lib.DATA, ("data.max_length",))
    elif d.path:
        raise ValueError(f"data.path={d.path!r} is read only with data.name='pairs' (this run "
                         f"would train on {d.name!r} and ignore it): set data.name=pairs, or "
                         "drop data.path")
    else:
        config_lib.check(config, config_lib.DATA, ("data.max_digits",))
    config_lib.check(config, config_lib.DATA, ("data.eval_examples",))
    config_lib.check(config, config_lib.EVAL)
    if config.train.bptt_len:
        raise ValueError(f"task.name={config.task.name!r} trains with full BPTT: set "
                         f"train.bptt_len=0 (got {config.train.bptt_len})")
    model_lib.check_model_config(config.model, causal=False, jordan=False)
    model_lib.check_model_config(decoder.decoder_section(config), causal=True, jordan=False)


def best(config: ml_collections.ConfigDict) -> tuple[str, str]:
    """The validation scalar that picks the best checkpoint, and whether lower is better."""
    return ("exact_match", "max")


def metric_names(config: ml_collections.ConfigDict) -> tuple[str, ...]:
    del config
    return ("loss", "teacher_forced_accuracy")


def model(config: ml_collections.ConfigDict, record: dict) -> models.Model:
    """The seq2seq (or vec2seq) model of a run from its vocab.json record."""
    vector_size = record.get("vector_size")
    return models.seq2seq(config.model, models.decoder_section(config),
                          vocab_size=len(record["tokens"]), vector_size=vector_size,
                          feed=bool(vector_size) and config.task.feed_vector)


# ------------------------------------------------------------------------------- scoring


def _label_mask(target):
    """Which next-token positions count: the target's tokens after the start, EOS included."""
    return (target[:, 1:] != PAD).astype(jnp.float32)


def _decoded_scores(decoded, target):
    labels, mask = target[:, 1:], _label_mask(target)
    hits = (decoded == labels).astype(jnp.float32) * mask
    return hits.sum(1) / _tokens(mask), (hits.sum(1) == mask.sum(1)).astype(jnp.float32)


def _tokens(mask):
    return jnp.maximum(mask.sum(1), 1.0)  # (padding rows of an evaluation have none)


def _token_scores(net: models.Model, params, b, key, tap=None):
    """Per-example cross-entropy and accuracy of each next target token given the true ones
    before it (teacher forcing); `tap`: a diagnostics `layers.Tap` watching the layers."""
    target = b["target"]
    labels, mask = target[:, 1:], _label_mask(target)
    # Steps past the target's end carry no loss (their outputs are zeros).
    _, logits = net.apply(params, None, target[:, :-1], key=key,
                          lengths=jnp.sum(labels != PAD, axis=1), source=b["source"],
                          source_lengths=b["source_lengths"], tap=tap)
    ce = optax.softmax_cross_entropy_with_integer_labels(logits, labels) * mask
    hits = (jnp.argmax(logits, -1) == labels) * mask
    return ce.sum(1) / _tokens(mask), hits.sum(1) / _tokens(mask)


def decode_batch(net: models.Model, params, batch, *, beam_size: int, length_penalty: float,
                 max_len: int, tap=None):
    """Free-running decoding of a batch from its start tokens: tokens [B, max_len] (`tap`: a
    diagnostics `layers.Tap` watching the layers)."""
    carry = net.start(params, batch["source"], batch["source_lengths"], tap=tap)
    start = batch["target"][:, 0]
    if beam_size == 1:
        return decode.greedy(step_fn(net, params, batch["source"], tap), carry, start,
                             max_len=max_len, end_token=EOS)
    # The beam's rows repeat each example's source (a vec2seq model may feed it at each step).
    step = step_fn(net, params, jnp.repeat(batch["source"], beam_size, axis=0), tap)
    tokens, _ = decode.beam_search(step, carry, start, beam_size=beam_size, max_len=max_len,
                                   end_token=EOS, length_penalty=length_penalty)
    return tokens[:, 0]


def step_fn(net: models.Model, params, source, tap=None) -> decode.StepFn:
    def step(carry, tokens):
        carry, logits = net.apply(params, carry, tokens[:, None], source=source, tap=tap)
        return carry, logits[:, 0]

    return step


def _evaluate_fn(net: models.Model, e: ml_collections.ConfigDict, max_len: int, batch_size: int):
    """`Task.evaluate`: teacher-forced scores, and greedy (and beam) decoding."""

    def evaluate(params, d, split, windows, tap=None):
        def sums(b):
            w = b["weight"]
            ce, accuracy = _token_scores(net, params, b, None, tap)
            greedy = decode_batch(net, params, b, beam_size=1, length_penalty=0.0,
                                  max_len=max_len, tap=tap)
            tokens, exact = _decoded_scores(greedy, b["target"])
            out = {"loss": jnp.sum(ce * w), "teacher_forced_accuracy": jnp.sum(accuracy * w),
                   "token_accuracy": jnp.sum(tokens * w), "exact_match": jnp.sum(exact * w),
                   "count": jnp.sum(w)}
            if e.beam_size > 1:
                beam = decode_batch(net, params, b, beam_size=e.beam_size,
                                    length_penalty=e.length_penalty, max_len=max_len, tap=tap)
                tokens, beam_exact = _decoded_scores(beam, b["target"])
                out.update(greedy_exact_match=out["exact_match"], exact_match=jnp.sum(
                    beam_exact * w), token_accuracy=jnp.sum(tokens * w))
            return out

        return base.scan_batches(sums, d[split], batch_size, windows)

    return evaluate


def _sampler(config, record, net: models.Model, valid: dict):
    """`Task.sample`: the greedy decoding of the first 4 validation examples."""
    greedy = jax.jit(lambda params, b: decode_batch(net, params, b, beam_size=1,
                                                    length_penalty=0.0, max_len=record["max_len"]))

    def sample(params, key):
        del key
        shown = {k: v[:4] for k, v in valid.items()}
        decoded = np.asarray(greedy(params, shown))
        return "\n".join(f"{describe_source(config, record, source)} -> "
                         f"{detokenize(record, out)} (want {detokenize(record, target[1:])})"
                         for source, target, out in zip(shown["source"], shown["target"], decoded))

    return sample


# --------------------------------------------------------------------------------- build


def _describe(config, record, train_data) -> str:
    what = ("numbers as binary vectors -> decimal digits" if config.task.name == "vec2seq"
            else f"pairs from {config.data.path}" if train_data else "addition strings")
    return (f"{config.task.name}: {what}; {len(record['tokens'])} tokens; "
            + (f"{len(train_data['train']['target'])} train pairs; " if train_data else
               "fresh train batches; ")
            + f"{'' if train_data else config.data.eval_examples} fixed valid and test examples")


def build(config: ml_collections.ConfigDict) -> base.Task:
    t = config.train
    eval_batch = t.eval_batch_size or t.batch_size
    generated = seq2seq_data.generated(config)
    examples, record = (seq2seq_data.generated_examples(config) if generated
                        else seq2seq_data.pairs_examples(config))
    train_data = {} if generated else {"train": examples.pop("train")}
    first = next(iter(examples.values()))["target"]
    record = {**record, "max_len": first.shape[1] - 1, "start": int(first[0, 0])}
    net = model(config, record)
    data, eval_windows = dict(train_data), {}
    for split, arrays in examples.items():
        data[split], _ = base.pad_rows(arrays, eval_batch)
        eval_windows[split] = len(data[split]["weight"]) // eval_batch

    def batch(d, index, key):
        if generated:  # drawn afresh: a pure function of the trial's key and the index
            return seq2seq_data.generator(config)(jax.random.fold_in(key, index), t.batch_size,
                                      config.data.max_digits)
        return base.shuffled_batch(d["train"], index, key, t.batch_size)

    def loss(params, carry, b, key, tap=None):
        ce, accuracy = _token_scores(net, params, b, key, tap)
        return ce.mean(), (carry, {"loss": ce.mean(), "teacher_forced_accuracy": accuracy.mean()})

    return base.Task(
        model=net, data=data, row_sharded=(), batch=batch, loss=loss,
        evaluate=_evaluate_fn(net, config.eval, record["max_len"], eval_batch),
        eval_windows=eval_windows, derive=base.no_derived, metrics=metric_names(config),
        best=best(config), record=record,
        fingerprint=base.fingerprint({f"{s}/{k}": np.asarray(v) for s in examples
                                      for k, v in examples[s].items()}, record),
        describe=_describe(config, record, train_data),
        throughput=("examples_per_sec", t.batch_size),
        sample=_sampler(config, record, net, data["valid"]))


def detokenize(record: dict, tokens) -> str:
    """The text of decoded tokens, up to EOS."""
    out = []
    for token in np.asarray(tokens).tolist():
        if token == EOS:
            break
        if token not in (PAD, BOS):
            out.append(record["tokens"][token])
    return "".join(out)


def describe_source(config, record, source) -> str:
    if config.task.name == "vec2seq":
        bits = (np.asarray(source) > 0).astype(int)
        return str(int(sum(b << i for i, b in enumerate(bits))))
    return detokenize(record, source)


def translate(config: ml_collections.ConfigDict, record: dict, params, text: str, *,
              beam_size: int = 1, length_penalty: float = 0.0) -> str:
    """The decoded output for one input: a source text (seq2seq) or a number (vec2seq)."""
    source = encode_input(config, record, text)[None]
    lengths = np.asarray([source.shape[1] if record.get("vector_size")
                          else max(source.shape[1] - 1, 1)])
    batch = {"source": source, "source_lengths": lengths,
             "target": np.full((1, 1), record["start"], np.int32)}
    net = model(config, record)
    tokens = jax.jit(lambda p, b: decode_batch(net, p, b, beam_size=beam_size,
                                               length_penalty=length_penalty,
                                               max_len=record["max_len"]))(params, batch)
    return detokenize(record, tokens[0])


def encode_input(config: ml_collections.ConfigDict, record: dict, text: str) -> np.ndarray:
    """One input as the model reads it: a seq2seq source text as ids ending with EOS, a vec2seq
    number as its +-1 bit vector (refused outside the numbers the run was trained on)."""
    size = record.get("vector_size")
    if not size:
        return encode_source(record, text)
    try:
        number = int(text)
    except ValueError:
        raise ValueError(f"a vec2seq run decodes a number, got {text!r}") from None
    trained = 10 ** config.data.max_digits  # (the vector holds up to 2**bits - 1)
    if not 0 <= number < trained:
        raise ValueError(f"the run was trained on numbers in [0, {trained}) (data.max_digits="
                         f"{config.data.max_digits}); got {number}")
    return (((number >> np.arange(size)) & 1) * 2.0 - 1.0).astype(np.float32)


def encode_source(record: dict, text: str) -> np.ndarray:
    """A source text as ids ending with EOS (unknown characters as the unknown symbol)."""
    ids = {c: i for i, c in enumerate(record["tokens"])}
    unk = ids.get(data_lib.UNK)
    missing = sorted({c for c in text if c not in ids})
    if missing and unk is None:
        raise ValueError(f"the input has characters outside the vocabulary: {missing!r}; the "
                         f"vocabulary is {''.join(t for t in record['tokens'] if len(t) == 1)!r}")
    return np.asarray([ids.get(c, unk) for c in text] + [EOS], np.int32)
