"""The layers' speed options: the hand-derived backward pass (`cells.fused`) against autodiff
through the cells' own steps (which tests/test_cells.py checks against float64 NumPy references)
and finite differences; rematerialisation; mixed precision."""

import jax
import jax.numpy as jnp
import jax.test_util
import numpy as np
import optax
import pytest

from configs import base as base_config
from rnnlab import cells, model, models, recurrent

T, F, H = 7, 4, 5
KERNEL_CELLS = [("elman", {}), ("irnn", {}), ("elman", {"activation": "relu"}), ("lstm", {}),
                ("gru", {}), ("gru", {"reset_after": False})]
IDS = ["elman", "irnn", "elman_relu", "lstm", "gru", "gru_reset_before"]
# Every option of the layer that the kernel implements itself, in two sets that together cover
# them all (reverse without lengths runs the scan backwards; with lengths the sequences are
# flipped around it: the finite-difference test).
OPTIONS = {
    "reverse_resets_dropouts_learned_carry_2d_batch": {
        "reverse": True, "reset": True, "learn_initial_carry": True, "recurrent_dropout": 0.4,
        "weight_drop": 0.2, "batch": (2, 3)},
    "lengths_resets_hoisted_unbatched_unroll": {
        "lengths": True, "reset": True, "projection": "hoisted", "batch": (), "unroll": 2},
}


@pytest.fixture
def x64():
    with jax.enable_x64(True):
        yield


def setup(name, options, dtype=jnp.float64, reset=False, lengths=False, batch=(3,), **rnn):
    cell = cells.get_cell(name, hidden_size=H, param_dtype=dtype, **options)
    k = iter(jax.random.split(jax.random.key(0), 12))
    xs = jax.random.normal(next(k), (*batch, T, F), dtype)
    data = {
        "reset": jax.random.bernoulli(next(k), 0.3, (*batch, T)) if reset else None,
        "lengths": jax.random.randint(next(k), batch, 1, T + 2) if lengths else None,
        # the dropouts draw from a key (training); without one they are off
        "key": next(k) if rnn.get("recurrent_dropout") or rnn.get("weight_drop") else None,
    }
    layers = {b: recurrent.rnn(cell, backward=b, **rnn) for b in ("custom", "autodiff")}
    params = layers["custom"].init(next(k), F)
    params = jax.tree_util.tree_map(  # non-zero biases and carry0
        lambda p: p + 0.3 * jax.random.normal(next(k), p.shape, p.dtype), params)
    carry = jax.tree_util.tree_map(lambda c: jax.random.normal(next(k), c.shape, dtype),
                                   layers["custom"].initial_carry(params, batch))
    return layers, params, carry, xs, data


def loss_fn(layer, data):
    def loss(params, carry, xs):
        carry, ys = layer.apply(params, carry, xs, **data)
        # weights that differ per position, so a misplaced gradient cannot cancel out
        w = jnp.cos(jnp.arange(ys.size, dtype=ys.dtype).reshape(ys.shape))
        return jnp.sum(w * ys) + sum(jnp.sum(jnp.sin(c)) for c in jax.tree_util.tree_leaves(carry))
    return loss


@pytest.mark.parametrize("option", list(OPTIONS))
@pytest.mark.parametrize("name, options", KERNEL_CELLS, ids=IDS)
def test_custom_backward_equals_autodiff_in_float64(name, options, option, x64):
    layers, params, carry, xs, data = setup(name, options, **OPTIONS[option])
    custom, autodiff = (jax.jit(jax.value_and_grad(loss_fn(layers[b], data), argnums=(0, 1, 2)))(
        params, carry, xs) for b in ("custom", "autodiff"))
    jax.tree_util.tree_map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-12),
                           custom, autodiff)


@pytest.mark.parametrize("name, options", KERNEL_CELLS, ids=IDS)
def test_custom_backward_matches_finite_differences(name, options, x64):
    layers, params, carry, xs, data = setup(name, options, reset=True, lengths=True,
                                            learn_initial_carry=True, reverse=True)
    loss = jax.jit(loss_fn(layers["custom"], data))
    jax.test_util.check_grads(loss, (params, carry, xs), order=1, modes=["rev"], atol=1e-6,
                              rtol=1e-6)


def test_stacked_bidirectional_and_vmapped_trials(x64):
    cell = cells.get_cell("lstm", hidden_size=H, param_dtype=jnp.float64)

    def body(backward):
        return recurrent.stack([recurrent.bidirectional(cell, cell, backward=backward),
                                recurrent.rnn(cell, backward=backward)])

    xs = jax.random.normal(jax.random.key(1), (3, T, F), jnp.float64)
    lengths = jnp.array([T, 2, 5])
    keys = jax.random.split(jax.random.key(2), 4)  # four trials
    params = jax.vmap(lambda k: body("auto").init(k, F))(keys)

    def grads(backward):
        layer = body(backward)

        def loss(p):
            return jnp.sum(jnp.tanh(layer.apply(p, None, xs, lengths=lengths)[1]) ** 2)
        return jax.jit(jax.vmap(jax.grad(loss)))(params)

    jax.tree_util.tree_map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-13),
                           grads("custom"), grads("autodiff"))


@pytest.mark.parametrize("name, options", KERNEL_CELLS[3:], ids=IDS[3:])
def test_bfloat16_compute_close_to_autodiff(name, options):
    cell = cells.get_cell(name, hidden_size=16, dtype=jnp.bfloat16, **options)
    xs = jax.random.normal(jax.random.key(1), (8, 12, F))
    grads = {}
    for backward in ("custom", "autodiff"):
        layer = recurrent.rnn(cell, backward=backward)
        params = layer.init(jax.random.key(0), F)
        loss = lambda p: jnp.sum(layer.apply(p, None, xs)[1].astype(jnp.float32) ** 2)
        grads[backward] = jax.jit(jax.grad(loss))(params)
    for a, b in zip(*(jax.tree_util.tree_leaves(grads[k]) for k in grads)):
        assert a.dtype == jnp.float32  # float32 params get float32 gradients
        np.testing.assert_allclose(a, b, rtol=0.1, atol=0.05 * float(jnp.max(jnp.abs(b))))


def test_auto_chooses_and_bad_choices_are_refused():
    def uses_kernel(layer):
        params = layer.init(jax.random.key(0), F)
        jaxpr = jax.make_jaxpr(lambda p: layer.apply(p, None, jnp.ones((2, 3, F)))[1])(params)
        return "custom_vjp" in str(jaxpr)

    assert uses_kernel(recurrent.rnn(cells.get_cell("lstm", hidden_size=H)))
    assert not uses_kernel(recurrent.rnn(cells.get_cell("lstm", hidden_size=H), zoneout=0.1))
    assert not uses_kernel(recurrent.rnn(cells.get_cell("mgu", hidden_size=H)))
    assert not uses_kernel(recurrent.rnn(cells.get_cell("elman", hidden_size=H, leak=0.5)))
    assert not uses_kernel(recurrent.rnn(cells.get_cell("lstm", hidden_size=H, variant="cifg")))
    with pytest.raises(ValueError, match="hand-derived"):
        recurrent.rnn(cells.get_cell("mgu", hidden_size=H), backward="custom")
    with pytest.raises(ValueError, match="hand-derived"):
        recurrent.rnn(cells.get_cell("gru", hidden_size=H), backward="custom", zoneout=0.1)
    with pytest.raises(ValueError, match="unknown backward"):
        recurrent.rnn(cells.get_cell("gru", hidden_size=H), backward="fast")


@pytest.mark.parametrize("T, k, reverse, lengths", [(10, 3, False, True), (9, 4, True, False)])
def test_remat_computes_the_same_values_and_gradients(T, k, reverse, lengths, x64):
    cell = cells.get_cell("gru", hidden_size=H, param_dtype=jnp.float64)
    xs = jax.random.normal(jax.random.key(0), (2, T, F), jnp.float64)
    data = {"lengths": jnp.array([T, 4]) if lengths else None,
            "reset": jax.random.bernoulli(jax.random.key(1), 0.2, (2, T))}
    plain, chunked = (recurrent.rnn(cell, reverse=reverse, remat=r) for r in (0, k))
    params = plain.init(jax.random.key(2), F)
    a, b = (jax.jit(jax.value_and_grad(loss_fn(layer, data), argnums=(0, 1, 2)))(
        params, plain.initial_carry(params, (2,)), xs) for layer in (plain, chunked))
    jax.tree_util.tree_map(
        lambda u, v: np.testing.assert_allclose(u, v, rtol=1e-10, atol=1e-13), a, b)


def test_remat_bounds_the_memory_of_long_windows():
    cell = cells.get_cell("lstm", hidden_size=32)
    xs = jax.random.normal(jax.random.key(0), (4, 1024, F))

    def temp_bytes(**options):  # XLA's own accounting of the gradient's temporary buffers
        layer = recurrent.rnn(cell, **options)
        params = layer.init(jax.random.key(1), F)
        loss = lambda p: jnp.sum(layer.apply(p, None, xs)[1] ** 2)
        return jax.jit(jax.grad(loss)).lower(params).compile().memory_analysis().temp_size_in_bytes

    full, chunked = temp_bytes(backward="autodiff"), temp_bytes(remat=32)
    assert chunked < full / 4
    with pytest.raises(ValueError, match="remat"):
        recurrent.rnn(cell, remat=8, backward="custom")


def test_mixed_precision_computes_in_bfloat16_and_keeps_params_loss_and_c_in_float32():
    losses = {}
    for dtype in ("float32", "bfloat16"):
        m = base_config.get_config().model
        m.cell, m.hidden_size, m.embed_size, m.dtype, m.num_layers = "lstm", 32, 8, dtype, 1
        model.check_model_config(m)
        lm = models.language_model(m, 11)
        params = lm.init(jax.random.key(0))
        tokens = jax.random.randint(jax.random.key(1), (4, 12), 0, 11)

        def loss(p):
            carry, logits = lm.apply(p, None, tokens[:, :-1])
            assert logits.dtype == jnp.float32
            assert [c.dtype for c in jax.tree.leaves(carry)] == [jnp.dtype(dtype), jnp.float32]
            return optax.softmax_cross_entropy_with_integer_labels(logits, tokens[:, 1:]).mean()

        jaxpr = str(jax.make_jaxpr(loss)(params))
        assert ("bf16[" in jaxpr) == (dtype == "bfloat16")
        value, grads = jax.jit(jax.value_and_grad(loss))(params)
        assert value.dtype == jnp.float32
        assert {g.dtype for g in jax.tree.leaves(grads)} == {jnp.dtype(jnp.float32)}
        losses[dtype] = value
    np.testing.assert_allclose(losses["bfloat16"], losses["float32"], rtol=0.02)
    with pytest.raises(ValueError, match="model.dtype"):
        m.dtype = "float16"
        model.check_model_config(m)
