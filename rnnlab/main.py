"""Train a character language model: `python -m rnnlab.main --config=configs/quickstart.py`.

    python -m rnnlab.main --config=configs/lstm_text8.py --workdir=runs/lstm_text8 \
        --config.model.cell=gru --config.train.bptt_len=100

`--config=FILE:ARG` selects a variant (e.g. `:smoke`). Without `--workdir` a fresh dated run
directory is made under `runs/`. Rerunning a command with the same `--workdir` resumes it.
Exit codes: 0 finished (or stopped by SIGTERM after saving), 1 diverged or data error,
2 bad config.
"""

from __future__ import annotations

import datetime
import logging as std_logging
import pathlib
import sys

from absl import app, flags, logging
from ml_collections import config_flags

from rnnlab import data, train

_CONFIG = config_flags.DEFINE_config_file(
    "config", None, "A config file (configs/*.py), optionally FILE:ARG.", lock_config=True
)
_WORKDIR = flags.DEFINE_string("workdir", None, "Run directory; default runs/<config>-<time>.")


def _default_workdir(config_path: str) -> pathlib.Path:
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    return pathlib.Path("runs") / f"{pathlib.Path(config_path).stem}-{stamp}"


class _QuietOrbax(std_logging.Filter):
    """Orbax logs every step of every save at INFO; keep its warnings and errors only."""

    def filter(self, record):
        return record.levelno >= std_logging.WARNING or "/orbax/" not in record.pathname


def main(argv):
    logging.get_absl_handler().addFilter(_QuietOrbax())
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    config = _CONFIG.value
    if config is None:
        raise app.UsageError("--config is required, e.g. --config=configs/quickstart.py")
    config_path = config_flags.get_config_filename(flags.FLAGS["config"])
    workdir = pathlib.Path(_WORKDIR.value or _default_workdir(config_path))
    logging.info("run directory: %s", workdir)
    try:
        train.check_config(config)
    except ValueError as e:
        logging.error("bad config: %s", e)
        print(f"error: bad config: {e}", file=sys.stderr)
        sys.exit(2)
    try:
        train.train(config, workdir)
    except ValueError as e:  # caught before the first step: a config that the data rejects
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
    except (data.DataError, train.DivergenceError) as e:
        logging.error("%s", e)
        print(f"error: {e}", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    app.run(main)
