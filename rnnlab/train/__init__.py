"""Training, the same for every task: `train` one run, or `train_group` several trials as one
vmapped program.

The modules, in the order data flows: `setup` (the task, run directories, optimizer, mesh and
the states to start from), `state` (TrainState) and `step` (one jitted update), `loop`
(`train_and_evaluate`: the steps and the periodic actions of one run), `trials` (vmapped trial
groups around the same loop).
"""

from __future__ import annotations

import ml_collections

from rnnlab import stopping, validation
from rnnlab.run import failures, layout, storage
from rnnlab.train import loop, setup, trials

DivergenceError = setup.DivergenceError
DiskFullError = setup.DiskFullError
PART_WINDOWS = loop.PART_WINDOWS


def train(config: ml_collections.ConfigDict, workdir) -> dict:
    """Trains (or resumes) the run in `workdir`; returns the final valid and test metrics.

    Raises:
      validation.ConfigError: a bad config; layout.RunDirError: a workdir that holds another
        experiment or data, is in use or unusable.
      data.DataError: the data is missing or corrupt.
      DivergenceError: the loss or a gradient became non-finite (the run directory keeps the
        last good checkpoint).
      DiskFullError: the disk filled up (the last committed checkpoint is intact; status
        "interrupted").
      stopping.Interrupted: SIGTERM or Ctrl-C before training began.
    """
    results = train_group([config], [workdir])[0]
    if results.get("status") == layout.DIVERGED:
        raise DivergenceError(results["message"])
    return results


def train_group(configs: list[ml_collections.ConfigDict], workdirs: list) -> list[dict]:
    """Trains trials that share a `group_key` as one program; one result dict per trial.

    Each result is `{"status": "finished", "step": N, "valid": scalars, "test": scalars, ...}`
    (what status.json says), or `{"status": "diverged" | "interrupted", ...}`.
    """
    for config in configs:
        validation.check_config(config)
    if len({validation.group_key(c) for c in configs}) > 1:
        raise validation.ConfigError(
            "these trials differ in more than seed, init and optimizer values; split them with "
            "split_groups"
        )
    with stopping.on_signals() as stop:
        s = setup.Setup(configs, workdirs, stop)
        try:
            todo, states = s.start()
            if todo:
                program = (trials.Group if len(todo) > 1 else loop.Program)(s, todo, states)
                loop.train_and_evaluate(program, program.stack(states))
            return [trial.result or trial.run.status() for trial in s.trials]
        except Exception as e:
            if storage.is_disk_full(e):
                raise DiskFullError(failures.disk_full(
                    [trial.run for trial in s.trials], e, s.checkpoint_bytes,
                    configs[0].train.keep_checkpoints)) from None
            raise
        finally:
            s.close()
