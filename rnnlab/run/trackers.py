"""Experiment trackers: mirrors of a run's metrics.jsonl in the tools researchers already use,
chosen by `train.trackers` (comma-separated):

- `tensorboard`: event files in the run's tb/ (when tensorboardX is installed; local run
  directories only);
- `mlflow`: an MLflow run (`pip install 'rnnlab[mlflow]'`) at `train.mlflow_uri` (default
  `$MLFLOW_TRACKING_URI`, else MLflow's own), in the experiment `train.mlflow_experiment`
  (default: the name of the run directory's parent, so the trials of a sweep are one
  experiment), named as the run directory, with the resolved config as its params and every
  scalar as a metric `split/name` at its step. Its run id is kept in the run directory
  (mlflow.json): a resume logs on into the same MLflow run.

metrics.jsonl stays the record: a tracker that fails (a server down) costs one warning and is
dropped, never the run. A resumed run logs the steps after its checkpoint again; MLflow keeps
both values of such a step (its history cannot be cut back as metrics.jsonl is).
"""

from __future__ import annotations

import importlib.util
import json
import os
import time

from absl import logging

from rnnlab.run import layout, storage

NAMES = ("tensorboard", "mlflow")
MLFLOW_FILE = "mlflow.json"
_STATUSES = {layout.FINISHED: "FINISHED", layout.DIVERGED: "FAILED",
             layout.INTERRUPTED: "KILLED", layout.RUNNING: "RUNNING"}


def names(config) -> list[str]:
    return [n.strip() for n in config.train.trackers.split(",") if n.strip()]


def check(config) -> str | None:
    """What is wrong with `train.trackers`, or None."""
    for name in names(config):
        if name not in NAMES:
            return (f"train.trackers names {name!r}; the trackers are {', '.join(NAMES)} "
                    "(comma-separated; '' for none)")
        if name == "mlflow" and importlib.util.find_spec("mlflow") is None:
            return "train.trackers names mlflow, which is not installed: pip install -e '.[mlflow]'"
    return None


def open_all(workdir, config, resume_step: int | None) -> list:
    """The trackers `config` names, open at `resume_step` (None: a new run)."""
    out = []
    for name in names(config):
        tracker = _guarded(name, lambda n=name: _OPEN[n](workdir, config, resume_step))
        if tracker is not None:
            out.append(tracker)
    return out


def _guarded(what: str, call):
    try:
        return call()
    except Exception as e:  # noqa: BLE001 (a tracker must never stop the run)
        logging.warning("the %s tracker failed (%s: %s); the run goes on without it "
                        "(metrics.jsonl has everything)", what, type(e).__name__, e)
        return None


class _TensorBoard:
    def __init__(self, writer):
        self.writer = writer

    def write(self, step, split, scalars):
        for name, value in scalars.items():
            self.writer.add_scalar(f"{split}/{name}", float(value), int(step))

    def status(self, status):
        pass

    def close(self):
        self.writer.close()


def _tensorboard(workdir, config, resume_step):
    del config
    if not storage.is_local(workdir) or importlib.util.find_spec("tensorboardX") is None:
        return None  # event files go to local disk only, and only when tensorboardX is there
    import tensorboardX

    # purge_step hides the events a killed run wrote after the checkpoint.
    purge = None if resume_step is None else resume_step + 1
    return _TensorBoard(tensorboardX.SummaryWriter(str(workdir / layout.TB_DIR),
                                                   purge_step=purge))


class _MLflow:
    def __init__(self, client, run_id):
        self.client, self.run_id = client, run_id

    def write(self, step, split, scalars):
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        self.client.log_batch(self.run_id, metrics=[
            Metric(f"{split}/{name}", float(value), now, int(step))
            for name, value in scalars.items()])

    def status(self, status):
        if status in _STATUSES:
            self.client.update_run(self.run_id, status=_STATUSES[status])

    def close(self):
        pass


def _mlflow(workdir, config, resume_step):
    # A server that is down should cost seconds, not MLflow's minutes of retries.
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "1")
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "10")
    from mlflow.entities import Param
    from mlflow.tracking import MlflowClient

    t = config.train
    client = MlflowClient(t.mlflow_uri or None)
    kept = workdir / MLFLOW_FILE
    del resume_step  # (MLflow's history cannot be cut back)
    if kept.exists():
        run_id = json.loads(kept.read_text())["run_id"]
        client.update_run(run_id, status="RUNNING")
        return _MLflow(client, run_id)
    name = t.mlflow_experiment or workdir.parent.name or "rnnlab"
    found = client.get_experiment_by_name(name)
    experiment = found.experiment_id if found else client.create_experiment(name)
    run = client.create_run(experiment, run_name=workdir.name,
                            tags={"rnnlab.workdir": str(workdir)})
    flat = _flatten(json.loads(config.to_json_best_effort()))
    params = [Param(k, str(v)[:6000]) for k, v in flat.items()]
    for start in range(0, len(params), 100):  # (MLflow takes 100 params a batch)
        client.log_batch(run.info.run_id, params=params[start:start + 100])
    storage.write_atomic(kept, json.dumps({"run_id": run.info.run_id,
                                           "tracking_uri": client.tracking_uri}) + "\n")
    return _MLflow(client, run.info.run_id)


def _flatten(tree: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in tree.items():
        if isinstance(v, dict):
            out.update(_flatten(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


_OPEN = {"tensorboard": _tensorboard, "mlflow": _mlflow}


class Mirror:
    """The open trackers of a run; each one that fails is warned about once and dropped."""

    def __init__(self, trackers: list):
        self.trackers = trackers

    def _each(self, method: str, *args):
        for tracker in list(self.trackers):
            if _guarded(type(tracker).__name__.strip("_").lower(),
                        lambda t=tracker: getattr(t, method)(*args) or True) is None:
                self.trackers.remove(tracker)

    def write(self, step, split, scalars):
        self._each("write", step, split, scalars)

    def status(self, status):
        self._each("status", status)

    def close(self):
        self._each("close")
