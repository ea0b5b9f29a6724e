"""End-to-end character LM: training, resume after SIGKILL, SIGTERM, divergence, config errors,
sampling. Runs use the offline corpus cut to a few thousand characters."""

import fcntl
import hashlib
import importlib
import json
import os
import pathlib
import shutil
import signal
import subprocess
import sys
import time
import urllib.request

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from configs import quickstart
from rnnlab import checkpoint, data, layout, optim, rundir, sample, steps
from rnnlab import state as state_lib, storage, tasks, train, validation
from rnnlab.tasks import lm

ROOT = pathlib.Path(__file__).resolve().parents[1]
DETERMINISTIC = ("loss", "bpc", "accuracy", "grad_norm", "lr", "perplexity", "nonfinite")


# The smoke config made tiny (also passed as --config.KEY=VALUE to subprocess runs).
TINY = {"data.max_chars": 12_000, "model.hidden_size": 16, "train.steps": 12,
        "train.log_every": 3, "train.eval_every": 6, "train.ckpt_every": 4,
        "train.sample_length": 20,
        "optim.lr": 1e-2,  # a tiny model learns visibly within a few dozen steps
        "optim.schedule": "constant"}


def tiny_config(**overrides):
    c = quickstart.get_config("smoke")
    for key, value in {**TINY, **overrides}.items():
        node = c
        *path, last = key.split(".")
        for part in path:
            node = node[part]
        node[last] = value
    return c


def restore_params(workdir, config=None, *, best=False):
    """The run's last (or best) checkpoint, restored with the run's own config.json."""
    workdir = storage.path(workdir)  # a local path or a gs:// URL
    config, record = sample.load_run(workdir)
    model = tasks.model(config, record)
    fresh = state_lib.init_state(config, model, optim.make_optimizer(
        config.optim, config.train.steps), tasks.metric_names(config))
    ckpt = checkpoint.Checkpointer(workdir, 3, read_only=True)
    restored = ckpt.restore(fresh, best=best)
    ckpt.close()
    return restored.state, restored.meta


def deterministic_metrics(workdir):
    return [
        {k: v for k, v in m.items() if k in DETERMINISTIC or k in ("step", "split")}
        for m in layout.read_metrics(workdir)
    ]


def test_smoke_training_lowers_the_loss_and_writes_the_run_dir(tmp_path):
    config = tiny_config(**{"train.steps": 40, "train.log_every": 5, "train.eval_every": 20})
    results = train.train(config, tmp_path)
    lines = layout.read_metrics(tmp_path)
    train_loss = [m["loss"] for m in lines if m["split"] == "train"]
    assert train_loss[-1] < train_loss[0] - 0.5
    vocab_size = len(rundir.read_record(tmp_path)["chars"])
    assert results["valid"]["bpc"] < np.log2(vocab_size) - 0.5  # better than uniform
    assert results["status"] == "finished" and {"valid", "test"} <= set(results)
    for name in ("config.json", "vocab.json", "metrics.jsonl", "samples.txt", "status.json"):
        assert (tmp_path / name).exists(), name
    assert json.loads((tmp_path / "status.json").read_text())["status"] == "finished"
    assert json.loads((tmp_path / "config.json").read_text())["model"]["cell"] == "lstm"
    assert "=== step 20 " in (tmp_path / "samples.txt").read_text()
    train_line = next(m for m in lines if m["split"] == "train")
    for key in ("loss", "bpc", "perplexity", "accuracy", "grad_norm", "lr", "steps_per_sec",
                "chars_per_sec"):
        assert np.isfinite(train_line[key]), key
    assert any(p.name.startswith("events.out.tfevents") for p in (tmp_path / "tb").iterdir())
    assert {"loss", "bpc", "perplexity", "accuracy"} <= set(lines[-1])
    assert checkpoint.Checkpointer(tmp_path, 3).latest_step() == 40


def test_every_parameter_changes_and_the_step_compiles_once(tmp_path):
    config = tiny_config(**{"model.num_layers": 2, "model.embed_size": 8})
    task = tasks.build(config)
    tx = optim.make_optimizer(config.optim, config.train.steps)
    step = jax.jit(steps.make_train_step(task, tx))
    state = state_lib.init_state(config, task.model, tx, task.metrics)
    before = jax.tree_util.tree_map(np.asarray, state.params)
    for _ in range(3):
        state = step(state, task.data)
    assert step._cache_size() == 1
    changed = jax.tree_util.tree_map(lambda a, b: not np.array_equal(a, b), before, state.params)
    assert all(jax.tree_util.tree_leaves(changed))


def run_main(workdir, *overrides, config="configs/quickstart.py:smoke", wait=True, env=None,
             log=None):
    cmd = [sys.executable, "-m", "rnnlab.main", f"--config={config}", f"--workdir={workdir}",
           *overrides]
    env = dict(os.environ, JAX_PLATFORMS="cpu", **(env or {}))
    if not wait:  # logs to a file: a pipe nobody reads would fill up and block the run
        log = open(log or pathlib.Path(workdir).parent / f"{pathlib.Path(workdir).name}.log", "w")
        return subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=log, stderr=log, text=True)
    return subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)


STEPS = 150
# Checkpoints every 17 steps, logs every 5: a resume lands inside a log window, whose average
# must still equal the uninterrupted run's (the sums are part of the checkpointed state).
KILL_RUN = (f"--config.train.steps={STEPS}", "--config.train.ckpt_every=17",
            "--config.train.log_every=5", "--config.train.eval_every=50",
            "--config.data.max_chars=12000", "--config.model.hidden_size=16")


def session_folder(name, tmp_path_factory, make, *key):
    """A folder that `make(folder)` fills once per test session (per `name` and `key`): the
    first test worker that asks makes it while the others wait on a file lock, then every
    worker reads it. A make that failed leaves no mark, so the next asker starts it again in an
    emptied folder."""
    root = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        root = root.parent  # the session's folder, above each worker's own
    folder = root / f"shared-{name}-{hashlib.sha256(repr(key).encode()).hexdigest()[:12]}"
    with open(f"{folder}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # (released when the file closes)
        if not (folder / "made").exists():
            shutil.rmtree(folder, ignore_errors=True)
            folder.mkdir()
            make(folder)
            (folder / "made").touch()
    return folder


def shared_run(name, tmp_path_factory, *overrides):
    """One uninterrupted `rnnlab.main` run of `overrides` per test session, shared by the tests
    that compare with it (a test that only reads a finished run need not train its own)."""
    def make(folder):
        done = run_main(folder / "run", *overrides)
        assert done.returncode == 0, done.stderr[-2000:]

    return session_folder(name, tmp_path_factory, make, *overrides) / "run"


def straight_run(tmp_path_factory):
    """The uninterrupted run of KILL_RUN that the kill-and-resume tests compare with."""
    return shared_run("straight", tmp_path_factory, *KILL_RUN)


def wait_until_serving(url, proc, seconds, log_path):
    """Until `url` answers (a server `proc` started), failing with its log if it exits or
    takes more than `seconds`."""
    deadline = time.time() + seconds
    while True:
        try:
            urllib.request.urlopen(url, timeout=2)
            return
        except OSError:
            assert proc.poll() is None and time.time() < deadline, (
                f"{url} did not start:\n" + pathlib.Path(log_path).read_text()[-3000:])
            time.sleep(0.2)


def assert_same_run(a_dir, b_dir, steps=STEPS):
    a, meta_a = restore_params(a_dir)
    b, meta_b = restore_params(b_dir)
    assert int(a.step) == int(b.step) == steps
    jax.tree_util.tree_map(np.testing.assert_array_equal, a, b)
    assert meta_a == meta_b
    assert deterministic_metrics(a_dir) == deterministic_metrics(b_dir)
    assert (a_dir / "samples.txt").read_text() == (b_dir / "samples.txt").read_text()


def wait_for_step(proc, workdir, step, timeout=240, *, checkpointed=False):
    """Until the run in `workdir` (a path or a gs:// URL) has logged `step` (and, with
    `checkpointed`, committed a checkpoint: a bucket's commit may lag the steps by seconds)."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        if any(m["step"] >= step for m in layout.read_metrics(workdir)) and (
                not checkpointed
                or checkpoint.Checkpointer(workdir, 3, read_only=True).latest_step()):
            if not storage.is_local(storage.path(workdir)):
                # gcsfs caches listings in this process; later reads must see the files to come.
                import fsspec
                fsspec.filesystem("gs", finalize_on_close=True).invalidate_cache()
            return
        assert proc.poll() is None, f"the run ended (exit code {proc.returncode}) before step {step}"
        time.sleep(0.02)
    raise AssertionError(f"no step {step} within {timeout}s")


def kill_and_resume(workdir, *overrides, env=None, log=None):
    """Runs KILL_RUN (and `overrides`) in `workdir`, SIGKILLs it at a random step after the first
    checkpoint and well before the end, then reruns it to the end."""
    # A kill step of its own each time, from a seed printed so that a failure replays
    # (RNNLAB_KILL_SEED=that seed).
    seed = int(os.environ.get("RNNLAB_KILL_SEED", time.time_ns() % 2**32))
    step = int(np.random.default_rng(seed).integers(30, STEPS // 2))
    print(f"kill_and_resume: killing at step {step} (RNNLAB_KILL_SEED={seed})")
    proc = run_main(workdir, *KILL_RUN, *overrides, wait=False, env=env, log=log)
    wait_for_step(proc, workdir, step, checkpointed=True)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    killed = storage.path(workdir)
    assert json.loads((killed / "status.json").read_text())["status"] == "running"
    assert max(m["step"] for m in layout.read_metrics(killed)) < STEPS
    resumed = run_main(workdir, *KILL_RUN, *overrides, env=env)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert "resuming" in resumed.stderr
    return resumed


def test_sigkill_and_rerun_is_bitwise_equal_to_an_uninterrupted_run(tmp_path, tmp_path_factory):
    kill_and_resume(tmp_path / "killed")
    assert_same_run(straight_run(tmp_path_factory), tmp_path / "killed")


def test_sigterm_saves_and_the_rerun_equals_an_uninterrupted_run(tmp_path, tmp_path_factory):
    workdir = tmp_path / "run"
    proc = run_main(workdir, *KILL_RUN, wait=False)
    wait_for_step(proc, workdir, 12)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=120) == 0
    status = json.loads((workdir / "status.json").read_text())
    assert status["status"] == "interrupted"
    assert checkpoint.Checkpointer(workdir, 3).latest_step() == status["step"] < STEPS
    rerun = run_main(workdir, *KILL_RUN)
    assert rerun.returncode == 0, rerun.stderr[-2000:]
    assert json.loads((workdir / "status.json").read_text())["status"] == "finished"
    assert_same_run(straight_run(tmp_path_factory), workdir)
    # Rerunning a finished run changes nothing: no second final evaluation, no new sample.
    before = {p.name: p.read_text() for p in workdir.glob("*.*") if p.is_file()}
    again = run_main(workdir, *KILL_RUN)
    assert again.returncode == 0, again.stderr[-2000:]
    assert {p.name: p.read_text() for p in workdir.glob("*.*") if p.is_file()} == before


# A relu RNN with W_hh = 3I, no clipping and a huge learning rate: gradients overflow at once.
EXPLODING = {"model.cell": "irnn", "model.init_scale": 3.0, "optim.name": "sgd",
             "optim.lr": 1e3, "optim.clip_norm": 0.0}


def test_divergence_stops_naming_the_step_and_keeps_the_last_good_checkpoint(tmp_path):
    config = tiny_config(**EXPLODING, **{"train.ckpt_every": 1, "train.log_every": 1,
                                         "train.steps": 30})
    with pytest.raises(train.DivergenceError, match=r"non-finite loss or gradient at step (\d+)") as e:
        train.train(config, tmp_path)
    bad_step = int(e.value.args[0].split("at step ")[1].split()[0])
    last = checkpoint.Checkpointer(tmp_path, 3).latest_step()
    assert last == bad_step - 1
    state, _ = restore_params(tmp_path, config)
    assert all(np.isfinite(p).all() for p in jax.tree_util.tree_leaves(state.params))
    assert json.loads((tmp_path / "status.json").read_text())["status"] == "diverged"
    lines = (tmp_path / "metrics.jsonl").read_text()
    with pytest.raises(train.DivergenceError, match=f"at step {bad_step}"):
        train.train(config, tmp_path)  # a rerun reports the divergence, and trains nothing
    assert (tmp_path / "metrics.jsonl").read_text() == lines


def test_skip_nonfinite_skips_and_counts(tmp_path):
    config = tiny_config(**EXPLODING, **{"train.skip_nonfinite": True,
                                         "train.max_nonfinite": 1000})
    train.train(config, tmp_path)
    lines = [m for m in layout.read_metrics(tmp_path) if m["split"] == "train"]
    assert lines[-1]["nonfinite"] > 0
    # the logged sums hold the applied steps only: no NaN from the skipped ones
    assert all(np.isfinite(m[k]) for m in lines for k in ("loss", "bpc", "grad_norm")
               if k in m), lines
    state, _ = restore_params(tmp_path, config)
    assert all(np.isfinite(p).all() for p in jax.tree_util.tree_leaves(state.params))


CONFIGS = sorted(p.stem for p in (ROOT / "configs").glob("*.py") if p.stem not in ("__init__", "base"))


@pytest.mark.parametrize("name", CONFIGS)
def test_every_run_config_and_its_smoke_variant_are_valid(name):
    module = importlib.import_module(f"configs.{name}")
    assert "python -m rnnlab.main --config=configs/" in module.__doc__
    validation.check_config(module.get_config())
    smoke = module.get_config("smoke")
    validation.check_config(smoke)
    assert smoke.train.steps <= 50
    assert smoke.data.name == "pydoc" or smoke.task.name != "lm"  # offline: no download


@pytest.mark.parametrize("name", ["elman_text8", "jordan_text8", "gru_text8"])
def test_smoke_variants_train(name, tmp_path):
    config = importlib.import_module(f"configs.{name}").get_config("smoke")
    results = train.train(config, tmp_path)
    assert np.isfinite(results["test"]["bpc"])
    assert json.loads((tmp_path / "status.json").read_text())["status"] == "finished"


@pytest.mark.parametrize(
    "overrides,message",
    [
        ({"model.cell": "lstmm"}, r"unknown cell 'lstmm'; known cells: .*elman.*gru.*lstm"),
        ({"optim.name": "adamm"}, r"adamm.*adagrad.*adam.*rmsprop.*sgd"),
        ({"optim.schedule": "cosinus"}, r"cosinus.*constant.*cosine.*exponential"),
        ({"model.hidden_size": 0}, r"model.hidden_size must be a positive integer"),
        ({"model.num_layers": -1}, r"model.num_layers must be a positive integer"),
        ({"train.batch_size": 0}, r"train.batch_size must be a positive integer"),
        ({"train.bptt_len": 0}, r"train.bptt_len must be a positive integer"),
        ({"model.bidirectional": True}, r"bidirectional=True sees the future"),
        ({"model.cell": "gru", "model.forget_bias": 1.0}, r"'gru' has no option 'forget_bias'"),
        ({"model.activation": "tanhh"}, r"unknown activation 'tanhh'"),
        ({"model.cell": "jordan", "model.num_layers": 2}, r"num_layers=1"),
        ({"model.dropout": 1.0}, r"model.dropout must be in \[0, 1\)"),
        ({"model.backward": "fast"}, r"model.backward must be one of"),
        ({"model.cell": "mgu", "model.backward": "custom"}, r"hand-derived backward.*not mgu"),
        ({"model.backward": "custom", "model.zoneout": 0.1}, r"and no zoneout"),
        ({"model.backward": "custom", "model.remat": 8}, r"remat runs the autodiff path"),
        ({"model.remat": -1}, r"model.remat must be an integer >= 0"),
        ({"model.dtype": "float16"}, r"model.dtype must be one of"),
    ],
)
def test_bad_configs_fail_before_any_compute(overrides, message):
    with pytest.raises(ValueError, match=message):
        validation.check_config(tiny_config(**overrides))


def test_bptt_longer_than_the_split_is_an_error(tmp_path):
    config = tiny_config(**{"train.bptt_len": 900})
    with pytest.raises(ValueError, match=r"(valid|test|train) split.*bptt_len"):
        train.train(config, tmp_path)
    assert not (tmp_path / "ckpt").exists()


def test_resuming_with_another_config_is_refused(tmp_path):
    train.train(tiny_config(**{"train.steps": 4}), tmp_path)
    with pytest.raises(ValueError, match=r"different config.*model.hidden_size"):
        train.train(tiny_config(**{"train.steps": 4, "model.hidden_size": 24}), tmp_path)
    # Extending the run (more steps) is a resume, not a new experiment.
    train.train(tiny_config(**{"train.steps": 8}), tmp_path)
    assert checkpoint.Checkpointer(tmp_path, 3).latest_step() == 8


def test_cli_overrides_and_bad_config_exit_code(tmp_path):
    bad = run_main(tmp_path / "bad", "--config.model.cell=nosuchcell")
    assert bad.returncode == 2
    assert "unknown cell 'nosuchcell'" in bad.stderr and "lstm" in bad.stderr
    assert not (tmp_path / "bad").exists()
    for flag, line in [
        ("--config.model.hiden_size=3", "error: bad config: --config.model.hiden_size is not a "
                                        "config key (did you mean model.hidden_size,"),
        ("--config.model.hidden_size=abc", "error: bad config: flag --config.model.hidden_size=abc"),
    ]:
        bad = run_main(tmp_path / "bad", flag)
        assert bad.returncode == 2 and line in bad.stderr, bad.stderr[-2000:]
        assert "Traceback" not in bad.stderr and len(bad.stderr.strip().splitlines()) <= 2
    assert not (tmp_path / "bad").exists()
    ok = run_main(tmp_path / "gru", "--config.model.cell=gru", "--config.train.steps=4",
                  "--config.data.max_chars=12000")
    assert ok.returncode == 0, ok.stderr[-2000:]
    assert json.loads((tmp_path / "gru" / "config.json").read_text())["model"]["cell"] == "gru"
    text = subprocess.run(
        [sys.executable, "-m", "rnnlab.sample", f"--workdir={tmp_path / 'gru'}", "--prime=The ",
         "--length=30", "--temperature=0.5"], cwd=ROOT, capture_output=True, text=True,
    )
    assert text.returncode == 0, text.stderr[-2000:]
    assert text.stdout.startswith("The ") and len(text.stdout.rstrip("\n")) == 34


def test_sampling_at_temperature_to_zero_equals_argmax(tmp_path):
    config = tiny_config(**{"train.steps": 20})
    train.train(config, tmp_path)
    argmax = sample.sample_text(tmp_path, prime="The ", length=60, temperature=0.0)
    cold = sample.sample_text(tmp_path, prime="The ", length=60, temperature=1e-4, seed=3)
    warm = sample.sample_text(tmp_path, prime="The ", length=60, temperature=1.5, seed=3)
    assert cold == argmax
    assert warm != argmax
    # argmax by hand: a Python loop that feeds back the most likely character
    config, record = sample.load_run(tmp_path)
    vocab, model = lm.vocab(record), tasks.model(config, record)
    best, _ = restore_params(tmp_path, config, best=True)
    carry = model.initial_carry(best.params, (1,))
    tokens = list(data.encode(vocab, "The "))
    carry, logits = model.apply(best.params, carry, jnp.asarray([tokens]))
    out = []
    for _ in range(60):
        token = int(jnp.argmax(logits[0, -1]))
        out.append(token)
        carry, logits = model.apply(best.params, carry, jnp.asarray([[token]]))
    assert argmax == "The " + data.decode(vocab, np.asarray(out))


def test_resume_refuses_changed_steps_under_a_schedule_that_spans_them(tmp_path):
    cosine = {"optim.schedule": "cosine", "train.steps": 4}
    train.train(tiny_config(**cosine), tmp_path)
    with pytest.raises(ValueError, match=r"different config.*train\.steps"):
        train.train(tiny_config(**{**cosine, "train.steps": 8}), tmp_path)


def test_resume_refuses_a_changed_corpus_and_keeps_the_run_intact(tmp_path):
    text = tmp_path / "corpus.txt"
    text.write_text("the quick brown fox jumps over the lazy dog. " * 200)
    overrides = {"data.name": "text", "data.path": str(text), "data.max_chars": 0,
                 "train.steps": 4}
    workdir = tmp_path / "run"
    train.train(tiny_config(**overrides), workdir)
    vocab_before = (workdir / "vocab.json").read_text()
    text.write_text("THE QUICK BROWN FOX JUMPS OVER THE LAZY DOG! " * 200)
    with pytest.raises(ValueError, match="corpus differs"):
        train.train(tiny_config(**{**overrides, "train.steps": 8}), workdir)
    assert (workdir / "vocab.json").read_text() == vocab_before
    assert sample.sample_text(workdir, prime="the ", length=5)  # still samples


def test_capped_validation_is_the_one_compared_and_the_full_split_is_scored_at_the_end(tmp_path):
    config = tiny_config(**{"train.eval_batches": 1, "train.steps": 12, "train.eval_every": 6})
    results = train.train(config, tmp_path)
    lines = layout.read_metrics(tmp_path)
    valid = [m for m in lines if m["split"] == "valid"]
    assert [m["step"] for m in valid] == [6, 12]
    full = [m for m in lines if m["split"] == "valid_full"]
    assert [m["step"] for m in full] == [12]
    assert results["valid"] == {k: full[0][k] for k in results["valid"]}
    best = json.loads((tmp_path / "status.json").read_text())["best_valid_bpc"]
    assert best == min(m["bpc"] for m in valid)


def test_evaluation_equals_one_pass_over_each_stream(tmp_path):
    """The periodic evaluation: scoring its streams window by window with the carried state
    == one unwindowed pass per stream. (The final one, over every character:
    tests/test_tasks.py.)"""
    config = tiny_config(**{"train.steps": 6})
    train.train(config, tmp_path)
    state, _ = restore_params(tmp_path)
    task = tasks.build(config)
    model, streams = task.model, task.data["valid"]
    windows = task.eval_windows["valid"]
    sums = jax.jit(lambda p, d: task.evaluate(p, d, "valid", windows))(state.params, task.data)
    loss_sum, correct = sums["loss"], sums["accuracy"]
    n = windows * config.train.bptt_len
    inputs, targets = jnp.asarray(streams[:, :n], jnp.int32), jnp.asarray(streams[:, 1 : n + 1])
    _, logits = model.apply(state.params, None, inputs)
    log_probs = jax.nn.log_softmax(logits)
    want = -np.take_along_axis(np.asarray(log_probs, np.float64), np.asarray(targets)[..., None],
                               -1).sum()
    np.testing.assert_allclose(float(loss_sum), want, rtol=1e-5)
    assert int(correct) == int((np.asarray(logits).argmax(-1) == np.asarray(targets)).sum())


def test_configs_load_from_any_directory_and_a_workdir_is_locked(tmp_path):
    ok = subprocess.run(
        [sys.executable, "-m", "rnnlab.main", f"--config={ROOT}/configs/quickstart.py:smoke",
         "--config.train.steps=2", "--config.data.max_chars=12000", f"--workdir={tmp_path / 'r'}"],
        cwd=tmp_path, capture_output=True, text=True, timeout=300,
    )
    assert ok.returncode == 0, ok.stderr[-2000:]
    from rnnlab import rundir

    first = rundir.RunDir(tmp_path / "locked", tiny_config())
    with pytest.raises(rundir.RunDirError, match="in use by another rnnlab process"):
        rundir.RunDir(tmp_path / "locked", tiny_config())
    first.close()
    rundir.RunDir(tmp_path / "locked", tiny_config()).close()


def test_train_runs_in_a_thread(tmp_path):
    import threading

    out = {}
    worker = threading.Thread(target=lambda: out.update(train.train(tiny_config(), tmp_path)))
    worker.start()
    worker.join()
    assert out["status"] == "finished"
