"""Sampling for real use (issue 13): --beam, --lines, --until and
--prime-file, through the real executable and real pipes: where the output
stops and what it starts with. Beam search is checked against an exhaustive
search on a tiny model. The notebook's side is tests/test_magic_show.py."""

from __future__ import annotations

import itertools
import math
import signal
import subprocess

import numpy as np
import pytest
from cli_util import ROOT, TINY, one_error_line, popen, run, shell
from texts import kafka_text

from rnnpipe import Config, Model, sampling
from rnnpipe.cells import net
from rnnpipe.sample import beam_search

SHAKESPEARE = ROOT / "examples" / "shakespeare.txt"


def sample(model, *args, input=None):
    r = run("sample", "-m", model, *args, input=input)
    assert r.returncode == 0, r.stderr
    return r.stdout.decode("utf-8")


# -- --lines and --until: where the output stops ------------------------------------


def test_lines_stops_right_after_the_nth_newline(small):
    plain = sample(small, "-n", "3000", "--seed", "4", "--prime", "ROMEO:")
    out = sample(small, "-n", "3000", "--seed", "4", "--prime", "ROMEO:", "--lines", "3")
    assert out.startswith("ROMEO:") and out.endswith("\n")
    generated = out[len("ROMEO:") :]
    assert generated.count("\n") == 3
    assert plain.startswith(out)  # the same text, cut: the stopping rule changes nothing before it
    # the prime's own lines do not count
    primed = sample(small, "-n", "3000", "--seed", "4", "--prime", "A\nB\n", "--lines", "1")
    assert primed.startswith("A\nB\n") and primed[4:].count("\n") == 1 and primed.endswith("\n")


def test_until_stops_right_after_the_text_first_appears_after_the_prime(small):
    plain = sample(small, "-n", "3000", "--seed", "2", "--prime", "the ")
    generated = plain[len("the ") :]
    stop = generated.index("e ") + 2
    out = sample(small, "-n", "3000", "--seed", "2", "--prime", "the ", "--until", "e ")
    assert out == "the " + generated[:stop]  # "the " holds "e " itself: the prime is not searched
    assert out.endswith("e ") and out[len("the ") :].count("e ") == 1


def test_n_and_the_stopping_rules_whichever_comes_first(small):
    plain = sample(small, "-n", "200", "--seed", "6")
    assert sample(small, "-n", "200", "--seed", "6", "--until", "QQQ@") == plain  # never appears: -n ends it
    assert sample(small, "-n", "200", "--seed", "6", "--lines", "1000") == plain
    first_line = plain[: plain.index("\n") + 1]
    assert sample(small, "-n", "200", "--seed", "6", "--lines", "1") == first_line
    assert sample(small, "-n", "5", "--seed", "6", "--lines", "1", "--until", "\n") == plain[:5]
    # and with -n 0 (no length limit) the rule alone ends it
    out = sample(small, "-n", "0", "--seed", "6", "--lines", "2")
    assert out.count("\n") == 2 and out.endswith("\n")
    assert sample(small, "-n", "0", "--seed", "6", "--until", plain[30:33]).endswith(plain[30:33])


@pytest.fixture(scope="module")
def long_lines(tmp_path_factory):
    """A tiny model trained on Kafka's paragraphs, one line each (300 to 4,900
    characters): it writes long lines."""
    paragraphs = [p for p in kafka_text().split("\n") if len(p) > 300]
    path = tmp_path_factory.mktemp("long") / "long.msgpack"
    r = run("train", "-m", path, *TINY, "-q", input="\n".join(paragraphs)[:40_000] + "\n")
    assert r.returncode == 0, r.stderr
    return path


def test_lines_without_n_are_not_cut_at_ns_default(long_lines):
    out = sample(long_lines, "--seed", "3", "--lines", "3")
    assert out.count("\n") == 3 and out.endswith("\n")
    assert len(out) > 300  # three whole lines, where -n's default of 300 held less than one
    assert sample(long_lines, "--seed", "3").count("\n") < 3
    assert len(sample(long_lines, "--seed", "3")) == 300  # without a stop condition, -n's default
    assert sample(long_lines, "--seed", "3", "-n", "0", "--lines", "3") == out  # the stop condition alone decides
    until = sample(long_lines, "--seed", "3", "--until", out[400:405])
    assert until == out[: out.index(out[400:405]) + 5]


def test_a_stop_condition_that_never_comes_ends_after_the_bound(small):
    assert "@" not in Model.load(small).vocab
    out = sample(small, "--seed", "5", "--until", "@")  # text the model cannot write
    assert len(out) == 100_000 == sampling.MAX_CHARS
    assert out.startswith(sample(small, "--seed", "5"))


@pytest.mark.parametrize(
    "args, kwargs",
    [
        (["-n", "200", "--prime", "ROMEO:"], {"n": 200, "prime": "ROMEO:"}),
        (["--prime", "ROMEO:"], {"prime": "ROMEO:"}),  # neither gives n: both write 300 characters after the prime
        (["-n", "50", "--prime", "ROMEO:", "--no-echo-prime"], {"n": 50, "prime": "ROMEO:", "echo_prime": False}),
        (["-n", "50", "--prime", "Zoë:\n", "--skip-unknown"], {"n": 50, "prime": "Zoë:\n", "skip_unknown": True}),
        (["--prime", "A", "--lines", "2", "--temperature", "0.7"], {"prime": "A", "lines": 2, "temperature": 0.7}),
        (["-n", "80", "--prime", "ROMEO", "--beam", "3"], {"n": 80, "prime": "ROMEO", "beam": 3}),
    ],
)
def test_model_sample_is_what_the_command_line_writes_into_a_pipe(small, args, kwargs):
    seed = [] if "beam" in kwargs else ["--seed", "11"]
    written = sample(small, *args, *seed)
    assert Model.load(small).sample(**kwargs, seed=None if "beam" in kwargs else 11) == written
    assert written.startswith(kwargs["prime"]) == kwargs.get("echo_prime", True)


@pytest.mark.posix("sends SIGINT to a sampler")
def test_ctrl_c_ends_an_endless_sample_with_130_and_the_text_so_far(small):
    p = popen("sample", "-m", small, "-n", "0", "--seed", "1", stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    head = p.stdout.read(2000)  # it is writing
    p.send_signal(signal.SIGINT)
    out = (head + p.stdout.read()).decode("utf-8")
    assert p.wait(timeout=30) == 130
    assert p.stderr.read() == b""  # no traceback, no message
    assert out == Model.load(small).sample(len(out), seed=1)  # exactly the text generated, without a newline


def test_no_echo_prime_with_stopping_rules(small):
    out = sample(small, "-n", "3000", "--seed", "1", "--prime", "ROMEO", "--no-echo-prime", "--lines", "2")
    assert out.count("\n") == 2 and out.endswith("\n")
    with_prime = sample(small, "-n", "3000", "--seed", "1", "--prime", "ROMEO", "--lines", "2")
    assert with_prime == "ROMEO" + out


# -- --beam ------------------------------------------------------------------------


def log_prob(model, prime, text):
    """log P(text | prime) under the model, one character at a time (float64)."""
    p = {k: v.astype(np.float64) for k, v in model.params.items()}
    cfg = model.config.replace(dtype="float64")
    state = net.zero_state(cfg, 1)
    ix = model.vocab.encode(prime + text)
    total = 0.0
    for t in range(len(ix) - 1):
        hs, state, _ = net.forward(p, cfg, ix[t : t + 1].reshape(1, 1), state)
        if t >= len(prime) - 1:
            total += net.log_softmax(net.logits(p, hs))[0, ix[t + 1]]
    return total


def tiny(seed):
    """A random three-character model whose probabilities differ a lot from
    character to character (weights scaled up)."""
    model = Model.new(Config(cell="gru", hidden=4, dtype="float64", seed=seed), text="abc")
    for k in model.params:
        model.params[k] = model.params[k] * 6
    return model


def test_beam_as_wide_as_every_text_finds_the_likeliest_one():
    differs = 0
    for seed in range(40):
        model = tiny(seed)
        every = ["".join(t) for t in itertools.product("abc", repeat=3)]
        scores = [log_prob(model, "a", t) for t in every]
        best = every[int(np.argmax(scores))]
        found = "".join(beam_search(model.config, model.vocab, model.params, 3, "a", width=27))
        assert found == best, seed
        greedy = model.sample(3, prime="a", temperature=0, echo_prime=False)
        assert "".join(beam_search(model.config, model.vocab, model.params, 3, "a", width=1)) == greedy
        differs += greedy != best
    assert differs >= 3  # models where greedy decoding misses the likeliest text, and the beam finds it


def test_a_dispute_held_too_long_is_settled_for_the_likeliest_beam(monkeypatch):
    import rnnpipe.sample

    model = tiny(7)
    monkeypatch.setattr(rnnpipe.sample, "MAX_LAG", 1)
    held = beam_search(model.config, model.vocab, model.params, 0, "a", width=9)  # endless: it must still stream
    first = "".join(next(held) for _ in range(40))
    assert len(first) == 40 and set(first) <= set("abc")
    # with no lag at all, every character is the likeliest beam's at once: greedy decoding
    monkeypatch.setattr(rnnpipe.sample, "MAX_LAG", 0)
    settled = "".join(beam_search(model.config, model.vocab, model.params, 12, "a", width=9))
    assert settled == model.sample(12, prime="a", temperature=0, echo_prime=False)


def test_beam_one_is_greedy_decoding(small):
    greedy = sample(small, "-n", "300", "--temperature", "0", "--prime", "ROMEO:")
    assert sample(small, "-n", "300", "--beam", "1", "--prime", "ROMEO:") == greedy


def test_beam_is_more_conservative_than_sampling(small):
    model = Model.load(small)
    beamed = sample(small, "-n", "400", "--beam", "4", "--prime", "ROMEO:", "--no-echo-prime")
    assert len(beamed) == 400
    sampled = [sample(small, "-n", "400", "--seed", str(s), "--prime", "ROMEO:", "--no-echo-prime") for s in (1, 2, 3)]
    cooler = [
        sample(small, "-n", "400", "--seed", str(s), "--prime", "ROMEO:", "--no-echo-prime", "--temperature", "0.5")
        for s in (1, 2, 3)
    ]

    def bits(text):
        return -log_prob(model, "ROMEO:", text) / 400 / math.log(2)

    for s, c in zip(sampled, cooler, strict=True):
        assert bits(beamed) < bits(c) < bits(s)  # beam below a lower temperature, below temperature 1


def test_endless_beam_streams_into_head(small):
    r = shell(f"set -o pipefail; rnnpipe sample -m '{small}' --beam 3 -n 0 | head -c 700", timeout=120)
    assert r.returncode == 0 and r.stderr == b"" and len(r.stdout) == 700


def test_beam_with_stopping_rules(small):
    long = sample(small, "--beam", "3", "-n", "400", "--prime", "ROMEO:")
    stop = long[20:26]
    out = sample(small, "--beam", "3", "-n", "400", "--prime", "ROMEO:", "--until", stop)
    # the rule only cuts: the search is the same as without it
    assert out == "ROMEO:" + long[6:][: long[6:].index(stop) + len(stop)]
    assert out.endswith(stop) and len(out) <= 26
    lines = sample(small, "--beam", "3", "-n", "400", "--prime", "ROMEO:", "--lines", "1")
    assert lines == long[: long.index("\n", 6) + 1] if "\n" in long[6:] else lines == long


# -- --prime-file --------------------------------------------------------------------


def test_prime_file_is_the_prime_exactly(small, tmp_path):
    prime = "ROMEO:\nWhat say you, my lord?\n\nROMEO:\n"
    f = tmp_path / "prime.txt"
    f.write_text(prime, encoding="utf-8")
    want = sample(small, "-n", "100", "--seed", "9", "--prime", prime)
    assert want.startswith(prime)
    assert sample(small, "-n", "100", "--seed", "9", "--prime-file", f) == want
    assert sample(small, "-n", "100", "--seed", "9", "--prime-file", "-", input=prime) == want
    assert sample(small, "-n", "100", "--seed", "9", "--prime-file", f, "--no-echo-prime") == want[len(prime) :]


def test_prime_file_errors_are_one_line(small, tmp_path):
    bad = tmp_path / "bad.txt"
    bad.write_bytes(b"ROMEO\xff:")
    line = one_error_line(run("sample", "-m", small, "--prime-file", bad), 1)
    assert line == f"rnnpipe: error: --prime-file {bad}: not UTF-8 text (byte 0xff at offset 5)"
    line = one_error_line(run("sample", "-m", small, "--prime-file", "-", input=b"\xc3("), 1)
    assert "--prime-file stdin: not UTF-8 text" in line
    line = one_error_line(run("sample", "-m", small, "--prime-file", tmp_path / "none.txt"), 1)
    assert line.endswith("none.txt: no such file")
    line = one_error_line(run("sample", "-m", small, "--prime-file", bad, "--prime", "x"), 2)
    assert "give --prime or --prime-file, not both" in line
    assert "is a directory" in one_error_line(run("sample", "-m", small, "--prime-file", tmp_path), 1)


@pytest.mark.parametrize(
    "args, words",
    [
        (["--beam", "0"], "--beam must be at least 1, not 0"),
        (["--beam", "2", "--temperature", "0.5"], "--beam searches for the likeliest text"),
        (["--beam", "2", "--top-k", "3"], "it takes no --temperature or --top-k"),
        (["--lines", "0"], "--lines must be at least 1, not 0"),
        (["--until", ""], "--until needs a text to stop after"),
    ],
)
def test_meaningless_options_are_usage_errors(small, args, words):
    assert words in one_error_line(run("sample", "-m", small, *args), 2)


def test_the_core_takes_the_same_options(small):
    model = Model.load(small)
    out = model.sample(3000, prime="ROMEO:", seed=4, lines=3)
    assert out.startswith("ROMEO:") and out.count("\n") == 3 and out.endswith("\n")
    assert out == sample(small, "-n", "3000", "--seed", "4", "--prime", "ROMEO:", "--lines", "3")
    assert model.sample(50, prime="ROMEO:", beam=1) == model.sample(50, prime="ROMEO:", temperature=0)
    for kwargs in ({"beam": 0}, {"lines": 0}, {"until": ""}, {"beam": 2, "temperature": 0.5}):
        with pytest.raises(ValueError):
            model.stream(10, **kwargs)
