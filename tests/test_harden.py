"""Issue 21: nothing a user, a file or a busy machine can do loses a model or
reaches past it. Each test goes through the real executable where the
behaviour is the command line's (docs/reliability.md, "Hostile options,
paths and files")."""

import math
import os
import re

import pytest
from cli_util import TINY, info, one_error_line, run

from rnnpipe import Config, Model, options
from rnnpipe.errors import SettingError

TEXT = "to be or not to be, that is the question. " * 40


# -- durations ------------------------------------------------------------------------------


@pytest.mark.parametrize("text, seconds", [("90", 90), ("1.5", 1.5), ("30s", 30), ("10m", 600), ("1.5h", 5400)])
def test_a_duration_is_seconds_or_a_number_with_s_m_or_h(text, seconds):
    assert options.seconds(text) == seconds


@pytest.mark.parametrize("flag", ["--max-time", "--save-every"])
@pytest.mark.parametrize(
    "value, says",
    [
        ("inf", "must be a positive number of seconds, not inf"),
        ("nan", "must be a positive number of seconds, not nan"),
        ("-1", "must be a positive number of seconds, not -1"),
        ("0m", "must be a positive number of seconds, not 0"),
        ("1e308h", "must be a positive number of seconds, not inf"),  # finite, but not once made seconds
        ("10x", "'10x' is not a duration: give seconds, or a number followed by s, m or h (10m)"),
    ],
)
def test_a_duration_that_is_not_a_positive_finite_time_is_refused(tmp_path, flag, value, says):
    line = one_error_line(run("train", "-m", tmp_path / "m.msgpack", *TINY, f"{flag}={value}", input=TEXT), 2)
    assert flag in line and says in line, line
    assert list(tmp_path.iterdir()) == []


def test_suffixed_durations_train_and_save(tmp_path):
    model, text = tmp_path / "m.msgpack", tmp_path / "t.txt"
    text.write_text(TEXT)
    r = run("train", "-m", model, *TINY, "--max-time", "0.02m", "--save-every", "10m", text)
    assert r.returncode == 0, r.stderr
    last = r.stderr.decode().splitlines()[-1]
    # 0.02 minutes is 1.2 s of passes over the file, by the run's own clock (at least that: it ends between updates)
    assert last.startswith("rnnpipe: time limit: "), last
    assert float(re.search(r" passes\) in ([\d.]+) s", last).group(1)) >= 1.2, last
    assert info(model)["chars_seen"] > len(TEXT)


def test_python_refuses_an_endless_time_limit_so_no_file_holds_one():
    # the loader refuses max_time inf (docs/model-format.md); rnnpipe must never write one
    model = Model.new(Config(hidden=8, batch_size=2, seq_length=5))
    for bad in (math.inf, math.nan, -1.0, 0):
        with pytest.raises(SettingError, match="max_time must be a positive number of seconds"):
            model.train(TEXT, max_time=bad)
    assert model.iterations == 0


# -- the lock file is opened as itself ----------------------------------------------------


def planted(tmp_path, kind):
    """MODEL.lock planted as a link to a victim, a second name of it, or a FIFO; the victim's path."""
    victim = tmp_path / "victim.txt"
    victim.write_text("precious\n")
    lock = tmp_path / "m.msgpack.lock"
    if kind == "symlink":
        lock.symlink_to(victim)
    elif kind == "hard link":
        os.link(victim, lock)
    else:
        os.mkfifo(lock)
    return victim


@pytest.mark.posix("symbolic links, hard links and FIFOs")
@pytest.mark.parametrize(
    "kind, says",
    [("symlink", "is a symbolic link"), ("hard link", "has 2 names (hard links)"), ("fifo", "is not a regular file")],
)
def test_a_planted_lock_file_is_refused_and_what_it_points_at_is_untouched(tmp_path, kind, says):
    victim = planted(tmp_path, kind)
    model = tmp_path / "m.msgpack"
    line = one_error_line(run("train", "-m", model, *TINY, input=TEXT, timeout=30), 1)
    assert f"lock file {model}.lock {says}" in line and "remove it" in line, line
    assert victim.read_text() == "precious\n" and not model.exists()
    # sample on a model not there yet asks the lock who creates it: a FIFO must not block it
    assert "no such model" in one_error_line(run("sample", "-m", model, timeout=30), 1)
    (tmp_path / "m.msgpack.lock").unlink()  # removed, as the message says: then it trains
    assert run("train", "-m", model, *TINY, "-q", input=TEXT).returncode == 0
    assert victim.read_text() == "precious\n"
