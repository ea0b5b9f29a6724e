"""A sweep's live progress on the console: its trials' outcomes so far, their steps and ETAs.

Trials done / failed / interrupted / running, each running trial's step and ETA, and the sweep's
ETA: a redrawn bar where the output is a terminal, a plain line every `every` seconds where it
is not (a log file, CI).

It reads what the trials write anyway (`config.json` for the step count, the last `train` line
of `metrics.jsonl` for the step), so it works for every executor whose trials' run directories
this machine can read.
"""

from __future__ import annotations

import json
import sys
import time
from typing import Callable

from rnnlab.run import layout, storage

FAILED, DIVERGED = "failed", layout.DIVERGED
INTERRUPTED = layout.INTERRUPTED  # stopped before the end: not done, a rerun resumes it


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "?"
    seconds = int(max(0, seconds))
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


def last_step(workdir) -> int | None:
    """The step of the last training line of a run's metrics.jsonl (its last 8 KiB only)."""
    try:
        with open(storage.path(workdir) / layout.METRICS_FILE, "rb") as f:
            f.seek(0, 2)
            f.seek(max(0, f.tell() - 8192))
            lines = f.read().decode("utf-8", "replace").splitlines()
    except (OSError, TypeError):
        return None
    for line in reversed(lines):
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if isinstance(record, dict) and record.get("split") == "train":
            return int(record["step"])
    return None


def total_steps(workdir) -> int | None:
    try:
        return int(layout.read_json(storage.path(workdir) / "config.json")["train"]["steps"])
    except (OSError, TypeError, KeyError, ValueError):
        return None


class Progress:
    """Call `update(outcomes, running, finished_here)` often; it draws at most every `every`
    seconds (on a terminal: every second)."""

    def __init__(self, total: int, *, stream=None, every: float = 30.0,
                 clock: Callable[[], float] = time.monotonic):
        self.total = total  # trials in the sweep
        self.stream = stream or sys.stderr
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self.every = 1.0 if self.tty else every
        self.clock = clock
        self.start = clock()
        self.drawn = None
        self.steps: dict[str, int | None] = {}  # each trial's step count (config.json)
        self.seen: dict[str, tuple[int, float]] = {}  # its (step, time) when first seen

    def line(self, outcomes: dict[str, str], running: list, finished_here: int = 0) -> str:
        """Counts, the running trials' steps and ETAs, and the sweep's ETA: the trials' work
        done in this session (finished ones whole, running ones by their fraction of steps)
        extrapolated over what is left."""
        now = self.clock()
        failed = sum(o == FAILED for o in outcomes.values())
        diverged = sum(o == DIVERGED for o in outcomes.values())  # a result, but not a number
        stopped = sum(o == INTERRUPTED for o in outcomes.values())  # to resume: not done
        done = len(outcomes) - stopped
        work, left, shown, active = float(finished_here), float(self.total - len(outcomes)), [], 0
        for trial in running:
            if self.steps.get(trial.id) is None:
                self.steps[trial.id] = total_steps(trial.workdir)
            total, step = self.steps[trial.id], last_step(trial.workdir)
            if not total or step is None:
                continue
            first_step, first_time = self.seen.setdefault(trial.id, (step, now))
            work += (step - first_step) / total
            left -= step / total
            if step >= total:
                continue
            active += 1
            rate = (step - first_step) / (now - first_time) if now > first_time else 0.0
            eta = (total - step) / rate if rate > 0 else None
            shown.append(f"{trial.id}: step {step}/{total}, ETA {_duration(eta)}")
        elapsed = now - self.start
        sweep_eta = left * elapsed / work if work > 0 and elapsed > 0 else None
        text = (f"{done}/{self.total} trials done ({failed} failed"
                + (f", {diverged} diverged), " if diverged else "), ")
                + (f"{stopped} interrupted, " if stopped else "")
                + f"{active or len(running)} running")
        if self.tty:
            filled = int(20 * done / self.total) if self.total else 20
            text = "[" + "#" * filled + "." * (20 - filled) + "] " + text
        if shown:
            text += " | " + "; ".join(shown[:2]) + (f"; +{len(shown) - 2} more"
                                                    if len(shown) > 2 else "")
        return text + f" | sweep ETA {_duration(sweep_eta)}"

    def update(self, outcomes: dict[str, str], running: list, finished_here: int = 0, *,
               force: bool = False) -> None:
        now = self.clock()
        if not force and self.drawn is not None and now - self.drawn < self.every:
            return
        self.drawn = now
        text = self.line(outcomes, running, finished_here)
        self.stream.write(("\r\033[K" + text + ("\n" if force else "")) if self.tty
                          else text + "\n")
        self.stream.flush()
