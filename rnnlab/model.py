"""The character-level model: one-hot or embedding -> recurrent layers -> readout.

This is the one place where `config.model` keys become objects. Shapes: B... batch, T time,
V vocabulary, E embedding, H hidden.
"""

from __future__ import annotations

from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import ml_collections

from rnnlab import cells, layers

# config.model keys passed to the cell factory when set (None: the cell's own default).
CELL_OPTION_KEYS = ("activation", "init", "init_scale", "forget_bias", "reset_after", "variant",
                    "peepholes", "leak", "learn_leak", "integration")
DTYPES = ("float32", "bfloat16")  # model.dtype: the compute dtype (params stay float32)
JORDAN_FEEDBACK = ("teacher", "output", "sample", "scheduled")
# Scheduled sampling (Bengio et al. 2015): the probability of feeding the target at step i.
SAMPLING_SCHEDULES = {
    "inverse_sigmoid": lambda i, k: k / (k + jnp.exp(i / k)),  # k >= 1
    "linear": lambda i, k: jnp.maximum(0.0, 1.0 - i / k),  # reaches 0 at step k
    "exponential": lambda i, k: k ** i,  # 0 < k < 1
}


class Model(NamedTuple):
    """A recurrent model over integer tokens.

    Attributes:
      init: `(key) -> params`.
      initial_carry: `(params, batch_shape) -> carry`.
      apply: `(params, carry, tokens [B..., T], *, reset=None, key=None, teacher=None,
        tap=None) -> (carry, logits [B..., T, V])`; `key` turns dropout on (training);
        `teacher [B..., T]`: where a Jordan cell trained with scheduled sampling feeds the
        target; `tap`: a diagnostics `layers.Tap` watching the layers.
      vocab_size: V.
    """

    init: Callable[[jax.Array], Any]
    initial_carry: Callable[[Any, tuple[int, ...]], Any]
    apply: Callable[..., tuple[Any, jax.Array]]
    vocab_size: int


def _cell_options(m: ml_collections.ConfigDict) -> dict:
    return {k: m[k] for k in CELL_OPTION_KEYS if m[k] is not None}


def layer_options(m: ml_collections.ConfigDict) -> layers.options.Options:
    """The options of each recurrent layer `config.model` (or a section shaped like it)
    describes."""
    zoneout = m.get("zoneout", 0.0) if m.get("zoneout_c") is None else (m.zoneout, m.zoneout_c)
    return layers.options.Options(
        unroll=m.scan_unroll, projection=m.projection, learn_initial_carry=m.learn_initial_carry,
        parallel=m.get("parallel_scan"), zoneout=zoneout, weight_drop=m.get("weight_drop", 0.0),
        recurrent_dropout=m.get("recurrent_dropout", 0.0), backward=m.get("backward", "auto"),
        remat=m.get("remat", 0))


def _spelling(m) -> layers.options.Spelling:
    """The layer rules' messages as a config says them (`model.parallel_scan=True`)."""
    return layers.options.Spelling(prefix="model.", quote=False, rate="must be in",
                                   names={"parallel": "parallel_scan", "unroll": "scan_unroll"},
                                   cell=m.cell)


def check_model_config(m: ml_collections.ConfigDict, *, causal: bool = True,
                       jordan: bool = True) -> None:
    """Raises ValueError for a bad `config.model`, before any compute. The layers' own rules
    are `layers.options.check`'s, spelt for a config.

    Args:
      m: `config.model`.
      causal: the task predicts the next token, so no layer may see the future.
      jordan: the task can have a Jordan cell (whose output is the next-token distribution).
    """
    for key in ("hidden_size", "num_layers"):
        if not isinstance(m[key], int) or m[key] <= 0:
            raise ValueError(f"model.{key} must be a positive integer, got {m[key]!r}")
    if not isinstance(m.param_budget, int) or m.param_budget < 0:
        raise ValueError(f"model.param_budget must be an integer >= 0 (0: use model.hidden_size), "
                         f"got {m.param_budget!r}")
    if m.embed_size < 0:
        raise ValueError(f"model.embed_size must be >= 0 (0: one-hot inputs), got {m.embed_size}")
    layers.options.check_stack(m.dropout, _spelling(m))
    if m.get("dtype", "float32") not in DTYPES:
        raise ValueError(f"model.dtype must be one of {DTYPES}, got {m.dtype!r}")
    if m.bidirectional and causal:
        raise ValueError(
            "model.bidirectional=True sees the future: a next-character model would read the "
            "answer from its backward direction. Use model.bidirectional=False for language "
            "modelling (bidirectional layers are for tasks that read the whole input first)."
        )
    _check_jordan(m, jordan)
    # Builds the cell (cheap, no compute): unknown names and options fail here, with the lists.
    layers.options.check(_make_cell(m, vocab_size=2), layer_options(m), _spelling(m))


def _check_jordan(m, jordan: bool) -> None:
    if m.cell == "jordan" and not jordan:
        raise ValueError("model.cell=jordan feeds back its output as the next-token "
                         "distribution: it is a cell for language modelling (task.name=lm)")
    if m.cell != "jordan":
        return
    if m.num_layers != 1 or m.bidirectional:
        raise ValueError(
            "model.cell=jordan feeds its own output (the next-character distribution) back, "
            f"so it is a single layer: set model.num_layers=1 (got {m.num_layers}) and "
            "model.bidirectional=False"
        )
    if not 0.0 <= m.get("jordan_mu", 0.0) <= 1.0:
        raise ValueError(f"model.jordan_mu must be in [0, 1] (the context's decay), got "
                         f"{m.jordan_mu}")
    if m.jordan_feedback not in JORDAN_FEEDBACK:
        raise ValueError(
            f"model.jordan_feedback must be one of {JORDAN_FEEDBACK}, got {m.jordan_feedback!r}"
        )
    if m.jordan_feedback == "scheduled":
        if m.sampling_schedule not in SAMPLING_SCHEDULES:
            raise ValueError(f"model.sampling_schedule must be one of "
                             f"{tuple(SAMPLING_SCHEDULES)}, got {m.sampling_schedule!r}")
        k, schedule = m.sampling_k, m.sampling_schedule
        ok = {"inverse_sigmoid": k >= 1, "linear": k > 0, "exponential": 0 < k < 1}
        if not ok[schedule]:
            raise ValueError(f"model.sampling_k={k} does not suit the {schedule} schedule "
                             "(inverse_sigmoid: k >= 1; linear: k > 0 steps; exponential: "
                             "0 < k < 1)")


def _make_cell(m, vocab_size):
    options = _cell_options(m)
    if m.get("dtype", "float32") != "float32":
        options["dtype"] = jnp.dtype(m.dtype)
    if m.cell == "jordan":
        options["output_size"] = vocab_size
        options["mu"] = m.get("jordan_mu", 0.0)
    return cells.get_cell(m.cell, hidden_size=m.hidden_size, **options)


def make_body(m: ml_collections.ConfigDict, vocab_size: int | None = None) -> layers.Layer:
    """The recurrent layers `config.model` (or a section shaped like it) describes: stacked,
    bidirectional when asked, with dropout and residual connections between layers.
    `vocab_size` is a Jordan cell's output size.

    Its `apply` takes `tap=` (a diagnostics `layers.Tap`); without one, the tap of an
    enclosing `layers.tapping` block, for the tasks' functions that pass none yet."""
    rnn_options = layer_options(m)._asdict()
    del rnn_options["reverse"]
    stacked = []
    for _ in range(m.num_layers):
        if m.bidirectional:
            stacked.append(layers.bidirectional(_make_cell(m, vocab_size),
                                                _make_cell(m, vocab_size), **rnn_options))
        else:
            stacked.append(layers.rnn(_make_cell(m, vocab_size), **rnn_options))
    body = layers.stack(stacked, dropout=m.dropout, residual=m.residual)

    def apply(params, carry, xs, *, tap=None, **kwargs):
        tap = layers.taps.ambient() if tap is None else tap
        return body.apply(params, carry, xs, tap=tap, **kwargs)

    return body._replace(apply=apply)


def embed_init(key, m: ml_collections.ConfigDict, vocab_size: int) -> dict:
    """An embedding table when `model.embed_size` > 0 (else one-hot inputs: no params)."""
    return {"embed": jax.random.normal(key, (vocab_size, m.embed_size))} if m.embed_size else {}


def embed(params, m: ml_collections.ConfigDict, tokens, vocab_size: int):
    """Token ids -> inputs: the learned embedding, or one-hot vectors."""
    return params["embed"][tokens] if m.embed_size else jax.nn.one_hot(tokens, vocab_size)


def output_dropout(ys, rate: float, key):
    """char-rnn's dropout before the softmax too (training only: `key` given)."""
    if key is None or rate <= 0.0:
        return ys
    keep = jax.random.bernoulli(key, 1.0 - rate, ys.shape)
    return jnp.where(keep, ys / (1.0 - rate), 0.0)


def _jordan_feedback(mode, xs, tokens, V, key, teacher):
    """A Jordan cell's inputs for its training mode. The previous target is this step's input
    token, so teacher forcing feeds its one-hot back; evaluation (no key) does so too, except
    for the free-running "output" mode, which always feeds the output distribution."""
    target = jax.nn.one_hot(tokens, V)
    if mode == "output":
        return xs
    if mode == "teacher" or key is None:
        return cells.jordan_inputs(xs, feedback=target)
    feedback_key = jax.random.fold_in(key, 1)
    if mode == "sample":
        return cells.jordan_inputs(xs, key=feedback_key)
    return cells.jordan_inputs(xs, feedback=target, key=feedback_key, teacher=teacher)


def build_model(m: ml_collections.ConfigDict, vocab_size: int) -> Model:
    """Builds the model `config.model` describes for a vocabulary of `vocab_size` tokens."""
    V = vocab_size
    jordan = m.cell == "jordan"
    body = make_body(m, V)
    input_size = m.embed_size or V

    def init(key):
        k_embed, k_body, k_out = jax.random.split(key, 3)
        params = {"body": body.init(k_body, input_size), **embed_init(k_embed, m, V)}
        if not jordan:  # a Jordan cell's output is already the logits
            params["readout"] = {
                "w": jax.nn.initializers.lecun_normal()(k_out, (body.output_size, V)),
                "b": jnp.zeros((V,)),
            }
        return params

    def initial_carry(params, batch_shape):
        return body.initial_carry(params["body"], batch_shape)

    def apply(params, carry, tokens, *, reset=None, key=None, teacher=None, tap=None):
        xs = embed(params, m, tokens, V)
        body_key = out_key = None
        if key is not None:
            body_key, out_key = jax.random.split(key)
        if jordan:
            xs = _jordan_feedback(m.jordan_feedback, xs, tokens, V, key, teacher)
        carry, ys = body.apply(params["body"], carry, xs, reset=reset, key=body_key, tap=tap)
        if jordan:
            return carry, ys.astype(jnp.float32)
        ys = output_dropout(ys, m.dropout, out_key)
        readout = jax.tree_util.tree_map(lambda a: a.astype(ys.dtype), params["readout"])
        return carry, (ys @ readout["w"] + readout["b"]).astype(jnp.float32)

    return Model(init, initial_carry, apply, V)
