"""Free-running decoding from a recurrent model: greedy, sampling, and beam search.

Every decoder drives a step function

    step_fn(carry, tokens [N]) -> (carry, logits [N, V])

(one step of the model: feed one token per row, get the next token's logits) from a carry whose
leaves all have the batch as their leading axis, and start tokens `[B]`. They are `lax.scan`
loops over the steps, batched over B: call them inside `jax.jit` (the tasks' evaluations do,
and so does `rnnlab.sample`). With `end_token`, a row that has produced it is finished: its
later tokens are `end_token`, and in beam search its score no longer changes.

The character LM samples with `sample`; seq2seq and vec2seq evaluate with `greedy` or
`beam_search`. A model of `rnnlab.models` is one step function: its `apply` on one token per
row, `apply(params, carry, tokens[:, None])`, with the logits' time axis dropped. (Token ids to
text is `rnnlab.data.to_text`.)
"""

from __future__ import annotations

from typing import Any, Callable

import jax
import jax.numpy as jnp

StepFn = Callable[[Any, jax.Array], tuple[Any, jax.Array]]


def _run(step_fn: StepFn, carry, start_tokens, max_len, end_token, pick, keys):
    """Feeds back `pick(logits, key)` for `max_len` steps; finished rows emit `end_token`."""
    done = jnp.zeros(start_tokens.shape, bool)

    def body(state, key):
        carry, tokens, done = state
        carry, logits = step_fn(carry, tokens)
        tokens = pick(logits.astype(jnp.float32), key).astype(start_tokens.dtype)
        if end_token is not None:
            tokens = jnp.where(done, end_token, tokens)
            done = done | (tokens == end_token)
        return (carry, tokens, done), tokens

    _, tokens = jax.lax.scan(body, (carry, start_tokens, done), keys, length=max_len)
    return jnp.moveaxis(tokens, 0, -1)


def greedy(step_fn: StepFn, carry, start_tokens: jax.Array, *, max_len: int,
           end_token: int | None = None) -> jax.Array:
    """The most likely token at every step: `tokens [B, max_len]`."""
    return _run(step_fn, carry, start_tokens, max_len, end_token,
                lambda logits, _: jnp.argmax(logits, axis=-1), None)


def sample(step_fn: StepFn, carry, start_tokens: jax.Array, *, key: jax.Array, max_len: int,
           temperature: float | jax.Array = 1.0, end_token: int | None = None) -> jax.Array:
    """Tokens drawn from softmax(logits / temperature), step t with `split(key, max_len)[t]`;
    `temperature=0` takes the argmax (the limit of temperature -> 0). `tokens [B, max_len]`."""

    def pick(logits, k):
        drawn = jax.random.categorical(k, logits / jnp.maximum(temperature, 1e-30))
        return jnp.where(temperature > 0, drawn, jnp.argmax(logits, axis=-1))

    return _run(step_fn, carry, start_tokens, max_len, end_token, pick,
                jax.random.split(key, max_len))


def length_penalty_term(length: jax.Array, alpha: float) -> jax.Array:
    """((5 + length) / 6) ** alpha (Wu et al. 2016, Google's NMT); 1 when alpha is 0."""
    return ((5.0 + length) / 6.0) ** alpha


def beam_search(step_fn: StepFn, carry, start_tokens: jax.Array, *, beam_size: int,
                max_len: int, end_token: int | None = None,
                length_penalty: float = 0.0) -> tuple[jax.Array, jax.Array]:
    """The `beam_size` best continuations of each row, best first.

    A hypothesis' score is the sum of its tokens' log-probabilities (up to and including
    `end_token`), divided by `length_penalty_term(its length, length_penalty)`. The search keeps
    the `beam_size` best raw sums at every step; with a beam as wide as the number of possible
    prefixes it is exact.

    Returns:
      tokens `[B, beam_size, max_len]` and scores `[B, beam_size]` (-inf for hypotheses that do
      not exist, when the beam is wider than the number of possible sequences).
    """
    B, K = start_tokens.shape[0], beam_size
    rows = lambda c: jnp.repeat(c, K, axis=0)  # noqa: E731  [B, ...] -> [B*K, ...]
    carry = jax.tree_util.tree_map(rows, carry)
    # Only the first beam of each row is alive at the start: its K copies would tie.
    scores = jnp.tile(jnp.where(jnp.arange(K) == 0, 0.0, -jnp.inf), (B, 1))
    state = (carry, rows(start_tokens), scores, jnp.zeros((B, K), bool),
             jnp.zeros((B, K), jnp.int32), jnp.zeros((B, K, max_len), start_tokens.dtype))

    def body(state, t):
        carry, tokens, scores, finished, lengths, seqs = state
        carry, logits = step_fn(carry, tokens)
        V = logits.shape[-1]
        logp = jax.nn.log_softmax(logits.astype(jnp.float32), axis=-1).reshape(B, K, V)
        if end_token is not None:  # a finished hypothesis continues with end_token, free
            frozen = jnp.where(jnp.arange(V) == end_token, 0.0, -jnp.inf)
            logp = jnp.where(finished[..., None], frozen, logp)
        scores, index = jax.lax.top_k((scores[..., None] + logp).reshape(B, K * V), K)
        beam, token = index // V, (index % V).astype(seqs.dtype)
        take = lambda a: jnp.take_along_axis(a, beam, axis=1)  # noqa: E731
        was_finished = take(finished)
        lengths = take(lengths) + (~was_finished).astype(jnp.int32)
        finished = was_finished | (token == end_token if end_token is not None else False)
        seqs = jnp.take_along_axis(seqs, beam[..., None], axis=1).at[:, :, t].set(token)
        flat = (jnp.arange(B)[:, None] * K + beam).reshape(-1)
        carry = jax.tree_util.tree_map(lambda c: c[flat], carry)
        return (carry, token.reshape(-1), scores, finished, lengths, seqs), None

    (_, _, scores, _, lengths, seqs), _ = jax.lax.scan(body, state, jnp.arange(max_len))
    if length_penalty:
        scores = scores / length_penalty_term(lengths.astype(jnp.float32), length_penalty)
        order = jnp.argsort(-scores, axis=1, stable=True)
        scores = jnp.take_along_axis(scores, order, axis=1)
        seqs = jnp.take_along_axis(seqs, order[..., None], axis=1)
    return seqs, scores
