"""PyTorch state dicts to and from rnnlab layers, against a float64 NumPy implementation of the
equations in PyTorch's documentation of nn.RNN, nn.LSTM and nn.GRU (multi-layer,
bidirectional). torch itself is not needed: the state dicts are NumPy arrays with its key
names and shapes. (Flax's cells: tests/test_cells.py runs them against `interop.from_flax`.)"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from rnnlab import interop

B, T, F, H = 3, 5, 4, 6


def sigmoid(v):
    return 1 / (1 + np.exp(-v))


def torch_step(kind, w, x, h, c, nonlinearity):
    """One step of PyTorch's documented equations (W [gates*H, in], biases [gates*H])."""
    gi = x @ w["weight_ih"].T + w.get("bias_ih", 0.0)
    gh = h @ w["weight_hh"].T + w.get("bias_hh", 0.0)
    if kind == "rnn":
        h = np.tanh(gi + gh) if nonlinearity == "tanh" else np.maximum(gi + gh, 0.0)
        return h, c
    if kind == "lstm":
        i, f, g, o = np.split(gi + gh, 4, axis=-1)
        c = sigmoid(f) * c + sigmoid(i) * np.tanh(g)
        return sigmoid(o) * np.tanh(c), c
    i_r, i_z, i_n = np.split(gi, 3, axis=-1)
    h_r, h_z, h_n = np.split(gh, 3, axis=-1)
    r, z = sigmoid(i_r + h_r), sigmoid(i_z + h_z)
    n = np.tanh(i_n + r * h_n)
    return (1 - z) * n + z * h, c


def torch_reference(state_dict, kind, xs, nonlinearity="tanh"):
    """A PyTorch module's output [B, T, D*H] for batch-first xs, from zero initial states."""
    sd = {k: np.asarray(v, np.float64) for k, v in state_dict.items()}
    layers = 1 + max(int(k.split("_l")[1].split("_")[0]) for k in sd)
    directions = ("", "_reverse") if any(k.endswith("_reverse") for k in sd) else ("",)
    inputs = np.asarray(xs, np.float64)
    for i in range(layers):
        outs = []
        for suffix in directions:
            w = {name: sd[f"{name}_l{i}{suffix}"] for name in
                 ("weight_ih", "weight_hh", "bias_ih", "bias_hh") if f"{name}_l{i}{suffix}" in sd}
            hidden = w["weight_hh"].shape[1]
            h, c = np.zeros((len(inputs), hidden)), np.zeros((len(inputs), hidden))
            order = range(T) if not suffix else reversed(range(T))
            ys = [None] * T
            for t in order:
                h, c = torch_step(kind, w, inputs[:, t], h, c, nonlinearity)
                ys[t] = h
            outs.append(np.stack(ys, 1))
        inputs = np.concatenate(outs, -1)
    return inputs


def state_dict(kind, layers, bidirectional, bias=True, seed=0):
    rng = np.random.default_rng(seed)
    G = interop.GATES[kind]
    sd, size = {}, F
    for i in range(layers):
        for suffix in ("", "_reverse") if bidirectional else ("",):
            sd[f"weight_ih_l{i}{suffix}"] = 0.5 * rng.standard_normal((G * H, size))
            sd[f"weight_hh_l{i}{suffix}"] = 0.5 * rng.standard_normal((G * H, H))
            if bias:
                sd[f"bias_ih_l{i}{suffix}"] = 0.5 * rng.standard_normal(G * H)
                sd[f"bias_hh_l{i}{suffix}"] = 0.5 * rng.standard_normal(G * H)
        size = H * (2 if bidirectional else 1)
    return {k: v.astype(np.float32) for k, v in sd.items()}


CASES = [("rnn", "tanh", 2, False, True), ("rnn", "relu", 1, True, True),
         ("lstm", "tanh", 2, True, True), ("lstm", "tanh", 1, False, False),
         ("gru", "tanh", 2, True, True), ("gru", "tanh", 3, False, True)]


@pytest.mark.parametrize("kind,nonlinearity,layers,bidirectional,bias", CASES)
def test_from_torch_computes_what_the_torch_module_computes_and_to_torch_goes_back(
        kind, nonlinearity, layers, bidirectional, bias):
    sd = state_dict(kind, layers, bidirectional, bias)
    xs = np.random.default_rng(9).standard_normal((B, T, F)).astype(np.float32)
    want = torch_reference(sd, kind, xs, nonlinearity)
    layer, params = interop.from_torch(sd, kind=kind, nonlinearity=nonlinearity)
    assert len(params) == layers and ("fwd" in params["layer_0"]) == bidirectional
    assert layer.output_size == H * (2 if bidirectional else 1)
    _, ys = jax.jit(lambda p: layer.apply(p, None, jnp.asarray(xs)))(params)
    np.testing.assert_allclose(ys, want, atol=2e-5, rtol=2e-5)
    back = interop.to_torch(params, kind=kind)
    assert set(back) == set(state_dict(kind, layers, bidirectional, True))
    assert all(back[k].shape == v.shape for k, v in sd.items())
    np.testing.assert_allclose(torch_reference(back, kind, xs, nonlinearity), want, atol=2e-5)


def test_from_torch_reads_tensors_and_refuses_what_is_not_its_kind():
    class Tensor:  # what from_torch uses of a torch tensor
        def __init__(self, a):
            self.a = a

        def detach(self):
            return self

        def cpu(self):
            return self

        def numpy(self):
            return self.a

    sd = state_dict("gru", 1, False)
    _, params = interop.from_torch({k: Tensor(v) for k, v in sd.items()}, kind="gru")
    np.testing.assert_array_equal(params["layer_0"]["cell"]["w_x"], sd["weight_ih_l0"].T)
    with pytest.raises(ValueError, match=r"not an nn.LSTM \(4 gate blocks of H rows\); is `kind`"):
        interop.from_torch(sd, kind="lstm")
    with pytest.raises(ValueError, match="'weight_hr_l0' is not one of an nn.LSTM without "
                                         "projections"):
        interop.from_torch({**state_dict("lstm", 1, False), "weight_hr_l0": np.zeros((2, H))},
                           kind="lstm")
    with pytest.raises(ValueError, match="unknown kind 'transformer'"):
        interop.from_torch(sd, kind="transformer")
    with pytest.raises(ValueError, match="no weights of layer 1"):
        interop.from_torch({**sd, "bias_ih_l1": sd["bias_ih_l0"]}, kind="gru")


def test_from_flax_refuses_what_is_not_such_a_cell():
    with pytest.raises(ValueError, match="not the params of a Flax GRUCell: no 'hn'"):
        interop.from_flax({"ir": {"kernel": np.zeros((2, 2))}}, cell="GRUCell")
    with pytest.raises(ValueError, match="unknown Flax cell 'LSTM'"):
        interop.from_flax({}, cell="LSTM")
