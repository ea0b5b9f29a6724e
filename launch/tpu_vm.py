r"""The TPU VM executor: a sweep on one Cloud TPU VM through the real `gcloud` CLI.

    python -m launch.sweep --config=configs/quickstart.py:smoke --sweep=experiments/relu_unroll/config.py \
        --workdir=runs/x --executor=tpu_vm --tpu_project=my-project --tpu_zone=us-central2-b \
        [--tpu_type=v4-8] [--tpu_spot] [--tpu_queued] [--tpu_repo=URL [--tpu_ref=SHA]] \
        [--tpu_workdir=~/runs/x | gs://BUCKET/runs/x] [--tpu_keep] [--dry_run]

`plan_commands` is the whole run as argv lists, in order; `--dry_run` prints them shell-quoted,
one a line, and runs nothing (without --tpu_project/--tpu_zone it shows `<PROJECT>`/`<ZONE>`):
1. Create the VM (`tpu-vm create`), or a queued resource (`queued-resources create --node-id`)
   whose `describe --format=value(state.state)` is polled every 30 s until ACTIVE.
2. Put the code in ~/rnnlab on every worker: `git clone` --tpu_repo and check out --tpu_ref
   (default: the local HEAD commit, which must be pushed), or, without --tpu_repo, `scp
   --recurse` the top-level entries of the local working tree that git tracks or would track
   (`git ls-files -co --exclude-standard`: no .venv, no runs/). Then install: the TPU base
   images ship Python 3.10 and jax>=0.10 needs 3.11, so uv makes a Python 3.11 venv in
   ~/rnnlab/.venv and installs `-e '.[tpu]'` (jax[tpu]) there.
3. Each trial: `tpu-vm ssh NAME --worker=all --command="cd ~/rnnlab && . .venv/bin/activate &&
   python3 -m rnnlab.main --config=... --config.k=v ... --workdir=..."`: the trial's own
   command line (`launch.trials.command`), plus `--distributed` on a multi-host slice. Remote
   commands run in ~/rnnlab, so the default --tpu_workdir ~/rnnlab-runs/<sweep dir name> is
   written ../rnnlab-runs/... there (rnnlab does not expand `~`, and a quoted `~` is literal).
   A gs:// --tpu_workdir is passed as it is: rnnlab writes the run directory to the bucket.
4. Fetch the trial's run directory into SWEEP_DIR/trials/: `tpu-vm scp --recurse --worker=0`
   from the VM's disk, or `gcloud storage cp --recursive` from the bucket. A run directory in a
   bucket outlives the VM: an interrupted trial (a preempted spot VM) resumes from its
   checkpoints there on a rerun, on a new VM.
5. Delete the VM or queued resource (`--quiet`; a queued resource with `--force`), also when a
   step fails or the sweep is interrupted; --tpu_keep keeps it.
A failed trial is recorded in outcomes.json and the sweep goes on; a trial whose fetched run
directory says finished or diverged is skipped on a rerun.

Hosts per slice, from the number N in the accelerator type (the Cloud TPU docs' tables): v2,
v3, v4 and v5p count TensorCores, 2 per chip and 4 chips per host, so hosts = ceil(N / 8)
(v4-8 and v5p-8 are one host, v4-16 two); v5litepod (v5e) and v6e count chips, up to 8 on
one host, and a larger slice is made of 4-chip hosts, so hosts = 1 if N <= 8 else N / 4
(v5litepod-16 is four). With more than one host every worker runs the same command and rnnlab
gets `--distributed` (jax.distributed.initialize()): training is data parallel over all hosts'
chips, and every host writes its shards of each checkpoint, so a multi-host slice needs a
gs:// --tpu_workdir (a VM path is on one host's disk only and is refused).

XManager: one trial is one `xm.Job` in the experiment. Package the repository once
(`xm.python_container(path=".", entrypoint=xm.ModuleName("rnnlab.main"), ...)`), then for each
trial of SWEEP_DIR/sweep.json (or `launch.trials.plan`) add `xm.Job(executable, executor=...,
args={"config": CONFIG, **{f"config.{k}": v for k, v in trial["overrides"].items()},
"workdir": f"{BUCKET}/trials/{trial['id']}"})`: the same flags as the trial's command line, a
workdir per trial (a bucket, since the job runs remotely), so `launch.report` reads the fetched
trial directories as it reads any sweep.

Ray Tune: one trial is one Tune trial. Use the overrides as the search space, `param_space=
{"overrides": tune.grid_search([t.overrides for t in trials])}` (or the DSL's random search in
place of grid_search), and a function trainable that runs the trial's command line,
`subprocess.run(launch.trials.command(CONFIG, config["overrides"], workdir), check=True)` with
the workdir per trial (`SWEEP_DIR/trials/<id>`, or Tune's trial directory), then reads
metrics.jsonl and reports the metric with `tune.report`. Pass it to `tune.Tuner(...).fit()`
(`tune.run(trainable, config=...)` in older Ray); give each trial the TPU or CPU resources it
needs with `tune.with_resources`.
"""

from __future__ import annotations

import dataclasses
import math
import pathlib
import posixpath
import re
import shlex
import subprocess
import time
from typing import NamedTuple

from absl import logging

from launch import progress as progress_lib, trials as trials_lib
from rnnlab.run import storage

CODE_DIR = "rnnlab"  # on every worker, relative to the home directory
INSTALL = (f"cd ~/{CODE_DIR} && python3 -m pip install --user --quiet uv && "
           "~/.local/bin/uv venv --python 3.11 .venv && "
           '~/.local/bin/uv pip install --python .venv/bin/python -e ".[tpu]"')
RUNTIMES = {  # the docs' TPU software version for JAX, per generation
    "v2": "tpu-ubuntu2204-base", "v3": "tpu-ubuntu2204-base", "v4": "tpu-ubuntu2204-base",
    "v5p": "v2-alpha-tpuv5", "v5litepod": "v2-alpha-tpuv5-lite", "v6e": "v2-alpha-tpuv6e",
}
_CHIP_COUNTED = ("v5litepod", "v6e")  # the N of these types counts chips, not TensorCores
_BAD_STATES = ("FAILED", "SUSPENDING", "SUSPENDED", "DELETING")


@dataclasses.dataclass(frozen=True)
class Options:
    """The --tpu_* flags; empty strings take the defaults that `resolve` fills in."""

    name: str = ""
    project: str = ""
    zone: str = ""
    accelerator_type: str = "v4-8"
    version: str = ""
    spot: bool = False
    queued: bool = False
    repo: str = ""
    ref: str = ""
    workdir: str = ""
    keep: bool = False
    poll_seconds: float = 30.0


class Step(NamedTuple):
    kind: str  # create, wait, code, install, trial, fetch, delete
    argv: list[str]
    trial: trials_lib.Trial | None = None


def _parse_type(accelerator_type: str) -> tuple[str, int]:
    match = re.fullmatch(r"(v2|v3|v4|v5p|v5litepod|v6e)-(\d+)", accelerator_type)
    if not match or int(match.group(2)) < 1:
        raise ValueError(f"unknown TPU type {accelerator_type!r}: expected <generation>-<N> "
                         f"with a generation in {', '.join(RUNTIMES)} (e.g. v4-8, v5litepod-16)")
    return match.group(1), int(match.group(2))


def hosts(accelerator_type: str) -> int:
    """The number of TPU VM hosts (workers) of a slice such as v4-16 (2) or v5litepod-16 (4)."""
    generation, n = _parse_type(accelerator_type)
    if generation in _CHIP_COUNTED:
        return 1 if n <= 8 else math.ceil(n / 4)
    return math.ceil(n / 8)


def default_name(sweep_dir: str) -> str:
    """`rnnlab-<sweep dir name>` in the characters a TPU name allows ([a-z0-9-], 63 at most)."""
    base = re.sub(r"[^a-z0-9-]+", "-", pathlib.PurePath(sweep_dir).name.lower())
    return re.sub(r"-+", "-", f"rnnlab-{base}")[:63].strip("-")


def _git(*args: str) -> str:
    try:
        return subprocess.run(["git", *args], check=True, capture_output=True, text=True).stdout
    except (OSError, subprocess.CalledProcessError) as e:
        raise ValueError(f"`git {' '.join(args)}` failed here ({e}); run from the repository "
                         "root, or pass --tpu_repo and --tpu_ref") from e


def resolve(options: Options, sweep_dir: str) -> Options:
    """Fills in the defaults: name, runtime version, workdir and (when cloning) the ref."""
    generation, _ = _parse_type(options.accelerator_type)
    n_hosts = hosts(options.accelerator_type)
    if n_hosts > 1 and not options.workdir.startswith("gs://"):
        raise ValueError(
            f"--tpu_type={options.accelerator_type} has {n_hosts} hosts, and each writes its "
            "shards of every checkpoint: pass a bucket they all see, --tpu_workdir=gs://BUCKET/"
            f"runs/{pathlib.PurePath(sweep_dir).name} (a VM path is on one host's disk only)"
        )
    return dataclasses.replace(
        options,
        name=options.name or default_name(sweep_dir),
        version=options.version or RUNTIMES[generation],
        workdir=(options.workdir or f"~/rnnlab-runs/{pathlib.PurePath(sweep_dir).name}"),
        ref=options.ref or (_git("rev-parse", "HEAD").strip() if options.repo else ""),
    )


def _in_code_dir(path: str) -> str:
    """A VM path (relative paths and ~/ are from the home directory) as seen from ~/rnnlab."""
    if path.startswith("/"):
        return path
    if path == "~" or path.startswith("~/"):
        path = path[2:]
    elif path.startswith("~"):
        raise ValueError(f"--tpu_workdir={path}: use ~/... or an absolute path")
    return posixpath.normpath(posixpath.join("..", path))


def _for_scp(path: str) -> str:
    """A VM path for `scp NAME:PATH`, which takes relative paths from the home directory."""
    return path[2:] if path.startswith("~/") else path


def _code_entries() -> list[str]:
    """Top-level entries of the working tree that git tracks or would track (no .venv, runs/)."""
    files = _git("ls-files", "-z", "--cached", "--others", "--exclude-standard").split("\0")
    entries = sorted({f.split("/", 1)[0] for f in files if f and pathlib.Path(f).exists()})
    if "pyproject.toml" not in entries:
        raise ValueError("copying the working tree: run from the repository root (where "
                         "pyproject.toml is), or pass --tpu_repo")
    return entries


def pending(trials: list[trials_lib.Trial]) -> list[trials_lib.Trial]:
    """The trials whose local run directory does not say finished or diverged."""
    return [t for t in trials if trials_lib.result(t) is None]


def _steps(trials: list[trials_lib.Trial], config: str, sweep_dir: str,
           options: Options) -> list[Step]:
    config_path = config.partition(":")[0]
    if posixpath.isabs(config_path) or posixpath.normpath(config_path).startswith(".."):
        raise ValueError(f"--config={config}: the TPU VM runs it from the repository root, so it "
                         "must be a path inside the repository, relative to it")
    o = resolve(options, sweep_dir)
    where = [f"--zone={o.zone or '<ZONE>'}", f"--project={o.project or '<PROJECT>'}"]
    vm = ["gcloud", "compute", "tpus", "tpu-vm"]
    queued = ["gcloud", "compute", "tpus", "queued-resources"]
    spot = ["--spot"] if o.spot else []

    def ssh(command: str) -> list[str]:
        return [*vm, "ssh", o.name, *where, "--worker=all", f"--command={command}"]

    if o.queued:
        steps = [Step("create", [*queued, "create", o.name, f"--node-id={o.name}", *where,
                                 f"--accelerator-type={o.accelerator_type}",
                                 f"--runtime-version={o.version}", *spot]),
                 Step("wait", [*queued, "describe", o.name, *where,
                               "--format=value(state.state)"])]
        delete = [*queued, "delete", o.name, *where, "--force", "--quiet"]
    else:
        steps = [Step("create", [*vm, "create", o.name, *where,
                                 f"--accelerator-type={o.accelerator_type}",
                                 f"--version={o.version}", *spot])]
        delete = [*vm, "delete", o.name, *where, "--quiet"]
    # A fresh copy every time: a kept VM must not run stale files (run dirs live outside it).
    if o.repo:
        steps.append(Step("code", ssh(
            f"rm -rf ~/{CODE_DIR} && git clone --quiet {shlex.quote(o.repo)} ~/{CODE_DIR} && "
            f"cd ~/{CODE_DIR} && git checkout --quiet {shlex.quote(o.ref)}")))
    else:
        steps.append(Step("code", ssh(f"rm -rf ~/{CODE_DIR} && mkdir -p ~/{CODE_DIR}")))
        steps.append(Step("code", [*vm, "scp", "--recurse", *_code_entries(),
                                   f"{o.name}:{CODE_DIR}", *where, "--worker=all"]))
    steps.append(Step("install", ssh(INSTALL)))
    distributed = ["--distributed"] if hosts(o.accelerator_type) > 1 else []
    bucket = o.workdir.startswith("gs://")
    local_trials = f"{sweep_dir.rstrip('/')}/trials/"
    for trial in trials:
        remote = f"{o.workdir.rstrip('/')}/trials/{trial.id}"
        argv = trials_lib.command(config, trial.overrides,
                                  remote if bucket else _in_code_dir(remote), python="python3")
        command = f"cd ~/{CODE_DIR} && . .venv/bin/activate && {shlex.join(argv + distributed)}"
        steps.append(Step("trial", ssh(command), trial))
        fetch = (["gcloud", "storage", "cp", "--recursive", remote, local_trials] if bucket else
                 [*vm, "scp", "--recurse", f"{o.name}:{_for_scp(remote)}", local_trials, *where,
                  "--worker=0"])
        steps.append(Step("fetch", fetch, trial))
    steps.append(Step("delete", delete))
    return steps


def plan_commands(trials: list[trials_lib.Trial], config: str, sweep_dir: str,
                  options: Options) -> list[list[str]]:
    """Every gcloud command of the run, in order; none when every trial is done already.

    Args:
      trials: the sweep's trials (`launch.trials.plan`); those whose local run directory says
        finished or diverged are left out (a gs:// sweep_dir is not read: a dry run touches
        no storage).
      config: the `--config` spec, a path relative to the repository root.
      sweep_dir: the local sweep directory; results are fetched into its trials/.
      options: the --tpu_* flags.

    Returns:
      argv lists; the last deletes the VM unless `options.keep`.
    """
    todo = pending(trials) if storage.is_local(sweep_dir) else trials
    if not todo:
        return []
    steps = _steps(todo, config, sweep_dir, options)
    return [s.argv for s in steps if not (s.kind == "delete" and options.keep)]


def _wait_active(argv: list[str], poll_seconds: float) -> None:
    while True:
        state = subprocess.run(argv, check=True, capture_output=True, text=True).stdout.strip()
        if state == "ACTIVE":
            return
        if state in _BAD_STATES:
            raise RuntimeError(f"queued resource is {state}: `{shlex.join(argv)}`")
        logging.info("queued resource: %s; next look in %.0f s", state or "?", poll_seconds)
        time.sleep(poll_seconds)


def run(trials: list[trials_lib.Trial], config: str, sweep_dir: str,
        options: Options) -> dict[str, str]:
    """Runs `plan_commands` with subprocess.run(check=True), deleting the VM in `finally`.

    Args:
      trials, config, sweep_dir, options: as for `plan_commands`.

    Returns:
      {trial id: outcome} for every trial, also those done before; each trial run here is
      recorded in SWEEP_DIR/outcomes.json and logs its ssh output to SWEEP_DIR/logs/<id>.log.

    Raises:
      ValueError: before anything runs, for a missing --tpu_project/--tpu_zone or a bad flag.
      subprocess.CalledProcessError, RuntimeError: a create, copy or install step failed (the
        VM is deleted all the same unless `options.keep`).
    """
    missing = [f"--tpu_{k}" for k in ("project", "zone") if not getattr(options, k)]
    if missing:
        raise ValueError(f"--executor=tpu_vm needs {' and '.join(missing)} (e.g. "
                         "--tpu_project=my-project --tpu_zone=us-central2-b); --dry_run prints "
                         "the commands without them")
    todo = pending(trials)
    outcomes = {t.id: trials_lib.result(t) for t in trials if t not in todo}
    logging.info("%d trials: %d done, %d to run", len(trials), len(outcomes), len(todo))
    if not todo:
        return outcomes
    steps = _steps(todo, config, sweep_dir, options)
    logs = pathlib.Path(sweep_dir) / "logs"
    logs.mkdir(parents=True, exist_ok=True)

    progress, here = progress_lib.Progress(len(trials)), []

    def record(trial: trials_lib.Trial, returncode: int) -> None:
        here.append(trial.id)
        outcomes[trial.id] = trials_lib.outcome(trial)
        trials_lib.record_outcome(sweep_dir, trial, outcomes[trial.id], returncode)
        logging.info("%s: %s (exit code %d)", trial.id, outcomes[trial.id], returncode)

    returncode = 0
    try:
        for step in steps[:-1]:  # the delete step is in `finally`
            logging.info("$ %s", shlex.join(step.argv))
            if step.kind == "wait":
                _wait_active(step.argv, options.poll_seconds)
            elif step.kind == "trial":
                progress.update(outcomes, [step.trial], len(here), force=True)
                returncode = _run_trial(step, logs / f"{step.trial.id}.log")
            elif step.kind == "fetch":
                try:  # also after a failure: a diverged run exits 1 and says so in its dir
                    subprocess.run(step.argv, check=True)
                except subprocess.CalledProcessError:
                    logging.warning("%s: nothing fetched", step.trial.id)
                record(step.trial, returncode)
                progress.update(outcomes, [], len(here), force=True)
            else:
                subprocess.run(step.argv, check=True)
    finally:
        delete = steps[-1].argv
        if options.keep:
            logging.warning("keeping the TPU VM; delete it with: %s", shlex.join(delete))
        else:
            logging.info("$ %s", shlex.join(delete))
            subprocess.run(delete, check=True)
    return outcomes


def _run_trial(step: Step, log_path: pathlib.Path) -> int:
    """The trial's ssh command with its output in the trial's log; returns the exit code."""
    with open(log_path, "a") as log:
        try:
            subprocess.run(step.argv, check=True, stdout=log, stderr=subprocess.STDOUT)
        except subprocess.CalledProcessError as e:
            logging.warning("%s: exit code %d (log: %s)", step.trial.id, e.returncode, log_path)
            return e.returncode
    return 0
