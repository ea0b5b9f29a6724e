"""Fault injection: kills, corrupt and missing files, a full disk, signals at awkward moments,
bad trials in sweeps. Each test injects its fault at the moment where it once lost data, and
checks that the run recovers to bitwise the same result, or stops with one clear line that names
the file and the way out, and never restarts or changes a result silently."""

import json
import os
import pathlib
import shutil
import signal
import subprocess
import sys
import threading
import time

import jax
import numpy as np
import pytest

from rnnlab import layout, rundir, sample, storage, train, validation
from rnnlab.run import verify
from test_train import (ROOT, deterministic_metrics, restore_params, run_main, tiny_config,
                        wait_for_step)

# Checkpoints at 4, 8 and 12 (the final one); the best is saved at every evaluation (6, 12).
RUN = {"train.steps": 12, "train.ckpt_every": 4, "train.eval_every": 6,
       "train.keep_checkpoints": 3}


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """One finished tiny run, copied by the tests that damage it."""
    workdir = tmp_path_factory.mktemp("finished") / "run"
    train.train(tiny_config(**RUN), workdir)
    return workdir


def copy_run(src, tmp_path, name="run"):
    dst = tmp_path / name
    shutil.copytree(src, dst, ignore=shutil.ignore_patterns(layout.LOCK_FILE))
    return dst


def files(workdir):
    """The run's files (not checkpoints) by name, with their bytes; of metrics.jsonl, the
    lines without their timings."""
    out = {p.name: p.read_bytes() for p in workdir.iterdir() if p.is_file()
           and p.name not in (layout.LOCK_FILE, layout.METRICS_FILE)}
    out[layout.METRICS_FILE] = deterministic_metrics(workdir)
    return out


def assert_same_state(a_dir, b_dir, *, best=False):
    a, meta_a = restore_params(a_dir, best=best)
    b, meta_b = restore_params(b_dir, best=best)
    jax.tree_util.tree_map(np.testing.assert_array_equal, a, b)
    assert meta_a == meta_b


def no_traceback(proc):
    assert "Traceback" not in proc.stderr, proc.stderr[-3000:]
    return [line for line in proc.stderr.splitlines() if line.startswith("error:")]


# --------------------------------------------------------------- 1. the final checkpoint


def test_finished_is_written_only_once_its_checkpoints_have_committed(tmp_path, monkeypatch):
    seen = []
    set_status = rundir.RunDir.set_status

    def spy(self, status, step, **extra):
        if status == layout.FINISHED:  # what a kill -9 right now would leave on disk
            seen.append((step, extra["best_step"], layout.checkpoint_steps(self.path),
                         layout.checkpoint_steps(self.path, best=True)))
        set_status(self, status, step, **extra)

    monkeypatch.setattr(rundir.RunDir, "set_status", spy)
    train.train(tiny_config(**RUN), tmp_path / "run")
    [(step, best_step, steps, best_steps)] = seen
    assert step in steps and best_step in best_steps
    status = layout.read_status(tmp_path / "run")
    assert status["committed_step"] == 12 and status["best_step"] == 12


def test_a_finished_run_whose_final_checkpoints_never_committed_is_repaired(finished, tmp_path):
    """What a kill -9 between "finished" and the commit left before: only tmp directories."""
    run = copy_run(finished, tmp_path)
    for name in (layout.CKPT_DIR, layout.BEST_DIR):
        (run / name / "12").rename(run / name / "12.orbax-checkpoint-tmp")
    assert layout.result(run) is None  # the launcher sees a run to repair, not a result
    before = files(run)
    train.train(tiny_config(**RUN), run)
    assert layout.checkpoint_steps(run) == [4, 8, 12]
    assert_same_state(finished, run)
    assert_same_state(finished, run, best=True)
    assert files(run) == before  # the same metrics, samples and status, rebuilt bitwise
    assert sample.sample_text(run, length=5) == sample.sample_text(finished, length=5)


# ------------------------------------------------------ 3. corrupt and missing checkpoints


def _data_file(step_dir):
    """The largest array data file of a checkpoint."""
    return max((p for p in (step_dir / "state").rglob("*") if p.is_file() and p.parent.name == "d"),
               key=lambda p: p.stat().st_size)


def _truncate(path):
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def _random_bytes(path):
    data = bytearray(path.read_bytes())
    middle = len(data) // 2
    data[middle: middle + 64] = np.random.default_rng(0).bytes(64)
    path.write_bytes(bytes(data))


def _change_meta(step_dir):
    meta = step_dir / "meta" / "metadata"
    meta.write_text(meta.read_text().replace('"best_step": 12', '"best_step": 11'))


@pytest.mark.parametrize("damage", ["truncated", "random_bytes", "meta_edited"])
def test_a_corrupt_newest_checkpoint_is_skipped_and_the_run_rebuilt_bitwise(finished, tmp_path,
                                                                            damage, caplog):
    run = copy_run(finished, tmp_path)
    newest = run / layout.CKPT_DIR / "12"
    {"truncated": lambda: _truncate(_data_file(newest)),
     "random_bytes": lambda: _random_bytes(_data_file(newest)),
     "meta_edited": lambda: _change_meta(newest)}[damage]()
    before = files(run)
    train.train(tiny_config(**RUN), run)
    warnings = "\n".join(r.getMessage() for r in caplog.records)
    assert f"checkpoint {newest} is skipped" in warnings
    assert "resuming from step 8" in warnings
    moved = list((run / layout.CORRUPT_DIR).iterdir())
    assert [p.name.split("-")[:2] for p in moved] == [["ckpt", "12"]]  # kept, not deleted
    assert_same_state(finished, run)
    assert files(run) == before


def test_flipped_bits_never_change_a_result(finished, tmp_path):
    """Single flipped bits in the newest checkpoint: detected where they change a value (the
    run then falls back), harmless where they do not; the result is the same either way."""
    detected = 0
    for i, position in enumerate((0.3, 0.5, 0.7)):
        run = copy_run(finished, tmp_path, f"run{i}")
        path = _data_file(run / layout.CKPT_DIR / "12")
        data = bytearray(path.read_bytes())
        data[int(len(data) * position)] ^= 0x10
        path.write_bytes(bytes(data))
        train.train(tiny_config(**RUN), run)
        detected += (run / layout.CORRUPT_DIR).exists()
        assert_same_state(finished, run)
    assert detected >= 1


def test_the_checksum_sees_any_single_changed_element():
    tree = {"a": np.arange(12, dtype=np.float32).reshape(3, 4), "b": np.zeros(5, np.int32),
            "c": np.ones((2,), jax.numpy.bfloat16), "d": np.array([True, False])}
    base = verify.checksum(tree)
    assert base == verify.checksum(jax.tree_util.tree_map(np.copy, tree))
    for name, leaf in tree.items():
        for index in np.ndindex(leaf.shape):
            changed = {k: np.copy(v) for k, v in tree.items()}
            flat = changed[name].view(np.uint8 if leaf.dtype == bool else
                                      {2: np.uint16, 4: np.uint32}[leaf.dtype.itemsize])
            flat[index] ^= 1  # the lowest bit of one element
            assert verify.checksum(changed) != base, (name, index)
    swapped = {"a": tree["a"].T.copy(), **{k: v for k, v in tree.items() if k != "a"}}
    assert verify.checksum(swapped) != base  # same values, other shape


def test_the_checksum_in_host_memory_is_the_jitted_one_term_for_term():
    """A CPU run checksums in NumPy (no program per leaf shape); a sharded or accelerator one
    with the jitted reduction: the same value for every kind of leaf."""
    rng = np.random.default_rng(0)
    tree = {"f32": rng.normal(size=(37, 11)).astype(np.float32),
            "bf16": rng.normal(size=(5,)).astype(jax.numpy.bfloat16),
            "f16": rng.normal(size=(2, 3)).astype(np.float16),
            "i8": rng.integers(-128, 127, (7,), dtype=np.int8), "u8": np.arange(9, dtype=np.uint8),
            "i64": np.arange(4, dtype=np.int64), "bool": rng.random((3, 3)) > 0.5,
            "c64": (rng.normal(size=(4,)) + 1j * rng.normal(size=(4,))).astype(np.complex64),
            "scalar": np.float32(3.5), "empty": np.zeros((0, 3), np.float32),
            "key": jax.random.key(3), "raw_key": jax.random.PRNGKey(4),
            "big": rng.normal(size=(300, 257)).astype(np.float32)}
    on_device = jax.tree_util.tree_map(jax.numpy.asarray, tree)
    leaves = jax.tree_util.tree_leaves(on_device)
    np.testing.assert_array_equal(verify._host_lanes(leaves), np.asarray(verify._lanes(leaves)))
    assert all(verify._in_host_memory(x) for x in leaves)  # so checksum() takes NumPy's
    assert verify.checksum(tree) == verify.checksum(on_device)


def test_a_deleted_ckpt_dir_is_refused_not_restarted(finished, tmp_path):
    run = copy_run(finished, tmp_path)
    shutil.rmtree(run / layout.CKPT_DIR)
    (run / layout.STATUS_FILE).unlink()  # nothing left to say the run got anywhere but metrics
    before = files(run)
    with pytest.raises(rundir.RunDirError, match=r"ckpt is missing.*To start over, delete"):
        train.train(tiny_config(**RUN), run)
    assert files(run) == before


def test_every_checkpoint_corrupt_is_refused(finished, tmp_path):
    run = copy_run(finished, tmp_path)
    for step in (4, 8, 12):
        _truncate(_data_file(run / layout.CKPT_DIR / str(step)))
    metrics = (run / layout.METRICS_FILE).read_bytes()
    with pytest.raises(rundir.RunDirError, match=r"no checkpoint .* reads back.*To start over"):
        train.train(tiny_config(**RUN), run)
    assert (run / layout.METRICS_FILE).read_bytes() == metrics
    assert len(list((run / layout.CORRUPT_DIR).iterdir())) == 3


# ------------------------------------------------------------------ 4. files in place


class _Crash(Exception):
    pass


def test_a_crash_while_a_file_is_replaced_leaves_the_old_file(tmp_path, monkeypatch):
    path = storage.path(tmp_path / "metrics.jsonl")
    path.write_text('{"step": 1, "split": "train"}\n{"step": 2, "split": "train"}\n')

    def half_then_crash(fd, data):
        os.write(fd, data[: len(data) // 2])
        raise _Crash

    monkeypatch.setattr(storage, "_write_all", half_then_crash)
    from rnnlab import metrics

    with pytest.raises(_Crash):  # a resume from step 1 rewrites the file, and dies doing it
        metrics.MetricsWriter(tmp_path, resume_step=1)
    assert [m["step"] for m in layout.read_metrics(tmp_path)] == [1, 2]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["metrics.jsonl"]


def test_a_truncated_status_of_a_finished_run_is_rebuilt_without_a_second_evaluation(
        finished, tmp_path):
    run = copy_run(finished, tmp_path)
    status = (run / layout.STATUS_FILE).read_bytes()
    (run / layout.STATUS_FILE).write_bytes(status[:25])
    metrics = (run / layout.METRICS_FILE).read_bytes()
    result = train.train(tiny_config(**RUN), run)
    assert result["status"] == "finished"
    assert (run / layout.METRICS_FILE).read_bytes() == metrics  # no duplicate final lines
    assert json.loads((run / layout.STATUS_FILE).read_text()) == json.loads(status)


@pytest.mark.parametrize("name", [layout.CONFIG_FILE, layout.VOCAB_FILE])
def test_a_truncated_config_or_vocab_is_named(finished, tmp_path, name):
    run = copy_run(finished, tmp_path)
    text = (run / name).read_text()
    (run / name).write_text(text[: len(text) // 2])
    with pytest.raises(rundir.RunDirError, match=rf"{run / name} is corrupt .*delete"):
        train.train(tiny_config(**RUN), run)
    with pytest.raises(rundir.RunDirError, match=rf"{run / name} is corrupt"):
        sample.sample_text(run, length=5)


# ---------------------------------------------------------------- 7. one-line errors


def test_bad_data_and_fractions_are_config_errors(tmp_path):
    for text in ("", "0123456789"):
        corpus = tmp_path / f"c{len(text)}.txt"
        corpus.write_text(text)
        config = tiny_config(**{"data.name": "text", "data.path": str(corpus),
                                "data.max_chars": 0})
        with pytest.raises(validation.ConfigError, match=r"split of a corpus of \d+ characters "
                                                         r"is empty"):
            train.train(config, tmp_path / "run")
    for valid, test in ((float("nan"), 0.05), (-0.1, 0.05), (0.6, 0.5)):
        config = tiny_config(**{"data.valid_fraction": valid, "data.test_fraction": test})
        with pytest.raises(validation.ConfigError, match=r"data\.(valid|test)_fraction"):
            validation.check_config(config)
    (tmp_path / "a_file").write_text("x")
    with pytest.raises(rundir.RunDirError, match="is a file, not a directory"):
        train.train(tiny_config(), tmp_path / "a_file")


def _read_only(directory, command):
    """`command` (a list) run with `directory` mounted read-only, in a private mount namespace
    (no root needed: a user namespace)."""
    script = (f'mount --bind "{directory}" "{directory}" && '
              f'mount -o remount,bind,ro "{directory}" && exec "$@"')
    return subprocess.run(["unshare", "-rm", "sh", "-c", script, "sh", *command], cwd=ROOT,
                          capture_output=True, text=True, timeout=300,
                          env=dict(os.environ, JAX_PLATFORMS="cpu"))


def test_the_cli_gives_one_line_and_exit_code_2(finished, tmp_path):
    empty = tmp_path / "empty.txt"
    empty.write_text("")
    proc = run_main(tmp_path / "r", "--config.data.name=text", f"--config.data.path={empty}")
    assert proc.returncode == 2 and len(no_traceback(proc)) == 1
    assert "train split of a corpus of 0 characters is empty" in proc.stderr
    run = copy_run(finished, tmp_path)
    args = [f"--config.{k}={v}" for k, v in {**RUN, "data.max_chars": 12000,
                                              "model.hidden_size": 16}.items()]
    proc = _read_only(run, [sys.executable, "-m", "rnnlab.main",
                            "--config=configs/quickstart.py:smoke", f"--workdir={run}", *args,
                            "--config.train.log_every=3", "--config.train.sample_length=20",
                            "--config.optim.lr=0.01", "--config.optim.schedule=constant"])
    assert proc.returncode == 2, proc.stderr[-2000:]
    [line] = no_traceback(proc)
    assert f"cannot write to {run}" in line and "Read-only file system" in line
    sweep = subprocess.run([sys.executable, "-m", "launch.sweep",
                            "--config=configs/quickstart.py:smoke",
                            f"--workdir={tmp_path / 'sweep'}", "--max_parallel=0"],
                           cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert sweep.returncode == 2 and "--max_parallel must be >= 1" in sweep.stderr
    assert not (tmp_path / "sweep").exists()


# ---------------------------------------------------------------- 6. a full disk


FILL_SCRIPT = r"""
set -u
mount -t tmpfs -o size=64m tmpfs "$DISK"
cd "$ROOT"
"$PYTHON" -m rnnlab.main --config=configs/quickstart.py:smoke --workdir="$DISK/run" $ARGS \
    > "$OUT/first.log" 2>&1 &
pid=$!
# Past its second checkpoint, the run is stopped, the disk filled, and the run continued.
until grep -q '"step": 25,' "$DISK/run/metrics.jsonl" 2>/dev/null; do sleep 0.01; done
kill -STOP $pid || exit 3
dd if=/dev/zero of="$DISK/filler" bs=1M 2>/dev/null
kill -CONT $pid
wait $pid
echo $? > "$OUT/first.rc"
cp -r "$DISK/run" "$OUT/full"
rm "$DISK/filler"
"$PYTHON" -m rnnlab.main --config=configs/quickstart.py:smoke --workdir="$DISK/run" $ARGS \
    > "$OUT/second.log" 2>&1
echo $? > "$OUT/second.rc"
cp -r "$DISK/run" "$OUT/freed"
"""

DISK_RUN = {"train.steps": 80, "train.ckpt_every": 10, "train.log_every": 5,
            "train.eval_every": 30, "data.max_chars": 12000, "model.hidden_size": 16}


@pytest.mark.slow
def test_a_full_disk_stops_with_one_message_and_a_rerun_resumes_bitwise(tmp_path):
    args = " ".join(f"--config.{k}={v}" for k, v in DISK_RUN.items())
    disk, out = tmp_path / "disk", tmp_path / "out"
    disk.mkdir()
    out.mkdir()
    env = dict(os.environ, JAX_PLATFORMS="cpu", DISK=str(disk), OUT=str(out), ROOT=str(ROOT),
               PYTHON=sys.executable, ARGS=args)
    proc = subprocess.run(["unshare", "-rm", "sh", "-c", FILL_SCRIPT], env=env,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    first = (out / "first.log").read_text()
    assert (out / "first.rc").read_text().strip() == "1", first[-3000:]
    assert "Traceback" not in first, first[-5000:]
    [line] = [line for line in first.splitlines() if line.startswith("error:")]
    assert line.startswith("error: disk full:") and "MiB were free" in line
    assert "The last checkpoint is intact (step " in line and "rerun the same command" in line
    status = layout.read_status(out / "full")
    assert status["status"] == "interrupted"
    kept = int(line.split("intact (step ")[1].split()[0])
    assert kept == layout.checkpoint_steps(out / "full")[-1]
    assert (out / "second.rc").read_text().strip() == "0", (out / "second.log").read_text()[-3000:]
    straight = run_main(tmp_path / "straight", *(f"--config.{k}={v}" for k, v in DISK_RUN.items()))
    assert straight.returncode == 0, straight.stderr[-2000:]
    assert_same_state(tmp_path / "straight", out / "freed")
    keys = ("step", "split", "loss", "bpc", "accuracy", "grad_norm")
    assert ([{k: m.get(k) for k in keys} for m in layout.read_metrics(tmp_path / "straight")] ==
            [{k: m.get(k) for k in keys} for m in layout.read_metrics(out / "freed")])


def test_a_save_that_would_not_fit_is_not_started(tmp_path, monkeypatch):
    monkeypatch.setattr(storage, "free_bytes", lambda path: 1000)
    with pytest.raises(train.DiskFullError, match=r"writing .*ckpt failed\. 0\.0 MiB were free; "
                                                  r"a checkpoint of this run takes about"):
        train.train(tiny_config(**RUN), tmp_path / "run")
    assert layout.read_status(tmp_path / "run")["status"] == "interrupted"
    assert not list((tmp_path / "run" / layout.CKPT_DIR).iterdir())  # no half-written save


# ------------------------------------------------------------ 8. reading a training run


def test_sampling_while_the_run_trains_and_replaces_its_best(tmp_path):
    config = tiny_config(**{"train.steps": 60, "train.eval_every": 3, "train.eval_batches": 1,
                            "train.ckpt_every": 3, "train.sample_length": 0,
                            "train.log_every": 50})
    workdir = tmp_path / "run"
    worker = threading.Thread(target=train.train, args=(config, workdir))
    worker.start()
    samples, errors = 0, []
    try:
        while worker.is_alive():
            if layout.checkpoint_steps(workdir, best=True):
                try:
                    sample.sample_text(workdir, length=3)
                    samples += 1
                except Exception as e:  # noqa: BLE001 - counted
                    errors.append(repr(e))
            time.sleep(0.01)
    finally:
        worker.join()
    assert not errors, errors[:3]
    assert samples >= 5


def test_sample_checks_its_arguments_and_names_unknown_prime_characters(finished, caplog):
    with pytest.raises(ValueError, match="temperature must be a number >= 0"):
        sample.sample_text(finished, temperature=float("nan"))
    text = sample.sample_text(finished, prime="ab\u2603", length=3)
    assert text.startswith("ab\u2603")
    assert "'\u2603'" in caplog.text and "outside the vocabulary" in caplog.text


# ------------------------------------------------------------- 9. signals before training


def test_sigterm_while_the_corpus_loads_stops_at_once(tmp_path):
    fifo = tmp_path / "corpus.fifo"
    os.mkfifo(fifo)  # a source that never delivers
    log = tmp_path / "run.log"
    proc = run_main(tmp_path / "run", "--config.data.name=text", f"--config.data.path={fifo}",
                    wait=False, log=log)
    deadline = time.time() + 120
    while "run directory:" not in log.read_text():
        assert proc.poll() is None and time.time() < deadline, log.read_text()[-2000:]
        time.sleep(0.05)
    time.sleep(0.5)  # now blocked opening the FIFO
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=30) == 0
    text = log.read_text()
    assert "before training began; nothing to save" in text and "Traceback" not in text
    assert layout.read_status(tmp_path / "run") is None


# ------------------------------------------------------------ 2 and 5. sweeps


SMOKE = "configs/quickstart.py:smoke"
MIXED = """from launch import dsl

def get_sweep(arg=None):
    tiny = [dsl.fixed("train.steps", 12), dsl.fixed("data.max_chars", 12000),
            dsl.fixed("model.hidden_size", 16), dsl.fixed("train.sample_length", 0)]
    return dsl.product(dsl.chain(
        [{"optim.lr": 3e-3, "seed": 0}, {"optim.lr": 1e-3, "seed": 1}, {"model.cell": "nope"},
         {"optim.name": "sgd", "optim.lr": 1e38, "optim.clip_norm": 1e38},
         {"model.cell": "gru"}]), *tiny)
"""


@pytest.mark.slow
@pytest.mark.parametrize("executor", ["vmap", "local"])
def test_a_bad_trial_fails_alone_in_every_executor(tmp_path, executor):
    sweep = tmp_path / "mixed.py"
    sweep.write_text(MIXED)
    out = tmp_path / "sweep"
    proc = subprocess.run([sys.executable, "-m", "launch.sweep", f"--config={SMOKE}",
                           f"--sweep={sweep}", f"--workdir={out}", f"--executor={executor}",
                           "--max_parallel=2"], cwd=ROOT, capture_output=True, text=True,
                          timeout=600, env=dict(os.environ, JAX_PLATFORMS="cpu"))
    assert proc.returncode == 1, proc.stderr[-3000:]
    assert "5 trials: 1 diverged, 1 failed, 3 finished" in proc.stdout
    assert "failed: 002_cell=nope" in proc.stderr
    report = subprocess.run([sys.executable, "-m", "launch.report", f"--sweep_dir={out}",
                             "--metric=valid/bpc", "--nofigures"], cwd=ROOT,
                            capture_output=True, text=True, timeout=300)
    assert report.returncode == 0, report.stderr[-3000:]
    rows = [line.split("|") for line in report.stdout.splitlines()
            if line.startswith("| ") and "best valid/bpc" not in line]
    assert sorted(row[-2].strip() for row in rows) == ["0/0", "0/1", "0/1", "0/1", "1/1"]
    assert "missing: 1 of 5 trials: 002_cell=nope" in report.stdout


@pytest.mark.slow
def test_killing_the_launcher_stops_its_trials_and_a_rerun_waits_for_a_running_one(tmp_path):
    sweep = tmp_path / "one.py"
    sweep.write_text('from launch import dsl\n\ndef get_sweep(arg=None):\n    return dsl.product('
                     'dsl.fixed("train.steps", 150), dsl.fixed("data.max_chars", 12000), '
                     'dsl.fixed("model.hidden_size", 16), dsl.fixed("train.ckpt_every", 7))\n')
    out = tmp_path / "sweep"
    cmd = [sys.executable, "-m", "launch.sweep", f"--config={SMOKE}", f"--sweep={sweep}",
           f"--workdir={out}"]
    env = dict(os.environ, JAX_PLATFORMS="cpu")
    launcher = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL)
    while not (out / "sweep.json").exists():
        assert launcher.poll() is None
        time.sleep(0.05)
    spec = json.loads((out / "sweep.json").read_text())["trials"][0]
    trial = out / spec["workdir"]  # (relative to the sweep dir)
    wait_for_step(launcher, trial, 20)
    pid = layout.lock_holder(trial)
    assert pid
    launcher.kill()  # the launcher alone, as a lost ssh session would
    launcher.wait()
    deadline = time.time() + 60
    while layout.lock_holder(trial) is not None:  # the trial saves and stops
        assert time.time() < deadline, "the trial outlived its launcher"
        time.sleep(0.1)
    assert layout.read_status(trial)["status"] == "interrupted"
    # The trial's own command, started by hand; the rerun sweep waits for it.
    by_hand = subprocess.Popen(spec["command"], cwd=ROOT, env=env, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
    while layout.lock_holder(trial) is None:
        assert by_hand.poll() is None
        time.sleep(0.05)
    again = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert by_hand.wait() == 0
    assert again.returncode == 0, again.stderr[-3000:]
    assert "still running in another process" in again.stderr
    assert "1 trials: 1 finished" in again.stdout


def test_dry_run_writes_nothing(tmp_path):
    sweep = tmp_path / "s.py"
    sweep.write_text('from launch import dsl\n\ndef get_sweep(arg=None):\n'
                     '    return dsl.sweep("seed", [0, 1])\n')
    proc = subprocess.run([sys.executable, "-m", "launch.sweep", f"--config={SMOKE}",
                           f"--sweep={sweep}", f"--workdir={tmp_path / 'out'}", "--dry_run"],
                          cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and proc.stdout.count("rnnlab.main") == 2
    assert not (tmp_path / "out").exists()
