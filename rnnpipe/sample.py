"""Generating text one character at a time."""

import math

import numpy as np

from . import net


def _pick(logits, temperature, top_k, rng):
    if temperature == 0:
        return int(np.argmax(logits))
    # an infinite temperature flattens every logit to 0: uniform
    z = logits / temperature if math.isfinite(temperature) else np.zeros_like(logits)
    if top_k and top_k < len(z):
        # keep the k largest; ties at the cut-off are kept too
        cut = np.partition(z, -top_k)[-top_k]
        z = np.where(z >= cut, z, -np.inf)
    p = np.exp(z - z.max())
    cdf = np.cumsum(p)
    # one uniform draw per character keeps a seed's output easy to reproduce
    return int(min(np.searchsorted(cdf, rng.random() * cdf[-1], side="right"), len(cdf) - 1))


def start_char(vocab):
    """The input an unprimed sample starts from. Training carries state from
    chunk to chunk, so a zero state is rare there; after a space it is least
    strange (after a newline the seed's RNN wanders into rare capitals)."""
    for c in (" ", "\n"):
        if c in vocab:
            return c
    return vocab.chars[0]


def check(n, temperature, top_k, seed):
    """Raise ValueError for sampling options that mean nothing."""
    if isinstance(n, bool) or not isinstance(n, int) or n < 0:
        raise ValueError(f"n must be 0 (no end) or more characters, not {n!r}")
    if not (isinstance(temperature, (int, float)) and temperature >= 0):  # NaN fails too
        raise ValueError(f"temperature must be 0 or more, not {temperature!r}")
    if top_k is not None and (isinstance(top_k, bool) or not isinstance(top_k, int) or top_k < 1):
        raise ValueError(f"top_k must be at least 1, not {top_k!r}")
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int) or seed < 0):
        raise ValueError(f"seed must be 0 or more, not {seed!r}")


def generate(
    config,
    vocab,
    params,
    n,
    prime="",
    temperature=1.0,
    top_k=None,
    seed=None,
    state=None,
    skip_unknown=False,
    forward=None,
):
    """Yield n characters (forever when n is 0), conditioned on prime.

    Runs in float64 whatever the model's dtype, so a seed gives the same text
    on any machine. Without a prime the model starts as if after a space.
    `state` (one stream's, per layer) continues from a state instead of zero,
    as the seed samples from its training state. A prime with characters the
    model has never seen is refused, or with skip_unknown conditions on the
    rest of it. A temperature below 1e-30 counts as 0 (dividing by it would
    overflow); an infinite one samples uniformly. `forward`, when given,
    computes instead of net.py: (indices (time, 1), state or None) -> (the
    last step's logits, float64 numpy, and the state after); the torch
    engine's (torchnet.Engine.forward64).
    """
    check(n, temperature, top_k, seed)
    if not len(vocab):
        raise ValueError("the model has not seen any text yet")
    unknown = vocab.missing(prime)
    if unknown and skip_unknown:
        prime = "".join(c for c in prime if c not in unknown)
    elif unknown:
        raise ValueError(
            "the prime has characters the model has never seen: "
            + " ".join(repr(c) for c in unknown)
            + " (--skip-unknown leaves them out)"
        )
    if temperature < 1e-30:
        temperature = 0.0
    rng = np.random.default_rng(seed)
    if forward is None:
        forward = _numpy_forward(config, params)
        if state is None:
            state = net.zero_state(config.replace(dtype="float64"), 1)
    if state is not None:
        state = [tuple(s.astype(np.float64) for s in layer) for layer in state]
    context = vocab.encode(prime or start_char(vocab))
    # condition on all of the prime but its last character in one chunk
    if len(context) > 1:
        _, state = forward(context[:-1].reshape(-1, 1), state)
    ix = int(context[-1])
    produced = 0
    while n == 0 or produced < n:
        logits, state = forward(np.array([[ix]]), state)
        ix = _pick(logits, temperature, top_k, rng)
        produced += 1
        yield vocab.chars[ix]


def _numpy_forward(config, params):
    """generate's forward on net.py, in float64."""
    p64 = {k: v.astype(np.float64) for k, v in params.items()}
    cfg = config.replace(dtype="float64")
    # the weights rearranged for the recurrence once, not once per character
    prepared = net.prepare(p64, cfg)

    def forward(X, state):
        hs, state, _ = net.forward(p64, cfg, X, state, prepared=prepared)
        return net.logits(p64, hs[-1:])[0], state

    return forward
