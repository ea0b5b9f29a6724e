"""Memory and time of long truncated-BPTT windows, with and without rematerialisation.

    python benchmarks/long_windows.py [--bptt=64,256,1024] [--remat=16,32] [--reps=5]

The quickstart's model (an LSTM of 256 units, embedding 32, 104 symbols, batch 32) and its
training step (forward, backward, Adam) for each window length T, with the default path (the
hand-derived backward), autodiff through the scan, and `model.remat=k` (the scan in chunks of
k steps, each recomputed in the backward pass). "temp MiB" is XLA's own accounting of the
step's temporary buffers (`compiled.memory_analysis().temp_size_in_bytes`: the activations kept
for the backward pass dominate it); times are medians of interleaved reps, compile apart.
"""

from __future__ import annotations

import argparse
import time

import jax
import numpy as np
import optax

from configs import quickstart
from rnnlab import models

V, B = 104, 32


def make_step(T, **model_options):
    m = quickstart.get_config().model
    m.dropout = 0.0
    for k, v in model_options.items():
        m[k] = v
    model = models.language_model(m, V)
    params = model.init(jax.random.key(0))
    tx = optax.adam(1e-3)

    def step(params, opt_state, tokens):
        def loss(p):
            logits = model.apply(p, None, tokens[:, :-1])[1]
            return optax.softmax_cross_entropy_with_integer_labels(logits, tokens[:, 1:]).mean()
        value, grads = jax.value_and_grad(loss)(params)
        updates, opt_state = tx.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, value

    tokens = jax.random.randint(jax.random.key(1), (B, T + 1), 0, V)
    opt_state = tx.init(params)
    t0 = time.perf_counter()
    compiled = jax.jit(step).lower(params, opt_state, tokens).compile()
    compile_s = time.perf_counter() - t0
    temp_mib = compiled.memory_analysis().temp_size_in_bytes / 2**20

    def run():
        t0 = time.perf_counter()
        jax.block_until_ready(compiled(params, opt_state, tokens))
        return time.perf_counter() - t0

    run()
    return compile_s, temp_mib, run


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--bptt", default="64,256,1024")
    parser.add_argument("--remat", default="16,32")
    parser.add_argument("--reps", type=int, default=5)
    args = parser.parse_args()
    print(f"jax {jax.__version__} on {jax.default_backend()}")
    print("| T | variant | temp MiB | compile s | median ms | ms per step of T |")
    print("|---:|---|---:|---:|---:|---:|")
    for T in (int(t) for t in args.bptt.split(",")):
        variants = {"default (hand-derived backward)": {}, "autodiff": {"backward": "autodiff"}}
        variants |= {f"remat={k}": {"remat": int(k)} for k in args.remat.split(",")
                     if int(k) < T}
        runs = {name: make_step(T, **options) for name, options in variants.items()}
        times = {name: [] for name in runs}
        for _ in range(args.reps):
            for name, (_, _, run) in runs.items():
                times[name].append(run())
        for name, (compile_s, temp_mib, _) in runs.items():
            ms = 1e3 * np.median(times[name])
            print(f"| {T} | {name} | {temp_mib:.1f} | {compile_s:.2f} | {ms:.1f} | "
                  f"{ms / T:.3f} |", flush=True)


if __name__ == "__main__":
    main()
