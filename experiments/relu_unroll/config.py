r"""Does relu let a vanilla (Elman) RNN train with longer unrolls than tanh? LSTM as a control.

    python -m launch.sweep --config=experiments/relu_unroll/config.py \
        --sweep=experiments/relu_unroll/config.py --workdir=runs/relu_unroll --executor=vmap
    python -m launch.report --sweep_dir=runs/relu_unroll --metric=valid/bpc \
        --out=experiments/relu_unroll/results

One-hot characters of the offline pydoc corpus, one layer of 128 units, B=32 streams, the
same number of updates (train.steps) at every truncated-BPTT length T, Adam 2e-3 with
gradients clipped to norm 5. Results and what they say: README.md beside this file.

`:sgd` is the tutorial's own recipe: plain SGD, the learning rate decaying exponentially from
1.0 to 0.1 over the run, gradients clipped to norm 1.25, relu with identity initialisation
(IRNN), two seeds, and the gradient flow logged at each evaluation:

    python -m launch.sweep --config=experiments/relu_unroll/config.py:sgd \
        --sweep=experiments/relu_unroll/config.py:sgd --workdir=runs/relu_unroll_sgd \
        --executor=vmap
    python -m launch.report --sweep_dir=runs/relu_unroll_sgd --metric=valid/bpc \
        --out=experiments/relu_unroll/results_sgd
"""

from launch import dsl

from configs import base


def get_config(arg=None):
    arg = base.variant(arg, "sgd", "smoke", "one_seed")
    c = base.get_config()
    c.data.name = "pydoc"
    c.model.cell = "elman"
    c.model.hidden_size = 128
    c.model.num_layers = 1
    c.model.embed_size = 0
    c.train.steps = 4000
    c.train.batch_size = 32
    c.train.bptt_len = 10
    c.train.log_every = 50
    c.train.eval_every = 500
    c.train.ckpt_every = 1000
    c.train.sample_length = 100
    c.optim.name = "adam"
    c.optim.lr = 2e-3
    c.optim.schedule = "constant"
    c.optim.clip_norm = 5.0
    if arg == "sgd":
        c.optim.name = "sgd"
        c.optim.lr = 1.0
        c.optim.schedule = "exponential"
        c.optim.decay_rate = 0.1
        c.optim.decay_steps = c.train.steps  # 1.0 -> 0.1 over the run
        c.optim.clip_norm = 1.25
        c.train.log_gradients = True
    if arg == "smoke":
        base.smoke(c)
    return c


def get_sweep(arg=None):
    if arg == "sgd":
        cells = dsl.chain(
            dsl.product(dsl.fixed("model.cell", "elman"), dsl.fixed("model.activation", "tanh")),
            dsl.product(dsl.fixed("model.cell", "elman"), dsl.fixed("model.activation", "relu"),
                        dsl.fixed("model.init", "identity")),
            dsl.product(dsl.fixed("model.cell", "lstm"), dsl.fixed("model.activation", "tanh")))
        return dsl.product(cells, dsl.sweep("train.bptt_len", [10, 20, 40, 80]),
                           dsl.sweep("seed", [0, 1]))
    cells = dsl.chain(
        dsl.product(dsl.fixed("model.cell", "elman"), dsl.sweep("model.activation", ["tanh", "relu"])),
        dsl.product(dsl.fixed("model.cell", "lstm"), dsl.fixed("model.activation", "tanh")),
    )
    seeds = [0] if arg == "one_seed" else [0, 1, 2]
    return dsl.product(cells, dsl.sweep("train.bptt_len", [10, 20, 40, 80]), dsl.sweep("seed", seeds))
