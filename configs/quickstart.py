"""Quickstart: a character LSTM on the offline corpus (Python's help text), CPU-sized.

    python -m rnnlab.main --config=configs/quickstart.py --workdir=runs/quickstart
    python -m rnnlab.sample --workdir=runs/quickstart --prime="The " --length=300

Data: `pydoc` (the prose of Python's `help()` topics, ~465k characters, shipped with Python;
no download). Expected: 3-4 minutes on 2 CPU cores (28-36k characters/s); validation bpc
falls from 6.7 (uniform over 104 symbols) to about 1.85 and test bpc to about 1.57, every
character of each split scored at the end (measured on Python 3.11.7; the help text differs between Python versions), and samples show English
words, code examples and reStructuredText tables.
`:smoke` finishes in well under a minute.
"""

from configs import base


def get_config(arg=None):
    arg = base.variant(arg, "smoke")
    c = base.get_config()
    c.data.name = "pydoc"
    c.model.cell = "lstm"
    c.model.hidden_size = 256
    c.model.num_layers = 1
    c.model.embed_size = 32
    c.model.dropout = 0.25
    c.train.steps = 3000
    c.train.batch_size = 32
    c.train.bptt_len = 64
    c.train.log_every = 50
    c.train.eval_every = 1000
    c.train.ckpt_every = 1000
    c.optim.name = "adam"
    c.optim.lr = 3e-3
    c.optim.schedule = "cosine"
    c.optim.final_lr_factor = 0.1
    if arg == "smoke":
        base.smoke(c)
    return c
