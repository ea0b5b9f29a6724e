r"""Interpretable cells: a character LSTM on Python source code (the offline `python_source`
corpus: the standard library's top-level *.py files, the "source code" experiment of Karpathy's
char-rnn post), then the units that track quotes, brackets, line position, indentation and
comments.

    python -m rnnlab.main --config=experiments/interpretable_cells/config.py \
        --workdir=runs/interpretable_cells
    python -m rnnlab.diagnose units --workdir=runs/interpretable_cells --length=3000 \
        --out=experiments/interpretable_cells/results
    python -m rnnlab.diagnose gates --workdir=runs/interpretable_cells \
        --out=experiments/interpretable_cells/results

Results and what they show: README.md beside this file.
"""

from configs import base


def get_config(arg=None):
    arg = base.variant(arg, "smoke")
    c = base.get_config()
    c.data.name = "python_source"
    c.model.cell = "lstm"
    c.model.hidden_size = 256
    c.model.num_layers = 1
    c.model.embed_size = 0  # one-hot characters, as char-rnn
    c.model.dropout = 0.0
    c.train.steps = 4000
    c.train.batch_size = 32
    c.train.bptt_len = 100
    c.train.log_every = 100
    c.train.eval_every = 1000
    c.train.eval_batches = 20
    c.train.ckpt_every = 1000
    c.optim.name = "adam"
    c.optim.lr = 2e-3
    c.optim.schedule = "cosine"
    c.optim.final_lr_factor = 0.1
    c.optim.clip_norm = 5.0
    if arg == "smoke":
        base.smoke(c)
    return c
