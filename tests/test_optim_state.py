"""The optimiser's state is the model's own, and its updates are the same
numbers as before the model packed its own buffers.

A run of updates through everything that makes or replaces a model's arrays
(made, saved and loaded, the vocabulary grown mid-run, a divergence guard's
rollback across that growth, a kept model restored) is checked two ways:

- bit for bit against the weights and optimiser state that the code before
  the change (main at 80d754e, whose optimiser packed the caller's dicts
  behind their backs) computed for the same run: tests/data/optim_run.npz,
  written by running this file as a script (`python tests/test_optim_state.py`);
- to rounding against a plain reference written here, one parameter at a
  time from the definitions of Adagrad and Adam (and of the guard's and
  growth's documented rules), sharing only the gradients (net.loss).

Regenerate the recording only when the update's arithmetic is meant to change."""

from __future__ import annotations

import math
import sys
from pathlib import Path

import numpy as np
import pytest

from rnnpipe import Config, Model, optim
from rnnpipe.cells import net
from rnnpipe.guard import LR_CUT, Guard
from rnnpipe.train import batches
from rnnpipe.vocab import Vocab

RECORDED = Path(__file__).with_name("data") / "optim_run.npz"
FIRST = "the quick brown fox jumps over the lazy dog. " * 6
GROWN = "PACK MY BOX WITH FIVE DOZEN LIQUOR JUGS! the dog naps. " * 4
TINY = dict(seq_length=5, batch_size=3, layers=2)
RUNS = {
    "adagrad-float64": Config(
        cell="gru", hidden=6, optimizer="adagrad", lr=0.1, clip=0.5, dtype="float64", seed=3, **TINY
    ),
    "adam-float64": Config(cell="lstm", hidden=5, optimizer="adam", lr=0.02, clip=2.0, dtype="float64", seed=4, **TINY),
    "adam-float32": Config(cell="rnn", hidden=7, seq_length=6, batch_size=2, lr=0.03, clip=1.0, seed=5),
}
VOCAB_AXES = {"0.Wxh": 1, "Why": 0, "by": 0}  # where the vocabulary indexes a parameter (net.init's shapes)


def chunks(model, text):
    cfg = model.config
    return list(batches(model.vocab.encode(text), cfg.seq_length, cfg.batch_size))


class Reference:
    """Adagrad and Adam one parameter at a time, from their definitions,
    following the model through growth, rollback and restore by the rules
    the docs give them (optim.py, guard.py), never by reading the model's
    optimiser state."""

    def __init__(self, model):
        self.config = model.config
        self.params = {k: v.copy() for k, v in model.params.items()}
        self.moments = {k: np.zeros_like(v) for k, v in model.opt_state.items() if k != optim.ADDED}
        self.added = np.zeros(len(model.vocab), np.int64)  # the update count each vocabulary slot was added at
        self.t = 0
        self.lr = self.config.lr

    def keep(self):
        return ({k: v.copy() for k, v in self.params.items()}, {k: v.copy() for k, v in self.moments.items()},
                self.added.copy(), self.t, self.lr)  # fmt: skip

    def step(self, X, Y, state):
        cfg, lr = self.config, self.lr
        loss, grads, state = net.loss(self.params, cfg, X, Y, state)
        self.t += 1
        t, T = self.t, X.shape[0]
        for p in self.params.values():
            p *= max(0.0, 1 - lr * cfg.weight_decay)
        if cfg.optimizer == "adagrad":
            for k, p in self.params.items():
                g = np.clip(grads[k], -cfg.clip, cfg.clip)
                mem = self.moments[f"mem.{k}"]
                mem += g * g
                p -= lr * g / np.sqrt(mem + optim.ADAGRAD_EPS)
            return state
        norm = math.sqrt(sum(float((g.astype(np.float64) ** 2).sum()) for g in grads.values())) / T
        scale = min(1.0, cfg.clip / norm) / T if norm > 0 else 1 / T
        b1, b2 = optim.ADAM_BETAS
        own = t - self.added  # each vocabulary slot counts its own updates from when it was added
        size = lr * np.sqrt(1 - b2**own) / (1 - b1**own)
        for k, p in self.params.items():
            g = grads[k] * scale
            m, v = self.moments[f"m.{k}"], self.moments[f"v.{k}"]
            m[...] = b1 * m + (1 - b1) * g
            v[...] = b2 * v + (1 - b2) * g * g
            if k in VOCAB_AXES:
                shape = [1] * p.ndim
                shape[VOCAB_AXES[k]] = -1
                step = size.reshape(shape)
            else:
                step = lr * math.sqrt(1 - b2**t) / (1 - b1**t)
            p -= (step * m / (np.sqrt(v) + optim.ADAM_EPS)).astype(p.dtype)
        return state

    def grow(self, model, old):
        """The new characters' weights as the model drew them; zero moments."""
        n = len(model.vocab) - old
        for k, axis in VOCAB_AXES.items():
            index = [slice(None)] * self.params[k].ndim
            index[axis] = slice(old, None)
            self.params[k] = np.concatenate([self.params[k], model.params[k][tuple(index)]], axis=axis)
            for name in self.moments:
                if name.split(".", 1)[1] == k:
                    shape = list(self.moments[name].shape)
                    shape[axis] = n
                    self.moments[name] = np.concatenate([self.moments[name], np.zeros(shape)], axis=axis)
        self.added = np.concatenate([self.added, np.full(n, self.t, np.int64)])

    def roll_back(self, kept):
        """The guard's rule: everything back to the snapshot, except that what
        the vocabulary grew since keeps its newest values; the rate cut."""
        params, moments, added, self.t, lr = kept
        pairs = [*zip(self.params.values(), params.values(), strict=True),
                 *zip(self.moments.values(), moments.values(), strict=True)]  # fmt: skip
        for mine, saved in pairs:
            mine[tuple(slice(0, n) for n in saved.shape)] = saved
        self.added[: len(added)] = added
        # a slot added later than the update rolled back to counts from the next one
        np.minimum(self.added, self.t, out=self.added)
        self.lr = lr / LR_CUT

    def restore(self, kept):
        """A kept model put back whole."""
        params, moments, self.added, self.t, self.lr = kept
        self.params = {k: v.copy() for k, v in params.items()}
        self.moments = {k: v.copy() for k, v in moments.items()}
        self.added = self.added.copy()


def run(cfg, reference=True):
    """The run of the module's docstring; returns the model and, with reference, the Reference beside it."""
    model = Model.new(cfg, FIRST)
    ref = Reference(model) if reference else None
    state = net.zero_state(cfg, cfg.batch_size)
    ref_state = state
    first = chunks(model, FIRST)

    def steps(items, state, ref_state):
        for X, Y in items:
            state = model.step(X, Y, state)
            if ref is not None:
                ref_state = ref.step(X, Y, ref_state)
        return state, ref_state

    state, ref_state = steps(first[:3], state, ref_state)
    model = Model.from_bytes(model.to_bytes())  # loaded: the file's arrays
    notes = []
    guard = Guard(model, notes.append)
    guard.take_snapshot()
    snapshot = ref.keep() if ref is not None else None
    state, ref_state = steps(first[3:6], state, ref_state)
    old = len(model.vocab)
    assert model.grow(GROWN)  # new characters mid-run
    if ref is not None:
        ref.grow(model, old)
    grown = chunks(model, GROWN)
    state, ref_state = steps(grown[:3], state, ref_state)
    state = ref_state = guard.roll_back(cfg.batch_size, math.inf)  # back past the growth
    assert notes and "rolled back" in notes[0]
    if ref is not None:
        ref.roll_back(snapshot)
    state, ref_state = steps(grown[3:5] + first[6:8], state, ref_state)
    kept, kept_ref = model.to_bytes(), (ref.keep() if ref is not None else None)
    kept_state = state
    steps(grown[5:7], state, ref_state)
    model.restore(kept)  # as --keep-best puts a kept model back
    if ref is not None:
        ref.restore(kept_ref)
    state, ref_state = steps(grown[7:9], kept_state, kept_state)
    return model, ref


def record(path=RECORDED):
    arrays = {}
    for name, cfg in RUNS.items():
        model, _ = run(cfg, reference=False)
        arrays.update({f"{name}/params/{k}": v for k, v in model.params.items()})
        arrays.update({f"{name}/opt_state/{k}": v for k, v in model.opt_state.items()})
    path.parent.mkdir(exist_ok=True)
    np.savez_compressed(path, **arrays)


@pytest.mark.parametrize("name", list(RUNS))
def test_updates_are_the_recorded_ones_and_the_definitions(name):
    cfg = RUNS[name]
    model, ref = run(cfg)
    with np.load(RECORDED) as recorded:
        want = {k.split("/", 1)[1]: recorded[k] for k in recorded.files if k.startswith(name + "/")}
    got = {f"params/{k}": v for k, v in model.params.items()}
    got.update({f"opt_state/{k}": v for k, v in model.opt_state.items()})
    assert sorted(got) == sorted(want)
    for k, v in got.items():
        assert v.dtype == want[k].dtype and np.array_equal(v, want[k]), k  # bit for bit
    assert model.iterations == ref.t
    tol = dict(rtol=1e-9, atol=1e-12) if cfg.dtype == "float64" else dict(rtol=2e-4, atol=2e-6)
    for k, p in ref.params.items():
        np.testing.assert_allclose(model.params[k], p, **tol, err_msg=k)
    for k, m in ref.moments.items():
        np.testing.assert_allclose(model.opt_state[k], m, **tol, err_msg=k)
    if cfg.optimizer == "adam":
        # the counts as the model file keeps them: a slot added after the rollback's iteration counts from the next
        np.testing.assert_array_equal(model.opt_state[optim.ADDED], ref.added)


def test_the_model_owns_its_arrays_and_touches_no_one_elses():
    cfg = RUNS["adam-float64"]
    params = net.init(cfg, 9, np.random.default_rng(0))
    state = optim.init(cfg.optimizer, params)
    given = {k: (v, v.copy()) for k, v in {**params, **state}.items()}
    model = Model(cfg, Vocab("abcdefghi"), params, state, np.random.default_rng(1))
    X, Y = next(iter(chunks(model, "abcdefghi" * 10)))
    model.step(X, Y, net.zero_state(cfg, X.shape[1]))
    # the caller's dicts hold their own arrays, unchanged: the model copied them into buffers of its own
    for k, (array, copy) in given.items():
        assert ({**params, **state}[k] is array) and np.array_equal(array, copy), k
    # the model's arrays are views into one flat buffer per kind, which its updates work on
    flat = model.params["Why"].base
    assert flat.ndim == 1 and all(v.base is flat for v in model.params.values())
    assert all(model.opt_state[f"m.{k}"].base is model.opt_state["m.Why"].base for k in model.params)
    # setting a name writes into the model's array (so the next update starts from it); a new shape is refused
    why = model.params["Why"]
    model.params["Why"] = np.zeros(why.shape)
    assert model.params["Why"] is why and why.base is flat and not why.any()
    with pytest.raises(ValueError, match="shape"):
        model.params["Why"] = np.zeros((1, 1))
    # assigned whole, the arrays become the model's in new buffers of its own
    model.params = {**model.params, "by": np.ones_like(model.params["by"])}
    assert model.params["by"].base is model.params["Why"].base is not flat
    model.step(X, Y, net.zero_state(cfg, X.shape[1]))
    assert not np.array_equal(model.params["by"], np.ones_like(model.params["by"]))


def test_optim_step_updates_any_dicts_in_place():
    cfg = RUNS["adagrad-float64"]
    rng = np.random.default_rng(2)
    params = net.init(cfg, 5, rng)
    state = optim.init(cfg.optimizer, params)
    arrays = {k: v for k, v in {**params, **state}.items()}
    grads = {k: rng.standard_normal(v.shape) for k, v in params.items()}
    want = {k: v - cfg.lr * np.clip(grads[k], -cfg.clip, cfg.clip) / np.sqrt(np.clip(grads[k], -cfg.clip, cfg.clip) ** 2
            + optim.ADAGRAD_EPS) for k, v in params.items()}  # fmt: skip
    assert optim.step(cfg, params, grads, state, 1, cfg.seq_length)
    assert all({**params, **state}[k] is v for k, v in arrays.items())  # the same arrays, updated
    for k, v in want.items():
        np.testing.assert_allclose(params[k], v, rtol=1e-12, atol=1e-15)


def test_a_copied_model_trains_as_the_original_on_buffers_of_its_own():
    import copy

    model, _ = run(RUNS["adam-float32"], reference=False)
    twin = copy.deepcopy(model)
    assert twin.params["Why"].base is not model.params["Why"].base
    assert twin.params["Why"].base is twin.params["by"].base
    state = net.zero_state(model.config, model.config.batch_size)
    for X, Y in chunks(model, GROWN)[:3]:
        model.step(X, Y, state)
        twin.step(X, Y, state)
    assert model.to_bytes() == twin.to_bytes()


def test_a_rollback_with_the_torch_engine_is_not_undone_by_a_sync():
    """The device copy's updates that a rollback threw away must not come
    back: a sample or a save right after the rollback syncs before the next
    update reloads (before, the diverged weights were written back)."""
    pytest.importorskip("torch")
    model = Model.new(RUNS["adagrad-float64"], FIRST)
    model.use("torch", "cpu")
    guard = Guard(model, lambda note: None)
    guard.take_snapshot()
    kept = {k: v.copy() for k, v in model.params.items()}
    state = net.zero_state(model.config, model.config.batch_size)
    for X, Y in chunks(model, FIRST)[:3]:
        state = model.step(X, Y, state)
    guard.roll_back(model.config.batch_size, math.inf)
    model.sync()
    assert all(np.array_equal(kept[k], model.params[k]) for k in kept)


if __name__ == "__main__":
    sys.exit(record())
