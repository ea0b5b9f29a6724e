"""The tpu_vm executor: exact gcloud commands from --dry_run, and real runs against a fake gcloud.

Nothing here reaches the network: a fake `gcloud` on PATH records its arguments (one JSON list a
line) and plays the VM (a fetch creates the trial's run directory with status.json and its
final checkpoint's directory).
"""

import json
import os
import pathlib
import shlex
import subprocess
import sys

import pytest

from launch import tpu_vm, trials as trials_lib

ROOT = pathlib.Path(__file__).resolve().parents[1]
CONFIG = "configs/quickstart.py:smoke"
IDS = ["000_seed=0", "001_seed=1"]

FAKE_GCLOUD = f"""#!{sys.executable}
import json, os, pathlib, sys
args = sys.argv[1:]
with open(os.environ["FAKE_GCLOUD_LOG"], "a") as f:
    f.write(json.dumps(args) + "\\n")
fail = os.environ.get("FAKE_GCLOUD_FAIL")
if fail and any(fail in a for a in args):
    sys.exit("fake gcloud: failing on purpose")
if args[2:4] == ["queued-resources", "describe"]:
    states = pathlib.Path(os.environ["FAKE_GCLOUD_LOG"] + ".states")
    left = states.read_text().split() if states.exists() else os.environ["FAKE_QR_STATES"].split()
    states.write_text(" ".join(left[1:] or left))
    print(left[0])
elif args[2:5] == ["tpu-vm", "scp", "--recurse"] and ":" in args[5] or (
        args[:3] == ["storage", "cp", "--recursive"]):  # a fetch from the VM or the bucket
    src, dest = (args[5], args[6]) if args[0] == "compute" else (args[3], args[4])
    run_dir = pathlib.Path(dest) / pathlib.PurePosixPath(src).name
    (run_dir / "ckpt" / "1").mkdir(parents=True)  # a finished run has its final checkpoint
    (run_dir / "status.json").write_text(json.dumps({{"status": "finished", "step": 1}}))
elif args[2:4] == ["tpu-vm", "ssh"]:
    print("on the VM:", args[-1].removeprefix("--command="))
"""


@pytest.fixture
def sweep_file(tmp_path):
    path = tmp_path / "two.py"
    path.write_text("def get_sweep(arg=None):\n    return [{'seed': 0}, {'seed': 1}]\n")
    return str(path)


@pytest.fixture
def fake_gcloud(tmp_path, monkeypatch):
    """PATH with a recording gcloud first; returns a function that reads the calls so far."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "gcloud").write_text(FAKE_GCLOUD)
    (bin_dir / "gcloud").chmod(0o755)
    log = tmp_path / "gcloud_calls.jsonl"
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("FAKE_GCLOUD_LOG", str(log))

    def calls():
        if not log.exists():
            return []
        calls = [json.loads(line) for line in log.read_text().splitlines()]
        log.unlink()
        return calls

    return calls


def sweep(sweep_file, workdir, *flags, env=None):
    return subprocess.run(
        [sys.executable, "-m", "launch.sweep", f"--config={CONFIG}", f"--sweep={sweep_file}",
         f"--workdir={workdir}", "--executor=tpu_vm", *flags],
        cwd=ROOT, capture_output=True, text=True, env=env, timeout=120)


def code_entries():
    """The top-level entries git tracks or would track, read here with git itself."""
    out = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard"],
                         cwd=ROOT, capture_output=True, text=True, check=True).stdout
    entries = sorted({f.split("/")[0] for f in out.splitlines() if (ROOT / f).exists()})
    assert {"pyproject.toml", "rnnlab", "launch", "configs"} <= set(entries)
    assert not {".venv", "runs", ".git", "rnnlab.egg-info"} & set(entries)
    return entries


def test_dry_run_prints_every_command_with_placeholders(tmp_path, sweep_file):
    workdir = tmp_path / "My_Sweep.1"
    result = sweep(sweep_file, workdir, "--dry_run")
    assert result.returncode == 0, result.stderr
    where = "'--zone=<ZONE>' '--project=<PROJECT>'"
    name = "rnnlab-my-sweep-1"
    ssh = f"gcloud compute tpus tpu-vm ssh {name} {where} --worker=all"
    run = "'--command=cd ~/rnnlab && . .venv/bin/activate && python3 -m rnnlab.main " \
          "--config=configs/quickstart.py:smoke"
    assert result.stdout.splitlines() == [
        f"gcloud compute tpus tpu-vm create {name} {where} --accelerator-type=v4-8 "
        "--version=tpu-ubuntu2204-base",
        f"{ssh} '--command=rm -rf ~/rnnlab && mkdir -p ~/rnnlab'",
        f"gcloud compute tpus tpu-vm scp --recurse {' '.join(code_entries())} {name}:rnnlab "
        f"{where} --worker=all",
        f"{ssh} '--command=cd ~/rnnlab && python3 -m pip install --user --quiet uv && "
        "~/.local/bin/uv venv --python 3.11 .venv && ~/.local/bin/uv pip install --python "
        ".venv/bin/python -e \".[tpu]\"'",
        f"{ssh} {run} --config.seed=0 --workdir=../rnnlab-runs/My_Sweep.1/trials/000_seed=0'",
        f"gcloud compute tpus tpu-vm scp --recurse {name}:rnnlab-runs/My_Sweep.1/trials/"
        f"000_seed=0 {workdir}/trials/ {where} --worker=0",
        f"{ssh} {run} --config.seed=1 --workdir=../rnnlab-runs/My_Sweep.1/trials/001_seed=1'",
        f"gcloud compute tpus tpu-vm scp --recurse {name}:rnnlab-runs/My_Sweep.1/trials/"
        f"001_seed=1 {workdir}/trials/ {where} --worker=0",
        f"gcloud compute tpus tpu-vm delete {name} {where} --quiet",
    ]
    assert not (workdir / "trials").exists() and not (workdir / "outcomes.json").exists()


def test_dry_run_queued_spot_clone(tmp_path, sweep_file):
    workdir = tmp_path / "s"
    result = sweep(sweep_file, workdir, "--tpu_project=p", "--tpu_zone=us-central2-b",
                   "--tpu_spot", "--tpu_queued", "--tpu_repo=https://github.com/me/rnnlab.git",
                   "--tpu_ref=abc123", "--tpu_name=exp", "--tpu_workdir=/data/runs/s",
                   "--dry_run")
    assert result.returncode == 0, result.stderr
    ssh = "gcloud compute tpus tpu-vm ssh exp --zone=us-central2-b --project=p --worker=all"
    assert result.stdout.splitlines() == [
        "gcloud compute tpus queued-resources create exp --node-id=exp --zone=us-central2-b "
        "--project=p --accelerator-type=v4-8 --runtime-version=tpu-ubuntu2204-base --spot",
        "gcloud compute tpus queued-resources describe exp --zone=us-central2-b --project=p "
        "'--format=value(state.state)'",
        f"{ssh} '--command=rm -rf ~/rnnlab && git clone --quiet "
        "https://github.com/me/rnnlab.git ~/rnnlab && cd ~/rnnlab && git checkout --quiet abc123'",
        f"{ssh} '--command=cd ~/rnnlab && python3 -m pip install --user --quiet uv && "
        "~/.local/bin/uv venv --python 3.11 .venv && ~/.local/bin/uv pip install --python "
        ".venv/bin/python -e \".[tpu]\"'",
        f"{ssh} '--command=cd ~/rnnlab && . .venv/bin/activate && python3 -m rnnlab.main "
        "--config=configs/quickstart.py:smoke --config.seed=0 "
        "--workdir=/data/runs/s/trials/000_seed=0'",
        "gcloud compute tpus tpu-vm scp --recurse exp:/data/runs/s/trials/000_seed=0 "
        f"{workdir}/trials/ --zone=us-central2-b --project=p --worker=0",
        f"{ssh} '--command=cd ~/rnnlab && . .venv/bin/activate && python3 -m rnnlab.main "
        "--config=configs/quickstart.py:smoke --config.seed=1 "
        "--workdir=/data/runs/s/trials/001_seed=1'",
        "gcloud compute tpus tpu-vm scp --recurse exp:/data/runs/s/trials/001_seed=1 "
        f"{workdir}/trials/ --zone=us-central2-b --project=p --worker=0",
        "gcloud compute tpus queued-resources delete exp --zone=us-central2-b --project=p "
        "--force --quiet",
    ]
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True,
                          text=True, check=True).stdout.strip()
    result = sweep(sweep_file, workdir, "--tpu_repo=https://github.com/me/rnnlab.git",
                   "--tpu_keep", "--dry_run")
    lines = result.stdout.splitlines()
    assert f"git checkout --quiet {head}'" in lines[1]  # the default ref is the local HEAD
    assert not any(" delete " in line for line in lines)  # --tpu_keep


def test_a_bucket_workdir_is_written_by_the_trials_and_copied_back(tmp_path, sweep_file,
                                                                   fake_gcloud):
    workdir = tmp_path / "s"
    flags = ["--tpu_project=p", "--tpu_zone=z", "--tpu_type=v4-16", "--tpu_workdir=gs://b/runs/s"]
    dry = sweep(sweep_file, workdir, *flags, "--dry_run")
    assert dry.returncode == 0, dry.stderr
    lines = dry.stdout.splitlines()
    assert lines[4:8] == [
        "gcloud compute tpus tpu-vm ssh rnnlab-s --zone=z --project=p --worker=all '--command=cd "
        "~/rnnlab && . .venv/bin/activate && python3 -m rnnlab.main "
        "--config=configs/quickstart.py:smoke --config.seed=0 "
        "--workdir=gs://b/runs/s/trials/000_seed=0 --distributed'",
        f"gcloud storage cp --recursive gs://b/runs/s/trials/000_seed=0 {workdir}/trials/",
        "gcloud compute tpus tpu-vm ssh rnnlab-s --zone=z --project=p --worker=all '--command=cd "
        "~/rnnlab && . .venv/bin/activate && python3 -m rnnlab.main "
        "--config=configs/quickstart.py:smoke --config.seed=1 "
        "--workdir=gs://b/runs/s/trials/001_seed=1 --distributed'",
        f"gcloud storage cp --recursive gs://b/runs/s/trials/001_seed=1 {workdir}/trials/",
    ]
    result = sweep(sweep_file, workdir, *flags)
    assert result.returncode == 0 and "2 trials: 2 finished" in result.stdout, result.stderr
    assert [["gcloud", *c] for c in fake_gcloud()] == [shlex.split(line) for line in lines]


def test_a_multi_host_slice_needs_a_bucket_workdir(tmp_path, sweep_file):
    result = sweep(sweep_file, tmp_path / "s", "--tpu_type=v4-16", "--dry_run")
    assert result.returncode == 2
    assert "v4-16 has 2 hosts" in result.stderr and "--tpu_workdir=gs://BUCKET/runs/s" in (
        result.stderr)


def test_hosts_follow_the_docs_tables():
    # v2-v4, v5p: N TensorCores, 8 a host; v5litepod, v6e: N chips, 8 on one host, else 4 a host
    expected = {"v2-8": 1, "v2-32": 4, "v3-8": 1, "v4-8": 1, "v4-16": 2, "v4-32": 4,
                "v5p-8": 1, "v5p-16": 2, "v5litepod-1": 1, "v5litepod-8": 1,
                "v5litepod-16": 4, "v5litepod-256": 64, "v6e-8": 1, "v6e-16": 4}
    assert {t: tpu_vm.hosts(t) for t in expected} == expected
    for bad in ["v4", "v9-8", "v4-0", "tpu-v4-8"]:
        with pytest.raises(ValueError, match="unknown TPU type"):
            tpu_vm.hosts(bad)


@pytest.mark.parametrize("accelerator_type,version,multi_host", [
    ("v4-16", "tpu-ubuntu2204-base", True), ("v5litepod-16", "v2-alpha-tpuv5-lite", True),
    ("v6e-8", "v2-alpha-tpuv6e", False), ("v5p-8", "v2-alpha-tpuv5", False)])
def test_multi_host_types_add_distributed(tmp_path, sweep_file, accelerator_type, version,
                                          multi_host):
    result = sweep(sweep_file, tmp_path / "s", f"--tpu_type={accelerator_type}",
                   "--tpu_workdir=gs://b/runs/s", "--dry_run")
    assert result.returncode == 0, result.stderr
    commands = [shlex.split(line) for line in result.stdout.splitlines()]
    assert f"--accelerator-type={accelerator_type}" in commands[0]
    assert f"--version={version}" in commands[0]
    runs = [c for c in commands if "rnnlab.main" in c[-1]]
    assert len(runs) == 2
    for trial_id, command in zip(IDS, runs):
        assert command[5:] == ["rnnlab-s", "--zone=<ZONE>", "--project=<PROJECT>",
                               "--worker=all", command[-1]]
        rnnlab = shlex.split(command[-1].split(" && ")[-1])
        assert rnnlab[-1] == "--distributed" if multi_host else rnnlab[-1].startswith("--work")
        assert f"--workdir=gs://b/runs/s/trials/{trial_id}" in rnnlab


def test_unknown_type_and_outside_config_fail_cleanly(tmp_path, sweep_file):
    result = sweep(sweep_file, tmp_path / "s", "--tpu_type=v9-8", "--dry_run")
    assert result.returncode == 2 and "unknown TPU type 'v9-8'" in result.stderr
    config = tmp_path / "c.py"
    config.write_text((ROOT / "configs/quickstart.py").read_text())
    result = subprocess.run(
        [sys.executable, "-m", "launch.sweep", f"--config={config}:smoke",
         f"--sweep={sweep_file}", f"--workdir={tmp_path / 't'}", "--executor=tpu_vm",
         "--dry_run"], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 2 and "inside the repository" in result.stderr


def test_without_project_and_zone_nothing_runs(tmp_path, sweep_file, fake_gcloud):
    result = sweep(sweep_file, tmp_path / "s")
    assert result.returncode == 2
    assert "needs --tpu_project and --tpu_zone" in result.stderr
    result = sweep(sweep_file, tmp_path / "s", "--tpu_project=p")
    assert result.returncode == 2
    assert "needs --tpu_zone" in result.stderr and "--tpu_project and" not in result.stderr
    assert fake_gcloud() == []


def test_real_run_goes_on_after_a_failed_trial_and_deletes(tmp_path, sweep_file, fake_gcloud,
                                                            monkeypatch):
    workdir = tmp_path / "s"
    flags = ["--tpu_project=p", "--tpu_zone=z"]
    dry = sweep(sweep_file, workdir, *flags, "--dry_run")
    planned = [shlex.split(line) for line in dry.stdout.splitlines()]
    assert fake_gcloud() == []

    monkeypatch.setenv("FAKE_GCLOUD_FAIL", IDS[1])  # its ssh and its fetch fail
    result = sweep(sweep_file, workdir, *flags)
    assert result.returncode == 1, result.stderr  # a trial failed: say which
    assert "2 trials: 1 failed, 1 finished" in result.stdout
    assert f"failed: {IDS[1]} (logs: {workdir / 'logs' / IDS[1]}.log)" in result.stderr
    # exactly the dry run's commands, in its order, the delete last
    assert [["gcloud", *c] for c in fake_gcloud()] == planned
    outcomes = json.loads((workdir / "outcomes.json").read_text())
    assert outcomes == {IDS[0]: {"outcome": "finished", "returncode": 0},
                        IDS[1]: {"outcome": "failed", "returncode": 1}}
    assert "on the VM: cd ~/rnnlab" in (workdir / "logs" / f"{IDS[0]}.log").read_text()

    # a rerun runs only the failed trial (the finished one's fetched dir says finished)
    monkeypatch.delenv("FAKE_GCLOUD_FAIL")
    result = sweep(sweep_file, workdir, *flags)
    assert "2 trials: 2 finished" in result.stdout, result.stderr
    calls = fake_gcloud()
    assert [c[:4] for c in calls if IDS[0] in " ".join(c)] == []
    assert [c[2:4] for c in calls] == [["tpu-vm", "create"], ["tpu-vm", "ssh"],
                                       ["tpu-vm", "scp"], ["tpu-vm", "ssh"], ["tpu-vm", "ssh"],
                                       ["tpu-vm", "scp"], ["tpu-vm", "delete"]]
    # and a third run has nothing to do: no VM at all
    result = sweep(sweep_file, workdir, *flags)
    assert "2 trials: 2 finished" in result.stdout and fake_gcloud() == []


def test_failed_setup_still_deletes_the_vm(tmp_path, sweep_file, fake_gcloud, monkeypatch):
    monkeypatch.setenv("FAKE_GCLOUD_FAIL", "uv venv")  # the install step fails
    result = sweep(sweep_file, tmp_path / "s", "--tpu_project=p", "--tpu_zone=z")
    assert result.returncode == 1 and "error:" in result.stderr
    calls = fake_gcloud()
    assert not any("rnnlab.main" in c[-1] for c in calls)
    assert calls[-1] == ["compute", "tpus", "tpu-vm", "delete", "rnnlab-s", "--zone=z",
                         "--project=p", "--quiet"]
    result = sweep(sweep_file, tmp_path / "s", "--tpu_project=p", "--tpu_zone=z", "--tpu_keep")
    assert result.returncode == 1 and not any("delete" in c for c in fake_gcloud())


def planned_trials(tmp_path, sweep_file):
    return trials_lib.plan(CONFIG, sweep_file, str(tmp_path / "s"))


def test_queued_resource_waits_until_active(tmp_path, sweep_file, fake_gcloud, monkeypatch):
    monkeypatch.chdir(ROOT)
    monkeypatch.setenv("FAKE_QR_STATES", "WAITING_FOR_RESOURCES PROVISIONING ACTIVE")
    trials = planned_trials(tmp_path, sweep_file)
    options = tpu_vm.Options(project="p", zone="z", queued=True, spot=True, poll_seconds=0)
    outcomes = tpu_vm.run(trials, CONFIG, str(tmp_path / "s"), options)
    assert outcomes == {IDS[0]: "finished", IDS[1]: "finished"}
    kinds = [c[2:4] for c in fake_gcloud()]
    assert kinds[:4] == [["queued-resources", "create"]] + [["queued-resources", "describe"]] * 3
    assert kinds[4] == ["tpu-vm", "ssh"] and kinds[-1] == ["queued-resources", "delete"]


def test_queued_resource_that_fails_is_deleted(tmp_path, sweep_file, fake_gcloud, monkeypatch):
    monkeypatch.chdir(ROOT)
    monkeypatch.setenv("FAKE_QR_STATES", "PROVISIONING FAILED")
    trials = planned_trials(tmp_path, sweep_file)
    options = tpu_vm.Options(project="p", zone="z", queued=True, poll_seconds=0)
    with pytest.raises(RuntimeError, match="queued resource is FAILED"):
        tpu_vm.run(trials, CONFIG, str(tmp_path / "s"), options)
    calls = fake_gcloud()
    assert [c[2:4] for c in calls] == [["queued-resources", "create"]] + [
        ["queued-resources", "describe"]] * 2 + [["queued-resources", "delete"]]
    assert calls[-1][-2:] == ["--force", "--quiet"]


def test_a_search_runs_its_rounds_on_tpu_vms(tmp_path, fake_gcloud):
    """An adaptive search through the tpu_vm executor: rounds of --max_parallel proposals, each
    round one VM running its trials' commands, each trial told to the study when fetched."""
    space = tmp_path / "space.py"
    space.write_text("def suggest(trial):\n"
                     "    return {'optim.lr': trial.suggest_float('optim.lr', 1e-3, 1e-2)}\n")
    workdir = tmp_path / "s"
    got = sweep(str(space), workdir, "--tpu_project=p", "--tpu_zone=z", "--search=random",
                "--trials=3", "--max_parallel=2", "--metric=valid/bpc")
    calls = fake_gcloud()
    assert [c[2:4] for c in calls].count(["tpu-vm", "create"]) == 2  # rounds of 2 and 1
    assert [c[2:4] for c in calls].count(["tpu-vm", "delete"]) == 2
    ran = [c[-1] for c in calls if c[2:4] == ["tpu-vm", "ssh"] and "rnnlab.main" in c[-1]]
    assert [f"trials/{i:03d}" in " ".join(ran) for i in range(3)] == [True] * 3
    study = json.loads((workdir / "sweep.json").read_text())
    assert [t["id"] for t in study["trials"]] == ["000", "001", "002"]
    # (the fake VM's runs hold no metrics: each is told as a failure, and the search went on)
    assert got.returncode == 1 and "3 trials in study s: 3 fail" in got.stdout, got.stderr
