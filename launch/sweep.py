"""Run a sweep: `python -m launch.sweep --config=... --sweep=...[:arg] --workdir=runs/NAME`.

    python -m launch.sweep --config=configs/quickstart.py:smoke \
        --sweep=experiments/relu_unroll/sweep.py --workdir=runs/relu_unroll \
        --executor=local --max_parallel=2

Executors: `local` (subprocesses, --max_parallel at once), `vmap` (trials that differ only in
values such as learning rate or seed run as one jit-compiled program, split into groups
automatically), `tpu_vm` (Cloud TPU VMs through gcloud; --dry_run prints every command).
Rerunning the same command skips finished trials and resumes interrupted ones.
"""

from __future__ import annotations

import sys

from absl import app, flags, logging

from launch import local, trials as trials_lib

_CONFIG = flags.DEFINE_string("config", None, "Config file, path.py[:arg].", required=True)
_SWEEP = flags.DEFINE_string("sweep", None, "Sweep file, path.py[:arg]; default: the config.")
_WORKDIR = flags.DEFINE_string("workdir", None, "The sweep directory.", required=True)
_EXECUTOR = flags.DEFINE_enum("executor", "local", ["local", "vmap", "tpu_vm"], "How to run.")
_MAX_PARALLEL = flags.DEFINE_integer("max_parallel", 1, "local: trials at once.")
_DRY_RUN = flags.DEFINE_bool("dry_run", False, "Print the commands, run nothing.")


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    sweep = _SWEEP.value or _CONFIG.value.partition(":")[0]
    try:
        trials = trials_lib.plan(_CONFIG.value, sweep, _WORKDIR.value, python=sys.executable)
    except (ValueError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
    if _DRY_RUN.value and _EXECUTOR.value != "tpu_vm":
        for trial in trials:
            print(" ".join(trial.command))
        return
    if _EXECUTOR.value == "local":
        outcomes = local.run(trials, _WORKDIR.value, max_parallel=_MAX_PARALLEL.value)
    elif _EXECUTOR.value == "vmap":
        outcomes = local.run_vmapped(trials, _CONFIG.value, _WORKDIR.value, python=sys.executable)
    else:
        raise app.UsageError(f"executor {_EXECUTOR.value} is not available yet")
    counts = {}
    for outcome in outcomes.values():
        counts[outcome] = counts.get(outcome, 0) + 1
    logging.info("sweep %s: %s", _WORKDIR.value, ", ".join(f"{n} {k}" for k, n in counts.items()))
    print(f"{len(trials)} trials: " + ", ".join(f"{n} {k}" for k, n in sorted(counts.items())))


if __name__ == "__main__":
    app.run(main)
