"""Training you can trust (issue 10), driven as a user drives it: real
signals at random moments, real pipes with a slow writer, the real
executable. tests/test_trust.py holds the same promises in the core."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import time

import pytest
from cli_util import ROOT, TINY, copy, info, one_error_line, popen, run, shell

from rnnpipe import Model

SHAKESPEARE = ROOT / "examples" / "shakespeare.txt"


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    path = tmp_path_factory.mktemp("corpus") / "corpus.txt"
    path.write_text(SHAKESPEARE.read_text()[:30000])
    return path


def uninterrupted(folder, corpus, epochs, *more):
    """The model of a run never interrupted: `epochs` passes over the corpus."""
    path = folder / "whole.msgpack"
    r = run("train", "-m", path, *TINY, "--epochs", str(epochs), "-q", *more, corpus)
    assert r.returncode == 0, r.stderr
    return path


# passes enough that a run cut by --max-time 0.1 is cut on any machine: even one fast enough to be
# past the first pass by then goes on to the next held-out measurement (a pass at most), and stops there
PASSES = 6


@pytest.fixture(scope="module")
def whole(tmp_path_factory, corpus):
    # at a constant rate: a run stopped by --max-time follows a schedule that ends then
    return uninterrupted(tmp_path_factory.mktemp("whole"), corpus, PASSES, "--schedule", "none")


@pytest.fixture(scope="module")
def long_run(tmp_path_factory, corpus):
    """Long enough (8 passes) to be interrupted many times."""
    return uninterrupted(tmp_path_factory.mktemp("long"), corpus, 8)


@pytest.mark.posix("sends SIGINT, SIGTERM and SIGKILL to a trainer")
@pytest.mark.parametrize("seed", [1, 2])
def test_killed_at_random_moments_and_run_again_ends_bit_identical(tmp_path, corpus, long_run, seed):
    """SIGINT, SIGTERM and SIGKILL at random moments, saves every few
    milliseconds so that some kills land inside a save; each time the same
    command is run again, until one run finishes on its own."""
    rng = random.Random(seed)
    model = tmp_path / "m.msgpack"
    command = ["train", "-m", model, *TINY, "--epochs", "8", "--save-every", "0.005", corpus]
    kills, said = 0, []
    while True:
        p = popen(*command, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL)
        if kills < 8:
            time.sleep(rng.uniform(0.2, 1.2))  # start-up included: some land before training
            p.send_signal(rng.choice([signal.SIGINT, signal.SIGTERM, signal.SIGKILL]))
        err = p.communicate(timeout=120)[1].decode()
        said.append(err)
        # a kill in a run's last moments, after its final save, ends a finished run: nothing is pending
        if p.returncode == 0 or (model.exists() and Model.load(model).resume is None):
            break
        kills += 1
        assert p.returncode in (130, 143, -9, -2, -15), err
    assert kills >= 3
    assert any("rnnpipe: continuing epoch " in e for e in said)
    assert Model.load(model).to_bytes() == Model.load(long_run).to_bytes()
    assert info(model)["resume"] is None  # finished: nothing pending


def test_continuing_says_where_and_info_shows_what_is_pending(tmp_path, corpus, whole):
    model = tmp_path / "m.msgpack"
    r = run("train", "-m", model, *TINY, "--epochs", str(PASSES), "--max-time", "0.1", "--schedule", "none", corpus)
    assert r.returncode == 0, r.stderr
    assert b"run the same command again to continue where it stopped" in r.stderr
    pending = info(model)["resume"]
    assert pending["epochs"] == PASSES and pending["inputs"] == [str(corpus)] and 0 < pending["fraction"] <= 1
    text = run("info", "-m", model).stdout.decode()
    assert f"pending       epoch {pending['epoch']} of {PASSES} at " in text and "--restart starts anew" in text
    r = run("train", "-m", model, *TINY, "--epochs", str(PASSES), "--schedule", "none", corpus)
    first, *_, last = r.stderr.decode().splitlines()
    assert first == f"rnnpipe: continuing epoch {pending['epoch']} of {PASSES} at {pending['fraction']:.0%}", first
    e = pending["epoch"]
    # the passes this run went through
    went = f"({PASSES} passes)" if e == 1 else f"(in pass {PASSES})" if e == PASSES else f"(passes {e}-{PASSES})"
    assert went in last, last
    assert Model.load(model).to_bytes() == Model.load(whole).to_bytes()
    assert "pending       nothing (the last run finished)" in run("info", "-m", model).stdout.decode()


def test_other_input_or_restart_starts_a_new_pass_and_says_so(tmp_path, corpus):
    model = tmp_path / "m.msgpack"
    assert run("train", "-m", model, *TINY, "--epochs", str(PASSES), "--max-time", "0.1", "-q", corpus).returncode == 0
    assert info(model)["resume"]["interrupted"]
    saved = copy(model, tmp_path / "saved.msgpack")
    other = tmp_path / "other.txt"
    other.write_text(corpus.read_text()[:-1] + "!")  # same size, one character changed at the end
    r = run("train", "-m", model, *TINY, "--epochs", "1", other)
    assert r.stderr.decode().startswith(
        "rnnpipe: the input is not the one the interrupted run read: starting a new pass\n"
    )
    copy(saved, model)
    r = run("train", "-m", model, *TINY, "--epochs", "3", "--max-time", "0.3", "--restart", corpus)
    assert r.stderr.decode().startswith("rnnpipe: --restart: starting a new pass, not the interrupted one\n")


def test_a_file_a_pipe_and_a_slow_writer_train_the_same_model(tmp_path):
    source = tmp_path / "in.txt"
    source.write_text(SHAKESPEARE.read_text()[:12000])
    models = {how: tmp_path / f"{how}.msgpack" for how in ("file", "cat", "slow")}
    assert run("train", "-m", models["file"], *TINY, "-q", source).returncode == 0
    assert shell(f"cat {source} | rnnpipe train -m {models['cat']} {' '.join(TINY)} -q").returncode == 0
    # pieces of random sizes, cutting multibyte characters too, with pauses; the block arrives within train.LATENCY
    data, rng = source.read_bytes(), random.Random(3)
    p = popen("train", "-m", models["slow"], *TINY, "-q", stdin=subprocess.PIPE)
    i = 0
    while i < len(data):
        n = rng.choice([1, 3, 50, 700, 4000])
        p.stdin.write(data[i : i + n])
        p.stdin.flush()
        i += n
        time.sleep(rng.choice([0, 0, 0.001, 0.05, 0.2]))
    p.stdin.close()
    assert p.wait(timeout=60) == 0
    blobs = {how: Model.load(path).to_bytes() for how, path in models.items()}
    assert blobs["file"] == blobs["cat"] == blobs["slow"]


def test_a_wild_learning_rate_is_rolled_back_said_once_and_lowered(tmp_path):
    good = tmp_path / "good.msgpack"
    text = SHAKESPEARE.read_text()[:30000]
    assert run("train", "-m", good, "--hidden", "48", "--epochs", "6", "-q", input=text).returncode == 0
    held = tmp_path / "held.txt"
    held.write_text(SHAKESPEARE.read_text()[-3000:])
    before = json.loads(run("eval", "-m", good, "--json", held).stdout)["bits_per_char"]
    r = run("train", "-m", good, "--lr", "0.5", "--epochs", "2", "--restart", input=text)  # a fresh schedule
    assert r.returncode == 0, r.stderr
    lines = r.stderr.decode().splitlines()
    assert lines[0] == "rnnpipe: changing lr 0.01 -> 0.5 (saved with the model for later runs too)"
    assert sum("changing lr" in line for line in lines) == 1
    assert any(line.startswith("rnnpipe: training diverged at iteration ") for line in lines)
    assert info(good)["config"]["lr"] <= 0.125
    after = json.loads(run("eval", "-m", good, "--json", held).stdout)["bits_per_char"]
    assert after < before + 0.5  # not the 437 bits/char it reached before the guard


@pytest.mark.posix("a pipe that stays open while nothing is written")
def test_the_time_limit_counts_from_the_first_text(tmp_path):
    p = popen("train", "-m", tmp_path / "m.msgpack", *TINY, "--max-time", "1", stdin=subprocess.PIPE,
              stderr=subprocess.PIPE)  # fmt: skip
    time.sleep(2)  # longer than the limit: none of it counts
    err = p.communicate(SHAKESPEARE.read_bytes() * 3, timeout=60)[1].decode()
    assert p.returncode == 0 and "time limit" in err, err
    assert info(tmp_path / "m.msgpack")["iterations"] > 50


def test_the_vocabulary_is_capped(tmp_path):
    cjk = "".join(chr(0x4E00 + i) for i in range(300)) * 2
    line = one_error_line(run("train", "-m", tmp_path / "m.msgpack", "--max-vocab", "100", input=cjk), 1)
    assert "more than 100 distinct characters" in line and "--max-vocab" in line
    assert not (tmp_path / "m.msgpack").exists()
    r = run("train", "-m", tmp_path / "m.msgpack", *TINY, "--max-vocab", "300", "-q", input=cjk)
    assert r.returncode == 0 and info(tmp_path / "m.msgpack")["vocabulary_size"] == 300


def test_an_old_version_1_file_is_described_as_such(tmp_path):
    from test_adam_growth import version_1

    model = Model.new(text="abc")
    path = tmp_path / "old.msgpack"
    path.write_bytes(version_1(model))
    assert info(path)["version"] == 1 and info(path)["resume"] is None
    assert os.path.getsize(path) > 0
