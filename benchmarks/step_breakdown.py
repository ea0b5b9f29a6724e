"""Where the time of a training step goes: rnnlab's whole step against its recurrent layer alone.

    python benchmarks/step_breakdown.py [--config=configs/quickstart.py] [--reps=20]

Times, in one process with interleaved reps (medians, compile apart), for the config's model:
- "train step": rnnlab's own compiled update (`steps.make_train_step`: batch slicing, the task's
  loss with embedding, layers, dropout, readout and cross-entropy, the gradient, the optimizer,
  the non-finite guard and the metric sums), as `rnnlab.main` runs it;
- "loss and gradient": the task's loss and its gradient only (no optimizer, no bookkeeping);
- "layers": the recurrent layers' forward and backward alone, on inputs of the same shape.
The differences say how much of a step is outside the recurrent layers.
"""

from __future__ import annotations

import argparse
import time

import jax
import jax.numpy as jnp
import numpy as np

from rnnlab import model as model_lib
from rnnlab import optim, state as state_lib, steps, tasks


def load(path):
    import importlib.util

    spec = importlib.util.spec_from_file_location("config", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.get_config()


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--config", default="configs/quickstart.py")
    parser.add_argument("--reps", type=int, default=20)
    args = parser.parse_args()
    config = load(args.config)
    task = tasks.build(config)
    tx = optim.make_optimizer(config.optim, config.train.steps)
    state = state_lib.init_state(config, task.model, tx, task.metrics)
    data = task.data
    B, T = config.train.batch_size, config.train.bptt_len
    m = config.model

    full = jax.jit(steps.make_train_step(task, tx))
    key = jax.random.key(0)
    batch = task.batch(data, 0, key)
    loss_grad = jax.jit(jax.grad(lambda p: task.loss(p, state.carry, batch, key)[0]))
    body = model_lib.make_body(m, task.model.vocab_size)
    body_params = state.params["body"]
    xs = jax.random.normal(key, (B, T, m.embed_size or task.model.vocab_size))
    layers = jax.jit(jax.grad(lambda p, xs: jnp.sum(
        body.apply(p, None, xs, key=key)[1] ** 2), argnums=(0, 1)))
    runs = {"train step": lambda: full(state, data),
            "loss and gradient": lambda: loss_grad(state.params),
            "layers": lambda: layers(body_params, xs)}
    compile_s, times = {}, {name: [] for name in runs}
    for name, run in runs.items():
        t0 = time.perf_counter()
        jax.block_until_ready(run())
        compile_s[name] = time.perf_counter() - t0
    for _ in range(args.reps):
        for name, run in runs.items():
            t0 = time.perf_counter()
            jax.block_until_ready(run())
            times[name].append(time.perf_counter() - t0)
    ms = {name: 1e3 * np.median(t) for name, t in times.items()}
    print(f"{args.config}: {m.cell} H={m.hidden_size} L={m.num_layers} B={B} T={T}, "
          f"jax {jax.__version__} on {jax.default_backend()}")
    print("| part | compile s | median ms | share of the step |")
    print("|---|---:|---:|---:|")
    for name in runs:
        print(f"| {name} | {compile_s[name]:.2f} | {ms[name]:.2f} | "
              f"{ms[name] / ms['train step']:.0%} |")


if __name__ == "__main__":
    main()
