"""What a sweep directory says about each of its trials: records, outcome, curve and summary.

A metric `split/name` is the `name` scalar of the metrics.jsonl lines of that split. Each trial
is read from SWEEP_DIR/trials/<id> and nowhere else, so a sweep directory that was moved, copied
or synced reports its own trials (a trial missing from the copy is missing). A finished trial
whose last metrics line is cut is read from what its status.json recorded.
"""

from __future__ import annotations

import json
import math
import pathlib
import statistics
from collections.abc import Sequence
from typing import Any, NamedTuple

from launch import trials as trials_lib
from rnnlab.run import layout


class TrialResult(NamedTuple):
    """What a sweep directory says about one trial."""

    id: str
    overrides: dict[str, Any]
    workdir: pathlib.Path
    records: list[dict]  # the parsable lines of metrics.jsonl
    status: dict  # status.json, {} when absent or unreadable
    recorded_outcome: str | None  # outcomes.json: what the launcher last saw


class TrialSummary(NamedTuple):
    """One trial's metric, speed, size and outcome, as a table row takes them."""

    id: str
    outcome: str  # finished | diverged | pruned | failed | interrupted | running | not started
    best: float | None
    final: float | None
    steps_per_sec: float | None
    num_params: float | None
    problem: str | None = None  # metrics.jsonl disagrees with status.json (see `curve`)


def _read_json(path: pathlib.Path) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):  # absent, or caught while being written
        return None


def _trial_dir(sweep_dir: pathlib.Path, trial: dict) -> pathlib.Path:
    """SWEEP_DIR/trials/<id>, whatever sweep.json's `workdir` says: it is relative to the sweep
    dir (trials/<id>), or, in sweep.json files of older launchers, where the launcher ran
    (often absolute), which after a move or a copy is another sweep's directory. A trial is
    never read from outside the sweep dir."""
    trial_id = trial.get("id")
    if not isinstance(trial_id, str) or trial_id in ("", ".", "..") or "/" in trial_id:
        raise ValueError(f"{sweep_dir / trials_lib.SWEEP_FILE}: trial id {trial_id!r} is not "
                         "a directory name")
    return sweep_dir / trials_lib.TRIALS_DIR / trial_id


def load_sweep(sweep_dir: str | pathlib.Path) -> list[TrialResult]:
    """Every trial of sweep.json, in sweep order, whether or not it has run."""
    sweep_dir = pathlib.Path(sweep_dir)
    spec = _read_json(sweep_dir / trials_lib.SWEEP_FILE)
    if not isinstance(spec, dict) or not isinstance(spec.get("trials"), list):
        raise FileNotFoundError(f"no readable sweep.json in {sweep_dir}: is it a sweep directory "
                                "made by launch.sweep?")
    outcomes = _read_json(sweep_dir / trials_lib.OUTCOMES_FILE)
    outcomes = outcomes if isinstance(outcomes, dict) else {}
    results = []
    for trial in spec["trials"]:
        workdir = _trial_dir(sweep_dir, trial)
        recorded = outcomes.get(trial["id"])
        results.append(TrialResult(
            id=trial["id"], overrides=dict(trial.get("overrides") or {}), workdir=workdir,
            records=layout.read_metrics(workdir),
            status=layout.read_status(workdir) or {},
            recorded_outcome=recorded.get("outcome") if isinstance(recorded, dict) else None))
    return results


def metrics_found(results: Sequence[TrialResult]) -> list[str]:
    """Every `split/name` with a number in some trial's metrics.jsonl or status.json."""
    found = {f"{r.get('split')}/{k}" for res in results for r in res.records
             for k, v in r.items() if k not in ("step", "split") and _number(v) is not None}
    for res in results:
        records = res.status.get("records")
        for split, values in (records.items() if isinstance(records, dict) else ()):
            if isinstance(values, dict):
                found |= {f"{split}/{k}" for k, v in values.items() if _number(v) is not None}
    return sorted(found)


def outcome(result: TrialResult) -> str:
    """finished | diverged | pruned | failed | interrupted | running | not started."""
    said = (result.status.get("status"), result.recorded_outcome)
    if result.recorded_outcome == "pruned":  # a search's pruner stopped it (launch.search)
        return "pruned"
    for name in ("diverged", "finished"):
        if name in said:
            return name
    if result.recorded_outcome == "failed":
        return "failed"
    if "interrupted" in said:
        return "interrupted"
    return "running" if "running" in said or result.records else "not started"


def split_metric(metric: str) -> tuple[str, str]:
    """(split, name) of `split/name`; ValueError for anything else."""
    split, _, name = metric.partition("/")
    if not split or not name:
        raise ValueError(f"a metric is split/name (e.g. valid/bpc), got {metric!r}")
    return split, name


def resolve_mode(metric: str, mode: str = "auto") -> str:
    """min or max; auto is max iff the metric's name contains "acc" (accuracy)."""
    if mode == "auto":
        return "max" if "acc" in split_metric(metric)[1].lower() else "min"
    if mode not in ("min", "max"):
        raise ValueError(f"mode is auto, min or max, got {mode!r}")
    return mode


def _number(x: Any) -> float | None:
    return float(x) if isinstance(x, (int, float)) and not isinstance(x, bool) else None


def curve(result: TrialResult, metric: str) -> list[tuple[int, float]]:
    """(step, value) of every line of the metric's split that has the scalar (see `_curve`)."""
    return _curve(result, metric)[0]


def _curve(result: TrialResult, metric: str) -> tuple[list[tuple[int, float]], str | None]:
    """The curve, and what disagrees with status.json: the final line of a finished run missing
    from metrics.jsonl (cut; status.json's value is used) or different from what it recorded."""
    split, name = split_metric(metric)
    points = [(int(r.get("step", i)), _number(r[name])) for i, r in enumerate(result.records)
              if r.get("split") == split and _number(r.get(name)) is not None]
    status = result.status
    final = _number(((status.get("records") or {}).get(split) or {}).get(name))
    if status.get("status") != "finished" or final is None:
        return points, None
    step = int(status["step"])
    if not points or points[-1][0] < step:
        return points + [(step, final)], (f"{result.id}: metrics.jsonl has no {metric} line "
                                          f"at its final step {step} (cut?); status.json's "
                                          "value is used")
    if points[-1] != (step, final):
        return points, (f"{result.id}: its final {metric} in metrics.jsonl ({points[-1][1]:.6g})"
                        f" disagrees with status.json ({final:.6g})")
    return points, None


def summarize(result: TrialResult, metric: str, mode: str = "auto") -> TrialSummary:
    """One trial's best and final metric, speed, size and outcome."""
    curve_points, problem = _curve(result, metric)
    points = [v for _, v in curve_points]
    state = outcome(result)
    if any(not math.isfinite(v) for v in points):
        state = "diverged"  # e.g. a run that logged NaN without a status.json
    finite = [v for v in points if math.isfinite(v)]
    best = (max if resolve_mode(metric, mode) == "max" else min)(finite) if finite else None
    rates = [r["steps_per_sec"] for r in result.records if r.get("split") == "train"
             and _number(r.get("steps_per_sec")) is not None
             and math.isfinite(r["steps_per_sec"])]
    return TrialSummary(result.id, state, best, points[-1] if points else None,
                        statistics.fmean(rates) if rates else None,
                        _number(result.status.get("num_params")), problem)
