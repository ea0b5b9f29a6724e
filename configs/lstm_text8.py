"""A char-rnn-scale LSTM on text8 (GPU-sized).

    python -m rnnlab.main --config=configs/lstm_text8.py --workdir=runs/lstm_text8

Data: text8 (downloaded once to ~/.cache/rnnlab, or $RNNLAB_DATA_DIR; 90M/5M/5M split).
Model: 2 x 1024 LSTM, 64-d embedding, dropout 0.1; Adam 2e-3, warmup + cosine, clip 1.0;
B=128 streams x T=100 (12,800 characters per step, 7,000 steps per pass over train).
Expected runtime: a few hours on one modern GPU (not measured yet with rnnlab).
Expected result: not measured yet with rnnlab; published LSTM baselines of this size report
roughly 1.4-1.5 bpc on the text8 test split.
`:smoke` runs the same model family tiny, on the offline corpus, in well under a minute.
"""

from configs import base


def get_config(arg=None):
    arg = base.variant(arg, "smoke")
    c = base.get_config()
    c.data.name = "text8"
    c.model.cell = "lstm"
    c.model.hidden_size = 1024
    c.model.num_layers = 2
    c.model.embed_size = 64
    c.model.dropout = 0.1
    c.train.steps = 50_000
    c.train.batch_size = 128
    c.train.bptt_len = 100
    c.train.log_every = 200
    c.train.eval_every = 2_000
    c.train.eval_batches = 100
    c.train.ckpt_every = 2_000
    c.optim.name = "adam"
    c.optim.lr = 2e-3
    c.optim.schedule = "warmup_cosine"
    c.optim.warmup_steps = 1_000
    c.optim.final_lr_factor = 0.05
    c.optim.clip_norm = 1.0
    if arg == "smoke":
        base.smoke(c)
    return c
