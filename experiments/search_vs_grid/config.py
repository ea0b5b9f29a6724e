r"""Adaptive search against a search run to the end, on the pydoc character language model.

    python -m launch.sweep --config=experiments/search_vs_grid/config.py \
        --sweep=experiments/search_vs_grid/config.py --search=random --trials=30 \
        --search_seed=100 --workdir=runs/search_vs_grid/reference
    python -m launch.sweep --config=experiments/search_vs_grid/config.py \
        --sweep=experiments/search_vs_grid/config.py --search=tpe --pruner=asha --trials=12 \
        --search_seed=0 --workdir=runs/search_vs_grid/tpe_asha_0
    python experiments/search_vs_grid/analyze.py --runs=runs/search_vs_grid \
        --out=experiments/search_vs_grid/results.md

The space (`suggest`): learning rate (log, 1e-4..3e-2), train.bptt_len in {16, 32, 64},
model.hidden_size in {32, 64, 128}, model.dropout (0..0.5) and model.cell in {lstm, gru}.
Each trial trains 300 Adam updates (B=32) on the first 200k characters of pydoc and evaluates
every 50; ASHA's first rung is the first evaluation. README.md here: the runs and what they show.
"""

from configs import base


def get_config(arg=None):
    arg = base.variant(arg, "smoke")
    c = base.get_config()
    c.data.name = "pydoc"
    c.data.max_chars = 200_000
    c.model.num_layers = 1
    c.model.embed_size = 32
    c.train.steps = 300
    c.train.batch_size = 32
    c.train.log_every = 50
    c.train.eval_every = 50
    c.train.ckpt_every = 100
    c.train.sample_length = 0
    c.train.eval_batches = 20
    c.train.final_eval_streams = 4
    c.train.trackers = ""
    if arg == "smoke":
        base.smoke(c)
    return c


def suggest(trial):
    return {
        "optim.lr": trial.suggest_float("optim.lr", 1e-4, 3e-2, log=True),
        "train.bptt_len": trial.suggest_categorical("train.bptt_len", [16, 32, 64]),
        "model.hidden_size": trial.suggest_categorical("model.hidden_size", [32, 64, 128]),
        "model.dropout": trial.suggest_float("model.dropout", 0.0, 0.5),
        "model.cell": trial.suggest_categorical("model.cell", ["lstm", "gru"]),
    }
