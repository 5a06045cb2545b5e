"""Finite-difference checks of every cell's backward pass (float64)."""

import numpy as np
import pytest

from rnnpipe.cells import net
from rnnpipe.config import Config

V, T, B = 7, 5, 3


def relative_error(a, b):
    """Worst of the whole array's relative error and each sizeable entry's.

    Entries below 1e-4 are judged only through the array's norm: central
    differences of a loss near 10 carry about 1e-10 of rounding noise, which
    is a large relative error on a gradient of 1e-6 however right it is.
    """
    whole = np.linalg.norm(a - b) / max(np.linalg.norm(a) + np.linalg.norm(b), 1e-12)
    big = np.abs(b) > 1e-4
    each = (np.abs(a - b)[big] / (np.abs(a) + np.abs(b))[big]).max(initial=0.0)
    return max(whole, each)


def check(config, seed=0):
    rng = np.random.default_rng(seed)
    params = net.init(config, V, rng)
    # larger weights than the init so every nonlinearity is exercised
    for k in params:
        params[k] = rng.standard_normal(params[k].shape) * 0.5
    X = rng.integers(0, V, (T, B))
    Y = rng.integers(0, V, (T, B))
    state = [tuple(rng.standard_normal(s.shape) * 0.5 for s in layer) for layer in net.zero_state(config, B)]

    def f():
        # a fresh generator each call: the same dropout mask every time
        return net.loss(params, config, X, Y, state, np.random.default_rng(1))[0]

    _, grads, _ = net.loss(params, config, X, Y, state, np.random.default_rng(1))
    assert set(grads) == set(params)
    eps = 1e-5
    worst = {}
    for name, p in params.items():
        assert grads[name].shape == p.shape, name
        numeric = np.zeros_like(p)
        for i in np.ndindex(p.shape):
            old = p[i]
            p[i] = old + eps
            up = f()
            p[i] = old - eps
            down = f()
            p[i] = old
            numeric[i] = (up - down) / (2 * eps)
        worst[name] = relative_error(grads[name], numeric)
    return worst


@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru"])
@pytest.mark.parametrize("layers", [1, 2])
def test_every_parameter(cell, layers):
    config = Config(cell=cell, hidden=4, layers=layers, dtype="float64")
    worst = check(config)
    assert max(worst.values()) < 1e-5, worst


@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru"])
def test_with_dropout_between_layers(cell):
    config = Config(cell=cell, hidden=4, layers=3, dropout=0.3, dtype="float64")
    worst = check(config, seed=2)
    assert max(worst.values()) < 1e-5, worst


def test_repeated_inputs_accumulate_in_wxh():
    # every input the same character: all gradient lands in one column of 0.Wxh
    config = Config(cell="rnn", hidden=3, dtype="float64")
    rng = np.random.default_rng(0)
    params = net.init(config, V, rng)
    X = np.full((T, B), 2)
    Y = rng.integers(0, V, (T, B))
    _, grads, _ = net.loss(params, config, X, Y, net.zero_state(config, B))
    g = grads["0.Wxh"]
    assert np.abs(g[:, 2]).sum() > 0
    assert np.all(g[:, [0, 1, 3, 4, 5, 6]] == 0)
