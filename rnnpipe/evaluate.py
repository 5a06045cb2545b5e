"""Scoring held-out text: bits per character without training.

A text's score is that of reading it as one continuous stream: each
character after the first is predicted from all the characters before it,
the network's state carried from the start (tests/test_eval.py checks it
against exactly that, one step per character). One step at a time is slow in
numpy, so the Scorer reads many parts of the text side by side and makes sure
each part starts from the state the stream has there:

- The text is cut into segments of SEGMENT characters by position; STREAMS
  consecutive segments make a window, read together as a batch. (The text's
  last window is cut into up to STREAMS equal segments of at least
  MIN_SEGMENT.)
- A window's first segment starts from the stream's state: the zero state at
  the start of the text, else the state the previous window ended in. The
  others start from a guess (that same state) and are read as well.
- Then every segment whose start is not where its predecessor ended is read
  again from there, CHUNK characters at a time, until its state agrees with
  the earlier reading's to within TOL in every unit; from there on the
  earlier reading's predictions stand (the two have converged: a network
  forgets where it started). A segment that does not converge before its end
  moves where its successor starts, so rounds of this repeat until every
  start agrees. Each round settles at least one more segment, so it ends, at
  worst after reading the window as one stream would.

So the score is the one-stream score up to states that differ by less than
TOL (measured: within 1e-5 bits per character). What it costs depends on how
fast the model forgets: a model whose state converges within a few hundred
characters is read about once; one whose state remembers thousands of
characters back takes a few readings, still several times faster than one
stream.

Where the segments fall depends only on the characters' positions, and what
is computed only on the text, so a text's score is the same, bit for bit,
whether it arrives whole or in pieces of any size (a file, a pipe, a slow
writer), and memory is bounded by a window whatever the length of the text.

Characters the model has never seen are skipped: they are removed before
scoring, so they are neither predicted nor part of any context, and the
character after one is predicted from the known characters before it, as if
the unknown one were not there. They are counted (Evaluation.unknown).
"""

import math
from dataclasses import dataclass

import numpy as np

from .cells import net

STREAMS = 32  # segments scored side by side: one window
SEGMENT = 8192  # characters (predictions) per segment
MIN_SEGMENT = 1024  # the shortest segment the text's last window is cut into
CHUNK = 64  # time steps per forward call, and between comparisons of states
TOL = 1e-3  # states this close (largest difference of any unit) count as the same


@dataclass
class Evaluation:
    bits_per_char: float  # cross-entropy in bits per scored character
    nats_per_char: float
    perplexity: float
    chars: int  # characters scored (predicted)
    unknown: int  # characters skipped because the model has never seen them

    def to_dict(self):
        return dict(self.__dict__)


class Scorer:
    """Total nats of predicting each known character from all the known
    characters before it, for indices fed in pieces of any size (feed), in
    order; finish() gives (nats, characters scored). See the module's
    docstring for how, and why the result does not depend on the pieces."""

    def __init__(
        self, config, params, *, streams=STREAMS, segment=SEGMENT, min_segment=MIN_SEGMENT, chunk=CHUNK, tol=TOL
    ):  # fmt: skip
        if not (streams >= 1 and segment >= min_segment >= 1 and chunk >= 1 and tol >= 0):
            raise ValueError("need streams, chunk >= 1, segment >= min_segment >= 1 and tol >= 0")
        self.config, self.params = config, params
        self.streams, self.segment, self.min_segment = streams, segment, min_segment
        self.chunk, self.tol = chunk, tol
        self.prepared = net.prepare(params, config)
        self.work = [{} for _ in range(config.layers)]  # reused arrays, see workspace.py
        self.buf = np.empty(0, np.int64)  # the text from position self.offset on
        self.offset = 0  # (at most self.done: what is before it has been read)
        self.pending, self.pending_len = [], 0  # pieces fed, not yet joined to buf
        self.done = 0  # predictions made: of the characters at positions 1 .. done
        self.state = None  # the stream's state after reading positions < done, flat (None: zero)
        self.nats, self.chars = 0.0, 0
        self.reread = 0  # steps read again to correct a guessed state (for measurements)
        self.steps = 0  # forward steps, each of a batch of segments (for measurements)
        zero = net.zero_state(config, 1)
        self.widths = [[a.shape[1] for a in layer] for layer in zero]

    def feed(self, ix):
        """Append indices (all known to the model) and score every window
        that is complete."""
        ix = np.asarray(ix, np.int64)
        if not len(ix):
            return
        self.pending.append(ix)
        self.pending_len += len(ix)
        window = self.streams * self.segment
        # a window of predictions needs the character after it as target
        while self.offset + len(self.buf) + self.pending_len >= self.done + window + 1:
            self._join()
            self._window(self.streams, self.segment, window)

    def finish(self):
        """Score what is left; returns (nats, characters scored)."""
        self._join()
        left = self.offset + len(self.buf) - 1 - self.done  # predictions still to make
        if left > 0:
            # the text's last window: as many segments as it has room for
            n = min(self.streams, max(1, left // self.min_segment))
            S = -(-left // n)
            self._window(-(-left // S), S, left)
        return self.nats, self.chars

    def _join(self):
        """Move the pieces fed into buf, dropping what has been read
        (only here, so a long text fed at once is not copied per window)."""
        if self.pending:
            self.buf = np.concatenate([self.buf[self.done - self.offset :]] + self.pending)
            self.offset = self.done
            self.pending, self.pending_len = [], 0

    def _flat(self, state):
        return np.concatenate([a for layer in state for a in layer], axis=1)

    def _unflat(self, flat):
        out, k = [], 0
        for widths in self.widths:
            arrays = []
            for w in widths:
                arrays.append(np.ascontiguousarray(flat[:, k : k + w]))
                k += w
            out.append(tuple(arrays))
        return out

    def _window(self, n, S, total):
        """Score `total` predictions from position self.done in n segments
        of S (the last one shorter when total says so)."""
        K = self.chunk
        base = self.done - self.offset  # where the first segment starts, in buf
        starts = base + np.arange(n) * S
        lengths = np.minimum(S, total - np.arange(n) * S)
        chunks = -(-lengths // K)  # chunks of each segment
        # each segment's start state: the stream's state for the first, and
        # as a guess for the others (a state of this text, closer to theirs
        # than the zero state on average)
        first = self.state if self.state is not None else self._flat(net.zero_state(self.config, 1))
        begin = np.repeat(first, n, axis=0)
        # the first reading: every segment from its guessed start
        ends = np.empty((chunks[0], n, begin.shape[1]), begin.dtype)  # state after each chunk
        nats = np.zeros((chunks[0], n))  # nats of each chunk
        self._read(starts, lengths, np.arange(n), begin, ends, nats, check=False)
        # segment 0 started where the stream is, so it is right; each other
        # segment is read again from where its predecessor ended, when that
        # is not where it started, until its states agree with the earlier
        # reading's within tol; then the earlier reading stands from there.
        # Every round makes at least one more segment right.
        while n > 1:
            arrived = ends[chunks[:-1] - 1, np.arange(n - 1)]
            wrong = np.flatnonzero(np.abs(arrived - begin[1:]).max(axis=1) > self.tol) + 1
            if not len(wrong):
                break
            begin[wrong] = arrived[wrong - 1]
            self._read(starts, lengths, wrong, begin[wrong], ends, nats, check=True)
        self.state = ends[chunks[-1] - 1, n - 1 :].copy()
        self.nats += float(nats.sum())
        self.done += total
        self.chars += total

    def _read(self, starts, lengths, which, state, ends, nats, check):
        """Read segments `which` from flat states `state`, chunk by chunk,
        recording each chunk's end state and nats in ends and nats. With
        check, a segment stops being read once its state is within tol of
        the one already in ends."""
        x, K = self.buf, self.chunk
        end = len(x) - 1
        for c in range(ends.shape[0]):
            p = c * K
            t = min(K, int(lengths[which].max()) - p)
            pos = starts[which][None, :] + np.arange(p, p + t)[:, None]
            hs, st, _ = net.forward(
                self.params, self.config, x[np.minimum(pos, end)], self._unflat(state), prepared=self.prepared,
                work=self.work,
            )  # fmt: skip
            logp = net.log_softmax(net.logits(self.params, hs))
            target = x[np.minimum(pos + 1, end)].reshape(-1)
            picked = logp[np.arange(len(target)), target].reshape(t, -1)
            scored = np.arange(p, p + t)[:, None] < lengths[which][None, :]
            nats[c, which] = -picked.sum(axis=0, dtype=np.float64, where=scored)
            state = self._flat(st)
            self.steps += t
            if check:
                self.reread += t * len(which)
                going = (np.abs(state - ends[c, which]).max(axis=1) > self.tol) & (p + t < lengths[which])
            else:
                going = p + t < lengths[which]
            ends[c, which] = state
            which, state = which[going], state[going]
            if not len(which):
                break


def loss_sum(config, params, ix, **options):
    """Total nats of predicting ix[1:] from ix[:-1] (indices the model knows)
    as one continuous stream, and the number of characters scored; options
    are Scorer's."""
    scorer = Scorer(config, params, **options)
    scorer.feed(ix)
    return scorer.finish()


class TextScorer:
    """Evaluation of a text fed as str pieces of any size, in order:
    characters the model does not know are counted and skipped (see the
    module's docstring), the rest scored as one continuous stream."""

    def __init__(self, config, vocab, params, **options):
        self.vocab = vocab
        self.scorer = Scorer(config, params, **options)
        self.unknown = 0

    def feed(self, text):
        ix = self.vocab.encode(text)
        known = ix[ix >= 0]
        self.unknown += len(ix) - len(known)
        self.scorer.feed(known)

    def result(self):
        """The Evaluation; ValueError when fewer than two known characters came."""
        nats, chars = self.scorer.finish()
        if chars == 0:
            raise ValueError("nothing to score: the text needs at least two characters the model knows")
        per = nats / chars
        perplexity = math.exp(per) if per < 700 else math.inf  # a ruined model: beyond a float
        return Evaluation(per / math.log(2), per, perplexity, chars, int(self.unknown))
