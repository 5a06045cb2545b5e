"""Generating text one character at a time."""

import math

import numpy as np

from .cells import net
from .errors import SettingError


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
    """Raise SettingError for sampling options that mean nothing."""
    if isinstance(n, bool) or not isinstance(n, int) or n < 0:
        raise SettingError("n", n, "{name} must be 0 (no end) or more characters, not {value}")
    if not (isinstance(temperature, (int, float)) and temperature >= 0):  # NaN fails too
        raise SettingError("temperature", temperature, "{name} must be 0 or more, not {value}")
    if top_k is not None and (isinstance(top_k, bool) or not isinstance(top_k, int) or top_k < 1):
        raise SettingError("top_k", top_k, "{name} must be at least 1, not {value}")
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int) or seed < 0):
        raise SettingError("seed", seed, "{name} must be 0 or more, not {value}")


def _usable_prime(vocab, prime, skip_unknown):
    """The prime to condition on: refused (ValueError) with characters the
    model has never seen, or with skip_unknown used without them."""
    if not len(vocab):
        raise ValueError("the model has not seen any text yet")
    unknown = vocab.missing(prime)
    if unknown and skip_unknown:
        return "".join(c for c in prime if c not in unknown)
    if unknown:
        raise ValueError(
            "the prime has characters the model has never seen: "
            + " ".join(repr(c) for c in unknown)
            + " (--skip-unknown leaves them out)"
        )
    return prime


def _start(config, vocab, params, prime, skip_unknown, state, chunk=None):
    """What beam search starts from: the weights in float64, the state after
    all of the prime but its last character, and that last character's index
    (the next input)."""
    prime = _usable_prime(vocab, prime, skip_unknown)
    p64 = {k: v.astype(np.float64) for k, v in params.items()}
    cfg = config.replace(dtype="float64")
    if state is None:
        state = net.zero_state(cfg, 1)
    else:
        state = [tuple(s.astype(np.float64) for s in layer) for layer in state]
    # the weights rearranged for the recurrence once, not once per character
    prepared = net.prepare(p64, cfg)
    context = vocab.encode(prime or start_char(vocab))
    # condition on all of the prime but its last character
    state = condition(lambda X, s: net.forward(p64, cfg, X, s, prepared=prepared)[1], context[:-1], state, chunk)
    return p64, cfg, prepared, state, int(context[-1])


PRIME_CHUNK = 4096  # characters of a prime run through the network at once


def condition(step, ix, state, chunk=None):
    """The state after the indices ix, from state: step(X (time, 1), state)
    gives the state after X. In chunks of PRIME_CHUNK (or fewer, `chunk`:
    what the machine's memory allows for a large model, plan.prime_chunk),
    so that a long prime's activations are never all held at once (238 KB
    of prime took 2.8 GB in one chunk)."""
    chunk = PRIME_CHUNK if chunk is None else min(chunk, PRIME_CHUNK)
    for start in range(0, len(ix), chunk):
        state = step(ix[start : start + chunk].reshape(-1, 1), state)
    return state


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
    chunk=None,
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
    engine's (torchnet.Engine.forward64). `chunk`: at most this many
    characters of the prime at once (condition).
    """
    check(n, temperature, top_k, seed)
    if temperature < 1e-30:
        temperature = 0.0
    rng = np.random.default_rng(seed)
    prime = _usable_prime(vocab, prime, skip_unknown)
    if forward is None:
        forward = _numpy_forward(config, params)
        if state is None:
            state = net.zero_state(config.replace(dtype="float64"), 1)
    if state is not None:
        state = [tuple(s.astype(np.float64) for s in layer) for layer in state]
    context = vocab.encode(prime or start_char(vocab))
    # condition on all of the prime but its last character
    state = condition(lambda X, s: forward(X, s)[1], context[:-1], state, chunk)
    ix = int(context[-1])
    produced = 0
    while n == 0 or produced < n:
        logits, state = forward(np.array([[ix]]), state)
        ix = _pick(logits, temperature, top_k, rng)
        produced += 1
        yield vocab.chars[ix]


MAX_LAG = 256  # characters beam search may hold back before it commits to the likeliest beam's


def beam_search(config, vocab, params, n, prime="", width=4, skip_unknown=False, state=None, chunk=None):
    """Yield the likeliest n characters after prime that a beam search of
    `width` finds (forever when n is 0): at each character every beam is
    extended by every character of the vocabulary and the `width` likeliest
    texts so far are kept. width 1 is greedy decoding (temperature 0).

    Characters are yielded as soon as every beam agrees on them, so the text
    streams; a character still in dispute MAX_LAG characters back is settled
    for the likeliest beam, and the beams that disagree are dropped, so an
    endless search (n = 0) never holds text back for long. The rest of the
    likeliest beam is yielded at the end. Ties go to the earlier beam, then
    to the earlier character of the vocabulary, so the result is the same
    everywhere."""
    if isinstance(width, bool) or not isinstance(width, int) or width < 1:
        raise ValueError(f"beam must be at least 1, not {width!r}")
    check(n, 1.0, None, None)
    p64, cfg, prepared, state, ix = _start(config, vocab, params, prime, skip_unknown, state, chunk)
    V = len(vocab)
    scores = np.zeros(1)  # log probability of each beam's text, likeliest first
    inputs = np.array([ix])
    pending = [[]]  # each beam's characters not yet yielded (vocabulary indices)
    produced = 0
    while n == 0 or produced < n:
        hs, state, _ = net.forward(p64, cfg, inputs[None, :], state, prepared=prepared)
        total = (scores[:, None] + net.log_softmax(net.logits(p64, hs))).ravel()
        order = np.argsort(-total, kind="stable")[:width]  # stable: ties keep beam, then character, order
        parent, inputs = np.divmod(order, V)
        scores = total[order]
        state = [tuple(s[parent] for s in layer) for layer in state]
        pending = [pending[p] + [int(c)] for p, c in zip(parent, inputs, strict=True)]
        produced += 1
        while pending[0] and all(len(p) and p[0] == pending[0][0] for p in pending):
            c = pending[0][0]
            pending = [p[1:] for p in pending]
            yield vocab.chars[c]
        if len(pending[0]) > MAX_LAG:
            c = pending[0][0]
            keep = np.array([i for i, p in enumerate(pending) if p[0] == c])
            scores, inputs = scores[keep], inputs[keep]
            state = [tuple(s[keep] for s in layer) for layer in state]
            pending = [pending[i][1:] for i in keep]
            yield vocab.chars[c]
    for c in pending[0]:
        yield vocab.chars[c]


def stop_after(chars, lines=None, until=None):
    """The characters of `chars` up to and including the lines-th newline
    or the end of the first occurrence of `until` in them, whichever comes
    first (all of them when neither comes)."""
    newlines, tail = 0, ""
    for c in chars:
        yield c
        if lines is not None and c == "\n":
            newlines += 1
            if newlines >= lines:
                return
        if until:
            tail = (tail + c)[-len(until) :]
            if tail == until:
                return


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
