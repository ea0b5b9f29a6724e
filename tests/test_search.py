"""Adaptive search (launch.search): the space, seeded proposals, pruning, failures, the study as
the only state, and the report's importances; checked against Optuna run by hand, a planted
objective and uninterrupted runs."""

import json
import math
import os
import pathlib
import shutil
import signal
import subprocess
import sys
import textwrap
import time

import optuna
import pytest

from launch import search as search_lib, search_report, trials as trials_lib
from rnnlab.run import layout
from test_train import KILL_RUN, ROOT, assert_same_run, straight_run

optuna.logging.set_verbosity(optuna.logging.WARNING)
CONFIG = "configs/quickstart.py:smoke"

SPACE = '''
def suggest(trial):
    cell = trial.suggest_categorical("model.cell", ["lstm", "gru"])
    return {"model.cell": cell,
            "optim.lr": trial.suggest_float("optim.lr", 1e-4, 3e-2, log=True),
            **({"model.variant": trial.suggest_categorical("model.variant", ["vanilla", "cifg"])}
               if cell == "lstm" else {})}
'''


def write(tmp_path, text, name="space.py"):
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return str(path)


def launch(sweep_dir, space, *flags, wait=True, log=None):
    cmd = [sys.executable, "-m", "launch.sweep", f"--config={CONFIG}", f"--sweep={space}",
           f"--workdir={sweep_dir}", *flags]
    env = dict(os.environ, JAX_PLATFORMS="cpu")
    if not wait:
        return subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
                                text=True)
    return subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)


def study_of(sweep_dir):
    return optuna.load_study(study_name=pathlib.Path(sweep_dir).name,
                             storage=search_lib.storage_url(sweep_dir))


def test_the_space_gives_its_distributions_and_conditionals(tmp_path):
    space = search_lib.load_space(write(tmp_path, SPACE))
    base = trials_lib.load_config(CONFIG)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    seen = []
    for _ in range(30):
        trial = study.ask()
        seen.append(search_lib.propose(space, "space.py", trial, base))
        study.tell(trial, 0.0)
    for overrides, frozen in zip(seen, study.trials):
        assert ("model.variant" in overrides) == (overrides["model.cell"] == "lstm")
        assert set(frozen.params) == set(overrides)  # each value was suggested
        assert 1e-4 <= overrides["optim.lr"] <= 3e-2
        dist = frozen.distributions["optim.lr"]
        assert (dist.low, dist.high, dist.log) == (1e-4, 3e-2, True)
    assert {o["model.cell"] for o in seen} == {"lstm", "gru"}
    assert {o.get("model.variant") for o in seen} == {None, "vanilla", "cifg"}
    # The same space run by Optuna on fixed values gives the same overrides.
    fixed = optuna.trial.FixedTrial({"model.cell": "gru", "optim.lr": 0.01})
    assert search_lib.propose(space, "space.py", fixed, base) == {"model.cell": "gru",
                                                                  "optim.lr": 0.01}


@pytest.mark.parametrize("body, says", [
    ("return {'model.no_such_key': 1}", "no_such_key"),
    ("return {'model': 3}", "override 'model'"),
    ("return [1]", "must return a dict"),
    ("return {'optim.lr': trial.suggest_float('optim.lr', 1, 0)}", "space.py:3"),
])
def test_a_bad_space_is_refused_naming_it(tmp_path, body, says):
    path = write(tmp_path, f"\ndef suggest(trial):\n    {body}\n")
    trial = optuna.create_study().ask()
    with pytest.raises(ValueError, match=says):
        search_lib.propose(search_lib.load_space(path), path, trial,
                           trials_lib.load_config(CONFIG))


def _objective(params):
    """A planted objective: only the learning rate matters."""
    return (math.log10(params["optim.lr"]) + 2.5) ** 2


@pytest.mark.parametrize("name", search_lib.SAMPLERS)
def test_a_seeded_search_proposes_the_same_distinct_trials_also_when_stopped_and_rerun(
        tmp_path, name):
    """The launcher's own asking (Search.ask) over a space with a conditional, with planted
    failures among the results: distinct proposals, the same after a stop and a rerun (each
    launcher its own process: a new Search on the same study), others for another seed."""
    space, base = write(tmp_path, SPACE), trials_lib.load_config(CONFIG)

    def run(sweep_dir, seed, n):
        opts = search_lib.Options(CONFIG, space, str(sweep_dir), name, 14, seed=seed)
        search = search_lib.Search(opts, base, "valid/bpc", "min")
        for _ in range(n):
            r = search.ask()
            if r.trial.number % 4 == 1:  # a failed or diverged trial
                search.study.tell(r.trial.number, state=optuna.trial.TrialState.FAIL)
            else:
                search.study.tell(r.trial.number, _objective(r.run.overrides))
        return [t.params for t in search.study.trials]

    whole = run(tmp_path / "a", 3, 14)
    run(tmp_path / "b", 3, 9)  # a launcher that stopped after 9 trials,
    resumed = run(tmp_path / "b", 3, 5)  # and the next one
    assert resumed == whole
    assert len({json.dumps(p, sort_keys=True) for p in whole}) == len(whole)  # no repeats
    assert run(tmp_path / "c", 4, 14) != whole


def test_fanova_finds_the_learning_rate_and_not_a_planted_irrelevant_one():
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    for _ in range(60):
        trial = study.ask()
        lr = trial.suggest_float("optim.lr", 1e-4, 1e-1, log=True)
        trial.suggest_float("irrelevant", 0, 1)
        trial.suggest_categorical("also_irrelevant", ["a", "b"])
        study.tell(trial, _objective({"optim.lr": lr}))
    got = search_report.importance(study)
    assert got["optim.lr"] > 0.9
    assert got["irrelevant"] < 0.05 and got["also_irrelevant"] < 0.05
    assert abs(sum(got.values()) - 1) < 1e-6


def test_bad_flags_are_one_line_and_exit_2(tmp_path):
    grid = write(tmp_path, "def get_sweep(arg=None):\n    return [{'seed': 1}]\n", "grid.py")
    space = write(tmp_path, SPACE)
    for flags, says in [
        ((f"--sweep={grid}", "--search=tpe"), "defines no suggest(trial)"),
        (("--search=bogus",), "unknown --search=bogus"),
        (("--search=tpe", "--pruner=hyperband"), "unknown --pruner=hyperband"),
        (("--search=tpe", "--trials=0"), "--trials must be >= 1"),
        (("--search=tpe", "--dry_run"), "no commands to print ahead"),
        (("--search=tpe", "--executor=vmap", "--pruner=asha"), "needs --executor=local"),
        (("--search=tpe", "--metric=bpc", "--mode=min"), "a metric is split/name"),
        (("--search=tpe", "--startup_trials=0"), "--startup_trials must be >= 1"),
        (("--search=tpe", "--storage=notaurl"), "--storage: cannot open the study's database"),
        (("--search=tpe", "--storage=postgresql+nosuchdriver://u:p@h/db"), "--storage"),
    ]:
        got = launch(tmp_path / "s", space, *flags)
        assert got.returncode == 2, (flags, got.stderr)
        lines = got.stderr.strip().splitlines()
        assert len(lines) == 1 and says in lines[0], (flags, got.stderr)
    assert not (tmp_path / "s" / "study.db").exists()
    # A study is tied to its search: another sampler or seed in its sweep dir is refused.
    opts = search_lib.Options(CONFIG, space, str(tmp_path / "s"), "tpe", 3)
    search_lib.record(opts, search_lib.open_study(opts, "valid/bpc", "min"), "valid/bpc", "min")
    got = launch(tmp_path / "s", space, "--search=tpe", "--search_seed=1")
    assert got.returncode == 2 and "another seed (0 -> 1)" in got.stderr, got.stderr
    got = launch(tmp_path / "s", space, "--search=tpe", "--study=other")
    assert got.returncode == 2 and "holds the trials of study 's'" in got.stderr, got.stderr
    (tmp_path / "s" / "study.db").unlink()  # the only state, lost: the report says so
    got = subprocess.run([sys.executable, "-m", "launch.report", f"--sweep_dir={tmp_path}/s"],
                         cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert got.returncode == 2 and got.stderr.count("\n") == 1 and "is missing" in got.stderr


PLANTED = '''
def suggest(trial):
    plan = ["good", "bad", "fails", "diverges", "good"][trial.number]
    trial.set_user_attr("plan", plan)
    return {"good": {"optim.lr": 0.01},  # 30 steps (smoke); the bad one would run 3000
            "bad": {"optim.lr": 1e-9, "train.steps": 3000},  # a learning rate that cannot learn
            "fails": {"model.cell": "no_such_cell"},
            "diverges": {"model.cell": "irnn", "optim.name": "sgd", "optim.clip_norm": 0.0,
                         "optim.lr": 1e3, "model.init_scale": 3.0}}[plan]
'''


@pytest.mark.slow
def test_asha_prunes_a_planted_bad_trial_at_the_first_rung_and_a_failure_does_not_stop_it(
        tmp_path):
    sweep_dir = tmp_path / "search"
    got = launch(sweep_dir, write(tmp_path, PLANTED), "--search=random", "--trials=5",
                 "--pruner=asha")
    assert got.returncode == 1, got.stderr  # a trial failed: named, and the search went on
    assert "failed: 002 (logs" in got.stderr  # (the diverged one is a result, not a failure)
    study = study_of(sweep_dir)
    states = [t.state.name for t in study.trials]
    assert states == ["COMPLETE", "PRUNED", "FAIL", "FAIL", "COMPLETE"]
    assert [t.user_attrs.get("outcome") for t in study.trials[2:4]] == ["failed", "diverged"]
    bad = study.trials[1]
    assert bad.user_attrs["pruned_at"] == 10 == max(bad.intermediate_values)  # the first rung
    status = layout.read_status(sweep_dir / "trials" / "001")
    assert status["status"] == "interrupted" and status["step"] < 1000  # saved and stopped
    assert study.trials[0].value == study.trials[4].value  # the same good run, not pruned
    outcomes = json.loads((sweep_dir / "outcomes.json").read_text())
    assert outcomes["001"] == {"outcome": "pruned", "returncode": 0, "step": 10}
    assert outcomes["002"]["outcome"] == "failed" and outcomes["003"]["outcome"] == "diverged"
    report = subprocess.run([sys.executable, "-m", "launch.report", f"--sweep_dir={sweep_dir}"],
                            cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert report.returncode == 0, report.stderr
    assert "001 (pruned)" in report.stdout and "pruned: 001 (step 10)" in report.stdout
    assert "failed (told to the sampler as failures): 002 (failed)" in report.stdout
    assert {"search.md", "search_progress.png", "table.md"} <= set(
        os.listdir(sweep_dir / "report"))


@pytest.mark.slow
def test_a_killed_launcher_reruns_to_the_same_study_and_resumes_bitwise(
        tmp_path, tmp_path_factory):
    """kill -9 the launcher mid-trial; the rerun resumes that trial (bitwise the run it would
    have been), proposes nothing twice; then the study is the only state."""
    overrides = dict(f.removeprefix("--config.").split("=") for f in KILL_RUN)
    space = write(tmp_path, f'''
        def suggest(trial):
            trial.suggest_float("x", 0.0, 1.0)  # a parameter for TPE; no config key
            return {{**{ {k: int(v) for k, v in overrides.items()} !r}, "seed": trial.number}}
        ''')
    sweep_dir = tmp_path / "search"
    flags = ("--search=tpe", "--trials=2")
    with open(tmp_path / "launcher.log", "w") as log:
        proc = launch(sweep_dir, space, *flags, wait=False, log=log)
        run = sweep_dir / "trials" / "000"
        deadline = time.time() + 240
        while not (any(m["step"] >= 40 for m in layout.read_metrics(run))
                   and layout.checkpoint_steps(run)):
            assert proc.poll() is None and time.time() < deadline, (
                tmp_path / "launcher.log").read_text()
            time.sleep(0.05)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    while layout.lock_holder(run) is not None:  # the trial got SIGTERM: it saves and stops
        time.sleep(0.1)
    assert layout.read_status(run)["status"] == "interrupted"
    assert [t.state.name for t in study_of(sweep_dir).trials] == ["RUNNING"]
    rerun = launch(sweep_dir, space, *flags)
    assert rerun.returncode == 0, rerun.stderr
    study = study_of(sweep_dir)
    assert [(t.number, t.state.name) for t in study.trials] == [(0, "COMPLETE"), (1, "COMPLETE")]
    assert sorted(os.listdir(sweep_dir / "trials")) == ["000", "001"]
    assert "resuming" in (sweep_dir / "logs" / "000.log").read_text()
    assert_same_run(straight_run(tmp_path_factory), run)
    # The study is the only state: without the launcher's other files, a rerun trains nothing
    # and writes them again.
    for name in ("sweep.json", "outcomes.json", "logs"):
        shutil.rmtree(sweep_dir / name) if name == "logs" else (sweep_dir / name).unlink()
    again = launch(sweep_dir, space, *flags)
    assert again.returncode == 0, again.stderr
    assert "start " not in again.stderr and "2 trials in study search: 2 complete" in again.stdout
    spec = json.loads((sweep_dir / "sweep.json").read_text())
    assert [t["id"] for t in spec["trials"]] == ["000", "001"]
    assert json.loads((sweep_dir / "outcomes.json").read_text())["000"]["outcome"] == "finished"


@pytest.mark.slow
def test_the_vmap_executor_runs_the_search_in_rounds_of_one_vmapped_group(tmp_path):
    space = write(tmp_path, '''
        def suggest(trial):
            return {"optim.lr": trial.suggest_float("optim.lr", 1e-3, 3e-2, log=True)}
        ''')
    sweep_dir = tmp_path / "search"
    got = launch(sweep_dir, space, "--search=random", "--trials=3", "--max_parallel=2",
                 "--executor=vmap")
    assert got.returncode == 0, got.stderr
    assert got.stderr.count("start vmap:") == 2  # rounds of 2 and 1
    for trial in study_of(sweep_dir).trials:  # the value told is the trial's own best
        lines = layout.read_metrics(sweep_dir / "trials" / search_lib.trial_id(trial.number))
        assert trial.value == min(m["bpc"] for m in lines if m["split"] == "valid")
        assert trial.params["optim.lr"] == json.loads(
            (sweep_dir / "trials" / search_lib.trial_id(trial.number) / "config.json")
            .read_text())["optim"]["lr"]


def test_the_experiments_space_proposes_valid_configs(monkeypatch):
    from rnnlab import overrides, validation

    monkeypatch.chdir(ROOT)
    spec = "experiments/search_vs_grid/config.py"
    base = trials_lib.load_config(spec)
    space = search_lib.load_space(spec)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    for _ in range(12):
        trial = study.ask()
        validation.check_config(overrides.apply(base, search_lib.propose(space, spec, trial, base)))
        study.tell(trial, 0.0)
    assert {t.params["model.cell"] for t in study.trials} == {"lstm", "gru"}
