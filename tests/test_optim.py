"""Optimizers and schedules against closed-form formulas and NumPy references of their rules."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from rnnlab import config as config_lib
from rnnlab import optim


def make_config(**overrides):
    """The real `optim` section of rnnlab/config.py, so the tests read every key it declares."""
    c = config_lib.get_config().optim
    c.clip_norm = 0.0  # base default 5.0; off unless a test turns it on
    for key, value in overrides.items():
        c[key] = value
    return c


# ---------------------------------------------------------------------------------------------
# Schedules: the learning rate each update of `make_optimizer`'s chain uses (read back from its
# state with `current_lr`) == the closed-form formula written out here == optax's own schedule.

LR, TOTAL, RATE, EVERY, AFTER, WARMUP, FINAL = 0.5, 1000, 0.5, 100, 250, 100, 0.1
STEPS = [0, 1, 5, 99, 100, 101, 249, 250, 251, 349, 350, 500, 999, 1000, 1500]


def closed_form(name, s, staircase=False):
    if name == "constant":
        return LR
    if name == "exponential":
        return LR * RATE ** (s // EVERY if staircase else s / EVERY)
    if name == "step":
        return LR if s < AFTER else LR * RATE ** (math.floor((s - AFTER) / EVERY) + 1)
    if name == "cosine":
        return LR * ((1 - FINAL) * 0.5 * (1 + math.cos(math.pi * min(s, TOTAL) / TOTAL)) + FINAL)
    if name == "warmup_cosine":
        if s < WARMUP:
            return LR * s / WARMUP
        t = min(s - WARMUP, TOTAL - WARMUP) / (TOTAL - WARMUP)
        return LR * (FINAL + (1 - FINAL) * 0.5 * (1 + math.cos(math.pi * t)))
    if name == "linear":
        return LR + (LR * FINAL - LR) * min(s, TOTAL) / TOTAL
    raise AssertionError(name)


def rates(config, steps):
    """The learning rate that update s (0 for the first) of make_optimizer's chain used, for s
    in `steps`: after s + 1 updates, `current_lr` reads schedule(s)."""
    tx = optim.make_optimizer(config, TOTAL)
    params = {"w": jnp.zeros(2)}

    def update(state, _):
        _, state = tx.update({"w": jnp.ones(2)}, state, params)
        return state, optim.current_lr(state)

    _, lrs = jax.lax.scan(update, tx.init(params), length=max(steps) + 1)
    return [float(lrs[s]) for s in steps]


def schedule_config(name, **overrides):
    return make_config(
        schedule=name,
        lr=LR,
        decay_rate=RATE,
        decay_steps=EVERY,
        decay_after=AFTER,
        warmup_steps=WARMUP,
        final_lr_factor=FINAL,
        **overrides,
    )


@pytest.mark.parametrize(
    "name", ["constant", "exponential", "step", "cosine", "warmup_cosine", "linear"]
)
def test_schedule_matches_closed_form(name):
    got = rates(schedule_config(name), STEPS)
    want = [closed_form(name, s) for s in STEPS]
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-7)


OPTAX_SCHEDULES = {
    "constant": lambda: optax.constant_schedule(LR),
    "exponential": lambda: optax.exponential_decay(LR, EVERY, RATE),
    "step": lambda: optax.exponential_decay(LR, EVERY, RATE, transition_begin=AFTER - EVERY,
                                            staircase=True),
    "cosine": lambda: optax.cosine_decay_schedule(LR, TOTAL, alpha=FINAL),
    "warmup_cosine": lambda: optax.warmup_cosine_decay_schedule(0.0, LR, WARMUP, TOTAL,
                                                                end_value=LR * FINAL),
    "linear": lambda: optax.linear_schedule(LR, LR * FINAL, TOTAL),
}


@pytest.mark.parametrize("name", list(OPTAX_SCHEDULES))
def test_schedule_matches_optax_own_schedule(name):
    ours = rates(schedule_config(name), STEPS)
    theirs = OPTAX_SCHEDULES[name]()
    for s, lr in zip(STEPS, ours):
        np.testing.assert_allclose(lr, float(theirs(jnp.asarray(s, jnp.int32))), rtol=1e-5,
                                   atol=1e-7, err_msg=f"step {s}")


def test_exponential_staircase_matches_closed_form():
    got = rates(schedule_config("exponential", staircase=True), STEPS)
    want = [closed_form("exponential", s, staircase=True) for s in STEPS]
    np.testing.assert_allclose(got, want, rtol=1e-5)
    assert got[STEPS.index(99)] == LR and got[STEPS.index(100)] == LR * RATE


def test_step_schedule_first_decay_at_decay_after():
    steps = (0, 249, 250, 349, 350)
    lr = dict(zip(steps, rates(schedule_config("step"), steps)))
    assert lr == {0: LR, 249: LR, 250: LR * RATE, 349: LR * RATE, 350: LR * RATE**2}


# ---------------------------------------------------------------------------------------------
# Optimizers: two updates on a tiny quadratic == a NumPy float64 reference of the update rule.
# What was read in optax 0.2.8's source (_src/alias.py, _src/transform.py) and checked here:
# - sgd: u = -lr g. momentum: optax.trace, m_0 = 0, m = g + mu m (no dampening), u = -lr m.
# - rmsprop: scale_by_rms, nu_0 = 0 (initial_scale), nu = d nu + (1 - d) g^2, no bias
#   correction; we pass eps_in_sqrt=False (char-rnn / torch optim.rmsprop), so
#   u = -lr g / (sqrt(nu) + eps). optax's default would be sqrt(nu + eps).
# - adagrad: scale_by_rss, we pass initial_accumulator_value=0 (min-char-rnn; optax's default
#   is 0.1), s = s + g^2, u = -lr g / sqrt(s + eps) (eps inside the sqrt, where s > 0).
# - adam: mu_0 = nu_0 = 0, bias correction by 1 - b^t with t = 1, 2, ...,
#   u = -lr mu_hat / (sqrt(nu_hat) + eps) (eps_root = 0).
# - adamw: u = -lr (adam direction + wd p): decay added after the Adam scaling, scaled by lr.
# eps is 0.1 here so that putting it in the wrong place changes the numbers visibly.

HP = {"lr": 0.1, "momentum": 0.7, "rms_decay": 0.9, "b1": 0.8, "b2": 0.95, "eps": 0.1}
P0 = {"w": np.array([1.5, -2.0, 0.3]), "b": np.array([[0.5, -0.1], [2.0, 0.05]])}
A = {"w": np.array([1.0, 3.0, 0.5]), "b": np.array([[2.0, 1.0], [0.2, 4.0]])}
C = {"w": np.array([0.1, -0.4, 0.7]), "b": np.array([[-0.3, 0.2], [0.0, 1.0]])}


def loss(params):
    return sum(jnp.sum(0.5 * A[k] * params[k] ** 2 + C[k] * params[k]) for k in params)


def grad_np(params):  # the quadratic's gradient by hand, in float64
    return {k: A[k] * params[k] + C[k] for k in params}


def reference(name, steps=2, wd=0.0):
    lr, eps = HP["lr"], HP["eps"]
    p = {k: v.copy() for k, v in P0.items()}
    s1 = {k: np.zeros_like(v) for k, v in p.items()}
    s2 = {k: np.zeros_like(v) for k, v in p.items()}
    for t in range(1, steps + 1):
        g = grad_np(p)
        for k, pk in p.items():
            gk = g[k] + (wd * pk if name != "adamw" else 0.0)
            if name == "sgd":
                u = -lr * gk
            elif name == "momentum":
                s1[k] = gk + HP["momentum"] * s1[k]
                u = -lr * s1[k]
            elif name == "rmsprop":
                s1[k] = HP["rms_decay"] * s1[k] + (1 - HP["rms_decay"]) * gk**2
                u = -lr * gk / (np.sqrt(s1[k]) + eps)
            elif name == "adagrad":
                s1[k] = s1[k] + gk**2
                u = -lr * gk / np.sqrt(s1[k] + eps)
            elif name in ("adam", "adamw"):
                b1, b2 = HP["b1"], HP["b2"]
                s1[k] = b1 * s1[k] + (1 - b1) * gk
                s2[k] = b2 * s2[k] + (1 - b2) * gk**2
                direction = (s1[k] / (1 - b1**t)) / (np.sqrt(s2[k] / (1 - b2**t)) + eps)
                u = -lr * (direction + (wd * pk if name == "adamw" else 0.0))
            p[k] = pk + u
    return p


def run(config, steps=2, total_steps=100):
    tx = optim.make_optimizer(config, total_steps)
    params = jax.tree.map(lambda x: jnp.asarray(x, jnp.float32), P0)
    opt_state = tx.init(params)
    for _ in range(steps):
        updates, opt_state = tx.update(jax.grad(loss)(params), opt_state, params)
        params = optax.apply_updates(params, updates)
    return params, opt_state


@pytest.mark.parametrize("name", ["sgd", "momentum", "rmsprop", "adagrad", "adam", "adamw"])
def test_optimizer_matches_numpy_reference(name):
    params, _ = run(make_config(name=name, weight_decay=0.0, **HP))
    want = reference(name)
    for k in want:
        np.testing.assert_allclose(params[k], want[k], rtol=1e-5, atol=1e-6)
    # Guard against a vacuous pass: the reference moves away from P0 by more than the tolerance.
    assert all(np.abs(want[k] - P0[k]).max() > 1e-3 for k in want)


@pytest.mark.parametrize("name", ["sgd", "momentum", "rmsprop", "adagrad", "adam", "adamw"])
def test_weight_decay_coupled_except_adamw(name):
    wd = 0.3
    params, _ = run(make_config(name=name, weight_decay=wd, **HP))
    want = reference(name, wd=wd)
    for k in want:
        np.testing.assert_allclose(params[k], want[k], rtol=1e-5, atol=1e-6)
    assert any(np.abs(want[k] - reference(name)[k]).max() > 1e-3 for k in want)


def test_adam_and_adamw_weight_decay_differ():
    adam, _ = run(make_config(name="adam", weight_decay=0.3, **HP))
    adamw, _ = run(make_config(name="adamw", weight_decay=0.3, **HP))
    assert np.abs(adam["w"] - adamw["w"]).max() > 1e-3


# ---------------------------------------------------------------------------------------------
# Clipping: first in the chain, by value elementwise and by global norm.


def one_sgd_update(grads, params=None, **overrides):
    config = make_config(name="sgd", lr=1.0, **overrides)
    tx = optim.make_optimizer(config, 10)
    grads = {k: jnp.asarray(v, jnp.float32) for k, v in grads.items()}
    params = jax.tree.map(jnp.zeros_like, grads) if params is None else params
    updates, _ = tx.update(grads, tx.init(params), params)
    return jax.tree.map(np.asarray, updates)


def test_clip_by_value_is_elementwise():
    updates = one_sgd_update({"w": [2.0, -3.0, 0.1], "b": [-0.2]}, clip_value=0.5)
    np.testing.assert_allclose(updates["w"], [-0.5, 0.5, -0.1])
    np.testing.assert_allclose(updates["b"], [0.2])


def test_clip_by_global_norm_rescales_to_the_norm():
    grads = {"w": [3.0, 0.0], "b": [4.0]}  # global norm 5
    updates = one_sgd_update(grads, clip_norm=1.0)
    np.testing.assert_allclose(updates["w"], [-0.6, 0.0], rtol=1e-6)
    np.testing.assert_allclose(updates["b"], [-0.8], rtol=1e-6)
    unclipped = one_sgd_update(grads, clip_norm=10.0)
    np.testing.assert_allclose(unclipped["w"], [-3.0, 0.0])


def test_clip_value_then_norm_then_weight_decay():
    # Value first: [2, 0], [2] (norm sqrt 8), then norm 1. Norm first would give [0.6, 0], [0.8].
    updates = one_sgd_update({"w": [3.0, 0.0], "b": [4.0]}, clip_value=2.0, clip_norm=1.0)
    np.testing.assert_allclose(updates["w"], [-2 / math.sqrt(8), 0.0], rtol=1e-6)
    np.testing.assert_allclose(updates["b"], [-2 / math.sqrt(8)], rtol=1e-6)
    # The decay term is added after clipping, so it is not clipped: -(0.1 + 1.0 * 5).
    params = {"w": jnp.array([5.0])}
    updates = one_sgd_update({"w": [3.0]}, params, clip_value=0.1, weight_decay=1.0)
    np.testing.assert_allclose(updates["w"], [-5.1], rtol=1e-6)


# ---------------------------------------------------------------------------------------------
# current_lr, jit, checkpointing.


def test_current_lr_reports_the_rate_of_the_last_update():
    config = make_config(
        name="sgd", schedule="step", lr=1.0, decay_rate=0.5, decay_steps=2, decay_after=2
    )
    step_lr = lambda s: 1.0 if s < 2 else 0.5 ** ((s - 2) // 2 + 1)
    tx = optim.make_optimizer(config, 10)
    params = {"w": jnp.zeros(2)}
    opt_state = tx.init(params)
    assert float(optim.current_lr(opt_state)) == step_lr(0)
    update = jax.jit(tx.update)
    for n in range(1, 8):
        updates, opt_state = update({"w": jnp.ones(2)}, opt_state, params)
        # sgd with a gradient of ones: the update is -lr, the rate the n-th update used.
        assert float(updates["w"][0]) == -step_lr(n - 1)
        assert float(optim.current_lr(opt_state)) == step_lr(n - 1)


def test_current_lr_through_a_wrapper_and_under_jit():
    config = make_config(schedule="linear", lr=1.0, final_lr_factor=0.0)
    tx = optax.apply_if_finite(optim.make_optimizer(config, 4), max_consecutive_errors=3)
    params = {"w": jnp.zeros(2)}
    opt_state = tx.init(params)
    for _ in range(3):
        _, opt_state = tx.update({"w": jnp.ones(2)}, opt_state, params)
    assert float(jax.jit(optim.current_lr)(opt_state)) == pytest.approx(0.5)  # linear at step 2
    with pytest.raises(ValueError, match="learning_rate"):
        optim.current_lr(optax.adam(1e-3).init(params))


def test_update_jits_and_compiles_once():
    config = make_config(
        name="adamw",
        schedule="warmup_cosine",
        warmup_steps=2,
        weight_decay=0.1,
        clip_norm=1.0,
        clip_value=0.5,
    )
    tx = optim.make_optimizer(config, 20)
    traces = []

    @jax.jit
    def train_step(params, opt_state):
        traces.append(None)  # runs only while tracing
        updates, opt_state = tx.update(jax.grad(loss)(params), opt_state, params)
        return optax.apply_updates(params, updates), opt_state

    params = jax.tree.map(lambda x: jnp.asarray(x, jnp.float32), P0)
    opt_state = tx.init(params)
    lrs = []
    for _ in range(5):
        params, opt_state = train_step(params, opt_state)
        lrs.append(float(optim.current_lr(opt_state)))
    assert len(traces) == 1  # the learning rate is data, not a traced constant
    assert lrs[0] == 0.0 and lrs[1] > 0 and len(set(lrs)) == 5
    assert all(np.isfinite(p).all() for p in jax.tree.leaves(params))


def test_state_is_arrays_and_round_trips_through_a_checkpoint(tmp_path):
    config = make_config(
        name="adamw",
        schedule="step",
        decay_after=1,
        decay_steps=1,
        weight_decay=0.1,
        clip_norm=1.0,
        **HP,
    )
    tx = optim.make_optimizer(config, 20)
    update = jax.jit(tx.update)

    def advance(params, opt_state, n):
        for _ in range(n):
            updates, opt_state = update(jax.grad(loss)(params), opt_state, params)
            params = optax.apply_updates(params, updates)
        return params, opt_state

    params = jax.tree.map(lambda x: jnp.asarray(x, jnp.float32), P0)
    params, opt_state = advance(params, tx.init(params), 3)
    leaves, treedef = jax.tree.flatten(opt_state)
    assert all(isinstance(leaf, jax.Array) for leaf in leaves)  # no callables, no Python floats

    np.savez(tmp_path / "opt_state.npz", *[np.asarray(leaf) for leaf in leaves])
    with np.load(tmp_path / "opt_state.npz") as f:
        loaded = [jnp.asarray(f[f"arr_{i}"]) for i in range(len(leaves))]
    # Restore into the structure of a fresh init, as a checkpoint restore does.
    _, fresh_treedef = jax.tree.flatten(tx.init(params))
    assert fresh_treedef == treedef
    restored = jax.tree.unflatten(fresh_treedef, loaded)

    want_params, want_state = advance(params, opt_state, 2)
    got_params, got_state = advance(params, restored, 2)
    for want, got in zip(
        jax.tree.leaves((want_params, want_state)), jax.tree.leaves((got_params, got_state))
    ):
        np.testing.assert_array_equal(got, want)
    assert float(optim.current_lr(got_state)) == pytest.approx(config.lr * 0.97**4)


# ---------------------------------------------------------------------------------------------
# Validation: every bad value raises ValueError naming the key, the value and what is allowed.

BAD = [
    # (overrides that select the optimizer/schedule using the key, key, bad value)
    ({}, "lr", 0.0),
    ({}, "lr", -1e-3),
    ({}, "lr", float("nan")),
    ({}, "lr", float("inf")),
    ({}, "clip_norm", -1.0),
    ({}, "clip_value", -0.5),
    ({}, "weight_decay", -1e-4),
    ({"name": "adamw"}, "weight_decay", -1e-4),
    ({"name": "momentum"}, "momentum", 1.0),
    ({"name": "momentum"}, "momentum", -0.1),
    ({"name": "rmsprop"}, "rms_decay", 1.0),
    ({"name": "rmsprop"}, "eps", 0.0),
    ({"name": "adagrad"}, "eps", -1e-8),
    ({"name": "adam"}, "b1", 1.0),
    ({"name": "adam"}, "b2", -0.1),
    ({"name": "adamw"}, "eps", 0.0),
    ({"schedule": "exponential"}, "decay_rate", 0.0),
    ({"schedule": "exponential"}, "decay_rate", 1.5),
    ({"schedule": "exponential"}, "decay_steps", 0),
    ({"schedule": "step"}, "decay_steps", -10),
    ({"schedule": "step"}, "decay_rate", -0.5),
    ({"schedule": "step"}, "decay_after", -1),
    ({"schedule": "warmup_cosine"}, "warmup_steps", -1),
    ({"schedule": "warmup_cosine"}, "warmup_steps", 100),  # == total_steps
    ({"schedule": "cosine"}, "final_lr_factor", -0.1),
    ({"schedule": "linear"}, "final_lr_factor", 1.5),
    ({"schedule": "warmup_cosine"}, "final_lr_factor", 2.0),
]


@pytest.mark.parametrize("select,key,value", BAD, ids=[f"{k}={v}" for _, k, v in BAD])
def test_bad_value_raises_naming_the_key(select, key, value):
    config = make_config(**select)
    config[key] = value
    with pytest.raises(ValueError) as info:
        optim.make_optimizer(config, total_steps=100)
    message = str(info.value)
    assert f"optim.{key}={value!r}" in message
    assert "must be" in message
    with pytest.raises(ValueError):
        optim.check_optim_config(config, total_steps=100)


@pytest.mark.parametrize("key,names", [("name", optim.OPTIMIZERS), ("schedule", optim.SCHEDULES)])
def test_unknown_name_lists_the_valid_names(key, names):
    config = make_config(**{key: "nope"})
    with pytest.raises(ValueError, match=f"optim.{key}='nope'") as info:
        optim.make_optimizer(config, 100)
    assert all(name in str(info.value) for name in names)


@pytest.mark.parametrize("schedule", ["cosine", "warmup_cosine", "linear"])
def test_schedules_over_total_steps_reject_a_bad_total(schedule):
    config = make_config(schedule=schedule, warmup_steps=0)
    with pytest.raises(ValueError, match="total_steps=0"):
        optim.make_optimizer(config, 0)
    with pytest.raises(ValueError, match="total_steps=0"):
        optim.check_optim_config(config, 0)


def test_keys_of_other_optimizers_and_schedules_are_not_checked():
    # A sweep over optimizers leaves the others' keys alone: adam ignores momentum, constant
    # ignores decay_steps.
    config = make_config(name="adam", schedule="constant", momentum=5.0, decay_steps=0)
    optim.check_optim_config(config, 100)
    config.name = "momentum"
    with pytest.raises(ValueError, match="optim.momentum=5.0"):
        optim.check_optim_config(config, 100)


def test_registries_cover_the_names_in_configs_base():
    assert set(optim.OPTIMIZERS) == {"sgd", "momentum", "rmsprop", "adagrad", "adam", "adamw"}
    assert set(optim.SCHEDULES) == {
        "constant",
        "exponential",
        "step",
        "cosine",
        "warmup_cosine",
        "linear",
    }
    # Every pairing of the base defaults is valid and builds (the key tables cover the names).
    for name in optim.OPTIMIZERS:
        for schedule in optim.SCHEDULES:
            config = make_config(name=name, schedule=schedule)
            optim.check_optim_config(config, 10_000)
            optim.make_optimizer(config, 10_000).init({"w": jnp.zeros(2)})
