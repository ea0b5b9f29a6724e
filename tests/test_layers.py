"""The layer's backend policy (`layers.paths.choose_path`), explicit taps and the one check of
the options, against what each choice must compute and where it must run."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from rnnlab import cells, layers, native
from rnnlab.layers import options as options_lib
from rnnlab.layers import paths

H, F, B, T = 4, 3, 2, 5


def choice(name, backend, tapped=False, **options):
    cell = cells.get_cell(name, hidden_size=H)
    return tuple(paths.choose_path(cell, options_lib.Options(**options), backend, tapped=tapped))


def test_the_policy_per_backend():
    # CPU: the measured choices (in-step projection, oneDNN where it is built or else the
    # hand-derived backward, no parallel scan); GPU/TPU: the accelerator form (hoisted
    # projection, parallel scan for linear cells).
    assert choice("lstm", "cpu") == ("native" if native.available() else "custom_vjp", False)
    assert choice("lstm", "cpu", backward="custom") == ("custom_vjp", False)
    assert choice("lstm", "gpu") == ("custom_vjp", True)
    assert choice("mingru", "cpu") == ("sequential", False)
    assert choice("mingru", "tpu") == ("parallel", True)
    assert choice("lstm", "cpu", zoneout=0.1) == ("sequential", False)
    assert choice("lstm", "cpu", remat=4) == ("sequential", False)
    assert choice("mgu", "cpu") == ("sequential", False)
    # what the options force wins over the backend
    assert choice("lstm", "gpu", projection="fused", backward="autodiff") == ("sequential", False)
    assert choice("mingru", "gpu", parallel=False) == ("sequential", True)
    # a tap looks inside the steps: the sequential path, whatever else would run
    assert choice("lstm", "cpu", tapped=True) == ("sequential", False)
    assert choice("mingru", "gpu", tapped=True) == ("sequential", True)


def test_auto_projection_traces_as_the_hoisted_form_off_cpu(monkeypatch):
    cell = cells.get_cell("gru", hidden_size=H)
    params = layers.rnn(cell).init(jax.random.key(0), F)
    xs = jnp.ones((B, T, F))

    def jaxpr(**options):  # the hand-derived path (oneDNN, native on a CPU, has no projection)
        layer = layers.rnn(cell, backward="custom", **options)
        return str(jax.make_jaxpr(lambda p: layer.apply(p, None, xs))(params))

    assert jaxpr() == jaxpr(projection="fused") != jaxpr(projection="hoisted")
    monkeypatch.setattr(jax, "default_backend", lambda: "gpu")
    assert jaxpr() == jaxpr(projection="hoisted") != jaxpr(projection="fused")


class Recorder(layers.Tap):
    wants_steps = True

    def __init__(self):
        super().__init__()
        self.seen = []

    def steps(self, name, cell, params, carries_in, xs, carries_out, mask):
        self.seen.append(name)


def test_a_tap_is_passed_explicitly_names_the_layers_and_is_told_the_path():
    cell = cells.get_cell("lstm", hidden_size=H)
    body = layers.stack([layers.bidirectional(cell, cell), layers.rnn(cell)])
    params = body.init(jax.random.key(0), F)
    xs = jax.random.normal(jax.random.key(1), (B, T, F))
    tap = Recorder()
    plain = jax.make_jaxpr(lambda p: body.apply(p, None, xs))(params)
    tapped = jax.make_jaxpr(lambda p: body.apply(p, None, xs, tap=tap))(params)
    assert "custom_vjp" in str(plain) and "custom_vjp" not in str(tapped)
    assert tap.seen == ["layer_0/fwd", "layer_0/bwd", "layer_1"]
    assert tap.paths == {name: "sequential" for name in tap.seen}
    # the same values on both paths (the tap changes where they are computed, not what)
    np.testing.assert_allclose(body.apply(params, None, xs)[1],
                               body.apply(params, None, xs, tap=Recorder())[1], rtol=1e-5,
                               atol=1e-6)  # (the kernel computes sigmoid through tanh)
    # no tap anywhere else: a later untapped call runs the hand-derived backward again
    assert "custom_vjp" in str(jax.make_jaxpr(lambda p: body.apply(p, None, xs))(params))


def test_the_layer_and_the_config_share_one_check_spelt_for_each():
    cell = cells.get_cell("mgu", hidden_size=H)
    config = options_lib.Spelling(prefix="model.", quote=False, rate="must be in",
                                  names={"parallel": "parallel_scan"}, cell="mgu")
    bad = options_lib.Options(backward="custom")
    with pytest.raises(ValueError, match=r"^backward='custom' needs a cell with a hand-derived"):
        options_lib.check(cell, bad)
    with pytest.raises(ValueError, match=r"^model.backward=custom needs .*, not mgu; use "
                                         r"model.backward=auto"):
        options_lib.check(cell, bad, config)
    with pytest.raises(ValueError, match=r"^model.parallel_scan=True needs"):
        options_lib.check(cell, options_lib.Options(parallel=True), config)


def test_taps_hold_no_module_state():
    """A tap reaches a layer only as an argument: the module of taps keeps nothing between
    calls (the retired bridge kept the taps of `tapping` blocks in module lists)."""
    from rnnlab import recurrent
    from rnnlab.layers import taps

    for name in ("tapping", "scope", "ambient", "_TAPS", "_SCOPE"):
        assert not hasattr(taps, name) and not hasattr(layers, name), name
        assert not hasattr(recurrent, name), name
    mutable = {name for name, value in vars(taps).items() if not name.startswith("__")
               and isinstance(value, (list, dict, set, bytearray))}
    assert not mutable
