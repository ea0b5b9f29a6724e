"""rnnlab cells inside Flax: `nn.RNN` / `nn.Bidirectional` over `LinenCell` and `nnx.RNN` over
`NNXCell` equal the rnnlab layers with the same weights."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

flax = pytest.importorskip("flax")
import flax.linen as nn  # noqa: E402
from flax import nnx  # noqa: E402

from rnnlab import cells, flax_cells, recurrent  # noqa: E402

B, T, F, H = 3, 6, 5, 4
CASES = [("lstm", {}), ("gru", {}), ("mgu", {}), ("lstm", {"variant": "cifg"}), ("lru", {})]


def inputs():
    return jax.random.normal(jax.random.key(1), (B, T, F))


@pytest.mark.parametrize("name,options", CASES)
def test_linen_rnn_and_bidirectional_over_an_rnnlab_cell_equal_the_rnnlab_layers(name, options):
    xs = inputs()
    make = lambda: nn.RNN(flax_cells.LinenCell(name, H, options))  # noqa: E731
    variables = make().init(jax.random.key(0), xs)
    cell = cells.get_cell(name, hidden_size=H, **options)
    want = recurrent.rnn(cell).apply(variables["params"], None, xs)[1]  # the same layout
    np.testing.assert_allclose(make().apply(variables, xs), want, atol=1e-5)
    both = nn.Bidirectional(make(), make())
    bi_vars = both.init(jax.random.key(2), xs)
    fwd, bwd = (bi_vars["params"][k] for k in ("forward_rnn", "backward_rnn"))
    want = recurrent.bidirectional(cell, cell).apply({"fwd": fwd, "bwd": bwd}, None, xs)[1]
    np.testing.assert_allclose(both.apply(bi_vars, xs), want, atol=1e-5)


@pytest.mark.parametrize("name,options", CASES[:3])
def test_nnx_rnn_over_an_rnnlab_cell_equals_the_rnnlab_layer(name, options):
    xs = inputs()
    module = nnx.RNN(flax_cells.NNXCell(name, in_features=F, features=H, rngs=nnx.Rngs(0),
                                        options=options))
    params = module.cell.cell_params.get_value()
    cell = cells.get_cell(name, hidden_size=H, **options)
    want = recurrent.rnn(cell).apply({"cell": params}, None, xs)[1]
    np.testing.assert_allclose(module(xs), want, atol=1e-5)
