"""Loading a trained run for sampling, evaluation and diagnostics: its config (with the
defaults of keys added since it was made), its task's record, and a checkpoint that verifies.

Reads only, so it is safe while the run trains. This module stands above `rnnlab.tasks` (the
state to restore onto is the task's model's); the rest of `rnnlab.run` does not.
"""

from __future__ import annotations

import time

import ml_collections
from absl import logging

from rnnlab import models
from rnnlab import config as config_lib
from rnnlab import optim, tasks
from rnnlab.train import state as state_lib
from rnnlab.run import checkpoint as checkpoint_lib
from rnnlab.run import experiment, layout, storage


def load_run(workdir) -> tuple[ml_collections.ConfigDict, dict]:
    """A run's config and its task's record (vocab.json). Keys added to the library since the
    run was made take their defaults (which keep the behaviour from before they existed).

    Raises:
      FileNotFoundError: `workdir` holds no run; layout.RunDirError: its files are corrupt.
    """
    workdir = storage.path(workdir)
    resolved = layout.read_json(workdir / layout.CONFIG_FILE)
    if resolved is None:
        raise FileNotFoundError(f"{workdir} holds no run (no config.json); pass a run's --workdir")
    return with_defaults(resolved), experiment.read_record(workdir)


def with_defaults(resolved: dict) -> ml_collections.ConfigDict:
    """`resolved` (a config as a dict) over the defaults of the schema (`rnnlab.config`)."""
    config = config_lib.get_config()

    def merge(section, values):
        for key, value in values.items():
            if isinstance(value, dict) and isinstance(section.get(key), ml_collections.ConfigDict):
                merge(section[key], value)
            else:
                section[key] = value

    with config.unlocked():
        merge(config, resolved)
    return ml_collections.ConfigDict(config.to_dict())


def load_state(workdir, config: ml_collections.ConfigDict, model: models.Model, *,
               checkpoint: str = "best", attempts: int = 20) -> checkpoint_lib.Restored:
    """A run's newest checkpoint that verifies: "best" (falling back to the last one, with a
    warning, when the run has no usable best), "last", or the one of a step (a number). Reads
    only, so it is safe while the run trains: a checkpoint replaced during the read is looked
    for again.

    Raises:
      FileNotFoundError: no checkpoint (of that step) reads back.
    """
    at_most = int(checkpoint) if str(checkpoint).isdigit() else None
    like = state_lib.init_state(config, model, optim.make_optimizer(config.optim,
                                                                    config.train.steps),
                                tasks.metric_names(config))
    order = [True, False] if checkpoint == "best" else [False]
    for best in order:
        found, skipped = _newest(workdir, config, like, best, at_most, attempts)
        if found is not None:
            break
        if best and skipped:
            logging.warning("%s has no best checkpoint that reads back (%s); using the last "
                            "checkpoint", workdir, "; ".join(skipped))
    if at_most is not None and (found is None or found.step != at_most):
        steps = layout.checkpoint_steps(workdir)
        raise FileNotFoundError(f"{workdir} has no checkpoint of step {at_most} that reads back "
                                f"(its checkpoints: {', '.join(map(str, steps)) or 'none'})")
    if found is None:
        raise FileNotFoundError(f"{workdir} has no checkpoint that reads back yet"
                                + (f" (skipped: {'; '.join(skipped)}; if its config.json or "
                                   "vocab.json was edited, the model they describe no longer "
                                   "fits its checkpoints)" if skipped else "; train first"))
    status = layout.read_status(workdir) or {}
    if best and status.get("best_step") not in (None, found.step):
        logging.warning("%s: status.json reports the best checkpoint at step %s, but step %d "
                        "is the best that reads back", workdir, status["best_step"], found.step)
    return found


def _newest(workdir, config, like, best: bool, at_most: int | None, attempts: int):
    """(the newest checkpoint of ckpt/ or ckpt_best/ that verifies or None, the reasons of
    those skipped), looking again while a save in progress may have replaced one."""
    for _ in range(attempts):
        skipped, found = [], None
        try:  # (listing the steps may meet one that a save is deleting)
            ckpt = checkpoint_lib.Checkpointer(workdir, config.train.keep_checkpoints,
                                               read_only=True)
            try:
                found = ckpt.restore(like, best=best, at_most=at_most,
                                     on_bad=lambda step, why: skipped.append(f"{step}: {why}"))
            finally:
                ckpt.close()
        except OSError as e:
            skipped.append(checkpoint_lib.first_line(e))
        if found is not None or not skipped:
            break
        time.sleep(0.1)  # a save in progress may have replaced it: look again
    return found, skipped
