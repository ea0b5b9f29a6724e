"""A sweep's trials: from a config and a sweep definition, one reproducible command line each.

A sweep definition is a Python file with `get_sweep(arg=None)` returning a list (or any
iterable, read once) of dicts of dotted config overrides (built with `launch.dsl`; a nested
`{"model": {"cell": "gru"}}` is read as `{"model.cell": "gru"}`); it may be the config file
itself. Every trial becomes

    python -m rnnlab.main --config=CONFIG --config.k=v ... --workdir=SWEEP_DIR/trials/ID

recorded in SWEEP_DIR/sweep.json, so any trial can be rerun by hand. Nothing is recorded
before every trial has been checked against the config. An error in the config or sweep file
is a SweepFileError: one line naming the file and line, and the user's own traceback.
"""

from __future__ import annotations

import dataclasses
import fcntl
import json
import os
import pathlib
import re
import reprlib
import sys
import traceback
import types
from collections.abc import Iterable
from typing import Any

from launch import dsl
from rnnlab import overrides
from rnnlab.run import layout, storage

SWEEP_FILE = "sweep.json"
TRIALS_DIR = "trials"  # SWEEP_DIR/trials/<id>: the trials' run directories
OUTCOMES_FILE = "outcomes.json"
DONE = layout.DONE  # a trial in one of these states is a result: never rerun


@dataclasses.dataclass(frozen=True)
class Trial:
    id: str
    overrides: dict[str, Any]
    workdir: str
    command: list[str]


class SweepBusy(RuntimeError):
    """Another launcher runs the sweep in this directory."""


class SweepFileError(ValueError):
    """A config or sweep file that failed to load or run. str(): one line naming the file and
    line; `trace`: the user's own traceback, without the launcher's frames ("" if none helps)."""

    def __init__(self, line: str, trace: str = ""):
        super().__init__(line)
        self.trace = trace


def _user_error(path: str, error: Exception) -> SweepFileError:
    """`error`, raised by the user's file `path` (or code it called), as a SweepFileError."""
    if isinstance(error, SyntaxError) and error.filename and error.lineno:
        return SweepFileError(f"{error.filename}:{error.lineno}: {type(error).__name__}: "
                              f"{error.msg}", "".join(traceback.format_exception_only(error)))
    frames = traceback.extract_tb(error.__traceback__)
    while frames and frames[0].filename == __file__:
        del frames[0]  # the launcher's frames, not the user's
    file = str(pathlib.Path(path).resolve())
    mine = [f for f in frames if str(pathlib.Path(f.filename).resolve()) == file] or frames
    where = f"{path}:{mine[-1].lineno}" if mine else path
    line = f"{where}: {''.join(traceback.format_exception_only(error)).strip()}"
    if isinstance(error, ValueError) and frames and frames[-1].filename == dsl.__file__:
        return SweepFileError(line)  # launch.dsl's own message says it all
    return SweepFileError(line, "Traceback (most recent call last):\n" + "".join(
        traceback.format_list(frames)) + "".join(traceback.format_exception_only(error)))


def _call(path: str, function, *args):
    """function(*args), code of the user's file `path`: what it raises is a SweepFileError."""
    try:
        return function(*args)
    except Exception as e:  # noqa: BLE001 - any error of the user's code is reported as theirs
        raise _user_error(path, e) from None


def _load_module(path: str, what: str):
    file = pathlib.Path(path)
    if not file.is_file():
        raise FileNotFoundError(f"{what} file {path} does not exist")
    if str(pathlib.Path.cwd()) not in sys.path:
        sys.path.insert(0, str(pathlib.Path.cwd()))  # configs import `configs.base`
    # Compiled from the file's text each time, never through a bytecode cache: a cached .pyc is
    # trusted when the file's mtime (in whole seconds) and size match, so a file rewritten within
    # a second to the same length (hidden_size 16 -> 24) would load as it was before.
    module = types.ModuleType(f"_sweep_{file.stem}")
    module.__file__ = str(file)
    _call(path, lambda: exec(compile(file.read_bytes(), str(file), "exec"), module.__dict__))
    return module


def load_config(spec: str):
    """The ConfigDict of `path.py[:arg]`, as `rnnlab.main --config=` would build it."""
    path, _, arg = spec.partition(":")
    module = _load_module(path, "config")
    if not callable(getattr(module, "get_config", None)):
        raise ValueError(f"{path} defines no get_config(arg=None)")
    return _call(path, module.get_config, arg or None)


def flatten(trial: dict, where: str = "trial") -> dict[str, Any]:
    """Nested dicts as dotted keys: `{"model": {"cell": "gru"}}` -> `{"model.cell": "gru"}`."""
    out: dict[str, Any] = {}
    for key, value in trial.items():
        if not isinstance(key, str) or not key:
            raise ValueError(f"{where}: {key!r} is not a config key (write \"model.cell\")")
        nested = flatten(value, where) if isinstance(value, dict) else {"": value}
        for sub, v in nested.items():
            full = f"{key}.{sub}" if sub else key
            if full in out:
                raise ValueError(f"{where}: {full!r} is set twice")
            out[full] = v
    return out


def load_sweep(spec: str) -> list[dict[str, Any]]:
    """The trial overrides of `path.py[:arg]`'s `get_sweep(arg)`: any iterable of dicts (read
    once), nested dicts flattened to dotted keys; an empty sweep is a ValueError."""
    path, _, arg = spec.partition(":")
    module = _load_module(path, "sweep")
    if not callable(getattr(module, "get_sweep", None)):
        raise ValueError(f"{path} defines no get_sweep(arg=None)")
    got = _call(path, module.get_sweep, arg or None)
    if isinstance(got, (dict, str, bytes)) or not isinstance(got, Iterable):
        raise ValueError(f"{spec}: get_sweep must return a list (or any iterable) of dicts of "
                         f"config overrides, got a {type(got).__name__}")
    trials = _call(path, list, got)  # a generator runs the user's code here
    if not trials:
        raise ValueError(f"{spec}: get_sweep returned no trials")
    for i, trial in enumerate(trials):
        if not isinstance(trial, dict):
            raise ValueError(f"{spec}: trial {i} is not a dict of config overrides: "
                             f"{reprlib.repr(trial)}")
    return [flatten(trial, f"{spec}: trial {i}") for i, trial in enumerate(trials)]


def format_value(value: Any) -> str:
    """A value as `--config.key=` parses it back (absl and ml_collections)."""
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, float):
        return repr(value)
    return str(value)


def _slug(overrides: dict[str, Any]) -> str:
    parts = [f"{k.rsplit('.', 1)[-1]}={format_value(v)}" for k, v in overrides.items()]
    return re.sub(r"[^A-Za-z0-9._=+-]", "-", "_".join(parts))[:80]


def _trial_ids(sweep_trials: list[dict], sweep_dir: str, config: str) -> list[str]:
    """`NNN_key=value_...` per trial, with only the keys whose values differ between the
    sweep's trials (a key all of them set alike is the sweep's, not a trial's). A sweep already
    recorded in SWEEP_DIR/sweep.json keeps the names it ran under; a gs:// sweep dir (not read
    here) keeps every key in its names, as sweeps did before, so that its trials are found."""
    if storage.is_local(sweep_dir):
        old = layout.read_json(storage.path(sweep_dir) / SWEEP_FILE)
        try:
            if (old.get("config") == config and [flatten(t["overrides"]) for t in old["trials"]]
                    == [dict(t) for t in sweep_trials]):
                return [t["id"] for t in old["trials"]]
        except (AttributeError, KeyError, TypeError, ValueError):
            pass
    keys = list(dict.fromkeys(k for t in sweep_trials for k in t))
    varying = [k for k in keys if len({format_value(t.get(k, "\0")) for t in sweep_trials}) > 1]
    if not storage.is_local(sweep_dir) or not varying:
        varying = keys
    return [f"{i:03d}" + (f"_{_slug(shown)}" if (shown := {k: v for k, v in t.items()
                                                          if k in varying}) else "")
            for i, t in enumerate(sweep_trials)]


def command(config: str, overrides: dict[str, Any], workdir: str, *, python: str = "python"):
    return [python, "-m", "rnnlab.main", f"--config={config}",
            *(f"--config.{k}={format_value(v)}" for k, v in overrides.items()),
            f"--workdir={workdir}"]


def plan(config: str, sweep: str, sweep_dir: str, *, python: str = "python",
         record: bool = True) -> list[Trial]:
    """Builds the trials and (with `record`) records them in SWEEP_DIR/sweep.json.

    Every trial is checked against the config (every key exists and takes its value's type)
    before anything is recorded, and a sweep that lists a trial twice (the same config) is
    refused. Rerunning with the same sweep finds the same trials; a different sweep in the same
    directory is refused rather than mixed in, and so is a trial whose run directory holds a
    run of another config (the config file edited since it ran).
    """
    sweep_trials = load_sweep(sweep)
    base = load_config(config)
    # Each trial's whole config, to find repeats; every key checked before any run.
    resolved = [checked(base, trial).to_json_best_effort(sort_keys=True)
                for trial in sweep_trials]
    trials = []
    names = _trial_ids(sweep_trials, sweep_dir, config)
    for trial, trial_id in zip(sweep_trials, names):
        workdir = f"{sweep_dir.rstrip('/')}/{TRIALS_DIR}/{trial_id}"
        trials.append(Trial(trial_id, dict(trial), workdir,
                            command(config, trial, workdir, python=python)))
    _check_distinct(sweep, trials, resolved)
    _check_same_sweep(config, sweep_dir, trials)
    _check_run_configs(base, sweep_dir, trials)
    if record:
        record_sweep(config, sweep, sweep_dir, trials)
    return trials


def checked(base, trial: dict[str, Any]):
    """The config `base` with the trial's dotted overrides, as `rnnlab.main` would build it;
    ValueError for a key that does not exist, a value of the wrong type, or a whole section
    (apply takes one: rnnlab.main's flags do not)."""
    config = overrides.apply(base, trial)
    leaves = set(overrides.known_keys(base))
    for key in trial:
        if key not in leaves:
            raise ValueError(f"override {key!r}: a config section, not a value: set its keys "
                             f"({key}.KEY) instead")
    return config


def records(trials: list[Trial]) -> list[dict]:
    """The trials as sweep.json lists them: `workdir` relative to the sweep dir."""
    return [{**dataclasses.asdict(t), "workdir": f"{TRIALS_DIR}/{t.id}"} for t in trials]


def _check_distinct(sweep: str, trials: list[Trial], resolved: list[str]) -> None:
    """Refuses a sweep that lists a trial twice (the same config, e.g. a seed in two chained
    axes): the two identical runs would count as two seeds in the report."""
    first: dict[str, Trial] = {}
    repeats = []
    for trial, config in zip(trials, resolved):
        if config in first:
            repeats.append(f"{trial.id} repeats {first[config].id}")
        first.setdefault(config, trial)
    if repeats:
        raise ValueError(f"{sweep}: {len(repeats)} trial(s) listed twice (the same config): "
                         f"{some(repeats)}; list each trial once")


def _changed_keys(base, trial: Trial) -> list[str]:
    """The config keys in which the run already in the trial's directory (its config.json)
    differs from the trial's config now, by rnnlab's own rule for resuming; a finished or
    diverged run is a result, and may differ in no key that changes the computation."""
    from rnnlab.run import experiment  # imports jax: only when a trial has a run to compare

    old = layout.read_json(storage.path(trial.workdir) / layout.CONFIG_FILE)
    if not isinstance(old, dict):
        return []
    config = overrides.apply(base, trial.overrides)
    allowed = set(experiment.RESUMABLE_KEYS)
    if result(trial) is None and config.optim.schedule not in experiment.SCHEDULES_OVER_ALL_STEPS:
        allowed.add("train.steps")  # an unfinished run may be resumed to more steps
    new = json.loads(config.to_json_best_effort())
    return [k for k in experiment.config_diff(old, new) if k not in allowed]


def _check_run_configs(base, sweep_dir: str, trials: list[Trial]) -> None:
    """Refuses trials whose run directories hold runs of another config (the config file was
    edited since they ran): a finished one would be kept as a stale result, an unfinished one
    refused by rnnlab.main. Raises ValueError naming them and the keys."""
    changed: dict[tuple[str, ...], list[str]] = {}
    for trial in trials:
        if storage.is_local(trial.workdir) and (
                storage.path(trial.workdir) / layout.CONFIG_FILE).exists():
            if keys := _changed_keys(base, trial):
                changed.setdefault(tuple(keys), []).append(trial.id)
    if not changed:
        return
    count = sum(len(ids) for ids in changed.values())
    named = "; ".join(f"{some(ids)} (differs in: {', '.join(keys)})"
                      for keys, ids in changed.items())
    raise ValueError(f"{sweep_dir}: {count} trial(s) hold runs of a different config than the "
                     f"sweep's now (was the config file edited?): {named}; use a new --workdir "
                     f"for the changed sweep (or remove those trial dirs to rerun them)")


def some(ids: list[str], most: int = 4) -> str:
    """The first `most` of `ids`, and how many more."""
    return ", ".join(ids[:most]) + (f" (+{len(ids) - most} more)" if len(ids) > most else "")


def _check_same_sweep(config: str, sweep_dir: str, trials: list[Trial]) -> None:
    """Refuses a SWEEP_DIR that holds another sweep; one of no trials holds nothing."""
    if not storage.is_local(sweep_dir):  # a bucket sweep dir is not read here
        return
    old = layout.read_json(storage.path(sweep_dir) / SWEEP_FILE)
    if not isinstance(old, dict) or not old.get("trials"):
        return
    try:
        same = (old.get("config") == config and [flatten(t["overrides"]) for t in old["trials"]]
                == [t.overrides for t in trials])
    except (KeyError, TypeError, ValueError):
        same = False
    if not same:
        raise ValueError(f"{sweep_dir} holds another sweep ({old.get('config')}, "
                         f"{len(old['trials'])} trials); use a new --workdir for a different "
                         "sweep")


def record_sweep(config: str, sweep: str, sweep_dir: str, trials: list[Trial]) -> None:
    """Writes SWEEP_DIR/sweep.json (after `_check_same_sweep`). A trial's `workdir` there is
    relative to the sweep dir (trials/<id>), so the sweep can be moved, copied or synced; its
    `command` is the one the launcher runs, from the repository root."""
    _check_same_sweep(config, sweep_dir, trials)
    if not storage.is_local(sweep_dir):
        return
    spec = {"config": config, "sweep": sweep, "trials": records(trials)}
    path = storage.path(sweep_dir) / SWEEP_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    storage.write_atomic(path, json.dumps(spec, indent=2) + "\n")


def lock(sweep_dir: str):
    """Takes SWEEP_DIR's launcher lock (SWEEP_DIR/.lock, an flock like a run directory's, held
    until this process ends, even by SIGKILL); returns the open file, to keep open. A bucket
    has no locks: nothing is taken there.

    Raises:
      SweepBusy: another launcher holds it (the message names its pid).
    """
    if not storage.is_local(sweep_dir):
        return None
    directory = pathlib.Path(sweep_dir)
    directory.mkdir(parents=True, exist_ok=True)
    handle = open(directory / layout.LOCK_FILE, "a+")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.close()
        holder = layout.lock_holder(directory)
        raise SweepBusy(f"{sweep_dir} is in use by another launch.sweep"
                        + (f" (pid {holder})" if holder else "")
                        + ": one launcher per sweep directory; wait for it to end, or stop "
                        "it first") from None
    handle.truncate(0)
    handle.write(str(os.getpid()))
    handle.flush()
    return handle


def run_status(trial: Trial) -> str | None:
    """The run's own status.json state (finished, diverged, interrupted, running) or None."""
    return (layout.read_status(trial.workdir) or {}).get("status")


def result(trial: Trial) -> str | None:
    """finished or diverged when the trial is a result whose files agree, else None."""
    return layout.result(trial.workdir)


def outcome(trial: Trial, *, stopped: bool = False) -> str:
    """What a trial's process left: its run's finished/diverged/interrupted, else "failed"
    (or "interrupted" when the launcher itself stopped it before it wrote a status)."""
    status = run_status(trial)
    if status in (*DONE, layout.INTERRUPTED):
        return status
    return layout.INTERRUPTED if stopped else "failed"


def record_outcome(sweep_dir: str, trial: Trial, outcome: str, returncode: int | None) -> None:
    path = storage.path(sweep_dir) / OUTCOMES_FILE
    try:
        outcomes = layout.read_json(path) or {}
    except layout.RunDirError:  # written atomically, so only damage from outside: start again
        outcomes = {}
    outcomes[trial.id] = {"outcome": outcome, "returncode": returncode}
    storage.write_atomic(path, json.dumps(outcomes, indent=2, sort_keys=True) + "\n")
