"""Generating text one character at a time."""

import numpy as np

from . import net


def _pick(logits, temperature, top_k, rng):
    if temperature == 0:
        return int(np.argmax(logits))
    z = logits / temperature
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


def generate(config, vocab, params, n, prime="", temperature=1.0, top_k=None, seed=None, state=None):
    """Yield n characters (forever when n is 0), conditioned on prime.

    Runs in float64 whatever the model's dtype, so a seed gives the same text
    on any machine. Without a prime the model starts as if after a space.
    `state` (one stream's, per layer) continues from a state instead of zero,
    as the seed samples from its training state.
    """
    if not len(vocab):
        raise ValueError("the model has not seen any text yet")
    unknown = vocab.missing(prime)
    if unknown:
        raise ValueError("the prime has characters the model has never seen: " + " ".join(repr(c) for c in unknown))
    rng = np.random.default_rng(seed)
    p64 = {k: v.astype(np.float64) for k, v in params.items()}
    cfg = config.replace(dtype="float64")
    if state is None:
        state = net.zero_state(cfg, 1)
    else:
        state = [tuple(s.astype(np.float64) for s in layer) for layer in state]
    # the weights rearranged for the recurrence once, not once per character
    prepared = net.prepare(p64, cfg)
    context = vocab.encode(prime or start_char(vocab))
    # condition on all of the prime but its last character in one chunk
    if len(context) > 1:
        _, state, _ = net.forward(p64, cfg, context[:-1].reshape(-1, 1), state, prepared=prepared)
    ix = int(context[-1])
    produced = 0
    while n == 0 or produced < n:
        hs, state, _ = net.forward(p64, cfg, np.array([[ix]]), state, prepared=prepared)
        ix = _pick(net.logits(p64, hs)[0], temperature, top_k, rng)
        produced += 1
        yield vocab.chars[ix]
