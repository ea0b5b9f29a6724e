"""What training needs before its first step: the task, the run directories, the optimizer, the
device mesh, and the state each trial starts from (fresh, or resumed from its checkpoint).

Every step is data parallel over all devices (`rnnlab.parallel`): the batch rows (and the carry)
are split over them, the rest is replicated. On one device that is the plain program; a run on
N devices (or N hosts after `jax.distributed.initialize()`) matches it to float rounding.
"""

from __future__ import annotations

import dataclasses

import ml_collections
from absl import logging

from rnnlab import optim, parallel, tasks, validation
from rnnlab.run import checkpoint, layout, resume, rundir


class DivergenceError(RuntimeError):
    """The loss or a gradient became non-finite."""


class DiskFullError(RuntimeError):
    """The file system of the run directory is full; the last committed checkpoint is intact."""


@dataclasses.dataclass(eq=False)
class Trial:
    """One run of a training program (the only one, or one trial of a vmapped group)."""

    config: ml_collections.ConfigDict
    run: rundir.RunDir
    meta: dict = dataclasses.field(default_factory=dict)  # best score so far and its step
    result: dict | None = None  # what status.json says once the trial is done
    active: bool = True  # training (not a result, not diverged)


class Setup:
    """The task, the trials' run directories, the optimizer and the data on the mesh.

    Trials share everything but values (`validation.group_key`): the task is built from the
    first trial's config, the optimizer's hyperparameters live in each trial's state.
    """

    def __init__(self, configs: list, workdirs: list, stop):
        self.stop, self.t, self.trials = stop, configs[0].train, []
        self.checkpoint_bytes = 0
        try:
            self._set_up(configs, workdirs)
        except BaseException:
            self.close()
            raise

    def _set_up(self, configs, workdirs):
        try:
            self.task = tasks.build(configs[0])
        except ValueError as e:  # data too short for its splits or windows, bad fractions
            raise validation.ConfigError(str(e)) from e
        for config in configs[1:]:  # the size model.param_budget chose, for every trial
            config.model.hidden_size = configs[0].model.hidden_size
        logging.info("%s", self.task.describe)
        for name, size in (("train.batch_size", self.t.batch_size),
                           ("train.eval_batch_size", self.t.eval_batch_size or self.t.batch_size)):
            if (problem := parallel.check_batch(name, size)) is not None:
                raise validation.ConfigError(problem)
        for config, workdir in zip(configs, workdirs):
            run = rundir.RunDir(workdir, config, primary=parallel.is_primary())
            self.trials.append(Trial(config, run))
            run.check_data(self.task.fingerprint, self.task.record)
            if (problem := parallel.check_shared(run.path)) is not None:
                raise rundir.RunDirError(problem)
        self.tx = optim.make_optimizer(configs[0].optim, self.t.steps)  # values are in states
        self.mesh = parallel.make_mesh()
        rows = parallel.split(self.mesh, 0)
        self.data = {k: parallel.put(v, rows if k in self.task.row_sharded
                                     else parallel.replicated(self.mesh))
                     for k, v in self.task.data.items()}
        self.best_key = f"best_valid_{self.task.best[0]}"

    def close(self):
        for trial in self.trials:
            trial.run.close()

    def start(self) -> tuple[list[Trial], list]:
        """The trials of the program and the state each starts from (resumed or fresh): none
        when every trial is done, else those still to train, or a group's every trial.

        A finished or diverged trial becomes a result at once: rerunning it would change
        nothing (or diverge again).
        """
        for trial in self.trials:
            status = trial.run.status() or {}
            if status.get("status") == layout.DIVERGED:
                trial.result, trial.active = status, False
        runs = {i: tr.run for i, tr in enumerate(self.trials) if tr.active}
        fresh = {i: resume.fresh_state(self.trials[i].config, self.task, self.mesh) for i in runs}
        if fresh:
            self.checkpoint_bytes = checkpoint.size(next(iter(fresh.values())))
        done, starts = resume.starts(runs, fresh, self.t.steps,
                                     {self.best_key: None, "best_step": None})
        for i, result in done.items():
            self.trials[i].result, self.trials[i].active = result, False
            self._say_finished(runs[i], result)
        todo = [self.trials[i] for i in starts]
        for trial, start in zip(todo, starts.values()):
            # (a finished run trained on to more steps: its old result is not the new run's)
            trial.meta = {k: v for k, v in start.meta.items() if k != "final"}
        states = [start.state for start in starts.values()]
        if todo and len(self.trials) > 1:
            # A group trains at its full size: batched reductions round by shape, so a trial's
            # numbers must not depend on how many others are still training. The trials that
            # are done ride along inactive, in a copy of an active trial's state.
            of = dict(zip(todo, states))
            todo, states = self.trials, [of.get(trial, states[0]) for trial in self.trials]
        return todo, states

    def _say_finished(self, run, result):
        name = self.task.best[0]
        scores = ", ".join(f"{split} {name} {result[split][name]:.4f}"
                           for split in ("valid", "test") if name in result.get(split, {}))
        logging.info("%s is finished (step %d of %d%s): its results are in status.json and "
                     "metrics.jsonl there; to train it again, use another --workdir or remove "
                     "this one", run.path, result.get("step", self.t.steps), self.t.steps,
                     f"; {scores}" if scores else "")
