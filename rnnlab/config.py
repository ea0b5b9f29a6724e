"""The config schema of rnnlab (every key once, with its default and meaning) and its rule tables.

Run configs (`configs/*.py`, which import this through `configs.base`) start from
`get_config()` and change only what differs. A key set to None (a typed placeholder) means "the
cell's or library's own default".

The checks of single values are data: each concept has a table of `Rule`s keyed by the dotted
key (`TRAIN`, `DATA`, `EVAL`, `SEED`), read by `check` with the keys a task or a choice reads,
like `rnnlab.optim`'s table of the optimizer keys. Rules that tie several keys together stay
with the code that knows why (a task's `check`, `rnnlab.model.check_model_config`), and
`rnnlab.validation.check_config` runs them all.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any, Callable, NamedTuple

import ml_collections
from ml_collections import config_dict

placeholder = config_dict.placeholder


# ------------------------------------------------------------------------------ the schema


def _task() -> ml_collections.ConfigDict:
    t = ml_collections.ConfigDict()
    t.name = "lm"  # the sequence regime: a name in rnnlab.tasks.TASKS
    t.pooling = "last"  # many-to-one: the readout reads the last valid step | mean | max
    t.target = "final"  # parity: the parity of the whole sequence | running (every step)
    t.feed_vector = False  # vec2seq: feed the conditioning vector at every decoder step
    return t


def _data() -> ml_collections.ConfigDict:
    d = ml_collections.ConfigDict()
    d.name = "pydoc"  # text8 | text | pydoc (offline: Python's help text) | python_source
    d.path = ""  # data.name=text: path of a UTF-8 text file
    d.dir = ""  # text8 cache; "" -> $RNNLAB_DATA_DIR, else ~/.cache/rnnlab
    d.url = "http://mattmahoney.net/dc/text8.zip"  # where text8 is downloaded from
    d.sha1 = "6c70299b93b7e1f927b42cd8f6ac1a31547c7a2e"  # SHA-1 of text8.zip
    d.valid_fraction = 0.05  # contiguous split: train, then valid, then test (text8: 5M)
    d.test_fraction = 0.05  # the last fraction of the corpus is the test split
    d.max_chars = 0  # use only the first N characters of the corpus (0: all)
    d.text_field = "text"  # classify/regress: the text column of data.path
    d.label_field = "label"  # classify/regress: the label column of data.path
    d.valid_path = ""  # classify/regress: separate valid and test files (else split path)
    d.test_path = ""  # classify/regress: the test file, with data.valid_path
    d.split_seed = 0  # classify/regress: the split of data.path (fixed across seeds)
    d.max_length = 0  # classify/regress: cut texts to this many characters (0: no limit)
    d.length = 100  # adding, parity: the sequence length T
    d.delay = 100  # copy: T, the blank steps between the data and its recall
    d.eval_examples = 1000  # synthetic tasks: fixed valid and test examples, each
    d.max_digits = 3  # seq2seq addition (b < 10^D), vec2seq (numbers < 10^D): D
    return d


def _model_layers(m: ml_collections.ConfigDict) -> None:
    m.cell = "lstm"  # a name in rnnlab.cells.CELLS or "package.module:factory"
    m.hidden_size = 256  # H of every recurrent layer
    m.param_budget = 0  # > 0: pick hidden_size for this many parameters (all of the model)
    m.num_layers = 2  # stacked recurrent layers
    m.embed_size = 0  # learned character embedding size; 0: one-hot inputs
    m.activation = placeholder(str)  # the cell's activation (tanh, relu, ...)
    m.init = placeholder(str)  # recurrent kernel init: orthogonal, identity, normal, ...
    m.init_scale = placeholder(float)  # gain of the recurrent kernel init
    m.forget_bias = placeholder(float)  # lstm: forget-gate bias at init (default 1)
    m.reset_after = placeholder(bool)  # gru: reset after the matmul (default True)
    m.variant = placeholder(str)  # lstm: Greff et al.'s vanilla|nig|nfg|nog|niaf|noaf|np|cifg|fgr
    m.peepholes = placeholder(bool)  # lstm: peephole connections (the vanilla variant)
    m.leak = placeholder(float)  # elman: leaky units h = (1-a) h + a act(...), rate a
    m.learn_leak = placeholder(bool)  # elman: learn a leak rate per unit (from model.leak)
    m.integration = placeholder(str)  # elman/lstm/gru: additive | multiplicative (Wu 2016)
    m.bidirectional = False  # both directions; sees the future, so rejected for LM


def _model_regularisers(m: ml_collections.ConfigDict) -> None:
    m.dropout = 0.0  # dropout between layers and before the readout (training only)
    m.zoneout = 0.0  # zoneout rate of the carry (Krueger et al. 2016; mixture at eval)
    m.zoneout_c = placeholder(float)  # lstm: another zoneout rate for c (then zoneout: h)
    m.weight_drop = 0.0  # DropConnect on the recurrent matrix w_h (training only)
    m.recurrent_dropout = 0.0  # Gal's variational dropout of h in the recurrent matmuls
    m.residual = False  # residual connections between stacked layers of equal size


def _model_execution(m: ml_collections.ConfigDict) -> None:
    m.scan_unroll = 1  # lax.scan unroll factor (compiler knob, not the BPTT length)
    m.parallel_scan = placeholder(bool)  # linear cells: True/False; None: not on CPU
    m.projection = "fused"  # input projection: fused into each step, or hoisted
    m.dtype = "float32"  # compute dtype: float32 | bfloat16 (params, optimizer, loss, c: float32)
    m.remat = 0  # rematerialise the scan every k steps: memory ~ T/k + k steps; 0: off
    # native (oneDNN on a CPU) | custom (hand-derived) | autodiff | auto: native for lstm and gru
    # on a CPU where it is built, else custom (elman/irnn tanh or relu, lstm, gru), else autodiff
    m.backward = "auto"
    m.learn_initial_carry = False  # a learned initial state instead of zeros


def _model_jordan(m: ml_collections.ConfigDict) -> None:
    m.jordan_mu = 0.0  # jordan: decay of its context, s_t = f_t + mu s_{t-1} (0: none)
    m.jordan_feedback = "teacher"  # jordan feeds back: teacher (previous target) | output
    # (its softmax, free running) | sample (of its output) | scheduled (sampling, Bengio 2015)
    m.sampling_schedule = "inverse_sigmoid"  # scheduled: P(target) by step | linear | exponential
    m.sampling_k = 1000.0  # inverse_sigmoid k/(k+exp(i/k)); linear steps to 0; exponential k^i


def _model() -> ml_collections.ConfigDict:
    m = ml_collections.ConfigDict()
    for part in (_model_layers, _model_regularisers, _model_execution, _model_jordan):
        part(m)
    return m


def _decoder() -> ml_collections.ConfigDict:
    # seq2seq/vec2seq: the decoder's layers are model.*'s, except for the keys set here.
    d = ml_collections.ConfigDict()
    d.cell = placeholder(str)  # the decoder's cell (None: model.cell)
    d.hidden_size = placeholder(int)  # its H (None: model.hidden_size)
    d.num_layers = placeholder(int)  # its depth (None: model.num_layers)
    return d


def _eval() -> ml_collections.ConfigDict:
    e = ml_collections.ConfigDict()
    e.beam_size = 1  # seq2seq/vec2seq: free-running decoding: 1 greedy, > 1 beam search
    e.length_penalty = 0.0  # beam search: scores / ((5 + length) / 6) ** this (GNMT)
    return e


def _train() -> ml_collections.ConfigDict:
    t = ml_collections.ConfigDict()
    t.steps = 10_000  # optimizer steps (one truncated-BPTT window each)
    t.batch_size = 64  # B contiguous streams
    t.bptt_len = 100  # T: truncated-BPTT window length (the "unroll length"); 0: full
    t.carry_state = True  # carry the state across windows (False: reset each window)
    t.log_every = 100  # console/metrics.jsonl training log interval, in steps
    t.eval_every = 1000  # validation (and a sample) interval, in steps
    t.eval_batches = 0  # validation windows per evaluation; 0: the whole split
    t.eval_batch_size = 0  # streams for evaluation; 0: train.batch_size
    t.final_eval_streams = 16  # lm: the final evaluation scores every character from S starts
    t.ckpt_every = 1000  # checkpoint interval, in steps (and always at the end)
    t.keep_checkpoints = 3  # keep the last K checkpoints (and the best one apart)
    t.skip_nonfinite = False  # skip non-finite updates and count them instead of stopping
    t.max_nonfinite = 100  # with skip_nonfinite: stop after this many skipped updates
    # Early stopping: end the run (status "finished") after this many evaluations in a row
    # without improving the best validation metric by more than min_delta; 0: never.
    t.patience = 0
    t.min_delta = 0.0  # in the units of the task's headline metric (bpc, accuracy, ...)
    # Trackers mirroring metrics.jsonl (comma-separated): tensorboard (when tensorboardX is
    # installed) | mlflow; "": none.
    t.trackers = "tensorboard"
    t.mlflow_uri = ""  # MLflow tracking URI; "": $MLFLOW_TRACKING_URI, else MLflow's default
    t.mlflow_experiment = ""  # MLflow experiment; "": the run directory's parent's name
    t.sample_length = 200  # characters sampled at each evaluation (0: none)
    t.sample_temperature = 0.8  # temperature of those samples
    t.sample_prime = ""  # text training's samples start from ("": a place in valid)
    # At each evaluation, a "gradients" line in metrics.jsonl: the mean norm of dL/dh_t (L: the
    # last step's loss) of the first recurrent layer at t=1 and t=T-1 of a train batch, and
    # their ratio (vanishing: << 1).
    t.log_gradients = False
    return t


def _optim() -> ml_collections.ConfigDict:
    o = ml_collections.ConfigDict()
    o.name = "adam"  # sgd | momentum | rmsprop | adagrad | adam | adamw
    o.lr = 2e-3  # peak learning rate
    o.schedule = "constant"  # constant | exponential | step | cosine | warmup_cosine | linear
    o.decay_rate = 0.97  # exponential/step: factor per decay_steps
    o.decay_steps = 1000  # exponential/step: steps per decay (cosine/linear: all steps)
    o.decay_after = 0  # step: steps before decay starts (char-rnn's 10 epochs)
    o.staircase = False  # exponential: decay in discrete jumps
    o.warmup_steps = 0  # warmup_cosine: linear warmup from 0
    o.final_lr_factor = 0.0  # cosine/linear: final lr as a fraction of optim.lr
    o.momentum = 0.9  # the momentum optimizer's coefficient
    o.rms_decay = 0.95  # rmsprop: decay of the squared-gradient average (char-rnn 0.95)
    o.b1 = 0.9  # adam/adamw
    o.b2 = 0.999  # adam/adamw
    o.eps = 1e-8  # adam/adamw/rmsprop/adagrad epsilon
    o.clip_norm = 5.0  # clip gradients by global norm; 0: off
    o.clip_value = 0.0  # clip gradients elementwise (char-rnn's grad_clip); 0: off
    o.weight_decay = 0.0  # decoupled for adamw, added to the gradient otherwise
    return o


def get_config(arg=None) -> ml_collections.ConfigDict:
    """Every key of rnnlab with its default: the config that run configs change.

    Args:
      arg: the ARG of `--config=FILE:ARG`; the schema has no variants, so it is ignored.
    """
    del arg
    c = ml_collections.ConfigDict()
    c.seed = 0  # seeds params, dropout, sampling and the data order: same seed -> same run
    c.task = _task()
    c.data = _data()
    c.model = _model()
    c.decoder = _decoder()
    c.eval = _eval()
    c.train = _train()
    c.optim = _optim()
    return c


def variant(arg, *names: str):
    """`arg`, the ARG of `--config=FILE:ARG`, checked against the variants a config has: None
    (the config itself) or one of `names`; anything else is a ValueError listing them (a typo
    would otherwise run the full config without a word)."""
    if arg is None or arg in names:
        return arg
    raise ValueError(f"unknown config variant {arg!r}; this config has: "
                     f"{', '.join(names) or 'none'} (or none at all)")


def smoke(c: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
    """Shrinks a run config to a smoke test: well under a minute on CPU, offline.

    The task, model family, cell and optimizer stay; a corpus becomes the first 40k characters
    of the offline `pydoc` corpus (no download), and synthetic sequences get short.
    """
    if c.task.name == "lm":
        c.data.name = "pydoc"
    c.data.max_chars = 40_000
    c.data.length = min(c.data.length, 12)
    c.data.delay = min(c.data.delay, 5)
    c.data.eval_examples = min(c.data.eval_examples, 64)
    c.model.hidden_size = 32
    c.model.embed_size = min(c.model.embed_size, 16)
    c.train.steps = 30
    c.train.batch_size = 8
    c.train.bptt_len = 16 if c.task.name == "lm" else min(c.train.bptt_len, 6)
    c.train.log_every = 5
    c.train.eval_every = 10
    c.train.eval_batches = 4
    c.train.ckpt_every = 10
    c.train.sample_length = 40
    c.optim.decay_steps = min(c.optim.decay_steps, 10)
    c.optim.decay_after = min(c.optim.decay_after, 10)
    c.optim.warmup_steps = min(c.optim.warmup_steps, 5)
    return c


# ----------------------------------------------------------------------------- the rules


class Rule(NamedTuple):
    """What one key may hold: `ok(value)`, and `allowed`, the words for it in the error."""

    ok: Callable[[Any], bool]
    allowed: str


def _positive_int(x: Any) -> bool:
    # (bool passes, as it did when these keys were checked one by one: True is 1)
    return isinstance(x, int) and x > 0


_POSITIVE_INT = Rule(_positive_int, "a positive integer")

# A JAX key holds 32 bits of a seed: a larger seed would silently repeat a smaller one's run
# (2**32 gives seed 0's key), and training samples from the key of seed + 1.
MAX_SEED = 2**32 - 2

SEED = {
    "seed": Rule(lambda x: isinstance(x, int) and not isinstance(x, bool) and 0 <= x <= MAX_SEED,
                 f"an integer from 0 to {MAX_SEED} (a JAX key holds 32 bits: a larger seed "
                 f"would repeat a smaller one's run)"),
}

TRAIN = {
    **{f"train.{key}": _POSITIVE_INT for key in (
        "steps", "batch_size", "log_every", "eval_every", "ckpt_every", "keep_checkpoints",
        "max_nonfinite", "final_eval_streams")},
    "train.bptt_len": Rule(lambda x: isinstance(x, int) and x >= 0,
                           "an integer >= 0 (0: full BPTT where the task allows it)"),
    **{f"train.{key}": Rule(lambda x: x >= 0, ">= 0 (0: the default)")
       for key in ("eval_batches", "eval_batch_size", "sample_length")},
    "train.log_gradients": Rule(lambda x: isinstance(x, bool), "True or False"),
    "train.sample_temperature": Rule(lambda x: x >= 0, ">= 0"),
    "train.patience": Rule(lambda x: isinstance(x, int) and x >= 0,
                           "an integer >= 0 (evaluations; 0: no early stopping)"),
    "train.min_delta": Rule(lambda x: math.isfinite(x) and x >= 0, ">= 0"),
}

# The data keys a task reads; each task's `check` names the ones it uses.
DATA = {
    "data.max_chars": Rule(lambda x: x >= 0, ">= 0 (0: all)"),
    "data.max_length": Rule(lambda x: isinstance(x, int) and x >= 0,
                            "an integer >= 0 (0: no limit)"),
    "data.max_digits": Rule(lambda x: isinstance(x, int) and 1 <= x <= 8, "an integer in [1, 8]"),
    "data.eval_examples": _POSITIVE_INT,
    "data.length": Rule(lambda x: isinstance(x, int) and x >= 2, "an integer >= 2"),
    "data.delay": Rule(lambda x: isinstance(x, int) and x >= 1, "an integer >= 1"),
}

EVAL = {
    "eval.beam_size": Rule(lambda x: isinstance(x, int) and x >= 1, "a positive integer"),
    "eval.length_penalty": Rule(lambda x: math.isfinite(x) and x >= 0, ">= 0"),
}


def value(config: ml_collections.ConfigDict, key: str) -> Any:
    """The value of the dotted `key` ("train.steps") in `config`."""
    for part in key.split("."):
        config = config[part]
    return config


def check(config: ml_collections.ConfigDict, rules: dict[str, Rule],
          keys: Iterable[str] | None = None) -> None:
    """Raises ValueError "KEY must be ALLOWED, got VALUE" for the first of `keys` (default: every
    key of `rules`, in the table's order) whose value its rule refuses."""
    for key in rules if keys is None else keys:
        got = value(config, key)
        ok, allowed = rules[key]
        if not ok(got):
            raise ValueError(f"{key} must be {allowed}, got {got!r}")


# ------------------------------------------------------------------------------ the key list


def meanings() -> dict[str, str]:
    """Every dotted key of the schema -> its one-line meaning, read from this file: the comment
    after the key (with the comment lines right below it), or the comment block right above a
    key that has none. What `python -m rnnlab.main --help_config` lists."""
    import ast
    import pathlib
    import re

    source = pathlib.Path(__file__).read_text()
    lines, schema, out = source.splitlines(), get_config(), {}
    for fn in ast.parse(source).body:
        top = getattr(fn, "name", "") == "get_config"
        section = getattr(fn, "name", "")[1:].split("_")[0]
        if not top and section not in schema:
            continue
        pending, last = [], None
        for line in lines[fn.lineno:fn.end_lineno]:
            text = line.strip()
            match = re.fullmatch(r"\w+\.(\w+) = .*?(?:  # (.*))?", text)
            if text.startswith("#"):
                pending.append(text.lstrip("#").strip())
                continue
            key = match and (match[1] if top else f"{section}.{match[1]}")
            if not key or isinstance(value(schema, key), ml_collections.ConfigDict):
                pending, last = [], None
                continue
            if match[2] and pending and last:  # the comment went on below the previous key
                out[last] += " " + " ".join(pending)
            out[key], pending, last = match[2] or " ".join(pending), [], key
    return out
