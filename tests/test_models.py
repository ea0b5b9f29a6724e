"""The one model builder (`rnnlab.models`): the params every head has always had (names,
shapes, and init values drawn from the same keys, so old checkpoints restore), the one `apply`
signature and what each head refuses, and a seq2seq decoder's pieces (start, one step at a time)
against its one-call teacher-forced form."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from configs import base as base_config
from rnnlab import layers
from rnnlab import model as model_lib
from rnnlab import models

import test_layers

V, E, H, B, T = 7, 5, 6, 3, 4


def section(**changes):
    m = base_config.get_config().model
    m.hidden_size, m.embed_size, m.dropout = H, E, 0.0
    for k, v in changes.items():
        m[k] = v
    return m


def seq2seq_config(**decoder):
    config = base_config.get_config()
    config.model.hidden_size, config.model.embed_size = H, E
    for k, v in decoder.items():
        config.decoder[k] = v
    return config


def lecun(key, shape):
    return jax.nn.initializers.lecun_normal()(key, shape)


def assert_same(a, b):
    jax.tree_util.tree_map(np.testing.assert_array_equal, a, b)


@pytest.mark.parametrize("head", ["language_model", "per_step", "pooled"])
def test_embed_body_readout_params_are_drawn_from_the_keys_they_always_were(head):
    """Independent of `models`: the key split (embed, body, readout) written out here."""
    m = section()
    if head == "language_model":
        net, out = models.language_model(m, V), V
    elif head == "per_step":
        net, out = models.per_step(m, vocab_size=V, output_size=3), 3
    else:
        net, out = models.pooled(m, pooling="last", bptt_len=0, vocab_size=V, output_size=3), 3
    key = jax.random.key(11)
    params = net.init(key)
    k_embed, k_body, k_out = jax.random.split(key, 3)
    assert set(params) == {"embed", "body", "readout"}
    assert_same(params["embed"], jax.random.normal(k_embed, (V, E)))
    assert_same(params["body"], model_lib.make_body(m).init(k_body, E))
    assert_same(params["readout"], {"w": lecun(k_out, (H, out)), "b": jnp.zeros((out,))})


def test_feature_inputs_and_a_jordan_cell_have_no_embedding_and_no_readout_respectively():
    net = models.pooled(section(), pooling="mean", bptt_len=0, input_size=2, output_size=1)
    assert set(net.init(jax.random.key(0))) == {"body", "readout"}
    jordan = models.language_model(section(cell="jordan", embed_size=0), V)
    params = jordan.init(jax.random.key(0))
    assert set(params) == {"body"}  # its output is the next token's distribution
    _, logits = jordan.apply(params, None, jnp.zeros((B, T), jnp.int32))
    assert logits.shape == (B, T, V) and logits.dtype == jnp.float32


@pytest.mark.parametrize("decoder, bridge", [({}, False), ({"hidden_size": 4}, True)])
def test_seq2seq_params_are_drawn_from_the_keys_they_always_were(decoder, bridge):
    config = seq2seq_config(**decoder)
    m, dm = config.model, models.decoder_section(config)
    net = models.seq2seq(m, dm, vocab_size=V)
    key = jax.random.key(3)
    params = net.init(key)
    keys = jax.random.split(key, 6)
    Hd = dm.hidden_size
    assert set(params) == {"decoder", "readout", "embed", "encoder"} | ({"bridge"} if bridge
                                                                           else set())
    assert_same(params["decoder"], model_lib.make_body(dm).init(keys[0], E))
    assert_same(params["readout"], {"w": lecun(keys[1], (Hd, V)), "b": jnp.zeros((V,))})
    assert_same(params["embed"], jax.random.normal(keys[2], (V, E)))
    assert_same(params["encoder"], model_lib.make_body(m).init(keys[3], E))
    if bridge:  # the encoder's carry, flattened, -> each leaf of the decoder's
        def sizes(body, p):
            return [int(np.prod(c.shape[1:]))
                    for c in jax.tree_util.tree_leaves(body.initial_carry(p, (1,)))]

        source = sum(sizes(model_lib.make_body(m), params["encoder"]))
        leaves = sizes(model_lib.make_body(dm), params["decoder"])
        assert_same(params["bridge"], [{"w": lecun(k, (source, n)), "b": jnp.zeros((n,))}
                                       for k, n in zip(jax.random.split(keys[4], len(leaves)),
                                                       leaves)])


def test_every_head_has_the_one_apply_and_refuses_a_keyword_it_does_not_read():
    tokens = jnp.zeros((B, T), jnp.int32)
    lengths = jnp.full((B,), T)
    lm = models.language_model(section(), V)
    pooled = models.pooled(section(), pooling="last", bptt_len=0, vocab_size=V, output_size=2)
    config = seq2seq_config()
    s2s = models.seq2seq(config.model, models.decoder_section(config), vocab_size=V)
    for net, refused in ((lm, {"source": tokens}), (pooled, {"reset": tokens > 0}),
                         (s2s, {"teacher": tokens > 0})):
        params = net.init(jax.random.key(0))
        (name,) = refused
        with pytest.raises(TypeError, match=f"reads none of \\['{name}'\\]"):
            net.apply(params, None, tokens, lengths=lengths, **refused)
    with pytest.raises(TypeError, match="a pooled model needs lengths"):
        pooled.apply(pooled.init(jax.random.key(0)), None, tokens)
    assert lm.start is None and pooled.start is None and s2s.start is not None


@pytest.mark.parametrize("task", ["seq2seq", "vec2seq_feed"])
def test_a_decoder_started_apart_and_run_a_step_at_a_time_is_its_one_call(task):
    """What free-running decoding runs (`start`, then one token per call) against the
    teacher-forced call that training runs, on the same tokens."""
    config = seq2seq_config(hidden_size=4)
    vector = task == "vec2seq_feed"
    net = models.seq2seq(config.model, models.decoder_section(config), vocab_size=V,
                         vector_size=3 if vector else None, feed=vector)
    params = net.init(jax.random.key(1))
    source = (jax.random.normal(jax.random.key(2), (B, 3)) if vector else
              jax.random.randint(jax.random.key(2), (B, 5), 0, V))
    source_lengths = jnp.array([3, 3, 3]) if vector else jnp.array([5, 2, 4])
    tokens = jax.random.randint(jax.random.key(3), (B, T), 0, V)
    _, whole = net.apply(params, None, tokens, source=source, source_lengths=source_lengths)
    carry = net.start(params, source, source_lengths)
    _, started = net.apply(params, carry, tokens, source=source)
    np.testing.assert_allclose(started, whole, rtol=1e-6, atol=1e-6)
    steps = []
    for t in range(T):
        carry, logits = net.apply(params, carry, tokens[:, t:t + 1], source=source)
        steps.append(logits[:, 0])
    np.testing.assert_allclose(jnp.stack(steps, 1), whole, rtol=1e-5, atol=1e-6)


def test_a_tap_passed_to_apply_watches_every_body_by_the_names_it_always_had():
    """`apply(..., tap=)` (and `start`) hand the tap to the body: layers named `layer_i`
    (`/fwd`, `/bwd`), a seq2seq model's `encoder/...` and `decoder/...` (the names diagnostics
    have always written); each runs the sequential path and says so; the outputs are those of
    the untapped call."""
    tokens = jax.random.randint(jax.random.key(1), (B, T), 0, V)
    lengths = jnp.array([T, 2, 3])
    lm = models.language_model(section(num_layers=2), V)
    assert seq2seq_config().model.num_layers == 2
    pooled = models.pooled(section(num_layers=1, bidirectional=True), pooling="mean",
                           bptt_len=0, vocab_size=V, output_size=2)
    config = seq2seq_config()
    s2s = models.seq2seq(config.model, models.decoder_section(config), vocab_size=V)
    source = {"source": tokens, "source_lengths": lengths}
    for net, read, want in (
            (lm, {}, ["layer_0", "layer_1"]),
            (pooled, {"lengths": lengths}, ["layer_0/fwd", "layer_0/bwd"]),
            (s2s, source, ["encoder/layer_0", "encoder/layer_1", "decoder/layer_0",
                           "decoder/layer_1"])):
        params = net.init(jax.random.key(0))
        tap = test_layers.Recorder()
        _, tapped = net.apply(params, None, tokens, tap=tap, **read)
        assert tap.seen == want
        assert tap.paths == dict.fromkeys(want, "sequential")
        np.testing.assert_allclose(tapped, net.apply(params, None, tokens, **read)[1],
                                   rtol=1e-5, atol=1e-6)
    tap = test_layers.Recorder()
    s2s.start(s2s.init(jax.random.key(0)), tokens, lengths, tap=tap)
    assert tap.seen == ["encoder/layer_0", "encoder/layer_1"]
