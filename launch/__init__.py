r"""Sweeps of rnnlab runs and the ablation tables that compare them.

    python -m launch.sweep --config=configs/quickstart.py:smoke --sweep=experiments/relu_unroll/config.py \
        --workdir=runs/NAME --executor=local|vmap|tpu_vm
    python -m launch.report --sweep_dir=runs/NAME --metric=valid/bpc

A sweep directory holds:
  sweep.json        {"config": "configs/x.py[:arg]", "sweep": "file.py[:arg]", "trials": [
                      {"id": "000_cell=gru_seed=1", "overrides": {"model.cell": "gru", "seed": 1},
                       "workdir": "trials/000_cell=gru_seed=1",  (relative to the sweep dir)
                       "command": ["python", "-m", "rnnlab.main", "--config=...", ...]}, ...]}
                    (the command as the launcher ran it, from the repository root)
  .lock             held by the launcher running the sweep (its pid inside): one at a time
  trials/<id>/      one rnnlab run directory per trial (config.json, metrics.jsonl, status.json,
                    checkpoints, samples), the same files whatever the executor
  logs/<id>.log     the trial's console output (local executor)
  outcomes.json     {"<id>": {"outcome": "finished"|"diverged"|"failed"|"interrupted",
                     "returncode": int | null}} as the launcher last saw each trial
  study.db          an adaptive search's Optuna study (--search; see launch/search.py): its
                    only state, from which it writes sweep.json and outcomes.json ("pruned",
                    with the step) and which `launch.report` reads for its search.md

A rerun skips results (finished with their final checkpoint, or diverged), waits for a trial
that another process is still training, and resumes the rest; the launcher exits 1 and names the
failed (or interrupted) trials when some failed, 128 + the signal when SIGTERM or Ctrl-C stopped
it (the trials it stopped, and those it never started, counted as interrupted), and 2 with one
line `error: ...` when it runs nothing: a bad flag, config or sweep file (its file and line,
then its own traceback), or a sweep directory another launcher holds (a bad flag of either
command: one line and exit 2, as `rnnlab.main`'s). A sweep directory can be moved, copied or
synced: `launch.report` reads each trial from SWEEP_DIR/trials/<id>, and a rerun of the launcher
there records the new paths. Trials get SIGTERM (save, then stop) when the launcher dies. The
launcher only runs commands and reads run directories (`rnnlab.run.layout`); it does not reach into
training.
"""


def parse_flags(argv: list[str]) -> list[str]:
    """absl's `flags_parser` for the launch commands: an unknown, misspelt or bad flag is one
    line `error: ...` and exit code 2 (not absl's usage text and exit 1)."""
    import sys

    from absl import flags

    try:
        return flags.FLAGS(argv)
    except flags.Error as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
