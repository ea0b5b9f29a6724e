"""Every way an rnnlab layer can run, side by side with Flax's `nn.RNN`: one gradient step of
a layer, on the backend it runs on.

    python benchmarks/layer_speed.py [--sizes=128x64x64,512x64x100] [--cells=lstm,gru,mingru]
        [--reps=20]

For each cell and size (H x B x T, input F=64), times `jax.grad` of a squared-output loss
through one layer run by each choice `rnnlab.layers.paths.choose_path` decides between: the
path (sequential: autodiff through the scan; custom_vjp: the hand-derived backward; parallel:
the associative scan, for linear cells; native: oneDNN's primitive, on a CPU where it is
built) crossed with the input projection (fused into each
step, or hoisted before the scan), and Flax `nn.RNN(OptimizedLSTMCell)` / `nn.RNN(GRUCell)`,
interleaved rep by rep in one process. Prints median ms per step, compile seconds (counted
apart), the ratio of the fastest choice's time to each (1.00: the fastest), the choice
`choose_path` makes on this backend (marked "<- chosen"), and for the LSTM and GRU the
achieved matmul rate against this machine's measured matmul ceiling. On a GPU or TPU one run
settles the choices that have no measurement yet (see `rnnlab/layers/paths.py`).
"""

from __future__ import annotations

import argparse
import time

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from rnnlab import cells, layers, native

F = 64


def _timed(fn, *args):
    t0 = time.perf_counter()
    jax.block_until_ready(fn(*args))
    compile_s = time.perf_counter() - t0
    return compile_s, lambda: _once(fn, args)


def _once(fn, args):
    t0 = time.perf_counter()
    jax.block_until_ready(fn(*args))
    return time.perf_counter() - t0


def matmul_ceiling_gflops(n=512, reps=20):
    a = jnp.ones((n, n), jnp.float32)
    f = jax.jit(lambda a: a @ a)
    jax.block_until_ready(f(a))
    times = [_once(f, (a,)) for _ in range(reps)]
    return 2 * n**3 / np.median(times) / 1e9


def step_flops(cell_name, H, B, T):
    gates = {"lstm": 4, "gru": 3}.get(cell_name)
    if gates is None:
        return None
    forward = 2 * B * T * (F + H) * gates * H
    return 3 * forward  # forward + two backward matmuls (inputs and weights)


# Each choice as the layer options that force it.
CHOICES = {
    ("sequential", False): {"backward": "autodiff", "projection": "fused", "parallel": False},
    ("sequential", True): {"backward": "autodiff", "projection": "hoisted", "parallel": False},
    ("custom_vjp", False): {"backward": "custom", "projection": "fused", "parallel": False},
    ("custom_vjp", True): {"backward": "custom", "projection": "hoisted", "parallel": False},
    ("parallel", False): {"parallel": True, "projection": "fused"},
    # oneDNN's primitive computes its own projection (`hoisted` is then only a label)
    ("native", False): {"backward": "native", "parallel": False},
}


def native_runs(cell):
    """The native path is built here and has the cell (on a CPU)."""
    return (jax.default_backend() == "cpu" and cell.kernel is not None
            and cell.kernel.native is not None and native.available())


def choices(cell):
    """The choices that can run `cell`: (path, hoisted) -> options."""
    out = {}
    for (path, hoisted), options in CHOICES.items():
        if ((path == "custom_vjp" and cell.kernel is None)
                or (path == "parallel" and not cell.linear)
                or (path == "native" and not native_runs(cell))):
            continue
        out[(path, hoisted)] = options
    return out


def variants(cell_name, H, B, T):
    """{label: (jitted gradient, params, xs)} and the label of the choice `choose_path` makes."""
    key = jax.random.key(0)
    xs = jax.random.normal(key, (B, T, F))
    cell = cells.get_cell(cell_name, hidden_size=H)
    chosen = layers.choose_path(cell, layers.options.Options(), jax.default_backend())
    if chosen.path == "native" and B * H < layers.native.SMALLEST:  # too small for oneDNN
        chosen = chosen._replace(path="custom_vjp")
    out, chosen_label = {}, None
    for (path, hoisted), options in choices(cell).items():
        label = path if path == "native" else f"{path} {'hoisted' if hoisted else 'fused'}"
        if (path, hoisted) == tuple(chosen) or (path in ("parallel", "native")
                                                and path == chosen.path):
            chosen_label = label
        layer = layers.rnn(cell, **options)
        params = layer.init(key, F)
        loss = lambda p, xs, layer=layer: jnp.sum(layer.apply(p, None, xs)[1] ** 2)
        out[label] = (jax.jit(jax.grad(loss)), params, xs)
    flax_cell = {"lstm": nn.OptimizedLSTMCell, "gru": nn.GRUCell}.get(cell_name)
    if flax_cell is not None:
        model = nn.RNN(flax_cell(H))
        params = model.init(key, xs)
        loss = lambda p, xs: jnp.sum(model.apply(p, xs) ** 2)
        out["flax"] = (jax.jit(jax.grad(loss)), params, xs)
    return out, chosen_label


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", default="128x64x64,512x64x100")
    parser.add_argument("--cells", default="lstm,gru,mingru")
    parser.add_argument("--reps", type=int, default=20)
    args = parser.parse_args()
    ceiling = matmul_ceiling_gflops()
    print(f"jax {jax.__version__}, backend {jax.default_backend()}, "
          f"matmul ceiling {ceiling:.0f} GFLOP/s (512x512 f32)")
    print("| cell | H x B x T | variant | compile s | median ms | best / variant | % of ceiling |")
    print("|---|---|---|---:|---:|---:|---:|")
    for cell_name in args.cells.split(","):
        for size in args.sizes.split(","):
            H, B, T = map(int, size.split("x"))
            built, chosen = variants(cell_name, H, B, T)
            runs = {name: _timed(fn, params, xs) for name, (fn, params, xs) in built.items()}
            times = {name: [] for name in runs}
            for _ in range(args.reps):  # interleaved, so drift hits every variant alike
                for name, (_, once) in runs.items():
                    times[name].append(once())
            medians = {name: 1e3 * np.median(t) for name, t in times.items()}
            best = min(medians.values())
            flops = step_flops(cell_name, H, B, T)
            for name, (compile_s, _) in runs.items():
                ms = medians[name]
                pct = "-" if flops is None else f"{100 * flops / (ms / 1e3) / 1e9 / ceiling:.0f}"
                mark = " <- chosen" if name == chosen else ""
                print(f"| {cell_name} | {H}x{B}x{T} | {name}{mark} | {compile_s:.2f} | "
                      f"{ms:.1f} | {best / ms:.2f} | {pct} |")


if __name__ == "__main__":
    main()
