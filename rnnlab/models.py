"""The models: inputs -> embedding -> recurrent body -> readout, written once, with the heads as
the only difference.

    per_step   an output at every step: language models (their carry goes from batch to
               batch), copy, running parity
    pooled     one output per sequence, pooled over its valid steps, with truncated BPTT over
               long sequences: classify, regress, adding, final parity
    seq2seq    a per-step decoder whose carry starts from a source (tokens through an encoder,
               or a vector) through a learned bridge: seq2seq, vec2seq

Every model has the one `apply`:

    apply(params, carry, inputs, *, key=None, reset=None, lengths=None, teacher=None,
          source=None, source_lengths=None, tap=None) -> (carry, outputs)

`inputs`: token ids `[B, T]` (features `[B, T, F]` for a model built without a vocabulary);
`carry`: the body's (None: its initial carry, or for seq2seq the carry `start` computes from
the source); `key` turns dropout on (training). The keywords a head reads:
`reset [B, T]` (per_step: a stream starts over there), `lengths [B]` (the valid steps of each
row; pooled needs it), `teacher [B, T]` (a Jordan cell trained with scheduled sampling: where
it is fed the target), `source` and `source_lengths` (seq2seq: token ids `[B, S]` and their
lengths, or vectors `[B, F]`; a model that feeds its vector at every step reads `source` then
too). Passing one a head does not read is a TypeError. `tap`: a diagnostics `layers.Tap` that
watches the body's layers, named `layer_i` (seq2seq: `encoder/layer_i`, `decoder/layer_i`);
tapped layers run the sequential path (`layers.paths.choose_path`). Outputs: `[B, T, V]` (per_step,
seq2seq) or `[B, V]` (pooled), V the output size.

Params: `{"body" (or "decoder"), "embed" (with token inputs and model.embed_size > 0),
"readout": {"w", "b"}}`, plus seq2seq's "encoder" and "bridge". Shapes: B batch, T time, F
features, V outputs, E embedding, H hidden.
"""

from __future__ import annotations

from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from rnnlab import cells, layers
from rnnlab import model as model_lib

POOLINGS = ("last", "mean", "max")


class Model(NamedTuple):
    """A recurrent model (see the module docstring).

    Attributes:
      init: `(key) -> params`.
      initial_carry: `(params, batch_shape) -> carry` handed from one train batch to the next
        (a language model's streams), or None where every batch starts afresh.
      apply: the one signature of the module docstring.
      vocab_size: V, the size of the outputs.
      start: seq2seq: `(params, source, source_lengths, tap=None) -> carry`, the decoder's
        carry from a source (free-running decoding starts there); None for the other heads.
    """

    init: Callable[[jax.Array], Any]
    initial_carry: Callable[[Any, tuple[int, ...]], Any]
    apply: Callable[..., tuple[Any, jax.Array]]
    vocab_size: int
    start: Callable[..., Any] | None = None


class _Parts(NamedTuple):
    """What every model has: an embedding (for token inputs), a body and a readout."""

    m: ml_collections.ConfigDict  # the body's config section (embed_size, dropout, cell)
    body: layers.Layer
    vocab_size: int | None  # token inputs of this many symbols; None: feature inputs
    input_size: int  # the body's
    output_size: int
    name: str = "body"  # the body's params key
    # The language model's readout runs in the compute dtype (bf16 with model.dtype=bfloat16)
    # and returns float32 logits; the other heads' has always promoted to float32. Both kept,
    # so that no run's numbers change.
    compute_dtype_readout: bool = False


# --------------------------------------------------------------------- the pieces, once


def embed_init(key, m: ml_collections.ConfigDict, vocab_size: int) -> dict:
    """An embedding table when `model.embed_size` > 0 (else one-hot inputs: no params)."""
    return {"embed": jax.random.normal(key, (vocab_size, m.embed_size))} if m.embed_size else {}


def embed(params, m: ml_collections.ConfigDict, tokens, vocab_size: int):
    """Token ids -> inputs: the learned embedding, or one-hot vectors."""
    return params["embed"][tokens] if m.embed_size else jax.nn.one_hot(tokens, vocab_size)


def output_dropout(ys, rate: float, key):
    """char-rnn's dropout before the softmax too (training only: `key` given)."""
    if key is None or rate <= 0.0:
        return ys
    keep = jax.random.bernoulli(key, 1.0 - rate, ys.shape)
    return jnp.where(keep, ys / (1.0 - rate), 0.0)


def dense_init(key, n_in: int, n_out: int) -> dict[str, jax.Array]:
    """A linear layer's params: LeCun-normal weights, zero bias."""
    return {"w": jax.nn.initializers.lecun_normal()(key, (n_in, n_out)),
            "b": jnp.zeros((n_out,))}


def dense(params, x):
    return x @ params["w"] + params["b"]


def _readout(params, ys, in_compute_dtype: bool):
    if not in_compute_dtype:
        return dense(params, ys)
    params = jax.tree_util.tree_map(lambda a: a.astype(ys.dtype), params)
    return dense(params, ys).astype(jnp.float32)


def _jordan_feedback(mode, xs, tokens, V, key, teacher):
    """A Jordan cell's inputs for its training mode. The previous target is this step's input
    token, so teacher forcing feeds its one-hot back; evaluation (no key) does so too, except
    for the free-running "output" mode, which always feeds the output distribution."""
    target = jax.nn.one_hot(tokens, V)
    if mode == "output":
        return xs
    if mode == "teacher" or key is None:
        return cells.jordan_inputs(xs, feedback=target)
    feedback_key = jax.random.fold_in(key, 1)
    if mode == "sample":
        return cells.jordan_inputs(xs, key=feedback_key)
    return cells.jordan_inputs(xs, feedback=target, key=feedback_key, teacher=teacher)


def _split(key, n: int) -> list:
    return [None] * n if key is None else list(jax.random.split(key, n))


def _no_carry(params, batch_shape):
    del params, batch_shape
    return None  # every batch starts afresh


def _init(parts: _Parts, k_embed, k_body, k_readout) -> dict:
    """The params of embedding -> body -> readout (a Jordan cell's output is the readout)."""
    params = {parts.name: parts.body.init(k_body, parts.input_size)}
    if parts.vocab_size:
        params.update(embed_init(k_embed, parts.m, parts.vocab_size))
    if parts.m.cell != "jordan":
        params["readout"] = dense_init(k_readout, parts.body.output_size, parts.output_size)
    return params


def _model(parts: _Parts, run: Callable, reads: tuple[str, ...], *, init: Callable | None = None,
           initial_carry: Callable = _no_carry, start: Callable | None = None) -> Model:
    """The model of `parts` whose head runs the body as `run(params, carry, xs, key, tap,
    **read) -> (carry, ys)`, reading the keywords `reads`; `start(params, source,
    source_lengths, key, tap)` gives a decoder's carry from its source (drawing one more key,
    first)."""
    jordan = parts.m.cell == "jordan"

    def init_3(key):
        return _init(parts, *jax.random.split(key, 3))

    def apply(params, carry, inputs, *, key=None, reset=None, lengths=None, teacher=None,
              source=None, source_lengths=None, tap=None):
        given = {"reset": reset, "lengths": lengths, "teacher": teacher, "source": source,
                 "source_lengths": source_lengths}
        unread = [k for k, v in given.items() if v is not None and k not in reads]
        if unread:
            raise TypeError(f"this model reads none of {unread} (it reads {list(reads)})")
        *k_source, k_body, k_readout = _split(key, 3 if start else 2)
        if start is not None and carry is None:
            carry = start(params, source, source_lengths, k_source[0], tap)
        xs = embed(params, parts.m, inputs, parts.vocab_size) if parts.vocab_size else inputs
        if jordan:
            xs = _jordan_feedback(parts.m.jordan_feedback, xs, inputs, parts.vocab_size, key,
                                  teacher)
        carry, ys = run(params, carry, xs, k_body, tap, **{k: given[k] for k in reads})
        if jordan:  # its output is already the next token's logits
            return carry, ys.astype(jnp.float32)
        ys = output_dropout(ys, parts.m.dropout, k_readout)
        return carry, _readout(params["readout"], ys, parts.compute_dtype_readout)

    return Model(init or init_3, initial_carry, apply, parts.output_size,
                 None if start is None else lambda p, s, n, tap=None: start(p, s, n, None, tap))


# ------------------------------------------------------------------------------- heads


def per_step(m: ml_collections.ConfigDict, *, vocab_size: int, output_size: int | None = None,
             streams: bool = False) -> Model:
    """Tokens of `vocab_size` -> the body -> `output_size` outputs (default: `vocab_size`) at
    every step. `streams`: a language model's, whose carry goes from batch to batch (the train
    state's) and whose `reset` marks where a stream starts over."""
    body = model_lib.make_body(m, vocab_size)
    parts = _Parts(m, body, vocab_size, m.embed_size or vocab_size, output_size or vocab_size,
                   compute_dtype_readout=streams)

    def run(params, carry, xs, key, tap, reset, lengths, teacher):
        del teacher  # (read by the Jordan feedback, before the body)
        return body.apply(params["body"], carry, xs, reset=reset, lengths=lengths, key=key,
                          tap=tap)

    carry = (lambda params, shape: body.initial_carry(params["body"], shape)) if streams else \
        _no_carry
    return _model(parts, run, ("reset", "lengths", "teacher"), initial_carry=carry)


def language_model(m: ml_collections.ConfigDict, vocab_size: int) -> Model:
    """The next-token model `config.model` describes for a vocabulary of `vocab_size`."""
    return per_step(m, vocab_size=vocab_size, streams=True)


def pooled(m: ml_collections.ConfigDict, *, pooling: str, bptt_len: int, output_size: int,
           vocab_size: int | None = None, input_size: int | None = None,
           full_length: bool = False) -> Model:
    """Tokens of `vocab_size` (or features of `input_size`) -> the body, in windows of
    `bptt_len` steps (`encode`) -> `pooling` over each row's `lengths` -> `output_size`.
    `full_length`: every sequence has all T steps (see `encode`)."""
    body = model_lib.make_body(m)
    parts = _Parts(m, body, vocab_size, (m.embed_size or vocab_size) if vocab_size else input_size,
                   output_size)

    def run(params, carry, xs, key, tap, lengths):
        if lengths is None:
            raise TypeError("a pooled model needs lengths=[B], each row's valid steps")
        del carry  # (none between batches)
        _, ys = encode(body, params["body"], xs, lengths, bptt_len, key, full_length=full_length,
                       tap=tap)
        return None, pool(ys, lengths, pooling, m.bidirectional)

    return _model(parts, run, ("lengths",))


def encode(body, params, xs, lengths, bptt_len: int, key, *, full_length: bool = False,
           tap=None):
    """The body's outputs `[B, T, H]` over `xs [B, T, F]`, in windows of `bptt_len` steps
    (0 or >= T: one pass, full BPTT), the gradient cut where a sequence goes on past a window.
    Returns (carry after each sequence's last valid step, outputs).

    So an example's loss reaches back only into the window holding its last valid step (the
    CS231n treatment of many-to-one TBPTT); the outputs of its earlier windows enter mean or
    max pooling without gradient. `full_length`: every sequence fills all T steps, so only the
    last window carries gradient: the windows before it run without any (and keep no
    activations for the backward pass), so memory grows with the window, not with T. `tap`
    watches the body in every window."""
    B, T = xs.shape[0], xs.shape[1]
    if not bptt_len or bptt_len >= T:
        return body.apply(params, None, xs, lengths=lengths, key=key, tap=tap)
    n = -(-T // bptt_len)
    if full_length and T % bptt_len == 0:
        windows = jnp.moveaxis(xs.reshape(B, n, bptt_len, *xs.shape[2:]), 1, 0)
        frozen = jax.lax.stop_gradient(params)

        def forward(carry, window):
            x, w = window
            return body.apply(frozen, carry, x, key=key, window=w, tap=tap)

        carry, head = jax.lax.scan(forward, body.initial_carry(params, (B,)),
                                   (jax.lax.stop_gradient(windows[:-1]), jnp.arange(n - 1)))
        carry, last = body.apply(params, jax.lax.stop_gradient(carry), windows[-1], key=key,
                                 window=n - 1, tap=tap)
        head = jax.lax.stop_gradient(jnp.moveaxis(head, 0, 1).reshape(B, -1, *head.shape[3:]))
        return carry, jnp.concatenate([head, last], axis=1)
    xs = jnp.pad(xs, [(0, 0), (0, n * bptt_len - T)] + [(0, 0)] * (xs.ndim - 2))
    windows = jnp.moveaxis(xs.reshape(B, n, bptt_len, *xs.shape[2:]), 1, 0)

    def step(carry, window):
        x, w = window
        start = w * bptt_len
        inside = jnp.clip(lengths - start, 0, bptt_len)
        carry, ys = body.apply(params, carry, x, lengths=inside, key=key, window=w, tap=tap)
        goes_on = lengths > start + bptt_len  # this is not the example's last window
        cut = lambda a: jnp.where(  # noqa: E731
            goes_on.reshape((B,) + (1,) * (a.ndim - 1)), jax.lax.stop_gradient(a), a)
        return jax.tree_util.tree_map(cut, carry), cut(ys)

    carry, ys = jax.lax.scan(step, body.initial_carry(params, (B,)), (windows, jnp.arange(n)))
    ys = jnp.moveaxis(ys, 0, 1).reshape(B, n * bptt_len, *ys.shape[3:])
    return carry, ys[:, :T]


def pool(ys, lengths, pooling: str, bidirectional: bool):
    """One vector per sequence from the outputs `ys [B, T, H]` of its valid steps: "last" (the
    last valid step's output; for a bidirectional top layer, the forward half there and the
    backward half at step 0: each direction's final state), "mean" or "max"."""
    T = ys.shape[1]
    valid = (jnp.arange(T)[None, :] < lengths[:, None])[..., None]
    if pooling == "mean":
        return jnp.sum(jnp.where(valid, ys, 0.0), axis=1) / jnp.maximum(lengths, 1)[:, None]
    if pooling == "max":
        return jnp.max(jnp.where(valid, ys, -jnp.inf), axis=1)
    last = jnp.take_along_axis(ys, jnp.maximum(lengths - 1, 0)[:, None, None], axis=1)[:, 0]
    if bidirectional:  # the backward direction ends at step 0
        half = ys.shape[-1] // 2
        return jnp.concatenate([last[:, :half], ys[:, 0, half:]], axis=-1)
    return last


def _same_shapes(a, b) -> bool:
    return jax.tree_util.tree_structure(a) == jax.tree_util.tree_structure(b) and all(
        x.shape == y.shape for x, y in zip(jax.tree_util.tree_leaves(a),
                                           jax.tree_util.tree_leaves(b)))


def decoder_section(config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
    """`config.model` with the `config.decoder` keys that are set; never bidirectional."""
    section = ml_collections.ConfigDict(config.model.to_dict())
    for key, value in config.decoder.items():
        if value is not None:
            section[key] = value
    section.bidirectional = False
    return section


def seq2seq(m: ml_collections.ConfigDict, dm: ml_collections.ConfigDict, *, vocab_size: int,
            vector_size: int | None = None, feed: bool = False) -> Model:
    """A decoder (the layers of `dm`, `decoder_section`) over tokens of `vocab_size`, whose
    carry starts from a source: tokens through an encoder (the layers of `m`), its final carry
    as it is where it fits the decoder's, else through a learned tanh projection (the bridge);
    or a vector of `vector_size` through the bridge (`feed`: also fed at every step)."""
    V = vocab_size
    encoder = None if vector_size else model_lib.make_body(m)
    decoder = model_lib.make_body(dm)
    parts = _Parts(dm, decoder, V, (dm.embed_size or V) + (vector_size if feed else 0), V,
                   name="decoder")

    def init(key):
        keys = jax.random.split(key, 6)
        params = _init(parts, keys[2], keys[0], keys[1])
        dec = decoder.initial_carry(params["decoder"], (1,))
        if encoder is None:
            size = vector_size
        else:
            params["encoder"] = encoder.init(keys[3], m.embed_size or V)
            enc = encoder.initial_carry(params["encoder"], (1,))
            if _same_shapes(enc, dec):
                return params  # the encoder's final carry starts the decoder as it is
            size = sum(int(np.prod(c.shape[1:])) for c in jax.tree_util.tree_leaves(enc))
        leaves = jax.tree_util.tree_leaves(dec)
        params["bridge"] = [dense_init(k, size, int(np.prod(c.shape[1:])))
                            for k, c in zip(jax.random.split(keys[4], len(leaves)), leaves)]
        return params

    def start(params, source, source_lengths, key, tap):
        if vector_size:
            flat = source
        else:
            xs = embed(params, m, source, V)
            carry, _ = encoder.apply(params["encoder"], None, xs, lengths=source_lengths,
                                     key=key, tap=layers.taps.enter(tap, "encoder"))
            if "bridge" not in params:
                return carry
            flat = jnp.concatenate([c.reshape(c.shape[0], -1)
                                    for c in jax.tree_util.tree_leaves(carry)], axis=-1)
        template = decoder.initial_carry(params["decoder"], (source.shape[0],))
        leaves, treedef = jax.tree_util.tree_flatten(template)
        projected = [jnp.tanh(dense(p, flat)).reshape(leaf.shape).astype(leaf.dtype)
                     for p, leaf in zip(params["bridge"], leaves)]
        return jax.tree_util.tree_unflatten(treedef, projected)

    def run(params, carry, xs, key, tap, lengths, source, source_lengths):
        del source_lengths  # (read by `start`)
        if feed:
            xs = jnp.concatenate([xs, jnp.broadcast_to(source[:, None, :], (
                *xs.shape[:2], source.shape[-1])).astype(xs.dtype)], axis=-1)
        return decoder.apply(params["decoder"], carry, xs, lengths=lengths, key=key,
                             tap=layers.taps.enter(tap, "decoder"))

    return _model(parts, run, ("lengths", "source", "source_lengths"), init=init, start=start)
