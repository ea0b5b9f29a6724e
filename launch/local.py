"""The local executors: each trial its own subprocess, or the trials in one vmapped process.

Subprocesses run at most `max_parallel` at a time.

Each trial logs to SWEEP_DIR/logs/<id>.log. A trial whose run directory holds a result
(finished or diverged, with its final checkpoint) is skipped on a rerun; any other trial is
(re)started, and rnnlab resumes it from its own checkpoints. A trial whose run directory another
process is training in (a trial left from a killed launcher, say) is waited for, not started
again. A failed or diverged trial is recorded and the sweep goes on. SIGTERM or Ctrl-C stops the
sweep: the running trials get SIGTERM, save and stop, and are recorded as interrupted
(`stopped_by` says which signal). Trials die with their launcher: each gets
SIGTERM (save, then stop) when the launcher process ends, even by SIGKILL (Linux).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import json
import os
import pathlib
import shlex
import signal
import subprocess
import sys
import time

from absl import logging

from launch import progress as progress_lib, trials as trials_lib
from rnnlab.run import layout, storage

_PR_SET_PDEATHSIG = 1
_stopped_by: list[int] = []  # the signal that stopped this process's last run_jobs, if any


def stopped_by() -> int | None:
    """The signal (SIGTERM, SIGINT) that stopped the last `run_jobs` of this process, or None
    when it ran to the end."""
    return _stopped_by[-1] if _stopped_by else None


def _die_with_parent():
    """A preexec_fn: SIGTERM this child when the launcher dies (Linux's parent-death signal)."""
    if not sys.platform.startswith("linux"):
        return None
    libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
    parent = os.getpid()

    def arm():
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
        if os.getppid() != parent:  # the launcher died before the signal was armed
            os.kill(os.getpid(), signal.SIGTERM)

    return arm


def spawn(command: list[str], log) -> subprocess.Popen:
    """Starts a trial's process, writing to `log`; it gets SIGTERM if the launcher dies."""
    # The sweep's own command, which a vmapped trial records as the way to reproduce it.
    sweep = "python -m launch.sweep " + shlex.join(sys.argv[1:])
    env = dict(os.environ, PYTHONUNBUFFERED="1", RNNLAB_SWEEP_COMMAND=sweep)
    return subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env,
                            preexec_fn=_die_with_parent())


def run(trials: list[trials_lib.Trial], sweep_dir: str, *, max_parallel: int = 1) -> dict:
    """Runs the trials not yet done, one process each; returns {id: outcome} for every trial."""
    outcomes, todo = _split_done(trials)
    jobs = [(t.id, t.command, [t]) for t in todo]
    outcomes.update(run_jobs(jobs, sweep_dir, max_parallel=max_parallel, done=outcomes))
    return outcomes


def _split_done(trials):
    outcomes, todo = {}, []
    for trial in trials:
        result = trials_lib.result(trial)
        if result is not None:
            outcomes[trial.id] = result
        else:
            todo.append(trial)
    logging.info("%d trials: %d done, %d to run", len(trials), len(outcomes), len(todo))
    return outcomes, todo


def _busy(job_trials) -> list[tuple[str, int]]:
    """(trial id, pid) of the job's trials that another process is training right now."""
    holders = [(t.id, layout.lock_holder(t.workdir)) for t in job_trials]
    return [(i, pid) for i, pid in holders if pid is not None]


def run_jobs(jobs, sweep_dir: str, *, max_parallel: int = 1, done: dict | None = None,
             progress_every: float = 30.0) -> dict:
    """Runs `(name, command, trials)` jobs as subprocesses, at most `max_parallel` at once.

    Each job logs to SWEEP_DIR/logs/<name>.log; when it exits, each of its trials is recorded
    with the outcome its run directory reports ("failed" when it reports none). A job whose
    trials another process is training waits until that process ends. The console shows the
    progress (`launch.progress`) of these trials and of those already `done` ({id: outcome}).
    """
    done = dict(done or {})
    if max_parallel < 1:
        raise ValueError(f"--max_parallel must be >= 1, got {max_parallel}")
    logs = pathlib.Path(sweep_dir) / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    outcomes, todo, waiting = {}, list(jobs), set()
    stopping = _stopped_by  # the signals received; also what `stopped_by` reports
    stopping.clear()
    previous = signal.signal(signal.SIGTERM, lambda signum, _: stopping.append(signum))
    running: dict[str, tuple[list, subprocess.Popen]] = {}
    progress = progress_lib.Progress(len(done) + sum(len(j[2]) for j in jobs),
                                     every=progress_every)

    def show(force=False):
        progress.update({**done, **outcomes},
                        [t for job_trials, _ in running.values() for t in job_trials],
                        len(outcomes), force=force)

    def finish(job_trials, proc):
        for trial in job_trials:
            outcome = trials_lib.outcome(trial, stopped=bool(stopping))
            outcomes[trial.id] = outcome
            trials_lib.record_outcome(sweep_dir, trial, outcome, proc.returncode)
            logging.info("%s: %s (exit code %d)", trial.id, outcome, proc.returncode)

    try:
        while (todo or running) and not stopping:
            _start_ready(todo, running, max_parallel, waiting, outcomes, logs)
            for name, (job_trials, proc) in list(running.items()):
                if proc.poll() is not None:
                    del running[name]
                    finish(job_trials, proc)
            show()
            time.sleep(0.2)
    except KeyboardInterrupt:
        stopping.append(signal.SIGINT)
    finally:
        signal.signal(signal.SIGTERM, previous)
        for _, proc in running.values():  # let them save a checkpoint and stop
            proc.send_signal(signal.SIGTERM)
        for job_trials, proc in running.values():
            proc.wait()
            finish(job_trials, proc)
        running.clear()
        show(force=True)
    return outcomes


def _start_ready(todo: list, running: dict, max_parallel: int, waiting: set, outcomes: dict,
                 logs: pathlib.Path) -> None:
    """Starts the jobs of `todo` that may start now, while fewer than `max_parallel` run.

    A started job moves from `todo` to `running` ({name: (trials, process)}). A job whose trials
    another process is training stays in `todo` and is named in `waiting`; when that process
    ends, the job starts (and resumes its trials), unless every one of them has a result: then
    the job leaves `todo` with those results in `outcomes`.
    """
    for job in list(todo):
        if len(running) >= max_parallel:
            break
        name, command, job_trials = job
        if busy := _busy(job_trials):
            if name not in waiting:
                waiting.add(name)
                logging.warning("%s: still running in another process (%s); waiting for it to "
                                "end", name, ", ".join(f"{i}: pid {pid or '?'}" for i, pid in busy))
            continue
        todo.remove(job)
        if name in waiting and all(trials_lib.result(t) for t in job_trials):
            for trial in job_trials:  # the other process finished it
                outcomes[trial.id] = trials_lib.result(trial)
            continue
        with open(logs / f"{name}.log", "a") as log:
            logging.info("start %s: %s", name, " ".join(command))
            running[name] = (job_trials, spawn(command, log))


def run_vmapped(trials: list[trials_lib.Trial], config: str, sweep_dir: str, *,
                python: str) -> dict:
    """The trials not yet done, as ONE `rnnlab.main --trials=FILE` process: rnnlab trains
    those that differ only in values (seed, init, optimizer hyperparameters) as one vmapped
    program and splits the others into such groups itself; a trial that fails fails alone."""
    outcomes, todo = _split_done(trials)
    if todo:
        spec = pathlib.Path(sweep_dir) / "vmap_trials.json"
        storage.write_atomic(storage.path(spec), json.dumps(
            [{"id": t.id, "overrides": t.overrides, "workdir": t.workdir} for t in todo], indent=2))
        command = [python, "-m", "rnnlab.main", f"--config={config}", f"--trials={spec}"]
        outcomes.update(run_jobs([("vmap", command, todo)], sweep_dir, done=outcomes))
    return outcomes
