"""Any rnnlab cell inside Flax models (needs `pip install -e ".[flax]"`).

    import flax.linen as nn
    from rnnlab import flax_cells
    layer = nn.RNN(flax_cells.LinenCell("gru", features=128))          # or nn.Bidirectional
    from flax import nnx
    layer = nnx.RNN(flax_cells.NNXCell("mgu", in_features=64, features=128, rngs=nnx.Rngs(0)))

The params are the rnnlab cell's own: `nn.RNN(LinenCell(...))` holds `{"cell": {"w_x": ...,
"w_h": ...}}`, exactly the params of `recurrent.rnn(cell)`; `NNXCell.cell_params` is an
`nnx.Param` holding the cell's dict. Weights move between rnnlab and Flax as they are. `options` are the cell's keyword options (`{"variant": "cifg"}`).
"""

from __future__ import annotations

from typing import Any

import jax
from flax import linen as nn
from flax import nnx

from rnnlab import cells


class LinenCell(nn.RNNCellBase):
    """An rnnlab cell as a `flax.linen` RNN cell (for `nn.RNN`, `nn.Bidirectional`)."""

    cell: str
    features: int
    options: Any = None  # a dict of the cell's options (a tuple of pairs also works)

    def _cell(self) -> cells.Cell:
        return cells.get_cell(self.cell, hidden_size=self.features, **dict(self.options or {}))

    @nn.compact
    def __call__(self, carry, inputs):
        cell, size = self._cell(), inputs.shape[-1]
        names = jax.eval_shape(lambda key: cell.init(key, size), jax.random.key(0)).keys()
        drawn = {}

        def init(name):  # the first param's key draws them all, as `cell.init` does
            def fn(key):
                if not drawn:
                    drawn.update(cell.init(key, size))
                return drawn[name]
            return fn

        return cell.step({n: self.param(n, init(n)) for n in names}, carry, inputs)

    @nn.nowrap
    def initialize_carry(self, rng, input_shape):
        cell = self._cell()
        shapes = jax.eval_shape(lambda key: cell.init(key, input_shape[-1]), rng)
        params = jax.tree.map(lambda s: jax.numpy.zeros(s.shape, s.dtype), shapes)
        return cell.initial_carry(params, tuple(input_shape[:-1]))

    @property
    def num_feature_axes(self) -> int:
        return 1


class NNXCell(nnx.RNNCellBase):
    """An rnnlab cell as a `flax.nnx` RNN cell (for `nnx.RNN`)."""

    def __init__(self, cell: str, *, in_features: int, features: int, rngs: nnx.Rngs,
                 options: dict | None = None):
        self.rnnlab_cell = cells.get_cell(cell, hidden_size=features, **(options or {}))
        self.in_features, self.features = in_features, features
        self.cell_params = nnx.Param(self.rnnlab_cell.init(rngs.params(), in_features))

    def __call__(self, carry, inputs):
        return self.rnnlab_cell.step(self.cell_params.get_value(), carry, inputs)

    def initialize_carry(self, input_shape, rngs=None, carry_init=None):
        del rngs, carry_init  # an rnnlab cell's initial carry is its own (zeros)
        return self.rnnlab_cell.initial_carry(self.cell_params.get_value(), tuple(input_shape[:-1]))

    @property
    def num_feature_axes(self) -> int:
        return 1
