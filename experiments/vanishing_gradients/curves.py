r"""Gradient-flow curves of the vanishing-gradients sweep: for each cell at one length T, the
mean norm of dL/dh_t over a training batch (seed 0), at initialisation and at the best
checkpoint, on a log scale.

    python experiments/vanishing_gradients/curves.py --sweep_dir=runs/vanishing_gradients \
        --length=100 --out=experiments/vanishing_gradients/results

Writes gradient_curves_T<length>.png and .json (the numbers drawn) into --out.
"""

import argparse
import json
import pathlib

import jax
import matplotlib
import numpy as np

from launch import report
from rnnlab import diagnose, diagnostics, storage

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402



def curve(workdir, checkpoint):
    subject = diagnose.load(workdir=workdir, checkpoint=checkpoint, out=workdir / "diagnostics")
    norms = jax.jit(lambda s, d: diagnostics.gradient_norms(subject.task, s, d))(
        subject.state, subject.task.data)
    return np.asarray(norms["last_step"]["layer_0"], np.float64).mean(1).tolist()


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sweep_dir", required=True, help="The sweep directory.")
    parser.add_argument("--length", type=int, default=100, help="The adding problem's T.")
    parser.add_argument("--out", required=True, help="Where to write.")
    args = parser.parse_args()
    trials = [t for t in report.load_sweep(args.sweep_dir)
              if t.overrides.get("data.length") == args.length and t.overrides.get("seed") == 0]
    if not trials:
        parser.error(f"no seed-0 trial of length {args.length} in {args.sweep_dir}")
    curves = {t.overrides["model.cell"]: {"init": curve(t.workdir, "init"),
                                         "trained": curve(t.workdir, "best")} for t in trials}
    out = pathlib.Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    name = f"gradient_curves_T{args.length}"
    storage.write_atomic(storage.path(out) / f"{name}.json", json.dumps(curves, indent=1) + "\n")
    fig, axes = plt.subplots(1, 2, figsize=(11, 4), sharey=True)
    for ax, when in zip(axes, ("init", "trained")):
        for cell, c in curves.items():
            values = np.asarray(c[when])
            ax.plot(np.arange(len(values)), np.where(values > 0, values, np.nan), label=cell)
        ax.set_yscale("log")
        ax.set_xlabel("t (state read by step t+1)")
        ax.set_title("at initialisation" if when == "init" else "after training (best)")
    axes[0].set_ylabel("mean ||dL/dh_t|| (loss at the last step)")
    axes[1].legend(loc="upper left", bbox_to_anchor=(1.02, 1.0))
    fig.suptitle(f"adding problem, T = {args.length}, seed 0")
    fig.savefig(out / f"{name}.png", dpi=110, bbox_inches="tight")
    print(f"wrote {out / name}.png")


if __name__ == "__main__":
    main()
