"""The command line end to end: the real `rnnpipe` executable through real
pipes (plus a few in-process checks of main() and of the stdin reader).

Models are tiny (16 units) so the whole file runs in well under a minute."""

from __future__ import annotations

import io
import json
import math
import os
import signal
import subprocess
import threading
import time

import pytest
from cli_util import RNNPIPE, TINY, Feeder, copy, info, one_error_line, popen, pty_run, run, shell, wait_for

from rnnpipe import Model, cli
from rnnpipe.modelfile import VERSION
from rnnpipe.reader import Source, TextReader


@pytest.fixture(scope="module")
def text(kafka):
    return kafka  # conftest's: examples/kafka.txt, shipped with the repository


@pytest.fixture(scope="module")
def trained(tmp_path_factory, text):
    """A tiny model trained once from stdin on 20k characters of kafka."""
    path = tmp_path_factory.mktemp("model") / "kafka.rnn"
    r = run("train", "-m", path, *TINY, "-q", input=text[:20000])
    assert r.returncode == 0, r.stderr
    assert r.stderr == b""  # -q: nothing but errors
    return path


# -- training ------------------------------------------------------------------


def test_train_from_stdin_learns_all_of_it(trained, text):
    d = info(trained)
    assert d["config"]["hidden"] == 16 and d["config"]["seq_length"] == 10
    assert d["vocabulary"] and set(d["vocabulary"]) == set(text[:20000])
    # every character but the last of each block is predicted once
    assert 19000 <= d["chars_seen"] < 20000
    assert d["iterations"] >= 19000 // 40
    assert d["last_loss_bits"] < math.log2(len(d["vocabulary"]))  # better than uniform


def test_train_from_files_and_stdin_dash(tmp_path):
    a, b = tmp_path / "a.txt", tmp_path / "b.txt"
    a.write_text("abc abc abc\n" * 50)
    b.write_text("xyz xyz xyz\n" * 50)
    model = tmp_path / "m.rnn"
    r = run("train", "-m", model, *TINY, a, "-", b, input="éèê " * 100)
    assert r.returncode == 0, r.stderr
    assert b"saved" in r.stderr and str(model).encode() in r.stderr  # the summary line
    assert set(info(model)["vocabulary"]) == set("abcxyz \néèê")


def test_resume_keeps_training_and_grows_the_vocabulary(trained, tmp_path):
    model = copy(trained, tmp_path / "m.rnn")
    before = info(model)
    r = run("train", "-m", model, "-q", input="ΩΩ Zebra Ωmega " * 40)  # no architecture options: the file's
    assert r.returncode == 0, r.stderr
    after = info(model)
    assert after["config"] == before["config"]
    assert after["iterations"] > before["iterations"]
    assert after["chars_seen"] > before["chars_seen"]
    old = before["vocabulary"]
    assert after["vocabulary"].startswith(old)  # old characters keep their places
    assert set(after["vocabulary"][len(old) :]) == {"Ω", "Z"} - set(old)
    # the new characters can now be used as a prime
    r = run("sample", "-m", model, "--prime", "Ω", "-n", "5", "--seed", "1")
    assert r.returncode == 0 and r.stdout.decode().startswith("Ω")


def test_architecture_options_that_disagree_with_the_file(trained, tmp_path):
    model = copy(trained, tmp_path / "m.rnn")
    data = model.read_bytes()
    have = Model.load(model).config.cell
    other = "rnn" if have != "rnn" else "gru"
    r = run("train", "-m", model, "--hidden", "32", "--cell", other, input="abc" * 100)
    line = one_error_line(r, 2)
    assert "hidden=16" in line and f"cell={have!r}" in line
    assert model.read_bytes() == data


def test_empty_input_leaves_the_model_untouched(trained, tmp_path):
    model = copy(trained, tmp_path / "m.rnn")
    data, mtime = model.read_bytes(), model.stat().st_mtime_ns
    r = run("train", "-m", model, input=b"")
    assert r.returncode == 0
    assert b"empty input" in r.stderr and b"untouched" in r.stderr
    assert model.read_bytes() == data and model.stat().st_mtime_ns == mtime
    fresh = tmp_path / "new.rnn"
    r = run("train", "-m", fresh, input=b"")
    assert r.returncode == 0 and b"not created" in r.stderr and not fresh.exists()


def test_short_input(tmp_path):
    model = tmp_path / "m.rnn"
    line = one_error_line(run("train", "-m", model, input="a"), 1)
    assert "too short" in line and not model.exists()
    # shorter than one batch (and than one sequence) still trains, with fewer streams
    r = run("train", "-m", model, "--seq-length", "50", "--batch-size", "32", "--hidden", "8", input="hello")
    assert r.returncode == 0, r.stderr
    d = info(model)
    assert d["iterations"] == 1 and d["chars_seen"] == 4


def test_invalid_utf8_is_replaced_and_reported(tmp_path):
    model = tmp_path / "m.rnn"
    r = run("train", "-m", model, *TINY, input=b"caf\xc3\xa9 \xff\xfe ok, all is well here " * 20)
    assert r.returncode == 0, r.stderr
    assert b"40 invalid UTF-8 byte(s)" in r.stderr
    assert set(info(model)["vocabulary"]) == set("café ok, all is well here\ufffd")


def test_diverging_training_keeps_the_last_good_model(trained, tmp_path, text):
    model = copy(trained, tmp_path / "m.rnn")
    data = model.read_bytes()
    r = run("train", "-m", model, "--lr", "1e38", input=text[:5000])
    assert r.returncode == 1 and r.stdout == b""
    *notes, line = r.stderr.decode().splitlines()
    assert notes[0] == "rnnpipe: changing lr 0.01 -> 1e+38 (saved with the model for later runs too)"
    assert len(notes) == 5 and all("rolled back to iteration" in n for n in notes[1:])  # four tries, each lower
    assert line.startswith("rnnpipe: error: training diverged: ") and line.endswith(f"{model} left as it was")
    assert model.read_bytes() == data
    fresh = tmp_path / "new.rnn"
    r = run("train", "-m", fresh, *TINY, "--lr", "1e38", "--save-every", "0.001", input=text[:5000])
    assert r.returncode == 1 and r.stderr.decode().splitlines()[-1].endswith(f"{fresh} not created")
    assert not fresh.exists()
    # a run that saved as it went puts the file back as it was before the run
    r = run("train", "-m", model, "--lr", "1e38", "--save-every", "0.001", input=text[:5000])
    assert r.returncode == 1 and model.read_bytes() == data


def test_valid_fraction_and_samples_are_reported(tmp_path, text):
    r = run(
        "train", "-m", tmp_path / "m.rnn", *TINY, "--valid-fraction", "0.1", "--sample-every", "100", input=text[:8000]
    )
    assert r.returncode == 0, r.stderr
    err = r.stderr.decode()
    assert "held-out" in err and "bits/char" in err
    assert err.count("sample at iteration") == (8000 - 800) // 40 // 100


def test_max_time_stops_and_saves(tmp_path, text):
    model = tmp_path / "m.rnn"
    tiny = ["--hidden", "8", "--seq-length", "5", "--batch-size", "1"]
    r = run("train", "-m", model, *tiny, "--max-time", "1", input=text)
    assert r.returncode == 0, r.stderr
    # stopped by the limit, not by the end of the text: it says so, and less than half was trained
    assert b"time limit" in r.stderr
    d = info(model)
    assert 0 < d["chars_seen"] < len(text) // 2


@pytest.mark.posix("a pseudo-terminal (pty, termios)")
def test_progress_bar_on_a_terminal(tmp_path, text):
    source = tmp_path / "in.txt"
    source.write_text(text[:60000])
    status, bar = pty_run(["train", "-m", tmp_path / "m.rnn", *TINY, "--valid-fraction", "0.2", source])
    assert status == 0
    assert "%|" in bar and "100%" in bar  # a bar in percent of the known total
    assert "chars/s" in bar and "bits/char" in bar and "held-out" in bar


# -- signals and streaming ---------------------------------------------------------


@pytest.mark.posix("sends SIGINT and SIGTERM to a trainer")
@pytest.mark.parametrize("sig, status", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_signal_during_training_saves_a_model_that_has_learned(tmp_path, text, sig, status):
    model = tmp_path / "m.rnn"
    p = popen("train", "-m", model, *TINY, "--save-every", "0.3", stdin=subprocess.PIPE, stderr=subprocess.PIPE)
    feeder = Feeder(p.stdin, text.encode())  # endless input, as from `tail -f`
    feeder.start()
    try:
        assert wait_for(model.exists), "no periodic save"
        first = Model.load(model).iterations
        time.sleep(0.3)
        p.send_signal(sig)
        assert p.wait(timeout=30) == status
    finally:
        feeder.stop.set()
        p.kill()
        p.wait()
    err = p.stderr.read().decode()
    assert "Traceback" not in err and "interrupted" in err
    m = Model.load(model)
    assert m.iterations > first > 0
    sample = text[:3000]
    fresh = Model.new(m.config, text=sample)
    assert m.evaluate(sample).bits_per_char < fresh.evaluate(sample).bits_per_char - 0.5


@pytest.mark.posix("stops the trainer with SIGINT")
def test_streaming_input_is_learned_before_it_ends(tmp_path, text):
    """As with `tail -f log | rnnpipe train`: text that arrives and then
    pauses is trained on while the pipe stays open."""
    model = tmp_path / "m.rnn"
    p = popen("train", "-m", model, *TINY, "--save-every", "0.2", stdin=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        time.sleep(0.5)
        assert p.poll() is None and not model.exists()  # nothing to learn yet
        p.stdin.write(text[:3000].encode())  # less than a second of text, then silence
        p.stdin.flush()
        assert wait_for(model.exists, timeout=20), "the input was not trained on while the pipe was open"
        time.sleep(0.3)
        p.send_signal(signal.SIGINT)
        assert p.wait(timeout=20) == 130
    finally:
        p.kill()
        p.wait()
    assert 2900 < Model.load(model).chars_seen < 3000


@pytest.mark.posix("sends SIGINT to a trainer")
def test_interrupt_while_waiting_for_input(tmp_path):
    model = tmp_path / "m.rnn"
    p = popen("train", "-m", model, stdin=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        time.sleep(2.0)  # started and waiting for input
        p.send_signal(signal.SIGINT)
        assert p.wait(timeout=10) == 130
    finally:
        p.kill()
        p.wait()
    err = p.stderr.read().decode()
    assert "interrupted before any training" in err and "Traceback" not in err
    assert not model.exists()


# -- sampling --------------------------------------------------------------------


def test_sample_is_deterministic_with_a_seed_and_exactly_n_long(trained):
    a = run("sample", "-m", trained, "-n", "300", "--seed", "7")
    b = run("sample", "-m", trained, "-n", "300", "--seed", "7")
    c = run("sample", "-m", trained, "-n", "300", "--seed", "8")
    assert a.returncode == 0 and a.stderr == b""
    assert a.stdout == b.stdout != c.stdout
    assert len(a.stdout.decode("utf-8")) == 300
    # the same text through the Python API: the CLI adds nothing and loses nothing
    assert a.stdout.decode() == Model.load(trained).sample(300, seed=7)


def test_sample_prime_temperature_and_top_k(trained):
    r = run("sample", "-m", trained, "-n", "50", "--prime", "The ", "--seed", "1")
    out = r.stdout.decode()
    assert r.returncode == 0 and out.startswith("The ") and len(out) == 54
    r2 = run("sample", "-m", trained, "-n", "50", "--prime", "The ", "--seed", "1", "--no-echo-prime")
    assert r2.stdout.decode() == out[4:]
    greedy = [run("sample", "-m", trained, "-n", "40", "--temperature", "0", "--seed", s).stdout for s in (1, 2)]
    assert greedy[0] == greedy[1] and len(greedy[0].decode()) == 40  # argmax ignores the seed
    top1 = run("sample", "-m", trained, "-n", "40", "--top-k", "1", "--seed", "5").stdout
    assert top1 == greedy[0]  # only the likeliest character: the same as argmax


@pytest.mark.posix("a bash pipeline into head, closed early (SIGPIPE)")
def test_sample_into_head_is_quiet(trained):
    for n in ("100000", "0"):
        r = shell(f"set -o pipefail; rnnpipe sample -m '{trained}' -n {n} | head -c 10", timeout=30)
        assert r.returncode == 0, r.stderr
        assert len(r.stdout) == 10
        assert r.stderr == b""


def test_unknown_prime_characters_are_named(trained):
    line = one_error_line(run("sample", "-m", trained, "--prime", "Ωx€"), 1)
    assert "'Ω'" in line and "'€'" in line and "'x'" not in line


# -- eval and info -----------------------------------------------------------------


def test_eval_reports_scores_and_unknown_characters(trained, text, tmp_path):
    held_out = text[-5000:] + "ΩΩ€"
    r = run("eval", "-m", trained, "--json", input=held_out)
    assert r.returncode == 0, r.stderr
    d = json.loads(r.stdout)
    model = Model.load(trained)
    want = model.evaluate(held_out)
    assert d["unknown"] == want.unknown >= 3
    assert d["chars"] == want.chars
    assert d["bits_per_char"] == pytest.approx(want.bits_per_char, rel=1e-9)
    assert d["perplexity"] == pytest.approx(2 ** d["bits_per_char"], rel=1e-9)
    assert d["nats_per_char"] == pytest.approx(d["bits_per_char"] * math.log(2), rel=1e-9)
    f = tmp_path / "held.txt"
    f.write_text(held_out)
    out = run("eval", "-m", trained, f).stdout.decode()
    assert f"{d['bits_per_char']:.4f}" in out and "perplexity" in out and f"unknown       {d['unknown']}" in out


def test_eval_streams_long_input_in_blocks(trained, text, monkeypatch):
    """However small the pieces the reader hands over, the text is scored as
    one stream: the same figures as the API's, to the bit."""
    import rnnpipe.reader

    class SmallBlocks(TextReader):
        def __init__(self, sources, **kw):
            super().__init__(sources, **{**kw, "block_chars": 1000})

    monkeypatch.setattr(rnnpipe.reader, "TextReader", SmallBlocks)
    held_out = text[-4500:] + "Ω" + text[:500]
    out = io.StringIO()
    assert cli.main(["eval", "-m", str(trained), "--json"], stdin=io.StringIO(held_out), stdout=out) == 0
    d = json.loads(out.getvalue())
    want = Model.load(trained).evaluate(held_out)
    assert d["chars"] == want.chars and d["unknown"] == want.unknown
    assert d["bits_per_char"] == want.bits_per_char


def test_info_describes_the_model(trained):
    r = run("info", "-m", trained)
    assert r.returncode == 0 and r.stderr == b""
    out = r.stdout.decode()
    m = Model.load(trained)
    assert f"version {VERSION}" in out
    assert f"parameters    {m.num_params}" in out
    assert f"iterations    {m.iterations}" in out
    assert f"chars seen    {m.chars_seen}" in out
    assert f"{len(m.vocab)} characters: " in out and "\\n" in out  # newline shown escaped
    assert out.count("\n") == 11  # one line per item: nothing raw from the vocabulary
    d = info(trained)
    assert d["version"] == VERSION and d["parameters"] == m.num_params
    assert d["vocabulary"] == "".join(m.vocab.chars)
    assert d["last_loss_bits"] == pytest.approx(m.last_loss / math.log(2))


# -- errors and help ------------------------------------------------------------------


@pytest.mark.parametrize(
    "args",
    [
        [],
        ["bogus"],
        ["train"],
        ["train", "-m", "x.rnn", "--hidden", "many"],
        ["train", "-m", "x.rnn", "--cell", "transformer"],
        ["train", "-m", "x.rnn", "--valid-fraction", "1.5"],
        ["train", "-m", "x.rnn", "--epochs", "0"],
        ["train", "-m", "x.rnn", "--hidden", "0"],
        ["sample", "-m", "x.rnn", "-n", "-1"],
        ["sample", "-m", "x.rnn", "--temperature", "-1"],
        ["info", "-m", "x.rnn", "--colour"],
    ],
)
def test_usage_errors_exit_2(args, tmp_path):
    one_error_line(run(*args, cwd=tmp_path), 2)
    assert not (tmp_path / "x.rnn").exists()


def test_runtime_errors_exit_1(trained, tmp_path):
    missing = tmp_path / "missing.rnn"
    for command in ("sample", "info", "eval"):
        assert "no such model" in one_error_line(run(command, "-m", missing, input=""), 1)
    corrupt = tmp_path / "corrupt.rnn"
    corrupt.write_bytes(b"\x93not a model")
    assert str(corrupt) in one_error_line(run("sample", "-m", corrupt), 1)
    assert str(corrupt) in one_error_line(run("train", "-m", corrupt, input="abc" * 50), 1)
    assert corrupt.read_bytes() == b"\x93not a model"
    truncated = copy(trained, tmp_path / "truncated.rnn")
    truncated.write_bytes(truncated.read_bytes()[:-100])
    one_error_line(run("info", "-m", truncated), 1)
    assert "directory" in one_error_line(run("train", "-m", tmp_path, input="abc" * 50), 1)
    assert "does not exist" in one_error_line(run("train", "-m", tmp_path / "no" / "m.rnn", input="abc"), 1)
    line = one_error_line(run("train", "-m", tmp_path / "m.rnn", tmp_path / "nofile.txt"), 1)
    assert "nofile.txt" in line and not (tmp_path / "m.rnn").exists()
    assert "empty input" in one_error_line(run("eval", "-m", trained, input=""), 1)


def test_main_with_injected_streams(trained, text):
    out, err = io.StringIO(), io.StringIO()
    assert cli.main(["info", "-m", str(trained), "--json"], stdout=out, stderr=err) == 0
    assert json.loads(out.getvalue())["iterations"] > 0 and err.getvalue() == ""
    err = io.StringIO()
    assert cli.main(["sample", "-m", str(trained), "--prime", "Ω"], stdout=out, stderr=err) == 1
    assert err.getvalue().startswith("rnnpipe: error: ") and err.getvalue().count("\n") == 1
    assert RNNPIPE  # the subprocess tests above run this executable


# -- the stdin reader -------------------------------------------------------------------


def _reader_on_pipe(**kw):
    r, w = os.pipe()
    return TextReader([Source("<pipe>", fd=r, close=True)], **kw), os.fdopen(w, "wb", buffering=0)


def test_reader_decodes_utf8_split_anywhere_and_bounds_blocks():
    data = ("naïve café – 東京 " * 3000).encode() + b"\xff"
    reader, w = _reader_on_pipe(block_chars=5000)

    def write():
        for i in range(0, len(data), 7):  # splits multibyte characters
            w.write(data[i : i + 7])
        w.close()

    threading.Thread(target=write, daemon=True).start()
    blocks = [b for b in reader.blocks() if b is not None]  # None: a moment with nothing new
    assert "".join(blocks) == data[:-1].decode() + "\ufffd"
    assert reader.replaced == 1 and reader.bytes == len(data)
    assert max(len(b) for b in blocks) <= 5000
    assert len(blocks) > 1


def test_reader_says_while_a_pipe_is_silent():
    reader, w = _reader_on_pipe()
    got = []

    def consume():
        for block in reader.blocks():
            got.append(block)

    t = threading.Thread(target=consume, daemon=True)
    t.start()
    w.write(b"x" * 10)  # handed over as it comes
    assert wait_for(lambda: got, timeout=5)
    assert got[0] == "x" * 10
    # then, while nothing comes, None now and then: the trainer acts on what it has (train.LATENCY)
    assert wait_for(lambda: len(got) >= 3, timeout=5) and got[1] is None and got[2] is None
    w.write(b"y" * 30)
    w.close()
    t.join(5)
    text = [b for b in got if b is not None]
    assert text[:2] == ["x" * 10, "y" * 30] and "".join(text) == "x" * 10 + "y" * 30


def test_status_lines_without_a_terminal_and_quiet():
    from rnnpipe.progress import Display
    from rnnpipe.train import Progress

    p = Progress("progress", 120, 250_000, 1_000_000, 10.0, 1.5, math.log(2) * 2.5, valid_bits=2.75)
    err = io.StringIO()
    display = Display(err, tty=False, interval=0)
    display(p)
    display(Progress("sample", 120, 0, None, 1.0, 1.0, 1.0, sample="To be"))
    line, *rest = err.getvalue().splitlines()
    assert line == (
        "rnnpipe: iteration 120, 250k chars, 25k chars/s, loss 2.500 bits/char, held-out 2.750 bits/char, "
        "25% done, ETA 0:30"
    )
    assert "To be" in rest
    quiet = io.StringIO()
    Display(quiet, quiet=True, tty=True, interval=0)(p)
    assert quiet.getvalue() == ""
