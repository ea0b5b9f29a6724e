r"""Greff et al.'s LSTM variants at CPU scale: the vanilla (peephole) LSTM, its eight variants,
the GRU, MUT1, minGRU and the plain LSTM, parameter-matched, three seeds on the offline pydoc
corpus (`:python_source` for the second corpus, where the sweep's `:2` runs two seeds).

    python -m launch.sweep --config=experiments/greff_variants/config.py \
        --sweep=experiments/greff_variants/config.py --workdir=runs/greff_variants \
        --executor=vmap
    python -m launch.report --sweep_dir=runs/greff_variants --metric=valid/bpc \
        --out=experiments/greff_variants/results
    python -m launch.sweep --config=experiments/greff_variants/config.py:python_source \
        --sweep=experiments/greff_variants/config.py:2 --workdir=runs/greff_variants_source \
        --executor=vmap

One layer, `model.param_budget` = 100k parameters (embedding 32 and readout included: each
architecture gets the hidden size closest to it), B=32 streams, T=64, 1,500 Adam updates at
3e-3 with a cosine decay, clip 1. Results and what they say: README.md here.
"""

from launch import dsl

from configs import base

ARCHITECTURES = [{"model.cell": "lstm", "model.variant": v} for v in (
    "vanilla", "nig", "nfg", "nog", "niaf", "noaf", "np", "cifg", "fgr")] + [
    {"model.cell": "lstm"}, {"model.cell": "gru"}, {"model.cell": "mut1"},
    {"model.cell": "mingru"}]


def get_config(arg=None):
    arg = base.variant(arg, "python_source", "smoke")
    c = base.get_config()
    c.data.name = "python_source" if arg == "python_source" else "pydoc"
    c.model.param_budget = 100_000
    c.model.num_layers = 1
    c.model.embed_size = 32
    c.train.steps = 1500
    c.train.batch_size = 32
    c.train.bptt_len = 64
    c.train.log_every = 100
    c.train.eval_every = 500
    c.train.eval_batches = 20
    c.train.ckpt_every = 500
    c.train.sample_length = 0
    c.optim.name = "adam"
    c.optim.lr = 3e-3
    c.optim.schedule = "cosine"
    c.optim.final_lr_factor = 0.1
    c.optim.clip_norm = 1.0
    if arg == "smoke":
        base.smoke(c)
    return c


def get_sweep(arg=None):
    """Every architecture x seeds 0, 1, 2 (`:2`: seeds 0 and 1 only)."""
    seeds = list(range(int(arg))) if arg else [0, 1, 2]
    return dsl.product(dsl.chain(*[dsl.product(*[dsl.fixed(k, v) for k, v in a.items()])
                                   for a in ARCHITECTURES]),
                       dsl.sweep("seed", seeds))
