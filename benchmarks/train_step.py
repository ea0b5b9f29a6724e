"""The training step of a character language model: rnnlab vs Flax, Equinox and PyTorch.

    pip install -r benchmarks/requirements.txt   # the peers (not the library's dependencies)
    python benchmarks/train_step.py [--cells=elman,lstm,gru] [--layers=1,2] [--hidden=128,512]
        [--batch=64,128] [--bptt=64,100] [--reps=7]

One step = forward, backward and an Adam update of: embedding (27 symbols -> 64), L stacked
recurrent layers of H units, a readout to 27 logits, mean softmax cross-entropy over B x T
next-character targets. Every JAX variant shares the same loss and optax Adam and differs only
in its recurrent layers:
- rnnlab: `rnnlab.models.language_model` (the model `python -m rnnlab.main` trains) with
  `model.backward=auto` (on a CPU: oneDNN's RNN primitive through XLA's FFI where the native
  path is built, `python -m rnnlab.native` says whether), `model.backward=custom` (the
  hand-derived backward in pure JAX) and `model.backward=autodiff` (autodiff through the scan of
  the cell's step);
- flax: `nn.RNN` over `SimpleCell` / `OptimizedLSTMCell` / `GRUCell`;
- equinox: `jax.lax.scan` over `eqx.nn.LSTMCell` / `GRUCell` (Equinox has no Elman cell);
- torch: `nn.RNN` / `nn.LSTM` / `nn.GRU` (oneDNN on CPU) with `torch.optim.Adam`.
All run in this one process; for each size the reps are interleaved across the variants (so a
drift of the machine hits all alike), the first (compiling) call is timed apart, and the table
gives medians. "x rnnlab" is variant time over rnnlab's time (> 1: rnnlab is faster).
"GFLOP/s" counts the step's matmul FLOPs (3x the forward's: the forward, the input gradient and
the weight gradient); "% peak" divides by this machine's large-matmul rate, measured here.
"""

from __future__ import annotations

import argparse
import functools
import itertools
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax

from configs import base as base_config
from rnnlab import models, native

V, E = 27, 64
GATES = {"elman": 1, "lstm": 4, "gru": 3}


def step_flops(cell, L, H, B, T):
    forward = 2 * B * T * (GATES[cell] * H * ((E + H) + (L - 1) * 2 * H) + H * V)
    return 3 * forward


def matmul_peak_gflops(n=2048, reps=10):
    a = jnp.ones((n, n), jnp.float32)
    f = jax.jit(lambda a: a @ a)
    jax.block_until_ready(f(a))
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        jax.block_until_ready(f(a))
        times.append(time.perf_counter() - t0)
    return 2 * n**3 / np.median(times) / 1e9


def _loss(logits, targets):
    return optax.softmax_cross_entropy_with_integer_labels(logits, targets).mean()


def jax_step(apply, params):
    """A jitted Adam step of `apply(params, tokens) -> logits`; returns a no-argument runner."""
    tx = optax.adam(1e-3)
    state = [params, tx.init(params)]

    @jax.jit
    def step(params, opt_state, tokens):
        loss, grads = jax.value_and_grad(
            lambda p: _loss(apply(p, tokens[:, :-1]), tokens[:, 1:]))(params)
        updates, opt_state = tx.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, loss

    def run(tokens):
        state[0], state[1], loss = step(state[0], state[1], tokens)
        return jax.block_until_ready(loss)

    return run


def rnnlab_variant(cell, L, H, backward):
    m = base_config.get_config().model
    m.cell, m.num_layers, m.hidden_size, m.embed_size, m.backward = cell, L, H, E, backward
    model = models.language_model(m, V)
    params = model.init(jax.random.key(0))
    return jax_step(lambda p, x: model.apply(p, None, x)[1], params)


def flax_variant(cell, L, H):
    import flax.linen as nn

    cell_cls = {"elman": nn.SimpleCell, "lstm": nn.OptimizedLSTMCell, "gru": nn.GRUCell}[cell]

    class Model(nn.Module):
        @nn.compact
        def __call__(self, tokens):
            x = nn.Embed(V, E)(tokens)
            for _ in range(L):
                x = nn.RNN(cell_cls(H))(x)
            return nn.Dense(V)(x)

    model = Model()
    params = model.init(jax.random.key(0), jnp.zeros((2, 3), jnp.int32))
    return jax_step(model.apply, params)


def equinox_variant(cell, L, H):
    import equinox as eqx

    if cell not in ("lstm", "gru"):
        return None
    cell_cls = {"lstm": eqx.nn.LSTMCell, "gru": eqx.nn.GRUCell}[cell]
    keys = jax.random.split(jax.random.key(0), L + 2)
    params = {"embed": jax.random.normal(keys[0], (V, E)),
              "cells": [cell_cls(E if i == 0 else H, H, key=keys[1 + i]) for i in range(L)],
              "readout": eqx.nn.Linear(H, V, key=keys[-1])}

    def apply(p, tokens):
        x = jnp.moveaxis(p["embed"][tokens], 1, 0)  # [T, B, E]
        for c in p["cells"]:
            zeros = jnp.zeros((x.shape[1], H))
            carry = (zeros, zeros) if cell == "lstm" else zeros

            def body(carry, x_t, c=c):
                carry = jax.vmap(c)(x_t, carry)
                return carry, carry[0] if cell == "lstm" else carry

            _, x = jax.lax.scan(body, carry, x)
        return jax.vmap(jax.vmap(p["readout"]))(jnp.moveaxis(x, 0, 1))

    return jax_step(apply, params)


def torch_variant(cell, L, H):
    import torch

    rnn_cls = {"elman": torch.nn.RNN, "lstm": torch.nn.LSTM, "gru": torch.nn.GRU}[cell]
    torch.manual_seed(0)
    embed, rnn = torch.nn.Embedding(V, E), rnn_cls(E, H, num_layers=L, batch_first=True)
    readout = torch.nn.Linear(H, V)
    modules = torch.nn.ModuleList([embed, rnn, readout])
    opt = torch.optim.Adam(modules.parameters(), lr=1e-3)

    def run(tokens):
        tokens = torch.from_numpy(np.asarray(tokens)).long()
        opt.zero_grad(set_to_none=True)
        logits = readout(rnn(embed(tokens[:, :-1]))[0])
        loss = torch.nn.functional.cross_entropy(logits.reshape(-1, V), tokens[:, 1:].reshape(-1))
        loss.backward()
        opt.step()
        return float(loss)

    return run


PEERS = {"flax": flax_variant, "equinox": equinox_variant, "torch": torch_variant}


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--cells", default="elman,lstm,gru")
    parser.add_argument("--layers", default="1,2")
    parser.add_argument("--hidden", default="128,512")
    parser.add_argument("--batch", default="64,128")
    parser.add_argument("--bptt", default="64,100")
    parser.add_argument("--reps", type=int, default=7)
    parser.add_argument("--peers", default="flax,equinox,torch")
    parser.add_argument("--paths", default="custom,autodiff",
                        help="rnnlab's other paths beside its default (model.backward=auto)")
    args = parser.parse_args()
    ints = lambda s: [int(v) for v in s.split(",")]
    peers = args.peers.split(",") if args.peers else []
    peak = matmul_peak_gflops()
    print(f"jax {jax.__version__} on {jax.default_backend()}; large-matmul peak {peak:.0f} "
          "GFLOP/s (2048x2048 float32); native path: "
          f"{native.status()[1] if native.status()[0] else 'off (' + native.status()[1] + ')'}")
    print("| cell | L | H | B | T | variant | compile s | median ms | x rnnlab | GFLOP/s "
          "| % peak |")
    print("|---|---:|---:|---:|---:|---|---:|---:|---:|---:|---:|")
    grid = itertools.product(args.cells.split(","), ints(args.layers), ints(args.hidden),
                             ints(args.batch), ints(args.bptt))
    for cell, L, H, B, T in grid:
        tokens = np.asarray(jax.random.randint(jax.random.key(1), (B, T + 1), 0, V))
        makers = {"rnnlab": functools.partial(rnnlab_variant, cell, L, H, "auto")}
        makers |= {f"rnnlab {path}": functools.partial(rnnlab_variant, cell, L, H, path)
                   for path in filter(None, args.paths.split(","))}
        makers |= {peer: functools.partial(PEERS[peer], cell, L, H) for peer in peers}
        runs, compile_s = {}, {}
        for name, make in makers.items():
            run = make()
            if run is None:
                continue
            t0 = time.perf_counter()
            run(tokens)
            compile_s[name], runs[name] = time.perf_counter() - t0, run
        times = {name: [] for name in runs}
        for _ in range(args.reps):
            for name, run in runs.items():
                t0 = time.perf_counter()
                run(tokens)
                times[name].append(time.perf_counter() - t0)
        ms = {name: 1e3 * np.median(t) for name, t in times.items()}
        flops = step_flops(cell, L, H, B, T)
        for name in runs:
            gflops = flops / ms[name] / 1e6
            print(f"| {cell} | {L} | {H} | {B} | {T} | {name} | {compile_s[name]:.2f} | "
                  f"{ms[name]:.1f} | {ms[name] / ms['rnnlab']:.2f} | {gflops:.0f} | "
                  f"{100 * gflops / peak:.0f} |", flush=True)


if __name__ == "__main__":
    main()
