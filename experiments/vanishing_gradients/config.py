"""Vanishing gradients on the adding problem: Elman tanh, IRNN (Elman relu, identity init),
LSTM and GRU at T = 10, 25, 50, 100, 200, three seeds each.

    python -m launch.sweep --config=experiments/vanishing_gradients/config.py \
        --sweep=experiments/vanishing_gradients/config.py --workdir=runs/vanishing_gradients \
        --executor=vmap
    python -m launch.report --sweep_dir=runs/vanishing_gradients --metric=test/mse \
        --pivot=cell,length --out=experiments/vanishing_gradients/results
    python experiments/vanishing_gradients/curves.py --sweep_dir=runs/vanishing_gradients \
        --length=100 --out=experiments/vanishing_gradients/results

configs/adding.py (64 units, B=50, 3,000 Adam updates at 1e-3, gradients clipped to norm 1)
with the gradient flow logged at each evaluation (train.log_gradients). Results and what they
say: README.md beside this file.
"""

from launch import dsl

from configs import adding


def get_config(arg=None):
    c = adding.get_config(arg)
    c.train.log_gradients = True
    return c


def get_sweep(arg=None):
    seeds = [0] if arg == "one_seed" else [0, 1, 2]
    lengths = [10, 25] if arg == "one_seed" else [10, 25, 50, 100, 200]
    return dsl.product(dsl.sweep("model.cell", ["elman", "irnn", "lstm", "gru"]),
                       dsl.sweep("data.length", lengths), dsl.sweep("seed", seeds))
