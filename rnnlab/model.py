"""The character-level model: one-hot or embedding -> recurrent layers -> readout.

This is the one place where `config.model` keys become objects. Shapes: B... batch, T time,
V vocabulary, E embedding, H hidden.
"""

from __future__ import annotations

from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import ml_collections

from rnnlab import cells, recurrent

# config.model keys passed to the cell factory when set (None: the cell's own default).
CELL_OPTION_KEYS = ("activation", "init", "init_scale", "forget_bias", "reset_after")
JORDAN_FEEDBACK = ("teacher", "output")


class Model(NamedTuple):
    """A recurrent model over integer tokens.

    Attributes:
      init: `(key) -> params`.
      initial_carry: `(params, batch_shape) -> carry`.
      apply: `(params, carry, tokens [B..., T], *, reset=None, key=None) -> (carry, logits
        [B..., T, V])`; `key` turns dropout on (training).
      vocab_size: V.
    """

    init: Callable[[jax.Array], Any]
    initial_carry: Callable[[Any, tuple[int, ...]], Any]
    apply: Callable[..., tuple[Any, jax.Array]]
    vocab_size: int


def _cell_options(m: ml_collections.ConfigDict) -> dict:
    return {k: m[k] for k in CELL_OPTION_KEYS if m[k] is not None}


def check_model_config(m: ml_collections.ConfigDict, *, causal: bool = True) -> None:
    """Raises ValueError for a bad `config.model`, before any compute.

    Args:
      m: `config.model`.
      causal: the task predicts the next token, so no layer may see the future.
    """
    for key in ("hidden_size", "num_layers", "scan_unroll"):
        if not isinstance(m[key], int) or m[key] <= 0:
            raise ValueError(f"model.{key} must be a positive integer, got {m[key]!r}")
    if m.embed_size < 0:
        raise ValueError(f"model.embed_size must be >= 0 (0: one-hot inputs), got {m.embed_size}")
    if not 0.0 <= m.dropout < 1.0:
        raise ValueError(f"model.dropout must be in [0, 1), got {m.dropout}")
    if m.projection not in recurrent.PROJECTIONS:
        raise ValueError(
            f"model.projection must be one of {recurrent.PROJECTIONS}, got {m.projection!r}"
        )
    if m.bidirectional and causal:
        raise ValueError(
            "model.bidirectional=True sees the future: a next-character model would read the "
            "answer from its backward direction. Use model.bidirectional=False for language "
            "modelling (bidirectional layers are for tasks that read the whole input first)."
        )
    if m.cell == "jordan":
        if m.num_layers != 1 or m.bidirectional:
            raise ValueError(
                "model.cell=jordan feeds its own output (the next-character distribution) back, "
                f"so it is a single layer: set model.num_layers=1 (got {m.num_layers}) and "
                "model.bidirectional=False"
            )
        if m.jordan_feedback not in JORDAN_FEEDBACK:
            raise ValueError(
                f"model.jordan_feedback must be one of {JORDAN_FEEDBACK}, got {m.jordan_feedback!r}"
            )
    # Builds the cell (cheap, no compute): unknown names and options fail here, with the lists.
    _make_cell(m, vocab_size=2)


def _make_cell(m, vocab_size):
    options = _cell_options(m)
    if m.cell == "jordan":
        options["output_size"] = vocab_size
    return cells.get_cell(m.cell, hidden_size=m.hidden_size, **options)


def build_model(m: ml_collections.ConfigDict, vocab_size: int) -> Model:
    """Builds the model `config.model` describes for a vocabulary of `vocab_size` tokens."""
    V = vocab_size
    jordan = m.cell == "jordan"
    rnn_options = dict(
        unroll=m.scan_unroll, projection=m.projection, learn_initial_carry=m.learn_initial_carry
    )
    layers = []
    for _ in range(m.num_layers):
        if m.bidirectional:
            layers.append(
                recurrent.bidirectional(_make_cell(m, V), _make_cell(m, V), **rnn_options)
            )
        else:
            layers.append(recurrent.rnn(_make_cell(m, V), **rnn_options))
    body = recurrent.stack(layers, dropout=m.dropout, residual=m.residual)
    input_size = m.embed_size or V

    def init(key):
        k_embed, k_body, k_out = jax.random.split(key, 3)
        params = {"body": body.init(k_body, input_size)}
        if m.embed_size:
            params["embed"] = jax.random.normal(k_embed, (V, m.embed_size))
        if not jordan:  # a Jordan cell's output is already the logits
            params["readout"] = {
                "w": jax.nn.initializers.lecun_normal()(k_out, (body.output_size, V)),
                "b": jnp.zeros((V,)),
            }
        return params

    def initial_carry(params, batch_shape):
        return body.initial_carry(params["body"], batch_shape)

    def apply(params, carry, tokens, *, reset=None, key=None):
        xs = params["embed"][tokens] if m.embed_size else jax.nn.one_hot(tokens, V)
        if jordan and m.jordan_feedback == "teacher":
            # The previous target is this step's input token: feed its one-hot back.
            xs = cells.jordan_inputs(xs, feedback=jax.nn.one_hot(tokens, V))
        body_key = out_key = None
        if key is not None:
            body_key, out_key = jax.random.split(key)
        carry, ys = body.apply(params["body"], carry, xs, reset=reset, key=body_key)
        if jordan:
            return carry, ys
        if out_key is not None and m.dropout > 0.0:  # char-rnn: dropout before the softmax too
            keep = jax.random.bernoulli(out_key, 1.0 - m.dropout, ys.shape)
            ys = jnp.where(keep, ys / (1.0 - m.dropout), 0.0)
        return carry, ys @ params["readout"]["w"] + params["readout"]["b"]

    return Model(init, initial_carry, apply, V)
