r"""Truncated against full BPTT for a many-to-one task: the adding problem at T = 200, an LSTM
that reads the sequence in windows of train.bptt_len steps with the carry passed forward, the
loss from the final window only (gradients cut at each window boundary), against full BPTT
(train.bptt_len = 0), two seeds each.

    python -m launch.sweep --config=experiments/tbptt_many_to_one/config.py \
        --sweep=experiments/tbptt_many_to_one/config.py --workdir=runs/tbptt_many_to_one \
        --executor=vmap
    python -m launch.report --sweep_dir=runs/tbptt_many_to_one --metric=test/mse \
        --out=experiments/tbptt_many_to_one/results
    python -m experiments.tbptt_many_to_one.memory

configs/adding.py otherwise (64 units, B=50, 3,000 Adam updates at 1e-3, clip 1). Results and
what they say: README.md beside this file.
"""

from launch import dsl

from configs import adding, base

LENGTH = 200
WINDOWS = [0, 10, 25, 50, 100]  # 0: full BPTT


def get_config(arg=None):
    arg = base.variant(arg, "smoke")
    c = adding.get_config(arg)
    if arg != "smoke":
        c.data.length = LENGTH
    return c


def get_sweep(arg=None):
    return dsl.product(dsl.sweep("train.bptt_len", WINDOWS), dsl.sweep("seed", [0, 1]))
