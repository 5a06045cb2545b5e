"""What the network does at each character of a text: the probability it
gave the character, its top guesses, and the activation of every unit.

This is the core under `rnnpipe show`, `rnnpipe neurons` and the notebook's
%charrnn_show (the pages are built in show.py). The text is read the way
`rnnpipe eval` reads it (evaluate.py), as one continuous stream from the
zero state: each character is predicted from all the characters before it.
Characters the model has never seen are skipped, as eval skips them: they
are neither predicted nor part of any context, and the state does not
change at them. The first character the model knows has nothing before it,
so it is not predicted either. So the mean surprise over the characters
scored here is eval's bits per character for the same text (up to eval's
tolerance, TOL in evaluate.py).

Unlike eval, which reads many parts of a text side by side, this reads one
step after another and keeps every step, so it is for texts of a page or a
few, not for corpora: the callers cap their input (show.MAX_CHARS,
features.MAX_CHARS). It runs in float64 whatever the model's dtype, as
sampling does, so a text gives the same picture on any machine.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ..cells import net
from ..errors import SettingError

TOP = 5  # guesses kept per character
CHUNK = 256  # characters per forward call: long enough to amortise, short enough to keep memory flat


@dataclass
class Trace:
    """Per character of `text` (arrays of len(text) rows):

    known: whether the model has the character in its vocabulary
    scored: whether it was predicted (known, and not the first known one)
    prob: the probability the model gave it (NaN where not scored)
    bits: its surprise, -log2(prob) (NaN where not scored)
    top, top_prob: the model's TOP likeliest characters at that position,
        as vocabulary indices, and their probabilities (-1 and NaN where not scored)
    units: {layer: (len(text), hidden) activations after reading the
        character} for the layers asked for (see the cells' units(): tanh of
        the cell state for an LSTM, the hidden state for a GRU or an RNN); at
        an unknown character, the state the stream is in (unchanged there)
    """

    text: str
    known: np.ndarray
    scored: np.ndarray
    prob: np.ndarray
    bits: np.ndarray
    top: np.ndarray
    top_prob: np.ndarray
    units: dict

    @property
    def chars(self):
        """Characters scored."""
        return int(self.scored.sum())

    @property
    def unknown(self):
        return int((~self.known).sum())

    @property
    def bits_per_char(self):
        """Mean surprise of the characters scored (eval's number); NaN when none was."""
        return float(self.bits[self.scored].mean()) if self.chars else math.nan


def check_unit(config, layer, unit):
    """SettingError for a layer or unit the model does not have."""
    if not 0 <= layer < config.layers:
        have = f"the model has {config.layers} layer(s), 0 to {config.layers - 1}"
        raise SettingError("layer", layer, f"{{name}} {{value}} is out of range: {have}")
    if unit is not None and not 0 <= unit < config.hidden:
        have = f"the model has {config.hidden} units per layer, 0 to {config.hidden - 1}"
        raise SettingError("unit", unit, f"{{name}} {{value}} is out of range: {have}")


def trace(config, vocab, params, text, layers=(), top=TOP):
    """The Trace of text under the model; `layers` lists the layers whose
    unit activations to keep (none by default: they cost memory)."""
    if not len(vocab):
        raise ValueError("the model has not seen any text yet")
    for layer in layers:
        check_unit(config, layer, None)
    N, V, H = len(text), len(vocab), config.hidden
    ix = vocab.encode(text)
    known = ix >= 0
    where = np.flatnonzero(known)  # positions of the known characters, in order
    kix = ix[where]
    K = min(top, V)

    prob = np.full(N, np.nan)
    top_ix = np.full((N, top), -1, np.int64)
    top_p = np.full((N, top), np.nan)
    acts = {layer: np.zeros((N, H), np.float32) for layer in layers}
    known_acts = {layer: np.zeros((len(kix), H), np.float32) for layer in layers}

    p64 = {k: v.astype(np.float64) for k, v in params.items()}
    cfg = config.replace(dtype="float64")
    prepared = net.prepare(p64, cfg)  # the weights arranged once for the whole text
    cell = net.CELLS[config.cell]
    state = net.zero_state(cfg, 1)
    for start in range(0, len(kix), CHUNK):
        X = kix[start : start + CHUNK].reshape(-1, 1)
        hs, state, caches = net.forward(p64, cfg, X, state, prepared=prepared)
        for layer in layers:
            known_acts[layer][start : start + len(X)] = cell.units(caches[layer][3])[:, 0, :]
        # what the model expects after each character: the prediction of the next known one
        logp = net.log_softmax(net.logits(p64, hs))
        nxt = np.arange(start + 1, start + 1 + len(X))
        ok = nxt < len(kix)
        rows, targets = np.flatnonzero(ok), kix[nxt[ok]]
        at = where[nxt[ok]]  # text positions of the characters predicted
        prob[at] = np.exp(logp[rows, targets])
        best = np.argsort(-logp[rows], axis=1, kind="stable")[:, :K]  # ties: the earlier vocabulary entry first
        top_ix[at, :K] = best
        top_p[at, :K] = np.exp(np.take_along_axis(logp[rows], best, axis=1))

    scored = ~np.isnan(prob)
    with np.errstate(divide="ignore"):
        bits = -np.log2(prob)  # NaN stays NaN; a probability that underflowed to 0 is inf bits
    for layer in layers:
        # an unknown character leaves the state as it was: repeat the activation before it
        last = np.maximum.accumulate(np.where(known, np.arange(N), -1))
        rank = np.cumsum(known) - 1  # index among the known characters of the last known one
        a = acts[layer]
        has = last >= 0
        a[has] = known_acts[layer][rank[has]]
        acts[layer] = a
    return Trace(text, known, scored, prob, bits, top_ix, top_p, acts)
