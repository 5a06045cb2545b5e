"""rnnpipe.sampling, the one sampling session under `rnnpipe sample`,
%charrnn_sample and Model.sample (issue 19): its options and their errors,
the pieces it yields, and the bound on a stop condition given without n.
Through the real executable: tests/test_sample_options.py."""

from __future__ import annotations

import io
import itertools

import pytest

import rnnpipe.sampling
from rnnpipe import Config, Model, cli, options
from rnnpipe.errors import SettingError
from rnnpipe.sampling import SampleOptions, pieces

TEXT = "the cat sat on the mat.\nthe dog sat on the log.\n" * 40


@pytest.fixture(scope="module")
def model():
    m = Model.new(Config(hidden=16, seq_length=10, batch_size=4), text=TEXT)
    m.train(TEXT, epochs=2)
    return m


def frozen():
    return 0.0


# -- the options ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "kwargs, name, python, command_line",
    [
        ({"n": -1}, "n", "n must be 0 (no end) or more characters, not -1", "-n must be 0 (no end) or more"),
        ({"beam": 0}, "beam", "beam must be at least 1, not 0", "--beam must be at least 1, not 0"),
        (
            {"beam": 2, "top_k": 3},
            "beam",
            "beam searches for the likeliest text: it takes no temperature or top_k",
            "--beam searches for the likeliest text: it takes no --temperature or --top-k",
        ),
        ({"lines": 0}, "lines", "lines must be at least 1, not 0", "--lines must be at least 1, not 0"),
        ({"until": ""}, "until", "until needs a text to stop after, not an empty one", "--until needs a text to stop"),
        (
            {"prime": "a", "prime_file": "p"},
            "prime_file",
            "give prime or prime_file, not both",
            "give --prime or --prime-file",
        ),
    ],
)
def test_options_are_refused_with_each_faces_words(kwargs, name, python, command_line):
    with pytest.raises(SettingError) as e:
        SampleOptions(**kwargs)
    assert e.value.name == name and str(e.value) == python
    assert e.value.flag(options.FLAGS).startswith(command_line)


def test_n_defaults_to_300_and_a_stop_condition_to_the_bound(monkeypatch):
    assert SampleOptions().length() == 300
    assert SampleOptions(lines=3).length() == SampleOptions(until=".").length() == 100_000
    assert SampleOptions(n=0, lines=3).length() == 0  # given, -n is kept: 0 is no end
    assert SampleOptions(n=50, until=".").length() == 50
    monkeypatch.setattr(rnnpipe.sampling, "MAX_CHARS", 7)
    assert SampleOptions(lines=3).length() == 7


def test_a_stop_condition_that_never_comes_ends_at_the_bound(model, monkeypatch, tmp_path):
    monkeypatch.setattr(rnnpipe.sampling, "MAX_CHARS", 700)
    assert "@" not in model.vocab
    assert len(model.sample(until="@")) == 700  # a text the model cannot write
    assert len(model.sample(until="@", prime="the ", echo_prime=False)) == 700
    assert model.sample(until="@", seed=3) == model.sample(700, seed=3)
    assert len(model.sample(900, until="@")) == 900  # -n given: the bound is not used
    model.save(tmp_path / "m.msgpack")
    out = io.StringIO()
    assert cli.main(["sample", "-m", str(tmp_path / "m.msgpack"), "--until", "@", "--seed", "3"], stdout=out) == 0
    assert out.getvalue() == model.sample(700, seed=3)


def test_lines_without_n_is_not_cut_at_the_default(model):
    # this model's lines are 24 characters: 40 lines need far more than 300
    out = model.sample(lines=40, seed=1)
    assert out.count("\n") == 40 and out.endswith("\n") and len(out) > 300
    assert out == model.sample(0, lines=40, seed=1)  # the stop condition alone decides
    assert len(model.sample(seed=1)) == 300 and model.sample(300, lines=40, seed=1).count("\n") < 40


# -- the pieces ----------------------------------------------------------------------


def test_pieces_are_the_prime_with_the_first_character_then_lines(model):
    got = list(pieces(model, SampleOptions(400, prime="the ", seed=2), clock=frozen))
    text = "".join(got)
    assert text == model.sample(400, prime="the ", seed=2)
    assert got[0] == text[:5]  # the prime, and the first character with it: a bad prime fails before any piece
    # then cut right after each newline, nowhere else while the clock stands still
    assert got[1:] == [line for line in text[5:].splitlines(keepends=True)]


def test_pieces_are_cut_at_a_size_and_at_a_time(model, monkeypatch):
    monkeypatch.setattr(rnnpipe.sampling, "PIECE_CHARS", 3)
    got = list(pieces(model, SampleOptions(200, seed=4, echo_prime=False), clock=frozen))
    assert "".join(got) == model.sample(200, seed=4)
    assert all(len(p) <= 3 for p in got)
    assert all(len(p) == 3 or p.endswith("\n") for p in got[1:-1])
    monkeypatch.setattr(rnnpipe.sampling, "PIECE_CHARS", 4096)
    ticks = itertools.count()  # a second between one character and the next: longer than PIECE_SECONDS
    got = list(pieces(model, SampleOptions(50, seed=4), clock=lambda: next(ticks)))
    assert got == list(model.sample(50, seed=4))


def test_model_sample_writes_the_prime_first_unless_told_not_to():
    m = Model.new(Config(hidden=8), text="abc\n")
    generated = "".join(m.stream(20, "ab", seed=1))  # stream: the generated characters only
    assert len(generated) == 20
    assert m.sample(20, "ab", seed=1) == "ab" + generated
    assert m.sample(20, "ab", seed=1, echo_prime=False) == generated
    assert "".join(pieces(m, SampleOptions(20, prime="ab", seed=1, echo_prime=False))) == generated
    assert m.sample(20, "aZb", seed=1, skip_unknown=True) == "aZb" + generated  # as given, read without Z


def test_a_bad_prime_fails_before_any_piece_and_skipped_characters_are_reported(model):
    with pytest.raises(ValueError, match="never seen: 'Z'"):
        pieces(model, SampleOptions(prime="Zebra"))  # raised by the call itself, not by the first next()
    seen = []
    text = pieces(model, SampleOptions(20, prime="Zebra!", skip_unknown=True, seed=1), skipped=seen.append)
    assert len(seen) == 1 and sorted(seen[0]) == sorted("!Zbr")
    assert next(text).startswith("Zebra!")  # written as given
    seen.clear()
    list(pieces(model, SampleOptions(20, prime="the", skip_unknown=True), skipped=seen.append))
    assert seen == []  # nothing left out, nothing to say


def test_prime_file_errors_name_the_setting(tmp_path):
    m = Model.new(Config(hidden=8), text="abc\n")
    with pytest.raises(SettingError) as e:
        pieces(m, SampleOptions(prime_file=str(tmp_path / "none{1}.txt")))
    assert e.value.name == "prime_file"
    assert e.value.flag(options.FLAGS) == f"--prime-file {tmp_path / 'none{1}.txt'}: no such file"
    (tmp_path / "p.txt").write_bytes(b"ab\xff")
    with pytest.raises(SettingError, match=r"^prime_file .*p.txt: not UTF-8 text \(byte 0xff at offset 2\)$"):
        pieces(m, SampleOptions(prime_file=str(tmp_path / "p.txt")))
    (tmp_path / "p.txt").write_text("ab\nc", encoding="utf-8")
    from_file = "".join(pieces(m, SampleOptions(10, prime_file=str(tmp_path / "p.txt"), seed=1)))
    assert from_file == m.sample(10, prime="ab\nc", seed=1)
    assert "".join(pieces(m, SampleOptions(10, prime_file="-", seed=1), stdin=io.StringIO("ab\nc"))) == from_file


class Interrupted:
    """A model whose stream is interrupted (Ctrl-C) after a few characters."""

    def __init__(self, model, text):
        self.vocab, self.text = model.vocab, text

    def stream(self, *args, **kwargs):
        yield from self.text
        raise KeyboardInterrupt


def test_an_interrupt_still_yields_what_was_generated_then_is_raised_again(model):
    got = []
    with pytest.raises(KeyboardInterrupt):
        for piece in pieces(Interrupted(model, "ab\ncd"), SampleOptions(prime="the "), clock=frozen):
            got.append(piece)
    assert got == ["the a", "b\n", "cd"]
