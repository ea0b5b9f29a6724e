"""Is one oneDNN primitive over both directions, or over stacked layers, faster than one call
per direction or layer (what rnnlab's native path and PyTorch's `nn.LSTM` do)?

    python benchmarks/native_fused.py [--sizes=128x64x64,512x64x100] [--cells=lstm,gru]
        [--reps=20]

For each cell and size (H x B x T), times the gradient of a squared-output loss through
`rnnlab.layers.native.rnn` (oneDNN's primitive, forward and backward, through XLA's FFI):
- a bidirectional layer (input size H, outputs concatenated): one primitive with
  `direction=CONCAT` against two primitives (left to right, right to left) concatenated;
- two stacked layers (input size H): one primitive with L = 2 against two calls, the second
  reading the first's outputs;
interleaved rep by rep in one process. Prints the median ms per step and the ratio of the
separate calls' time to the fused primitive's (> 1: fusing is faster). CPU only, with the native
path built (`python -m rnnlab.native`).
"""

from __future__ import annotations

import argparse
import time

import jax
import jax.numpy as jnp
import numpy as np

from rnnlab import native
from rnnlab.layers import native as native_layer

# cell -> (gates, bias gates): the GRU is oneDNN's linear-before-reset one (gates u, r, o; the
# reset's recurrent bias a fourth), PyTorch's and rnnlab's default.
GATES = {"lstm": (4, 4), "gru": (3, 4)}


def _seconds(fn, *args):
    t0 = time.perf_counter()
    jax.block_until_ready(fn(*args))
    return time.perf_counter() - t0


def _params(key, L, D, C, H, cell):
    G, Gb = GATES[cell]
    k = jax.random.split(key, 3)
    u = lambda k, shape: jax.random.uniform(k, shape, jnp.float32, -0.1, 0.1)  # noqa: E731
    return u(k[0], (L, D, C, G * H)), u(k[1], (L, D, H, G * H)), u(k[2], (L, D, Gb * H))


def _state(cell, L, D, N, H):
    h0 = jnp.zeros((L, D, N, H), jnp.float32)
    return h0, (h0 if cell == "lstm" else jnp.zeros((0,), jnp.float32))


def cases(cell: str, H: int, B: int, T: int):
    """`{name: (fused, split, weights, x)}`: the gradient of the fused primitive and of the
    separate calls it replaces."""
    code = native_layer.CODES["lbr_gru" if cell == "gru" else cell]
    rnn = native_layer.rnn
    key = jax.random.key(0)
    x = jax.random.normal(key, (T, B, H), jnp.float32)

    def bi_fused(w, x):
        h0, c0 = _state(cell, 1, 2, B, H)
        return jnp.sum(rnn(code, native_layer.CONCAT, x, h0, c0, *w)[0] ** 2)

    def bi_split(w, x):
        h0, c0 = _state(cell, 1, 1, B, H)
        ys = [rnn(code, d, x, h0, c0, *(a[:, i:i + 1] for a in w))[0]
              for i, d in enumerate((native_layer.FORWARD, native_layer.REVERSE))]
        return jnp.sum(jnp.concatenate(ys, -1) ** 2)

    def stack_fused(w, x):
        h0, c0 = _state(cell, 2, 1, B, H)
        return jnp.sum(rnn(code, native_layer.FORWARD, x, h0, c0, *w)[0] ** 2)

    def stack_split(w, x):
        h0, c0 = _state(cell, 1, 1, B, H)
        for i in range(2):
            x = rnn(code, native_layer.FORWARD, x, h0, c0, *(a[i:i + 1] for a in w))[0]
        return jnp.sum(x ** 2)

    grad = lambda f: jax.jit(jax.grad(f))  # noqa: E731
    return {"bidirectional": (grad(bi_fused), grad(bi_split), _params(key, 1, 2, H, H, cell), x),
            "2 layers": (grad(stack_fused), grad(stack_split), _params(key, 2, 1, H, H, cell), x)}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="128x64x64,512x64x100",
                        help="H x B x T, comma-separated")
    parser.add_argument("--cells", default="lstm,gru")
    parser.add_argument("--reps", type=int, default=20)
    args = parser.parse_args()
    ok, what = native.status()
    if not ok:
        raise SystemExit(f"the native path is not available: {what}")
    print(f"jax {jax.__version__}, {what}")
    print(f"{'cell':5} {'H':>4} {'B':>4} {'T':>4} {'case':14} {'fused ms':>9} {'split ms':>9}"
          f" {'split/fused':>11} {'max |dw| diff':>13}")
    for cell in args.cells.split(","):
        for size in args.sizes.split(","):
            H, B, T = map(int, size.split("x"))
            for name, (fused, split, w, x) in cases(cell, H, B, T).items():
                diff = max(float(jnp.max(jnp.abs(a - b))) for a, b in zip(fused(w, x),
                                                                          split(w, x)))
                times = np.array([(_seconds(fused, w, x), _seconds(split, w, x))
                                  for _ in range(args.reps)])  # interleaved
                mf, ms = np.median(times, axis=0) * 1e3
                print(f"{cell:5} {H:4} {B:4} {T:4} {name:14} {mf:9.2f} {ms:9.2f} {ms / mf:11.2f}"
                      f" {diff:13.2e}", flush=True)


if __name__ == "__main__":
    main()
