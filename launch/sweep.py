r"""The `launch.sweep` command: runs every trial of a sweep with one of the executors.

    python -m launch.sweep --config=... --sweep=...[:arg] --workdir=runs/NAME

    python -m launch.sweep --config=configs/quickstart.py:smoke \
        --sweep=experiments/relu_unroll/config.py --workdir=runs/relu_unroll \
        --executor=local --max_parallel=2

With --search=tpe|random|qmc the sweep file's `suggest(trial)` is an Optuna search space
instead of a list: --trials trials, proposed one by one from the results so far, pruned by
--pruner=asha|median|none; launch/search.py says how (and how a rerun continues the study).

Executors: `local` (subprocesses, --max_parallel at once), `vmap` (trials that differ only in
values such as learning rate or seed run as one jit-compiled program, split into groups
automatically), `tpu_vm` (Cloud TPU VMs through gcloud; --dry_run prints every command), or
`package.module:function`, an executor of your own: `function(trials, config, sweep_dir) ->
{trial id: outcome}` (`EXECUTORS` below are the built-in ones; docs/ARCHITECTURE.md shows one).
Rerunning the same command skips finished trials and resumes interrupted ones; after the config
file was edited, trials that already ran with the old config are refused (exit 2, naming them
and the keys that differ) rather than skipped as stale results. One launcher at a time per sweep
directory (SWEEP_DIR/.lock): a second one exits 2 naming the first's pid. Exit codes: 0 every
trial a result (finished or diverged), 1 some trial failed or was left interrupted, 2 nothing
ran (a bad flag, config or sweep file, a held sweep dir, trials run with another config, a gs://
--workdir without gcsfs), 130 / 143 (128 + the signal) Ctrl-C or SIGTERM stopped the sweep: the
running trials saved and stopped, and the summary counts them (and those not started) as
interrupted; rerun the same command to resume them. --dry_run writes nothing and reads no
bucket.
"""

from __future__ import annotations

import collections
import importlib
import pathlib
import shlex
import subprocess
import sys

from absl import app, flags, logging

import launch
from launch import local, results as results_lib, search as search_lib, search_run, tpu_vm
from launch import trials as trials_lib
from rnnlab.run import layout, storage

INTERRUPTED, NOT_STARTED = layout.INTERRUPTED, "not started"  # to rerun: not a result yet

_CONFIG = flags.DEFINE_string("config", None, "Config file, path.py[:arg].", required=True)
_SWEEP = flags.DEFINE_string("sweep", None, "Sweep file, path.py[:arg]; default: the config.")
_WORKDIR = flags.DEFINE_string("workdir", None, "The sweep directory.", required=True)
_EXECUTOR = flags.DEFINE_string(
    "executor", "local", "How to run: local, vmap, tpu_vm, or package.module:function.")
_MAX_PARALLEL = flags.DEFINE_integer("max_parallel", 1, "local: trials at once.")
_DRY_RUN = flags.DEFINE_bool("dry_run", False, "Print the commands, run nothing.")
_SEARCH = flags.DEFINE_string(
    "search", "", "Adaptive search over the sweep file's suggest(trial): tpe, random or qmc "
    "(see launch/search.py); default: run the sweep file's get_sweep() list.")
_TRIALS = flags.DEFINE_integer("trials", 20, "search: trials in the study, all launchers "
                               "together.")
_PRUNER = flags.DEFINE_string("pruner", "none", "search: asha, median or none (local executor).")
_METRIC = flags.DEFINE_string("metric", "", "search: the split/name to optimise; default "
                              "valid/<the metric the task picks its best checkpoint by>.")
_MODE = flags.DEFINE_enum("mode", "auto", ["auto", "min", "max"], "search: whether lower or "
                          "higher is better; auto: the task's (or max iff the name has 'acc').")
_SEARCH_SEED = flags.DEFINE_integer("search_seed", 0, "search: the sampler's seed.")
_STORAGE = flags.DEFINE_string("storage", "", "search: SQLAlchemy URL of the study; default "
                               "sqlite:///SWEEP_DIR/study.db.")
_STUDY = flags.DEFINE_string("study", "", "search: the study's name; default the sweep dir's.")
_MIN_RESOURCE = flags.DEFINE_integer("min_resource", 0, "search, asha: train steps to the first "
                                     "rung; default the config's train.eval_every.")
_REDUCTION_FACTOR = flags.DEFINE_integer("reduction_factor", 3, "search, asha: 1 in this many "
                                         "trials goes on at each rung.")
_STARTUP_TRIALS = flags.DEFINE_integer("startup_trials", 10, "search, tpe: random trials "
                                      "before TPE models the results (Optuna's default 10).")
_TPU_NAME = flags.DEFINE_string(
    "tpu_name", "", "tpu_vm: TPU VM and queued resource name; default rnnlab-<sweep dir name>.")
_TPU_PROJECT = flags.DEFINE_string("tpu_project", "", "tpu_vm: Google Cloud project.")
_TPU_ZONE = flags.DEFINE_string("tpu_zone", "", "tpu_vm: zone, e.g. us-central2-b.")
_TPU_TYPE = flags.DEFINE_string(
    "tpu_type", "v4-8", "tpu_vm: accelerator type: v2-N, v3-N, v4-N, v5p-N, v5litepod-N, v6e-N.")
_TPU_VERSION = flags.DEFINE_string(
    "tpu_version", "", "tpu_vm: TPU software version; default the JAX base image of the "
    "type's generation: tpu-ubuntu2204-base (v2-v4), v2-alpha-tpuv5-lite, v2-alpha-tpuv5, "
    "v2-alpha-tpuv6e.")
_TPU_SPOT = flags.DEFINE_bool("tpu_spot", False, "tpu_vm: a Spot VM (cheaper, preemptible).")
_TPU_QUEUED = flags.DEFINE_bool(
    "tpu_queued", False, "tpu_vm: create through a queued resource, wait until ACTIVE.")
_TPU_REPO = flags.DEFINE_string(
    "tpu_repo", "", "tpu_vm: git URL to clone on the VM; default: scp the local working tree.")
_TPU_REF = flags.DEFINE_string(
    "tpu_ref", "", "tpu_vm: git ref to check out from --tpu_repo; default the local HEAD.")
_TPU_WORKDIR = flags.DEFINE_string(
    "tpu_workdir", "", "tpu_vm: sweep directory on the VM or in a bucket (gs://..., needed on "
    "multi-host slices); default ~/rnnlab-runs/<sweep dir name>. Each trial is fetched into "
    "--workdir after it ends.")
_TPU_KEEP = flags.DEFINE_bool("tpu_keep", False, "tpu_vm: do not delete the VM at the end.")


def _run_tpu_vm(trials: list[trials_lib.Trial], config: str,
                sweep_dir: str) -> dict[str, str] | None:
    """The tpu_vm executor; None after --dry_run printed its commands."""
    options = tpu_vm.Options(
        name=_TPU_NAME.value, project=_TPU_PROJECT.value, zone=_TPU_ZONE.value,
        accelerator_type=_TPU_TYPE.value, version=_TPU_VERSION.value, spot=_TPU_SPOT.value,
        queued=_TPU_QUEUED.value, repo=_TPU_REPO.value, ref=_TPU_REF.value,
        workdir=_TPU_WORKDIR.value, keep=_TPU_KEEP.value)
    try:
        if _DRY_RUN.value:
            for argv in tpu_vm.plan_commands(trials, config, sweep_dir, options):
                print(shlex.join(argv))
            return None
        return tpu_vm.run(trials, config, sweep_dir, options)
    except ValueError as e:  # before anything ran
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
    except (subprocess.CalledProcessError, RuntimeError) as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(1)


def _fail(message: str, trace: str = "", code: int = 2):
    """One line on stderr (then the user's own traceback, if any) and exit `code`."""
    print(f"error: {message}", file=sys.stderr)
    print(trace, file=sys.stderr, end="")
    sys.exit(code)


def _plan(sweep: str) -> list[trials_lib.Trial]:
    """The checked trials; nothing is written yet."""
    try:
        return trials_lib.plan(_CONFIG.value, sweep, _WORKDIR.value, python=sys.executable,
                               record=False)
    except trials_lib.SweepFileError as e:
        _fail(str(e), e.trace)
    except (ValueError, FileNotFoundError, storage.StorageError) as e:
        _fail(str(e))


def _claim(sweep: str, trials: list[trials_lib.Trial]):
    """Locks the sweep dir for this launcher and records sweep.json; returns the lock."""
    try:
        storage.path(_WORKDIR.value)  # a bucket needs its package: one line before anything
        held = trials_lib.lock(_WORKDIR.value)
        trials_lib.record_sweep(_CONFIG.value, sweep, _WORKDIR.value, trials)
    except (trials_lib.SweepBusy, storage.StorageError, ValueError) as e:
        _fail(str(e))
    except OSError as e:
        _fail(f"cannot use {_WORKDIR.value} as a sweep directory: {e.strerror or e}")
    return held


EXECUTORS = {
    "local": lambda trials, config, sweep_dir: local.run(trials, sweep_dir,
                                                        max_parallel=_MAX_PARALLEL.value),
    "vmap": lambda trials, config, sweep_dir: local.run_vmapped(trials, config, sweep_dir,
                                                               python=sys.executable),
    "tpu_vm": _run_tpu_vm,
}


def get_executor(name: str):
    """The executor called `name`, or `package.module:function` imported; ValueError (one
    line) for anything else."""
    if name in EXECUTORS:
        return EXECUTORS[name]
    module_name, colon, attr = name.partition(":")
    if not colon:
        raise ValueError(f"unknown --executor={name}; known: {', '.join(EXECUTORS)} (or "
                         "package.module:function for an executor of your own)")
    try:
        function = getattr(importlib.import_module(module_name), attr)
    except ImportError as e:
        raise ValueError(f"--executor={name}: cannot import {module_name!r}: {e}") from None
    except AttributeError:
        raise ValueError(f"--executor={name}: {module_name!r} has no {attr!r}") from None
    return function


def main(argv):
    if len(argv) > 1:
        _fail(f"unexpected arguments: {argv[1:]} (every option is a --flag=value)")
    sweep = _SWEEP.value or _CONFIG.value.partition(":")[0]
    if _MAX_PARALLEL.value < 1:  # every flag is checked before sweep.json is written
        _fail(f"--max_parallel must be >= 1, got {_MAX_PARALLEL.value}")
    try:
        execute = get_executor(_EXECUTOR.value)
    except ValueError as e:
        _fail(str(e))
    if _SEARCH.value:
        sys.exit(_search(sweep, execute))
    trials = _plan(sweep)
    if _DRY_RUN.value:  # touches no storage: prints the commands
        if _EXECUTOR.value == "tpu_vm":
            _run_tpu_vm(trials, _CONFIG.value, _WORKDIR.value)
        else:
            for trial in trials:
                print(" ".join(trial.command))
        return
    held = _claim(sweep, trials)  # noqa: F841 - the lock lasts as long as this launcher
    sys.exit(_summary(trials, execute(trials, _CONFIG.value, _WORKDIR.value)))


def _search(sweep: str, execute) -> int:
    """Runs an adaptive search (launch/search.py); returns the exit code."""
    opts = search_lib.Options(
        config=_CONFIG.value, sweep=sweep, sweep_dir=_WORKDIR.value, search=_SEARCH.value,
        trials=_TRIALS.value, pruner=_PRUNER.value, metric=_METRIC.value, mode=_MODE.value,
        seed=_SEARCH_SEED.value, storage=_STORAGE.value, study=_STUDY.value,
        max_parallel=_MAX_PARALLEL.value, min_resource=_MIN_RESOURCE.value,
        reduction_factor=_REDUCTION_FACTOR.value, startup_trials=_STARTUP_TRIALS.value)
    try:
        search_lib.check_options(opts)
        if _EXECUTOR.value != "local" and opts.pruner != "none":
            raise ValueError(f"--pruner={opts.pruner} needs --executor=local (it stops trials as "
                             "their validation lines come in); use --pruner=none with "
                             f"--executor={_EXECUTOR.value}")
        if _DRY_RUN.value:
            raise ValueError("--dry_run with --search: a search's trials depend on the results "
                             "of those before them, so there are no commands to print ahead")
        base = trials_lib.load_config(_CONFIG.value)
        search_lib.load_space(sweep)
        if _METRIC.value:
            results_lib.split_metric(_METRIC.value)  # split/name, before the study records it
            metric, mode = _METRIC.value, results_lib.resolve_mode(_METRIC.value, _MODE.value)
        else:
            metric, mode = search_lib.default_metric(base)
            mode = mode if _MODE.value == "auto" else _MODE.value
        held = trials_lib.lock(_WORKDIR.value)  # noqa: F841 - held as long as this launcher
        search = search_lib.Search(opts, base, metric, mode)
        search_lib.record(opts, search.study, metric, mode)
        if _EXECUTOR.value == "local":
            search_run.run_local(search)
        else:
            search_run.run_rounds(search, execute)
    except trials_lib.SweepFileError as e:
        _fail(str(e), e.trace)
    except (ValueError, FileNotFoundError, trials_lib.SweepBusy) as e:
        _fail(str(e))
    except ImportError as e:  # a database URL whose driver is not installed
        _fail(f"--storage: {e}")
    except OSError as e:
        _fail(f"cannot use {_WORKDIR.value} as a sweep directory: {e.strerror or e}")
    except Exception as e:  # noqa: BLE001 - the database's own errors, as one line
        if not type(e).__module__.startswith("sqlalchemy"):
            raise
        _fail(f"--storage: cannot open the study's database: {str(e).splitlines()[0]}")
    return _search_summary(search)


def _search_summary(search: search_lib.Search) -> int:
    """Prints the study's trials by state and its best; returns the exit code."""
    trials = search.study.get_trials(deepcopy=False)
    counts = collections.Counter(t.state.name.lower() for t in trials)
    print(f"{len(trials)} trials in study {search.study.study_name}: " + ", ".join(
        f"{n} {k}" for k, n in sorted(counts.items())))
    done = [t for t in trials if t.state.name == "COMPLETE"]
    if done:
        best = search.study.best_trial
        print(f"best: trial {search_lib.trial_id(best.number)} {search.metric}={best.value:.6g} "
              + " ".join(f"{k}={trials_lib.format_value(v)}"
                         for k, v in best.user_attrs["overrides"].items()))
    failed = [search_lib.trial_id(t.number) for t in trials if t.state.name == "FAIL"
              and t.user_attrs.get("outcome") != "diverged"]
    if failed:
        print(f"failed: {trials_lib.some(failed, 8)} (logs: {_WORKDIR.value}/logs/); the search "
              "went on without them", file=sys.stderr)
    running = [search_lib.trial_id(t.number) for t in trials if t.state.name == "RUNNING"
               and t.user_attrs.get("launcher") == search.me]
    if running:
        print(f"{len(running)} interrupted: {trials_lib.some(running, 8)}; rerun the sweep to "
              "resume them", file=sys.stderr)
    if search.stopped_by and (running or len(trials) < search.opts.trials):
        return 128 + search.stopped_by
    return 1 if failed or running else 0


def _summary(trials: list[trials_lib.Trial], outcomes: dict[str, str]) -> int:
    """Prints what became of every trial; returns the exit code (see the module docstring)."""
    states = {t.id: outcomes.get(t.id, NOT_STARTED) for t in trials}
    counts = collections.Counter(states.values())
    logging.info("sweep %s: %s", _WORKDIR.value, ", ".join(f"{n} {k}" for k, n in counts.items()))
    print(f"{len(trials)} trials: " + ", ".join(f"{n} {k}" for k, n in sorted(counts.items())))
    failed = [t for t in trials if states[t.id] == "failed"]
    if failed:
        logs = pathlib.Path(_WORKDIR.value) / "logs"
        where = ([logs / "vmap.log"] if _EXECUTOR.value == "vmap" else
                 [logs / f"{t.id}.log" for t in failed])
        print(f"failed: {', '.join(t.id for t in failed)} (logs: "
              f"{', '.join(map(str, where))}); rerun the sweep to retry them", file=sys.stderr)
    stopped = [f"{i} ({s})" for i, s in states.items() if s in (INTERRUPTED, NOT_STARTED)]
    if stopped:
        print(f"{len(stopped)} interrupted: {trials_lib.some(stopped, 8)}; rerun the sweep to "
              "resume them", file=sys.stderr)
    signum = local.stopped_by() if _EXECUTOR.value != "tpu_vm" else None
    if stopped and signum:
        return 128 + signum
    return 1 if failed or stopped else 0


if __name__ == "__main__":
    app.run(main, flags_parser=launch.parse_flags)
