"""MLflow as a tracker (`train.trackers=mlflow`), read back with MLflow's own client from a
local tracking server that the tests start (SQLite backend store); a server that is down costs
a warning, not the run."""

import importlib.util
import json
import socket
import subprocess
import sys

import pytest

from rnnlab import layout, train, validation
from rnnlab.run import trackers
from test_train import tiny_config, wait_until_serving

# (the test extra has mlflow; CI installs it). Imported by the tests that use it: the 3 s of
# its import are not paid by every test worker that collects this file.
pytestmark = pytest.mark.skipif(importlib.util.find_spec("mlflow") is None,
                                reason="mlflow is not installed")


def mlflow_client(url):
    from mlflow.tracking import MlflowClient

    return MlflowClient(url)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    root = tmp_path_factory.mktemp("mlflow")
    port = free_port()
    log = open(root / "server.log", "w")
    proc = subprocess.Popen(
        [sys.executable, "-m", "mlflow", "server", "--backend-store-uri",
         f"sqlite:///{root / 'mlflow.db'}", "--default-artifact-root", str(root / "artifacts"),
         "--host", "127.0.0.1", "--port", str(port), "--workers", "1"],
        stdout=log, stderr=log)
    url = f"http://127.0.0.1:{port}"
    wait_until_serving(f"{url}/health", proc, 180, root / "server.log")
    yield url
    proc.terminate()
    proc.wait(timeout=60)


TRACKED = {"train.steps": 12, "train.log_every": 3, "train.eval_every": 6}


def test_every_scalar_and_the_config_reach_mlflow_and_a_sweep_is_one_experiment(
        server, tmp_path):
    sweep = tmp_path / "my_sweep"
    for i, lr in enumerate((1e-2, 3e-3)):
        config = tiny_config(**TRACKED, **{"optim.lr": lr, "train.trackers": "mlflow",
                                           "train.mlflow_uri": server})
        train.train(config, sweep / f"trial{i}")
    client = mlflow_client(server)
    experiment = client.get_experiment_by_name("my_sweep")
    runs = {r.info.run_name: r for r in client.search_runs([experiment.experiment_id])}
    assert sorted(runs) == ["trial0", "trial1"]
    for name, run in runs.items():
        workdir = sweep / name
        assert json.loads((workdir / trackers.MLFLOW_FILE).read_text())["run_id"] == \
            run.info.run_id
        assert run.info.status == "FINISHED"
        assert run.data.params["model.cell"] == "lstm"
        assert float(run.data.params["optim.lr"]) == (1e-2 if name == "trial0" else 3e-3)
        logged = layout.read_metrics(workdir)
        for split, metric in (("train", "loss"), ("valid", "bpc"), ("test", "bpc")):
            history = client.get_metric_history(run.info.run_id, f"{split}/{metric}")
            assert sorted((m.step, m.value) for m in history) == sorted(
                (m["step"], m[metric]) for m in logged if m["split"] == split)


def test_a_resume_logs_on_into_the_same_mlflow_run(server, tmp_path):
    config = tiny_config(**TRACKED, **{"train.trackers": "mlflow", "train.mlflow_uri": server,
                                       "train.mlflow_experiment": "resumed"})
    short = tiny_config(**{**TRACKED, "train.steps": 6}, **{
        "train.trackers": "mlflow", "train.mlflow_uri": server,
        "train.mlflow_experiment": "resumed"})
    train.train(short, tmp_path)
    train.train(config, tmp_path)
    client = mlflow_client(server)
    [run] = client.search_runs([client.get_experiment_by_name("resumed").experiment_id])
    steps = {m.step for m in client.get_metric_history(run.info.run_id, "train/loss")}
    assert steps == {3, 6, 9, 12} and run.info.status == "FINISHED"


def test_a_tracker_that_fails_costs_a_warning_not_the_run(tmp_path, caplog):
    down = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    config = tiny_config(**TRACKED, **{"train.trackers": "tensorboard,mlflow",
                                       "train.mlflow_uri": down})
    result = train.train(config, tmp_path)
    assert result["status"] == "finished"
    warned = [r.getMessage() for r in caplog.records if "tracker failed" in r.getMessage()]
    assert len(warned) == 1 and "mlflow" in warned[0] and "goes on without it" in warned[0]
    assert max(m["step"] for m in layout.read_metrics(tmp_path)) == 12


def test_tracker_names_are_checked():
    with pytest.raises(validation.ConfigError, match="train.trackers names 'wandb'; the "
                                                     "trackers are tensorboard, mlflow"):
        validation.check_config(tiny_config(**{"train.trackers": "mlflow,wandb"}))
