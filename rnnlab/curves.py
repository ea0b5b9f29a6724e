"""One run's curves: its train and valid metric and its learning rate against the step.

    python -m rnnlab.curves --workdir=runs/quickstart [--metric=bpc] [--out=FILE.png]

The metric defaults to the one the run picks its best checkpoint by (bpc for a language
model, accuracy for a classifier, ...); the final scores on the whole valid and test splits are
marked at the last step. The figure goes to WORKDIR/curves.png unless `--out` says otherwise.
(A sweep's curves, trial against trial, are `launch.report --figures`.)
"""

from __future__ import annotations

import sys

from rnnlab.run import layout, storage


def headline(workdir) -> str:
    """The metric the run picks its best checkpoint by (`best_valid_<metric>` in
    status.json), else `loss`."""
    status = layout.read_status(storage.path(workdir)) or {}
    return next((k[len("best_valid_"):] for k in status if k.startswith("best_valid_")), "loss")


def figure(workdir, metric: str | None = None):
    """A matplotlib figure of the run's curves (see the module doc); a notebook shows it."""
    from matplotlib import pyplot as plt

    workdir = storage.path(workdir)
    lines = layout.read_metrics(workdir)
    metric = metric or headline(workdir)
    if not any(metric in m for m in lines):
        known = sorted({k for m in lines for k in m if k not in ("step", "split")})
        raise ValueError(f"{workdir} logged no {metric!r}; it has {', '.join(known) or 'none'}")
    fig, (top, bottom) = plt.subplots(2, 1, sharex=True, figsize=(7, 5.5), layout="constrained",
                                      height_ratios=(3, 1))
    for split, style in (("train", dict(lw=1, alpha=0.8)), ("valid", dict(marker="o", ms=4))):
        points = [(m["step"], m[metric]) for m in lines if m["split"] == split and metric in m]
        if points:
            every = "log line" if split == "train" else "evaluation"
            top.plot(*zip(*points), label=f"{split} (every {every})", **style)
    for split, marker in (("valid_full", "s"), ("test", "*")):
        final = [(m["step"], m[metric]) for m in lines if m["split"] == split and metric in m]
        if final:
            top.plot(*final[-1], marker=marker, ms=9, ls="none",
                     label=f"{'valid' if split == 'valid_full' else 'test'}, whole split (final)")
    top.set_ylabel(metric)
    top.legend(fontsize="small")
    top.grid(alpha=0.3)
    top.set_title(f"{workdir.name}: {metric} by step")
    rates = [(m["step"], m["lr"]) for m in lines if m["split"] == "train" and "lr" in m]
    if rates:
        bottom.plot(*zip(*rates), color="grey")
    bottom.set_ylabel("learning rate")
    bottom.set_xlabel("step")
    bottom.grid(alpha=0.3)
    return fig


def main(argv):
    del argv
    from absl import flags

    import matplotlib

    matplotlib.use("Agg")  # (a file, no window)
    F = flags.FLAGS
    out = storage.path(F.out or storage.path(F.workdir) / "curves.png")
    try:
        if not (storage.path(F.workdir) / layout.METRICS_FILE).exists():
            raise ValueError(f"{F.workdir} has no {layout.METRICS_FILE}: not a run directory")
        fig = figure(F.workdir, F.metric)
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
    fig.savefig(str(out), dpi=120)
    print(out)


if __name__ == "__main__":
    from absl import flags

    flags.DEFINE_string("workdir", None, "The run directory.", required=True)
    flags.DEFINE_string("metric", None, "The metric (default: the run's headline one).")
    flags.DEFINE_string("out", None, "The PNG to write (default: WORKDIR/curves.png).")
    from rnnlab import overrides

    overrides.run(main)
