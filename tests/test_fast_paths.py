"""The engine's speed tricks against plain references: the cells' fused and
halved gates against the textbook equations, every path of the input
weights' gradient, prepared weights, and the optimiser's flat buffers."""

import numpy as np
import pytest

from rnnpipe import optim
from rnnpipe.cells import net
from rnnpipe.config import Config


def sigmoid(x):
    return 1 / (1 + np.exp(-x))


def reference_forward(config, params, X, state):
    """The textbook equations, one step and one matrix product at a time,
    with one-hot inputs (PyTorch's documented LSTM and GRU)."""
    V = params["by"].shape[0]
    H = config.hidden
    x = np.eye(V)[X]  # (T, B, V)
    hs = []
    for t in range(X.shape[0]):
        inp = x[t]
        new = []
        for layer in range(config.layers):
            Wx, Wh, b = params[f"{layer}.Wxh"], params[f"{layer}.Whh"], params[f"{layer}.bh"]
            h = state[layer][0]
            if config.cell == "rnn":
                h = np.tanh(inp @ Wx.T + h @ Wh.T + b)
                new.append((h,))
            elif config.cell == "lstm":
                c = state[layer][1]
                a = inp @ Wx.T + h @ Wh.T + b
                i, f, o, g = (
                    sigmoid(a[:, :H]),
                    sigmoid(a[:, H : 2 * H]),
                    sigmoid(a[:, 2 * H : 3 * H]),
                    np.tanh(a[:, 3 * H :]),
                )
                c = f * c + i * g
                h = o * np.tanh(c)
                new.append((h, c))
            else:
                ax, ah = inp @ Wx.T + b, h @ Wh.T
                r = sigmoid(ax[:, :H] + ah[:, :H])
                z = sigmoid(ax[:, H : 2 * H] + ah[:, H : 2 * H])
                n = np.tanh(ax[:, 2 * H :] + r * (ah[:, 2 * H :] + params[f"{layer}.bhn"]))
                h = (1 - z) * n + z * h
                new.append((h,))
            inp = h
        state = new
        hs.append(inp)
    return np.stack(hs), state


@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru"])
@pytest.mark.parametrize("layers", [1, 2])
def test_forward_matches_the_textbook_equations(cell, layers):
    config = Config(cell=cell, hidden=6, layers=layers, dtype="float64")
    rng = np.random.default_rng(4)
    V, T, B = 9, 7, 3
    params = {k: rng.standard_normal(v.shape) for k, v in net.init(config, V, rng).items()}
    X = rng.integers(0, V, (T, B))
    state = [tuple(rng.standard_normal(s.shape) for s in layer) for layer in net.zero_state(config, B)]
    hs, new_state, _ = net.forward(params, config, X, state)
    want_hs, want_state = reference_forward(config, params, X, state)
    np.testing.assert_allclose(hs, want_hs, rtol=1e-12, atol=1e-12)
    for got, want in zip(new_state, want_state, strict=True):
        for a, b in zip(got, want, strict=True):
            np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-12)
    # prepared once, as sampling does, gives the same
    prepared = net.prepare(params, config)
    again, _, _ = net.forward(params, config, X, state, prepared=prepared)
    np.testing.assert_array_equal(again, hs)


@pytest.mark.parametrize(
    "n, distinct",
    [(7, 5), (300, 40), (net.DENSE_MAX * 3, net.DENSE_MAX + 50)],
    ids=["small alphabet", "large alphabet, few in the chunk", "many distinct in the chunk"],
)
def test_input_weight_gradient_paths_agree_with_add_at(n, distinct):
    rng = np.random.default_rng(0)
    chars = rng.choice(n, distinct, replace=False)
    ix = rng.choice(chars, 2 * distinct)
    rows = rng.standard_normal((len(ix), 5))
    want = np.zeros((n, 5))
    np.add.at(want, ix, rows)
    np.testing.assert_allclose(net._scatter_columns(ix, rows, n), want.T, rtol=1e-12, atol=1e-12)


def plain_step(config, params, grads, state, t, T):
    """optim.step's arithmetic one parameter at a time, from the definitions."""
    params, state = {k: v.copy() for k, v in params.items()}, {k: v.copy() for k, v in state.items()}
    for p in params.values():  # decoupled weight decay, before the optimiser's step
        p *= 1 - config.lr * config.weight_decay
    if config.optimizer == "adagrad":
        for k, p in params.items():
            g = np.clip(grads[k], -config.clip, config.clip)
            state[f"mem.{k}"] += g * g
            p -= config.lr * g / np.sqrt(state[f"mem.{k}"] + optim.ADAGRAD_EPS)
    else:
        norm = np.sqrt(sum((g * g).sum() for g in grads.values())) / T
        scale = min(1.0, config.clip / norm) / T
        b1, b2 = optim.ADAM_BETAS
        for k, p in params.items():
            g = grads[k] * scale
            m, v = state[f"m.{k}"], state[f"v.{k}"]
            m[...] = b1 * m + (1 - b1) * g
            v[...] = b2 * v + (1 - b2) * g * g
            p -= config.lr * np.sqrt(1 - b2**t) / (1 - b1**t) * m / (np.sqrt(v) + optim.ADAM_EPS)
    return params, state


@pytest.mark.parametrize("optimizer", ["adagrad", "adam"])
@pytest.mark.parametrize("weight_decay", [0.0, 2.0])
def test_flat_optimiser_matches_the_definition_and_follows_replaced_arrays(optimizer, weight_decay):
    config = Config(cell="gru", hidden=4, optimizer=optimizer, lr=0.05, clip=0.3, dtype="float64",
                    weight_decay=weight_decay)  # fmt: skip
    rng = np.random.default_rng(1)
    params = net.init(config, 5, rng)
    state = optim.init(optimizer, params)
    for t in range(1, 5):
        grads = {k: rng.standard_normal(v.shape) for k, v in params.items()}
        want_p, want_s = plain_step(config, params, {k: g.copy() for k, g in grads.items()}, state, t, 3)
        optim.step(config, params, grads, state, t, 3)
        for k in params:
            np.testing.assert_allclose(params[k], want_p[k], rtol=1e-12, atol=1e-15)
        for k in state:
            np.testing.assert_allclose(state[k], want_s[k], rtol=1e-12, atol=1e-15)
        if t == 2:  # as loading or growing does: new arrays under the same names
            params["Why"] = params["Why"].copy()
            state = {k: v.copy() for k, v in state.items()}


def test_adam_with_weight_decay_is_torchs_adamw():
    """An independent reference: torch.optim.AdamW. With seq_length 1 and a
    clip no gradient reaches, optim.step is AdamW up to where ε sits (torch
    adds it to sqrt(v / (1 - β2^t)), rnnpipe to sqrt(v))."""
    torch = pytest.importorskip("torch")
    config = Config(cell="gru", hidden=4, lr=0.01, clip=1e9, dtype="float64", weight_decay=0.5)
    rng = np.random.default_rng(2)
    params = net.init(config, 5, rng)
    state = optim.init("adam", params)
    theirs = {k: torch.tensor(v.copy(), requires_grad=True) for k, v in params.items()}
    opt = torch.optim.AdamW(theirs.values(), lr=config.lr, betas=optim.ADAM_BETAS, eps=optim.ADAM_EPS,
                            weight_decay=config.weight_decay)  # fmt: skip
    for t in range(1, 6):
        grads = {k: rng.standard_normal(v.shape) for k, v in params.items()}
        for k, p in theirs.items():
            p.grad = torch.tensor(grads[k])
        opt.step()
        optim.step(config, params, grads, state, t, 1)
        for k, p in theirs.items():
            np.testing.assert_allclose(params[k], p.detach().numpy(), rtol=1e-6, atol=1e-7)
