"""rnnlab.decode against Python loops and an exhaustive search over every sequence."""

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from rnnlab import decode

V, H, B = 3, 5, 4


def toy_model(seed=0):
    """A tiny random RNN language model: step_fn(carry [N, H], tokens [N]) -> (carry, logits)."""
    k1, k2, k3, k4 = jax.random.split(jax.random.key(seed), 4)
    emb = jax.random.normal(k1, (V, H))
    rec = jax.random.normal(k2, (H, H)) * 0.8
    out = jax.random.normal(k3, (H, V)) * 2.0
    carry = jax.random.normal(k4, (B, H))

    def step_fn(h, tokens):
        h = jnp.tanh(emb[tokens] + h @ rec)
        return h, h @ out

    return step_fn, carry


def log_probs_of(step_fn, carry_row, start, seq):
    """log p(seq | start) of one row, by feeding the sequence one token at a time (float64)."""
    h, token, total = carry_row[None], jnp.asarray([start]), 0.0
    for s in seq:
        h, logits = step_fn(h, token)
        total += float(jax.nn.log_softmax(np.asarray(logits[0], np.float64))[s])
        token = jnp.asarray([s])
    return total


def test_greedy_is_a_python_argmax_loop_and_stops_at_the_end_token():
    step_fn, carry = toy_model()
    start = jnp.array([0, 1, 2, 0])
    tokens = jax.jit(lambda c, s: decode.greedy(step_fn, c, s, max_len=6))(carry, start)
    h, token, want = carry, start, []
    for _ in range(6):
        h, logits = step_fn(h, token)
        token = jnp.argmax(logits, -1)
        want.append(token)
    np.testing.assert_array_equal(tokens, np.stack(want, 1))
    ended = decode.greedy(step_fn, carry, start, max_len=6, end_token=int(want[0][0]))
    np.testing.assert_array_equal(ended[0], np.full(6, int(want[0][0])))  # row 0 ends at once
    for row in np.asarray(ended):
        hits = np.flatnonzero(row == int(want[0][0]))
        if hits.size:
            assert (row[hits[0]:] == int(want[0][0])).all()


def test_sampling_follows_its_keys_and_zero_temperature_is_greedy():
    step_fn, carry = toy_model()
    start, key = jnp.zeros(B, jnp.int32), jax.random.key(3)
    drawn = decode.sample(step_fn, carry, start, key=key, max_len=5, temperature=0.7)
    h, token, want = carry, start, []
    for k in jax.random.split(key, 5):
        h, logits = step_fn(h, token)
        token = jax.random.categorical(k, logits / 0.7)
        want.append(token)
    np.testing.assert_array_equal(drawn, np.stack(want, 1))
    cold = decode.sample(step_fn, carry, start, key=key, max_len=5, temperature=0.0)
    np.testing.assert_array_equal(cold, decode.greedy(step_fn, carry, start, max_len=5))


@pytest.mark.parametrize("end_token", [None, 2])
def test_beam_of_one_is_greedy(end_token):
    step_fn, carry = toy_model(1)
    start = jnp.array([0, 1, 2, 1])
    tokens, scores = decode.beam_search(step_fn, carry, start, beam_size=1, max_len=5,
                                        end_token=end_token)
    np.testing.assert_array_equal(tokens[:, 0],
                                  decode.greedy(step_fn, carry, start, max_len=5,
                                                end_token=end_token))
    assert scores.shape == (B, 1)


def brute_force(step_fn, carry_row, start, max_len, end_token, alpha):
    """Every distinct sequence (after end_token, only end_token), scored and sorted."""
    seqs = [seq for seq in itertools.product(range(V), repeat=max_len)
            if end_token is None or end_token not in seq
            or all(s == end_token for s in seq[seq.index(end_token):])]
    tokens = jnp.asarray(seqs)
    # Every sequence at once, step by step: the log-probability of each of its tokens.
    h, token, steps = jnp.repeat(carry_row[None], len(seqs), 0), jnp.full(len(seqs), start), []
    for t in range(max_len):
        h, logits = step_fn(h, token)
        steps.append(jnp.take_along_axis(jax.nn.log_softmax(logits), tokens[:, t:t + 1], 1)[:, 0])
        token = tokens[:, t]
    logp = np.asarray(jnp.stack(steps, 1), np.float64)
    found = {}
    for seq, row in zip(seqs, logp):
        length = seq.index(end_token) + 1 if end_token in seq else max_len
        found[seq] = row[:length].sum() / decode.length_penalty_term(length, alpha)
    return sorted(found.items(), key=lambda kv: -kv[1])


@pytest.mark.parametrize("end_token,alpha", [(None, 0.0), (2, 0.0), (2, 0.6)])
def test_beam_search_equals_exhaustive_search(end_token, alpha):
    step_fn, carry = toy_model(2)
    start, max_len = jnp.array([0, 1, 2, 0]), 4
    K = V ** (max_len - 1)  # as wide as the number of prefixes: the search is exact
    tokens, scores = jax.jit(lambda c, s: decode.beam_search(
        step_fn, c, s, beam_size=K, max_len=max_len, end_token=end_token,
        length_penalty=alpha))(carry, start)
    for b in range(B):
        want = brute_force(step_fn, carry[b], int(start[b]), max_len, end_token, alpha)
        # beam search ranks the K best raw sums; with a length penalty the exhaustive list is
        # re-ranked, so compare the sets of the hypotheses it holds and their exact scores.
        got = {tuple(map(int, t)): float(s) for t, s in zip(tokens[b], scores[b])
               if np.isfinite(s)}
        exhaustive = dict(want)
        assert len(got) == min(K, len(exhaustive))
        for seq, score in got.items():
            np.testing.assert_allclose(score, exhaustive[seq], rtol=1e-5, atol=1e-5)
        assert list(scores[b][np.isfinite(scores[b])]) == sorted(got.values(), reverse=True)
        if alpha == 0.0:  # no re-ranking: the beam holds exactly the K best
            best = [seq for seq, _ in want[:K]]
            assert [tuple(map(int, t)) for t in tokens[b][:len(best)]] == best


def test_a_finished_hypothesis_keeps_its_score_and_emits_only_the_end_token():
    step_fn, carry = toy_model(4)
    start = jnp.zeros(B, jnp.int32)
    tokens, scores = decode.beam_search(step_fn, carry, start, beam_size=4, max_len=6,
                                        end_token=1)
    for b in range(B):
        for seq, score in zip(np.asarray(tokens[b]), np.asarray(scores[b])):
            hits = np.flatnonzero(seq == 1)
            scored = seq[: hits[0] + 1] if hits.size else seq
            if hits.size:
                assert (seq[hits[0]:] == 1).all()
            np.testing.assert_allclose(score, log_probs_of(step_fn, carry[b], 0, scored),
                                       rtol=1e-5, atol=1e-5)
