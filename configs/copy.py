"""Copy memory (Arjovsky, Shah & Bengio 2016): remember 10 symbols over a delay of T = 50 blank
steps and write them out after the "go" symbol. The memoryless strategy scores
CE = 10 log 8 / (T + 20) (`baseline_loss`) and chance `recall_accuracy` 1/8.

    python -m rnnlab.main --config=configs/copy.py --workdir=runs/copy
    python -m rnnlab.main --config=configs/copy.py --config.data.delay=100 --workdir=runs/copy100

Expected (measured on the 2-core development machine): see the README's table of tasks.
`:smoke` (T = 5) finishes in seconds.
"""

from configs import base


def get_config(arg=None):
    arg = base.variant(arg, "smoke")
    c = base.get_config()
    c.task.name = "copy"
    c.data.delay = 50
    c.model.cell = "lstm"
    c.model.hidden_size = 128
    c.model.num_layers = 1
    c.train.steps = 3000
    c.train.batch_size = 64
    c.train.bptt_len = 0  # full BPTT: every step is scored
    c.train.log_every = 100
    c.train.eval_every = 500
    c.train.ckpt_every = 500
    c.train.sample_length = 0
    c.optim.name = "adam"
    c.optim.lr = 2e-3
    c.optim.clip_norm = 1.0
    if arg == "smoke":
        base.smoke(c)
    return c
