"""Every configuration key of rnnlab, declared once with its default and what it means.

Run configs (`configs/*.py`) start from `get_config()` here and change only what differs.
A key set to None (a typed placeholder) means "the cell's or library's own default".
"""

from ml_collections import config_dict

placeholder = config_dict.placeholder


def get_config(arg=None):
    del arg
    c = config_dict.ConfigDict()
    c.seed = 0  # seeds params, dropout, sampling and the data order: same seed -> same run

    c.task = config_dict.ConfigDict()
    c.task.name = "lm"  # the sequence regime: a name in rnnlab.tasks.TASKS
    c.task.pooling = "last"  # many-to-one: the readout reads the last valid step | mean | max
    c.task.target = "final"  # parity: the parity of the whole sequence | running (every step)
    c.task.feed_vector = False  # vec2seq: feed the conditioning vector at every decoder step

    c.data = config_dict.ConfigDict()
    c.data.name = "pydoc"  # text8 | text | pydoc (offline: Python's help text) | python_source
    c.data.path = ""  # data.name=text: path of a UTF-8 text file
    c.data.dir = ""  # text8 cache; "" -> $RNNLAB_DATA_DIR, else ~/.cache/rnnlab
    c.data.url = "http://mattmahoney.net/dc/text8.zip"  # where text8 is downloaded from
    c.data.sha1 = "6c70299b93b7e1f927b42cd8f6ac1a31547c7a2e"  # SHA-1 of text8.zip
    c.data.valid_fraction = 0.05  # contiguous split: train, then valid, then test (text8: 5M)
    c.data.test_fraction = 0.05  # the last fraction of the corpus is the test split
    c.data.max_chars = 0  # use only the first N characters of the corpus (0: all)
    c.data.text_field = "text"  # classify/regress: the text column of data.path
    c.data.label_field = "label"  # classify/regress: the label column of data.path
    c.data.valid_path = ""  # classify/regress: separate valid and test files (else split path)
    c.data.test_path = ""  # classify/regress: the test file, with data.valid_path
    c.data.split_seed = 0  # classify/regress: the split of data.path (fixed across seeds)
    c.data.max_length = 0  # classify/regress: cut texts to this many characters (0: no limit)
    c.data.length = 100  # adding, parity: the sequence length T
    c.data.delay = 100  # copy: T, the blank steps between the data and its recall
    c.data.eval_examples = 1000  # synthetic tasks: fixed valid and test examples, each
    c.data.max_digits = 3  # seq2seq addition (b < 10^D), vec2seq (numbers < 10^D): D

    c.model = config_dict.ConfigDict()
    c.model.cell = "lstm"  # a name in rnnlab.cells.CELLS or "package.module:factory"
    c.model.hidden_size = 256  # H of every recurrent layer
    c.model.param_budget = 0  # > 0: pick hidden_size for this many parameters (all of the model)
    c.model.num_layers = 2  # stacked recurrent layers
    c.model.embed_size = 0  # learned character embedding size; 0: one-hot inputs
    c.model.activation = placeholder(str)  # the cell's activation (tanh, relu, ...)
    c.model.init = placeholder(str)  # recurrent kernel init: orthogonal, identity, normal, ...
    c.model.init_scale = placeholder(float)  # gain of the recurrent kernel init
    c.model.forget_bias = placeholder(float)  # lstm: forget-gate bias at init (default 1)
    c.model.reset_after = placeholder(bool)  # gru: reset after the matmul (default True)
    c.model.variant = placeholder(str)  # lstm: Greff et al.'s vanilla|nig|nfg|nog|niaf|noaf|np|cifg|fgr
    c.model.peepholes = placeholder(bool)  # lstm: peephole connections (the vanilla variant)
    c.model.leak = placeholder(float)  # elman: leaky units h = (1-a) h + a act(...), rate a
    c.model.learn_leak = placeholder(bool)  # elman: learn a leak rate per unit (from model.leak)
    c.model.integration = placeholder(str)  # elman/lstm/gru: additive | multiplicative (Wu 2016)
    c.model.bidirectional = False  # both directions; sees the future, so rejected for LM
    c.model.dropout = 0.0  # dropout between layers and before the readout (training only)
    c.model.zoneout = 0.0  # zoneout rate of the carry (Krueger et al. 2016; mixture at eval)
    c.model.zoneout_c = placeholder(float)  # lstm: another zoneout rate for c (then zoneout: h)
    c.model.weight_drop = 0.0  # DropConnect on the recurrent matrix w_h (training only)
    c.model.recurrent_dropout = 0.0  # Gal's variational dropout of h in the recurrent matmuls
    c.model.residual = False  # residual connections between stacked layers of equal size
    c.model.scan_unroll = 1  # lax.scan unroll factor (compiler knob, not the BPTT length)
    c.model.parallel_scan = placeholder(bool)  # linear cells: True/False; None: not on CPU
    c.model.projection = "fused"  # input projection: fused into each step, or hoisted
    c.model.dtype = "float32"  # compute dtype: float32 | bfloat16 (params, optimizer, loss, c: float32)
    c.model.remat = 0  # rematerialise the scan every k steps: memory ~ T/k + k steps; 0: off
    c.model.backward = "auto"  # custom (hand-derived, elman/lstm/gru) | autodiff | auto: custom if it can
    c.model.learn_initial_carry = False  # a learned initial state instead of zeros
    c.model.jordan_mu = 0.0  # jordan: decay of its context, s_t = f_t + mu s_{t-1} (0: none)
    c.model.jordan_feedback = "teacher"  # jordan feeds back: teacher (previous target) | output
    # (its softmax, free running) | sample (of its output) | scheduled (sampling, Bengio 2015)
    c.model.sampling_schedule = "inverse_sigmoid"  # scheduled: P(target) by step | linear | exponential
    c.model.sampling_k = 1000.0  # inverse_sigmoid k/(k+exp(i/k)); linear steps to 0; exponential k^i

    # seq2seq/vec2seq: the decoder's layers are model.*'s, except for the keys set here.
    c.decoder = config_dict.ConfigDict()
    c.decoder.cell = placeholder(str)  # the decoder's cell (None: model.cell)
    c.decoder.hidden_size = placeholder(int)  # its H (None: model.hidden_size)
    c.decoder.num_layers = placeholder(int)  # its depth (None: model.num_layers)

    c.eval = config_dict.ConfigDict()
    c.eval.beam_size = 1  # seq2seq/vec2seq: free-running decoding: 1 greedy, > 1 beam search
    c.eval.length_penalty = 0.0  # beam search: scores / ((5 + length) / 6) ** this (GNMT)

    c.train = config_dict.ConfigDict()
    c.train.steps = 10_000  # optimizer steps (one truncated-BPTT window each)
    c.train.batch_size = 64  # B contiguous streams
    c.train.bptt_len = 100  # T: truncated-BPTT window length (the "unroll length"); 0: full
    c.train.carry_state = True  # carry the state across windows (False: reset each window)
    c.train.log_every = 100  # console/metrics.jsonl training log interval, in steps
    c.train.eval_every = 1000  # validation (and a sample) interval, in steps
    c.train.eval_batches = 0  # validation windows per evaluation; 0: the whole split
    c.train.eval_batch_size = 0  # streams for evaluation; 0: train.batch_size
    c.train.final_eval_streams = 16  # lm: the final evaluation scores every character from S starts
    c.train.ckpt_every = 1000  # checkpoint interval, in steps (and always at the end)
    c.train.keep_checkpoints = 3  # keep the last K checkpoints (and the best one apart)
    c.train.skip_nonfinite = False  # skip non-finite updates and count them instead of stopping
    c.train.max_nonfinite = 100  # with skip_nonfinite: stop after this many skipped updates
    c.train.sample_length = 200  # characters sampled at each evaluation (0: none)
    c.train.sample_temperature = 0.8  # temperature of those samples
    c.train.sample_prime = ""  # text training's samples start from ("": a place in valid)
    # At each evaluation, a "gradients" line in metrics.jsonl: the mean norm of dL/dh_t (L: the
    # last step's loss) of the first recurrent layer at t=1 and t=T-1 of a train batch, and
    # their ratio (vanishing: << 1).
    c.train.log_gradients = False

    c.optim = config_dict.ConfigDict()
    c.optim.name = "adam"  # sgd | momentum | rmsprop | adagrad | adam | adamw
    c.optim.lr = 2e-3  # peak learning rate
    c.optim.schedule = "constant"  # constant | exponential | step | cosine | warmup_cosine | linear
    c.optim.decay_rate = 0.97  # exponential/step: factor per decay_steps
    c.optim.decay_steps = 1000  # exponential/step: steps per decay (cosine/linear: all steps)
    c.optim.decay_after = 0  # step: steps before decay starts (char-rnn's 10 epochs)
    c.optim.staircase = False  # exponential: decay in discrete jumps
    c.optim.warmup_steps = 0  # warmup_cosine: linear warmup from 0
    c.optim.final_lr_factor = 0.0  # cosine/linear: final lr as a fraction of optim.lr
    c.optim.momentum = 0.9  # the momentum optimizer's coefficient
    c.optim.rms_decay = 0.95  # rmsprop: decay of the squared-gradient average (char-rnn 0.95)
    c.optim.b1 = 0.9  # adam/adamw
    c.optim.b2 = 0.999  # adam/adamw
    c.optim.eps = 1e-8  # adam/adamw/rmsprop/adagrad epsilon
    c.optim.clip_norm = 5.0  # clip gradients by global norm; 0: off
    c.optim.clip_value = 0.0  # clip gradients elementwise (char-rnn's grad_clip); 0: off
    c.optim.weight_decay = 0.0  # decoupled for adamw, added to the gradient otherwise
    return c


def variant(arg, *names: str):
    """`arg`, the ARG of `--config=FILE:ARG`, checked against the variants a config has: None
    (the config itself) or one of `names`; anything else is a ValueError listing them (a typo
    would otherwise run the full config without a word)."""
    if arg is None or arg in names:
        return arg
    raise ValueError(f"unknown config variant {arg!r}; this config has: "
                     f"{', '.join(names) or 'none'} (or none at all)")


def smoke(c):
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
