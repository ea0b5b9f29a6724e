r"""The training command: trains (or resumes) a run of any task from a config file.

    python -m rnnlab.main --config=configs/quickstart.py

    python -m rnnlab.main --config=configs/lstm_text8.py --workdir=runs/lstm_text8 \
        --config.model.cell=gru --config.train.bptt_len=100

`--config=FILE:ARG` selects a variant (e.g. `:smoke`). Without `--workdir` a fresh dated run
directory is made under `runs/`. Rerunning a command with the same `--workdir` resumes it.

    python -m rnnlab.main --config=configs/quickstart.py --config.optim.lr=1e-3 --print_config
    python -m rnnlab.main --help_config

`--print_config` prints the config after the overrides, checked by every rule that needs no
data (one that does, e.g. a window longer than the corpus, is found when the run loads it), and
exits;
`--help_config` lists every `--config.*` key with its value and meaning.

`--trials=FILE` (a JSON list of `{"overrides": {...}, "workdir": ...}`, as `launch.sweep
--executor=vmap` writes it) trains many trials of the config: those that differ only in seed,
initialisation and optimizer values run together as one vmapped program, each in its own run
directory; the others are split into such groups automatically.

`--distributed` joins a multi-process run (every host of a TPU slice runs the same command;
`jax.distributed.initialize()` finds the others). Elsewhere pass `--coordinator_address=HOST:PORT
--num_processes=N --process_id=I` to each process. Training is data parallel over all devices
of all processes; process 0 writes the run directory, which every process must see (a gs://
bucket, or a shared mount), since each one checkpoints its own shards.

Exit codes: 0 finished (or stopped by SIGTERM/Ctrl-C after saving, or before training began
with nothing to save); 1 diverged, a data error or a full disk (the last checkpoint is intact:
free space and rerun); 2 a bad config or a run directory that cannot be used as asked (in use,
another experiment, unwritable, or without a checkpoint that verifies). With --trials: 2 if a
trial's config is bad, 1 if a trial failed otherwise; the other trials still run.
"""

from __future__ import annotations

import datetime
import json
import os
import pathlib
import sys

from absl import app, flags, logging
from ml_collections import config_flags

from rnnlab import compile_cache, data, overrides, stopping, train, validation
from rnnlab import config as config_lib
from rnnlab.run import checkpoint, rundir, storage

_CONFIG = config_flags.DEFINE_config_file(
    "config", None, "A config file (configs/*.py), optionally FILE:ARG.", lock_config=True
)
_WORKDIR = flags.DEFINE_string("workdir", None, "Run directory; default runs/<config>-<time>.")
_PRINT_CONFIG = flags.DEFINE_bool(
    "print_config", False, "Print the config after the overrides, checked (by every rule that "
    "needs no data), and exit.")
_HELP_CONFIG = flags.DEFINE_bool(
    "help_config", False, "List every --config.* key with its value (that of --config, else the "
    "default) and its meaning, and exit.")
_TRIALS = flags.DEFINE_string("trials", None, "JSON file of trials to train as vmapped groups.")
_DISTRIBUTED = flags.DEFINE_bool(
    "distributed", False, "Call jax.distributed.initialize() first (multi-host TPU VMs)."
)
_COORDINATOR = flags.DEFINE_string(
    "coordinator_address", None, "With --distributed: process 0's HOST:PORT (default: detected "
    "on TPU VMs and SLURM).")
_NUM_PROCESSES = flags.DEFINE_integer("num_processes", None, "With --distributed: how many.")
_PROCESS_ID = flags.DEFINE_integer("process_id", None, "With --distributed: this one's rank.")


def _default_workdir(config_path: str) -> pathlib.Path:
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    return pathlib.Path("runs") / f"{pathlib.Path(config_path).stem}-{stamp}-{os.getpid()}"


def _fail(code: int, message: str):
    print(f"error: {message}", file=sys.stderr)
    sys.exit(code)


def _key_list(config) -> str:
    """Every config key, one a line: its value (and the default where that differs), its
    meaning (the comment of the schema in rnnlab/config.py)."""
    defaults, meanings = config_lib.get_config(), config_lib.meanings()
    rows = []
    for key, meaning in meanings.items():
        default = config_lib.value(defaults, key)
        shown = config_lib.value(config, key) if config is not None else default
        value = repr(shown) + ("" if shown == default else f" (default {default!r})")
        rows.append(f"{key:<28} {value:<24} {meaning}")
    return "\n".join(rows)


def _run_trials(config, path) -> int:
    """Trains every trial of the --trials file; a trial that fails fails alone. Returns the
    exit code: 0 when every trial ran, 2 when a trial's config is bad, else 1."""
    try:
        trials = json.loads(pathlib.Path(path).read_text())
        names = [t["workdir"] for t in trials]
    except (OSError, ValueError, TypeError, KeyError) as e:
        raise validation.ConfigError(f"--trials={path} is not a readable list of trials ({e})")
    configs, code = {}, 0
    for i, trial in enumerate(trials):
        try:
            configs[i] = overrides.apply(config, trial.get("overrides", {}))
            validation.check_config(configs[i])
        except ValueError as e:
            logging.error("%s: bad config: %s", names[i], e)
            configs.pop(i, None)
            code = 2
    valid = list(configs)
    for group in validation.split_groups([configs[i] for i in valid]):
        group = [valid[g] for g in group]
        logging.info("training %d trial(s) as one program: %s", len(group),
                     ", ".join(names[i] for i in group))
        try:
            results = train.train_group([configs[i] for i in group], [names[i] for i in group])
        except (validation.ConfigError, rundir.RunDirError, data.DataError,
                storage.StorageError) as e:
            logging.error("%s: %s", ", ".join(names[i] for i in group), e)
            code = code or 1
            continue
        for i, result in zip(group, results):
            result = result or {}
            logging.info("%s: %s%s", names[i], result.get("status"),
                         f": {result['message']}" if result.get("message") else "")
    return code


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    checkpoint.quiet_orbax_logs()
    compile_cache.enable()
    if _DISTRIBUTED.value:
        import jax

        # CPU processes need a collectives backend (TPUs and GPUs bring their own).
        jax.config.update("jax_cpu_collectives_implementation", "gloo")
        jax.distributed.initialize(_COORDINATOR.value, _NUM_PROCESSES.value, _PROCESS_ID.value)
        logging.info("process %d of %d; %d devices in all", jax.process_index(),
                     jax.process_count(), jax.device_count())
    config = _CONFIG.value
    if _HELP_CONFIG.value:
        print(_key_list(config))
        return
    if config is None:
        _fail(2, "--config is required, e.g. --config=configs/quickstart.py (the configs are in "
              "configs/)")
    try:
        if _TRIALS.value:
            sys.exit(_run_trials(config, _TRIALS.value))
        validation.check_config(config)
        if _PRINT_CONFIG.value:
            print(config, end="")
            return
        config_path = config_flags.get_config_filename(flags.FLAGS["config"])
        workdir = storage.path(_WORKDIR.value or _default_workdir(config_path))
        logging.info("run directory: %s", workdir)
        train.train(config, workdir)
    except validation.ConfigError as e:
        _fail(2, f"bad config: {e}")
    except (rundir.RunDirError, storage.StorageError) as e:
        _fail(2, str(e))
    except (data.DataError, train.DivergenceError, train.DiskFullError) as e:
        _fail(1, str(e))
    except stopping.Interrupted as e:
        print(str(e), file=sys.stderr)


if __name__ == "__main__":
    overrides.run(main)
