"""Diagnostics against independent answers: gradient norms of a linear Elman network in
closed form, spectra from numpy.linalg and matrices of known spectrum, gate saturation from a
float64 NumPy LSTM, a unit planted to track quotes, an escaped HTML page, and the CLI."""

import json
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from rnnlab import cells, diagnose, diagnostics, overrides, recurrent, train, validation
from rnnlab.layout import read_metrics
from rnnlab.cells import base
from test_tasks import task_config
from test_train import ROOT


def linear_elman(a, H=3, F=2):
    layer = recurrent.stack([recurrent.rnn(cells.get_cell("elman", hidden_size=H,
                                                          activation="identity"))])
    params = layer.init(jax.random.key(0), F)
    params["layer_0"]["cell"]["w_h"] = a * jnp.eye(H)
    return layer, params


@pytest.mark.parametrize("a", [0.5, 0.9, 1.2])
def test_gradient_norms_of_a_linear_elman_network_follow_a_to_the_distance(a):
    # h_t = a h_{t-1} + W x_t. With L = mean_b <v_b, y_T> every state's gradient is
    # a^(T-t) v_b; with L = mean_b sum_s <v_b, y_s> it is sum_{s=t+1..T} a^(s-t) v_b.
    T, B, H = 7, 4, 3
    layer, params = linear_elman(a, H)
    xs = jax.random.normal(jax.random.key(1), (B, T, 2))
    v = jax.random.normal(jax.random.key(2), (B, H))

    def last_loss(tap):
        return jnp.mean(jnp.sum(layer.apply(params, None, xs, tap=tap)[1][:, -1] * v, -1))

    def summed_loss(tap):
        return jnp.mean(jnp.sum(layer.apply(params, None, xs, tap=tap)[1] * v[:, None], (1, 2)))

    v_norm = np.linalg.norm(np.asarray(v, np.float64), axis=-1)  # [B]
    t = np.arange(T)[:, None]
    last = a ** (T - t) * v_norm
    summed = np.array([[sum(a ** (s - k) for s in range(k + 1, T + 1))] for k in range(T)])
    for loss, last_step, want in ((last_loss, False, last), (summed_loss, True, last),
                                  (summed_loss, False, summed * v_norm)):
        got = diagnostics.state_gradients(loss, last_step=last_step)
        assert list(got) == ["layer_0"]
        np.testing.assert_allclose(got["layer_0"], want, rtol=1e-5)


def test_gradients_stop_at_a_reset_and_are_named_by_layer_and_direction():
    cell = cells.get_cell("gru", hidden_size=3)
    body = recurrent.stack([recurrent.bidirectional(cell, cell), recurrent.rnn(cell)])
    params = body.init(jax.random.key(0), 2)
    xs = jax.random.normal(jax.random.key(1), (2, 6, 2))
    reset = jnp.zeros((2, 6), bool).at[0, 3].set(True)

    def loss(tap):
        return jnp.mean(body.apply(params, None, xs, reset=reset, tap=tap)[1] ** 2)

    got = diagnostics.state_gradients(loss)
    assert list(got) == ["layer_0/fwd", "layer_0/bwd", "layer_1"]
    # Example 0 restarts before step 4 (index 3): the state that step reads is replaced.
    assert float(got["layer_1"][3, 0]) == 0.0 and float(got["layer_1"][3, 1]) > 0.0
    assert all(np.all(np.isfinite(g)) for g in got.values())


def test_a_reversed_layer_reports_gradients_in_time_order_with_and_without_lengths():
    cell = cells.get_cell("elman", hidden_size=3)
    body = recurrent.stack([recurrent.bidirectional(cell, cell)])
    params = body.init(jax.random.key(0), 2)
    xs = jax.random.normal(jax.random.key(1), (2, 5, 2))

    def loss(lengths):
        return lambda tap: jnp.mean(
            body.apply(params, None, xs, lengths=lengths, tap=tap)[1][:, 1] ** 2)

    plain = diagnostics.state_gradients(loss(None))
    full = diagnostics.state_gradients(loss(jnp.array([5, 5])))
    for name in ("layer_0/fwd", "layer_0/bwd"):
        np.testing.assert_allclose(plain[name], full[name], rtol=1e-6)
    # The loss reads the outputs at t=1: forwards the states that steps 0 and 1 read matter;
    # backwards those that steps 1..4 read (the step at t reads the state after t+1).
    fwd, bwd = np.asarray(plain["layer_0/fwd"]), np.asarray(plain["layer_0/bwd"])
    assert np.all(fwd[:2] > 0) and np.all(fwd[2:] == 0)
    assert np.all(bwd[1:] > 0) and np.all(bwd[0] == 0)


def test_spectra_agree_with_numpy_and_with_matrices_of_known_spectrum():
    H = 5
    rng = np.random.default_rng(0)
    theta = 0.3
    rotation = np.eye(H)
    rotation[:2, :2] = [[np.cos(theta), -np.sin(theta)], [np.sin(theta), np.cos(theta)]]
    scales = [0.5, 1.0, 2.0, 0.25]
    lstm_w = np.concatenate([s * rotation for s in scales], axis=1)  # rho = sigma = s per gate
    random_w = rng.normal(size=(H, H))
    params = {"body": {"layer_0": {"cell": {"w_h": lstm_w, "w_x": np.zeros((2, 4 * H))}},
                       "layer_1": {"fwd": {"cell": {"w_h": random_w}}}}}
    got = diagnostics.recurrent_spectra(params, "lstm")
    for gate, s in zip(diagnostics.BLOCKS["lstm"], scales):
        assert got["layer_0"][gate] == pytest.approx({"spectral_radius": s, "sigma_max": s},
                                                     rel=1e-5)
    # layer_1's 5x5 matrix is not 4 gate blocks: the whole matrix.
    want = {"spectral_radius": np.max(np.abs(np.linalg.eigvals(random_w))),
            "sigma_max": np.linalg.svd(random_w, compute_uv=False)[0]}
    assert got["layer_1/fwd"]["w_h"] == pytest.approx(want, rel=1e-5)


def sigmoid(x):
    return 1 / (1 + np.exp(-x))


def test_gate_saturation_equals_a_hand_count_of_a_numpy_lstm():
    F, H, B, T = 3, 4, 3, 9
    cell = cells.get_cell("lstm", hidden_size=H)
    layer = recurrent.rnn(cell)
    params = layer.init(jax.random.key(0), F)
    params["cell"] = jax.tree_util.tree_map(lambda w: 2.5 * w, params["cell"])  # saturate some
    xs = 2 * jax.random.normal(jax.random.key(1), (B, T, F))
    lengths = jnp.array([9, 5, 0])  # padding steps are not counted
    counter = diagnostics.GateCounter(0.1, 0.9)
    jax.block_until_ready(jax.jit(
        lambda p, x: layer.apply(p, None, x, lengths=lengths, tap=counter))(params, xs))
    jax.effects_barrier()
    # float64 reference of the PyTorch-layout equations (gates i, f, g, o).
    p = {k: np.asarray(v, np.float64) for k, v in params["cell"].items()}
    x64 = np.asarray(xs, np.float64)
    counts = {g: np.zeros(3, int) for g in ("input", "forget", "output")}
    for b in range(B):
        h, c = np.zeros(H), np.zeros(H)
        for t in range(int(lengths[b])):
            z = x64[b, t] @ p["w_x"] + h @ p["w_h"] + p["b"]
            i, f, g, o = np.split(z, 4)
            gates = {"input": sigmoid(i), "forget": sigmoid(f), "output": sigmoid(o)}
            c = gates["forget"] * c + gates["input"] * np.tanh(g)
            h = gates["output"] * np.tanh(c)
            for name, v in gates.items():
                assert np.all(np.abs(v - 0.1) > 1e-4) and np.all(np.abs(v - 0.9) > 1e-4)
                counts[name] += [np.sum(v < 0.1), np.sum(v > 0.9), H]
    got = counter.fractions()["rnn"]
    for name, (below, above, n) in counts.items():
        assert got[name] == {"below": below / n, "above": above / n, "count": n}
    assert 0 < sum(c[0] + c[1] for c in counts.values())  # the test saw saturated gates


QUOTE = '"'


def quote_cell(quote_index):
    """A cell whose unit 0 is 1 inside a double-quoted span and 0 outside, by construction
    (it flips on the quote character's one-hot input); the other units are an Elman cell's."""
    elman = cells.get_cell("elman", hidden_size=4)

    def factory(hidden_size, **options):
        def step(params, h, x):
            q = x[..., quote_index]
            flag = h[..., 0] + q - 2 * h[..., 0] * q
            _, rest = elman.step(params, h, x)
            h = jnp.concatenate([flag[..., None], rest[..., 1:]], -1)
            return h, h

        return base.Cell(elman.init, elman.initial_carry, step, elman.project,
                         lambda p, h, xp: step(p, h, xp), 4, 4)

    return factory


def test_the_unit_search_finds_a_unit_planted_to_track_quotes(monkeypatch, tmp_path):
    config = overrides.apply(task_config("lm"), {"model.cell": "quote", "model.embed_size": 0})
    monkeypatch.setitem(cells.CELLS, "quote", quote_cell(0))  # replaced below, once V is known
    subject = diagnose.load(config=config, checkpoint="init", out=tmp_path)
    chars = subject.task.record["chars"]
    monkeypatch.setitem(cells.CELLS, "quote", quote_cell(chars.index(QUOTE)))
    subject = diagnose.load(config=config, checkpoint="init", out=tmp_path)
    text = ('print("hello (world)")\n    x = "a" + f(y, [z])  # note\n' * 6)
    result = diagnose.units(subject, text=text, top=2)
    assert result["found"]["quote"][0]["unit"] == "layer_0/h/0"
    assert result["found"]["quote"][0]["r"] > 0.99
    assert set(result["found"]) == {"quote", "bracket_depth", "line_position", "indentation",
                                    "comment"}
    page = (tmp_path / "units.html").read_text()
    assert "layer_0/h/0 (tracks quote, r = +1.00)" in page
    assert json.loads((tmp_path / "units.json").read_text())["paths"] == {
        "layer_0": "sequential"}


def test_text_features_follow_their_definitions():
    text = 'a("b#")  # c(\n  [x]\n'
    f = diagnostics.text_features(text)
    assert len(text) == 20
    assert f["quote"].tolist() == [0, 0, 1, 1, 1, 0] + [0] * 14
    assert f["bracket_depth"].tolist() == [0, 1, 1, 1, 1, 1] + [0] * 10 + [1, 1, 0, 0]
    assert f["comment"].tolist() == [0] * 9 + [1] * 4 + [0] * 7  # '#' in quotes is text
    assert f["line_position"][11:16].tolist() == [12, 13, 0, 1, 2]
    assert f["indentation"][13:19].tolist() == [0, 1, 2, 2, 2, 2]


def test_the_units_page_shows_markup_in_the_text_rather_than_running_it():
    text = "<script>alert('x')</script> & \"q\""
    page = diagnostics.units_html(text, {"<b>unit</b>": np.linspace(-1, 1, len(text))})
    assert "<script>" not in page and "<b>unit" not in page
    assert "&lt;" in page and "&amp;" in page and "&lt;b&gt;unit" in page


def test_every_output_says_which_path_each_layer_ran(tmp_path, capsys):
    """gradients.json, gates.json and the console name the path each layer ran: the
    sequential one that a watched layer runs, where training runs the hand-derived backward
    (an LSTM on this backend): what the diagnostics measured is not what training runs."""
    config = task_config("seq2seq")  # two bodies: encoder/... and decoder/...
    subject = diagnose.load(config=config, checkpoint="init", out=tmp_path)
    grads, gates = diagnose.gradients(subject), diagnose.gates(subject, batches=1)
    want = {"encoder/layer_0": "sequential", "decoder/layer_0": "sequential"}
    written = {name: json.loads((tmp_path / f"{name}.json").read_text())
               for name in ("gradients", "gates")}
    assert written["gradients"]["paths"] == grads["paths"] == want
    assert written["gates"]["paths"] == gates["paths"] == want
    assert set(grads["objectives"]["summed"]) == set(gates["saturation"]) == set(want)
    printed = capsys.readouterr().out
    assert printed.count("paths     encoder/layer_0: sequential, decoder/layer_0: "
                         "sequential") == 2
    batch = subject.task.batch(subject.task.data, 0, jax.random.key(0))
    trained = jax.make_jaxpr(lambda p: subject.task.loss(p, None, batch, None))(
        subject.state.params)
    assert "custom_vjp" in str(trained)


def diagnose_cli(*args):
    return subprocess.run([sys.executable, "-m", "rnnlab.diagnose", *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=300)


@pytest.mark.slow
def test_the_cli_diagnoses_a_run_at_its_checkpoints_and_at_init(tmp_path):
    run = tmp_path / "run"
    train.train(task_config("lm"), run)  # 8 steps, checkpoints at 4 and 8
    for what, checkpoint, files in (("gradients", "4", ["gradients.json", "gradients.png"]),
                                    ("units", "best", ["units.html", "units.json", "units.png"]),
                                    ("gates", "init", ["gates.json"])):
        out = tmp_path / what
        done = diagnose_cli(what, f"--workdir={run}", f"--checkpoint={checkpoint}",
                            f"--out={out}", "--length=300", "--batches=2")
        assert done.returncode == 0, done.stderr[-3000:]
        assert sorted(p.name for p in out.iterdir()) == files
    grads = json.loads((tmp_path / "gradients" / "gradients.json").read_text())
    assert grads["at"] == "step 4 (4 checkpoint)"
    assert len(grads["objectives"]["summed"]["layer_0"]["mean"]) == 16  # the smoke's window
    assert set(grads["spectra"]["layer_0"]) == {"input", "forget", "cell", "output"}
    gates = json.loads((tmp_path / "gates" / "gates.json").read_text())["saturation"]
    assert set(gates["layer_0"]) == {"input", "forget", "output"}
    done = diagnose_cli("gradients", f"--workdir={run}", "--checkpoint=5", f"--out={tmp_path}/x")
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert done.stderr.strip().splitlines()[-1].startswith(
        f"error: {run} has no checkpoint of step 5 that reads back (its checkpoints: 4, 8)")
    with pytest.raises(FileNotFoundError, match="holds no run"):
        diagnose.load(workdir=tmp_path / "none")
    with pytest.raises(ValueError, match="--checkpoint must be best, last, init or a step"):
        diagnose.load(workdir=run, checkpoint="bestt")
    with pytest.raises(ValueError, match="units reads a text through a character model"):
        diagnose.units(diagnose.load(config=task_config("adding"), out=tmp_path / "x"))
    # a fresh init of a config, with an override (the help text's last command, made small)
    done = diagnose_cli("gradients", "--config=configs/adding.py:smoke",
                        "--config.data.length=6", f"--out={tmp_path}/init")
    assert done.returncode == 0, done.stderr[-2000:]
    grads = json.loads((tmp_path / "init" / "gradients.json").read_text())
    assert grads["at"] == "initialisation"
    assert len(grads["objectives"]["last_step"]["layer_0"]["mean"]) == 6


@pytest.mark.slow
def test_gradients_of_every_task_at_init(tmp_path):
    for name in ("classify", "copy", "seq2seq", "vec2seq"):
        subject = diagnose.load(config=task_config(name, **{"train.bptt_len": 4})
                                if name == "classify" else task_config(name), out=tmp_path)
        result = diagnose.gradients(subject)
        for by in result["objectives"].values():
            assert by and all(np.all(np.isfinite(s["mean"])) for s in by.values()), name


def test_logged_gradient_flow_is_that_of_the_checkpoint_of_its_step(tmp_path):
    config = task_config("lm", **{"train.log_gradients": True})  # a loss at every step
    train.train(config, tmp_path)
    line = next(r for r in read_metrics(tmp_path) if r["split"] == "gradients")
    subject = diagnose.load(workdir=tmp_path, checkpoint=str(line["step"]), out=tmp_path / "d")
    norms = diagnostics.gradient_norms(subject.task, subject.state, subject.task.data)
    mean = np.asarray(norms["last_step"]["layer_0"]).mean(1)
    assert line["first"] == pytest.approx(mean[1], rel=1e-5)
    assert line["last"] == pytest.approx(mean[-1], rel=1e-5)
    assert line["ratio"] == pytest.approx(mean[1] / mean[-1], rel=1e-5)
    with pytest.raises(validation.ConfigError, match="train.log_gradients measures"):
        validation.check_config(task_config("classify", **{"train.log_gradients": True,
                                                           "train.bptt_len": 4}))


def test_a_run_made_before_a_key_existed_reads_with_its_default(tmp_path):
    from rnnlab import sample

    config = json.loads(task_config("adding").to_json_best_effort())
    del config["model"]["zoneout"], config["train"]["log_gradients"]  # an older run's config
    (tmp_path / "config.json").write_text(json.dumps(config))
    (tmp_path / "vocab.json").write_text(json.dumps({}))
    loaded, _ = sample.load_run(tmp_path)
    assert loaded.model.zoneout == 0.0 and loaded.train.log_gradients is False
    assert loaded.data.length == config["data"]["length"]
