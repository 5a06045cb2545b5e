"""Simple features of a text, and the units whose activations follow them.

Karpathy, Johnson and Fei-Fei ("Visualizing and Understanding Recurrent
Networks", 2015) found LSTM cells that track quotes, brackets and the
position in a line. `rnnpipe neurons` looks for such units: each feature is
a number per character, computed here from the text alone, and each unit is
ranked by the correlation of its activation (trace.py) with it. Every
feature describes where the reader is after reading the character, as the
activation does.
"""

from __future__ import annotations

import numpy as np

MAX_CHARS = 50_000  # characters of text `rnnpipe neurons` reads at most (trace.py keeps every step)

OPENING_QUOTES, CLOSING_QUOTES = "\u201c", "\u201d"  # “ and ”; a straight " opens and closes in turn
OPENING_BRACKETS, CLOSING_BRACKETS = "([{", ")]}"

# name -> what it is, in the table's words
FEATURES = {
    "quote": 'inside double quotes (" or \u201c \u201d)',
    "bracket": "inside parentheses, brackets or braces",
    "column": "position in the line (characters since the last newline)",
    "word-start": "the first character of a word",
    "newline": "just after a newline (the character is a newline)",
}


def features(text):
    """{name: float array of len(text)}, one per FEATURES entry."""
    N = len(text)
    quote = np.zeros(N)
    bracket = np.zeros(N)
    column = np.zeros(N)
    word_start = np.zeros(N)
    newline = np.zeros(N)
    inside, depth, col, prev_word = False, 0, 0, False
    for t, c in enumerate(text):
        # quotes: the quote marks count as inside from the opening one to
        # before the closing one, so the feature changes where the reader learns it does
        if c == '"':
            inside = not inside
        elif c in OPENING_QUOTES:
            inside = True
        elif c in CLOSING_QUOTES:
            inside = False
        quote[t] = inside
        if c in OPENING_BRACKETS:
            depth += 1
        elif c in CLOSING_BRACKETS:
            depth = max(depth - 1, 0)  # a stray closing bracket does not go below zero
        bracket[t] = depth > 0
        col = 0 if c == "\n" else col + 1
        column[t] = col
        word = c.isalnum()
        word_start[t] = word and not prev_word
        prev_word = word
        newline[t] = c == "\n"
    return {"quote": quote, "bracket": bracket, "column": column, "word-start": word_start, "newline": newline}


def correlations(acts, feature, mask=None):
    """Pearson correlation of each column of acts (time, units) with feature
    (time,), over the rows where mask is true; 0 for a unit that does not
    vary (it tracks nothing). None when the feature does not vary there."""
    if mask is not None:
        acts, feature = acts[mask], feature[mask]
    f = feature - feature.mean()
    if len(f) < 2 or not np.any(f):
        return None
    a = acts.astype(np.float64) - acts.mean(axis=0)
    norm = np.sqrt((a * a).sum(axis=0)) * np.sqrt((f * f).sum())
    with np.errstate(invalid="ignore", divide="ignore"):
        r = (f @ a) / norm
    return np.where(norm > 0, r, 0.0)


def rank(trace, top):
    """The `top` units with the largest |correlation| for each feature of
    trace.text, over the characters the model knows: a list of (feature,
    layer, unit, correlation), feature by feature, strongest first; and the
    features that do not vary in the text (nothing to correlate with)."""
    feats = features(trace.text)
    rows, flat = [], []
    for name, f in feats.items():
        found = []
        for layer, acts in sorted(trace.units.items()):
            r = correlations(acts, f, trace.known)
            if r is None:
                break
            found += [(abs(v), layer, unit, float(v)) for unit, v in enumerate(r)]
        if not found:
            flat.append(name)
            continue
        # strongest first; ties by layer, then unit, so the table is stable
        found.sort(key=lambda x: (-x[0], x[1], x[2]))
        rows += [(name, layer, unit, v) for _, layer, unit, v in found[:top]]
    return rows, flat
