r"""Parity: the parity of the sum of T = 10 random bits, read from the last step (chance:
accuracy 0.5, loss log 2). `--config.task.target=running` asks for the parity of every prefix.

    python -m rnnlab.main --config=configs/parity.py --workdir=runs/parity
    python -m rnnlab.main --config=configs/parity.py --config.task.target=running \
        --workdir=runs/parity_running

Expected (measured on the 2-core development machine): see the README's table of tasks.
`:smoke` (T = 12) finishes in seconds.
"""

from configs import base


def get_config(arg=None):
    arg = base.variant(arg, "smoke")
    c = base.get_config()
    c.task.name = "parity"
    c.data.length = 10
    c.model.cell = "lstm"
    c.model.hidden_size = 64
    c.model.num_layers = 1
    c.train.steps = 3000
    c.train.batch_size = 64
    c.train.bptt_len = 0  # full BPTT
    c.train.log_every = 100
    c.train.eval_every = 500
    c.train.ckpt_every = 500
    c.train.sample_length = 0
    c.optim.name = "adam"
    c.optim.lr = 3e-3
    c.optim.clip_norm = 1.0
    if arg == "smoke":
        base.smoke(c)
    return c
