"""The sweep launcher and report on the inputs that used to go silently wrong: a sweep given as
a generator, nested overrides, two launchers on one sweep directory, a copied sweep directory,
an unknown --metric, a sweep file that raises, a bucket without gcsfs, CSV cells with commas.
Nothing here trains: the launchers are stopped before any trial starts."""

from __future__ import annotations

import csv
import fcntl
import io
import json
import os
import pathlib
import shutil
import signal
import subprocess
import sys
import time

import pytest

from launch import report, tables, trials as trials_lib
from launch import results as results_lib
from rnnlab import layout
from test_report import make_sweep, write_trial

ROOT = pathlib.Path(__file__).resolve().parents[1]
SMOKE = "configs/quickstart.py:smoke"


def sweep_file(tmp_path: pathlib.Path, body: str, name: str = "s.py") -> str:
    """A sweep file whose get_sweep's body is `body` (indented by the caller's lines)."""
    path = tmp_path / name
    path.write_text("from launch import dsl\n\n\ndef get_sweep(arg=None):\n" + body + "\n")
    return str(path)


def launch(*args: str, timeout: float = 120, python: list[str] | None = None):
    return subprocess.run([*(python or [sys.executable, "-m", "launch.sweep"]), *args],
                          cwd=ROOT, capture_output=True, text=True, timeout=timeout)


def one_error_line(proc) -> str:
    """The stderr of a command that refused its input: exit 2, one `error:` line."""
    assert proc.returncode == 2, (proc.returncode, proc.stdout, proc.stderr)
    lines = proc.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr
    return lines[0]


# ------------------------------------------------------------- 11. any iterable, never empty


def test_a_generator_sweep_is_read_once_and_recorded_in_full(tmp_path, monkeypatch):
    monkeypatch.chdir(ROOT)
    sweep = sweep_file(tmp_path, '    return ({"seed": s} for s in range(3))')
    out = tmp_path / "out"
    trials = trials_lib.plan(SMOKE, sweep, str(out))
    assert [t.overrides for t in trials] == [{"seed": 0}, {"seed": 1}, {"seed": 2}]
    assert len(json.loads((out / "sweep.json").read_text())["trials"]) == 3
    dry = launch(f"--config={SMOKE}", f"--sweep={sweep}", f"--workdir={tmp_path / 'dry'}",
                 "--dry_run")
    assert dry.returncode == 0 and dry.stdout.count("rnnlab.main") == 3, dry.stderr


@pytest.mark.parametrize("value, message", [
    ("[]", "returned no trials"), ("iter([])", "returned no trials"),
    ("(t for t in [])", "returned no trials"), ("None", "got a NoneType"),
    ('{"seed": 1}', "got a dict"), ('[{"seed": 1}, 3]', "trial 1 is not a dict"),
])
def test_an_empty_or_malformed_sweep_is_one_line_and_records_nothing(tmp_path, value, message):
    sweep = sweep_file(tmp_path, f"    return {value}")
    out = tmp_path / "out"
    line = one_error_line(launch(f"--config={SMOKE}", f"--sweep={sweep}", f"--workdir={out}"))
    assert message in line
    assert not out.exists()


def test_a_sweep_that_fails_the_check_is_not_recorded(tmp_path, monkeypatch):
    monkeypatch.chdir(ROOT)
    out = tmp_path / "out"
    bad = sweep_file(tmp_path, '    return [{"seed": 0}, {"train.steps": "ten"}]')
    with pytest.raises(ValueError, match="wrong type"):
        trials_lib.plan(SMOKE, bad, str(out))
    assert not (out / "sweep.json").exists()


def test_a_recorded_sweep_of_no_trials_does_not_block_the_corrected_one(tmp_path, monkeypatch):
    """What the old launcher recorded for a generator: 0 trials. It holds no sweep."""
    monkeypatch.chdir(ROOT)
    out = tmp_path / "out"
    out.mkdir()
    (out / "sweep.json").write_text(json.dumps({"config": SMOKE, "sweep": "s.py", "trials": []}))
    sweep = sweep_file(tmp_path, '    return [{"seed": 0}, {"seed": 1}]')
    assert len(trials_lib.plan(SMOKE, sweep, str(out))) == 2
    assert len(json.loads((out / "sweep.json").read_text())["trials"]) == 2


# ----------------------------------------------------------------- 12. nested override dicts


def test_nested_overrides_are_read_as_dotted_keys(tmp_path, monkeypatch):
    monkeypatch.chdir(ROOT)
    sweep = sweep_file(tmp_path, '    return [{"model": {"cell": "gru", "hidden_size": 16}, '
                                 '"optim": {"lr": 0.01}, "seed": 1}]')
    (trial,) = trials_lib.plan(SMOKE, sweep, str(tmp_path / "out"))
    assert trial.overrides == {"model.cell": "gru", "model.hidden_size": 16, "optim.lr": 0.01,
                               "seed": 1}
    assert trial.command[4:8] == ["--config.model.cell=gru", "--config.model.hidden_size=16",
                                  "--config.optim.lr=0.01", "--config.seed=1"]


@pytest.mark.parametrize("value, message", [
    ('{"model": {"cel": "gru"}}', "config has no key 'cel'"),
    ('{"model": {"cell": "gru"}, "model.cell": "lstm"}', "'model.cell' is set twice"),
    ('{"model": "gru"}', "wrong type"),
    ('{"train": {}, "model": {"cell": "gru"}, 1: 2}', "1 is not a config key"),
])
def test_a_bad_nested_override_is_refused_at_the_check(tmp_path, monkeypatch, value, message):
    monkeypatch.chdir(ROOT)
    sweep = sweep_file(tmp_path, f"    return [{value}]")
    with pytest.raises(ValueError, match=message):
        trials_lib.plan(SMOKE, sweep, str(tmp_path / "out"))
    assert not (tmp_path / "out").exists()


# ----------------------------------------------------------- 13. one launcher per sweep dir


def test_the_sweep_dir_lock_names_its_holder_and_dies_with_it(tmp_path):
    held = trials_lib.lock(str(tmp_path))
    with pytest.raises(trials_lib.SweepBusy, match=f"another launch.sweep \\(pid {os.getpid()}\\)"):
        trials_lib.lock(str(tmp_path))
    held.close()
    trials_lib.lock(str(tmp_path)).close()


def test_a_second_launcher_on_a_sweep_dir_exits_2_in_one_line(tmp_path, monkeypatch):
    """Launcher A waits for its one trial, which the test holds busy (so nothing trains);
    launcher B, started on the same sweep dir, is refused at once."""
    monkeypatch.chdir(ROOT)
    sweep = sweep_file(tmp_path, '    return [{"seed": 0}]')
    out = tmp_path / "out"
    (trial,) = trials_lib.plan(SMOKE, sweep, str(out), record=False)
    trial_dir = pathlib.Path(trial.workdir)
    trial_dir.mkdir(parents=True)
    busy = open(trial_dir / layout.LOCK_FILE, "a+")  # a trial another process trains
    fcntl.flock(busy, fcntl.LOCK_EX)
    args = [sys.executable, "-m", "launch.sweep", f"--config={SMOKE}", f"--sweep={sweep}",
            f"--workdir={out}"]
    a = subprocess.Popen(args, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                         text=True, start_new_session=True)
    try:
        deadline = time.time() + 60
        while not (out / "sweep.json").exists():
            assert a.poll() is None and time.time() < deadline, a.stderr and a.stderr.read()
            time.sleep(0.05)
        time.sleep(0.5)
        try:
            b = launch(f"--config={SMOKE}", f"--sweep={sweep}", f"--workdir={out}", timeout=60)
        except subprocess.TimeoutExpired:
            pytest.fail("the second launcher ran alongside the first")
        line = one_error_line(b)
        assert f"in use by another launch.sweep (pid {a.pid})" in line
        assert a.poll() is None  # the first one goes on
    finally:
        os.killpg(a.pid, signal.SIGTERM)
        a.wait(timeout=60)
        busy.close()
    assert not list((out / "trials").glob("*/metrics.jsonl"))


# --------------------------------------------------- 14. trials are read from the sweep dir


def _three_seeds(sweep_dir: pathlib.Path, workdir=lambda sweep_dir, i: f"trials/{i}") -> None:
    trials = [{"id": f"00{i}", "overrides": {"seed": i}} for i in range(3)]
    make_sweep(sweep_dir, trials)
    spec = json.loads((sweep_dir / "sweep.json").read_text())
    for t in spec["trials"]:
        t["workdir"] = workdir(sweep_dir, t["id"])
    (sweep_dir / "sweep.json").write_text(json.dumps(spec))
    for t in trials:
        write_trial(sweep_dir, t["id"], valid=[3.0, 2.0, 2.5])


def test_a_copy_missing_a_trial_never_reads_it_from_the_original(tmp_path):
    """sweep.json of the old launcher: absolute workdirs, into the original sweep dir."""
    original, copy = tmp_path / "original", tmp_path / "copy"
    _three_seeds(original, workdir=lambda d, i: str(d / "trials" / i))
    shutil.copytree(original, copy)
    shutil.rmtree(copy / "trials" / "001")
    results = results_lib.load_sweep(copy)
    assert all(r.workdir.is_relative_to(copy) for r in results)
    t = report.table(results, "valid/bpc")
    assert t.rows[0].best.n == 2
    assert any(n.startswith("missing: 1 of 3 trials: 001 (not started)") for n in t.notes)


def test_sweep_json_records_workdirs_relative_to_the_sweep_dir(tmp_path, monkeypatch):
    monkeypatch.chdir(ROOT)
    out = tmp_path / "out"
    trials_lib.plan(SMOKE, sweep_file(tmp_path, '    return [{"seed": 0}, {"seed": 1}]'),
                    str(out))
    spec = json.loads((out / "sweep.json").read_text())
    assert [t["workdir"] for t in spec["trials"]] == ["trials/000_seed=0", "trials/001_seed=1"]
    for t in spec["trials"]:
        write_trial(out, t["id"], valid=[2.0])
    moved = tmp_path / "moved"
    out.rename(moved)
    results = results_lib.load_sweep(moved)
    assert [r.workdir for r in results] == [moved / "trials" / t["id"] for t in spec["trials"]]
    assert report.table(results, "valid/bpc").rows[0].best.n == 2


@pytest.mark.parametrize("trial_id", ["../outside", "..", "a/b", ""])
def test_a_trial_id_that_leaves_the_sweep_dir_is_refused(tmp_path, trial_id):
    make_sweep(tmp_path / "sweep", [{"id": trial_id, "overrides": {}}])
    with pytest.raises(ValueError, match="is not a directory name"):
        results_lib.load_sweep(tmp_path / "sweep")


# --------------------------------------------------------------------- 15. unknown --metric


def test_an_unknown_metric_is_refused_and_nothing_is_written(tmp_path):
    _three_seeds(tmp_path)
    before = tmp_path / "report" / "table.md"
    before.parent.mkdir()
    before.write_text("the last good table\n")
    proc = subprocess.run([sys.executable, "-m", "launch.report", f"--sweep_dir={tmp_path}",
                           "--metric=valid/nosuch"], cwd=ROOT, capture_output=True, text=True,
                          timeout=120)
    line = one_error_line(proc)
    assert "--metric=valid/nosuch" in line and line.endswith(
        "metrics found: train/loss, train/steps_per_sec, valid/accuracy, valid/bpc"), line
    assert proc.stdout == ""
    assert [p.name for p in before.parent.iterdir()] == ["table.md"]
    assert before.read_text() == "the last good table\n"


def test_a_sweep_dir_without_sweep_json_is_one_line(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "launch.report", f"--sweep_dir={tmp_path}"],
                          cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert "sweep.json" in one_error_line(proc)
    assert not (tmp_path / "report").exists()


# ------------------------------------------------------- 16. errors in the user's own files


def _no_launcher_frames(stderr: str) -> None:
    for noise in ("launch/", "importlib", "absl", "runpy"):
        assert noise not in stderr, stderr


def test_a_sweep_file_that_raises_is_one_line_then_the_users_traceback(tmp_path):
    sweep = sweep_file(tmp_path, "    x = 1\n    return [{'seed': x / 0}]")
    proc = launch(f"--config={SMOKE}", f"--sweep={sweep}", f"--workdir={tmp_path / 'o'}")
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.splitlines()
    assert lines[0] == f"error: {sweep}:6: ZeroDivisionError: division by zero"
    assert f'File "{sweep}", line 6, in get_sweep' in proc.stderr
    assert lines[-1] == "ZeroDivisionError: division by zero"
    _no_launcher_frames(proc.stderr)
    assert not (tmp_path / "o").exists()


def test_a_sweep_file_with_a_syntax_error_names_its_line(tmp_path):
    sweep = sweep_file(tmp_path, "    return [{'seed': 1]")
    proc = launch(f"--config={SMOKE}", f"--sweep={sweep}", f"--workdir={tmp_path / 'o'}",
                  "--dry_run")
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.startswith(f"error: {sweep}:5: SyntaxError: closing parenthesis")
    assert "Traceback" not in proc.stderr
    _no_launcher_frames(proc.stderr)


def test_a_config_file_that_raises_and_a_dsl_error_are_named_too(tmp_path):
    config = tmp_path / "cfg.py"
    config.write_text("from configs import base\n\n\ndef get_config(arg=None):\n"
                      "    return base.get_config()[arg]\n")
    sweep = sweep_file(tmp_path, '    return [{"seed": 0}]')
    proc = launch(f"--config={config}:nosuch", f"--sweep={sweep}", f"--workdir={tmp_path / 'o'}",
                  "--dry_run")
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.startswith(f"error: {config}:5: KeyError:")
    _no_launcher_frames(proc.stderr)
    clash = sweep_file(tmp_path, '    return dsl.product(dsl.sweep("seed", [1]),\n'
                                 '                       dsl.fixed("seed", 2))', "clash.py")
    line = one_error_line(launch(f"--config={SMOKE}", f"--sweep={clash}",
                                 f"--workdir={tmp_path / 'o'}", "--dry_run"))
    assert line == f"error: {clash}:5: ValueError: two axes set the same key(s) ['seed']"


# ------------------------------------------------------------ 17. a bucket without gcsfs

WITHOUT_GCSFS = [sys.executable, "-c", (
    "import runpy, sys; sys.modules['gcsfs'] = sys.modules['tensorflow'] = None; "
    "sys.argv[0] = 'launch.sweep'; runpy.run_module('launch.sweep', run_name='__main__')")]


def test_a_tpu_vm_dry_run_on_a_bucket_needs_no_gcsfs(tmp_path):
    sweep = sweep_file(tmp_path, '    return [{"seed": 0}, {"seed": 1}]')
    proc = launch(f"--config={SMOKE}", f"--sweep={sweep}", "--workdir=gs://bucket/sweep",
                  "--executor=tpu_vm", "--dry_run", python=WITHOUT_GCSFS)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.count("python3 -m rnnlab.main") == 2
    assert "Traceback" not in proc.stderr


def test_a_real_run_on_a_bucket_without_gcsfs_names_the_extra(tmp_path):
    sweep = sweep_file(tmp_path, '    return [{"seed": 0}]')
    env_bin = tmp_path / "bin"
    env_bin.mkdir()
    (env_bin / "gcloud").write_text(f"#!/bin/sh\ntouch {tmp_path / 'gcloud_ran'}\n")
    (env_bin / "gcloud").chmod(0o755)
    for executor in ("tpu_vm", "local"):
        proc = subprocess.run(
            [*WITHOUT_GCSFS, f"--config={SMOKE}", f"--sweep={sweep}", "--workdir=gs://b/sweep",
             f"--executor={executor}", "--tpu_project=p", "--tpu_zone=z"], cwd=ROOT,
            capture_output=True, text=True, timeout=120,
            env=dict(os.environ, PATH=f"{env_bin}{os.pathsep}{os.environ['PATH']}"))
        line = one_error_line(proc)
        assert "gs://b/sweep" in line and "pip install 'rnnlab[gcs]'" in line
    assert not (tmp_path / "gcloud_ran").exists()
    assert not (ROOT / "gs:").exists()


# ------------------------------------------------------------------ CSV cells stay cells


def test_csv_cells_with_commas_quotes_and_newlines_parse_back(tmp_path):
    cells = ['a,"b"', "c\nd", "plain"]
    make_sweep(tmp_path, [{"id": f"00{i}", "overrides": {"model.cell": c}}
                          for i, c in enumerate(cells)])
    for i in range(3):
        write_trial(tmp_path, f"00{i}", valid=[1.0 + i])
    t = report.table(results_lib.load_sweep(tmp_path), "valid/bpc")
    for text in (tables.to_csv(t), tables.to_csv(tables.Pivot(
            "valid/bpc", "min", "model.cell", "model.cell", t.names, cells, cells,
            [[t.rows[i] if i == j else None for j in range(3)] for i in range(3)], (0, 0), []))):
        rows = list(csv.reader(io.StringIO(text)))
        assert len({len(r) for r in rows}) == 1 and len(rows) == 4, rows
        assert [r[0] for r in rows[1:]] == (["valid/bpc"] * 3 if rows[0][0] == "metric"
                                            else cells)
    rows = list(csv.DictReader(io.StringIO(tables.to_csv(t))))
    assert [r["cell"] for r in rows] == cells


# --------------------------------------- 18. a finished sweep rerun after its config changed

CONFIG_16 = '''from configs import base
from launch import dsl


def get_config(arg=None):
    c = base.get_config()
    c.data.name = "pydoc"
    base.smoke(c)
    c.data.max_chars = 12000
    c.train.steps = 6
    c.train.log_every = c.train.eval_every = c.train.ckpt_every = 3
    hidden_size = 16
    c.model.hidden_size = hidden_size
    return c


def get_sweep(arg=None):
    return dsl.sweep("seed", [0, 1])
'''


def _fake_results(trials, status: str = "finished") -> None:
    """Run directories as a run of each trial's config now leaves them (config.json as
    rnnlab.rundir writes it, a final checkpoint), without training."""
    base = trials_lib.load_config(trials[0].command[3].partition("=")[2])
    for trial in trials:
        run = pathlib.Path(trial.workdir)
        (run / "ckpt" / "6").mkdir(parents=True)
        config = trials_lib.overrides.apply(base, trial.overrides)
        (run / "config.json").write_text(config.to_json_best_effort())
        (run / "status.json").write_text(json.dumps({"status": status, "step": 6}))


@pytest.mark.parametrize("status", ["finished", "diverged"])
def test_a_rerun_after_the_config_file_changed_is_refused_not_skipped(tmp_path, status):
    config = tmp_path / "swe.py"
    config.write_text(CONFIG_16)
    out = tmp_path / "D"
    args = (f"--config={config}", f"--sweep={config}", f"--workdir={out}")
    trials = trials_lib.plan(str(config), str(config), str(out), python=sys.executable)
    _fake_results(trials, status)
    same = launch(*args)  # the same config: both trials are results, skipped
    assert same.returncode == 0 and same.stdout == f"2 trials: 2 {status}\n", same.stderr
    config.write_text(CONFIG_16.replace("hidden_size = 16", "hidden_size = 24"))
    sweep_json = (out / "sweep.json").read_text()
    outcomes = (out / "outcomes.json").read_bytes() if (out / "outcomes.json").exists() else None
    line = one_error_line(launch(*args))
    assert "000_seed=0, 001_seed=1 (differs in: model.hidden_size)" in line, line
    assert "use a new --workdir" in line
    assert (out / "sweep.json").read_text() == sweep_json
    assert ((out / "outcomes.json").read_bytes() if (out / "outcomes.json").exists()
            else None) == outcomes
    assert "model.hidden_size" in one_error_line(launch(*args, "--dry_run"))


def test_an_unfinished_trial_of_another_config_is_refused_before_anything_runs(tmp_path):
    """rnnlab.main would refuse it as the sweep goes (a failed trial); the launcher says it
    first. A key rnnlab lets a resume change (train.log_every) is no difference."""
    config = tmp_path / "swe.py"
    config.write_text(CONFIG_16)
    out = tmp_path / "D"
    trials = trials_lib.plan(str(config), str(config), str(out), python=sys.executable)
    _fake_results(trials[:1], "interrupted")
    config.write_text(CONFIG_16.replace("hidden_size = 16", "hidden_size = 24"))
    with pytest.raises(ValueError, match=r"1 trial\(s\) .*000_seed=0 \(differs in: "
                                         r"model.hidden_size\)"):
        trials_lib.plan(str(config), str(config), str(out), record=False)
    config.write_text(CONFIG_16.replace("c.train.steps = 6", "c.train.steps = 6\n"
                                        "    c.train.log_every = 2"))
    assert len(trials_lib.plan(str(config), str(config), str(out), record=False)) == 2


def test_a_file_rewritten_within_a_second_to_the_same_length_is_read_anew(tmp_path,
                                                                        monkeypatch):
    """A bytecode cache (.pyc) is trusted when its file's mtime, in whole seconds, and size
    match: the launcher must read the file's text, or this edit would go unseen."""
    monkeypatch.setattr(sys, "dont_write_bytecode", False)  # (as Python does by default)
    config = tmp_path / "swe.py"
    config.write_text(CONFIG_16)
    stat = config.stat()
    assert trials_lib.load_config(str(config)).model.hidden_size == 16
    config.write_text(CONFIG_16.replace("hidden_size = 16", "hidden_size = 24"))
    os.utime(config, ns=(stat.st_atime_ns, stat.st_mtime_ns))  # within the same second
    assert trials_lib.load_config(str(config)).model.hidden_size == 24


@pytest.mark.slow
def test_a_trained_sweep_rerun_after_its_config_changed_is_refused(tmp_path):
    """The probe's own steps, with real training: 2 trials of hidden 16, then 24."""
    config = tmp_path / "swe.py"
    config.write_text(CONFIG_16)
    out = tmp_path / "D"
    args = (f"--config={config}", f"--sweep={config}", f"--workdir={out}")
    first = launch(*args, timeout=600)
    assert first.stdout == "2 trials: 2 finished\n", first.stderr
    config.write_text(CONFIG_16.replace("hidden_size = 16", "hidden_size = 24"))
    line = one_error_line(launch(*args))
    assert "000_seed=0, 001_seed=1 (differs in: model.hidden_size)" in line, line


# ------------------------------------------------------------- 19. a trial listed twice


@pytest.mark.parametrize("body, repeats", [
    ('dsl.chain(dsl.sweep("seed", [0, 1]), dsl.sweep("seed", [1]))', "002_seed=1 repeats 001_seed=1"),
    ('[{"seed": 3, "model.cell": "gru"}, {"model": {"cell": "gru"}, "seed": 3}]',
     "001_cell=gru_seed=3 repeats 000_seed=3_cell=gru"),
    ('[{}, {"seed": 0}]', "001_seed=0 repeats 000"),  # seed 0 is the config's own
])
def test_a_sweep_listing_a_trial_twice_is_refused_in_one_line(tmp_path, body, repeats):
    """Two bitwise-identical runs would count as two seeds (n=3 for 2 seeds, a smaller std)."""
    sweep = sweep_file(tmp_path, f"    return {body}")
    out = tmp_path / "out"
    line = one_error_line(launch(f"--config={SMOKE}", f"--sweep={sweep}", f"--workdir={out}"))
    assert line.endswith(f"1 trial(s) listed twice (the same config): {repeats}; list each "
                         "trial once"), line
    assert not out.exists()
    assert one_error_line(launch(f"--config={SMOKE}", f"--sweep={sweep}", f"--workdir={out}",
                                 "--dry_run")) == line


# ------------------------------------------------------------------ 20. --out=<a file>


@pytest.mark.parametrize("out", ["file", "file/sub"])
def test_report_out_that_is_a_file_is_one_line(tmp_path, out):
    _three_seeds(tmp_path)
    (tmp_path / "file").write_text("not a folder\n")
    proc = subprocess.run([sys.executable, "-m", "launch.report", f"--sweep_dir={tmp_path}",
                           f"--out={tmp_path / out}"], cwd=ROOT, capture_output=True, text=True,
                          timeout=120)
    assert str(tmp_path / "file") in one_error_line(proc)
    assert proc.stdout == "" and (tmp_path / "file").read_text() == "not a folder\n"


# ------------------------------------------------------------ 21. a bad flag: one line, 2


@pytest.mark.parametrize("module, args, says", [
    ("launch.sweep", ["--executor=slurm"], "unknown --executor=slurm; known: local, vmap, "
                                           "tpu_vm (or package.module:function"),
    ("launch.sweep", ["--executor=nomodule:run"], "--executor=nomodule:run: cannot import"),
    ("launch.sweep", ["--executr=vmap"], "Unknown command line flag 'executr'"),
    ("launch.sweep", ["--max_parallel=two"], "flag --max_parallel=two"),
    ("launch.sweep", ["stray"], "unexpected arguments: ['stray']"),
    ("launch.report", ["--metirc=x"], "Unknown command line flag 'metirc'. Did you mean: metric"),
    ("launch.report", ["--formats=md,pdf"], "--formats: unknown ['pdf']"),
    ("launch.report", ["--mode=lowest"], "flag --mode=lowest: value should be one of"),
])
def test_a_bad_flag_is_one_error_line_and_exit_2(tmp_path, module, args, says):
    _three_seeds(tmp_path / "sweep")
    common = ([f"--config={SMOKE}", f"--workdir={tmp_path / 'out'}"] if module == "launch.sweep"
              else [f"--sweep_dir={tmp_path / 'sweep'}"])
    proc = subprocess.run([sys.executable, "-m", module, *common, *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)
    assert says in one_error_line(proc)
    assert not (tmp_path / "out").exists() and not (tmp_path / "sweep" / "report").exists()


# ------------------------------------------- 22. a stopped sweep says so, and exits non-zero


@pytest.mark.parametrize("signum, when", [(signal.SIGTERM, "logs"), (signal.SIGINT, "logs"),
                                          (signal.SIGTERM, "metrics.jsonl")])
def test_a_signal_mid_sweep_counts_interrupted_trials_and_exits_128_plus_it(
        tmp_path, signum, when):
    """The launcher stopped while its first trial starts (or trains): that trial saves and
    stops, the others never start. None of them is done, and the exit code says so."""
    sweep = sweep_file(tmp_path, '    return dsl.sweep("seed", [0, 1, 2])')
    out = tmp_path / "out"
    first = out / ("logs/000_seed=0.log" if when == "logs" else "trials/000_seed=0/" + when)
    # As from a shell: SIGINT at its default, whatever this pytest worker has (a process that
    # starts with SIGINT ignored keeps ignoring it, as nohup means). Set here around the start
    # rather than in a preexec_fn, which would run Python in a fork of this multithreaded (JAX)
    # process. Once, in a loaded run of the whole suite with the preexec_fn, the launcher ran on
    # through this SIGINT as if it had started with it ignored; the cause was not found.
    previous = signal.signal(signal.SIGINT, signal.SIG_DFL)
    try:
        a = subprocess.Popen([sys.executable, "-m", "launch.sweep", f"--config={SMOKE}",
                              f"--sweep={sweep}", f"--workdir={out}"], cwd=ROOT, text=True,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             start_new_session=True)
    finally:
        signal.signal(signal.SIGINT, previous)
    try:
        deadline = time.time() + 120
        while not first.exists():
            assert a.poll() is None and time.time() < deadline, a.stderr.read()
            time.sleep(0.05)
        time.sleep(0.3)
        os.kill(a.pid, signum)
        stdout, stderr = a.communicate(timeout=120)
    finally:
        if a.poll() is None:
            os.killpg(a.pid, signal.SIGKILL)
    assert a.returncode == 128 + signum, stderr
    assert stdout == "3 trials: 1 interrupted, 2 not started\n", stderr
    assert ("3 interrupted: 000_seed=0 (interrupted), 001_seed=1 (not started), 002_seed=2 "
            "(not started); rerun the sweep to resume them") in stderr.splitlines()
    shown = [line for line in stderr.splitlines() if "trials done" in line]
    assert shown[-1].startswith("0/3 trials done (0 failed), 1 interrupted, 0 running"), shown
    recorded = json.loads((out / "outcomes.json").read_text())
    assert recorded["000_seed=0"]["outcome"] == "interrupted" and len(recorded) == 1


def test_the_progress_line_does_not_count_interrupted_trials_as_done():
    from launch import progress

    line = progress.Progress(4, stream=io.StringIO()).line(
        {"a": "finished", "b": "interrupted", "c": "failed", "d": "interrupted"}, [])
    assert line.startswith("2/4 trials done (1 failed), 2 interrupted, 0 running"), line


# ------------------------------------- 23. every trial diverged before its first evaluation


def _diverged_early(sweep_dir: pathlib.Path, train_lines: bool) -> None:
    """Two seeds that diverged at step 3, before the first evaluation (eval_every 10)."""
    make_sweep(sweep_dir, [{"id": f"00{i}", "overrides": {"seed": i}} for i in range(2)])
    for i in range(2):
        run = sweep_dir / "trials" / f"00{i}"
        run.mkdir(parents=True)
        lines = [{"step": s, "split": "train", "loss": v, "bpc": v / 0.69, "steps_per_sec": 9.0}
                 for s, v in ((1, 4.2), (2, 3.9))] if train_lines else []
        (run / "metrics.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines))
        (run / "status.json").write_text(json.dumps({"status": "diverged", "step": 3,
                                                     "num_params": 9113}))


def test_report_on_a_sweep_that_all_diverged_before_evaluating_writes_the_table(tmp_path):
    _diverged_early(tmp_path, train_lines=True)
    proc = subprocess.run([sys.executable, "-m", "launch.report", f"--sweep_dir={tmp_path}",
                           "--metric=valid/bpc"], cwd=ROOT, capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr
    table = (tmp_path / "report" / "table.md").read_text()
    assert proc.stdout == table + "\n"
    assert "| 2/2 |" in table and "every trial diverged before it logged one" in table, table
    rows = list(csv.DictReader(io.StringIO((tmp_path / "report" / "table.csv").read_text())))
    assert len(rows) == 1, rows


def test_report_on_a_sweep_that_diverged_before_logging_anything_names_them(tmp_path):
    _diverged_early(tmp_path, train_lines=False)
    for metric in ("valid/bpc", "valid/bcp"):
        proc = subprocess.run([sys.executable, "-m", "launch.report", f"--sweep_dir={tmp_path}",
                               f"--metric={metric}"], cwd=ROOT, capture_output=True, text=True,
                              timeout=120)
        assert one_error_line(proc).endswith(
            f"--metric={metric}: every trial of {tmp_path} diverged before it logged it "
            "(000, 001); metrics found: none")
    assert not (tmp_path / "report").exists()
