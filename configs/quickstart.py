"""Quickstart: a character LSTM on the offline corpus (Python's help text), CPU-sized.

    python -m rnnlab.main --config=configs/quickstart.py --workdir=runs/quickstart
    python -m rnnlab.sample --workdir=runs/quickstart --prime="The " --length=300

Data: `pydoc` (the prose of Python's `help()` topics, ~465k characters, shipped with Python;
no download). Expected: about 3 minutes on 2 CPU cores; validation bpc falls from ~6.7 (uniform
over ~100 symbols) to about 2 (numbers measured with rnnlab are in the README), and samples
show English words and reStructuredText layout.
`:smoke` finishes in well under a minute.
"""

from configs import base


def get_config(arg=None):
    c = base.get_config()
    c.data.name = "pydoc"
    c.model.cell = "lstm"
    c.model.hidden_size = 256
    c.model.num_layers = 1
    c.model.embed_size = 32
    c.train.steps = 1500
    c.train.batch_size = 32
    c.train.bptt_len = 64
    c.train.log_every = 50
    c.train.eval_every = 500
    c.train.ckpt_every = 500
    c.optim.name = "adam"
    c.optim.lr = 3e-3
    c.optim.schedule = "cosine"
    c.optim.final_lr_factor = 0.1
    if arg == "smoke":
        base.smoke(c)
    return c
