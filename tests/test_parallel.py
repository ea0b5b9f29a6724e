"""Data parallelism: 8 simulated CPU devices and two gloo processes against one device.

Each run is a subprocess: the device count is fixed when jax starts. The reference is the
single-device program (this test process has one CPU device).
"""

import json
import os
import signal
import socket
import subprocess
import sys

import jax
import pytest

from rnnlab import checkpoint, layout, train
from test_group import assert_close_runs
from test_train import (KILL_RUN, ROOT, TINY, assert_same_run, kill_and_resume,
                        restore_params, run_main, session_folder, shared_run, straight_run,
                        tiny_config, wait_for_step)

# (added to the test-wide XLA_FLAGS of conftest.py)
EIGHT = {"XLA_FLAGS": f"{os.environ.get('XLA_FLAGS', '')} "
                      "--xla_force_host_platform_device_count=8"}


@pytest.mark.slow
def test_eight_devices_match_one_and_resume_bitwise_after_sigkill(tmp_path, tmp_path_factory):
    eight = tmp_path / "eight"
    done = run_main(eight, *KILL_RUN, env=EIGHT)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "1 streams on each of 8 devices" in done.stderr
    # Float rounding apart (the gradient is summed in another order), the one-device run.
    assert_close_runs(straight_run(tmp_path_factory), eight, rtol=1e-3)

    kill_and_resume(tmp_path / "killed", env=EIGHT)
    assert_same_run(eight, tmp_path / "killed")  # same device count: bitwise


SHARDING_CHECK = """
import jax, numpy as np
from rnnlab import optim, parallel, state as state_lib, steps, tasks
from test_train import tiny_config
config = tiny_config(**{"train.batch_size": 16})
task = tasks.build(config)
tx = optim.make_optimizer(config.optim, config.train.steps)
mesh = parallel.make_mesh()
state = state_lib.init_state(config, task.model, tx, task.metrics)
shardings = parallel.state_shardings(state, mesh, 0)
state = parallel.put(state, shardings)
data = parallel.put(task.data, {k: parallel.split(mesh, 0) for k in task.data})
step = jax.jit(steps.make_train_step(task, tx, lambda b: parallel.constrain_rows(b, mesh)),
               in_shardings=(shardings, {k: v.sharding for k, v in data.items()}),
               out_shardings=shardings)
hlo = step.lower(state, data).compile().as_text()
out = step(state, data)
h, c = out.carry[0]
print(json.dumps({"devices": jax.device_count(), "all_reduce": "all-reduce" in hlo,
                  "carry_shard": list(h.sharding.shard_shape(h.shape)),
                  "param_shard": list(out.params["readout"]["w"].addressable_shards[0].data.shape),
                  "param_shape": list(out.params["readout"]["w"].shape)}))
"""


def test_the_batch_and_carry_are_split_over_devices_and_gradients_all_reduced():
    env = dict(os.environ, JAX_PLATFORMS="cpu", PYTHONPATH=str(ROOT / "tests"), **EIGHT)
    out = subprocess.run([sys.executable, "-c", "import json\n" + SHARDING_CHECK], cwd=ROOT,
                         env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    found = json.loads(out.stdout.strip().splitlines()[-1])
    hidden = tiny_config().model.hidden_size
    assert found == {"devices": 8, "all_reduce": True, "carry_shard": [2, hidden],
                     "param_shard": found["param_shape"], "param_shape": found["param_shape"]}


def test_a_batch_that_does_not_split_over_the_devices_is_a_config_error(tmp_path):
    out = run_main(tmp_path / "run", "--config.train.batch_size=12", env=EIGHT)
    assert out.returncode == 2
    assert "train.batch_size=12 does not split over 8 devices" in out.stderr
    assert not (tmp_path / "run").exists()  # refused before anything is written


@pytest.mark.slow
def test_vmapped_trials_on_eight_devices_match_one_device(tmp_path):
    group = [{"seed": 0, "optim.lr": 1e-2}, {"seed": 1, "optim.lr": 3e-3}]
    trials = [{"overrides": o, "workdir": str(tmp_path / f"eight{i}")} for i, o in enumerate(group)]
    (tmp_path / "trials.json").write_text(json.dumps(trials))
    overrides = [f"--config.{k}={v}" for k, v in TINY.items()]
    cmd = [sys.executable, "-m", "rnnlab.main", "--config=configs/quickstart.py:smoke",
           f"--trials={tmp_path / 'trials.json'}", *overrides]
    out = subprocess.run(cmd, cwd=ROOT, env=dict(os.environ, JAX_PLATFORMS="cpu", **EIGHT),
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "2 trial(s) vmapped" in out.stderr
    configs = [tiny_config(**o) for o in group]
    train.train_group(configs, [tmp_path / f"one{i}" for i in range(2)])
    for i in range(2):
        assert_close_runs(tmp_path / f"one{i}", tmp_path / f"eight{i}", rtol=1e-4)


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_processes(workdirs, *overrides, logs=None, env=None):
    """`rnnlab.main --distributed` as len(workdirs) local processes (gloo) of 2 CPU devices
    each, process i in workdirs[i] and logging to logs[i] (default: next to its workdir)."""
    logs = logs or [f"{w}.p{i}.log" for i, w in enumerate(workdirs)]
    port = _free_port()
    env = dict(os.environ, JAX_PLATFORMS="cpu", **(env or {}),
               XLA_FLAGS=f"{os.environ.get('XLA_FLAGS', '')} "
                         "--xla_force_host_platform_device_count=2")
    procs = []
    for i, (workdir, log) in enumerate(zip(workdirs, logs)):
        cmd = [sys.executable, "-m", "rnnlab.main", "--config=configs/quickstart.py:smoke",
               f"--workdir={workdir}", "--distributed", f"--coordinator_address=127.0.0.1:{port}",
               f"--num_processes={len(workdirs)}", f"--process_id={i}", *overrides]
        procs.append(subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=open(log, "w"),
                                      stderr=subprocess.STDOUT))
    return list(zip(procs, logs))


def finish(procs_logs):
    """Waits; returns (exit code, log) per process."""
    return [(p.wait(timeout=300), open(log).read()) for p, log in procs_logs]


def run_processes(workdirs, *overrides, **kwargs):
    return finish(start_processes(workdirs, *overrides, **kwargs))


SHORT = ("--config.train.steps=40", "--config.train.ckpt_every=20", "--config.train.log_every=5",
         "--config.train.eval_every=20", "--config.data.max_chars=12000",
         "--config.model.hidden_size=16")


def one_device_run(tmp_path_factory):
    """One run of SHORT on one device, shared by the tests that compare with it (here and in
    test_storage): a test that only reads a finished run need not train its own."""
    return shared_run("one_device", tmp_path_factory, *SHORT)


def two_process_run(tmp_path_factory):
    """One uninterrupted run of SHORT by two processes, and the logs of its processes: what
    the two-process test checks, and what the SIGTERM test's rerun must equal bitwise."""
    def make(folder):
        results = run_processes([folder / "run", folder / "run"], *SHORT)
        for code, log in results:
            assert code == 0, log[-3000:]
        (folder / "results.json").write_text(json.dumps(results))

    folder = session_folder("two_processes", tmp_path_factory, make, *SHORT)
    return folder / "run", json.loads((folder / "results.json").read_text())


@pytest.mark.slow
def test_two_processes_match_one_device_and_process_zero_writes(tmp_path_factory):
    one = one_device_run(tmp_path_factory)
    two, results = two_process_run(tmp_path_factory)
    assert "process 1 of 2; 4 devices in all" in results[1][1]
    assert_close_runs(one, two, rtol=1e-4)
    # One set of files: no line twice, every checkpoint complete (no orbax temporaries).
    assert [(m["step"], m["split"]) for m in layout.read_metrics(two)] == [
        (m["step"], m["split"]) for m in layout.read_metrics(one)]
    assert (two / "samples.txt").read_text() == (one / "samples.txt").read_text()
    assert sorted(p.name for p in (two / "ckpt").iterdir()) == ["20", "40"]
    assert sorted(p.name for p in two.iterdir()) == sorted(p.name for p in one.iterdir())
    assert checkpoint.Checkpointer(two, 3).latest_step(best=True) == 40
    # Rerunning the finished run is a no-op for both processes.
    before = (two / "metrics.jsonl").read_text()
    again = run_processes([two, two], *SHORT)
    assert [code for code, _ in again] == [0, 0], again[0][1][-2000:]
    assert (two / "metrics.jsonl").read_text() == before
    state, _ = restore_params(two)
    assert int(state.step) == 40
    assert jax.device_count() == 1  # restored onto another device count


def test_a_workdir_the_processes_do_not_share_is_refused(tmp_path):
    # Process 1 writes elsewhere: what happens when each host has its own disk.
    results = run_processes([tmp_path / "host0", tmp_path / "host1"], *SHORT)
    for code, log in results:
        assert code == 2, log[-3000:]
        assert "is not the same directory on every process" in log
    assert not (tmp_path / "host0" / "metrics.jsonl").exists()


@pytest.mark.slow
def test_sigterm_to_one_process_stops_both_at_one_step_and_the_rerun_is_bitwise(
        tmp_path, tmp_path_factory):
    # SHORT: 40 steps (two processes on two cores train slowly; the signal comes at step 15),
    # checkpoints at 20 and 40. The uninterrupted run is the two-process test's.
    steps, short = 40, SHORT
    straight, _ = two_process_run(tmp_path_factory)
    run = tmp_path / "run"
    procs = start_processes([run, run], *short)
    wait_for_step(procs[0][0], run, 15)
    procs[1][0].send_signal(signal.SIGTERM)  # a preemption notice reaches one host first
    for code, log in finish(procs):
        assert code == 0, log[-3000:]
    status = json.loads((run / "status.json").read_text())
    assert status["status"] == "interrupted" and status["step"] < steps
    assert checkpoint.Checkpointer(run, 3).latest_step() == status["step"]
    for code, log in run_processes([run, run], *short):
        assert code == 0, log[-3000:]
    assert_same_run(straight, run, steps)


EVERY_TASK = """
import json, sys
from rnnlab import train
from test_tasks import task_config
out = {}
for name, workdir in zip(sys.argv[1::2], sys.argv[2::2]):
    out[name] = train.train(task_config(name), workdir)["test"]
print(json.dumps(out))
"""


@pytest.mark.slow
def test_every_kind_of_task_trains_data_parallel_like_one_device(tmp_path):
    """Batches generated on the devices (adding) and gathered from a replicated data set
    (classify): on 8 devices, the same metrics as on one to float rounding."""
    names = ["adding", "classify"]
    args = [a for name in names for a in (name, str(tmp_path / f"eight_{name}"))]
    env = dict(os.environ, JAX_PLATFORMS="cpu", PYTHONPATH=str(ROOT / "tests"), **EIGHT)
    out = subprocess.run([sys.executable, "-c", EVERY_TASK, *args], cwd=ROOT, env=env,
                         capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    eight = json.loads(out.stdout.strip().splitlines()[-1])
    from test_tasks import task_config

    for name in names:
        one = train.train(task_config(name), tmp_path / f"one_{name}")["test"]
        assert set(one) == set(eight[name])
        for key in one:
            assert abs(one[key] - eight[name][key]) <= 1e-3 * max(1.0, abs(one[key])), (name, key)
