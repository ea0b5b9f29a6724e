r"""Scores a run's checkpoint on its whole validation and test splits, as its final evaluation
does, optionally with other evaluation settings (a beam for a seq2seq run, say).

    python -m rnnlab.evaluate --workdir=runs/addition [--checkpoint=best|last] \
        [--eval.beam_size=4] [--eval.length_penalty=0.6]
    python -m rnnlab.evaluate --workdir=runs/classify --data.path=OTHER_FILE.csv

Prints one JSON object: {"step": N, "checkpoint": "best", "valid": {...}, "test": {...}}.
With `--data.path` (a classify or regress run), every example of that labelled file instead,
read as the run's data.path was and encoded with the run's vocabulary and labels:
{"step": N, "checkpoint": ..., "data": FILE, "scores": {...}}. The
run directory is only read (it may be training). The data must be the data the run was trained
on (its fingerprint in vocab.json): other data is refused, unless `--allow_changed_data`, and
then the JSON says so in `data_changed`.
"""

from __future__ import annotations

import json
import sys

import jax
from absl import flags

from rnnlab import data, tasks, validation
from rnnlab.run import checkpoint as checkpoint_lib
from rnnlab.run import experiment, layout, storage
from rnnlab.run import load
from rnnlab.tasks import classify

_WORKDIR = flags.DEFINE_string("workdir", None, "The run directory to evaluate.", required=True)
_CHECKPOINT = flags.DEFINE_enum("checkpoint", "best", ["best", "last"], "Which checkpoint.")
_BEAM = flags.DEFINE_integer("eval.beam_size", None, "seq2seq/vec2seq: the beam (1: greedy).")
_PENALTY = flags.DEFINE_float("eval.length_penalty", None, "Beam search: GNMT's alpha.")
_DATA = flags.DEFINE_string("data.path", None, "classify/regress: score every example of this "
                            "labelled file instead of the run's splits.")
_ALLOW = flags.DEFINE_bool("allow_changed_data", False, "Score data other than the run's own "
                           "(the output says so).")


def evaluate(workdir, *, checkpoint: str = "best", allow_changed_data: bool = False,
             data_path: str | None = None, **eval_settings) -> dict:
    """The run's scores on its whole valid and test splits (`eval_settings`: eval.* keys).

    Raises:
      layout.RunDirError: the data is not the run's own (unless `allow_changed_data`; the
        result's `data_changed` then says how it differs).
    """
    config, record = load.load_run(workdir)
    for key, value in eval_settings.items():
        if value is not None:
            config.eval[key] = value
    validation.check_config(config)
    if data_path is not None:
        return _score_file(workdir, config, record, checkpoint, data_path)
    task = tasks.build(config)
    changed = experiment.data_mismatch(workdir, task.fingerprint)
    if changed and not allow_changed_data:
        raise layout.RunDirError(f"{changed}: its scores would not be the run's; pass "
                                 "--allow_changed_data to score this data anyway")
    restored = load.load_state(workdir, config, tasks.model(config, record),
                               checkpoint=checkpoint)
    out = {"step": restored.step, "checkpoint": checkpoint}
    if changed:
        out["data_changed"] = changed
    for split in ("valid", "test"):
        sums = jax.device_get(jax.jit(lambda p, d, s=split: task.evaluate(p, d, s, None))(
            restored.state.params, task.data))
        out[split] = tasks.base.averages(task, sums)
    return out


def _score_file(workdir, config, record, checkpoint: str, path: str) -> dict:
    if config.task.name not in ("classify", "regress"):
        raise ValueError(f"--data.path scores another labelled file with a classify or regress "
                         f"run; {workdir} is a {config.task.name!r} run")
    restored = load.load_state(workdir, config, tasks.model(config, record),
                               checkpoint=checkpoint)
    return {"step": restored.step, "checkpoint": checkpoint, "data": path,
            "scores": classify.score_file(config, record, restored.state.params, path)}


def main(argv):
    del argv
    checkpoint_lib.quiet_orbax_logs()
    try:
        result = evaluate(_WORKDIR.value, checkpoint=_CHECKPOINT.value,
                          allow_changed_data=_ALLOW.value, data_path=_DATA.value,
                          beam_size=_BEAM.value,
                          length_penalty=_PENALTY.value)
    except (ValueError, FileNotFoundError, data.DataError, storage.StorageError) as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
    print(json.dumps(result))


if __name__ == "__main__":
    from rnnlab import overrides

    overrides.run(main)
