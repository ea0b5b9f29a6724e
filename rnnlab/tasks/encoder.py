"""Many-to-one models: a sequence in, one vector out (classification, regression, the adding
problem, parity), with truncated BPTT over long sequences.

    inputs [B, T] tokens (embedded or one-hot) or [B, T, F] features, lengths [B]
      -> the recurrent layers of `config.model` (bidirectional allowed)
      -> pooling over the valid steps: "last" (the last valid step's output; for a
         bidirectional top layer, the forward half there and the backward half at step 0:
         each direction's final state), "mean" or "max"
      -> a linear readout of `output_size`

Truncated BPTT (`train.bptt_len` < T; 0 means full BPTT): the sequence is processed in windows
of `bptt_len` steps with the carry passed along, and the gradient is cut at each window
boundary that a sequence continues past. So an example's loss reaches back only into the
window holding its last valid step (the CS231n treatment of many-to-one TBPTT); the outputs of
its earlier windows enter mean or max pooling without gradient.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import ml_collections

from rnnlab import model as model_lib
from rnnlab.tasks import base

POOLINGS = ("last", "mean", "max")


def check(config: ml_collections.ConfigDict, length: int | None = None) -> None:
    """Raises ValueError for a bad many-to-one config (`length`: T, when known already)."""
    if config.task.pooling not in POOLINGS:
        raise ValueError(f"task.pooling must be one of {POOLINGS}, got {config.task.pooling!r}")
    model_lib.check_model_config(config.model, causal=False, jordan=False)
    windowed = config.train.bptt_len and (length is None or config.train.bptt_len < length)
    if windowed and config.train.log_gradients:
        raise ValueError(
            "train.log_gradients measures the gradient through whole sequences, but truncated "
            f"BPTT (train.bptt_len={config.train.bptt_len}) cuts it: set train.bptt_len=0, or "
            "measure a checkpoint with `python -m rnnlab.diagnose gradients` (full BPTT)")
    if windowed and config.model.bidirectional:
        raise ValueError(
            "model.bidirectional=True needs the whole sequence: truncated BPTT "
            f"(train.bptt_len={config.train.bptt_len}) would start each window's backward pass "
            "without the rest of the sequence. Set train.bptt_len=0 (full BPTT).")


def encode(body, params, xs, lengths, bptt_len: int, key, *, full_length: bool = False):
    """The body's outputs `[B, T, H]` over `xs [B, T, F]`, in windows of `bptt_len` steps
    (0 or >= T: one pass, full BPTT), the gradient cut where a sequence goes on past a window.
    Returns (carry after each sequence's last valid step, outputs).

    `full_length`: every sequence fills all T steps, so only the last window carries gradient:
    the windows before it run without any (and keep no activations for the backward pass), so
    memory grows with the window, not with T."""
    B, T = xs.shape[0], xs.shape[1]
    if not bptt_len or bptt_len >= T:
        return body.apply(params, None, xs, lengths=lengths, key=key)
    n = -(-T // bptt_len)
    if full_length and T % bptt_len == 0:
        windows = jnp.moveaxis(xs.reshape(B, n, bptt_len, *xs.shape[2:]), 1, 0)
        frozen = jax.lax.stop_gradient(params)

        def forward(carry, window):
            x, w = window
            return body.apply(frozen, carry, x, key=key, window=w)

        carry, head = jax.lax.scan(forward, body.initial_carry(params, (B,)),
                                   (jax.lax.stop_gradient(windows[:-1]), jnp.arange(n - 1)))
        carry, last = body.apply(params, jax.lax.stop_gradient(carry), windows[-1], key=key,
                                 window=n - 1)
        head = jax.lax.stop_gradient(jnp.moveaxis(head, 0, 1).reshape(B, -1, *head.shape[3:]))
        return carry, jnp.concatenate([head, last], axis=1)
    xs = jnp.pad(xs, [(0, 0), (0, n * bptt_len - T)] + [(0, 0)] * (xs.ndim - 2))
    windows = jnp.moveaxis(xs.reshape(B, n, bptt_len, *xs.shape[2:]), 1, 0)

    def step(carry, window):
        x, w = window
        start = w * bptt_len
        inside = jnp.clip(lengths - start, 0, bptt_len)
        carry, ys = body.apply(params, carry, x, lengths=inside, key=key, window=w)
        goes_on = lengths > start + bptt_len  # this is not the example's last window
        cut = lambda a: jnp.where(  # noqa: E731
            goes_on.reshape((B,) + (1,) * (a.ndim - 1)), jax.lax.stop_gradient(a), a)
        return jax.tree_util.tree_map(cut, carry), cut(ys)

    carry, ys = jax.lax.scan(step, body.initial_carry(params, (B,)), (windows, jnp.arange(n)))
    ys = jnp.moveaxis(ys, 0, 1).reshape(B, n * bptt_len, *ys.shape[3:])
    return carry, ys[:, :T]


def pool(ys, lengths, pooling: str, bidirectional: bool):
    """One vector per sequence from the outputs `ys [B, T, H]` of its valid steps."""
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


def many_to_one(config: ml_collections.ConfigDict, *, output_size: int,
                vocab_size: int | None = None, input_size: int | None = None,
                full_length: bool = False) -> model_lib.Model:
    """The model: tokens of `vocab_size` (or features of `input_size`) -> `output_size`.
    `full_length`: every sequence has all T steps (see `encode`).

    `apply(params, carry, inputs, *, lengths, key=None) -> (None, outputs [B, output_size])`;
    there is no carry between batches (`initial_carry` is None).
    """
    m, t = config.model, config.train
    body = model_lib.make_body(m)
    size = (m.embed_size or vocab_size) if vocab_size else input_size

    def init(key):
        k_embed, k_body, k_out = jax.random.split(key, 3)
        params = {"body": body.init(k_body, size),
                  "readout": base.dense_init(k_out, body.output_size, output_size)}
        return {**params, **(model_lib.embed_init(k_embed, m, vocab_size) if vocab_size else {})}

    def apply(params, carry, inputs, *, lengths, key=None):
        del carry
        xs = model_lib.embed(params, m, inputs, vocab_size) if vocab_size else inputs
        body_key = out_key = None
        if key is not None:
            body_key, out_key = jax.random.split(key)
        _, ys = encode(body, params["body"], xs, lengths, t.bptt_len, body_key,
                       full_length=full_length)
        pooled = pool(ys, lengths, config.task.pooling, m.bidirectional)
        pooled = model_lib.output_dropout(pooled, m.dropout, out_key)
        return None, base.dense(params["readout"], pooled)

    return model_lib.Model(init, lambda params, batch_shape: None, apply, output_size)


def per_step(config: ml_collections.ConfigDict, *, output_size: int,
             vocab_size: int) -> model_lib.Model:
    """A causal sequence labeller (copy, running parity): tokens -> the recurrent layers ->
    a readout at every step, over the whole sequence (full BPTT).

    `apply(params, carry, tokens [B, T], *, key=None) -> (None, outputs [B, T, output_size])`.
    """
    m = config.model
    body = model_lib.make_body(m)

    def init(key):
        k_embed, k_body, k_out = jax.random.split(key, 3)
        return {"body": body.init(k_body, m.embed_size or vocab_size),
                "readout": base.dense_init(k_out, body.output_size, output_size),
                **model_lib.embed_init(k_embed, m, vocab_size)}

    def apply(params, carry, tokens, *, key=None):
        del carry
        body_key = out_key = None
        if key is not None:
            body_key, out_key = jax.random.split(key)
        xs = model_lib.embed(params, m, tokens, vocab_size)
        _, ys = body.apply(params["body"], None, xs, key=body_key)
        ys = model_lib.output_dropout(ys, m.dropout, out_key)
        return None, base.dense(params["readout"], ys)

    return model_lib.Model(init, lambda params, batch_shape: None, apply, output_size)
