"""Layers against Python loops of `cell.step`, manual reversal and finite differences."""

import jax
import jax.numpy as jnp
import jax.test_util
import numpy as np
import pytest

from rnnlab import cells, recurrent
from rnnlab.cells.variants import GREFF_VARIANTS

B, T, F, H = 3, 7, 5, 4
# Every registry cell (a new one is tested by being registered), with the options it needs.
# (mingru, minlstm and lru run their parallel scan here, against the Python loop of cell.step.)
NEEDS = {"jordan": {"output_size": 3}}
INPUT_SIZE = {"mut1": H}  # (without its input projection; mut2 is tested with one)
CELL_SPECS = [(name, NEEDS.get(name, {})) for name in sorted(cells.CELLS)]
# Forms chosen by an option: each one's own tests check its equations; here they run the scan
# against the Python loop and the padded lengths (the rest is the same layer code).
OPTION_SPECS = CELL_SPECS + [
    ("gru", {"reset_after": False}), ("elman", {"leak": 0.3}), ("elman", {"learn_leak": True})
] + [("lstm", {"variant": v}) for v in GREFF_VARIANTS] + [
    (name, {"integration": "multiplicative"}) for name in ("elman", "lstm", "gru")]


def ids(specs):
    return [name + "".join(f"_{v}" for k, v in options.items() if k != "output_size")
            for name, options in specs]


IDS = ids(CELL_SPECS)


def make(name, options, *, key=0, **rnn_options):
    cell = cells.get_cell(name, hidden_size=H, **options)
    if cell.linear and not rnn_options.get("zoneout"):
        rnn_options.setdefault("parallel", True)  # (None would choose the sequential scan on CPU)
    layer = recurrent.rnn(cell, **rnn_options)
    params = layer.init(jax.random.key(key), INPUT_SIZE.get(name, F))
    # Non-zero biases so that a wrong bias path cannot hide.
    params = jax.tree_util.tree_map(
        lambda p: p + 0.1 * jax.random.normal(jax.random.key(key + 1), p.shape), params
    )
    return cell, layer, params


def inputs(name=None, shape=None, seed=0):
    shape = shape or (B, T, INPUT_SIZE.get(name, F))
    return jax.random.normal(jax.random.key(100 + seed), shape)


def loop(cell, params, carry, xs):
    """Reference: a Python loop of cell.step over the time axis of [B, T, F]."""
    ys = []
    for t in range(xs.shape[1]):
        carry, y = cell.step(params, carry, xs[:, t])
        ys.append(y)
    return carry, jnp.stack(ys, axis=1)


def assert_trees_close(a, b, atol=1e-5):
    jax.tree_util.tree_map(lambda u, v: np.testing.assert_allclose(u, v, atol=atol, rtol=1e-5), a, b)


@pytest.mark.parametrize("name,options", OPTION_SPECS, ids=ids(OPTION_SPECS))
@pytest.mark.parametrize("projection", ["fused", "hoisted"])
def test_scan_equals_python_loop(name, options, projection):
    cell, layer, params = make(name, options, projection=projection)
    xs = inputs(name)
    carry0 = jax.tree_util.tree_map(lambda c: c + 0.3, layer.initial_carry(params, (B,)))
    want_carry, want_ys = loop(cell, params["cell"], carry0, xs)
    got_carry, got_ys = layer.apply(params, carry0, xs)
    assert_trees_close(got_ys, want_ys)
    assert_trees_close(got_carry, want_carry)


@pytest.mark.parametrize("name,options", CELL_SPECS, ids=IDS)
def test_hoisted_equals_fused_and_unroll(name, options):
    _, fused, params = make(name, options)
    xs = inputs(name)
    want = fused.apply(params, None, xs)
    _, hoisted, _ = make(name, options, projection="hoisted")
    assert_trees_close(hoisted.apply(params, None, xs), want)
    for k in (2, 3, T):
        _, unrolled, _ = make(name, options, unroll=k)
        assert_trees_close(unrolled.apply(params, None, xs), want)


@pytest.mark.parametrize("name,options", CELL_SPECS, ids=IDS)
def test_two_half_windows_equal_one_window(name, options):
    _, layer, params = make(name, options)
    xs = inputs(name)
    want_carry, want_ys = layer.apply(params, None, xs)
    carry, ys1 = layer.apply(params, None, xs[:, :3])
    carry, ys2 = layer.apply(params, carry, xs[:, 3:])
    assert_trees_close(jnp.concatenate([ys1, ys2], axis=1), want_ys)
    assert_trees_close(carry, want_carry)


@pytest.mark.parametrize("name,options", CELL_SPECS, ids=IDS)
@pytest.mark.parametrize("learn_initial_carry", [False, True])
def test_reset_equals_fresh_start(name, options, learn_initial_carry):
    _, layer, params = make(name, options, learn_initial_carry=learn_initial_carry)
    if learn_initial_carry:  # a non-zero learned carry, so that a zero reset would be wrong
        params["carry0"] = jax.tree_util.tree_map(lambda c: c + 0.5, params["carry0"])
    xs, k = inputs(name), 4
    carry_in = jax.tree_util.tree_map(lambda c: c - 0.2, layer.initial_carry(params, (B,)))
    reset = jnp.zeros((B, T), bool).at[1, k].set(True)
    carry, ys = layer.apply(params, carry_in, xs, reset=reset)
    plain_carry, plain_ys = layer.apply(params, carry_in, xs)
    fresh_carry, fresh_ys = layer.apply(params, None, xs[1:2, k:])
    assert_trees_close(ys[1, k:], fresh_ys[0])
    assert_trees_close(ys[1, :k], plain_ys[1, :k])
    others = np.array([0, 2])
    assert_trees_close(ys[others], plain_ys[others])
    assert_trees_close(jax.tree_util.tree_map(lambda c: c[1:2], carry), fresh_carry)


@pytest.mark.parametrize("name,options", OPTION_SPECS, ids=ids(OPTION_SPECS))
@pytest.mark.parametrize("reverse", [False, True])
def test_lengths_equal_unpadded_runs(name, options, reverse):
    cell, layer, params = make(name, options, reverse=reverse)
    lengths = jnp.array([T, 2, 5])
    xs = inputs(name)
    carry, ys = layer.apply(params, None, xs, lengths=lengths)
    for b, n in enumerate(lengths.tolist()):
        seq = xs[b : b + 1, :n]
        if reverse:  # reference: the cell run over the reversed unpadded sequence
            want_carry, want = loop(cell, params["cell"], layer.initial_carry(params, (1,)), seq[:, ::-1])
            want = want[:, ::-1]
        else:
            want_carry, want = loop(cell, params["cell"], layer.initial_carry(params, (1,)), seq)
        assert_trees_close(ys[b, :n], want[0])
        np.testing.assert_array_equal(ys[b, n:], 0.0)
        assert_trees_close(jax.tree_util.tree_map(lambda c: c[b : b + 1], carry), want_carry)


def test_reverse_without_lengths_is_time_reversal():
    cell, layer, params = make("lstm", {}, reverse=True)
    xs = inputs()
    carry, ys = layer.apply(params, None, xs)
    want_carry, want = loop(cell, params["cell"], layer.initial_carry(params, (B,)), xs[:, ::-1])
    assert_trees_close(ys, want[:, ::-1])
    assert_trees_close(carry, want_carry)


def manual_bidirectional(fwd_cell, bwd_cell, params, xs, n):
    """One sequence [n, F], unpadded: forward loop, and a forward loop over the reversal."""
    x = xs[None, :n]
    _, yf = loop(fwd_cell, params["fwd"]["cell"], fwd_cell.initial_carry(params["fwd"]["cell"], (1,)), x)
    _, yb = loop(bwd_cell, params["bwd"]["cell"], bwd_cell.initial_carry(params["bwd"]["cell"], (1,)), x[:, ::-1])
    return jnp.concatenate([yf, yb[:, ::-1]], axis=-1)[0]


def test_stacked_bidirectional_with_padding_equals_manual_reversal():
    lstm, gru = cells.get_cell("lstm", hidden_size=H), cells.get_cell("gru", hidden_size=H)
    elman = cells.get_cell("elman", hidden_size=3)
    layer = recurrent.stack(
        [recurrent.bidirectional(lstm, gru), recurrent.bidirectional(elman, elman, projection="hoisted")]
    )
    params = layer.init(jax.random.key(3), F)
    lengths = jnp.array([T, 1, 4])
    xs = inputs()
    _, ys = layer.apply(params, None, xs, lengths=lengths)
    assert ys.shape == (B, T, 6)
    for b, n in enumerate(lengths.tolist()):
        hidden = manual_bidirectional(lstm, gru, params["layer_0"], xs[b], n)
        want = manual_bidirectional(elman, elman, params["layer_1"], hidden, n)
        np.testing.assert_allclose(ys[b, :n], want, atol=1e-5)
        np.testing.assert_array_equal(ys[b, n:], 0.0)


def test_bidirectional_with_resets_equals_separate_segments():
    lstm = cells.get_cell("lstm", hidden_size=H)
    layer = recurrent.bidirectional(lstm, lstm, merge="sum")
    params = layer.init(jax.random.key(4), F)
    xs = inputs(shape=(1, T, F))
    reset = jnp.zeros((1, T), bool).at[0, 3].set(True)  # segments [0, 3) and [3, T)
    _, ys = layer.apply(params, None, xs, reset=reset)
    for lo, hi in [(0, 3), (3, T)]:
        _, want = layer.apply(params, None, xs[:, lo:hi])
        np.testing.assert_allclose(ys[:, lo:hi], want, atol=1e-5)


def test_vmap_over_unbatched_equals_batched_and_many_batch_dims():
    cell, layer, params = make("gru", {})
    xs = inputs(shape=(6, T, F))
    reset = jax.random.bernoulli(jax.random.key(5), 0.2, (6, T))
    lengths = jnp.array([7, 1, 3, 7, 5, 2])
    want_carry, want = layer.apply(params, None, xs, reset=reset, lengths=lengths)
    single = lambda x, r, n: layer.apply(params, None, x, reset=r, lengths=n)  # x [T, F]
    got_carry, got = jax.vmap(single)(xs, reset, lengths)
    assert_trees_close(got, want)
    assert_trees_close(got_carry, want_carry)
    carry2, ys2 = layer.apply(
        params, None, xs.reshape(2, 3, T, F), reset=reset.reshape(2, 3, T), lengths=lengths.reshape(2, 3)
    )
    assert_trees_close(ys2.reshape(6, T, H), want)
    assert_trees_close(carry2.reshape(6, H), want_carry)


@pytest.mark.parametrize("kind", ["rnn", "stack", "bidirectional"])
def test_jit_traces_once_per_shape(kind):
    lstm = cells.get_cell("lstm", hidden_size=H)
    layer = {
        "rnn": recurrent.rnn(lstm),
        "stack": recurrent.stack([recurrent.rnn(lstm), recurrent.rnn(lstm)], dropout=0.1),
        "bidirectional": recurrent.bidirectional(lstm, lstm),
    }[kind]
    params = layer.init(jax.random.key(0), F)
    traces = []

    @jax.jit
    def f(params, xs):
        traces.append(xs.shape)
        return layer.apply(params, None, xs)

    for seed in range(3):
        f(params, inputs(seed=seed))
    assert len(traces) == 1
    f(params, inputs(shape=(2, T, F)))
    assert len(traces) == 2


def test_learned_initial_carry_gets_gradients():
    _, layer, params = make("lstm", {}, learn_initial_carry=True)
    assert jax.tree_util.tree_map(jnp.shape, params["carry0"]) == ((H,), (H,))
    grads = jax.grad(lambda p: jnp.sum(layer.apply(p, None, inputs())[1] ** 2))(params)
    assert all(float(jnp.abs(g).sum()) > 0 for g in jax.tree_util.tree_leaves(grads["carry0"]))


def test_stack_dropout_and_residual():
    elman = cells.get_cell("elman", hidden_size=F)
    layers = [recurrent.rnn(elman), recurrent.rnn(elman)]
    plain = recurrent.stack(layers)
    dropped = recurrent.stack(layers, dropout=0.5)
    residual = recurrent.stack(layers, residual=True)
    params = plain.init(jax.random.key(6), F)
    xs = inputs()
    _, want = plain.apply(params, None, xs)
    _, no_key = dropped.apply(params, None, xs)
    np.testing.assert_array_equal(no_key, want)  # no key: no dropout (evaluation)
    _, a = dropped.apply(params, None, xs, key=jax.random.key(0))
    _, b = dropped.apply(params, None, xs, key=jax.random.key(0))
    _, c = dropped.apply(params, None, xs, key=jax.random.key(1))
    np.testing.assert_array_equal(a, b)
    assert not np.allclose(a, want) and not np.allclose(a, c)
    # residual: each layer's output plus its input (sizes match everywhere here)
    l0 = recurrent.stack(layers[:1])
    _, y0 = l0.apply({"layer_0": params["layer_0"]}, None, xs)
    h = y0 + xs
    _, y1 = l0.apply({"layer_0": params["layer_1"]}, None, h)
    _, got = residual.apply(params, None, xs)
    np.testing.assert_allclose(got, y1 + h, atol=1e-6)


def test_jordan_teacher_forcing_and_sampling_through_layer():
    cell, layer, params = make("jordan", {"output_size": 3})
    xs = inputs()
    targets = jax.random.randint(jax.random.key(7), (B, T), 0, 3)
    feedback = jax.nn.one_hot(jnp.pad(targets[:, :-1], ((0, 0), (1, 0))), 3)
    carry, ys = layer.apply(params, None, cells.jordan_inputs(xs, feedback=feedback))
    c = cell.initial_carry(params["cell"], (B,))
    for t in range(T):
        c, y = cell.step(params["cell"], c, {"x": xs[:, t], "feedback": feedback[:, t]})
        np.testing.assert_allclose(ys[:, t], y, atol=1e-5)
    _, hoisted, _ = make("jordan", {"output_size": 3}, projection="hoisted")
    assert_trees_close(hoisted.apply(params, None, cells.jordan_inputs(xs, feedback=feedback)), (carry, ys))
    carry, ys = layer.apply(params, None, cells.jordan_inputs(xs, key=jax.random.key(8)))
    fed = carry[1]
    np.testing.assert_array_equal(fed.sum(-1), 1.0)
    np.testing.assert_array_equal(fed.max(-1), 1.0)


LAYER_SPECS = {
    "rnn_reset_lengths": lambda: recurrent.rnn(cells.get_cell("lstm", hidden_size=3, param_dtype=jnp.float64)),
    "hoisted_gru": lambda: recurrent.rnn(
        cells.get_cell("gru", hidden_size=3, param_dtype=jnp.float64), projection="hoisted"
    ),
    "stack_bidirectional": lambda: recurrent.stack(
        [
            recurrent.bidirectional(
                cells.get_cell("elman", hidden_size=3, param_dtype=jnp.float64),
                cells.get_cell("gru", hidden_size=3, param_dtype=jnp.float64, reset_after=False),
                learn_initial_carry=True,
            ),
            recurrent.rnn(cells.get_cell("lstm", hidden_size=2, param_dtype=jnp.float64)),
        ],
        residual=True,
    ),
}


@pytest.mark.parametrize("spec", sorted(LAYER_SPECS))
def test_layer_gradients_match_finite_differences(spec):
    with jax.enable_x64(True):
        layer = LAYER_SPECS[spec]()
        params = layer.init(jax.random.key(9), 2)
        xs = jax.random.normal(jax.random.key(10), (2, 5, 2), jnp.float64)
        reset = jnp.zeros((2, 5), bool).at[0, 2].set(True)
        lengths = jnp.array([5, 3])
        w = jax.random.normal(jax.random.key(11), (2, 5, layer.output_size), jnp.float64)

        @jax.jit
        def loss(params, xs):
            carry, ys = layer.apply(params, None, xs, reset=reset, lengths=lengths)
            return jnp.sum(ys * w) + sum(jnp.sum(c**2) for c in jax.tree_util.tree_leaves(carry))

        jax.test_util.check_grads(loss, (params, xs), order=1, modes=("rev",), eps=1e-6)


def test_bad_inputs_name_the_argument_and_shape():
    _, layer, params = make("lstm", {})
    xs = inputs()
    with pytest.raises(ValueError, match=r"input size 5.*\[B\.\.\., T, 5\]"):
        layer.apply(params, None, inputs(shape=(B, T, F + 1)))
    with pytest.raises(ValueError, match=r"reset must have shape \[B\.\.\., T\] = \(3, 7\)"):
        layer.apply(params, None, xs, reset=jnp.zeros((B, T + 1), bool))
    with pytest.raises(ValueError, match=r"lengths must have shape \[B\.\.\.\] = \(3,\)"):
        layer.apply(params, None, xs, lengths=jnp.zeros((B, 1), int))
    with pytest.raises(ValueError, match="carry has shapes"):
        layer.apply(params, layer.initial_carry(params, (B + 1,)), xs)
    with pytest.raises(ValueError, match=r"xs must have shape \[B\.\.\., T, F\]"):
        layer.apply(params, None, jnp.zeros((F,)))
    with pytest.raises(ValueError, match="unknown projection"):
        recurrent.rnn(cells.get_cell("lstm", hidden_size=H), projection="cudnn")
    with pytest.raises(ValueError, match="merge"):
        recurrent.bidirectional(cells.get_cell("lstm", hidden_size=H), cells.get_cell("lstm", hidden_size=H), merge="mean")
    with pytest.raises(ValueError, match="dropout"):
        recurrent.stack([layer], dropout=1.0)


def test_lengths_past_the_window_mean_the_whole_window():
    for reverse in (False, True):
        _, layer, params = make("gru", {}, reverse=reverse)
        xs = inputs()
        _, want = layer.apply(params, None, xs)
        _, got = layer.apply(params, None, xs, lengths=jnp.array([T + 3, T, 100]))
        np.testing.assert_allclose(got, want, atol=1e-6)


@pytest.mark.parametrize("name", sorted(set(cells.CELLS) - {"jordan"}))
def test_every_cell_stacks_bidirectionally_with_a_learned_carry_and_vmaps(name):
    """Every registered cell (its default form). Jordan cells feed back their output: a single
    layer in one direction, by design."""
    cell = cells.get_cell(name, hidden_size=H)
    body = recurrent.stack([recurrent.bidirectional(cell, cell, learn_initial_carry=True),
                            recurrent.rnn(cell, learn_initial_carry=True)])
    xs = inputs(name)
    reset = jnp.zeros((B, T), bool).at[0, 3].set(True)
    lengths = jnp.array([T, 4, 2])

    def loss(params):
        _, ys = body.apply(params, None, xs, reset=reset, lengths=lengths)
        return jnp.sum(ys ** 2)

    trials = jax.vmap(lambda k: body.init(k, xs.shape[-1]))(jax.random.split(jax.random.key(0), 2))
    together = jax.jit(jax.vmap(jax.grad(loss)))(trials)  # (vmap == alone: test_group.py)
    assert all(np.all(np.isfinite(g)) for g in jax.tree_util.tree_leaves(together))
    first, second = (jax.tree_util.tree_leaves(together)[0][k] for k in range(2))
    assert not np.allclose(first, second)  # each trial its own params
    learned = together["layer_1"]["carry0"]  # reaches the loss at the start and at the reset
    assert any(np.any(np.asarray(g) != 0) for g in jax.tree_util.tree_leaves(learned))
