r"""Vanishing gradients on the adding problem: Elman tanh, IRNN (Elman relu, identity init),
LSTM and GRU at T = 10, 25, 50, 100, 200, three seeds each.

    python -m launch.sweep --config=experiments/vanishing_gradients/config.py \
        --sweep=experiments/vanishing_gradients/config.py --workdir=runs/vanishing_gradients \
        --executor=vmap
    python -m launch.report --sweep_dir=runs/vanishing_gradients --metric=test/mse \
        --pivot=cell,length --out=experiments/vanishing_gradients/results
    python experiments/vanishing_gradients/curves.py --sweep_dir=runs/vanishing_gradients \
        --length=100 --out=experiments/vanishing_gradients/results

`:leaky` (config and sweep) is the leaky Elman (tanh, a learned leak rate per unit starting at
0.5), swept over the same lengths and seeds into its own sweep directory:

    python -m launch.sweep --config=experiments/vanishing_gradients/config.py:leaky \
        --sweep=experiments/vanishing_gradients/config.py:leaky \
        --workdir=runs/vanishing_gradients_leaky --executor=vmap

configs/adding.py (64 units, B=50, 3,000 Adam updates at 1e-3, gradients clipped to norm 1)
with the gradient flow logged at each evaluation (train.log_gradients). Results and what they
say: README.md beside this file.
"""

from launch import dsl

from configs import adding, base


def get_config(arg=None):
    arg = base.variant(arg, "smoke", "leaky", "one_seed")
    c = adding.get_config("smoke" if arg == "smoke" else None)
    c.train.log_gradients = True
    if arg == "leaky":  # the leaky Elman: a learned rate per unit, from 0.5
        c.model.cell, c.model.leak, c.model.learn_leak = "elman", 0.5, True
    return c


def get_sweep(arg=None):
    if arg == "leaky":
        return dsl.product(dsl.sweep("data.length", [10, 25, 50, 100, 200]),
                           dsl.sweep("seed", [0, 1, 2]))
    seeds = [0] if arg == "one_seed" else [0, 1, 2]
    lengths = [10, 25] if arg == "one_seed" else [10, 25, 50, 100, 200]
    return dsl.product(dsl.sweep("model.cell", ["elman", "irnn", "lstm", "gru"]),
                       dsl.sweep("data.length", lengths), dsl.sweep("seed", seeds))
