"""From a config and a sweep definition to trials: one reproducible command line each.

A sweep definition is a Python file with `get_sweep(arg=None) -> list[dict]` of dotted config
overrides (built with `launch.dsl`); it may be the config file itself. Every trial becomes

    python -m rnnlab.main --config=CONFIG --config.k=v ... --workdir=SWEEP_DIR/trials/ID

recorded in SWEEP_DIR/sweep.json, so any trial can be rerun by hand.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import pathlib
import re
import sys
from typing import Any

from rnnlab import layout, overrides, storage

SWEEP_FILE = "sweep.json"
OUTCOMES_FILE = "outcomes.json"
DONE = layout.DONE  # a trial in one of these states is a result: never rerun


@dataclasses.dataclass(frozen=True)
class Trial:
    id: str
    overrides: dict[str, Any]
    workdir: str
    command: list[str]


def _load_module(path: str, what: str):
    file = pathlib.Path(path)
    if not file.is_file():
        raise FileNotFoundError(f"{what} file {path} does not exist")
    if str(pathlib.Path.cwd()) not in sys.path:
        sys.path.insert(0, str(pathlib.Path.cwd()))  # configs import `configs.base`
    spec = importlib.util.spec_from_file_location(f"_sweep_{file.stem}", file)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def load_config(spec: str):
    """The ConfigDict of `path.py[:arg]`, as `rnnlab.main --config=` would build it."""
    path, _, arg = spec.partition(":")
    return _load_module(path, "config").get_config(arg or None)


def load_sweep(spec: str) -> list[dict[str, Any]]:
    """The trial overrides of `path.py[:arg]`'s `get_sweep(arg)`."""
    path, _, arg = spec.partition(":")
    module = _load_module(path, "sweep")
    if not hasattr(module, "get_sweep"):
        raise ValueError(f"{path} defines no get_sweep(arg=None)")
    trials = module.get_sweep(arg or None)
    if not trials or not all(isinstance(t, dict) for t in trials):
        raise ValueError(f"{spec}: get_sweep must return a non-empty list of dicts")
    return trials


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


def command(config: str, overrides: dict[str, Any], workdir: str, *, python: str = "python"):
    return [python, "-m", "rnnlab.main", f"--config={config}",
            *(f"--config.{k}={format_value(v)}" for k, v in overrides.items()),
            f"--workdir={workdir}"]


def plan(config: str, sweep: str, sweep_dir: str, *, python: str = "python",
         record: bool = True) -> list[Trial]:
    """Builds the trials and (with `record`) records them in SWEEP_DIR/sweep.json.

    Rerunning with the same sweep finds the same trials; a different sweep in the same
    directory is refused rather than mixed in.
    """
    sweep_trials = load_sweep(sweep)
    base = load_config(config)
    for trial in sweep_trials:  # every key exists and takes its value's type, before any run
        overrides.apply(base, trial)
    trials = []
    for i, trial in enumerate(sweep_trials):
        trial_id = f"{i:03d}" + (f"_{_slug(trial)}" if trial else "")
        workdir = f"{sweep_dir.rstrip('/')}/trials/{trial_id}"
        trials.append(Trial(trial_id, dict(trial), workdir,
                            command(config, trial, workdir, python=python)))
    spec = {"config": config, "sweep": sweep, "trials": [dataclasses.asdict(t) for t in trials]}
    path = storage.path(sweep_dir) / SWEEP_FILE
    if not sweep_dir.startswith("gs://"):
        old = layout.read_json(path)
        if old is not None and (
                [t["overrides"] for t in old["trials"]] != [t.overrides for t in trials]
                or old["config"] != config):
            raise ValueError(
                f"{sweep_dir} holds another sweep ({old['config']}, {len(old['trials'])} "
                "trials); use a new --workdir for a different sweep"
            )
        if record:
            path.parent.mkdir(parents=True, exist_ok=True)
            storage.write_atomic(path, json.dumps(spec, indent=2) + "\n")
    return trials


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
