"""Recurrent layers: a Cell lifted over time (`rnn`), and combinators over layers (`stack`,
`bidirectional`).

    layer = rnnlab.layers.rnn(cell, reverse=False, ...)       # options: `options.Options`
    carry, ys = layer.apply(params, carry, xs, reset=..., lengths=..., key=..., tap=...)

Where each concept lives:
- `layer`: the Layer noun, what `apply` takes, the checks of its inputs;
- `options`: the layer's options and their rules, checked once (also for configs);
- `paths`: `choose_path(cell, options, backend)`, the backend policy with its measurements;
- `sequential`, `custom_vjp`, `parallel`: the paths, one module each;
- `sequences`: time-major windows, lengths and the reversal of a backward layer;
- `regularisers`: dropout, weight drop, variational recurrent dropout, zoneout;
- `taps`: what diagnostics see (`Tap`), passed to `apply` as `tap=`;
- `lifted` (`rnn`), `combinators` (`stack`, `bidirectional`): the layers themselves.
"""

from rnnlab.layers import combinators, layer, lifted, options, paths, regularisers, sequences, taps

# The public names (also `rnnlab.recurrent`'s, its old import path).
Layer = layer.Layer
Tap = taps.Tap
rnn = lifted.rnn
stack = combinators.stack
bidirectional = combinators.bidirectional
choose_path = paths.choose_path
flip_sequences = sequences.flip_sequences
variational_mask = regularisers.variational_mask
PROJECTIONS, BACKWARDS, MERGES = options.PROJECTIONS, options.BACKWARDS, options.MERGES

__all__ = ["Layer", "Tap", "rnn", "stack", "bidirectional", "choose_path", "flip_sequences",
           "variational_mask", "PROJECTIONS", "BACKWARDS", "MERGES"]
