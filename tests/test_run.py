"""The run-directory package `rnnlab.run`: its layering, and a full disk told by the disk (an
OSError's errno, or the room left after a failed save), never by a dependency's message text.

The runs that train, resume, sample and evaluate through it are tested in test_train,
test_faults, test_trust and test_old_runs; these are the package's own claims."""

import errno
import os
import shutil
import subprocess
import sys

import jax.numpy as jnp
import pytest

from rnnlab import sample
from rnnlab.run import checkpoint, failures, load, storage
from test_house import ROOT, imports

# The modules of rnnlab.run that stand below the tasks and models (all but resume and load).
BELOW_TASKS = ("layout", "storage", "verify", "checkpoint", "saves", "experiment", "lock",
               "logs", "failures", "rundir")
ABOVE = ("rnnlab.tasks", "rnnlab.model", "rnnlab.state", "rnnlab.cells", "rnnlab.recurrent",
         "rnnlab.sample", "rnnlab.train", "configs")


def _reach(graph, start):
    seen, todo = set(), [start]
    while todo:
        for m in graph.get(todo.pop(), ()):
            if m not in seen:
                seen.add(m)
                todo.append(m)
    return seen


def test_the_run_files_import_nothing_from_tasks_or_models():
    graph = imports()
    for name in BELOW_TASKS:
        reached = _reach(graph, f"rnnlab.run.{name}")
        assert not [m for m in reached if m.startswith(ABOVE)], (name, sorted(reached))
    # (and the check can fail: load stands above the tasks)
    assert "rnnlab.tasks" in _reach(graph, "rnnlab.run.load")


def test_the_layout_and_the_logs_import_no_jax():
    code = ("import sys\nfrom rnnlab.run import layout, lock, logs, storage\n"
            "print('jax' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         cwd=ROOT, env=dict(os.environ, PYTHONPATH=str(ROOT)), check=True)
    assert out.stdout.strip() == "False"


def test_loading_a_run_keeps_its_old_import_path():
    assert sample.load_run is load.load_run and sample.load_state is load.load_state
    assert sample.with_defaults is load.with_defaults


class _Failed(ValueError):
    """What orbax raises for a failed write (TensorStore's error as a ValueError)."""


STATE = {"w": jnp.arange(1000, dtype=jnp.float32)}


def _failing_save(tmp_path, monkeypatch, free_after: int, text: str):
    """A checkpointer whose save of STATE fails with `_Failed(text)` while waiting, on a disk
    that has plenty of room first and `free_after` bytes once the save failed."""
    ckpt = checkpoint.Checkpointer(tmp_path, 3)
    room = [10**12]
    monkeypatch.setattr(storage, "free_bytes", lambda path: room[0])
    ckpt.save(7, STATE, {})
    ckpt.last.wait_until_finished()  # (the real save commits)

    def fail():
        room[0] = free_after
        raise _Failed(text)

    monkeypatch.setattr(ckpt.last, "wait_until_finished", fail)
    return ckpt


def test_a_save_that_fails_on_a_disk_left_without_room_is_a_full_disk(tmp_path, monkeypatch):
    ckpt = _failing_save(tmp_path, monkeypatch, free_after=100, text="INTERNAL: something")
    with pytest.raises(checkpoint.WriteError) as info:
        ckpt.wait()
    assert info.value.errno == errno.ENOSPC and isinstance(info.value.__cause__, _Failed)
    assert storage.is_disk_full(info.value)
    assert failures.failed_write(info.value) == f"saving the checkpoint {tmp_path}/ckpt/7 failed"


def test_a_save_that_fails_with_room_left_is_not_called_a_full_disk(tmp_path, monkeypatch):
    # Even when the failure's text speaks of a full disk: the disk itself says otherwise.
    text = "RESOURCE_EXHAUSTED: No space left on device [os_error_code='28']"
    ckpt = _failing_save(tmp_path, monkeypatch, free_after=10**12, text=text)
    with pytest.raises(_Failed) as info:
        ckpt.wait()
    assert not storage.is_disk_full(info.value)


def test_a_full_disk_is_known_from_the_errno_anywhere_in_the_chain():
    for code in (errno.ENOSPC, errno.EDQUOT):
        try:
            try:
                raise OSError(code, os.strerror(code), "/x/metrics.jsonl")
            except OSError as e:
                raise RuntimeError("while logging") from e
        except RuntimeError as outer:
            assert storage.is_disk_full(outer)
            assert failures.failed_write(outer) == "writing /x/metrics.jsonl failed"
    assert not storage.is_disk_full(OSError(errno.EACCES, "Permission denied"))
    assert not storage.is_disk_full(ValueError("No space left on device"))


PROBE = r"""
import sys
import jax.numpy as jnp
import numpy as np
from rnnlab.run import checkpoint, failures, storage

real, calls = storage.free_bytes, []
def once(path):  # the check before the save passes: the disk fills while it writes
    calls.append(path)
    return 10**12 if len(calls) == 1 else real(path)
storage.free_bytes = once
ckpt = checkpoint.Checkpointer(sys.argv[1], 3)
state = {"w": jnp.asarray(np.random.default_rng(0).standard_normal(2**21), jnp.float32)}
try:
    ckpt.save(3, state, {})
    ckpt.wait()
    print("saved")
except checkpoint.WriteError as e:
    print("full:", failures.failed_write(e))
"""


@pytest.mark.skipif(shutil.which("unshare") is None, reason="needs unshare (a private tmpfs)")
def test_a_checkpoint_that_fills_a_real_disk_is_reported_as_a_full_disk(tmp_path):
    disk = tmp_path / "disk"
    disk.mkdir()
    (tmp_path / "probe.py").write_text(PROBE)
    # 8 MiB of random floats (they do not compress) on a 4 MiB file system.
    script = (f"mount -t tmpfs -o size=4m tmpfs {disk} && "
              f"{sys.executable} {tmp_path / 'probe.py'} {disk}/run")
    proc = subprocess.run(["unshare", "-rm", "sh", "-c", script], capture_output=True,
                          text=True, timeout=300, cwd=ROOT,
                          env=dict(os.environ, JAX_PLATFORMS="cpu", PYTHONPATH=str(ROOT)))
    if "mount" in proc.stderr and proc.returncode:
        pytest.skip(f"no private mount here: {proc.stderr[-300:]}")
    assert proc.stdout.strip().splitlines()[-1:] == [
        f"full: saving the checkpoint {disk}/run/ckpt/3 failed"], proc.stderr[-3000:]
