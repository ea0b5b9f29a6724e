"""Gradient flow through a window for each setting of a relu_unroll sweep (seed 0): the mean
norm of dL/dh_t for the last step's loss at t = 1 over t = T-1, at initialisation and at the
best checkpoint, on a training batch. Prints a Markdown table.

    python experiments/relu_unroll/gradients.py --sweep_dir=runs/relu_unroll_sgd
"""

import argparse

import jax
import numpy as np

from launch import report
from rnnlab import diagnose, diagnostics


def ratio(workdir, checkpoint):
    subject = diagnose.load(workdir=workdir, checkpoint=checkpoint, out=workdir / "diagnostics")
    norms = jax.jit(lambda s, d: diagnostics.gradient_norms(subject.task, s, d))(
        subject.state, subject.task.data)
    mean = np.asarray(next(iter(norms["last_step"].values())), np.float64).mean(1)
    return mean[1] / mean[-1]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sweep_dir", required=True)
    args = parser.parse_args()
    print("| cell | activation | bptt_len | ratio at init | ratio trained |")
    print("|:---|:---|---:|---:|---:|")
    for trial in report.load_sweep(args.sweep_dir):
        o = trial.overrides
        if o.get("seed") != 0 or report.outcome(trial) != "finished":
            continue
        print(f"| {o['model.cell']} | {o['model.activation']} | {o['train.bptt_len']} | "
              f"{ratio(trial.workdir, 'init'):.3g} | {ratio(trial.workdir, 'best'):.3g} |",
              flush=True)


if __name__ == "__main__":
    main()
