"""Scoring held-out text: bits per character without training."""

import math
from dataclasses import dataclass

import numpy as np

from . import net


@dataclass
class Evaluation:
    bits_per_char: float  # cross-entropy in bits per scored character
    nats_per_char: float
    perplexity: float
    chars: int  # characters scored (predicted)
    unknown: int  # characters skipped because the model has never seen them

    def to_dict(self):
        return dict(self.__dict__)


def loss_sum(config, params, ix, streams=32, chunk=256):
    """Total nats of predicting ix[1:] from ix[:-1], in parallel streams that
    each start from a zero state; returns (nats, characters scored)."""
    n = len(ix) - 1
    if n < 1:
        return 0.0, 0
    B = max(1, min(streams, n // chunk))
    L = n // B
    total = 0.0
    starts = np.arange(B) * L
    state = net.zero_state(config, B)
    for p in range(0, L, chunk):
        t = min(chunk, L - p)
        pos = starts[None, :] + np.arange(p, p + t)[:, None]
        hs, state, _ = net.forward(params, config, ix[pos], state)
        logp = net.log_softmax(net.logits(params, hs))
        total -= float(logp[np.arange(t * B), ix[pos + 1].reshape(-1)].sum(dtype=np.float64))
    scored = B * L
    if scored < n:  # the few characters past the last full stream
        rest, k = loss_sum(config, params, ix[scored:], 1, chunk)
        total, scored = total + rest, scored + k
    return total, scored


def evaluate(config, vocab, params, text):
    ix = vocab.encode(text)
    known = ix[ix >= 0]
    nats, chars = loss_sum(config, params, known)
    if chars == 0:
        raise ValueError("nothing to score: the text needs at least two characters the model knows")
    per = nats / chars
    return Evaluation(per / math.log(2), per, math.exp(per), chars, int(len(ix) - len(known)))
