"""The local executors: trials as subprocesses, at most `max_parallel` at a time, or all of
them in one vmapped process.

Each trial logs to SWEEP_DIR/logs/<id>.log. A trial whose run directory says finished or
diverged is a result and is skipped on a rerun; any other trial is (re)started, and rnnlab
resumes it from its own checkpoints. A failed or diverged trial is recorded and the sweep goes
on. SIGTERM or Ctrl-C stops the sweep: the running trials get SIGTERM, save and stop.
"""

from __future__ import annotations

import json
import os
import pathlib
import signal
import subprocess
import time

from absl import logging

from launch import trials as trials_lib


def run(trials: list[trials_lib.Trial], sweep_dir: str, *, max_parallel: int = 1) -> dict:
    """Runs the trials not yet done, one process each; returns {id: outcome} for every trial."""
    outcomes, todo = _split_done(trials)
    jobs = [(t.id, t.command, [t]) for t in todo]
    outcomes.update(run_jobs(jobs, sweep_dir, max_parallel=max_parallel))
    return outcomes


def _split_done(trials):
    outcomes, todo = {}, []
    for trial in trials:
        status = trials_lib.run_status(trial)
        if status in trials_lib.DONE:
            outcomes[trial.id] = status
        else:
            todo.append(trial)
    logging.info("%d trials: %d done, %d to run", len(trials), len(outcomes), len(todo))
    return outcomes, todo


def run_jobs(jobs, sweep_dir: str, *, max_parallel: int = 1) -> dict:
    """Runs `(name, command, trials)` jobs as subprocesses, at most `max_parallel` at once.

    Each job logs to SWEEP_DIR/logs/<name>.log; when it exits, each of its trials is recorded
    with the outcome its run directory reports ("failed" when it reports none).
    """
    if max_parallel < 1:
        raise ValueError(f"--max_parallel must be >= 1, got {max_parallel}")
    logs = pathlib.Path(sweep_dir) / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    outcomes, todo = {}, list(jobs)
    stopping = []
    previous = signal.signal(signal.SIGTERM, lambda *_: stopping.append(True))
    running: dict[str, tuple[list, subprocess.Popen]] = {}

    def finish(job_trials, proc):
        for trial in job_trials:
            outcome = trials_lib.outcome(trial)
            outcomes[trial.id] = outcome
            trials_lib.record_outcome(sweep_dir, trial, outcome, proc.returncode)
            logging.info("%s: %s (exit code %d)", trial.id, outcome, proc.returncode)

    try:
        while (todo or running) and not stopping:
            while todo and len(running) < max_parallel:
                name, command, job_trials = todo.pop(0)
                with open(logs / f"{name}.log", "a") as log:
                    logging.info("start %s: %s", name, " ".join(command))
                    env = dict(os.environ, PYTHONUNBUFFERED="1")
                    running[name] = (job_trials, subprocess.Popen(
                        command, stdout=log, stderr=subprocess.STDOUT, env=env))
            for name, (job_trials, proc) in list(running.items()):
                if proc.poll() is not None:
                    del running[name]
                    finish(job_trials, proc)
            time.sleep(0.2)
    except KeyboardInterrupt:
        stopping.append(True)
    finally:
        signal.signal(signal.SIGTERM, previous)
        for _, proc in running.values():  # let them save a checkpoint and stop
            proc.send_signal(signal.SIGTERM)
        for job_trials, proc in running.values():
            proc.wait()
            finish(job_trials, proc)
    return outcomes


def run_vmapped(trials: list[trials_lib.Trial], config: str, sweep_dir: str, *,
                python: str) -> dict:
    """The trials not yet done, as ONE `rnnlab.main --trials=FILE` process: rnnlab trains
    those that differ only in values (seed, init, optimizer hyperparameters) as one vmapped
    program and splits the others into such groups itself."""
    outcomes, todo = _split_done(trials)
    if todo:
        spec = pathlib.Path(sweep_dir) / "vmap_trials.json"
        spec.write_text(json.dumps(
            [{"id": t.id, "overrides": t.overrides, "workdir": t.workdir} for t in todo], indent=2))
        command = [python, "-m", "rnnlab.main", f"--config={config}", f"--trials={spec}"]
        outcomes.update(run_jobs([("vmap", command, todo)], sweep_dir))
    return outcomes
