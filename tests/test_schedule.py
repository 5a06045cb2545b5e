"""The learning-rate schedule and --keep-best: what each update's rate is,
that a continued run follows the interrupted run's curve exactly, and that
--keep-best leaves the best held-out model (no timing assertions: a run
bounded by time is driven by a fake clock). The curve's runs hold nothing
out (valid_fraction=0), so that their characters are the text's; with
held-out text, the default for many passes, tests/test_holdout.py."""

import dataclasses
import itertools
import math

import numpy as np
import pytest
from cli_util import run
from texts import kafka_text

import rnnpipe.train
from rnnpipe import Config, Model, schedule
from rnnpipe.reader import open_inputs

TEXT = kafka_text()[:6000]
CFG = Config(cell="gru", hidden=16, seq_length=10, batch_size=4, lr=0.01)


def rates(monkeypatch, sizes=None):
    """Record every update's learning rate (what Model.step was given), and
    into sizes, if given, the characters each update trained on."""
    seen, step = [], Model.step

    def recording(self, X, Y, state, lr=None):
        seen.append(self.config.lr if lr is None else lr)
        if sizes is not None:
            sizes.append(X.size)
        return step(self, X, Y, state, lr)

    monkeypatch.setattr(Model, "step", recording)
    return seen


def test_the_curve_warms_up_then_falls_to_the_floor():
    f = [schedule.factor("cosine", d / 1000) for d in range(1001)]
    assert f[0] == pytest.approx(schedule.WARMUP_START)
    peak = int(schedule.WARMUP * 1000)
    assert f[peak] == pytest.approx(1.0)
    assert all(a < b for a, b in zip(f[:peak], f[1 : peak + 1], strict=True))  # rising
    assert all(a >= b for a, b in zip(f[peak:], f[peak + 1 :], strict=False))  # then never rising
    assert f[-1] == pytest.approx(schedule.FLOOR)
    mid = (1 + schedule.WARMUP) / 2  # cosine is halfway down halfway through the decay
    assert schedule.factor("cosine", mid) == pytest.approx((1 + schedule.FLOOR) / 2)
    assert schedule.factor("linear", mid) == pytest.approx((1 + schedule.FLOOR) / 2)
    assert schedule.factor("linear", 0.25) < schedule.factor("cosine", 0.25)  # cosine stays high longer
    assert schedule.factor("linear", 0.75) > schedule.factor("cosine", 0.75)  # and settles lower sooner
    assert schedule.factor("none", 0.5) == schedule.factor("none", None) == 1.0
    assert schedule.factor("cosine", None) == schedule.factor("linear", None) == schedule.UNKNOWN_END == 0.5
    assert schedule.factor("cosine", 7.0) == pytest.approx(schedule.FLOOR)  # past the end: the floor


def test_a_budget_saves_every_field():
    # to_dict is written out by hand for speed; a field added to Budget and
    # forgotten there would silently not reach the model file
    b = schedule.Budget("linear", 12345, 60.0, 678, 9.5)
    assert b.to_dict() == dataclasses.asdict(b)
    assert schedule.Budget(**b.to_dict()) == b


def test_a_run_of_given_passes_follows_the_curve_by_characters(monkeypatch):
    sizes = []
    seen = rates(monkeypatch, sizes)
    model = Model.new(CFG, TEXT)
    model.train(TEXT, epochs=3, valid_fraction=0)
    done = np.cumsum([0] + sizes[:-1])  # characters trained on before each update
    want = [CFG.lr * schedule.factor("cosine", d / (3 * len(TEXT))) for d in done]
    assert seen == pytest.approx(want, rel=1e-12)
    assert seen[0] == pytest.approx(CFG.lr * schedule.WARMUP_START)
    assert seen[-1] < 0.1 * CFG.lr  # near the floor by the end


@pytest.mark.parametrize(
    "how, factor",
    [(dict(), schedule.UNKNOWN_END), (dict(schedule="linear"), schedule.UNKNOWN_END),
     (dict(epochs=2, schedule="none"), 1.0), (dict(schedule="none"), 1.0)],
)  # fmt: skip
def test_without_a_given_end_or_with_none_the_rate_is_constant(monkeypatch, how, factor):
    seen = rates(monkeypatch)
    Model.new(CFG, TEXT).train(TEXT, **how)
    assert seen and set(seen) == {CFG.lr * factor}


def test_an_interrupted_run_continues_the_same_curve_through_the_file(monkeypatch):
    sizes = []
    seen = rates(monkeypatch, sizes)
    whole = Model.new(CFG, TEXT)
    whole.train(TEXT, epochs=3, valid_fraction=0)
    expected, final = list(seen), whole.to_bytes()
    done = np.cumsum(sizes)
    seen.clear()
    model = Model.new(CFG, TEXT)
    for stop_at in (7, 50, 51, 200):  # inside the first pass, the second, ...
        model.train(TEXT, epochs=3, valid_fraction=0, stop=lambda m=model, n=stop_at: m.iterations >= n)
        assert model.resume.schedule["chars"] == done[stop_at - 1]
        model = Model.from_bytes(model.to_bytes())
    model.train(TEXT, epochs=3, valid_fraction=0)
    assert seen == expected  # exactly: integer counts, not a float carried over
    assert model.to_bytes() == final


def test_a_continued_run_with_another_schedule_starts_a_new_curve(monkeypatch):
    seen = rates(monkeypatch)
    model = Model.new(CFG, TEXT)
    model.train(TEXT, epochs=2, valid_fraction=0, stop=lambda: model.iterations >= 60)
    seen.clear()
    start = model.rate  # where the interrupted run had got to
    model.train(TEXT, epochs=2, valid_fraction=0, schedule="linear")
    assert seen[0] == pytest.approx(CFG.lr * start)  # no warm-up: the new curve starts there
    # down to about the floor (the characters a pass cannot use count toward its size)
    assert seen[-1] == pytest.approx(CFG.lr * schedule.FLOOR, rel=0.1) and max(seen) <= seen[0]


class Clock:
    """A fake time.monotonic: every call moves it on by `tick` seconds."""

    def __init__(self, tick):
        self.now = itertools.count(step=tick)

    def __call__(self):
        return next(self.now)


def test_a_time_bounded_run_follows_the_clock_and_its_continuation_the_rest_of_it(monkeypatch):
    seen = rates(monkeypatch)
    monkeypatch.setattr(rnnpipe.train.time, "monotonic", Clock(0.25))
    model = Model.new(CFG, TEXT)
    model.train(TEXT, max_time=100, stop=lambda: model.iterations >= 40)
    saved = model.resume.schedule
    assert saved["max_time"] == 100 and 0 < saved["seconds"] < 100
    first = list(seen)
    assert first[0] < first[1] < max(first) > first[-1]  # it warmed up and began to fall
    seen.clear()
    model = Model.from_bytes(model.to_bytes())
    end = model.train(TEXT, max_time=100)
    assert end.stopped == "time limit"
    assert end.max_time == pytest.approx(100 - saved["seconds"])  # what was left of the hundred seconds
    assert seen[0] < first[-1]  # the curve goes on from where it was, not from a new warm-up
    assert seen[-1] == pytest.approx(CFG.lr * schedule.factor("cosine", 1.0), rel=0.05)


def overfitting(keep_best, engine="numpy"):
    """A model too big for its text, trained on long after its held-out
    loss has bottomed: the last model is not the best one."""
    text = kafka_text()[:3000]
    model = Model.new(Config(cell="gru", hidden=64, seq_length=20, batch_size=4, lr=0.02), text)
    if engine != "numpy":
        model.use(engine, device="cpu")
    measured = []

    def callback(p):
        if p.kind == "valid":
            measured.append((p.valid_bits, p.iteration))
        if p.kind == "note":
            notes.append(p.note)

    notes = []
    end = model.train(text, epochs=40, valid_fraction=0.2, valid_every=math.inf, schedule="none",
                      keep_best=keep_best, callback=callback)  # fmt: skip
    held = text[len(text) - int(len(text) * 0.2) :]
    return model, measured, notes, end, held


def test_keep_best_ends_with_the_best_held_out_model():
    last, measured, notes, end, held = overfitting(keep_best=False)
    assert not notes and end.kept is None
    best_bits, best_iteration = min(measured)
    assert end.valid_bits > best_bits + 0.05  # it did overfit: the test means something

    kept, measured, notes, end, _ = overfitting(keep_best=True)
    best_bits, best_iteration = min(measured)
    assert kept.iterations == best_iteration
    assert end.valid_bits == best_bits and end.kept[0] == best_bits and end.kept[2] == best_iteration
    assert measured[-1][0] > best_bits  # the last model trained, measured at the end: not the one kept
    assert not notes
    assert kept.resume is None  # the run finished: nothing is pending
    # and the model is that one: scored again from scratch it gives the same figure
    assert kept.evaluate(held).bits_per_char == pytest.approx(best_bits, abs=1e-3)
    assert last.evaluate(held).bits_per_char > kept.evaluate(held).bits_per_char


def test_keep_best_needs_held_out_text():
    with pytest.raises(ValueError, match="keep_best needs held-out text"):
        Model.new(CFG, TEXT).train(TEXT, keep_best=True)


def test_keep_best_on_the_command_line_leaves_the_best_model_on_disk(tmp_path):
    text = kafka_text()[:3000]
    (tmp_path / "t.txt").write_text(text, encoding="utf-8")
    held = text[len(text) - int(len(text) * 0.2) :]
    args = ["--cell", "gru", "--hidden", "64", "--seq-length", "20", "--batch-size", "4", "--lr", "0.02",
            "--epochs", "40", "--valid-fraction", "0.2", "--schedule", "none", "-q", "t.txt"]  # fmt: skip
    kept = run("train", "-m", "kept.msgpack", "--keep-best", *args, cwd=tmp_path)
    assert kept.returncode == 0, kept.stderr
    default = run("train", "-m", "default.msgpack", *args, cwd=tmp_path)  # on by default for many passes
    assert default.returncode == 0, default.stderr
    b = Model.load(tmp_path / "kept.msgpack")
    assert b.to_bytes() == Model.load(tmp_path / "default.msgpack").to_bytes()
    last = overfitting(keep_best=False)[0]  # the same run ending with its last model
    assert b.iterations < last.iterations
    assert b.evaluate(held).bits_per_char < last.evaluate(held).bits_per_char - 0.05
    bad = run("train", "-m", "x.msgpack", "--keep-best", "t.txt", cwd=tmp_path)
    assert bad.returncode == 2 and b"--keep-best needs held-out text" in bad.stderr
    assert len(bad.stderr.strip().splitlines()) == 1


def test_the_command_line_continues_an_interrupted_schedule(tmp_path, monkeypatch):
    """A run of the API stopped at an iteration, continued by the command
    line, ends as one uninterrupted command-line run (tests/test_trust_cli.py
    kills real runs at random moments)."""
    (tmp_path / "t.txt").write_text(TEXT, encoding="utf-8")
    monkeypatch.chdir(tmp_path)
    Model.new(CFG).save(tmp_path / "whole.msgpack")
    whole = run("train", "-m", "whole.msgpack", "--epochs", "3", "-q", "t.txt", cwd=tmp_path)
    assert whole.returncode == 0, whole.stderr
    first = Model.new(CFG)
    inputs = [s.describe() for s in open_inputs(["t.txt"], None)]
    first.train(TEXT, epochs=3, inputs=inputs, stop=lambda: first.iterations >= 77)
    assert first.resume.schedule["kind"] == "cosine"
    first.save(tmp_path / "part.msgpack")
    more = run("train", "-m", "part.msgpack", "--epochs", "3", "-q", "t.txt", cwd=tmp_path)
    assert more.returncode == 0, more.stderr
    a = Model.load(tmp_path / "whole.msgpack")
    b = Model.load(tmp_path / "part.msgpack")
    assert a.iterations == b.iterations
    for k in a.params:
        np.testing.assert_array_equal(a.params[k], b.params[k])


def test_without_a_known_end_the_command_line_keeps_lr(tmp_path):
    """README: a run given neither --max-time nor --epochs, and text piped in
    without --max-time, train at half --lr: each ends as --schedule none at
    half the rate does; a file with --epochs follows the schedule and ends
    elsewhere."""
    (tmp_path / "t.txt").write_text(TEXT, encoding="utf-8")
    small = ["--hidden", "16", "--seq-length", "10", "--batch-size", "4", "-q"]

    def model(name, *args, input=None):
        r = run("train", "-m", name, *small, *args, input=input, cwd=tmp_path)
        assert r.returncode == 0, r.stderr
        return Model.load(tmp_path / name).params

    def same(a, b):
        return all(np.array_equal(a[k], b[k]) for k in a)

    half = ["--schedule", "none", "--lr", str(Config().lr * schedule.UNKNOWN_END)]
    assert same(model("a", "t.txt"), model("b", *half, "t.txt"))
    assert same(model("c", "--epochs", "2", input=TEXT), model("d", "--epochs", "2", *half, input=TEXT))
    assert not same(model("e", "--epochs", "2", "t.txt"), model("f", "--epochs", "2", *half, "t.txt"))
