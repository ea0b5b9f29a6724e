"""Train a character language model: `python -m rnnlab.main --config=configs/quickstart.py`.

    python -m rnnlab.main --config=configs/lstm_text8.py --workdir=runs/lstm_text8 \
        --config.model.cell=gru --config.train.bptt_len=100

`--config=FILE:ARG` selects a variant (e.g. `:smoke`). Without `--workdir` a fresh dated run
directory is made under `runs/`. Rerunning a command with the same `--workdir` resumes it.

`--trials=FILE` (a JSON list of `{"overrides": {...}, "workdir": ...}`, as `launch.sweep
--executor=vmap` writes it) trains many trials of the config: those that differ only in seed,
initialisation and optimizer values run together as one vmapped program, each in its own run
directory; the others are split into such groups automatically.

Exit codes: 0 finished (or stopped by SIGTERM/Ctrl-C after saving), 1 diverged or data error,
2 bad config.
"""

from __future__ import annotations

import datetime
import json
import os
import pathlib
import sys

from absl import app, flags, logging
from ml_collections import config_flags

from rnnlab import checkpoint, data, overrides, rundir, train, validation

_CONFIG = config_flags.DEFINE_config_file(
    "config", None, "A config file (configs/*.py), optionally FILE:ARG.", lock_config=True
)
_WORKDIR = flags.DEFINE_string("workdir", None, "Run directory; default runs/<config>-<time>.")
_TRIALS = flags.DEFINE_string("trials", None, "JSON file of trials to train as vmapped groups.")
_DISTRIBUTED = flags.DEFINE_bool(
    "distributed", False, "Call jax.distributed.initialize() first (multi-host TPU VMs)."
)


def _default_workdir(config_path: str) -> pathlib.Path:
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    return pathlib.Path("runs") / f"{pathlib.Path(config_path).stem}-{stamp}-{os.getpid()}"


def _fail(code: int, message: str):
    logging.error("%s", message)
    print(f"error: {message}", file=sys.stderr)
    sys.exit(code)


def _run_trials(config, path):
    trials = json.loads(pathlib.Path(path).read_text())
    try:
        configs = [overrides.apply(config, t["overrides"]) for t in trials]
    except ValueError as e:
        raise validation.ConfigError(f"{path}: {e}") from e
    for group in validation.split_groups(configs):
        logging.info("training %d trial(s) as one program: %s", len(group),
                     ", ".join(trials[i]["workdir"] for i in group))
        results = train.train_group([configs[i] for i in group],
                                    [trials[i]["workdir"] for i in group])
        for i, result in zip(group, results):
            logging.info("%s: %s", trials[i]["workdir"], result.get("status"))


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    checkpoint.quiet_orbax_logs()
    if _DISTRIBUTED.value:
        import jax

        jax.distributed.initialize()
        if jax.process_count() > 1:
            # Every host would train the whole model on its own devices and write the same
            # run directory: refuse until the train step shards across hosts.
            _fail(2, f"{jax.process_count()} processes: multi-host data parallelism is not "
                     "implemented yet; use a single-host TPU VM (e.g. v4-8, v5litepod-8)")
    config = _CONFIG.value
    if config is None:
        raise app.UsageError("--config is required, e.g. --config=configs/quickstart.py")
    try:
        if _TRIALS.value:
            _run_trials(config, _TRIALS.value)
            return
        validation.check_config(config)
        config_path = config_flags.get_config_filename(flags.FLAGS["config"])
        workdir = pathlib.Path(_WORKDIR.value or _default_workdir(config_path))
        logging.info("run directory: %s", workdir)
        train.train(config, workdir)
    except (validation.ConfigError, rundir.RunDirError) as e:
        _fail(2, f"bad config: {e}")
    except (data.DataError, train.DivergenceError) as e:
        _fail(1, str(e))


if __name__ == "__main__":
    app.run(main)
