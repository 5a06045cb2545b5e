"""The divergence guard: a run whose loss climbs far above where it was, or
becomes NaN, goes back to its last good state with a lower learning rate.

Every SNAPSHOT_CHARS characters trained on, when the loss looks normal, the
guard keeps a copy of the weights, optimiser state, random state and
counters. A NaN or infinite loss rolls back at once; a loss that stays
suspiciously high (PATIENCE updates above the seed's smooth loss by MARGIN,
or MARGIN_SHARE of it) rolls back only if the snapshot's weights predict the
latest text better than today's do, since new kinds of text also raise the
loss. Each rollback divides the learning rate by LR_CUT (saved with the
model); after ROLLBACKS the run gives up with Diverged, the model at its last
good snapshot."""

from __future__ import annotations

import collections
import math

import numpy as np

from . import optim
from .cells import net

SNAPSHOT_CHARS = 200_000  # characters trained on between snapshots a divergence rolls back to
FAST = 0.1  # weight of the newest chunk in the fast-moving loss the divergence guard watches
WARMUP = 10  # iterations of a run before the guard judges
PATIENCE = 20  # iterations the loss must stay up before the guard looks closer
SNAPSHOT_SLACK = 0.1  # nats per character a new snapshot may be worse than the last on the same text
WINDOW = 2048  # characters of the latest text the guard compares weights on
MARGIN, MARGIN_SHARE = 1.0, 0.5  # nats per character above the smooth loss (or this share of it): suspicious
ROLLBACKS = 4  # divergences a run survives (each divides the learning rate by LR_CUT)
LR_CUT = 4.0


class Diverged(FloatingPointError):
    """Training diverged and rolling back did not cure it; the model holds
    its state from before the run's last good snapshot."""


class Guard:
    """The guard of one run over `model`; note(text) tells the user of a rollback."""

    def __init__(self, model, note):
        self.model, self.note = model, note
        self.fast = None  # a fast-moving average of chunk losses (nats per character)
        self.recent = collections.deque()  # the last chunks trained on, about WINDOW characters
        self.recent_chars = 0
        self.since_snapshot = 0  # characters trained on since the last snapshot
        self.steps = 0  # updates in this run
        self.climbing = 0  # consecutive updates with the loss suspiciously high
        self.rollbacks = 0
        self.snapshot = None

    def judge(self, X, Y, loss):
        """After an update on the chunk (X, Y) with this loss: the loss to roll
        back for when the run is diverging, else None (a snapshot may be taken)."""
        m = self.model
        self.steps += 1
        self.recent.append((X, Y))
        self.recent_chars += X.size
        while self.recent_chars - self.recent[0][0].size >= WINDOW:
            self.recent_chars -= self.recent.popleft()[0].size
        self.since_snapshot += X.size
        self.fast = loss if self.fast is None else (1 - FAST) * self.fast + FAST * loss
        # "where it was" is the seed's smooth loss, which a sudden climb leaves far behind
        margin = max(MARGIN, MARGIN_SHARE * m.smooth_loss)
        suspicious = self.fast > m.smooth_loss + margin or self.fast > math.log(len(m.vocab)) + MARGIN
        self.climbing = self.climbing + 1 if self.steps > WARMUP and suspicious else 0
        if self.climbing >= PATIENCE:
            # the loss has stayed up: new kinds of text do that too, so ask whether
            # the last good weights do better on the latest text than these do
            if self.worse_than_snapshot() > margin:
                return self.fast
            self.climbing = 0  # harder text, not divergence
        elif (
            self.since_snapshot >= SNAPSHOT_CHARS
            and not suspicious
            # a slow drift must not become the next good state
            and self.worse_than_snapshot() <= SNAPSHOT_SLACK
        ):
            self.take_snapshot()
        return None

    def finish(self):
        """At the run's end: the last updates had no time to show a climb, so
        judge them now, and lower the rate as any rollback does, for the next run."""
        if self.steps and self.worse_than_snapshot() > max(MARGIN, MARGIN_SHARE * self.model.smooth_loss):
            self.roll_back(1, self.model.last_loss)

    def worse_than_snapshot(self):
        """How much worse, in nats per character, the weights now predict the
        latest text (the last WINDOW or so characters trained on) than the
        snapshot's do."""
        if not self.recent:
            return 0.0
        self.model.sync()
        cfg, snapshot = self.model.config, self.snapshot_params()
        by_length = collections.defaultdict(list)  # chunks side by side: one forward pass per length
        for X, Y in self.recent:
            by_length[X.shape[0]].append((X, Y))
        now = then = chars = 0.0
        for chunks in by_length.values():
            X = np.concatenate([x for x, _ in chunks], axis=1)
            Y = np.concatenate([y for _, y in chunks], axis=1)
            now += _chunk_loss(self.model.params, cfg, X, Y) * X.size
            then += _chunk_loss(snapshot, cfg, X, Y) * X.size
            chars += X.size
        worse = (now - then) / chars
        world = self.model.world  # ranks training together decide together, on all their chunks
        return worse if world is None else world.mean(worse)

    def snapshot_params(self):
        """The snapshot's weights, shaped as today's (a character added since keeps today's)."""
        params = {}
        for name, saved in self.snapshot[0].items():
            params[name] = self.model.params[name].copy()
            optim.overlay(params[name], saved)
        return params

    def take_snapshot(self):
        m = self.model
        m.sync()
        self.since_snapshot = 0
        self.snapshot = (
            {k: v.copy() for k, v in m.params.items()},
            {k: v.copy() for k, v in m.opt_state.items()},
            m.rng.bit_generator.state,
            (m.iterations, m.chars_seen, m.smooth_loss, m.last_loss),
        )

    def roll_back(self, streams, loss):
        """Back to the last good snapshot with a lower learning rate, or give
        up (Diverged) after ROLLBACKS tries."""
        m = self.model
        params, opt_state, rng, counters = self.snapshot
        m.buffers.put(params, opt_state)  # in place, into the model's own arrays
        m.touched()  # an engine with a copy of its own takes them
        m.rng.bit_generator.state = rng
        at = m.iterations + 1
        m.iterations, m.chars_seen, m.smooth_loss, m.last_loss = counters
        self.rollbacks += 1
        bits = "NaN or infinite" if not math.isfinite(loss) else f"{loss / math.log(2):.3g} bits/char"
        if self.rollbacks > ROLLBACKS:
            raise Diverged(f"the loss was {bits} at iteration {at} after {ROLLBACKS} rollbacks; try a lower --lr")
        lr = m.config.lr / LR_CUT
        m.config = m.config.replace(lr=lr)
        self.note(
            f"training diverged at iteration {at} (loss {bits}): rolled back to iteration {m.iterations}"
            f" and lowered the learning rate to {lr:g} (saved with the model)"
        )
        self.fast, self.steps, self.climbing = None, 0, 0
        self.recent.clear()
        self.recent_chars = 0
        # the streams' states were computed by the weights just thrown away
        return net.zero_state(m.config, streams)


def _chunk_loss(params, config, X, Y):
    """Nats per character of predicting Y from X with params, from a zero state."""
    hs, _, _ = net.forward(params, config, X, net.zero_state(config, X.shape[1]))
    logp = net.log_softmax(net.logits(params, hs))
    with np.errstate(all="ignore"):
        loss = -float(logp[np.arange(logp.shape[0]), Y.reshape(-1)].mean())
    return loss if math.isfinite(loss) else math.inf
