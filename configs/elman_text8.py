"""A tanh Elman RNN on text8 with the classic TensorFlow text8 tutorial's training settings.

    python -m rnnlab.main --config=configs/elman_text8.py --workdir=runs/elman_text8

Settings of the tutorial (Udacity "Deep Learning" assignment 6): B=64 cursors, unrolls of
T=10 characters, plain SGD at lr 10 decayed x0.1 every 5000 steps (staircase), gradients
clipped to global norm 1.25, 7001 steps; here with 256 tanh units and one-hot inputs.
Expected runtime: a few minutes on a GPU, under an hour on 2 CPU cores.
Expected result: not measured yet with rnnlab on full text8.
`:smoke`: tiny, offline corpus, well under a minute.
"""

from configs import base


def get_config(arg=None):
    arg = base.variant(arg, "smoke")
    c = base.get_config()
    c.data.name = "text8"
    c.model.cell = "elman"
    c.model.activation = "tanh"
    c.model.hidden_size = 256
    c.model.num_layers = 1
    c.train.steps = 7_001
    c.train.batch_size = 64
    c.train.bptt_len = 10
    c.train.log_every = 100
    c.train.eval_every = 1_000
    c.train.eval_batches = 200
    c.train.ckpt_every = 1_000
    c.optim.name = "sgd"
    c.optim.lr = 10.0
    c.optim.schedule = "exponential"
    c.optim.decay_rate = 0.1
    c.optim.decay_steps = 5_000
    c.optim.staircase = True
    c.optim.clip_norm = 1.25
    if arg == "smoke":
        base.smoke(c)
    return c
