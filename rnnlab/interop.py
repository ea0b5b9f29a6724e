"""Weights across frameworks: PyTorch's `nn.RNN` / `nn.LSTM` / `nn.GRU` state dicts and Flax's
`LSTMCell` / `OptimizedLSTMCell` / `GRUCell` / `SimpleCell` params, to and from rnnlab layers.

    layer, params = interop.from_torch(torch_lstm.state_dict(), kind="lstm")
    carry, ys = layer.apply(params, None, xs)          # xs [B, T, F]: batch first
    state_dict = {k: torch.from_numpy(v) for k, v in interop.to_torch(params, kind="lstm").items()}

rnnlab's `lstm` and `gru` cells are PyTorch's forms (gate orders i, f, g, o and r, z, n; the
GRU's `b_hn` inside the reset product), so the weights map one to one, transposed (PyTorch
keeps `[gates * H, F]`, rnnlab `[F, gates * H]`). What differs:
- PyTorch's two LSTM (and RNN) biases act only through their sum: rnnlab keeps one, `b`, and
  `to_torch` writes it to `bias_ih` with `bias_hh` zero (the module computes the same).
- A layer is batch first (`nn.LSTM(batch_first=True)`), and its carry is one per layer (an
  LSTM's `(h, c)`; with `bidirectional`, `(fwd, bwd)`), not PyTorch's `[L * D, B, H]` stacks.
- `proj_size` (LSTM projections) has no rnnlab counterpart and is refused.
Neither torch nor flax is imported here: a state dict of tensors or of NumPy arrays will do.
"""

from __future__ import annotations

import re
from typing import Any, Mapping

import jax.numpy as jnp
import numpy as np

from rnnlab import cells
from rnnlab import layers as layers_lib

GATES = {"rnn": 1, "lstm": 4, "gru": 3}
_KEY = re.compile(r"^(weight_ih|weight_hh|bias_ih|bias_hh)_l(\d+)(_reverse)?$")


def _numpy(value) -> np.ndarray:
    if hasattr(value, "detach"):  # a torch tensor
        value = value.detach().cpu().numpy()
    return np.asarray(value, np.float32)


def _cell(kind: str, hidden_size: int, nonlinearity: str):
    if kind == "rnn":
        return cells.get_cell("elman", hidden_size=hidden_size, activation=nonlinearity)
    return cells.get_cell(kind, hidden_size=hidden_size)


def _cell_params(kind, w_ih, w_hh, b_ih, b_hh):
    if kind == "gru":
        return {"w_x": jnp.asarray(w_ih.T), "w_h": jnp.asarray(w_hh.T),
                "b_x": jnp.asarray(b_ih), "b_h": jnp.asarray(b_hh)}
    return {"w_x": jnp.asarray(w_ih.T), "w_h": jnp.asarray(w_hh.T), "b": jnp.asarray(b_ih + b_hh)}


def from_torch(state_dict: Mapping[str, Any], *, kind: str,
               nonlinearity: str = "tanh") -> tuple[layers_lib.Layer, dict]:
    """The rnnlab layer (a `layers.stack`) and params that compute what the PyTorch module
    with this state dict computes (batch first). The number of layers, bidirectionality, sizes
    and biases are read from the keys and shapes.

    Args:
      state_dict: `module.state_dict()` of an `nn.RNN`, `nn.LSTM` or `nn.GRU` (tensors or
        NumPy arrays).
      kind: "rnn", "lstm" or "gru".
      nonlinearity: an `nn.RNN`'s, "tanh" or "relu".

    Raises:
      ValueError: an unknown kind, keys that are not such a module's, or shapes of another kind.
    """
    if kind not in GATES:
        raise ValueError(f"unknown kind {kind!r}; choose one of {', '.join(GATES)}")
    if nonlinearity not in ("tanh", "relu"):
        raise ValueError(f"nonlinearity must be 'tanh' or 'relu', got {nonlinearity!r}")
    weights: dict[tuple[int, bool], dict[str, np.ndarray]] = {}
    for key, value in state_dict.items():
        match = _KEY.match(key)
        if match is None:
            raise ValueError(f"state dict key {key!r} is not one of an nn.{kind.upper()} without "
                             "projections (weight_ih_l0, weight_hh_l0_reverse, bias_ih_l1, ...)")
        name, layer, reverse = match.groups()
        weights.setdefault((int(layer), bool(reverse)), {})[name] = _numpy(value)
    if not weights:
        raise ValueError("the state dict is empty")
    num_layers = max(layer for layer, _ in weights) + 1
    bidirectional = any(reverse for _, reverse in weights)
    G = GATES[kind]
    layers, params = [], {}
    for i in range(num_layers):
        parts = {}
        for reverse in ((False, True) if bidirectional else (False,)):
            w = weights.get((i, reverse))
            if w is None or "weight_ih" not in w or "weight_hh" not in w:
                raise ValueError(f"the state dict has no weights of layer {i}"
                                 + (" (reverse)" if reverse else ""))
            H = w["weight_hh"].shape[1]
            if w["weight_hh"].shape != (G * H, H) or w["weight_ih"].shape[0] != G * H:
                raise ValueError(
                    f"weight_hh_l{i} has shape {w['weight_hh'].shape} and weight_ih_l{i} "
                    f"{w['weight_ih'].shape}: not an nn.{kind.upper()} ({G} gate blocks of H "
                    "rows); is `kind` right?")
            zeros = np.zeros(G * H, np.float32)
            parts["bwd" if reverse else "fwd"] = (H, _cell_params(
                kind, w["weight_ih"], w["weight_hh"], w.get("bias_ih", zeros),
                w.get("bias_hh", zeros)))
        H = parts["fwd"][0]
        if bidirectional:
            layers.append(layers_lib.bidirectional(_cell(kind, H, nonlinearity),
                                                  _cell(kind, H, nonlinearity)))
            params[f"layer_{i}"] = {d: {"cell": p} for d, (_, p) in parts.items()}
        else:
            layers.append(layers_lib.rnn(_cell(kind, H, nonlinearity)))
            params[f"layer_{i}"] = {"cell": parts["fwd"][1]}
    return layers_lib.stack(layers), params


def to_torch(params: Mapping[str, Any], *, kind: str) -> dict[str, np.ndarray]:
    """The state dict (NumPy arrays, float32) of the PyTorch module that computes what a layer
    of `from_torch`'s shape (a stack of rnn or bidirectional layers of one kind) with these
    params computes. An LSTM's or RNN's bias goes to `bias_ih`, with `bias_hh` zero."""
    if kind not in GATES:
        raise ValueError(f"unknown kind {kind!r}; choose one of {', '.join(GATES)}")
    out = {}
    for i in range(len(params)):
        layer = params[f"layer_{i}"]
        directions = ([("", layer["fwd"]), ("_reverse", layer["bwd"])] if "fwd" in layer
                      else [("", layer)])
        for suffix, p in directions:
            p = {k: np.asarray(v, np.float32) for k, v in p["cell"].items()}
            out[f"weight_ih_l{i}{suffix}"] = p["w_x"].T.copy()
            out[f"weight_hh_l{i}{suffix}"] = p["w_h"].T.copy()
            if kind == "gru":
                out[f"bias_ih_l{i}{suffix}"], out[f"bias_hh_l{i}{suffix}"] = p["b_x"], p["b_h"]
            else:
                out[f"bias_ih_l{i}{suffix}"] = p["b"]
                out[f"bias_hh_l{i}{suffix}"] = np.zeros_like(p["b"])
    return out


FLAX_CELLS = {"LSTMCell": "lstm", "OptimizedLSTMCell": "lstm", "GRUCell": "gru",
              "SimpleCell": "elman"}


def from_flax(flax_params: Mapping[str, Any], *, cell: str) -> tuple[cells.Cell, dict]:
    """The rnnlab cell and params that compute what a Flax linen cell with these params
    (`variables["params"]`) computes. An LSTM's carry is `(h, c)` in rnnlab, `(c, h)` in Flax.

    Args:
      flax_params: the cell's params: `{"ii": {"kernel"}, ..., "hi": {"kernel", "bias"}, ...}`
        (LSTMCell, OptimizedLSTMCell), `{"ir": ..., "hn": ...}` (GRUCell) or `{"i", "h"}`
        (SimpleCell).
      cell: the Flax class name: LSTMCell, OptimizedLSTMCell, GRUCell or SimpleCell.
    """
    if cell not in FLAX_CELLS:
        raise ValueError(f"unknown Flax cell {cell!r}; choose one of {', '.join(FLAX_CELLS)}")
    fp = {module: {k: jnp.asarray(v) for k, v in leaves.items()}
          for module, leaves in flax_params.items()}

    def cat(names, leaf):
        return jnp.concatenate([fp[n][leaf] for n in names], axis=-1)

    try:
        if FLAX_CELLS[cell] == "lstm":  # Flax: input kernels without bias, hidden ones with
            params = {"w_x": cat(["ii", "if", "ig", "io"], "kernel"),
                      "w_h": cat(["hi", "hf", "hg", "ho"], "kernel"),
                      "b": cat(["hi", "hf", "hg", "ho"], "bias")}
        elif FLAX_CELLS[cell] == "gru":  # r and z biases on the input side, n's on both
            H = fp["hn"]["kernel"].shape[-1]
            params = {"w_x": cat(["ir", "iz", "in"], "kernel"),
                      "w_h": cat(["hr", "hz", "hn"], "kernel"),
                      "b_x": cat(["ir", "iz", "in"], "bias"),
                      "b_h": jnp.concatenate([jnp.zeros(2 * H, fp["hn"]["bias"].dtype),
                                              fp["hn"]["bias"]])}
        else:
            params = {"w_x": fp["i"]["kernel"], "w_h": fp["h"]["kernel"],
                      "b": fp["i"]["bias"] + fp["h"].get("bias", 0.0)}
    except KeyError as e:
        raise ValueError(f"these are not the params of a Flax {cell}: no {e}") from None
    H = params["w_h"].shape[0]
    return cells.get_cell(FLAX_CELLS[cell], hidden_size=H), params
