"""Parallel vs sequential scan for the linear-recurrence cells (mingru, minlstm, lru).

    python benchmarks/parallel_scan.py [--cells=mingru,minlstm,lru] [--lengths=256,1024,4096]
        [--hidden=128] [--batch=16] [--reps=10]

Times `jax.jit(jax.grad(loss))` of one layer over `xs [B, T, H]` (forward and backward, loss
= sum of squared outputs) with `rnn(cell, parallel=True)` (`jax.lax.associative_scan` over the
affine maps) and `rnn(cell, parallel=False)` (`jax.lax.scan` of the step), both in one process,
reps interleaved; compile time apart. "seq / par" > 1 means the parallel scan is faster.
"""

import statistics
import time

import jax
import jax.numpy as jnp
from absl import app, flags

from rnnlab import cells, recurrent

_CELLS = flags.DEFINE_list("cells", ["mingru", "minlstm", "lru"], "Linear cells to time.")
_LENGTHS = flags.DEFINE_list("lengths", ["256", "1024", "4096"], "Window lengths T.")
_HIDDEN = flags.DEFINE_integer("hidden", 128, "Hidden size H (and input size).")
_BATCH = flags.DEFINE_integer("batch", 16, "Batch size B.")
_REPS = flags.DEFINE_integer("reps", 10, "Timed repetitions (interleaved).")


def compiled(name, parallel, T):
    layer = recurrent.rnn(cells.get_cell(name, hidden_size=_HIDDEN.value), parallel=parallel)
    params = layer.init(jax.random.key(0), _HIDDEN.value)
    xs = jax.random.normal(jax.random.key(1), (_BATCH.value, T, _HIDDEN.value))

    def loss(params):
        return jnp.sum(layer.apply(params, None, xs)[1] ** 2)

    start = time.perf_counter()
    fn = jax.jit(jax.grad(loss)).lower(params).compile()
    jax.block_until_ready(fn(params))
    return (lambda: jax.block_until_ready(fn(params))), time.perf_counter() - start


def main(argv):
    del argv
    print(f"H={_HIDDEN.value}, B={_BATCH.value}, {_REPS.value} reps, backend "
          f"{jax.default_backend()}, {jax.device_count()} device(s)")
    print("| cell | T | variant | compile s | median ms | seq / par |")
    print("|---|---:|---|---:|---:|---:|")
    for name in _CELLS.value:
        for T in map(int, _LENGTHS.value):
            fns = {v: compiled(name, v == "parallel", T) for v in ("parallel", "sequential")}
            times = {v: [] for v in fns}
            for _ in range(_REPS.value):
                for v, (fn, _) in fns.items():
                    start = time.perf_counter()
                    fn()
                    times[v].append(time.perf_counter() - start)
            med = {v: 1000 * statistics.median(t) for v, t in times.items()}
            for v in fns:
                print(f"| {name} | {T} | {v} | {fns[v][1]:.2f} | {med[v]:.1f} | "
                      f"{med['sequential'] / med[v]:.2f} |", flush=True)


if __name__ == "__main__":
    app.run(main)
