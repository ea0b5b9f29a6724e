r"""Vector to sequence (one to many, the image-captioning set-up): a number n < 10,000 comes in as
the vector of its 14 binary digits (+-1); a learned projection of it starts the decoder, which
writes n's decimal digits from a start token to an end token.

    python -m rnnlab.main --config=configs/vec2seq.py --workdir=runs/vec2seq
    python -m rnnlab.sample --workdir=runs/vec2seq --input=6371
    python -m rnnlab.main --config=configs/vec2seq.py --config.task.feed_vector=True \
        --workdir=runs/vec2seq_fed

`--config.task.feed_vector=True` also feeds the vector at every step. Expected (measured on the
2-core development machine): see the README's table of tasks. `:smoke` finishes in seconds.
"""

from configs import base


def get_config(arg=None):
    arg = base.variant(arg, "smoke")
    c = base.get_config()
    c.task.name = "vec2seq"
    c.data.max_digits = 4
    c.data.eval_examples = 1000
    c.model.cell = "lstm"
    c.model.hidden_size = 128
    c.model.num_layers = 1
    c.train.steps = 3000
    c.train.batch_size = 64
    c.train.bptt_len = 0  # full BPTT
    c.train.log_every = 100
    c.train.eval_every = 500
    c.train.ckpt_every = 500
    c.optim.name = "adam"
    c.optim.lr = 3e-3
    c.optim.clip_norm = 1.0
    if arg == "smoke":
        base.smoke(c)
    return c
