"""Tests of the classic cells (rnnlab/cells) against float64 NumPy restatements of the published
equations (Elman 1990; Jordan 1986; Hochreiter and Schmidhuber 1997 in PyTorch's `nn.LSTM`
form; Cho et al. 2014 and PyTorch's `nn.GRU` form) and against Flax's cells with the weights
copied across.

The NumPy references below are written from the equations, not from the library: they must not
call rnnlab code.
"""

from __future__ import annotations

from functools import partial

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.test_util import check_grads
from numpy.testing import assert_allclose, assert_array_equal

from rnnlab import interop
from rnnlab.cells import Cell, classic, get_cell, jordan_inputs

B, F, H, O, T = 3, 5, 6, 4, 4
TOL = dict(atol=1e-5, rtol=1e-5)


# ------------------------------------------------------------------------------------------------
# float64 NumPy references of the published equations


def np_sigmoid(v):
    return 1.0 / (1.0 + np.exp(-v))


def np_softmax(v):
    e = np.exp(v - v.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


NP_ACT = {
    "tanh": np.tanh,
    "relu": lambda v: np.maximum(v, 0.0),
    "identity": lambda v: v,
    "leaky_relu": lambda v: np.where(v >= 0, v, 0.01 * v),
    "sigmoid": np_sigmoid,
    "softmax": np_softmax,
}


def np_elman(p, h, x, act="tanh"):
    # Elman 1990: h_t = act(x_t W_xh + h_{t-1} W_hh + b)
    h = NP_ACT[act](x @ p["w_x"] + h @ p["w_h"] + p["b"])
    return h, h


def np_lstm(p, carry, x):
    # PyTorch's nn.LSTM documentation (gate order i, f, g, o), carry (h, c)
    h, c = carry
    i, f, g, o = np.split(x @ p["w_x"] + h @ p["w_h"] + p["b"], 4, axis=-1)
    c = np_sigmoid(f) * c + np_sigmoid(i) * np.tanh(g)
    h = np_sigmoid(o) * np.tanh(c)
    return (h, c), h


def np_gru(p, h, x, reset_after=True, act="tanh"):
    # PyTorch's nn.GRU form (reset_after) and Cho et al. 2014's (reset before), order r, z, n
    W_ir, W_iz, W_in = np.split(p["w_x"], 3, axis=1)
    W_hr, W_hz, W_hn = np.split(p["w_h"], 3, axis=1)
    b_ir, b_iz, b_in = np.split(p["b_x"], 3)
    b_hr, b_hz, b_hn = np.split(p["b_h"], 3)
    r = np_sigmoid(x @ W_ir + b_ir + h @ W_hr + b_hr)
    z = np_sigmoid(x @ W_iz + b_iz + h @ W_hz + b_hz)
    if reset_after:
        n = NP_ACT[act](x @ W_in + b_in + r * (h @ W_hn + b_hn))
    else:
        n = NP_ACT[act](x @ W_in + b_in + (r * h) @ W_hn + b_hn)
    h = (1 - z) * n + z * h
    return h, h


def np_jordan(p, carry, x, mu=0.0, out="softmax"):
    # Jordan 1986, with a state decay mu: s_t = f_t + mu s_{t-1}; h_t = tanh(x W_xh + s_t W_sh + b); logits = h W_hy + b_y.
    # f_t is the given feedback (teacher forcing) or out(previous logits), kept in the carry.
    s, fed = carry
    f = fed
    if isinstance(x, dict):
        f = x.get("feedback", fed)
        x = x["x"]
    s = f + mu * s
    h = np.tanh(x @ p["w_x"] + s @ p["w_s"] + p["b"])
    y = h @ p["w_y"] + p["b_y"]
    return (s, NP_ACT[out](y)), y


# ------------------------------------------------------------------------------------------------
# helpers


def param_shapes(name):
    if name in ("elman", "irnn"):
        return {"w_x": (F, H), "w_h": (H, H), "b": (H,)}
    if name == "lstm":
        return {"w_x": (F, 4 * H), "w_h": (H, 4 * H), "b": (4 * H,)}
    if name == "gru":
        return {"w_x": (F, 3 * H), "w_h": (H, 3 * H), "b_x": (3 * H,), "b_h": (3 * H,)}
    if name == "jordan":
        return {"w_x": (F, H), "w_s": (O, H), "b": (H,), "w_y": (H, O), "b_y": (O,)}
    raise AssertionError(name)


def rand(rng, *shape, scale=0.5):
    """float64 values that float32 represents exactly."""
    return (scale * rng.standard_normal(shape)).astype(np.float32).astype(np.float64)


def random_params(rng, name):
    return {k: rand(rng, *s) for k, s in param_shapes(name).items()}  # non-zero biases too


def random_carry(rng, name, batch_shape=(B,)):
    if name == "lstm":
        return (rand(rng, *batch_shape, H), rand(rng, *batch_shape, H))
    if name == "jordan":
        return (rand(rng, *batch_shape, O), rand(rng, *batch_shape, O))
    return rand(rng, *batch_shape, H)


def to_jnp(tree, dtype=jnp.float32):
    return jax.tree.map(lambda a: jnp.asarray(a, dtype), tree)


def assert_tree_close(actual, desired, **tol):
    assert jax.tree.structure(actual) == jax.tree.structure(desired)
    jax.tree.map(lambda a, d: assert_allclose(np.asarray(a, np.float64), d, **tol), actual, desired)


def recur_step(cell):
    return lambda p, c, x: cell.recur(p, c, cell.project(p, x))


# id -> (registered name, options, reference step (params, carry, x) -> (carry, y))
CASES = {
    "elman_tanh": ("elman", {}, np_elman),
    "elman_relu": ("elman", {"activation": "relu"}, partial(np_elman, act="relu")),
    "elman_identity": ("elman", {"activation": "identity"}, partial(np_elman, act="identity")),
    "elman_leaky_relu": (
        "elman", {"activation": "leaky_relu"}, partial(np_elman, act="leaky_relu")),
    "irnn": ("irnn", {}, partial(np_elman, act="relu")),
    "lstm": ("lstm", {}, np_lstm),
    "gru_reset_after": ("gru", {"reset_after": True}, np_gru),
    "gru_reset_before": ("gru", {"reset_after": False}, partial(np_gru, reset_after=False)),
    "gru_relu": ("gru", {"activation": "relu"}, partial(np_gru, act="relu")),
    "gru_before_identity": (
        "gru", {"reset_after": False, "activation": "identity"},
        partial(np_gru, reset_after=False, act="identity")),
    "gru_leaky_relu": ("gru", {"activation": "leaky_relu"}, partial(np_gru, act="leaky_relu")),
    "jordan": ("jordan", {"output_size": O}, np_jordan),
    "jordan_mu": ("jordan", {"output_size": O, "mu": 0.5}, partial(np_jordan, mu=0.5)),
}
NAMES = ["elman", "irnn", "lstm", "gru", "jordan"]


def make_cell(name, **options):
    if name == "jordan":
        options.setdefault("output_size", O)
    return get_cell(name, hidden_size=H, **options)


# ------------------------------------------------------------------------------------------------
# 1. the published equations, float32 library vs float64 NumPy


@pytest.mark.parametrize("path", ["step", "recur"])
@pytest.mark.parametrize("case", list(CASES))
def test_matches_numpy_reference(case, path):
    name, options, ref = CASES[case]
    rng = np.random.default_rng(0)
    cell = get_cell(name, hidden_size=H, **options)
    shapes = jax.tree.map(lambda a: a.shape, cell.init(jax.random.key(0), F))
    assert shapes == param_shapes(name)
    p, carry, xs = random_params(rng, name), random_carry(rng, name), rand(rng, T, B, F)
    step = cell.step if path == "step" else recur_step(cell)
    jp, jcarry = to_jnp(p), to_jnp(carry)
    for t in range(T):
        jcarry, y = step(jp, jcarry, jnp.asarray(xs[t], jnp.float32))
        carry, y_ref = ref(p, carry, xs[t])
        assert y.dtype == jnp.float32
        assert_allclose(y, y_ref, **TOL)
        assert_tree_close(jcarry, carry, **TOL)


# ------------------------------------------------------------------------------------------------
# 2. Flax's cells with their weights copied across


def swap(carry):  # rnnlab LSTM carry (h, c) <-> Flax (c, h)
    return carry[::-1]


FLAX = {  # (rnnlab.interop.from_flax converts the params: tested here against Flax itself)
    "LSTMCell": (nn.LSTMCell, "lstm", swap),
    "OptimizedLSTMCell": (nn.OptimizedLSTMCell, "lstm", swap),
    "GRUCell": (nn.GRUCell, "gru", lambda c: c),
    "SimpleCell": (nn.SimpleCell, "elman", lambda c: c),
}


@pytest.mark.parametrize("flax_name", list(FLAX))
def test_matches_flax_cell(flax_name):
    flax_cls, name, to_flax_carry = FLAX[flax_name]
    rng = np.random.default_rng(1)
    fcell = flax_cls(features=H)
    xs = to_jnp(rand(rng, T, B, F))
    flax_carry0 = fcell.initialize_carry(jax.random.key(2), xs[0].shape)
    variables = fcell.init(jax.random.key(1), flax_carry0, xs[0])
    # Flax initialises biases to zero: replace them by random values so that they are tested.
    fp = {mod: {k: (jnp.asarray(rand(rng, *v.shape), jnp.float32) if k == "bias" else v)
                for k, v in leaves.items()}
          for mod, leaves in variables["params"].items()}
    cell, params = interop.from_flax(fp, cell=flax_name)
    assert cell.hidden_size == H
    assert jax.tree.map(jnp.shape, params) == param_shapes(name)
    carry = to_jnp(random_carry(rng, name))
    fcarry = to_flax_carry(carry)
    for t in range(T):
        carry, y = cell.step(params, carry, xs[t])
        fcarry, fy = fcell.apply({"params": fp}, fcarry, xs[t])
        assert_allclose(y, fy, **TOL)
        assert_tree_close(to_flax_carry(carry), jax.tree.map(np.asarray, fcarry), **TOL)


# ------------------------------------------------------------------------------------------------
# 3. options and names


@pytest.mark.parametrize("forget_bias", [0.0, 1.0, 2.5])
def test_lstm_forget_bias_sets_only_the_f_slice(forget_bias):
    b = get_cell("lstm", hidden_size=H, forget_bias=forget_bias).init(jax.random.key(0), F)["b"]
    expected = np.zeros(4 * H, np.float32)
    expected[H:2 * H] = forget_bias
    assert_array_equal(b, expected)


def test_identity_init_and_irnn():
    p = get_cell("elman", hidden_size=H, init="identity", init_scale=0.5).init(jax.random.key(0), F)
    assert_array_equal(p["w_h"], 0.5 * np.eye(H))
    p = get_cell("irnn", hidden_size=H).init(jax.random.key(0), F)
    assert_array_equal(p["w_h"], np.eye(H))
    assert_array_equal(p["b"], np.zeros(H))


@pytest.mark.parametrize("name,gates", [("elman", 1), ("lstm", 4), ("gru", 3)])
@pytest.mark.parametrize("scale", [1.0, 2.0])
def test_orthogonal_init_per_gate_block(name, gates, scale):
    cell = get_cell(name, hidden_size=H, init_scale=scale)
    w_h = np.asarray(cell.init(jax.random.key(3), F)["w_h"])
    blocks = np.split(w_h, gates, axis=1)
    for w in blocks:
        assert_allclose(w @ w.T, scale**2 * np.eye(H), atol=1e-5)
    for a, b in zip(blocks, blocks[1:]):  # each block drawn separately
        assert not np.allclose(a, b)


@pytest.mark.parametrize(
    "name,options,expected",
    [
        ("elman", {"activation": "nope"}, ["tanh", "relu", "leaky_relu"]),
        ("gru", {"activation": "nope"}, ["tanh", "relu"]),
        ("lstm", {"init": "nope"}, ["orthogonal", "identity"]),
        ("no_such_cell", {}, ["lstm", "gru", "elman", "jordan", "irnn"]),
        ("lstm", {"foo": 1}, ["foo"]),
        ("no_such_module_xyz:factory", {}, ["no_such_module_xyz"]),
        ("rnnlab.cells.classic:no_such_factory", {}, ["no_such_factory"]),
    ],
)
def test_bad_names_raise_value_error_listing_the_known_ones(name, options, expected):
    with pytest.raises(ValueError) as err:
        get_cell(name, hidden_size=H, **options)
    for word in expected:
        assert word in str(err.value)


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("hidden_size", [0, -2, 2.5, True])
def test_non_positive_hidden_size_raises(name, hidden_size):
    with pytest.raises(ValueError, match="hidden_size"):
        get_cell(name, hidden_size=hidden_size, **({"output_size": O} if name == "jordan" else {}))


def test_jordan_non_positive_output_size_raises():
    with pytest.raises(ValueError, match="output_size"):
        get_cell("jordan", hidden_size=H, output_size=0)


def my_factory(hidden_size, *, slope=1.0):
    """A cell defined outside the library: Elman with act = slope * tanh."""
    return classic.elman(hidden_size, activation=lambda v: slope * jnp.tanh(v))


def test_module_factory_names():
    rng = np.random.default_rng(4)
    p, h, x = random_params(rng, "gru"), random_carry(rng, "gru"), rand(rng, B, F)
    cell = get_cell("rnnlab.cells.classic:gru", hidden_size=H, reset_after=False)
    assert isinstance(cell, Cell)
    assert_allclose(cell.step(to_jnp(p), to_jnp(h), to_jnp(x))[1],
                    np_gru(p, h, x, reset_after=False)[1], **TOL)

    name = f"{__name__}:my_factory"
    cell = get_cell(name, hidden_size=H, slope=2.0)
    p, h = random_params(rng, "elman"), random_carry(rng, "elman")
    y_ref = 2.0 * np.tanh(x @ p["w_x"] + h @ p["w_h"] + p["b"])
    assert_allclose(cell.step(to_jnp(p), to_jnp(h), to_jnp(x))[1], y_ref, **TOL)
    with pytest.raises(ValueError, match="bogus"):
        get_cell(name, hidden_size=H, bogus=1)


# ------------------------------------------------------------------------------------------------
# 4. any leading batch shape


@pytest.mark.parametrize("name", NAMES)
def test_leading_batch_shapes(name):
    rng = np.random.default_rng(5)
    cell = make_cell(name)
    params = to_jnp(random_params(rng, name))
    carry = to_jnp(random_carry(rng, name, (2, 3)))
    x = to_jnp(rand(rng, 2, 3, F))
    for leaf in jax.tree.leaves(cell.initial_carry(params, (2, 3))):
        assert leaf.shape == (2, 3, cell.output_size if name == "jordan" else H)
        assert_array_equal(leaf, 0)
    assert [leaf.shape for leaf in jax.tree.leaves(cell.initial_carry(params, ()))] == (
        [(cell.output_size if name == "jordan" else H,)] * len(jax.tree.leaves(carry)))

    c2, y2 = cell.step(params, carry, x)
    flat = lambda a: a.reshape(6, a.shape[-1])
    c6, y6 = cell.step(params, jax.tree.map(flat, carry), flat(x))
    assert y2.shape == (2, 3, cell.output_size)
    assert_allclose(flat(y2), y6, **TOL)
    assert_tree_close(jax.tree.map(flat, c2), c6, **TOL)

    c0, y0 = cell.step(params, jax.tree.map(lambda a: a[0, 0], carry), x[0, 0])
    assert y0.shape == (cell.output_size,)
    assert_allclose(y0, y2[0, 0], **TOL)
    assert_tree_close(c0, jax.tree.map(lambda a: a[0, 0], c2), **TOL)


# ------------------------------------------------------------------------------------------------
# 5. dtypes


def _run(cell, params, carry, xs):
    ys = []
    for x in xs:
        carry, y = cell.step(params, carry, x)
        ys.append(y)
    return carry, jnp.stack(ys)


@pytest.mark.parametrize("name", NAMES)
def test_bfloat16_inputs_with_float32_params(name):
    rng = np.random.default_rng(6)
    cell = make_cell(name)
    params, carry = to_jnp(random_params(rng, name)), to_jnp(random_carry(rng, name))
    xs = to_jnp(rand(rng, T, B, F, scale=1.0), jnp.bfloat16)
    c_bf, y_bf = _run(cell, params, carry, xs)
    c_32, y_32 = _run(cell, params, carry, xs.astype(jnp.float32))
    assert y_bf.dtype == jnp.float32
    assert all(leaf.dtype == jnp.float32 for leaf in jax.tree.leaves(c_bf))
    assert_allclose(y_bf, y_32, atol=1e-6, rtol=1e-6)
    assert_tree_close(c_bf, jax.tree.map(np.asarray, c_32), atol=1e-6, rtol=1e-6)


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("mode", ["param_dtype", "dtype"])
def test_bfloat16_compute(name, mode):
    rng = np.random.default_rng(7)
    cell = make_cell(name, **{mode: jnp.bfloat16})
    params = cell.init(jax.random.key(0), F)
    expected_param_dtype = jnp.bfloat16 if mode == "param_dtype" else jnp.float32
    assert all(v.dtype == expected_param_dtype for v in params.values())
    carry = cell.initial_carry(params, (B,))
    # an LSTM's c stays float32 (mixed precision keeps the long-term memory exact)
    wide = [jnp.bfloat16, jnp.float32] if name == "lstm" else None
    assert [leaf.dtype for leaf in jax.tree.leaves(carry)] == (
        wide or [jnp.bfloat16] * len(jax.tree.leaves(carry)))
    xp = cell.project(params, jnp.ones((B, F)))
    assert (xp["x"] if name == "jordan" else xp).dtype == jnp.bfloat16
    xs = to_jnp(rand(rng, T, B, F, scale=1.0))
    c_bf, y_bf = _run(cell, params, carry, xs)
    assert y_bf.dtype == jnp.bfloat16
    assert [leaf.dtype for leaf in jax.tree.leaves(c_bf)] == [
        leaf.dtype for leaf in jax.tree.leaves(carry)]
    # the same computation in float32, from the same (bf16-representable) params
    p32 = to_jnp(params)
    c_32, y_32 = _run(make_cell(name), p32, make_cell(name).initial_carry(p32, (B,)), xs)
    assert_allclose(np.asarray(y_bf, np.float32), y_32, atol=3e-2)
    assert_tree_close(c_bf, jax.tree.map(np.asarray, c_32), atol=3e-2)


# ------------------------------------------------------------------------------------------------
# 6. Jordan: teacher forcing, free running, sampling


def jordan_setup(seed, **options):
    rng = np.random.default_rng(seed)
    cell = get_cell("jordan", hidden_size=H, output_size=O, **options)
    return rng, cell, random_params(rng, "jordan"), rand(rng, B, T, F, scale=1.0)


@pytest.mark.parametrize("mu", [0.0, 0.5])
@pytest.mark.parametrize("start", ["zeros", "given"])
def test_jordan_teacher_forcing(mu, start):
    rng, cell, p, xs = jordan_setup(8, mu=mu)
    targets = rng.integers(0, O, (B, T))
    first = np.zeros((B, O)) if start == "zeros" else np.eye(O)[rng.integers(0, O, B)]
    feedback = np.concatenate([first[:, None], np.eye(O)[targets[:, :-1]]], axis=1)
    inputs = jordan_inputs(to_jnp(xs), feedback=to_jnp(feedback))
    params = to_jnp(p)
    carry = cell.initial_carry(params, (B,))
    ref_carry = (np.zeros((B, O)), np.zeros((B, O)))
    for t in range(T):
        carry, y = cell.step(params, carry, jax.tree.map(lambda a: a[:, t], inputs))
        f_t = first if t == 0 else np.eye(O)[targets[:, t - 1]]
        ref_carry, y_ref = np_jordan(p, ref_carry, {"x": xs[:, t], "feedback": f_t}, mu=mu)
        assert_allclose(y, y_ref, **TOL)
        assert_tree_close(carry, ref_carry, **TOL)


@pytest.mark.parametrize("mu", [0.0, 0.5])
@pytest.mark.parametrize("output_activation", ["softmax", "identity", "sigmoid"])
@pytest.mark.parametrize("as_dict", [False, True])
def test_jordan_free_running(mu, output_activation, as_dict):
    rng, cell, p, xs = jordan_setup(9, mu=mu, output_activation=output_activation)
    params = to_jnp(p)
    carry = cell.initial_carry(params, (B,))
    ref_carry = (np.zeros((B, O)), np.zeros((B, O)))
    for t in range(T):
        x_t = to_jnp(xs[:, t])
        carry, y = cell.step(params, carry, {"x": x_t} if as_dict else x_t)
        ref_carry, y_ref = np_jordan(p, ref_carry, xs[:, t], mu=mu, out=output_activation)
        assert_allclose(y, y_ref, **TOL)
        assert_tree_close(carry, ref_carry, **TOL)


def test_jordan_sampling_feeds_back_a_one_hot_sample():
    rng, cell, p, xs = jordan_setup(16)  # a seed without near-ties among the top logits
    p["w_y"] *= 256.0  # very peaked logits: the sample is the argmax
    params = to_jnp(p)
    inputs = jordan_inputs(to_jnp(xs), key=jax.random.key(0))
    assert inputs["key"].shape == (B, T)
    carry = cell.initial_carry(params, (B,))
    drawn = set()
    for t in range(T):
        prev = carry
        carry, y = cell.step(params, carry, jax.tree.map(lambda a: a[:, t], inputs))
        top2 = np.sort(np.asarray(y), axis=-1)[:, -2:]
        assert (top2[:, 1] - top2[:, 0] > 20).all()  # the argmax has probability ~1
        assert_array_equal(carry[1], np.eye(O)[np.argmax(y, axis=-1)])
        drawn |= set(np.argmax(y, axis=-1).tolist())
        # the step used the previously fed-back sample as its feedback
        _, y_tf = cell.step(params, prev, {"x": inputs["x"][:, t], "feedback": prev[1]})
        assert_allclose(y, y_tf, **TOL)
    assert len(drawn) > 1
    # a raw uint32 key gives the same keys as the typed key
    raw = jordan_inputs(to_jnp(xs), key=jax.random.PRNGKey(0))["key"]
    assert_array_equal(jax.random.key_data(raw), jax.random.key_data(inputs["key"]))


def test_jordan_sampling_is_random_not_argmax():
    rng = np.random.default_rng(11)
    cell = get_cell("jordan", hidden_size=H, output_size=O)
    p = random_params(rng, "jordan")
    p["w_y"][:] = 0.0
    p["b_y"][:] = 0.0  # uniform output distribution
    n = 200
    x = to_jnp(rand(rng, n, 1, F))
    inputs = jordan_inputs(x, key=jax.random.key(1))
    carry, _ = cell.step(to_jnp(p), cell.initial_carry(to_jnp(p), (n,)),
                         jax.tree.map(lambda a: a[:, 0], inputs))
    fed = np.asarray(carry[1])
    assert set(np.unique(fed)) == {0.0, 1.0}
    assert_array_equal(fed.sum(-1), 1.0)
    assert (fed.sum(0) > n / O / 2).all()  # every class is drawn, roughly uniformly


def test_jordan_inputs_rejects_feedback_and_key():
    xs = jnp.zeros((B, T, F))
    with pytest.raises(ValueError):
        jordan_inputs(xs, feedback=jnp.zeros((B, T, O)), key=jax.random.key(0))


# ------------------------------------------------------------------------------------------------
# 7. gradients


@pytest.mark.parametrize("path", ["step", "recur"])
@pytest.mark.parametrize("case", [*CASES, "jordan_teacher_forcing"])
def test_gradients(case, path):
    name, options, _ = CASES["jordan" if case == "jordan_teacher_forcing" else case]
    rng = np.random.default_rng(12)
    with jax.enable_x64(True):
        cell = get_cell(name, hidden_size=H, param_dtype=jnp.float64, **options)
        assert all(v.dtype == jnp.float64 for v in cell.init(jax.random.key(0), F).values())
        params = to_jnp(random_params(rng, name), jnp.float64)
        carry = to_jnp(random_carry(rng, name), jnp.float64)
        xs = {"x": rand(rng, T, B, F)}
        if case == "jordan_teacher_forcing":
            xs["feedback"] = rand(rng, T, B, O)
        xs = to_jnp(xs if name == "jordan" else xs["x"], jnp.float64)
        w_y = jnp.asarray(rng.standard_normal((T, B, cell.output_size)))
        w_c = [jnp.asarray(rng.standard_normal(leaf.shape)) for leaf in jax.tree.leaves(carry)]
        step = cell.step if path == "step" else recur_step(cell)

        def loss(params, carry, xs):
            total = 0.0
            for t in range(T):
                carry, y = step(params, carry, jax.tree.map(lambda a: a[t], xs))
                total = total + jnp.sum(w_y[t] * y)
            return total + sum(jnp.sum(w * c) for w, c in zip(w_c, jax.tree.leaves(carry)))

        assert loss(params, carry, xs).dtype == jnp.float64
        check_grads(loss, (params, carry, xs), order=1, modes=("rev",))
