"""Issue 21: nothing a user, a file or a busy machine can do loses a model or
reaches past it. Each test goes through the real executable where the
behaviour is the command line's (docs/reliability.md, "Hostile options,
paths and files")."""

import math
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
