"""A default that does not overfit (issue 22): a run that reads its text
more than once holds out a slice of it and ends with the best model on it
(rnnpipe/holdout.py); one pass over stdin holds out nothing. No timing
assertions: every run here is bounded by its passes, not by a clock."""

from __future__ import annotations

import json
import math
import re

import msgpack
import pytest
from cli_util import TINY, run
from hostile_files import _seal
from texts import kafka_text

import rnnpipe
import rnnpipe.train
from rnnpipe import Config, Model, schedule, session, training
from rnnpipe.errors import SettingError
from rnnpipe.fileread import ModelFormatError
from rnnpipe.holdout import COST, DEFAULT_CAP, DEFAULT_FRACTION, default_fraction
from rnnpipe.plan import Options
from rnnpipe.progress import status

TEXT = kafka_text()[:3000]
# a model far too big for 3,000 characters, at a constant rate: it learns them by heart within seconds
CFG = Config(cell="gru", hidden=64, seq_length=20, batch_size=4, lr=0.02)
ARGS = ["--cell", "gru", "--hidden", "64", "--seq-length", "20", "--batch-size", "4", "--lr", "0.02"]
HELD = TEXT[len(TEXT) - int(len(TEXT) * DEFAULT_FRACTION) :]  # one block: the held-out slice is the text's tail
EPOCHS = 40


def overfit(**options):
    """EPOCHS passes over TEXT with the default options (and these): the
    model, every held-out score measured [(bits, iteration)], the notes and
    the final Progress."""
    model = Model.new(CFG, TEXT)
    measured, notes = [], []

    def callback(p):
        if p.kind == "valid":
            measured.append((p.valid_bits, p.iteration))
            # the progress line shows it, and the best so far when this one is worse
            line = status(p)
            assert f"held-out {p.valid_bits:.3f} bits/char" in line
            worse = p.best_bits is not None and p.best_bits < p.valid_bits
            assert ("(best " in line) == worse and (not worse or f"(best {p.best_bits:.3f})" in line)
        if p.kind == "note":
            notes.append(p.note)

    end = model.train(TEXT, epochs=EPOCHS, schedule="none", callback=callback, **options)
    return model, measured, notes, end


@pytest.fixture(scope="module")
def overfitted():
    return overfit()


def test_a_text_that_overfits_ends_with_the_best_held_out_model(overfitted):
    model, measured, notes, end = overfitted
    scores = [bits for bits, _ in measured]
    assert len(scores) >= 5
    # measured when the first pass ends, then every 20 times the held-out text's characters of training
    chunk = CFG.batch_size * CFG.seq_length
    every = math.ceil(COST * len(HELD) / chunk)
    streams, length = rnnpipe.train.layout(len(TEXT) - len(HELD), CFG.seq_length, CFG.batch_size)
    per_pass = math.ceil(length / CFG.seq_length)
    assert COST == 20 and measured[0][1] == per_pass  # the first pass's updates
    # then at every multiple of `every` updates, whatever the score: no model goes back, every update counts
    assert [at for _, at in measured[1:-1]] == list(range(every * (per_pass // every + 1), EPOCHS * per_pass, every))
    assert measured[-1][1] == end.iteration == EPOCHS * per_pass  # the end's, of the last model trained
    best = min(scores)
    # the last model trained, measured at the end, had learned the text by heart: worse than the best
    assert scores[-1] > best + 0.05
    # the run ends with the best one: its score is the least measured, and scoring it again gives it
    assert end.valid_bits == best and end.kept[0] == best and end.kept[2] == measured[scores.index(best)][1]
    assert model.iterations == end.kept[2] < end.iteration
    assert model.evaluate(HELD).bits_per_char == pytest.approx(best, abs=1e-6)
    assert model.resume is None and model.kept is None and end.stopped == "end of input"
    assert not notes


def test_without_keep_best_the_same_run_ends_with_its_last_model(overfitted):
    model, measured, _, end = overfit(keep_best=False)
    assert end.kept is None
    assert end.valid_bits == measured[-1][0] > min(b for b, _ in measured) + 0.05
    assert model.evaluate(HELD).bits_per_char > overfitted[0].evaluate(HELD).bits_per_char + 0.05


def test_the_torch_engine_keeps_the_best_model_too():
    pytest.importorskip("torch")
    model = Model.new(CFG, TEXT).use("torch", device="cpu")
    measured = []
    end = model.train(TEXT, epochs=EPOCHS, schedule="none",
                      callback=lambda p: p.kind == "valid" and measured.append(p.valid_bits))  # fmt: skip
    assert end.kept is not None and end.valid_bits == min(measured) < measured[-1]
    model.sync()
    assert model.evaluate(HELD).bits_per_char == pytest.approx(min(measured), abs=1e-6)


N = 1_048_640  # train.block_length of the default configuration: about a million characters


def settled(passes, size, **given):
    o = Options(**given).settle(passes, size, N)
    return o.valid_fraction, o.keep_best


def test_the_default_holds_out_for_many_passes_and_not_for_one():
    assert settled(1, 3000) == (0.0, False)  # one pass (a file read once, or stdin)
    assert settled(None, 3000) == (DEFAULT_FRACTION, True)  # --max-time: passes until the time is up
    assert settled(3, 3000) == (DEFAULT_FRACTION, True)
    assert settled(3, 10**5) == (DEFAULT_FRACTION, True)  # the README's sample: its last 5%, 4,992 characters
    assert settled(3, 10**6) == (DEFAULT_CAP / 10**6, True)  # at most DEFAULT_CAP characters
    assert settled(3, 10**8) == (DEFAULT_CAP / (N + 1), True)  # of its first block: a file of any length
    assert settled(3, None) == (None, True)  # stdin kept for more passes: its first block decides, as it comes
    assert default_fraction(N + 1) * (N + 1) == pytest.approx(DEFAULT_CAP)
    assert settled(3, 3000, valid_fraction=0) == (0.0, False)  # --valid-fraction 0 turns it off
    assert settled(3, 3000, keep_best=False) == (DEFAULT_FRACTION, False)
    assert settled(1, 3000, valid_fraction=0.1) == (0.1, False)
    assert Options().settle(3, 3000, N, world=object()).keep_best is False  # ranks under torchrun: measured only
    with pytest.raises(SettingError, match="keep_best needs held-out text"):
        Options(keep_best=True).settle(1, 3000, N)
    with pytest.raises(SettingError, match="keep_best needs held-out text"):
        Options(keep_best=True, valid_fraction=0)


def test_a_long_text_holds_out_the_tail_of_its_first_block_only(monkeypatch):
    """Held out: the tail of each block until the fraction of one block is
    held out, so a long text's is the tail of its first block, and the same
    whether the text is a file (its size known) or piped (not)."""
    monkeypatch.setattr(rnnpipe.train, "BLOCK_CHARS", 1000)
    n = rnnpipe.train.block_length(CFG)  # 1,040: TEXT is three blocks
    held = []

    def callback(p):
        if p.kind == "valid":
            held.append(p.valid_bits)

    file, piped = Model.new(CFG, TEXT), Model.new(CFG, TEXT)
    # at a constant rate (a text of unknown size has no schedule by characters), every update kept
    same = dict(epochs=2, schedule="none", keep_best=False, valid_every=math.inf)
    file.train(TEXT, callback=callback, **same)
    piped.train(lambda: iter([TEXT[:700], TEXT[700:]]), **same)
    assert file.to_bytes() == piped.to_bytes()
    first = TEXT[: n + 1]
    tail = first[len(first) - int(len(first) * DEFAULT_FRACTION) :]
    assert held[-1] == pytest.approx(file.evaluate(tail).bits_per_char, abs=1e-6)
    # every character but that tail was trained on, in each pass (up to what the layout leaves over)
    per_pass = file.chars_seen / 2
    assert len(TEXT) - len(tail) - 3 * CFG.batch_size <= per_pass < len(TEXT) - len(tail)


def test_one_pass_of_stdin_holds_nothing_out_and_passes_over_a_file_do(tmp_path):
    (tmp_path / "t.txt").write_text(TEXT, encoding="utf-8")
    once = run("train", "-m", "a.msgpack", *TINY, input=TEXT, cwd=tmp_path)
    assert once.returncode == 0, once.stderr
    assert b"held-out" not in once.stderr
    passes = run("train", "-m", "b.msgpack", *TINY, "--epochs", "2", "t.txt", cwd=tmp_path)
    assert passes.returncode == 0, passes.stderr
    assert re.search(rb"\(2 passes\).*held-out \d\.\d{3} bits/char", passes.stderr.splitlines()[-1])
    off = run("train", "-m", "c.msgpack", *TINY, "--epochs", "2", "--valid-fraction", "0", "t.txt", cwd=tmp_path)
    assert off.returncode == 0, off.stderr
    assert b"held-out" not in off.stderr
    # the held-out characters were not trained on: a run on all of them saw more
    trained = {name: Model.load(tmp_path / name).chars_seen for name in ("b.msgpack", "c.msgpack")}
    assert trained["b.msgpack"] < trained["c.msgpack"]


def test_the_summary_says_the_model_kept_is_an_earlier_one(tmp_path):
    (tmp_path / "t.txt").write_text(TEXT, encoding="utf-8")
    common = [*ARGS, "--epochs", str(EPOCHS), "--schedule", "none", "t.txt"]
    r = run("train", "-m", "m.msgpack", *common, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    last = r.stderr.decode().splitlines()[-1]
    found = re.search(r"; kept the best held-out model: (\d\.\d{3}) bits/char at (\d+:\d\d), not the last one; "
                      r"saved to m.msgpack$", last)  # fmt: skip
    assert found, last
    kept = Model.load(tmp_path / "m.msgpack")
    assert f"{kept.evaluate(HELD).bits_per_char:.3f}" == found[1]
    off = run("train", "-m", "off.msgpack", *common, "--valid-fraction", "0", cwd=tmp_path)
    assert off.returncode == 0 and b"kept the best" not in off.stderr


def run_stopped(polls, text=TEXT, **options):
    """The overfitting run stopped after `polls` polls of stop(), as Ctrl-C stops it, then
    continued from its saved bytes until done; returns the final bytes."""
    model = Model.new(CFG, text)
    count = [0]

    def stop():
        count[0] += 1
        return count[0] >= polls

    first = model.train(text, epochs=EPOCHS, schedule="none", stop=stop, **options)
    assert first.stopped == "stopped"
    again = Model.from_bytes(model.to_bytes())  # what the file holds
    assert again.resume is not None and again.resume.interrupted
    end = again.train(text, epochs=EPOCHS, schedule="none", **options)
    assert end.stopped == "end of input"
    return again.to_bytes()


@pytest.mark.parametrize("polls", [20, 300, 700])  # in the first pass; soon after a measurement point; late
def test_a_run_stopped_and_continued_ends_as_the_run_never_stopped(overfitted, polls):
    assert run_stopped(polls) == overfitted[0].to_bytes()


def test_a_run_asked_to_stop_stops_at_once_and_keeps_the_best_model_and_the_later_one():
    model, best_measured, count = Model.new(CFG, TEXT), [], [0]

    def callback(p):
        if p.kind == "valid" and (not best_measured or p.valid_bits < best_measured[-1][0]):
            best_measured.append((p.valid_bits, p.iteration))

    def stop():
        count[0] += 1
        return count[0] >= 300

    end = model.train(TEXT, epochs=EPOCHS, schedule="none", stop=stop, callback=callback)
    assert end.stopped == "stopped" and model.resume.interrupted
    assert end.iteration == 300  # stopped after the update it was asked at, not at a measurement point
    bits, at = best_measured[-1]
    every = math.ceil(COST * len(HELD) / (CFG.batch_size * CFG.seq_length))
    assert 300 % every != 0 and end.kept == (bits, end.kept[1], at)
    # the model is the best one measured, which sampling uses; the later one waits in resume.current
    assert model.iterations == at and model.resume.best == bits
    assert model.evaluate(HELD).bits_per_char == pytest.approx(bits, abs=1e-6)
    assert Model.from_bytes(model.resume.current).iterations == 300
    # the file holds both: the best as its model, the later one to go on from
    saved = Model.from_bytes(model.to_bytes())
    assert saved.iterations == at and Model.from_bytes(saved.resume.current).iterations == 300


def test_passes_cut_by_the_time_limit_go_on_exactly(overfitted, monkeypatch):
    """--epochs N --max-time T with T up first: the run is interrupted, and
    the next run finishes it as the run never stopped. A fake clock: every
    reading moves it a millisecond."""
    ticks = iter(range(10**9))
    monkeypatch.setattr(rnnpipe.train.time, "monotonic", lambda: next(ticks) / 1000)
    model, notes = Model.new(CFG, TEXT), []
    end = model.train(TEXT, epochs=EPOCHS, max_time=1.0, schedule="none",
                      callback=lambda p: p.kind == "note" and notes.append(p.note))  # fmt: skip
    assert end.stopped == "time limit" and 2 < end.epoch < EPOCHS and model.resume.interrupted
    assert not notes and model.resume.current is not None
    monkeypatch.undo()
    again = Model.from_bytes(model.to_bytes())
    again.train(TEXT, epochs=EPOCHS, schedule="none")
    assert again.to_bytes() == overfitted[0].to_bytes()


def test_a_run_cut_by_its_time_limit_records_the_whole_limit_as_used(monkeypatch):
    """The position is taken a moment before the clock says the time is up:
    it must still say so, or the next run would get the sliver left of this
    one's limit (one update) instead of a limit of its own."""
    for ms in range(10):  # the limit falls at each place between the clock's readings in an update
        ticks = iter(range(10**9))
        monkeypatch.setattr(rnnpipe.train.time, "monotonic", lambda ticks=ticks: next(ticks) / 1000)
        model = Model.new(CFG, TEXT)
        end = model.train(TEXT, epochs=EPOCHS, max_time=0.3 + ms / 1000)  # the cosine schedule, over its time
        assert end.stopped == "time limit" and model.resume.interrupted
        assert schedule.Budget(**model.resume.schedule).spent, ms


def test_a_run_bounded_by_time_alone_ends_with_the_best_and_the_next_trains_on_from_the_last(monkeypatch):
    """--max-time alone: the run is done when its time is up, with the best
    model measured; the next run on the same text goes on training from the
    later model the file keeps, and still ends with the best of both runs."""
    ticks = iter(range(10**9))
    monkeypatch.setattr(rnnpipe.train.time, "monotonic", lambda: next(ticks) / 1000)
    model = Model.new(CFG, TEXT)
    first = model.train(TEXT, max_time=2.0, schedule="none")
    assert first.stopped == "time limit" and not model.resume.interrupted and first.kept is not None
    assert model.iterations == first.kept[2] < first.iteration
    again = Model.from_bytes(model.to_bytes())
    second = again.train(TEXT, max_time=1.0, schedule="none")
    assert second.began == first.iteration  # not the best model's updates: the later one's
    assert second.iteration > first.iteration
    # the best of both runs: the first run's best stays unless a later model scored below it
    assert again.evaluate(HELD).bits_per_char <= first.kept[0] + 1e-9
    if second.kept is not None and second.kept[1] is None:
        assert again.iterations == first.kept[2]  # the first run's best was never beaten


def test_a_callback_that_stops_the_run_leaves_it_to_go_on_exactly():
    model = Model.new(CFG, TEXT)
    measured = []

    def callback(p):
        if p.kind == "valid":
            measured.append(p.iteration)
        if len(measured) == 3 and p.kind == "progress" and p.iteration > measured[-1] + 5:
            raise rnnpipe.Stop("enough")

    end = model.train(TEXT, epochs=EPOCHS, schedule="none", callback=callback, report_every=0)
    assert end.stopped == "enough" and model.resume.interrupted
    assert end.iteration > measured[-1] + 5 and model.iterations in measured
    again = Model.from_bytes(model.to_bytes())
    again.train(TEXT, epochs=EPOCHS, schedule="none")
    assert again.to_bytes() == overfit()[0].to_bytes()


def test_every_periodic_save_continued_ends_as_the_run_never_stopped(tmp_path, overfitted, monkeypatch):
    """A run killed outright (SIGKILL) leaves its last periodic save, which
    may come after any update: each, continued, ends as the run never stopped."""
    saved, save = [], session.Saver.save

    def keeping(self):
        # what the save writes, after every update; every 50th (and the last) written too, through the real save
        saved.append(self.model.to_bytes() if self.model.resume is not None else None)
        if len(saved) % 50 == 1 or saved[-1] is None:
            save(self)
        else:
            self.last, self.clean_at = rnnpipe.train.time.monotonic(), self.model.iterations

    monkeypatch.setattr(session.Saver, "save", keeping)
    path = tmp_path / "m.msgpack"
    with training.Session(path) as s:
        s.open({}, Model.new(CFG, TEXT))
        s.train(TEXT, Options(epochs=EPOCHS, schedule="none", save_every=1e-9))
    pending = [data for data in saved if data is not None]
    assert len(pending) > EPOCHS * 30  # after (nearly) every update
    assert Model.load(path).to_bytes() == overfitted[0].to_bytes()
    positions = [Model.from_bytes(data).resume for data in pending]
    assert any(p.epoch == 1 for p in positions) and any(p.current is not None for p in positions)
    monkeypatch.setattr(session.Saver, "save", save)
    for data in (pending[len(pending) // 3], pending[len(pending) // 2 + 1], pending[-1]):
        again = Model.from_bytes(data)
        again.train(TEXT, epochs=EPOCHS, schedule="none")
        assert again.to_bytes() == overfitted[0].to_bytes()


def test_a_text_of_many_blocks_is_held_out_whole_by_a_continued_run(monkeypatch):
    """Text of several blocks: the first pass sets each block's tail aside;
    a run continued in a later pass reads them again before it goes on."""
    monkeypatch.setattr(rnnpipe.train, "BLOCK_CHARS", 1000)
    whole = Model.new(CFG, TEXT)
    measured = []
    whole.train(TEXT, epochs=EPOCHS, schedule="none",
                callback=lambda p: p.kind == "valid" and measured.append(p.valid_bits))  # fmt: skip
    assert min(measured) < measured[-1]  # it went back at the end
    for polls in (20, 400):
        assert run_stopped(polls) == whole.to_bytes()


def test_the_notebook_gets_the_same_default(tmp_path):
    from IPython.testing import globalipapp
    from IPython.utils.capture import capture_output

    globalipapp.start_ipython()
    shell = globalipapp.get_ipython()
    shell.run_line_magic("load_ext", "rnnpipe_magic")
    try:
        line = f"-m {tmp_path / 'n.msgpack'} {' '.join(ARGS)} --epochs {EPOCHS} --schedule none -o run"
        with capture_output() as cap:
            result = shell.run_cell(f"%%charrnn_train {line}\n{TEXT}")
        result.raise_error()
        assert "kept the best held-out model" in cap.stdout + "".join(o.data.get("text/plain", "") for o in
                                                                       cap.outputs)  # fmt: skip
        trained = shell.user_ns["run"]
        assert trained.final.kept is not None and trained.heldout_bits == trained.final.kept[0]
        assert trained.model.to_bytes() == Model.load(tmp_path / "n.msgpack").to_bytes()
    finally:
        with capture_output():
            shell.run_line_magic("unload_ext", "rnnpipe_magic")


# -- the file keeps the best model and the later one ---------------------------------------


@pytest.fixture(scope="module")
def stopped():
    """The overfitting run asked to stop after 300 updates, past its best model."""
    model, count = Model.new(CFG, TEXT), [0]

    def stop():
        count[0] += 1
        return count[0] >= 300

    model.train(TEXT, epochs=EPOCHS, schedule="none", stop=stop)
    assert model.resume.current is not None
    return model


def test_info_says_the_file_holds_the_best_model_and_where_the_next_run_goes_on(tmp_path, stopped):
    stopped.save(tmp_path / "m.msgpack")
    r = run("info", "-m", "m.msgpack", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert (f"held out      {stopped.resume.best:.4f} bits/char: the best model its run measured, this one; the "
            "next run trains on from the later model it kept (iteration 300)") in r.stdout.decode()  # fmt: skip
    assert f"iterations    {stopped.iterations}\n" in r.stdout.decode()
    resume = json.loads(run("info", "-m", "m.msgpack", "--json", cwd=tmp_path).stdout)["resume"]
    assert resume["best_bits"] == stopped.resume.best and resume["goes_on_from"] == 300


def body_of(data):
    return msgpack.unpackb(msgpack.unpackb(data, raw=False)["model"], raw=False)


@pytest.mark.parametrize(
    "change, message",
    [
        (dict(current=b"not a model"), "state.resume.current, the later model: the file is not valid msgpack"),
        (dict(best=None), "state.resume.current should be a model file's bytes, with a best score, or nil"),
        (dict(current="text"), "state.resume.current should be a model file's bytes"),
        (dict(best=-1.0), "state.resume.best should be a non-negative float or nil"),
        (dict(best="2.3"), "state.resume.best should be a non-negative float or nil"),
        (dict(best=math.nan), "state.resume.best should be a non-negative float or nil"),
        (dict(current=Model.new(Config(hidden=8), "ab").snapshot()), "state.resume.current should be a model file "
                                                                     "with this file's config and no resume"),
    ],
)  # fmt: skip
def test_a_file_whose_best_score_or_later_model_is_wrong_is_refused(stopped, change, message):
    doc = body_of(stopped.to_bytes())
    doc["state"]["resume"].update(change)
    with pytest.raises(ModelFormatError, match=re.escape(message)):
        Model.from_bytes(_seal(doc))
    doc["state"]["resume"].update(best=None, current=None)  # a run that kept no best model: nothing to check
    assert Model.from_bytes(_seal(doc)).resume.best is None
