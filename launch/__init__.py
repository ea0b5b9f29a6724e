"""Sweeps of rnnlab runs and the ablation tables that compare them.

    python -m launch.sweep --config=configs/quickstart.py:smoke --sweep=experiments/relu_unroll/config.py \
        --workdir=runs/NAME --executor=local|vmap|tpu_vm
    python -m launch.report --sweep_dir=runs/NAME --metric=valid/bpc

A sweep directory holds:
  sweep.json        {"config": "configs/x.py[:arg]", "sweep": "file.py[:arg]", "trials": [
                      {"id": "000_cell=gru_seed=1", "overrides": {"model.cell": "gru", "seed": 1},
                       "workdir": "runs/NAME/trials/000_cell=gru_seed=1",
                       "command": ["python", "-m", "rnnlab.main", "--config=...", ...]}, ...]}
  trials/<id>/      one rnnlab run directory per trial (config.json, metrics.jsonl, status.json,
                    checkpoints, samples), the same files whatever the executor
  logs/<id>.log     the trial's console output (local executor)
  outcomes.json     {"<id>": {"outcome": "finished"|"diverged"|"failed"|"interrupted",
                     "returncode": int | null}} as the launcher last saw each trial

A rerun skips results (finished with their final checkpoint, or diverged), waits for a trial
that another process is still training, and resumes the rest; the launcher exits 1 and names the
failed trials when some failed. Trials get SIGTERM (save, then stop) when the launcher dies.
The launcher only runs commands and reads run directories (`rnnlab.layout`); it does not reach
into training.
"""
