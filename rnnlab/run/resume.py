"""Where the trials of a group start: from scratch, from their newest checkpoint that verifies,
or not at all (a finished run whose final checkpoint is intact is a result).

The trials of a vmapped group train in step, so they resume from one step all of them can
restore; a trial without a checkpoint sends them all back to step 0 (a replay: the results are
the same). Restoring is `rnnlab.run.saves.Saves.restore` (verified, falls back, refuses a run
whose checkpoints are all gone). This module stands above `rnnlab.tasks` (a fresh state needs
the task's model); the rest of `rnnlab.run` does not.
"""

from __future__ import annotations

from typing import NamedTuple

from absl import logging

from rnnlab import optim, parallel, tasks
from rnnlab.train import state as state_lib
from rnnlab.run import checkpoint, layout, rundir


class Start(NamedTuple):
    state: object  # the (restored or fresh) train state
    meta: dict  # the best validation score so far and its step


def fresh_state(config, task: tasks.Task, mesh) -> state_lib.TrainState:
    """A trial's state at step 0 (its seed, init and hyperparameters), sharded over `mesh`."""
    state = state_lib.init_state(config, tasks.model(config, task.record),
                                 optim.make_optimizer(config.optim, config.train.steps),
                                 task.metrics)
    # Restoring onto a sharded state restores sharded (also onto another device count).
    return parallel.put(state, parallel.state_shardings(state, mesh, 0))


def finished(run: rundir.RunDir, found: checkpoint.Restored | None, steps: int) -> dict | None:
    """The trial's result if its newest checkpoint is its final one (status.json rewritten from
    it when that disagrees), else None; warns when status.json claims more than it has."""
    status = run.status() or {}
    final = found.meta.get("final") if found else None
    if final is not None and (found.step >= steps or final.get("stopped_early")):
        record = {"status": layout.FINISHED, "step": found.step, **final}
        if {k: v for k, v in status.items() if k != "committed_step"} != record:
            logging.warning("%s: status.json is missing or disagrees with the final "
                            "checkpoint; rewritten from it", run.path)
            run.set_status(**record)
        return record
    if status.get("status") == layout.FINISHED and status["step"] >= steps:
        logging.warning("%s: status.json says finished at step %d, but that checkpoint is "
                        "missing or corrupt: resuming from %s to rebuild it", run.path,
                        status["step"], f"step {found.step}" if found else "the start")
    return None


def align(runs: dict[int, rundir.RunDir], fresh: dict, found: dict) -> dict:
    """Moves the trials back to one step that all of them can resume from; None for the trials
    (all of them) that must start from scratch."""
    while len({found[i].step if found[i] else 0 for i in runs}) > 1:
        bound = min(found[i].step if found[i] else 0 for i in runs)
        if bound == 0:
            logging.warning("a trial of the group has no checkpoint: starting every trial from "
                            "step 0 (a replay: the results do not change)")
            return {i: None for i in runs}
        logging.warning("trials saved at different steps; resuming all from %d", bound)
        found = {i: found[i] if found[i].step == bound else
                 runs[i].restore(fresh[i], at_most=bound) for i in runs}
    return found


def starts(runs: dict[int, rundir.RunDir], fresh: dict, steps: int,
           empty_meta: dict) -> tuple[dict[int, dict], dict[int, Start]]:
    """(results of the trials that are done, starting points of the others)."""
    found = {i: run.restore(fresh[i]) for i, run in runs.items()}
    done = {}
    for i in list(runs):
        if (result := finished(runs[i], found[i], steps)) is not None:
            done[i] = result
    todo = {i: run for i, run in runs.items() if i not in done}
    found = align(todo, fresh, {i: found[i] for i in todo})
    return done, {i: Start(found[i].state, found[i].meta) if found[i] else
                  Start(fresh[i], dict(empty_meta)) for i in todo}
