"""Training you can trust (issue 10), in the core: an interrupted run that
continues ends bit-identical to one never interrupted; how text is delivered
never changes what is learned; a wild learning rate is rolled back."""

from __future__ import annotations

import io
import math
import random

import numpy as np
import pytest
from cli_util import ROOT

import rnnpipe.train
from rnnpipe import Config, Model
from rnnpipe.reader import Source, TextReader
from rnnpipe.train import Diverged, Position, VocabularyFull, block_length, layout

TEXT = (ROOT / "examples" / "shakespeare.txt").read_text()[:30000]
SMALL = Config(hidden=16, seq_length=10, batch_size=4)


def arrays_equal(a, b):
    """Weights, optimiser state, counters and RNG, compared exactly."""
    assert a.iterations == b.iterations and a.chars_seen == b.chars_seen
    assert a.smooth_loss == b.smooth_loss and a.last_loss == b.last_loss
    assert a.rng.bit_generator.state == b.rng.bit_generator.state
    for k in a.params:
        np.testing.assert_array_equal(a.params[k], b.params[k], err_msg=k)
    for k in a.opt_state:
        np.testing.assert_array_equal(a.opt_state[k], b.opt_state[k], err_msg=k)


def uninterrupted(config, text, **kw):
    model = Model.new(config)
    model.train(text, **kw)
    return model


@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru"])
@pytest.mark.parametrize("held", [0.0, None])  # nothing held out; the default's slice, keeping the best model
def test_interrupted_at_random_points_and_continued_through_the_file_is_bit_identical(cell, held):
    config = SMALL.replace(cell=cell, layers=2, dropout=0.2)
    whole = uninterrupted(config, TEXT, epochs=3, valid_fraction=held)
    rng = random.Random(cell)
    model, runs = Model.new(config), 0
    while True:
        stop_at = model.iterations + rng.randint(1, 400)
        final = model.train(TEXT, epochs=3, valid_fraction=held, stop=lambda m=model, s=stop_at: m.iterations >= s)
        runs += 1
        model = Model.from_bytes(model.to_bytes())  # through the file, as a new process would
        if final.stopped == "end of input":
            break
    # keep-best stops where it measures, once a pass (tests/test_holdout.py): fewer stops get in
    assert runs >= (4 if held == 0 else 3) and model.resume is None  # finished: nothing pending
    arrays_equal(model, whole)
    assert model.to_bytes() == whole.to_bytes()
    assert model.sample(200, seed=5) == whole.sample(200, seed=5)


def test_the_position_is_in_the_file_and_a_finished_run_leaves_none():
    model = Model.new(SMALL)
    # a pass is 750 iterations; nothing held out, so it stops where it is asked (else at a measurement point)
    model.train(TEXT, epochs=2, valid_fraction=0, stop=lambda: model.iterations >= 1000)
    back = Model.from_bytes(model.to_bytes())
    r = back.resume
    assert isinstance(r, Position) and (r.epoch, r.epochs) == (2, 2)
    assert r.chars == len(TEXT) and 0 < r.fraction < 1
    assert [s.shape for layer in r.state for s in layer] == [(4, 16)]
    back.train(TEXT, epochs=2, valid_fraction=0)
    assert back.resume is None and Model.from_bytes(back.to_bytes()).resume is None
    again = back.iterations
    back.train(TEXT)  # once finished, running again is one more pass
    assert back.iterations > again


def test_other_text_or_layout_or_restart_starts_a_new_pass():
    notes = []

    def note(p):
        if p.kind == "note":
            notes.append(p.note)

    def interrupted():
        model = Model.new(SMALL)
        model.train(TEXT, epochs=3, stop=lambda: model.iterations >= 300)
        return model

    m = interrupted()
    m.train(TEXT[:-1] + "!", epochs=3, callback=note, stop=lambda: True)
    assert notes[-1] == "the input is not the one the interrupted run read: starting a new pass"
    m = interrupted()
    m.configure(batch_size=8)
    m.train(TEXT, epochs=3, callback=note, stop=lambda: True)
    assert "differ from the interrupted run's: starting a new pass" in notes[-1]
    m = interrupted()
    m.train(TEXT, epochs=3, callback=note, restart=True, stop=lambda: True)
    assert notes[-1].startswith("--restart: starting a new pass")
    m = interrupted()
    m.train(TEXT, epochs=3, callback=note, stop=lambda: True)
    assert notes[-1].startswith("continuing epoch 1 of 3 at ")


def test_delivery_never_changes_what_is_learned(monkeypatch):
    monkeypatch.setattr(rnnpipe.train, "BLOCK_CHARS", 4000)  # blocks of 4,000 characters: many boundaries
    text = TEXT
    assert len(text) > 5 * block_length(SMALL)
    whole = Model.new(SMALL)
    whole.train(text)
    rng = random.Random(1)

    def pieces():
        i = 0
        while i < len(text):
            n = rng.choice([1, 2, 7, 100, 999, 4096, 10_000])
            yield text[i : i + n]
            i += n

    piecewise = Model.new(SMALL)
    piecewise.train(pieces())
    assert piecewise.to_bytes() == whole.to_bytes()


@pytest.mark.parametrize("latency", [rnnpipe.train.LATENCY, 0.0])
def test_a_pipes_text_waits_at_most_the_latency(monkeypatch, latency):
    monkeypatch.setattr(rnnpipe.train, "LATENCY", latency)
    first, second = TEXT[:5000], TEXT[5000:9000]
    B, L = layout(len(first), SMALL.seq_length, SMALL.batch_size)
    model, seen = Model.new(SMALL), {}

    def arriving():
        yield first
        seen["first read"] = model.iterations
        yield None  # what the reader says while nothing comes
        seen["while silent"] = model.iterations
        yield second

    model.train(arriving())
    if latency:  # not yet waited that long: a block waits for more text
        assert seen["first read"] == seen["while silent"] == 0
    else:  # waited long enough: all that had come is trained on at once, in 4 streams
        assert seen["first read"] == math.ceil(L / SMALL.seq_length)


def test_a_wild_learning_rate_is_rolled_back_and_lowered():
    model = Model.new(Config(hidden=48), TEXT)
    model.train(TEXT, epochs=6)
    good = model.evaluate(TEXT[-3000:]).bits_per_char
    notes = []
    model.configure(lr=0.5)  # a hundred times the default: the loss climbs to tens of bits per character
    # restart: a fresh schedule, up to the new rate (a trained model would go on at the share it ended at)
    model.train(TEXT, epochs=2, restart=True, callback=lambda p: notes.append(p.note) if p.kind == "note" else None)
    assert notes and notes[0].startswith("training diverged at iteration ") and "rolled back to iteration" in notes[0]
    assert "lowered the learning rate to 0.125 (saved with the model)" in notes[0]
    assert model.config.lr <= 0.125
    assert model.evaluate(TEXT[-3000:]).bits_per_char < good + 0.5  # never ruined


def test_a_hopeless_run_raises_diverged_with_the_model_at_its_last_good_state():
    model = Model.new(SMALL, TEXT)
    model.train(TEXT)
    before = model.evaluate(TEXT[-3000:]).bits_per_char
    model.configure(lr=1e30)
    with pytest.raises(Diverged, match="after 4 rollbacks"):
        model.train(TEXT, epochs=5)
    assert model.evaluate(TEXT[-3000:]).bits_per_char == pytest.approx(before, abs=1e-9)
    assert math.isfinite(model.smooth_loss)


def test_vocabulary_is_capped():
    model = Model.new(SMALL)
    with pytest.raises(VocabularyFull, match="more than 50 distinct characters"):
        model.train("".join(chr(0x4E00 + i) for i in range(200)) * 3, max_vocab=50)
    assert len(model.vocab) == 0


def test_hidden_state_crosses_a_block_boundary_only_where_the_text_goes_on(monkeypatch):
    monkeypatch.setattr(rnnpipe.train, "BLOCK_CHARS", 4000)
    model = Model.new(SMALL)
    seen = []  # (state in, state out) of every update
    step = Model.step

    def recording(self, X, Y, state, lr=None):
        out = step(self, X, Y, state, lr)
        seen.append(([s.copy() for layer in state for s in layer], [s.copy() for layer in out for s in layer]))
        return out

    monkeypatch.setattr(Model, "step", recording)
    model.train(TEXT[:20000])
    per_block = block_length(SMALL) // (SMALL.batch_size * SMALL.seq_length)
    starts = list(range(per_block, len(seen), per_block))
    assert len(starts) >= 3
    for k in starts:
        (h_in,), (h_before,) = seen[k][0], seen[k - 1][1]
        np.testing.assert_array_equal(h_in[0], h_before[-1])  # the last stream's text goes on in the first
        assert not h_in[1:].any()  # the others start in the middle of text they have not seen: from zero


def test_sampling_options_are_checked_in_the_core():
    model = Model.new(SMALL, "abc")
    for kwargs in ({"temperature": math.nan}, {"temperature": -1.0}, {"top_k": 0}, {"top_k": -2}, {"seed": -1}):
        with pytest.raises(ValueError):
            model.sample(5, **kwargs)
    assert len(model.sample(5, temperature=math.inf, seed=1)) == 5


def test_a_stop_while_the_input_is_read_leaves_the_pass_pending():
    """The command line's reader stops reading at Ctrl-C by raising Stop: the
    pass it was reading is not over, and the run must not take it for
    finished (before, it ended its iteration, and a continued run trained
    the text read so far as the pass's last block, or took the pass for
    done and ended leaving nothing pending)."""
    source = Source("<stdin>", fileobj=io.StringIO(TEXT))
    with pytest.raises(rnnpipe.train.Stop):
        list(TextReader([source], stopped=lambda: True).blocks())

    model = Model.new(SMALL)
    model.train(TEXT, epochs=3, stop=lambda: model.iterations >= 60)
    pending = model.resume

    def passes():  # the reader, stopped while the first piece is read
        yield TEXT[:5000]
        list(TextReader([Source("<stdin>", fileobj=io.StringIO(TEXT[5000:]))], stopped=lambda: True).blocks())

    end = model.train(passes, epochs=3, inputs=pending.inputs)
    assert end.stopped == "stopped"
    assert model.iterations == 60 and model.resume == pending
