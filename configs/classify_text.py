r"""Many-to-one text classification: a character LSTM reads a text and names its label.

    python -m rnnlab.main --config=configs/classify_text.py --workdir=runs/classify
    python -m rnnlab.main --config=configs/classify_text.py --config.data.path=reviews.csv \
        --config.data.text_field=review --config.data.label_field=stars --workdir=runs/reviews

Without data.path it learns the offline prose-or-code set (Python's help paragraphs against its
standard library's source; chance 0.5). A CSV/TSV (header row) or JSON-lines file of your own
takes `data.text_field` and `data.label_field`; `task.pooling` (last | mean | max) and
`model.bidirectional=True` are a flag away, and `train.bptt_len` > 0 trains long texts with
truncated BPTT. The run writes `confusion_valid.csv` and `confusion_test.csv` at the end.
Expected (measured on the 2-core development machine): see the README's table of tasks.
"""

from configs import base


def get_config(arg=None):
    arg = base.variant(arg, "smoke")
    c = base.get_config()
    c.task.name = "classify"
    c.task.pooling = "last"
    c.model.cell = "lstm"
    c.model.hidden_size = 128
    c.model.num_layers = 1
    c.model.embed_size = 32
    c.train.steps = 1500
    c.train.batch_size = 32
    c.train.bptt_len = 0  # full BPTT over each text
    c.train.log_every = 50
    c.train.eval_every = 500
    c.train.ckpt_every = 500
    c.train.sample_length = 0
    c.optim.name = "adam"
    c.optim.lr = 2e-3
    c.optim.clip_norm = 1.0
    if arg == "smoke":
        base.smoke(c)
    return c
