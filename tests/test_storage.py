"""Run directories in a bucket (gs://), against a local GCS emulator: the same files, the same
resume, through gcsfs (run-directory files) and tensorstore (orbax's arrays)."""

import importlib.util
import os
import pathlib
import socket
import subprocess
import sys

import pytest

from rnnlab import storage
from test_group import assert_close_runs
from test_parallel import SHORT, one_device_run, run_processes
from test_train import assert_same_run, kill_and_resume, straight_run, wait_until_serving

BUCKET = "rnnlab-test"


@pytest.fixture(scope="module")
def gcs(tmp_path_factory):
    """A GCS emulator on a free port; the environment that points gcsfs and tensorstore at it."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    log = open(tmp_path_factory.mktemp("gcs") / "emulator.log", "w")
    server = subprocess.Popen(
        [sys.executable, str(pathlib.Path(__file__).with_name("gcs_emulator.py")), str(port),
         BUCKET], stdout=log, stderr=log)
    url = f"http://127.0.0.1:{port}"
    wait_until_serving(f"{url}/storage/v1/b", server, 30, log.name)
    env = {"STORAGE_EMULATOR_HOST": url, "TENSORSTORE_GCS_HTTP_URL": url,
           "GOOGLE_CLOUD_PROJECT": "test",
           "GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT": "false"}  # its bucket-type probe needs real GCP
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)  # this process reads the bucket too
    yield env
    for k, v in saved.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v
    server.terminate()
    server.wait()


def test_a_gs_workdir_is_a_url_not_a_path(monkeypatch):
    assert str(storage.path("gs://b/runs/x")) == "gs://b/runs/x"
    assert not storage.is_local(storage.path("gs://b/x")) and storage.is_local(storage.path("r"))
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)  # no gcsfs, no TF
    with pytest.raises(storage.StorageError, match=r"pip install 'rnnlab\[gcs\]'"):
        storage.path("gs://b/runs/x")
    assert storage.is_local(storage.path("runs/x"))


@pytest.mark.slow
def test_a_run_in_a_bucket_resumes_after_sigkill_bitwise_like_a_local_run(
        gcs, tmp_path, tmp_path_factory):
    remote = f"gs://{BUCKET}/runs/killed"
    kill_and_resume(remote, env=gcs, log=tmp_path / "killed.log")
    assert_same_run(straight_run(tmp_path_factory), storage.path(remote))
    sampled = subprocess.run(
        [sys.executable, "-m", "rnnlab.sample", f"--workdir={remote}", "--length=20"],
        env=dict(os.environ, JAX_PLATFORMS="cpu"), capture_output=True, text=True, timeout=120)
    assert sampled.returncode == 0, sampled.stderr[-2000:]


@pytest.mark.slow
def test_two_processes_share_a_bucket_workdir_like_hosts_of_a_tpu_slice(
        gcs, tmp_path, tmp_path_factory):
    local = one_device_run(tmp_path_factory)  # (shared with the two-process test)
    remote = f"gs://{BUCKET}/runs/two"
    results = run_processes([remote, remote], *SHORT, env=gcs,
                            logs=[tmp_path / "p0.log", tmp_path / "p1.log"])
    for code, log in results:
        assert code == 0, log[-3000:]
    assert_close_runs(local, storage.path(remote), rtol=1e-4)
    assert sorted(p.name for p in (storage.path(remote) / "ckpt").iterdir()) == ["20", "40"]
