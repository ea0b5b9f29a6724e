"""The experiment a run directory holds: its config (config.json) and its task's record with
the data's fingerprint (vocab.json), and whether a config or data is that same experiment.

A run is resumed only by the config it was made with (`RESUMABLE_KEYS` aside, which change
bookkeeping, not the computation) and on the data it was trained on; anything else would mix
two experiments in one directory, so it is refused with the keys or files that differ.
"""

from __future__ import annotations

import hashlib
import json

import ml_collections

from rnnlab import config as config_lib
from rnnlab import optim
from rnnlab.run import layout, storage

RunDirError = layout.RunDirError
# vocab.json's entries besides the task's record: the data's digest, and the record's own.
FINGERPRINT, RECORD_DIGEST = "fingerprint", "record_digest"

# Keys that may differ when a run is resumed: they change bookkeeping, not the computation.
RESUMABLE_KEYS = {
    "data.dir", "train.log_every", "train.eval_every", "train.ckpt_every",
    "train.keep_checkpoints", "train.sample_length", "train.sample_temperature",
    "train.sample_prime", "train.max_nonfinite", "train.trackers", "train.mlflow_uri",
    "train.mlflow_experiment",
}
# train.steps may grow on resume, unless the learning-rate schedule spans it.
SCHEDULES_OVER_ALL_STEPS = optim.USES_TOTAL_STEPS


def config_diff(old: dict, new: dict, prefix: str = "") -> list[str]:
    """The dotted keys in which two configs (as dicts) differ, sorted."""
    out = []
    for k in sorted(set(old) | set(new)):
        a, b = old.get(k), new.get(k)
        if isinstance(a, dict) and isinstance(b, dict):
            out += config_diff(a, b, f"{prefix}{k}.")
        elif a != b:
            out.append(f"{prefix}{k}")
    return out


def check_config(workdir, config: ml_collections.ConfigDict) -> dict | None:
    """Writes `config` as the run's config.json, refusing a directory that holds a run of
    another config; returns the config.json found there (None for a new run).

    Raises:
      RunDirError: config.json is unreadable, differs in a key that changes the computation,
        or says the run trained past `config.train.steps`.
    """
    path = storage.path(workdir) / layout.CONFIG_FILE
    resolved = json.loads(config.to_json_best_effort())
    try:
        old = layout.read_json(path)
    except RunDirError as e:
        raise RunDirError(f"{e}: it cannot be compared with this run's config. If "
                          f"{path.parent} holds this same experiment, delete that file and "
                          "rerun to resume; otherwise use a new --workdir") from e
    if old is not None:
        allowed = set(RESUMABLE_KEYS)
        if config.optim.schedule not in SCHEDULES_OVER_ALL_STEPS:
            allowed.add("train.steps")
        changed = [k for k in config_diff(_with_new_keys(old), resolved) if k not in allowed]
        if changed:
            raise RunDirError(
                f"{path.parent} holds a run with a different config (differs in: "
                f"{', '.join(changed)}); resuming it would mix two experiments. Use a new "
                "--workdir, or rerun with the same config to resume."
            )
        _check_steps(path.parent, config.train.steps)
    if old != resolved:
        storage.write_atomic(path, json.dumps(resolved, indent=2, sort_keys=True) + "\n")
    return old


def _with_new_keys(old: dict) -> dict:
    """`old` (a config.json) with the keys the schema gained since it was written, at their
    defaults: a new key's default is what the runs before it did."""
    def merge(defaults: dict, values: dict) -> dict:
        return {**defaults, **{k: merge(defaults[k], v) if isinstance(v, dict) and isinstance(
            defaults.get(k), dict) else v for k, v in values.items()}}
    return merge(json.loads(config_lib.get_config().to_json_best_effort()), old)


def _check_steps(workdir, steps: int) -> None:
    """config.json describes what the run did: it never ends before the step it reached."""
    reached = max(layout.checkpoint_steps(workdir), default=0)
    if steps < reached:
        raise RunDirError(
            f"{workdir} has trained to step {reached}, past train.steps={steps}: pass "
            f"train.steps >= {reached} to resume it (or the same steps to see its results), or "
            "a new --workdir to start over")


def read_record(workdir) -> dict:
    """What the run's task keeps in vocab.json (its vocabulary, labels, ...), checked against
    the digest written with it.

    Raises:
      FileNotFoundError: no vocab.json; RunDirError: it is not what the run wrote.
    """
    path = storage.path(workdir) / layout.VOCAB_FILE
    again = ("put back the original, or delete it and rerun the training command to have it "
             "written again from the data (a changed corpus is then caught by the checkpoints)")
    try:
        record = layout.read_json(path)
    except RunDirError as e:
        raise RunDirError(f"{e}: {again}") from e
    if record is None:
        raise FileNotFoundError(f"{workdir} holds no run (no {layout.VOCAB_FILE}); pass a run's "
                                "--workdir")
    if not isinstance(record, dict):
        raise RunDirError(f"{path} is corrupt (not a JSON object): {again}")
    if record.get(RECORD_DIGEST, record_digest(record)) != record_digest(record):
        raise RunDirError(f"{path} was changed after the run wrote it (it no longer matches the "
                          f"digest written in it): {again}")
    return record


def record_digest(record: dict) -> str:
    """A digest of a task's record (vocab.json without its digests)."""
    kept = {k: v for k, v in record.items() if k not in (FINGERPRINT, RECORD_DIGEST)}
    return hashlib.sha1(json.dumps(kept, sort_keys=True).encode()).hexdigest()


def data_mismatch(workdir, fingerprint: str) -> str | None:
    """Why data with `fingerprint` (`tasks.Task.fingerprint`) is not the data the run in
    `workdir` was trained on, or None when it is."""
    recorded = read_record(workdir).get(FINGERPRINT)
    if recorded in (None, fingerprint):
        return None
    return (f"the data differs from the data {workdir} was trained on (a changed file, or "
            "pydoc/python_source from another Python version)")


def check_data(workdir, fingerprint: str, record: dict) -> None:
    """Writes vocab.json (the task's `record` and the data's `fingerprint`) on a run's first
    start; later starts must see the same data.

    Raises:
      RunDirError: the data or vocab.json is not the run's.
    """
    path = storage.path(workdir) / layout.VOCAB_FILE
    old = read_record(workdir) if path.exists() else None
    if old is None:
        written = {**record, FINGERPRINT: fingerprint, RECORD_DIGEST: record_digest(record)}
        storage.write_atomic(path, json.dumps(written, ensure_ascii=False))
    elif old.get(FINGERPRINT) != fingerprint:
        raise RunDirError(
            f"the corpus differs from the data {path.parent} was trained on (a changed file, "
            "or pydoc/python_source from another Python version); use a new --workdir"
        )
    elif record_digest(old) != record_digest(record):
        raise RunDirError(
            f"{path} does not match the data's vocabulary and labels (it was changed after "
            "the run wrote it): put back the original, or delete it and rerun to have it "
            "written again from the data")
