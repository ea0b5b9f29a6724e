"""The sweep DSL, trial planning, and the local and vmapped executors end to end."""

import json
import os
import pathlib
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from launch import dsl, trials as trials_lib
from rnnlab import layout
from test_train import KILL_RUN

ROOT = pathlib.Path(__file__).resolve().parents[1]


def test_product_zip_chain_fixed():
    cells = dsl.sweep("model.cell", ["elman", "lstm"])
    lengths = dsl.sweep("train.bptt_len", [10, 20, 40])
    assert dsl.product(cells, lengths, dsl.fixed("seed", 3)) == [
        {"model.cell": c, "train.bptt_len": t, "seed": 3} for c in ["elman", "lstm"]
        for t in [10, 20, 40]
    ]
    assert dsl.zip(dsl.sweep("optim.lr", [0.1, 0.2]), dsl.sweep("seed", [0, 1])) == [
        {"optim.lr": 0.1, "seed": 0}, {"optim.lr": 0.2, "seed": 1}]
    assert dsl.chain(cells, dsl.fixed("model.cell", "gru")) == [
        {"model.cell": "elman"}, {"model.cell": "lstm"}, {"model.cell": "gru"}]
    with pytest.raises(ValueError, match="one length"):
        dsl.zip(cells, lengths)
    with pytest.raises(ValueError, match="same key"):
        dsl.product(cells, dsl.fixed("model.cell", "gru"))
    with pytest.raises(ValueError, match="at least one value"):
        dsl.sweep("seed", [])


def test_random_search_is_seeded_and_in_range():
    space = {"optim.lr": dsl.loguniform(1e-4, 1e-1), "model.dropout": dsl.uniform(0.0, 0.5),
             "model.cell": dsl.choice(["lstm", "gru"]), "model.num_layers": dsl.randint(1, 3)}
    a = dsl.random(200, seed=7, **space)
    assert a == dsl.random(200, seed=7, **dict(reversed(list(space.items()))))
    assert a != dsl.random(200, seed=8, **space)
    lrs = np.array([t["optim.lr"] for t in a])
    assert lrs.min() >= 1e-4 and lrs.max() <= 1e-1
    # log-uniform: about a third of the draws in each decade
    decades = np.histogram(np.log10(lrs), bins=[-4, -3, -2, -1])[0]
    assert all(40 <= n <= 95 for n in decades), decades
    assert {t["model.cell"] for t in a} == {"lstm", "gru"}
    assert {t["model.num_layers"] for t in a} == {1, 2, 3}
    assert all(0.0 <= t["model.dropout"] <= 0.5 for t in a)


def write_sweep(tmp_path, body):
    path = tmp_path / "sweep.py"
    path.write_text("from launch import dsl\n\n\ndef get_sweep(arg=None):\n    return " + body + "\n")
    return str(path)


SMOKE = "configs/quickstart.py:smoke"


def test_plan_records_reproducible_commands(tmp_path, monkeypatch):
    monkeypatch.chdir(ROOT)
    sweep = write_sweep(tmp_path, 'dsl.product(dsl.sweep("model.cell", ["gru"]), '
                                  'dsl.sweep("optim.lr", [0.001, 1e-05]), dsl.fixed("train.carry_state", False))')
    out = str(tmp_path / "sweep_dir")
    trials = trials_lib.plan(SMOKE, sweep, out)
    # (named by what differs between them: the cell and carry_state are the sweep's)
    assert [t.id for t in trials] == ["000_lr=0.001", "001_lr=1e-05"]
    assert trials[1].command == [
        "python", "-m", "rnnlab.main", f"--config={SMOKE}", "--config.model.cell=gru",
        "--config.optim.lr=1e-05", "--config.train.carry_state=False",
        f"--workdir={out}/trials/{trials[1].id}"]
    record = json.loads((tmp_path / "sweep_dir" / "sweep.json").read_text())
    assert record["trials"][0]["overrides"] == {"model.cell": "gru", "optim.lr": 0.001,
                                                "train.carry_state": False}
    # A sweep recorded under the names of before (every key) keeps them: its trials are found.
    old_ids = ["000_cell=gru_lr=0.001_carry_state=False", "001_cell=gru_lr=1e-05_carry_state=False"]
    for trial, old_id in zip(record["trials"], old_ids):
        trial["id"], trial["workdir"] = old_id, f"trials/{old_id}"
    (tmp_path / "sweep_dir" / "sweep.json").write_text(json.dumps(record))
    assert [t.id for t in trials_lib.plan(SMOKE, sweep, out)] == old_ids
    other = write_sweep(tmp_path, 'dsl.sweep("seed", [1, 2])')
    with pytest.raises(ValueError, match="holds another sweep"):
        trials_lib.plan(SMOKE, other, out)
    for bad, message in [('dsl.sweep("model.cel", ["gru"])', "config has no key 'cel'"),
                         ('dsl.sweep("train.steps", ["ten"])', "wrong type")]:
        with pytest.raises(ValueError, match=message):
            trials_lib.plan(SMOKE, write_sweep(tmp_path, bad), str(tmp_path / "x"))


def launch(*args, **kwargs):
    cmd = [sys.executable, "-m", "launch.sweep", f"--config={SMOKE}", *args]
    return subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600, **kwargs)


# The learning rate is a value of the compiled program, not a constant in it: the four trials
# are two programs (one a cell), and the lstm's is that of the vmap test's trials run alone.
# The cell varies fastest: the first two trials, run at once, compile the two programs and
# the next two load them.
SMALL = ('dsl.fixed("train.steps", 12), dsl.fixed("data.max_chars", 12000), '
         'dsl.fixed("model.hidden_size", 16)')
TINY = ('dsl.product(dsl.sweep("optim.lr", [0.003, 0.01]), dsl.sweep("model.cell", ["gru", "lstm"]), '
        + SMALL + ')')


@pytest.mark.slow
def test_local_sweep_2x2_runs_and_the_report_prints_four_rows(tmp_path):
    sweep = write_sweep(tmp_path, TINY)
    out = tmp_path / "sweep_dir"
    done = launch(f"--sweep={sweep}", f"--workdir={out}", "--max_parallel=2")
    assert done.returncode == 0, done.stderr[-3000:]
    assert "4 trials: 4 finished" in done.stdout
    assert "4/4 trials done (0 failed), 0 running" in done.stderr  # the progress, at the end
    report = subprocess.run([sys.executable, "-m", "launch.report", f"--sweep_dir={out}",
                             "--metric=valid/bpc", "--nofigures"], cwd=ROOT,
                            capture_output=True, text=True, timeout=300)
    assert report.returncode == 0, report.stderr[-3000:]
    table = report.stdout.split("\n\n")[0].splitlines()
    header, *rows = [line for line in table if line.startswith("|") and "---" not in line]
    assert len(rows) == 4, report.stdout
    cell = [c.strip() for c in header.split("|")].index("cell")
    assert {r.split("|")[cell].strip() for r in rows} == {"gru", "lstm"}
    # rerunning the finished sweep runs nothing
    again = launch(f"--sweep={sweep}", f"--workdir={out}")
    assert again.returncode == 0 and "4 trials: 4 finished" in again.stdout


@pytest.mark.slow
def test_killed_sweep_reruns_only_the_missing_trials(tmp_path):
    # Three trials, one at the kill in each state (finished, interrupted, not started), that
    # differ only in their seed: one program, the one of test_train's KILL_RUN (150 steps,
    # checkpoints every 17), compiled once for the whole suite.
    fixed = [arg.removeprefix("--config.").split("=") for arg in KILL_RUN]
    sweep = write_sweep(tmp_path, 'dsl.product(dsl.sweep("seed", [0, 1, 2]), ' + ", ".join(
        f'dsl.fixed("{key}", {value})' for key, value in fixed) + ")")
    out = tmp_path / "sweep_dir"
    cmd = [sys.executable, "-m", "launch.sweep", f"--config={SMOKE}", f"--sweep={sweep}",
           f"--workdir={out}"]
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    deadline = time.time() + 300
    trial_dirs = lambda: sorted((out / "trials").glob("*")) if (out / "trials").exists() else []
    def past_a_checkpoint(d):  # one committed (orbax renames a step's temporary folder)
        return (d / "ckpt").is_dir() and any(p.name.isdigit() for p in (d / "ckpt").iterdir())

    while time.time() < deadline:  # one trial finished, the next one past a checkpoint
        status = {d: trials_lib.run_status(trials_lib.Trial(d.name, {}, str(d), []))
                  for d in trial_dirs()}
        running = [d for d, s in status.items() if s == "running"]
        if "finished" in status.values() and running and past_a_checkpoint(running[0]):
            break
        assert proc.poll() is None
        time.sleep(0.1)
    os.killpg(proc.pid, signal.SIGKILL)  # the launcher and its trial, as a lost terminal would
    proc.wait()
    finished = [d for d in trial_dirs()
                if trials_lib.run_status(trials_lib.Trial(d.name, {}, str(d), [])) == "finished"]
    stamps = {d: (d / "metrics.jsonl").read_text() for d in finished}
    again = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert again.returncode == 0, again.stderr[-3000:]
    assert "3 trials: 3 finished" in again.stdout
    assert f"{len(finished)} done, {3 - len(finished)} to run" in again.stderr
    for d, text in stamps.items():  # finished trials were not touched
        assert (d / "metrics.jsonl").read_text() == text
    logs = {p.name: p.read_text() for p in (out / "logs").glob("*.log")}
    resumed = [name for name, text in logs.items() if "resuming" in text]
    assert resumed, "the interrupted trial resumed from its checkpoint"


@pytest.mark.slow
def test_vmap_executor_matches_trials_run_alone(tmp_path):
    # Two trials that differ in both the seed and the learning rate (the values a group's
    # trials may differ in): the same vmapped program as four would be, at half the trials
    # to run alone.
    body = ('dsl.product(dsl.zip(dsl.sweep("seed", [0, 1]), dsl.sweep("optim.lr", [0.003, 0.01])), '
            + SMALL + ')')
    sweep = write_sweep(tmp_path, body)
    vmapped, alone = tmp_path / "vmapped", tmp_path / "alone"
    done = launch(f"--sweep={sweep}", f"--workdir={vmapped}", "--executor=vmap")
    assert done.returncode == 0, done.stderr[-3000:]
    assert "2 trials: 2 finished" in done.stdout
    log = (vmapped / "logs" / "vmap.log").read_text()
    assert "training 2 trial(s) as one program" in log
    done = launch(f"--sweep={sweep}", f"--workdir={alone}", "--max_parallel=2")
    assert done.returncode == 0, done.stderr[-3000:]
    for trial in json.loads((alone / "sweep.json").read_text())["trials"]:
        a = layout.read_metrics(vmapped / "trials" / trial["id"])
        b = layout.read_metrics(alone / "trials" / trial["id"])
        assert [(m["step"], m["split"]) for m in a] == [(m["step"], m["split"]) for m in b]
        group = json.loads((vmapped / "trials" / trial["id"] / layout.GROUP_FILE).read_text())
        assert group["command"].startswith("python -m launch.sweep ") and "--executor=vmap" in \
            group["command"] and len(group["trained_with"]) == 2
        for ma, mb in zip(a, b):
            for key in ("loss", "bpc", "accuracy", "lr"):
                if key in ma:
                    np.testing.assert_allclose(ma[key], mb[key], rtol=2e-4, err_msg=key)


@pytest.mark.parametrize("spec, trials, groups", [
    ("experiments/relu_unroll/config.py", 36, 12),
    ("experiments/relu_unroll/config.py:sgd", 24, 12),
    ("experiments/vanishing_gradients/config.py", 60, 20),
    ("experiments/vanishing_gradients/config.py:leaky", 15, 5),
    ("experiments/tbptt_many_to_one/config.py", 10, 5),
    ("experiments/elman_vs_jordan/config.py", 10, 5),
    ("experiments/greff_variants/config.py", 39, 13),
])
def test_every_experiment_plans_valid_trials_whose_seeds_train_together(
        spec, trials, groups, tmp_path, monkeypatch):
    from rnnlab import overrides, validation

    monkeypatch.chdir(ROOT)
    planned = trials_lib.plan(spec, spec, str(tmp_path / "s"))
    assert len(planned) == trials
    base = trials_lib.load_config(spec)
    configs = [overrides.apply(base, t.overrides) for t in planned]
    for config in configs:
        validation.check_config(config)
    assert len(validation.split_groups(configs)) == groups
    if spec == "experiments/relu_unroll/config.py":
        assert {(t.overrides["model.cell"], t.overrides["model.activation"])
                for t in planned} == {("elman", "tanh"), ("elman", "relu"), ("lstm", "tanh")}


def test_the_single_run_experiments_have_valid_configs(monkeypatch):
    from rnnlab import validation

    monkeypatch.chdir(ROOT)
    validation.check_config(trials_lib.load_config("experiments/interpretable_cells/config.py"))


def test_progress_shows_counts_each_trials_step_and_eta_and_the_sweeps(tmp_path):
    import collections
    import io
    import json as json_

    from launch import progress

    Trial = collections.namedtuple("Trial", "id workdir")
    run = tmp_path / "a"
    run.mkdir()
    (run / "config.json").write_text(json_.dumps({"train": {"steps": 100}}))

    def at_step(step):
        with open(run / "metrics.jsonl", "a") as f:
            f.write(json_.dumps({"step": step, "split": "train", "loss": 1.0}) + "\n")
            f.write(json_.dumps({"step": step, "split": "valid", "loss": 1.0}) + "\n")

    now, out = [0.0], io.StringIO()
    shown = progress.Progress(4, stream=out, every=30, clock=lambda: now[0])
    at_step(10)
    shown.update({"x": "finished"}, [Trial("a", run)], 1)  # first seen: step 10 at t = 0
    now[0] = 10.0
    at_step(20)
    shown.update({"x": "finished"}, [Trial("a", run)], 1)  # (not drawn: every 30 s)
    now[0] = 40.0
    at_step(50)
    shown.update({"x": "finished", "y": "diverged"}, [Trial("a", run)], 2)
    # trial: 40 steps in 40 s, 50 to go: 50 s. Sweep: 2 trials + 0.4 of one done here in 40 s,
    # 4 - 2 - 0.5 = 1.5 trials left: 1.5 * 40 / 2.4 = 25 s.
    assert out.getvalue().splitlines() == [
        "1/4 trials done (0 failed), 1 running | a: step 10/100, ETA ? | sweep ETA ?",
        "2/4 trials done (0 failed, 1 diverged), 1 running | a: step 50/100, ETA 0:00:50 | "
        "sweep ETA 0:00:25"]

    class Terminal(io.StringIO):
        def isatty(self):
            return True

    bar = progress.Progress(4, stream=Terminal(), clock=lambda: now[0])
    bar.update({"x": "finished"}, [], 1, force=True)
    assert bar.stream.getvalue().startswith("\r\033[K[#####...............] 1/4 trials done")
