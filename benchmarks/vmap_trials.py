"""K trials vmapped in one program vs the same K trials one after another, in one process.

    python benchmarks/vmap_trials.py [--trials=8] [--hidden=128] [--batch=32] [--bptt=64]
                                     [--steps=50] [--reps=5]

The trials are a seed x learning-rate sweep of one LSTM char model on the offline pydoc
corpus: exactly what `launch.sweep --executor=vmap` groups. Both sides run rnnlab's own train
step (`rnnlab.steps.make_train_step`): vmapped, one jitted call advances all K trials by one
step; sequential, K jitted calls advance one trial each. Reps are interleaved; the table
gives the median seconds per `--steps` steps of all K trials, trials per hour at that rate
for a 10,000-step trial, and the ratio. Compile time is reported apart.
"""

from __future__ import annotations

import argparse
import time

import jax
import jax.numpy as jnp
import numpy as np

from configs import base
from rnnlab import optim, state as state_lib, steps as steps_lib, tasks


def make_configs(args):
    configs = []
    for k in range(args.trials):
        c = base.get_config()
        c.seed = k
        c.model.cell, c.model.hidden_size, c.model.num_layers = "lstm", args.hidden, 1
        c.model.embed_size = 32
        c.train.batch_size, c.train.bptt_len, c.train.steps = args.batch, args.bptt, 10_000
        c.optim.lr = float(np.geomspace(1e-3, 1e-2, args.trials)[k])
        configs.append(c)
    return configs


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--trials", type=int, default=8)
    parser.add_argument("--hidden", type=int, default=128)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--bptt", type=int, default=64)
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--reps", type=int, default=5)
    args = parser.parse_args()
    configs = make_configs(args)
    task = tasks.build(configs[0])
    streams = jax.device_put(task.data)
    tx = optim.make_optimizer(configs[0].optim, 10_000)
    step = steps_lib.make_train_step(task, tx)
    states = [state_lib.init_state(c, tasks.model(c, task.record),
                                   optim.make_optimizer(c.optim, 10_000), task.metrics)
              for c in configs]
    stacked = jax.tree_util.tree_map(lambda *a: jnp.stack(a), *states)

    single = jax.jit(step)
    many = jax.jit(jax.vmap(step, in_axes=(0, None)))

    def run_sequential(states):
        out = []
        for s in states:
            for _ in range(args.steps):
                s = single(s, streams)
            out.append(s)
        jax.block_until_ready(out)
        return out

    def run_vmapped(state):
        for _ in range(args.steps):
            state = many(state, streams)
        return jax.block_until_ready(state)

    t0 = time.perf_counter()
    jax.block_until_ready(single(states[0], streams))
    compile_single = time.perf_counter() - t0
    t0 = time.perf_counter()
    jax.block_until_ready(many(stacked, streams))
    compile_many = time.perf_counter() - t0
    times = {"sequential": [], "vmapped": []}
    for _ in range(args.reps):
        t0 = time.perf_counter()
        states = run_sequential(states)
        times["sequential"].append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        stacked = run_vmapped(stacked)
        times["vmapped"].append(time.perf_counter() - t0)
    print(f"jax {jax.__version__}, backend {jax.default_backend()} ({jax.devices()[0].device_kind}),"
          f" K={args.trials} LSTM H={args.hidden} B={args.batch} T={args.bptt}, "
          f"{args.steps} steps x {args.reps} reps")
    print("| variant | compile s | median s per K x steps | trials/hour (10k steps) | speed-up |")
    print("|---|---:|---:|---:|---:|")
    seq = np.median(times["sequential"])
    for name, compile_s in (("sequential", compile_single), ("vmapped", compile_many)):
        t = np.median(times[name])
        per_trial_hour = 3600 / (t / args.trials * 10_000 / args.steps)
        print(f"| {name} | {compile_s:.2f} | {t:.2f} | {per_trial_hour:.1f} | {seq / t:.2f} |")


if __name__ == "__main__":
    main()
