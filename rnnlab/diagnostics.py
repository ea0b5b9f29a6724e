"""The diagnostics library (its command is `rnnlab.diagnose`): gradient flow through time,
recurrent spectra, gate saturation, and hidden units that track features of a text.

Everything here works on any model built from `rnnlab.layers`, without changing it: the layers
are watched through a `layers.Tap` passed as `tap=` to their `apply`, to a model's `apply` or
to a task's `loss` / `evaluate`, which hand it on. A tapped layer runs the sequential path
(`layers.paths.choose_path`: the hand-derived backward and the parallel scan compute the same
values but show no steps), and each tap records the path every layer ran in `Tap.paths`, so
that an output says which path it measured (training may run another).

- `state_gradients(loss_fn)`: per layer, the norm of dL/dh_t for every step t of a window and
  every example, where h_t is the state (the whole carry: h, and c for an LSTM) that step t+1
  reads; t = 0 is the carry the window starts from. A probe of zeros is added to that carry
  and differentiated. `last_step=True` differentiates the loss of the body's last output only
  (the other outputs are cut from the gradient), the classic vanishing-gradient measurement;
  otherwise the whole (summed) loss.
- `layer_paths(loss_fn, *args)`: `{layer name: path}` the layers ran while tapped.
- `recurrent_spectra(params, cell)`: the spectral radius and largest singular value of each
  layer's recurrent matrix, per gate block for gated cells.
- `GateCounter`: the fraction of each gate's activations below `low` and above `high` over
  whatever is traced while it taps (a validation pass).
- `unit_states` / `text_features` / `search_units` / `units_html`: hidden-unit activations over
  a text, and the units that best track its quotes, brackets, line position, indentation and
  comments (Karpathy, Johnson and Fei-Fei 2015, "Visualizing and understanding recurrent
  networks").
"""

from __future__ import annotations

import collections
import functools
import html
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np

from rnnlab import layers
from rnnlab.train import step as steps

# The column blocks of a gated cell's recurrent matrix `w_h [H, k*H]`, in order.
BLOCKS = {"lstm": ("input", "forget", "cell", "output"), "gru": ("reset", "update", "new")}


class _Named(layers.Tap):
    """A tap that tells apart two applications of one layer (`name`, `name#2`, ...)."""

    def __init__(self):
        super().__init__()
        self.seen = collections.Counter()

    def key(self, name):
        self.seen[name] += 1
        return name if self.seen[name] == 1 else f"{name}#{self.seen[name]}"


class _Shapes(_Named):
    def __init__(self):
        super().__init__()
        self.layers = {}  # name -> (T, carry shapes)

    def probe(self, name, carry, T):
        self.layers[self.key(name)] = (T, jax.tree_util.tree_map(
            lambda c: jax.ShapeDtypeStruct(c.shape, c.dtype), carry))


class _Probes(_Named):
    def __init__(self, probes, last_step):
        super().__init__()
        self.probes, self.last_step = probes, last_step

    def probe(self, name, carry, T):
        return self.probes.get(self.key(name))

    def outputs(self, ys, lengths):
        if not self.last_step:
            return ys
        T = ys.shape[-2]
        last = jnp.full(ys.shape[:-2], T - 1) if lengths is None else jnp.clip(lengths, 1, T) - 1
        keep = (jnp.arange(T) == last[..., None])[..., None]
        return jnp.where(keep, ys, jax.lax.stop_gradient(ys))


def state_gradients(loss_fn: Callable[[layers.Tap], jax.Array], *, last_step: bool = False
                    ) -> dict[str, jax.Array]:
    """`{layer name: ||dL/dh_t|| [T, B...]}` of the scalar `loss_fn(tap)` (see the module
    docstring), per example: the loss is taken as a mean over the B... examples, so each
    example's gradient is scaled back by their number.

    Traceable (jit, vmap); `loss_fn` must apply the recurrent layers itself with `tap=tap`,
    outside any scan of its own (e.g. not through windows of truncated BPTT).
    """
    shapes = _Shapes()
    jax.eval_shape(lambda: loss_fn(shapes))  # (a fresh function: a cached trace is not seen)
    zeros = {name: jax.tree_util.tree_map(lambda s, T=T: jnp.zeros((T, *s.shape), s.dtype),
                                          carry)
             for name, (T, carry) in shapes.layers.items()}

    def probed(probes):
        return loss_fn(_Probes(probes, last_step))

    grads = jax.grad(probed)(zeros)
    out = {}
    for name in shapes.layers:  # in the order the layers run
        leaves = jax.tree_util.tree_leaves(grads[name])
        squares = sum(jnp.sum(jnp.square(jnp.abs(leaf)).astype(jnp.float32), axis=-1)
                      for leaf in leaves)  # (abs: an LRU's state is complex)
        examples = int(np.prod(leaves[0].shape[1:-1]))
        out[name] = jnp.sqrt(squares) * examples
    return out


def summarize(norms: jax.Array) -> dict[str, list[float]]:
    """Per step t, over the examples: mean, std, min, max of `norms [T, B...]`."""
    flat = np.asarray(norms, np.float64).reshape(norms.shape[0], -1)
    return {"mean": flat.mean(1).tolist(), "std": flat.std(1).tolist(),
            "min": flat.min(1).tolist(), "max": flat.max(1).tolist()}


def flow_scalars(norms: jax.Array) -> dict[str, jax.Array]:
    """Traceable summary scalars of `norms [T, B...]` for metrics.jsonl: the mean norm at the
    first state computed inside the window (t = 1) and at the last one (t = T-1), and their
    ratio (<< 1: the gradient vanishes on its way back through the window)."""
    mean = jnp.mean(norms.reshape(norms.shape[0], -1), axis=1)
    first = mean[min(1, mean.shape[0] - 1)]
    return {"first": first, "last": mean[-1], "ratio": first / mean[-1]}


def train_batch(task, state, data):
    """The train batch the state's step reads (the train step's own)."""
    return steps.train_batch(task, state, data)


def task_loss(task, state, batch) -> Callable[[layers.Tap], jax.Array]:
    """The task's loss on `batch` as a function of a tap, for `state_gradients`."""

    def loss_fn(tap):
        return task.loss(state.params, state.carry, batch, None, tap=tap)[0]

    return loss_fn


def layer_paths(loss_fn: Callable[..., jax.Array], *args) -> dict[str, str]:
    """`{layer name: path}`: the path (`layers.paths.PATHS`) that each layer `loss_fn(tap,
    *args)` applies runs while tapped, i.e. the path `state_gradients` measures. Traces
    `loss_fn` (no compute; `args` are traced as arrays, host arrays included)."""
    tap = layers.Tap()
    jax.eval_shape(lambda *a: loss_fn(tap, *a), *args)
    return dict(tap.paths)


def gradient_paths(task, state, data) -> dict[str, str]:
    """`layer_paths` of the loss `gradient_norms` differentiates (its batch is drawn inside
    the trace too, from `data` as `gradient_norms` receives it: nothing is computed)."""
    return layer_paths(lambda tap, d: task_loss(task, state, train_batch(task, state, d))(tap),
                       data)


def gradient_norms(task, state, data) -> dict[str, dict[str, jax.Array]]:
    """`{"last_step" | "summed": {layer: norms [T, B]}}` on the state's train batch."""
    loss_fn = task_loss(task, state, train_batch(task, state, data))

    return {"last_step": state_gradients(loss_fn, last_step=True),
            "summed": state_gradients(loss_fn)}


def flow_metrics(task, state, data) -> dict[str, jax.Array]:
    """`flow_scalars` of the first recurrent layer for the loss of the last step on the
    state's train batch (what `train.log_gradients` logs). The last step's loss, not the summed
    one: with a loss at every step an early state collects gradient from more terms, which
    hides how much each one loses on its way back."""
    norms = state_gradients(task_loss(task, state, train_batch(task, state, data)),
                            last_step=True)
    return flow_scalars(next(iter(norms.values())))


# ----------------------------------------------------------------------------- spectra


def _recurrent_matrices(params, path=()):
    if isinstance(params, dict):
        if "w_h" in params and getattr(params["w_h"], "ndim", 0) == 2:
            yield "/".join(p for p in path if p not in ("cell", "body")), params["w_h"]
        for k, v in params.items():
            yield from _recurrent_matrices(v, (*path, str(k)))


def recurrent_spectra(params, cell: str) -> dict[str, dict[str, dict[str, float]]]:
    """`{layer path: {block: {"spectral_radius", "sigma_max"}}}` of every recurrent matrix
    `w_h [H, k*H]` in `params`: one HxH block per gate for gated cells (`BLOCKS[cell]`), the
    whole matrix otherwise (a non-square one, such as a Jordan cell's, has only sigma_max)."""
    out = {}
    cpu = jax.devices("cpu")[0]  # eigenvalues of a general matrix: XLA computes them on CPU
    for path, w in _recurrent_matrices(params):
        w = jax.device_put(jnp.asarray(w, jnp.float32), cpu)
        H, cols = w.shape
        names = BLOCKS.get(cell) if cols % H == 0 and cols // H > 1 else None
        names = names if names and len(names) == cols // H else None
        blocks = ({n: w[:, i * H:(i + 1) * H] for i, n in enumerate(names)} if names
                  else {"w_h": w})
        out[path] = {}
        for n, b in blocks.items():
            entry = {"sigma_max": float(jnp.linalg.norm(b, ord=2))}
            if b.shape[0] == b.shape[1]:
                entry["spectral_radius"] = float(jnp.max(jnp.abs(jnp.linalg.eigvals(b))))
            out[path][n] = entry
    return out


# ----------------------------------------------------------------------------- gates


class GateCounter(layers.Tap):
    """Counts, for each layer and gate, the activations below `low`, above `high`, and all of
    them, on the valid steps of whatever runs while it taps (see `fractions`). The counts
    leave the device through `jax.debug.callback`, so the tap works inside scans and jit;
    call `jax.effects_barrier()` before reading them."""

    wants_steps = True

    def __init__(self, low: float = 0.1, high: float = 0.9):
        super().__init__()
        self.low, self.high = low, high
        self.counts: dict[tuple[str, str], np.ndarray] = {}

    def steps(self, name, cell, params, carries_in, xs, carries_out, mask):
        if cell.gates is None:
            return
        counts = {}
        for gate, v in cell.gates(params, carries_in, xs).items():
            valid = jnp.ones(v.shape, bool) if mask is None else jnp.broadcast_to(
                mask.reshape(mask.shape + (1,) * (v.ndim - mask.ndim)), v.shape)
            counts[gate] = jnp.stack([jnp.sum(valid & (v < self.low), dtype=jnp.int32),
                                      jnp.sum(valid & (v > self.high), dtype=jnp.int32),
                                      jnp.sum(valid, dtype=jnp.int32)])
        if counts:
            jax.debug.callback(functools.partial(self._add, name), counts)

    def _add(self, name, counts):
        for gate, c in counts.items():
            total = self.counts.setdefault((name, gate), np.zeros(3, np.int64))
            total += np.asarray(c, np.int64)

    def fractions(self) -> dict[str, dict[str, dict[str, float]]]:
        """`{layer: {gate: {"below": f, "above": f, "count": n}}}`."""
        out: dict = {}
        for (name, gate), (below, above, n) in sorted(self.counts.items()):
            out.setdefault(name, {})[gate] = {"below": below / max(n, 1),
                                              "above": above / max(n, 1), "count": int(n)}
        return out


# ----------------------------------------------------------------------------- units


class _States(layers.Tap):
    wants_steps = True

    def __init__(self):
        super().__init__()
        self.states = {}

    def steps(self, name, cell, params, carries_in, xs, carries_out, mask):
        self.states[name] = carries_out


def _part_names(carry) -> list[str]:
    leaves = jax.tree_util.tree_leaves(carry)
    return {1: ["h"], 2: ["h", "c"]}.get(len(leaves), [f"s{i}" for i in range(len(leaves))])


def unit_states(apply: Callable, params, tokens
                ) -> tuple[np.ndarray, list[str], dict[str, str]]:
    """The state of every unit after each token of one stream: `apply(params, tokens [1, T],
    tap)` runs the model with the tap; returns (activations [T, U], labels
    `layer/part/index`, e.g. `layer_0/c/17` for unit 17 of an LSTM's cell state, and
    `{layer name: the path it ran}`)."""
    tap = _States()

    def run(params, tokens):
        apply(params, tokens, tap)
        return tap.states

    states = jax.jit(run)(params, tokens)
    columns, labels = [], []
    for name, carry in states.items():
        for part, leaf in zip(_part_names(carry), jax.tree_util.tree_leaves(carry)):
            leaf = np.asarray(leaf, np.float64)
            columns.append(leaf.reshape(leaf.shape[0], -1))  # [T, 1, H] -> [T, H]
            labels += [f"{name}/{part}/{i}" for i in range(leaf.shape[-1])]
    return np.concatenate(columns, axis=1), labels, dict(tap.paths)


def text_features(text: str) -> dict[str, np.ndarray]:
    """Named features of a text, each the state after reading character t:
    quote (inside a double-quoted span), bracket_depth (open ( [ { not yet closed),
    line_position (characters since the newline), indentation (leading spaces/tabs of the line
    read so far), comment (inside a `#` or `//` comment, until the newline)."""
    n = len(text)
    out = {k: np.zeros(n) for k in
           ("quote", "bracket_depth", "line_position", "indentation", "comment")}
    quote = comment = False
    depth = position = indent = 0
    leading = True
    previous = ""
    for t, ch in enumerate(text):
        if ch == "\n":
            comment, position, indent, leading = False, 0, 0, True
        else:
            position += 1
            if leading and ch in " \t":
                indent += 1
            else:
                leading = False
            if not comment:
                if ch == '"':
                    quote = not quote
                elif not quote and (ch == "#" or (ch == "/" and previous == "/")):
                    comment = True
                elif not quote and ch in "([{":
                    depth += 1
                elif not quote and ch in ")]}":
                    depth = max(depth - 1, 0)
        previous = ch
        out["quote"][t], out["comment"][t] = quote, comment
        out["bracket_depth"][t], out["line_position"][t], out["indentation"][t] = (
            depth, position, indent)
    return out


def correlations(activations: np.ndarray, feature: np.ndarray) -> np.ndarray:
    """Pearson's r of each unit `activations [T, U]` with `feature [T]` (0 where either is
    constant)."""
    a = activations - activations.mean(0)
    f = feature - feature.mean()
    denominator = np.sqrt((a * a).sum(0) * (f * f).sum())
    with np.errstate(invalid="ignore", divide="ignore"):
        r = (a * f[:, None]).sum(0) / denominator
    return np.where(denominator > 0, r, 0.0)


def search_units(activations: np.ndarray, labels: list[str], features: dict[str, np.ndarray],
                 top: int = 3) -> dict[str, list[tuple[str, float]]]:
    """For each feature that varies over the text, the `top` units by |r|, best first:
    `{feature: [(unit label, r), ...]}`."""
    found = {}
    for name, feature in features.items():
        if np.ptp(feature) == 0:
            continue
        r = correlations(activations, feature)
        order = np.argsort(-np.abs(r), kind="stable")[:top]
        found[name] = [(labels[i], float(r[i])) for i in order]
    return found


def _colour(v: float) -> str:
    """Blue for positive, red for negative activations, white at 0 (v in [-1, 1])."""
    v = float(np.clip(v, -1.0, 1.0))
    fade = int(255 * (1 - abs(v)))
    return f"rgb({fade},{fade},255)" if v >= 0 else f"rgb(255,{fade},{fade})"


def units_html(text: str, columns: dict[str, np.ndarray], title: str = "hidden units") -> str:
    """A page that colours each character of `text` by a unit's activation after reading it,
    one block per unit (`{caption: activations [T]}`), scaled by the unit's largest |value|.
    The text is escaped: markup in it is shown, not interpreted."""
    blocks = []
    for caption, values in columns.items():
        scale = float(np.max(np.abs(values))) or 1.0
        spans = []
        for ch, v in zip(text, values):
            shown = "\u21b5\n" if ch == "\n" else html.escape(ch)
            spans.append(f'<span style="background:{_colour(v / scale)}" '
                         f'title="{v:.3f}">{shown}</span>')
        blocks.append(f"<h2>{html.escape(caption)} <small>(|max| {scale:.3g})</small></h2>\n"
                      f'<div class="text">{"".join(spans)}</div>')
    return ("<!doctype html>\n<html><head><meta charset=\"utf-8\">"
            f"<title>{html.escape(title)}</title><style>"
            "body{font-family:sans-serif;margin:2em}"
            ".text{font-family:monospace;white-space:pre-wrap;line-height:1.5;"
            "border:1px solid #ccc;padding:0.5em}</style></head><body>\n"
            f"<h1>{html.escape(title)}</h1>\n<p>Each character is coloured by the unit's value "
            "after reading it: blue positive, red negative, white 0.</p>\n"
            + "\n".join(blocks) + "\n</body></html>\n")
