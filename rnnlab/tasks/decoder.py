"""The decoder of seq2seq and vec2seq: a source (tokens through an encoder, or a vector) sets
the initial carry of a decoder that writes tokens, read with teacher forcing in training and
free-running (`rnnlab.decode`) in evaluation.

Token ids 0, 1, 2 are PAD, EOS and BOS in every decoder vocabulary.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from rnnlab import decode, recurrent
from rnnlab import model as model_lib
from rnnlab.tasks import base

PAD, EOS, BOS = 0, 1, 2


def decoder_section(config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
    """`config.model` with the `config.decoder` keys that are set; never bidirectional."""
    section = ml_collections.ConfigDict(config.model.to_dict())
    for key, value in config.decoder.items():
        if value is not None:
            section[key] = value
    section.bidirectional = False
    return section


class Seq2Seq:
    """The encoder (or the vector projection), the bridge, and the decoder of a config."""

    def __init__(self, config, vocab_size: int, vector_size: int | None = None):
        self.config, self.V, self.vector_size = config, vocab_size, vector_size
        self.m, self.dm = config.model, decoder_section(config)
        self.encoder = None if vector_size else model_lib.make_body(self.m)
        self.decoder = model_lib.make_body(self.dm)
        self.feed = bool(vector_size) and config.task.feed_vector
        self.dec_in = (self.dm.embed_size or vocab_size) + (vector_size if self.feed else 0)

    def _decoder_carry_shapes(self, params):
        carry = self.decoder.initial_carry(params["decoder"], (1,))
        return [c.shape[1:] for c in jax.tree_util.tree_leaves(carry)]

    def _source_size(self, params):
        if self.vector_size:
            return self.vector_size
        carry = self.encoder.initial_carry(params["encoder"], (1,))
        return sum(int(np.prod(c.shape[1:])) for c in jax.tree_util.tree_leaves(carry))

    def _direct(self, params) -> bool:
        """Whether the encoder's final carry can start the decoder as it is."""
        if self.vector_size:
            return False
        enc = self.encoder.initial_carry(params["encoder"], (1,))
        dec = self.decoder.initial_carry(params["decoder"], (1,))
        same = jax.tree_util.tree_structure(enc) == jax.tree_util.tree_structure(dec)
        return same and all(a.shape == b.shape for a, b in zip(
            jax.tree_util.tree_leaves(enc), jax.tree_util.tree_leaves(dec)))

    def init(self, key):
        keys = jax.random.split(key, 6)
        params = {"decoder": self.decoder.init(keys[0], self.dec_in),
                  "readout": base.dense_init(keys[1], self.decoder.output_size, self.V),
                  **model_lib.embed_init(keys[2], self.dm, self.V)}
        if self.encoder is not None:
            params["encoder"] = self.encoder.init(keys[3], self.m.embed_size or self.V)
        if not self._direct(params):
            shapes = self._decoder_carry_shapes(params)
            size = self._source_size(params)
            params["bridge"] = [base.dense_init(k, size, int(np.prod(shape)))
                                for k, shape in zip(jax.random.split(keys[4], len(shapes)),
                                                    shapes)]
        return params

    def start(self, params, source, lengths, key=None):
        """The decoder's initial carry from the source (tokens or vector)."""
        if self.vector_size:
            flat = source
        else:
            xs = model_lib.embed(params, self.m, source, self.V)
            with recurrent.scope("encoder"):
                carry, _ = self.encoder.apply(params["encoder"], None, xs, lengths=lengths,
                                              key=key)
            if "bridge" not in params:
                return carry
            flat = jnp.concatenate([c.reshape(c.shape[0], -1)
                                    for c in jax.tree_util.tree_leaves(carry)], axis=-1)
        template = self.decoder.initial_carry(params["decoder"], (source.shape[0],))
        leaves, treedef = jax.tree_util.tree_flatten(template)
        projected = [jnp.tanh(base.dense(p, flat)).reshape(leaf.shape).astype(leaf.dtype)
                     for p, leaf in zip(params["bridge"], leaves)]
        return jax.tree_util.tree_unflatten(treedef, projected)

    def _inputs(self, params, tokens, vector):
        xs = model_lib.embed(params, self.dm, tokens, self.V)
        if self.feed:
            xs = jnp.concatenate([xs, jnp.broadcast_to(vector[:, None, :], (
                *tokens.shape, vector.shape[-1])).astype(xs.dtype)], axis=-1)
        return xs

    def teacher_forced(self, params, batch, key=None):
        """Logits [B, T-1, V] of the target's next tokens, given the true ones before."""
        k_enc = k_dec = k_out = None
        if key is not None:
            k_enc, k_dec, k_out = jax.random.split(key, 3)
        carry = self.start(params, batch["source"], batch["source_lengths"], k_enc)
        xs = self._inputs(params, batch["target"][:, :-1], batch["source"])
        # Steps past the target's end carry no loss (their outputs are zeros).
        lengths = jnp.sum(batch["target"][:, 1:] != PAD, axis=1)
        with recurrent.scope("decoder"):
            _, ys = self.decoder.apply(params["decoder"], carry, xs, lengths=lengths, key=k_dec)
        ys = model_lib.output_dropout(ys, self.dm.dropout, k_out)
        return base.dense(params["readout"], ys)

    def step_fn(self, params, vector=None):
        def step(carry, tokens):
            xs = self._inputs(params, tokens[:, None], vector)
            with recurrent.scope("decoder"):
                carry, ys = self.decoder.apply(params["decoder"], carry, xs)
            return carry, base.dense(params["readout"], ys[:, 0])
        return step

    def as_model(self) -> model_lib.Model:
        return model_lib.Model(self.init, lambda params, batch_shape: None,
                               lambda params, carry, batch, key=None: (
                                   None, self.teacher_forced(params, batch, key)), self.V)


def decode_batch(net: Seq2Seq, params, batch, *, beam_size: int, length_penalty: float,
                 max_len: int):
    """Free-running decoding of a batch from its start tokens: tokens [B, max_len]."""
    carry = net.start(params, batch["source"], batch["source_lengths"])
    step_fn = net.step_fn(params, batch["source"] if net.feed else None)
    start = batch["target"][:, 0]
    if beam_size == 1:
        return decode.greedy(step_fn, carry, start, max_len=max_len, end_token=EOS)
    if net.feed:  # the beam's rows repeat each example's vector
        step_fn = net.step_fn(params, jnp.repeat(batch["source"], beam_size, axis=0))
    tokens, _ = decode.beam_search(step_fn, carry, start, beam_size=beam_size, max_len=max_len,
                                   end_token=EOS, length_penalty=length_penalty)
    return tokens[:, 0]
