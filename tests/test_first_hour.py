"""A newcomer's first hour with the command line and the Python API (issue 9):
options that mean what they say, driven as a user drives them: the real
executable, real pipes, real terminals (pseudo-terminals)."""

from __future__ import annotations

import io
import math
import os
import re
import subprocess

import numpy as np
import pytest
from cli_util import ROOT, TINY, info, one_error_line, popen, pty_run, run, wait_for

import rnnpipe.train
from rnnpipe import Config, Display, Model, Progress, cli

SHAKESPEARE = ROOT / "examples" / "shakespeare.txt"


# -- 6. --max-time without --epochs trains for that time ------------------------------


def test_max_time_alone_passes_over_a_file_until_the_time_is_up(tmp_path):
    model, source = tmp_path / "m.msgpack", tmp_path / "short.txt"
    # short enough that even a busy machine passes over it many times in 3 s
    source.write_text(SHAKESPEARE.read_text()[:2000])
    # nothing held out: keep-best would take the counters back to its best model
    r = run("train", "-m", model, *TINY, "--valid-fraction", "0", "--max-time", "3", source)
    assert r.returncode == 0, r.stderr
    # the run's own clock says it trained the 3 s, pass after pass
    last = r.stderr.decode().splitlines()[-1]
    assert last.startswith("rnnpipe: time limit: ") and " passes) in 3." in last, last
    passes = int(re.search(r"\((\d+) passes\)", last).group(1))
    assert passes >= 2 and info(model)["chars_seen"] > (passes - 1) * 0.9 * 2000


def test_stdin_is_one_pass_even_with_a_time_limit(tmp_path):
    model = tmp_path / "m.msgpack"
    text = SHAKESPEARE.read_text()[:20000]
    r = run("train", "-m", model, *TINY, "--max-time", "30", input=text)
    assert r.returncode == 0, r.stderr
    # ended by the input, not by the 30 s: one pass, however long it took
    assert b"end of input" in r.stderr and b"passes" not in r.stderr
    assert info(model)["chars_seen"] < len(text)


def test_epochs_bound_passes_over_files_read_again_from_disk(tmp_path):
    text = SHAKESPEARE.read_text()[:6000]
    one, three = tmp_path / "one.msgpack", tmp_path / "three.msgpack"
    source = tmp_path / "in.txt"
    source.write_text(text)
    assert run("train", "-m", one, *TINY, "-q", source).returncode == 0
    # at a constant rate: a pipe's length is unknown, so it has no schedule by characters (train --help); and
    # nothing held out, so that each pass trains on what the one pass does
    passes = ["--epochs", "3", "--schedule", "none", "--valid-fraction", "0"]
    r = run("train", "-m", three, *TINY, *passes, "--max-time", "600", source)
    assert r.returncode == 0 and b"(3 passes)" in r.stderr, r.stderr
    assert info(three)["chars_seen"] == 3 * info(one)["chars_seen"]
    # the passes over stdin (kept in memory) and over the file (read again) train alike, holding out alike
    piped = tmp_path / "piped.msgpack"
    assert run("train", "-m", piped, *TINY, *passes, "-q", input=text).returncode == 0
    assert Model.load(piped).to_bytes() == Model.load(three).to_bytes()
    held = [tmp_path / "held-file.msgpack", tmp_path / "held-piped.msgpack"]
    assert run("train", "-m", held[0], *TINY, *passes[:4], "-q", source).returncode == 0
    assert run("train", "-m", held[1], *TINY, *passes[:4], "-q", input=text).returncode == 0
    assert Model.load(held[0]).to_bytes() == Model.load(held[1]).to_bytes() != Model.load(three).to_bytes()


def test_the_api_trains_a_string_for_the_time_given():
    model = Model.new(Config(hidden=8, batch_size=2, seq_length=10))
    text = "to be or not to be, that is the question. " * 20
    final = model.train(text, max_time=1.0)
    assert final.stopped == "time limit" and final.elapsed >= 1.0 and final.epoch > 1
    once = Model.new(Config(hidden=8, batch_size=2, seq_length=10)).train(text)
    assert once.stopped == "end of input" and once.epoch == 1
    # a text too short for one iteration ends at the end of its input instead of looping until the limit
    short = Model.new(Config(hidden=8))
    final = short.train("a", max_time=30)
    assert final.stopped == "end of input" and short.iterations == 0


def test_bad_run_limits_are_value_errors_in_the_core():
    model = Model.new(Config(hidden=8))
    for kwargs in ({"max_time": 0}, {"max_time": -1}, {"epochs": 0}, {"epochs": 1.5}):
        with pytest.raises(ValueError):
            model.train("abcabc", **kwargs)


# -- 7. progress counts toward whichever limit ends the run first ---------------------


def test_status_line_counts_toward_the_time_limit():
    # 3% of the characters of 100 passes, but a third of the 15 s limit
    p = Progress("progress", 9, 30_000, 1_000_000, 5.0, 1.0, 1.0, max_time=15.0)
    assert p.done == pytest.approx(1 / 3) and p.eta == pytest.approx(10.0)
    err = io.StringIO()
    Display(err, tty=False, interval=0)(p)
    assert "33% done, ETA 0:10" in err.getvalue()
    # and toward the characters when they end it first
    p = Progress("progress", 9, 900_000, 1_000_000, 9.0, 1.0, 1.0, max_time=600.0)
    assert p.done == pytest.approx(0.9) and p.eta == pytest.approx(1.0)


def test_progress_bar_follows_the_time_limit(tmp_path):
    status, shown = pty_run(["train", "-m", tmp_path / "m.msgpack", *TINY, "--epochs", "1000", "--max-time", "3",
                             SHAKESPEARE])  # fmt: skip
    assert status == 0, shown
    percents = [int(p) for p in re.findall(r"(\d+)%\|", shown)]
    # by characters a thousand passes would stand at a few percent after 3 s
    assert percents and max(percents) >= 90, shown[-500:]
    assert "time limit" in shown


# -- 8. sample ends with a newline on a terminal, bytes exact in a pipe -----------------


def test_sample_ends_its_line_on_a_terminal_only(small):
    status, shown = pty_run(["sample", "-m", small, "-n", "40", "--seed", "1"])
    assert status == 0
    piped = run("sample", "-m", small, "-n", "40", "--seed", "1").stdout.decode()
    assert len(piped) == 40  # into a pipe: the 40 characters, nothing added
    # on the terminal (which shows \n as \r\n): the same text, then a newline
    assert shown.replace("\r\n", "\n") == piped + "\n"


# -- 9. the small surprises ----------------------------------------------------------


def test_infinite_temperature_samples_uniformly(small):
    r = run("sample", "-m", small, "-n", "20000", "--seed", "2", "--temperature", "inf")
    assert r.returncode == 0 and r.stderr == b"", r.stderr
    vocab = Model.load(small).vocab.chars
    counts = np.array([r.stdout.decode().count(c) for c in vocab])
    expected = 20000 / len(vocab)
    chi2 = float(((counts - expected) ** 2 / expected).sum())
    assert chi2 < 2 * len(vocab), chi2  # a chi-square near its degrees of freedom: uniform


@pytest.mark.parametrize("command", ["train", "sample", "eval", "info"])
def test_a_bad_option_points_at_the_commands_help(command, small):
    line = one_error_line(run(command, "-m", small, "--colour", input=""), 2)
    assert line.endswith(f"(see rnnpipe {command} --help)"), line


def test_dropout_on_one_layer_is_refused(tmp_path, small):
    line = one_error_line(run("train", "-m", tmp_path / "m.msgpack", "--dropout", "0.5", input="abc" * 100), 2)
    assert "dropout 0.5 would do nothing" in line and "2 or more layers" in line
    assert not (tmp_path / "m.msgpack").exists()
    line = one_error_line(run("train", "-m", small, "--dropout", "0.3", input="abc" * 100), 2)
    assert "dropout 0.3 would do nothing" in line
    r = run("train", "-m", tmp_path / "two.msgpack", *TINY, "--layers", "2", "--dropout", "0.5", "-q",
            input="abc" * 100)  # fmt: skip
    assert r.returncode == 0 and info(tmp_path / "two.msgpack")["config"]["dropout"] == 0.5
    with pytest.raises(ValueError, match="would do nothing"):
        Model.new(Config(dropout=0.2))


def test_sampling_a_model_still_being_created_names_the_run(tmp_path):
    model = tmp_path / "m.msgpack"
    trainer = popen("train", "-m", model, *TINY, stdin=subprocess.PIPE, stderr=subprocess.DEVNULL)
    try:
        trainer.stdin.write(b"some text to learn from, " * 10)
        trainer.stdin.flush()
        assert wait_for(lambda: os.path.exists(f"{model}.lock"))
        line = one_error_line(run("sample", "-m", model), 1)
        assert f"no model file yet: rnnpipe train (pid {trainer.pid}) is creating it" in line, line
    finally:
        trainer.stdin.close()
        assert trainer.wait(timeout=60) == 0
    assert "no such model file" in one_error_line(run("sample", "-m", tmp_path / "other.msgpack"), 1)


def test_eval_from_a_terminal_says_how_to_end_the_text(small):
    status, shown = pty_run(["eval", "-m", small], stdin_text="To be, or not to be")
    assert status == 0, shown
    assert "reading text to score from the terminal; end it with Ctrl-D" in shown
    assert "bits/char" in shown


def test_typing_text_to_train_on_draws_no_progress_bar(tmp_path):
    typed = "Now is the winter of our discontent made glorious summer by this sun of York"
    status, shown = pty_run(["train", "-m", tmp_path / "m.msgpack", *TINY], stdin_text=typed)
    assert status == 0, shown
    assert "end it with Ctrl-D (no progress is shown while you type)" in shown
    assert "%|" not in shown and "it/s" not in shown and "char/s" not in shown
    assert "end of input: trained on" in shown  # the summary at the end


# -- 10. binary input is refused, with a way through -------------------------------


def test_invalid_utf8_heavy_input_is_binary_but_latin1_text_is_not(tmp_path):
    noise = bytes(np.random.default_rng(0).integers(128, 256, 5000, dtype=np.uint8))
    line = one_error_line(run("train", "-m", tmp_path / "m.msgpack", input=noise), 1)
    assert "binary data, not text" in line and "invalid UTF-8" in line and "--binary" in line
    # text in Latin-1 has an invalid byte per accented letter: a percent or so, still text
    prose = (
        "Le petit prince demanda au renard ce que voulait dire apprivoiser, et il attendit très longtemps près de lui. "
    )
    latin1 = (prose * 50).encode("latin-1")
    r = run("train", "-m", tmp_path / "m.msgpack", *TINY, input=latin1)
    assert r.returncode == 0 and b"invalid UTF-8 byte(s) in the input were replaced" in r.stderr, r.stderr


def test_binary_file_named_on_the_command_line(tmp_path):
    blob = tmp_path / "blob.bin"
    blob.write_bytes(b"text at first " * 10 + b"\x00\x01\x02" * 100)
    line = one_error_line(run("train", "-m", tmp_path / "m.msgpack", blob), 1)
    assert line.startswith(f"rnnpipe: error: {blob}: binary data, not text (it has NUL bytes)"), line
    assert run("train", "-m", tmp_path / "m.msgpack", *TINY, "--binary", "-q", blob).returncode == 0


# -- 11. a prime with unknown characters -----------------------------------------------


def test_unknown_prime_characters_refused_or_skipped(small):
    line = one_error_line(run("sample", "-m", small, "--prime", "Zoë said: 1 2 3"), 1)
    assert "never seen" in line and "'ë'" in line and "--skip-unknown" in line
    r = run("sample", "-m", small, "--prime", "Zoë said: 1 2 3", "--skip-unknown", "-n", "20", "--seed", "4")
    assert r.returncode == 0
    warning = r.stderr.decode()
    assert warning.startswith("rnnpipe: warning: left out of the prime") and "'ë'" in warning
    kept = "".join(c for c in "Zoë said: 1 2 3" if c in Model.load(small).vocab)
    same = Model.load(small).sample(20, prime=kept, seed=4, echo_prime=False)
    assert r.stdout.decode() == "Zoë said: 1 2 3" + same  # the prime as typed, then text conditioned on the rest


# -- 15. the Python API ----------------------------------------------------------------


def test_model_describes_itself():
    model = Model.new(Config(cell="lstm", hidden=16), text="hello")
    assert model.__doc__ and "Model.new" in model.__doc__
    assert repr(model) == (
        f"<rnnpipe.Model lstm 1x16, {model.num_params:,} parameters, 4 characters, 0 iterations, "
        f"smooth loss {math.log2(4):.3f} bits/char>"
    )


def test_display_prints_training_progress_like_the_command_line():
    err = io.StringIO()
    model = Model.new(Config(hidden=8, batch_size=2, seq_length=10))
    final = model.train("all the world's a stage. " * 400, epochs=2, callback=Display(err, interval=0),
                        report_every=0)  # fmt: skip
    lines = err.getvalue().splitlines()
    assert lines and all(line.startswith("rnnpipe: iteration ") for line in lines)
    assert "bits/char" in lines[-1] and "% done, ETA" in lines[-1]
    assert final.loss_bits == pytest.approx(final.loss_nats / math.log(2))
    assert final.smooth_bits == pytest.approx(model.smooth_loss / math.log(2))


# -- threads ---------------------------------------------------------------------------


@pytest.mark.parametrize("given, want", [([], 1), (["--threads", "2"], 2)])
def test_training_uses_the_blas_threads_asked_for(tmp_path, monkeypatch, given, want):
    from threadpoolctl import threadpool_info

    seen = []
    fit = rnnpipe.train.Run.fit

    def recording(self, *args, **kwargs):  # as the training loop starts
        seen.append({p["num_threads"] for p in threadpool_info() if p["user_api"] == "blas"})
        return fit(self, *args, **kwargs)

    monkeypatch.setattr(rnnpipe.train.Run, "fit", recording)
    out = io.StringIO()
    status = cli.main(["train", "-m", str(tmp_path / "m.msgpack"), *TINY, "-q", *given],
                      stdin=io.StringIO("some text to learn " * 30), stdout=out, stderr=out)  # fmt: skip
    assert status == 0, out.getvalue()
    assert seen == [{want}]
    assert "--threads must be at least 1" in one_error_line(run("train", "-m", tmp_path / "x", "--threads", "0"), 2)
