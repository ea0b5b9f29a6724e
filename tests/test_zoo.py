"""The zoo cells against float64 NumPy restatements of their published equations (written here
from the papers' forms, not from the library), their parameter counts, and gradient checks.
The registry-wide layer tests (scan == loop, resets, lengths, windows) are in
tests/test_recurrent.py and cover every registered cell."""

from __future__ import annotations

from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.test_util import check_grads
from numpy.testing import assert_allclose

from rnnlab.cells import CELLS, get_cell
from rnnlab.cells.variants import GREFF_VARIANTS

B, F, H, T = 3, 5, 4, 4
TOL = dict(atol=1e-5, rtol=1e-5)


def sig(v):
    return 1.0 / (1.0 + np.exp(-v))


def split(v, n):
    return np.split(v, n, axis=-1)


def np_mgu(p, h, x):  # f = s(xW_xf + hW_hf + b_f); h~ = tanh(xW_xh + (f*h)W_hh + b_h)
    W_xf, W_xh = split(p["w_x"], 2)
    W_hf, W_hh = split(p["w_h"], 2)
    b_f, b_h = split(p["b"], 2)
    f = sig(x @ W_xf + h @ W_hf + b_f)
    h = (1 - f) * h + f * np.tanh(x @ W_xh + (f * h) @ W_hh + b_h)
    return h, h


def np_mut(p, h, x, number):
    if "w_in" in p:
        x = x @ p["w_in"] + p["b_in"]
    b_z, b_r, b_h = split(p["b"], 3)
    if number == 1:
        W_xz, W_xr = split(p["w_x"], 2)
        W_hr, W_hh = split(p["w_h"], 2)
        z = sig(x @ W_xz + b_z)
        r = sig(x @ W_xr + h @ W_hr + b_r)
        h = np.tanh((r * h) @ W_hh + np.tanh(x) + b_h) * z + h * (1 - z)
    elif number == 2:
        W_xz, W_xh = split(p["w_x"], 2)
        W_hz, W_hr, W_hh = split(p["w_h"], 3)
        z = sig(x @ W_xz + h @ W_hz + b_z)
        r = sig(x + h @ W_hr + b_r)
        h = np.tanh((r * h) @ W_hh + x @ W_xh + b_h) * z + h * (1 - z)
    else:
        W_xz, W_xr, W_xh = split(p["w_x"], 3)
        W_hz, W_hr, W_hh = split(p["w_h"], 3)
        z = sig(x @ W_xz + np.tanh(h) @ W_hz + b_z)
        r = sig(x @ W_xr + h @ W_hr + b_r)
        h = np.tanh((r * h) @ W_hh + x @ W_xh + b_h) * z + h * (1 - z)
    return h, h


def np_ugrnn(p, h, x):  # [g_a, c_a] = concat(x, h) W + b; g = s(g_a + 1)
    W = np.concatenate([p["w_x"], p["w_h"]], axis=0)
    g_a, c_a = split(np.concatenate([x, h], -1) @ W + p["b"], 2)
    g = sig(g_a + 1.0)
    h = g * h + (1 - g) * np.tanh(c_a)
    return h, h


def np_plus_rnn(p, h, x):
    if "w_in" in p:
        x = x @ p["w_in"] + p["b_in"]
    W = np.concatenate([p["w_x"], p["w_h"]], axis=0)
    gh_a, h_a, gy_a, y_a = split(np.concatenate([x, h], -1) @ W + p["b"], 4)
    gh, gy = sig(gh_a + 1.0), sig(gy_a + 1.0)
    h = gh * h + (1 - gh) * np.tanh(h_a)
    return h, gy * x + (1 - gy) * np.maximum(y_a, 0)


def np_indrnn(p, h, x):
    h = np.maximum(x @ p["w_x"] + p["b"] + p["u"] * h, 0)
    return h, h


def np_greff(p, carry, x, variant):
    """Greff et al.'s section II with each variant's change (gate order i, f, z, o)."""
    h, c_prev = carry[0], carry[1]
    names = [n for n in "ifzo" if not (variant == "nig" and n == "i")
             and not (variant in ("nfg", "cifg") and n == "f")
             and not (variant == "nog" and n == "o")]
    a = dict(zip(names, split(x @ p["w_x"] + h @ p["w_h"] + p["b"], len(names))))
    if variant == "fgr":
        i_prev, f_prev, o_prev = split(carry[2], 3)
        R = {(s, d): blk for s, row in zip("ifo", np.split(p["r_gates"], 3, axis=0))
             for d, blk in zip("ifo", split(row, 3))}
        for d in "ifo":
            a[d] = a[d] + i_prev @ R["i", d] + f_prev @ R["f", d] + o_prev @ R["o", d]
    zero = np.zeros(H)
    i = sig(a["i"] + p.get("p_i", zero) * c_prev) if "i" in a else 1.0
    f = 1 - i if variant == "cifg" else (
        sig(a["f"] + p.get("p_f", zero) * c_prev) if "f" in a else 1.0)
    z = a["z"] if variant == "niaf" else np.tanh(a["z"])
    c = z * i + c_prev * f
    o = sig(a["o"] + p.get("p_o", zero) * c) if "o" in a else 1.0
    y = (c if variant == "noaf" else np.tanh(c)) * o
    if variant == "fgr":
        return (y, c, np.concatenate([i, f, o], -1)), y
    return (y, c), y


def np_ln(a, s, b):
    mean = a.mean(-1, keepdims=True)
    return s * (a - mean) / np.sqrt(((a - mean) ** 2).mean(-1, keepdims=True) + 1e-5) + b


def np_ln_lstm(p, carry, x):  # Ba et al. 2016: LN over all 4H of each product, and of c
    h, c = carry
    a = (np_ln(h @ p["w_h"], p["ln_h_scale"], p["ln_h_bias"])
         + np_ln(x @ p["w_x"], p["ln_x_scale"], p["ln_x_bias"]) + p["b"])
    i, f, g, o = split(a, 4)
    c = sig(f) * c + sig(i) * np.tanh(g)
    h = sig(o) * np.tanh(np_ln(c, p["ln_c_scale"], p["ln_c_bias"]))
    return (h, c), h


def np_leaky_elman(p, h, x, a=None):
    rate = sig(p["leak_logit"]) if a is None else a
    return (lambda v: (v, v))((1 - rate) * h + rate * np.tanh(x @ p["w_x"] + h @ p["w_h"] + p["b"]))


def np_g(v):
    return np.where(v >= 0, v + 0.5, sig(v))


def np_mingru(p, h, x):  # Feng et al. 2024: z = s(k), h~ = g(.), h' = (1 - z) h + z h~
    k, v = split(x @ p["w_x"] + p["b"], 2)
    z = sig(k)
    h = (1 - z) * h + z * np_g(v)
    return h, h


def np_minlstm(p, h, x):  # f' = f / (f + i), i' = i / (f + i)
    k_f, k_i, v = split(x @ p["w_x"] + p["b"], 3)
    f, i = sig(k_f), sig(k_i)
    h = f / (f + i) * h + i / (f + i) * np_g(v)
    return h, h


def np_mi(p, xw, hu, at=slice(None)):  # Wu et al. 2016, general form
    return p["mi_alpha"][at] * xw * hu + p["mi_beta_h"][at] * hu + p["mi_beta_x"][at] * xw


def np_mi_elman(p, h, x):
    h = np.tanh(np_mi(p, x @ p["w_x"], h @ p["w_h"]) + p["b"])
    return h, h


def np_mi_lstm(p, carry, x):
    h, c = carry
    i, f, g, o = split(np_mi(p, x @ p["w_x"], h @ p["w_h"]) + p["b"], 4)
    c = sig(f) * c + sig(i) * np.tanh(g)
    h = sig(o) * np.tanh(c)
    return (h, c), h


def np_mi_gru(p, h, x, reset_after=True):
    xw = x @ p["w_x"]
    W_hr, W_hz, W_hn = split(p["w_h"], 3)
    b_hr, b_hz, b_hn = split(p["b_h"], 3)
    b_r, b_z, b_n = split(p["b_x"], 3)
    r = sig(np_mi(p, xw[:, :H], h @ W_hr + b_hr, slice(0, H)) + b_r)
    z = sig(np_mi(p, xw[:, H:2 * H], h @ W_hz + b_hz, slice(H, 2 * H)) + b_z)
    hu = r * (h @ W_hn + b_hn) if reset_after else (r * h) @ W_hn + b_hn
    n = np.tanh(np_mi(p, xw[:, 2 * H:], hu, slice(2 * H, None)) + b_n)
    h = (1 - z) * n + z * h
    return h, h


def np_lru(p, h, x):  # Orvieto et al. 2023, in row layout: h = lambda h + gamma (x B)
    lam = np.exp(-np.exp(p["nu_log"]) + 1j * np.exp(p["theta_log"]))
    if "w_in" in p:
        x = x @ p["w_in"] + p["b_in"]
    h = lam * h + np.exp(p["gamma_log"]) * (x @ (p["B_re"] + 1j * p["B_im"]))
    return h, np.real(h @ (p["C_re"] + 1j * p["C_im"])) + p["D"] * x


# id -> (name, options, reference, input size, parameter count formula)
def greff_count(variant):
    k = 3 if variant in ("nig", "nfg", "nog", "cifg") else 4
    peep = 0 if variant == "np" else (2 if k == 3 else 3)
    return k * H * (F + H) + k * H + peep * H + (9 * H * H if variant == "fgr" else 0)


ZOO = {
    "mgu": ("mgu", {}, np_mgu, F, 2 * H * (F + H) + 2 * H),
    "mut1": ("mut1", {}, partial(np_mut, number=1), H, 4 * H * H + 3 * H),
    "mut2": ("mut2", {}, partial(np_mut, number=2), H, 2 * H * H + 3 * H * H + 3 * H),
    "mut1_projected": ("mut1", {}, partial(np_mut, number=1), F, 4 * H * H + 3 * H + F * H + H),
    "mut3": ("mut3", {}, partial(np_mut, number=3), F, 3 * F * H + 3 * H * H + 3 * H),
    "ugrnn": ("ugrnn", {}, np_ugrnn, F, 2 * H * (F + H) + 2 * H),
    "plus_rnn": ("plus_rnn", {}, np_plus_rnn, H, 8 * H * H + 4 * H),
    "plus_rnn_projected": ("plus_rnn", {}, np_plus_rnn, F, 8 * H * H + 4 * H + F * H + H),
    "indrnn": ("indrnn", {}, np_indrnn, F, F * H + 2 * H),
    "ln_lstm": ("ln_lstm", {}, np_ln_lstm, F, 4 * H * (F + H) + 22 * H),
    "mingru": ("mingru", {}, np_mingru, F, 2 * H * (F + 1)),
    "lru": ("lru", {"state_size": 6}, np_lru, H, 3 * 6 + 4 * 6 * H + H),
    "lru_projected": ("lru", {}, np_lru, F, 3 * H + 4 * H * H + H + F * H + H),
    "elman_mi": ("elman", {"integration": "multiplicative"}, np_mi_elman, F,
                 H * (F + H) + 4 * H),
    "lstm_mi": ("lstm", {"integration": "multiplicative"}, np_mi_lstm, F,
                4 * H * (F + H) + 16 * H),
    "gru_mi": ("gru", {"integration": "multiplicative"}, np_mi_gru, F, 3 * H * (F + H) + 15 * H),
    "gru_mi_before": ("gru", {"integration": "multiplicative", "reset_after": False},
                      partial(np_mi_gru, reset_after=False), F, 3 * H * (F + H) + 15 * H),
    "minlstm": ("minlstm", {}, np_minlstm, F, 3 * H * (F + 1)),
    "elman_leak": ("elman", {"leak": 0.3}, partial(np_leaky_elman, a=0.3), F, H * (F + H) + H),
    "elman_learned_leak": ("elman", {"learn_leak": True}, np_leaky_elman, F,
                           H * (F + H) + 2 * H),
    **{f"lstm_{v}": ("lstm", {"variant": v}, partial(np_greff, variant=v), F, greff_count(v))
       for v in GREFF_VARIANTS},
}


def rand(rng, *shape, scale=0.5):
    """float64 values that float32 represents exactly."""
    return (scale * rng.standard_normal(shape)).astype(np.float32).astype(np.float64)


def setup(case, seed=0):
    name, options, ref, f, _ = ZOO[case]
    rng = np.random.default_rng(seed)
    cell = get_cell(name, hidden_size=H, **options)
    params = cell.init(jax.random.key(0), f)
    p = {k: rand(rng, *v.shape) for k, v in params.items()}  # non-zero biases, peepholes too
    carry = jax.tree.map(lambda c: rand(rng, *c.shape) + (
        1j * rand(rng, *c.shape) if jnp.iscomplexobj(c) else 0), cell.initial_carry(params, (B,)))
    return cell, ref, p, carry, rand(rng, T, B, f)


def to_jax(tree):
    return jax.tree.map(lambda a: jnp.asarray(a, jnp.complex64 if np.iscomplexobj(a)
                                              else jnp.float32), tree)


@pytest.mark.parametrize("path", ["step", "recur"])
@pytest.mark.parametrize("case", list(ZOO))
def test_matches_numpy_reference(case, path):
    cell, ref, p, carry, xs = setup(case)
    step = cell.step if path == "step" else (lambda q, c, x: cell.recur(q, c, cell.project(q, x)))
    jp, jcarry = to_jax(p), to_jax(carry)
    for t in range(T):
        jcarry, y = step(jp, jcarry, jnp.float32(xs[t]))
        carry, y_ref = ref(p, carry, xs[t])
        assert_allclose(y, y_ref, **TOL)
        jax.tree.map(lambda a, d: assert_allclose(a, d, **TOL), jcarry, carry)


@pytest.mark.parametrize("case", list(ZOO))
def test_parameter_count(case):
    name, options, _, f, count = ZOO[case]
    params = get_cell(name, hidden_size=H, **options).init(jax.random.key(0), f)
    assert sum(v.size for v in jax.tree.leaves(params)) == count


@pytest.mark.parametrize("case", list(ZOO))
def test_gradients_match_finite_differences(case):
    cell, _, p, carry, xs = setup(case, seed=1)
    with jax.enable_x64(True):  # (this test's thread only, not the whole process)
        p64, c64, x64 = (jax.tree.map(lambda v: jnp.asarray(
            v, jnp.complex128 if np.iscomplexobj(v) else jnp.float64), a) for a in (p, carry, xs))

        def loss(params, carry, xs):
            total = 0.0
            for t in range(T):
                carry, y = cell.step(params, carry, xs[t])
                total = total + jnp.sum(jnp.sin(y))
            return total

        check_grads(jax.jit(loss), (p64, c64, x64), order=1, modes=["rev"], eps=1e-6, atol=1e-6,
                    rtol=1e-6)


def test_the_plain_lstm_is_unchanged_and_peepholes_are_the_vanilla_variant():
    plain = get_cell("lstm", hidden_size=H).init(jax.random.key(0), F)
    assert set(plain) == {"w_x", "w_h", "b"}
    vanilla = get_cell("lstm", hidden_size=H, peepholes=True).init(jax.random.key(0), F)
    assert set(vanilla) == {"w_x", "w_h", "b", "p_i", "p_f", "p_o"}
    assert float(vanilla["b"][H:2 * H].min()) == 1.0  # the forget bias, as the plain LSTM's
    with pytest.raises(ValueError, match="unknown LSTM variant 'nope'; variants: vanilla, nig"):
        get_cell("lstm", hidden_size=H, variant="nope")
    with pytest.raises(ValueError, match="peepholes=True is the vanilla variant"):
        get_cell("lstm", hidden_size=H, variant="np", peepholes=True)


def test_a_learned_leak_starts_at_its_rate_and_a_bad_rate_is_refused():
    p = get_cell("elman", hidden_size=H, leak=0.2, learn_leak=True).init(jax.random.key(0), F)
    assert np.allclose(jax.nn.sigmoid(p["leak_logit"]), 0.2)
    with pytest.raises(ValueError, match=r"leak must be a rate in \(0, 1\], got 1.5"):
        get_cell("elman", hidden_size=H, leak=1.5)


def test_indrnn_draws_its_recurrent_weights_from_zero_to_one_or_the_bound():
    u = get_cell("indrnn", hidden_size=1000).init(jax.random.key(0), 2)["u"]
    assert 0.0 <= float(u.min()) and float(u.max()) <= 1.0 and abs(float(u.mean()) - 0.5) < 0.05
    u = get_cell("indrnn", hidden_size=1000, recurrent_max=0.2).init(jax.random.key(0), 2)["u"]
    assert float(u.max()) <= 0.2


@pytest.mark.parametrize("cell", sorted(CELLS))
def test_a_parameter_budget_picks_a_hidden_size_within_two_percent(cell, tmp_path):
    from test_tasks import task_config

    from rnnlab import tasks

    config = task_config("lm", **{"model.cell": cell, "model.param_budget": 150_000,
                                  "model.num_layers": 1})
    task = tasks.build(config)
    got = sum(v.size for v in jax.tree.leaves(
        jax.eval_shape(task.model.init, jax.random.key(0))))
    assert abs(got - 150_000) <= 0.02 * 150_000, (cell, config.model.hidden_size, got)
    assert tasks.count_params(config, task.record, config.model.hidden_size) == got


def test_vmapped_trials_with_a_budget_record_the_size_chosen_and_the_count(tmp_path):
    import json

    from test_tasks import task_config

    from rnnlab import train

    configs = [task_config("lm", seed=s, **{"model.cell": "gru", "model.param_budget": 40_000,
                                            "model.num_layers": 1}) for s in (0, 1)]
    results = train.train_group(configs, [tmp_path / "a", tmp_path / "b"])
    sizes = {json.loads((tmp_path / n / "config.json").read_text())["model"]["hidden_size"]
             for n in "ab"}
    assert sizes == {configs[0].model.hidden_size} and configs[1].model.hidden_size in sizes
    for result in results:
        assert abs(result["num_params"] - 40_000) <= 800


@pytest.mark.parametrize("name", ["mingru", "minlstm", "lru"])
def test_the_parallel_scan_equals_the_sequential_one_at_4096_steps(name):
    """Forward and gradients in float32 over T = 4096 with resets and lengths. Measured on CPU:
    outputs differ by at most 5e-7, gradients by 2e-6 of their largest value (the scans add in
    different orders); the tolerances below leave a margin of 40-50x."""
    from rnnlab import recurrent

    cell = get_cell(name, hidden_size=8)
    T_long, B_ = 4096, 2  # (the length the issue names)
    layers = {p: recurrent.rnn(cell, parallel=p) for p in (True, False)}
    params = layers[True].init(jax.random.key(0), 3)
    xs = jax.random.normal(jax.random.key(1), (B_, T_long, 3))
    reset = jnp.zeros((B_, T_long), bool).at[0, 1000].set(True)
    lengths = jnp.array([T_long, 3000])
    carry0 = layers[True].initial_carry(params, (B_,)) + 0.3

    def loss(layer, params, carry0):
        carry, ys = layer.apply(params, carry0, xs, reset=reset, lengths=lengths)
        return jnp.sum(jnp.sin(ys)) + jnp.sum(jnp.abs(carry) ** 2), (carry, ys)

    out = {p: jax.jit(jax.value_and_grad(partial(loss, layer), argnums=(0, 1), has_aux=True))(
        params, carry0) for p, layer in layers.items()}
    (l_par, (c_par, y_par)), g_par = out[True]
    (l_seq, (c_seq, y_seq)), g_seq = out[False]
    assert_allclose(y_par, y_seq, atol=2e-5)
    assert_allclose(c_par, c_seq, atol=2e-5)
    assert_allclose(l_par, l_seq, rtol=1e-5)
    jax.tree.map(lambda a, b: assert_allclose(a, b, rtol=1e-4, atol=1e-4), g_par, g_seq)


def test_multiplicative_integration_refuses_what_it_cannot_combine_with():
    with pytest.raises(ValueError, match="unknown integration 'mult'; choose one of additive"):
        get_cell("gru", hidden_size=H, integration="mult")
    with pytest.raises(ValueError, match="combines with none of the options"):
        get_cell("lstm", hidden_size=H, integration="multiplicative", variant="cifg")


def test_parallel_needs_a_linear_cell():
    from rnnlab import recurrent

    with pytest.raises(ValueError, match="parallel=True needs a cell whose recurrence is linear"):
        recurrent.rnn(get_cell("gru", hidden_size=4), parallel=True)


def test_the_lru_ring_initialisation():
    p = get_cell("lru", hidden_size=4, state_size=4000, r_min=0.5, r_max=0.9).init(
        jax.random.key(0), 4)
    modulus = np.exp(-np.exp(np.asarray(p["nu_log"], np.float64)))
    assert 0.5 <= modulus.min() and modulus.max() <= 0.9
    assert abs(np.mean(modulus ** 2) - (0.25 + 0.81) / 2) < 0.01  # |lambda|^2 uniform
    np.testing.assert_allclose(np.exp(p["gamma_log"]), np.sqrt(1 - modulus ** 2), rtol=1e-5)


# ----------------------------------------------------------------------------- regularisers


def test_zoneout_keeps_units_with_its_rate_and_evaluates_as_the_mixture():
    from rnnlab import recurrent

    z, N = 0.3, 20000
    cell = get_cell("elman", hidden_size=H)
    layer = recurrent.rnn(cell, zoneout=z)
    params = layer.init(jax.random.key(0), F)
    x = jnp.broadcast_to(jax.random.normal(jax.random.key(1), (1, 1, F)), (N, 1, F))
    old = jnp.full((N, H), 0.7)
    # the plain step's carry, computed by the same path (the sequential scan)
    new = recurrent.rnn(cell, backward="autodiff").apply(params, old, x)[0]
    key = jax.random.key(2)
    zoned = layer.apply(params, old, x, key=key)[0]
    kept = np.asarray(zoned == old)
    assert np.all(np.where(kept, zoned == old, zoned == new))  # each unit: old or new
    assert abs(kept.mean() - z) < 4 * np.sqrt(z * (1 - z) / kept.size)
    mixture = layer.apply(params, old, x)[0]  # no key: evaluation
    assert_allclose(mixture, z * old + (1 - z) * new, rtol=1e-6)
    assert_allclose(zoned.mean(0), mixture[0], atol=4 * float(jnp.abs(new - old).max())
                    * np.sqrt(z * (1 - z) / N))  # E[zoned] = the mixture
    assert np.array_equal(layer.apply(params, old, x, key=key)[0], zoned)  # same key, masks


def test_zoneout_rates_per_part_of_an_lstm_carry():
    from rnnlab import recurrent

    cell = get_cell("lstm", hidden_size=H)
    params = recurrent.rnn(cell).init(jax.random.key(0), F)
    xs = jax.random.normal(jax.random.key(1), (64, 3, F))
    plain = recurrent.rnn(cell).apply(params, None, xs)
    h_only = recurrent.rnn(cell, zoneout=(0.5, 0.0)).apply(params, None, xs,
                                                           key=jax.random.key(3))
    assert not np.allclose(h_only[0][0], plain[0][0])  # h zoned
    # c = f c + i g reads h only through the gates, so with h zoned c still differs after
    # step 1; at the first step (from zeros) it is the plain c (up to rounding: the plain layer
    # runs the hand-derived backward's forward, the zoned one the cell's step)
    first = recurrent.rnn(cell, zoneout=(0.5, 0.0)).apply(params, None, xs[:, :1],
                                                          key=jax.random.key(3))
    assert_allclose(first[0][1], recurrent.rnn(cell).apply(params, None, xs[:, :1])[0][1],
                    rtol=1e-6, atol=1e-7)
    with pytest.raises(ValueError, match="zoneout has 3 rates for a carry of 2 parts"):
        recurrent.rnn(cell, zoneout=(0.1, 0.1, 0.1)).apply(params, None, xs, key=None)


def test_weight_drop_drops_recurrent_entries_with_its_rate_and_is_off_at_evaluation():
    """Recovers the recurrent matrix a step used from its outputs (identity activation, x = 0:
    y = h0 @ W + b), independently of how the layer draws its mask."""
    from rnnlab import recurrent

    p, Hw = 0.4, 64
    cell = get_cell("elman", hidden_size=Hw, activation="identity")
    layer = recurrent.rnn(cell, weight_drop=p)
    params = layer.init(jax.random.key(0), 2)
    params["cell"]["b"] = jnp.zeros((Hw,))
    h0 = jnp.eye(Hw)  # row i: unit i on
    x = jnp.zeros((Hw, 1, 2))
    w = np.asarray(params["cell"]["w_h"])
    used = np.asarray(layer.apply(params, h0, x, key=jax.random.key(5))[0])
    dropped = np.isclose(used, 0.0, atol=1e-7)
    assert_allclose(used[~dropped], w[~dropped] / (1 - p), rtol=1e-5)
    assert abs(dropped.mean() - p) < 4 * np.sqrt(p * (1 - p) / dropped.size)
    assert_allclose(layer.apply(params, h0, x)[0], w, rtol=1e-6)  # evaluation: all of it


def test_regulariser_rates_are_checked():
    from rnnlab import recurrent

    with pytest.raises(ValueError, match="zoneout and weight_drop must be rates in"):
        recurrent.rnn(get_cell("gru", hidden_size=H), zoneout=1.0)
    with pytest.raises(ValueError, match="zoneout needs the sequential scan"):
        recurrent.rnn(get_cell("mingru", hidden_size=H), zoneout=0.1, parallel=True)


def np_lstm(p, carry, x, m):  # the PyTorch form; h enters only through h @ w_h
    h, c = carry
    i, f, g, o = split(x @ p["w_x"] + (h * m) @ p["w_h"] + p["b"], 4)
    c = sig(f) * c + sig(i) * np.tanh(g)
    h = sig(o) * np.tanh(c)
    return (h, c), h


def np_gru(p, h, x, m, reset_after=True):  # Gal's GRU: masked h in every matmul, not in the mix
    x_r, x_z, x_n = split(x @ p["w_x"] + p["b_x"], 3)
    W_hr, W_hz, W_hn = split(p["w_h"], 3)
    b_hr, b_hz, b_hn = split(p["b_h"], 3)
    r, z = sig(x_r + (h * m) @ W_hr + b_hr), sig(x_z + (h * m) @ W_hz + b_hz)
    n = np.tanh(x_n + (r * ((h * m) @ W_hn + b_hn) if reset_after
                       else (r * (h * m)) @ W_hn + b_hn))
    h = (1 - z) * n + z * h
    return h, h


def np_masked_leaky_elman(p, h, x, m, a=0.3):
    h = (1 - a) * h + a * np.tanh(x @ p["w_x"] + (h * m) @ p["w_h"] + p["b"])
    return h, h


def through_matmul_only(ref):
    """For cells whose h_{t-1} enters only the recurrent matmul (Elman, the LSTM family), the
    masked step is the step from the masked h."""
    def masked(p, carry, x, m):
        if isinstance(carry, tuple):
            return ref(p, (carry[0] * m, *carry[1:]), x)
        return ref(p, carry * m, x)
    return masked


VARIATIONAL = {
    "lstm": ("lstm", {}, np_lstm),
    "gru": ("gru", {}, np_gru),
    "gru_before": ("gru", {"reset_after": False}, partial(np_gru, reset_after=False)),
    "elman_leak": ("elman", {"leak": 0.3}, np_masked_leaky_elman),
    "lstm_vanilla": ("lstm", {"variant": "vanilla"},
                     through_matmul_only(partial(np_greff, variant="vanilla"))),
    "lstm_fgr": ("lstm", {"variant": "fgr"}, through_matmul_only(partial(np_greff, variant="fgr"))),
    "lstm_mi": ("lstm", {"integration": "multiplicative"}, through_matmul_only(np_mi_lstm)),
    "elman_mi": ("elman", {"integration": "multiplicative"}, through_matmul_only(np_mi_elman)),
}


@pytest.mark.parametrize("path", ["step", "recur"])
@pytest.mark.parametrize("case", list(VARIATIONAL))
def test_variational_dropout_masks_h_only_where_it_enters_the_recurrent_matmuls(case, path):
    name, options, ref = VARIATIONAL[case]
    rng = np.random.default_rng(1)
    cell = get_cell(name, hidden_size=H, **options)
    assert cell.variational
    params = cell.init(jax.random.key(0), F)
    p = {k: rand(rng, *v.shape) for k, v in params.items()}
    carry = jax.tree.map(lambda c: rand(rng, *c.shape), cell.initial_carry(params, (B,)))
    xs, m = rand(rng, T, B, F), (rng.random((B, H)) < 0.5) * 2.0
    step = cell.step if path == "step" else (lambda q, c, x: cell.recur(q, c, cell.project(q, x)))
    jp, jcarry = to_jax({**p, "h_mask": m}), to_jax(carry)
    for t in range(T):
        jcarry, y = step(jp, jcarry, jnp.float32(xs[t]))
        carry, y_ref = ref(p, carry, xs[t], m)
        assert_allclose(y, y_ref, **TOL)
        jax.tree.map(lambda a, d: assert_allclose(a, d, **TOL), jcarry, carry)


def test_variational_dropout_keeps_one_mask_for_every_step_and_each_sequence_its_own():
    """A linear Elman cell with w_h = I and no input: h_T = mask^T * h_0 exactly when the same
    mask serves every step (a mask drawn per step would leave a unit alive with (1-p)^T)."""
    from rnnlab import recurrent

    p, N, Tm = 0.25, 4000, 6
    cell = get_cell("elman", hidden_size=H, activation="identity", init="identity")
    layer = recurrent.rnn(cell, recurrent_dropout=p)
    params = layer.init(jax.random.key(0), 2)
    params["cell"]["b"] = jnp.zeros((H,))
    xs = jnp.zeros((N, Tm, 2))
    h0 = jnp.ones((N, H))
    key = jax.random.key(7)
    h_T, ys = layer.apply(params, h0, xs, key=key)
    alive = np.asarray(h_T != 0)
    assert_allclose(np.asarray(h_T)[alive], (1 / (1 - p)) ** Tm, rtol=1e-5)
    assert abs(1 - alive.mean() - p) < 4 * np.sqrt(p * (1 - p) / alive.size)
    assert np.array_equal(np.asarray(ys[:, 0] != 0), alive)  # dropped from the first step on
    assert len({tuple(r) for r in alive[:64]}) >= 12  # each sequence its own (of 16 patterns)
    assert np.array_equal(layer.apply(params, h0, xs, key=key)[0], h_T)  # same key, same mask
    assert_allclose(layer.apply(params, h0, xs)[0], h0)  # evaluation (no key): no mask


@pytest.mark.parametrize("cell_name", ["lstm", "gru"])
def test_variational_dropout_keeps_its_mask_across_the_windows_of_a_sequence(cell_name):
    """The windows of one sequence (truncated BPTT of a long sequence) share the mask: an
    encoder in windows of 4 computes what one pass computes, with dropout on."""
    from rnnlab import recurrent
    from rnnlab.tasks import encoder

    body = recurrent.stack([recurrent.rnn(get_cell(cell_name, hidden_size=H),
                                          recurrent_dropout=0.5)] * 2)
    params = body.init(jax.random.key(0), F)
    xs = jax.random.normal(jax.random.key(1), (B, 12, F))
    lengths, key = jnp.full((B,), 12), jax.random.key(2)
    whole = encoder.encode(body, params, xs, lengths, 0, key)
    for full_length in (False, True):
        windows = encoder.encode(body, params, xs, lengths, 4, key, full_length=full_length)
        jax.tree.map(lambda a, b: assert_allclose(a, b, atol=1e-5), windows, whole)
    plain = encoder.encode(body, params, xs, lengths, 0, None)
    assert not np.allclose(whole[1], plain[1])  # (the mask is on)


def test_variational_dropout_is_refused_where_no_recurrent_matmul_reads_it():
    from rnnlab import model, recurrent
    from configs import base

    with pytest.raises(ValueError, match="recurrent_dropout needs a cell that masks"):
        recurrent.rnn(get_cell("mingru", hidden_size=H), recurrent_dropout=0.1)
    with pytest.raises(ValueError, match=r"recurrent_dropout must be a rate in \[0, 1\)"):
        recurrent.rnn(get_cell("lstm", hidden_size=H), recurrent_dropout=1.0)
    c = base.get_config()
    c.model.cell, c.model.recurrent_dropout = "ugrnn", 0.2
    with pytest.raises(ValueError, match="model.recurrent_dropout needs a cell .* not ugrnn"):
        model.check_model_config(c.model)
    c.model.cell, c.model.parallel_scan = "gru", True
    c.model.recurrent_dropout = 0.0
    with pytest.raises(ValueError, match="model.parallel_scan=True needs a cell whose"):
        model.check_model_config(c.model)


def test_the_parallel_scan_is_chosen_off_cpu_and_forced_by_the_option(monkeypatch):
    from rnnlab import recurrent

    cell = get_cell("mingru", hidden_size=H)
    params = recurrent.rnn(cell).init(jax.random.key(0), F)
    xs = jnp.zeros((B, T, F))

    def uses_scan(**options):
        jaxpr = jax.make_jaxpr(lambda p: recurrent.rnn(cell, **options).apply(p, None, xs))(params)
        return "scan[" in str(jaxpr) or " scan" in str(jaxpr)

    assert uses_scan() and uses_scan(parallel=False) and not uses_scan(parallel=True)
    monkeypatch.setattr(jax, "default_backend", lambda: "gpu")
    assert not uses_scan() and uses_scan(parallel=False)


# ------------------------------------------------------- every cell in every task and executor


@pytest.mark.parametrize("name", sorted(CELLS))
def test_every_cell_builds_and_traces_in_every_task_and_vmapped(name):
    """The train step of every task with this cell traces (shapes, carries, bridges, complex
    states); and the vmapped step of two trials, as `launch.sweep --executor=vmap` runs it."""
    from rnnlab import optim, state as state_lib, steps, tasks
    from test_tasks import TASK_CONFIGS, task_config

    for task_name in sorted(TASK_CONFIGS) if name != "jordan" else ["lm"]:
        config = task_config(task_name, **{"model.cell": name})
        task = tasks.build(config)
        tx = optim.make_optimizer(config.optim, config.train.steps)
        state = jax.eval_shape(lambda: state_lib.init_state(config, task.model, tx, task.metrics))
        step = steps.make_train_step(task, tx, lambda b: b)
        out = jax.eval_shape(step, state, task.data)
        assert jax.tree.map(lambda a: (a.shape, a.dtype), out.params) == jax.tree.map(
            lambda a: (a.shape, a.dtype), state.params)
        if task_name == "lm":
            two = jax.tree.map(lambda a: jax.ShapeDtypeStruct((2, *a.shape), a.dtype), state)
            out = jax.eval_shape(jax.vmap(step, in_axes=(0, None)), two, task.data)
            assert jax.tree.map(lambda a: a.shape, out.params) == jax.tree.map(
                lambda a: a.shape, two.params)


EVERY_CELL_ON_EIGHT = """
import json
import jax
import numpy as np
from rnnlab import cells, model, optim, parallel, state as state_lib, steps, tasks
from test_tasks import task_config
out, runs = {}, {}
mesh = parallel.make_mesh()
for name in sorted(cells.CELLS):
    config = task_config("lm", **{"model.cell": name, "train.batch_size": 8,
                                  "model.hidden_size": 8})
    task = tasks.build(config)
    tx = optim.make_optimizer(config.optim, config.train.steps)
    init = lambda: state_lib.init_state(config, task.model, tx, task.metrics)
    carry = jax.eval_shape(init).carry
    kind = repr((jax.tree.structure(carry), [(a.ndim, str(a.dtype)) for a in jax.tree.leaves(carry)],
                 model.path(config.model, 8)))
    if kind in runs:  # the step of a carry and path of a kind already run
        out[name] = {"as": runs[kind]}
        continue
    runs[kind] = name
    state = init()
    shardings = parallel.state_shardings(state, mesh, 0)
    state = parallel.put(state, shardings)
    data = parallel.put(task.data, {k: parallel.split(mesh, 0) for k in task.data})
    step = jax.jit(steps.make_train_step(task, tx, lambda b: parallel.constrain_rows(b, mesh)),
                   in_shardings=(shardings, {k: v.sharding for k, v in data.items()}),
                   out_shardings=shardings)
    new = step(state, data)
    out[name] = {"rows": sorted({leaf.sharding.shard_shape(leaf.shape)[0]
                                 for leaf in jax.tree_util.tree_leaves(new.carry)}),
                 "finite": all(bool(np.isfinite(np.asarray(p)).all())
                               for p in jax.tree_util.tree_leaves(new.params))}
print(json.dumps(out))
"""


@pytest.mark.slow
def test_every_cell_trains_a_step_data_parallel_on_eight_devices():
    """Each cell's language model on 8 simulated devices: one stream a device, the carry split
    by rows (complex LRU states and three-part carries too), finite params after the step. The
    step is cell-agnostic but for the carry (its structure, ranks, dtypes) and the path its
    layer runs, so one cell of each such kind trains it (the others name the cell that did)."""
    import json
    import os
    import subprocess
    import sys
    from test_parallel import EIGHT
    from test_train import ROOT

    env = dict(os.environ, JAX_PLATFORMS="cpu", PYTHONPATH=str(ROOT / "tests"), **EIGHT)
    done = subprocess.run([sys.executable, "-c", EVERY_CELL_ON_EIGHT], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    out = json.loads(done.stdout.strip().splitlines()[-1])
    assert set(out) == set(CELLS)
    ran = {name: v for name, v in out.items() if "as" not in v}
    assert all(v == {"rows": [1], "finite": True} for v in ran.values()), out
    assert all(v["as"] in ran for v in out.values() if "as" in v), out
    assert {"lru", "lstm", "gru", "elman"} <= set(ran), out  # complex, two-part, native, plain
