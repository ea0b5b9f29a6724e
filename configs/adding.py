r"""The adding problem (CELLS: Le et al. 2015's two-channel form): read two marked numbers out of
a sequence of T = 100 and add them. An LSTM solves it; a plain tanh RNN stalls at the 1/6
baseline as T grows (experiments/vanishing_gradients).

    python -m rnnlab.main --config=configs/adding.py --workdir=runs/adding
    python -m rnnlab.main --config=configs/adding.py --config.data.length=200 \
        --config.model.cell=elman --workdir=runs/adding_elman

Expected (measured on the 2-core development machine): see the README's table of tasks.
`:smoke` (T = 12) finishes in seconds.
"""

from configs import base


def get_config(arg=None):
    arg = base.variant(arg, "smoke")
    c = base.get_config()
    c.task.name = "adding"
    c.data.length = 100
    c.model.cell = "lstm"
    c.model.hidden_size = 64
    c.model.num_layers = 1
    c.train.steps = 3000
    c.train.batch_size = 50
    c.train.bptt_len = 0  # full BPTT
    c.train.log_every = 100
    c.train.eval_every = 500
    c.train.ckpt_every = 500
    c.train.sample_length = 0
    c.optim.name = "adam"
    c.optim.lr = 1e-3
    c.optim.clip_norm = 1.0
    if arg == "smoke":
        base.smoke(c)
    return c
