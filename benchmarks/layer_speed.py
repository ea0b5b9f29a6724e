"""rnnlab recurrent layers vs Flax's `nn.RNN` side by side: one gradient step of a layer.

    python benchmarks/layer_speed.py [--sizes=128x64x64,512x64x100] [--reps=20]

For each size (H x B x T, input F=64), times `jax.grad` of a squared-output loss through one
layer: rnnlab `rnn(cell, projection="fused")`, `rnn(cell, projection="hoisted")` and Flax
`nn.RNN(OptimizedLSTMCell)` / `nn.RNN(GRUCell)`, interleaved rep by rep in one process.
Prints median ms per step, compile seconds (counted apart), and the ratio flax/rnnlab (>1:
rnnlab faster), plus the achieved matmul rate against this machine's measured matmul ceiling.
"""

from __future__ import annotations

import argparse
import time

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from rnnlab import cells, recurrent

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
    gates = {"lstm": 4, "gru": 3}[cell_name]
    forward = 2 * B * T * (F + H) * gates * H
    return 3 * forward  # forward + two backward matmuls (inputs and weights)


def variants(cell_name, H, B, T):
    key = jax.random.key(0)
    xs = jax.random.normal(key, (B, T, F))
    out = {}
    for projection in ("fused", "hoisted"):
        layer = recurrent.rnn(cells.get_cell(cell_name, hidden_size=H), projection=projection)
        params = layer.init(key, F)
        loss = lambda p, xs, layer=layer: jnp.sum(layer.apply(p, None, xs)[1] ** 2)
        out[f"rnnlab {projection}"] = (jax.jit(jax.grad(loss)), params, xs)
    flax_cell = {"lstm": nn.OptimizedLSTMCell, "gru": nn.GRUCell}[cell_name](H)
    model = nn.RNN(flax_cell)
    params = model.init(key, xs)
    loss = lambda p, xs: jnp.sum(model.apply(p, xs) ** 2)
    out["flax"] = (jax.jit(jax.grad(loss)), params, xs)
    return out


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", default="128x64x64,512x64x100")
    parser.add_argument("--cells", default="lstm,gru")
    parser.add_argument("--reps", type=int, default=20)
    args = parser.parse_args()
    ceiling = matmul_ceiling_gflops()
    print(f"jax {jax.__version__}, backend {jax.default_backend()}, "
          f"matmul ceiling {ceiling:.0f} GFLOP/s (512x512 f32)")
    print("| cell | H x B x T | variant | compile s | median ms | flax / variant | % of ceiling |")
    print("|---|---|---|---:|---:|---:|---:|")
    for cell_name in args.cells.split(","):
        for size in args.sizes.split(","):
            H, B, T = map(int, size.split("x"))
            runs = {}
            for name, (fn, params, xs) in variants(cell_name, H, B, T).items():
                runs[name] = _timed(fn, params, xs)
            times = {name: [] for name in runs}
            for _ in range(args.reps):  # interleaved, so drift hits every variant alike
                for name, (_, once) in runs.items():
                    times[name].append(once())
            flax_ms = 1e3 * np.median(times["flax"])
            for name, (compile_s, _) in runs.items():
                ms = 1e3 * np.median(times[name])
                pct = 100 * step_flops(cell_name, H, B, T) / (ms / 1e3) / 1e9 / ceiling
                print(f"| {cell_name} | {H}x{B}x{T} | {name} | {compile_s:.2f} | {ms:.1f} | "
                      f"{flax_ms / ms:.2f} | {pct:.0f} |")


if __name__ == "__main__":
    main()
