"""The native CPU path (oneDNN's RNN primitive through XLA's FFI): its outputs against float64
NumPy loops of the published equations, its gradients against autodiff through the cells' own
steps (and PyTorch's nn.LSTM / GRU / RNN where PyTorch is installed), the windows it hands to
the hand-derived path, vmapped trials, sharded batches, and the backend policy."""

import os
import pathlib
import shutil
import subprocess
import sys
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from rnnlab import cells, layers, native
from rnnlab.layers import native as native_layer
from rnnlab.layers import paths
from test_cells import np_elman, np_gru, np_lstm

ROOT = pathlib.Path(__file__).resolve().parents[1]
T, F, H = 9, 6, 8
# id -> (cell, options, float64 reference step (params, carry, x) -> (carry, y))
CELLS = {
    "lstm": ("lstm", {}, np_lstm),
    "gru": ("gru", {}, np_gru),
    "gru_reset_before": ("gru", {"reset_after": False}, partial(np_gru, reset_after=False)),
    "elman": ("elman", {}, np_elman),
    "elman_relu": ("elman", {"activation": "relu"}, partial(np_elman, act="relu")),
    "irnn": ("irnn", {}, partial(np_elman, act="relu")),
}
BUILT = native.status()[0]
needs_native = pytest.mark.skipif(not BUILT, reason=f"native path unavailable: {native.status()[1]}")


def test_the_native_path_builds_where_its_extra_is_installed():
    # The test extras install oneDNN; with a compiler present the path must build here.
    if shutil.which("c++") is None and shutil.which("g++") is None:
        pytest.skip("no C++ compiler on this machine")
    assert BUILT, native.status()[1]
    assert native.available()
    out = subprocess.run([sys.executable, "-m", "rnnlab.native"], capture_output=True, text=True,
                         cwd=ROOT)  # the command the README shows
    assert out.returncode == 0 and out.stdout.startswith("in use: oneDNN"), out


def setup(name, options, batch=(3,), seed=0):
    cell = cells.get_cell(name, hidden_size=H, **options)
    k = iter(jax.random.split(jax.random.key(seed), 8))
    params = {"cell": cell.init(next(k), F)}
    params = jax.tree_util.tree_map(  # non-zero biases; weights large enough to saturate some
        lambda p: p + 0.3 * jax.random.normal(next(k), p.shape, p.dtype), params)
    carry = jax.tree_util.tree_map(lambda c: jax.random.normal(next(k), c.shape),
                                   cell.initial_carry(params["cell"], batch))
    xs = jax.random.normal(next(k), (*batch, T, F))
    return cell, params, carry, xs


def numpy_loop(ref, params, carry, xs, reverse):
    p = jax.tree_util.tree_map(lambda a: np.asarray(a, np.float64), params["cell"])
    carry = jax.tree_util.tree_map(lambda a: np.asarray(a, np.float64), carry)
    x = np.asarray(xs, np.float64)
    ys = [None] * x.shape[-2]
    for t in (reversed(range(x.shape[-2])) if reverse else range(x.shape[-2])):
        carry, ys[t] = ref(p, carry, x[..., t, :])
    return carry, np.stack(ys, -2)


@needs_native
@pytest.mark.parametrize("reverse", [False, True], ids=["forward", "reverse"])
@pytest.mark.parametrize("case", list(CELLS))
def test_equals_a_float64_numpy_loop_of_the_equations(case, reverse):
    name, options, ref = CELLS[case]
    cell, params, carry, xs = setup(name, options, batch=(2, 3))  # two batch dimensions
    layer = layers.rnn(cell, backward="native", reverse=reverse)
    got = jax.jit(layer.apply)(params, carry, xs)
    want = numpy_loop(ref, params, carry, xs, reverse)
    jax.tree_util.tree_map(lambda a, b: np.testing.assert_allclose(a, b, rtol=2e-5, atol=2e-5),
                           got, want)


def loss_fn(layer, reset):
    def loss(params, carry, xs):
        carry, ys = layer.apply(params, carry, xs, reset=reset)
        # weights that differ per position, so that a misplaced gradient cannot cancel out
        w = jnp.cos(jnp.arange(ys.size, dtype=ys.dtype).reshape(ys.shape))
        return jnp.sum(w * jnp.tanh(ys)) + sum(jnp.sum(jnp.sin(c)) for c in jax.tree.leaves(carry))

    return loss


RESETS = {"none": None, "first": [(0, 0), (2, 0)], "inside": [(1, 4)]}


@needs_native
@pytest.mark.parametrize("resets", list(RESETS))
@pytest.mark.parametrize("reverse", [False, True], ids=["forward", "reverse"])
@pytest.mark.parametrize("case", list(CELLS))
def test_gradients_equal_autodiff_through_the_cells_own_step(case, reverse, resets):
    name, options, _ = CELLS[case]
    cell, params, carry, xs = setup(name, options)
    reset = None
    if RESETS[resets] is not None:
        reset = np.zeros((3, T), bool)
        for b, t in RESETS[resets]:  # reversed, a reset at 0 restarts after the last step run
            reset[b, t] = True
        reset = jnp.asarray(reset)
    out = {}
    for backward in ("native", "autodiff"):
        layer = layers.rnn(cell, backward=backward, reverse=reverse, learn_initial_carry=True)
        p = {**params, "carry0": jax.tree.map(lambda c: c[0] * 0.5, carry)}
        out[backward] = jax.jit(jax.value_and_grad(loss_fn(layer, reset), argnums=(0, 1, 2)))(
            p, carry, xs)
    for a, b in zip(jax.tree.leaves(out["native"]), jax.tree.leaves(out["autodiff"])):
        # float32 sums in another order: within 1e-5 of the largest entry; the relu cells'
        # gradients grow through time (irnn's to 1e2), and with them the rounding
        relu = "relu" in case or case == "irnn"
        np.testing.assert_allclose(a, b, rtol=2e-3 if relu else 1e-4,
                                   atol=(1e-4 if relu else 1e-5) * max(1.0, np.max(np.abs(b))))


@needs_native
def test_windows_with_lengths_run_the_hand_derived_path():
    cell, params, carry, xs = setup("lstm", {})
    lengths = jnp.array([T, 2, 5])
    grads = {}
    for backward in ("native", "custom"):
        layer = layers.rnn(cell, backward=backward)
        loss = lambda p: jnp.sum(layer.apply(p, carry, xs, lengths=lengths)[1] ** 2)  # noqa
        grads[backward] = jax.jit(jax.value_and_grad(loss))(params)
    jax.tree.map(np.testing.assert_array_equal, grads["native"], grads["custom"])  # bitwise


@needs_native
def test_vmapped_trials_and_stacked_bidirectional_layers():
    cell = cells.get_cell("gru", hidden_size=H)
    xs = jax.random.normal(jax.random.key(1), (3, T, F))

    def body(backward):
        return layers.stack([layers.bidirectional(cell, cell, backward=backward),
                             layers.rnn(cell, backward=backward)])

    params = jax.vmap(lambda k: body("autodiff").init(k, F))(jax.random.split(jax.random.key(2), 3))

    def grads(backward):
        layer = body(backward)
        return jax.jit(jax.vmap(jax.grad(lambda p: jnp.sum(jnp.tanh(layer.apply(p, None, xs)[1])
                                                           ** 2))))(params)

    for a, b in zip(jax.tree.leaves(grads("native")), jax.tree.leaves(grads("autodiff"))):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)


FUSED = {  # oneDNN's primitive over more than one layer or direction -> the same in rnnlab
    "bidirectional_concat": (native_layer.CONCAT, 1, 2),
    "bidirectional_sum": (native_layer.SUM, 1, 2),
    "two_layers": (native_layer.FORWARD, 2, 1),
    "two_layers_reversed": (native_layer.REVERSE, 2, 1),
}  # (oneDNN's L > 1 in both directions stacks each direction on itself: not rnnlab's stack)


@needs_native
@pytest.mark.parametrize("fused", list(FUSED))
@pytest.mark.parametrize("case", ["lstm", "gru", "gru_reset_before", "elman"])
def test_one_primitive_over_layers_and_directions_equals_rnnlabs_stack(case, fused):
    # `layers.native.rnn` with L layers and D directions in one oneDNN primitive: its values
    # and gradients equal autodiff through rnnlab's own stack / bidirectional layers (the cells'
    # steps) with the same weights. Layers after the first read the previous one's output, so
    # the input size is H here (oneDNN's rule for L > 1).
    name, options, _ = CELLS[case]
    direction, L, D = FUSED[fused]
    cell = cells.get_cell(name, hidden_size=H, **options)
    keys = jax.random.split(jax.random.key(3), L * D + 2)
    shift = lambda p, k: jax.tree.map(  # noqa: E731
        lambda a: a + 0.3 * jax.random.normal(k, a.shape, a.dtype), p)
    ps = [[shift(cell.init(keys[l * D + d], H), keys[-1]) for d in range(D)] for l in range(L)]
    xs = jax.random.normal(keys[-2], (3, T, H))
    lstm, code = name == "lstm", native_layer.CODES[cell.kernel.native]

    def fused_loss(ps, xs):
        w = [jnp.stack([jnp.stack(list(native_layer.onednn_params(cell.kernel.native, p)[i]
                                       for p in row)) for row in ps]) for i in range(3)]
        h0 = jnp.zeros((L, D, 3, H))
        y = native_layer.rnn(code, direction, jnp.swapaxes(xs, 0, 1), h0,
                             h0 if lstm else jnp.zeros((0,)), *w)[0]
        return jnp.sum(jnp.tanh(jnp.swapaxes(y, 0, 1)) ** 2)

    merge = "concat" if direction == native_layer.CONCAT else "sum"
    one = (layers.bidirectional(cell, cell, merge=merge, backward="autodiff") if D == 2 else
           layers.rnn(cell, reverse=direction == native_layer.REVERSE, backward="autodiff"))
    body = layers.stack([one] * L)
    as_rnnlab = lambda ps: {f"layer_{l}": ({"fwd": {"cell": row[0]}, "bwd": {"cell": row[1]}}  # noqa
                                            if D == 2 else {"cell": row[0]})
                            for l, row in enumerate(ps)}
    ref_loss = lambda ps, xs: jnp.sum(jnp.tanh(body.apply(as_rnnlab(ps), None, xs)[1]) ** 2)  # noqa
    got = jax.jit(jax.value_and_grad(fused_loss, argnums=(0, 1)))(ps, xs)
    want = jax.jit(jax.value_and_grad(ref_loss, argnums=(0, 1)))(ps, xs)
    for a, b in zip(jax.tree.leaves(got), jax.tree.leaves(want)):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5 * max(1.0, np.max(np.abs(b))))


@needs_native
def test_run_to_run_bitwise():
    cell, params, carry, xs = setup("lstm", {}, batch=(16,))
    layer = layers.rnn(cell, backward="native")
    f = jax.jit(jax.value_and_grad(lambda p: jnp.sum(layer.apply(p, carry, xs)[1] ** 2)))
    first = f(params)
    for _ in range(3):
        jax.tree.map(np.testing.assert_array_equal, f(params), first)


@needs_native
def test_matches_pytorch_with_copied_weights():
    torch = pytest.importorskip("torch")
    for case, module in (("lstm", torch.nn.LSTM), ("gru", torch.nn.GRU),
                         ("elman", partial(torch.nn.RNN, nonlinearity="tanh")),
                         ("elman_relu", partial(torch.nn.RNN, nonlinearity="relu"))):
        name, options, _ = CELLS[case]
        cell, params, carry, xs = setup(name, options)
        p = params["cell"]
        net = module(F, H).double()
        with torch.no_grad():  # PyTorch's weights are [G*H, F]; rnnlab's [F, G*H], same order
            net.weight_ih_l0.copy_(torch.tensor(np.asarray(p["w_x"]).T))
            net.weight_hh_l0.copy_(torch.tensor(np.asarray(p["w_h"]).T))
            b_x, b_h = (p["b_x"], p["b_h"]) if name == "gru" else (p["b"], 0 * p["b"])
            net.bias_ih_l0.copy_(torch.tensor(np.asarray(b_x)))
            net.bias_hh_l0.copy_(torch.tensor(np.asarray(b_h)))
        f64 = lambda a: torch.tensor(np.asarray(a, np.float64))  # noqa: E731
        x = f64(np.asarray(xs).transpose(1, 0, 2)).requires_grad_()
        hx = tuple(f64(c)[None] for c in carry) if name == "lstm" else f64(carry)[None]
        y, _ = net(x, hx)
        (y ** 2).sum().backward()
        layer = layers.rnn(cell, backward="native")
        ys, grads = jax.jit(jax.value_and_grad(
            lambda xs: jnp.sum(layer.apply(params, carry, xs)[1] ** 2)))(xs)
        np.testing.assert_allclose(ys, float((y ** 2).sum()), rtol=1e-5)
        np.testing.assert_allclose(grads, x.grad.numpy().transpose(1, 0, 2), rtol=1e-4,
                                   atol=1e-5)


def test_backend_policy_and_forced_choices():
    lstm = cells.get_cell("lstm", hidden_size=H)
    options = layers.options.Options
    auto = paths.choose_path(lstm, options(), "cpu").path
    assert auto == ("native" if BUILT else "custom_vjp")
    gru = cells.get_cell("gru", hidden_size=H, reset_after=False)
    assert paths.choose_path(gru, options(), "cpu").path == auto
    elman = cells.get_cell("elman", hidden_size=H)  # measured no consistent gain: forced only
    assert paths.choose_path(elman, options(), "cpu").path == "custom_vjp"
    assert paths.choose_path(elman, options(backward="native"), "cpu").path == "native"
    assert paths.choose_path(lstm, options(), "gpu").path == "custom_vjp"
    assert paths.choose_path(lstm, options(backward="custom"), "cpu").path == "custom_vjp"
    assert paths.choose_path(lstm, options(zoneout=0.1), "cpu").path == "sequential"
    assert paths.choose_path(lstm, options(recurrent_dropout=0.1), "cpu").path == "custom_vjp"
    mgu = cells.get_cell("mgu", hidden_size=H)
    assert paths.choose_path(mgu, options(), "cpu").path == "sequential"
    with pytest.raises(ValueError, match="needs a cell oneDNN has"):
        layers.rnn(mgu, backward="native")
    with pytest.raises(ValueError, match="needs a cell oneDNN has"):
        layers.rnn(lstm, backward="native", zoneout=0.1)
    with pytest.raises(ValueError, match="needs a cell oneDNN has"):
        layers.rnn(lstm, backward="native", recurrent_dropout=0.2)
    with pytest.raises(ValueError, match="remat"):
        layers.rnn(lstm, backward="native", remat=4)


def test_turned_off_or_unbuildable_it_says_why_and_auto_falls_back(tmp_path):
    code = ("from rnnlab import cells, native; from rnnlab.layers import paths, options\n"
            "print(native.status()[1]); print(paths.choose_path(cells.get_cell('lstm', "
            "hidden_size=4), options.Options(), 'cpu').path)\n")
    for env, said in (({"RNNLAB_NATIVE": "0"}, "RNNLAB_NATIVE=0 turns the native path off"),
                      ({"CXX": str(tmp_path / "no-c++"), "RNNLAB_NATIVE_CACHE": str(tmp_path)},
                       f"the C++ compiler {tmp_path / 'no-c++'} (CXX) was not found")):
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                             cwd=ROOT, env={**os.environ, **env})
        assert out.returncode == 0, out.stderr
        lines = out.stdout.splitlines()
        assert said in lines[0], lines
        assert lines[1] == "custom_vjp"
    if BUILT:  # a library in the cache that does not load (a truncated or foreign file)
        corrupt = ("from rnnlab import native; p = native.library_path(); "
                   "p.parent.mkdir(parents=True); p.write_bytes(b'not a library')\n")
        out = subprocess.run([sys.executable, "-c", corrupt + code], capture_output=True,
                             text=True, cwd=ROOT,
                             env={**os.environ, "RNNLAB_NATIVE_CACHE": str(tmp_path / "bad")})
        assert out.returncode == 0, out.stderr
        lines = out.stdout.splitlines()
        assert lines[0].startswith("the native library does not load (") and lines[0].endswith(
            "to rebuild it"), lines
        assert lines[1] == "custom_vjp"


@needs_native
def test_where_files_cannot_be_locked_it_says_where_it_builds(tmp_path, monkeypatch):
    monkeypatch.setenv("RNNLAB_NATIVE_CACHE", str(tmp_path))
    monkeypatch.setitem(sys.modules, "fcntl", None)  # as on Windows
    with pytest.raises(native.Unavailable, match="builds on Linux and macOS only"):
        native.build()


@needs_native  # (the library's name needs the compiler and oneDNN it would build with)
def test_builds_that_start_at_once_compile_once(tmp_path, monkeypatch):
    # Several processes (the trials of a sweep, the test workers) starting on a fresh machine:
    # one compiles, the others wait for its library (a file lock; a compiler here stands in).
    import threading
    import time

    monkeypatch.setenv("RNNLAB_NATIVE_CACHE", str(tmp_path))
    compiled = []

    def compile_slowly(path):
        compiled.append(path)
        time.sleep(0.5)
        path.write_bytes(b"library")

    monkeypatch.setattr(native, "_compile", compile_slowly)
    built = []
    threads = [threading.Thread(target=lambda: built.append(native.build())) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(compiled) == 1 and built == [compiled[0]] * 4
    assert compiled[0].read_bytes() == b"library"

@needs_native
def test_over_several_devices_each_runs_its_rows_and_gradients_are_summed():
    # Data parallel: the batch split over 2 devices, each device runs oneDNN on its rows
    # (shard_map), the weights' gradients summed, also for trials vmapped together; a batch that
    # does not split evenly runs the hand-derived path.
    code = """
import jax, jax.numpy as jnp, numpy as np
from rnnlab import cells, layers, parallel
mesh = parallel.make_mesh()
for name, batch in (("lstm", 4), ("gru", 4), ("lstm", 3)):
    cell = cells.get_cell(name, hidden_size=8)
    xs = jax.random.normal(jax.random.key(0), (batch, 5, 3))
    if batch % 2 == 0:
        xs = jax.device_put(xs, parallel.split(mesh, 0))
    out, jaxprs = {}, {}
    for backward in ("native", "custom"):
        layer = layers.rnn(cell, backward=backward)
        params = layer.init(jax.random.key(1), 3)
        loss = lambda p: jnp.sum(jnp.sin(layer.apply(p, None, xs)[1]))
        out[backward] = jax.jit(jax.value_and_grad(loss))(params)
        jaxprs[backward] = str(jax.make_jaxpr(loss)(params))
        # Two trials trained together (vmapped over their params) on the same split batch.
        trials = jax.vmap(lambda k: layer.init(k, 3))(jax.random.split(jax.random.key(2), 2))
        out[backward, "trials"] = jax.jit(jax.vmap(jax.value_and_grad(loss)))(trials)
        jaxprs[backward, "trials"] = str(jax.make_jaxpr(jax.vmap(loss))(trials))
    for a, b in zip(jax.tree.leaves((out["native"], out["native", "trials"])),
                    jax.tree.leaves((out["custom"], out["custom", "trials"]))):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)
    print(name, batch, *(("shard_map" in j, "rnnlab_rnn_forward" in j)
                         for j in (jaxprs["native"], jaxprs["native", "trials"])))
"""
    env = {**os.environ, "XLA_FLAGS": f"{os.environ.get('XLA_FLAGS', '')} "
                                     "--xla_force_host_platform_device_count=2"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT,
                         env=env)
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.splitlines() == ["lstm 4 (True, True) (True, True)",
                                       "gru 4 (True, True) (True, True)",
                                       "lstm 3 (False, False) (False, False)"]


@needs_native
def test_auto_leaves_windows_too_small_for_oneDNN_to_the_hand_derived_path():
    from rnnlab.layers import native as native_path

    cell = cells.get_cell("gru", hidden_size=16)
    params = layers.rnn(cell).init(jax.random.key(0), F)

    def runs_onednn(batch, backward="auto"):
        apply = layers.rnn(cell, backward=backward).apply
        xs = jnp.ones((batch, T, F))
        return "rnnlab_rnn_forward" in str(jax.make_jaxpr(lambda p: apply(p, None, xs))(params))

    big = native_path.SMALLEST // 16
    assert runs_onednn(big) and not runs_onednn(big - 1)
    assert runs_onednn(2, backward="native")  # forced: any size


@needs_native
@pytest.mark.slow
def test_training_on_the_native_path_is_bitwise_run_to_run_and_after_sigkill(tmp_path):
    from test_train import KILL_RUN, assert_same_run, kill_and_resume, run_main

    forced = "--config.model.backward=native"  # the kill runs' model is too small for "auto"
    straight = run_main(tmp_path / "straight", *KILL_RUN, forced)
    assert straight.returncode == 0, straight.stderr[-2000:]
    assert "layers run the native path (oneDNN" in straight.stderr
    resumed = kill_and_resume(tmp_path / "killed", forced)
    assert "layers run the native path (oneDNN" in resumed.stderr
    assert_same_run(tmp_path / "straight", tmp_path / "killed")


def test_the_log_names_the_path_the_layers_take():
    from configs import base as base_config
    from rnnlab import model

    m = base_config.get_config().model
    m.cell, m.hidden_size = "lstm", 32
    small = model.path(m, 8)
    assert small == ("custom_vjp path (the native one from 8192 batch x hidden units; here 8 x "
                     "32)" if BUILT else "custom_vjp path")
    m.hidden_size = 128
    assert model.path(m, 64).startswith("native path (oneDNN" if BUILT else "custom_vjp path")
    m.backward = "autodiff"
    assert model.path(m, 64) == "sequential path"
