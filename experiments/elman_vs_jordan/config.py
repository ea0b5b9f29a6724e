r"""Arch 1 vs Arch 2 of the classic text8 tutorial: hidden recurrence (Elman) against output
recurrence (Jordan) trained by teacher forcing, free running on the output distribution, on
its own samples, and with scheduled sampling; the same corpus, sizes and updates.

    python -m launch.sweep --config=experiments/elman_vs_jordan/config.py \
        --sweep=experiments/elman_vs_jordan/config.py --workdir=runs/elman_vs_jordan \
        --executor=vmap
    python -m launch.report --sweep_dir=runs/elman_vs_jordan --metric=valid/bpc \
        --out=experiments/elman_vs_jordan/results
    python -m experiments.elman_vs_jordan.bigram

configs/elman_text8.py's sizes (the tutorial's: B=64, T=10, clip 1.25, 7,001 steps; 256 tanh
units, one-hot inputs), but Adam at 2e-3 instead of SGD at lr 10 (see below), on the first 2M
characters of text8 (a 1.8M/100k/100k split). `config.py:FILE` (config and sweep) reads the
UTF-8 text FILE instead of text8 (as measured here; see README.md). Results and what they say:
README.md here.
"""

from launch import dsl

from configs import elman_text8


def get_config(arg=None):
    c = elman_text8.get_config(arg if arg == "smoke" else None)
    if arg not in (None, "smoke"):
        c.data.name, c.data.path = "text", arg
    if arg != "smoke":
        # The tutorial's SGD at lr 10 (clip 1.25) diverged for the Elman network here (loss 90
        # nats at step 2,100), so every model trains with Adam at a rate that suits them all.
        c.optim.name, c.optim.lr, c.optim.schedule = "adam", 2e-3, "constant"
        c.data.max_chars = 2_000_000
        c.data.valid_fraction = c.data.test_fraction = 0.05
        c.train.eval_batches = 0  # the whole (100k) valid split
        c.train.sample_length = 100
        c.model.sampling_schedule = "linear"  # scheduled: P(target) 1 -> 0 over the run
        c.model.sampling_k = float(c.train.steps)
    return c


def get_sweep(arg=None):
    jordan = dsl.product(dsl.fixed("model.cell", "jordan"), dsl.sweep(
        "model.jordan_feedback", ["teacher", "output", "sample", "scheduled"]))
    return dsl.product(dsl.chain(dsl.fixed("model.cell", "elman"), jordan),
                       dsl.sweep("seed", [0, 1]))
