"""The recurrent body of a model from `config.model` (the cells, stacked, bidirectional,
with their options), and the checks of `config.model`.

This is the one place where `config.model` keys become layers; `rnnlab.models` puts the
embedding before them and the readout after (the model a task trains).
"""

from __future__ import annotations

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


def path(m: ml_collections.ConfigDict, batch_size: int) -> str:
    """Which path runs the recurrent layers `config.model` describes on this backend, for
    training windows of `batch_size` rows (`layers.paths.choose_path`), said for the log."""
    import jax

    cell = _make_cell(m, vocab_size=2)
    options = layer_options(m)
    chosen = layers.paths.choose_path(cell, options, jax.default_backend()).path
    if chosen != "native":
        return f"{chosen} path"
    smallest = layers.native.SMALLEST
    if options.backward == "auto" and batch_size * m.hidden_size < smallest:
        return (f"custom_vjp path (the native one from {smallest} batch x hidden units; here "
                f"{batch_size} x {m.hidden_size})")
    return "native path (oneDNN; windows with lengths or mid-window resets: custom_vjp)"


def make_body(m: ml_collections.ConfigDict, vocab_size: int | None = None) -> layers.Layer:
    """The recurrent layers `config.model` (or a section shaped like it) describes: stacked,
    bidirectional when asked, with dropout and residual connections between layers.
    `vocab_size` is a Jordan cell's output size. Its `apply` takes `tap=` (a diagnostics
    `layers.Tap`), which watches layer i as `layer_i`."""
    rnn_options = layer_options(m)._asdict()
    del rnn_options["reverse"]
    stacked = []
    for _ in range(m.num_layers):
        if m.bidirectional:
            stacked.append(layers.bidirectional(_make_cell(m, vocab_size),
                                                _make_cell(m, vocab_size), **rnn_options))
        else:
            stacked.append(layers.rnn(_make_cell(m, vocab_size), **rnn_options))
    return layers.stack(stacked, dropout=m.dropout, residual=m.residual)
