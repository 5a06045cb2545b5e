"""The model for the text and the time (issue 22): a new model whose run
reads its text many times is the regularised one, plan.choose; the command
line and the notebook say so, and `rnnpipe info` says why."""

from __future__ import annotations

import json

import pytest
from cli_util import run
from test_session import ip  # noqa: F401  (ip: a real IPython shell with the magics loaded)
from texts import kafka_text

from rnnpipe import Config, Model, plan, training
from rnnpipe.plan import Options

TEXT = kafka_text()[:600]
SMALL = ["--seq-length", "8", "--batch-size", "2"]  # fields plan.choose leaves alone: a quick run
WHY = "2 layers of 128 units with dropout 0.4, for a text of 600 characters read about 30 times in the run"


def test_a_text_read_many_times_gets_two_layers_with_dropout_and_one_read_less_the_default():
    many = {"layers": 2, "hidden": 128, "dropout": 0.4}
    assert plan.MANY == 30 and plan.RATE == 100_000 and plan.MANY_PASSES == many and plan.SMALL == 500_000
    # the README's first command: 60 s over its 99,843 characters is about 60 passes
    chosen, why = plan.choose(99_843, Options(max_time=60))
    assert chosen == many
    assert why.startswith("2 layers of 128 units with dropout 0.4, for a text of 99,843 characters read about 60 ")
    assert plan.choose(500_000, Options(max_time=150))[0] == many  # 30 passes of the largest text it takes
    assert plan.choose(500_000, Options(max_time=149)) == ({}, None)
    assert plan.choose(500_001, Options(max_time=600)) == ({}, None)  # a larger text: the default, however long
    assert plan.choose(1_003_854, Options(max_time=600)) == ({}, None)  # the benchmark's million
    assert plan.choose(600, Options(epochs=30))[0] == many and plan.choose(600, Options(epochs=29)) == ({}, None)
    # both given: the fewer passes decide, as the run stops at whichever comes first
    assert plan.choose(600, Options(epochs=3, max_time=600)) == ({}, None)
    assert plan.choose(None, Options(max_time=600)) == ({}, None)  # a pipe: its size is not known
    assert plan.choose(600, Options()) == ({}, None)  # one pass


def test_the_command_line_says_what_it_chose_and_info_says_why(tmp_path):
    (tmp_path / "t.txt").write_text(TEXT, encoding="utf-8")
    r = run("train", "-m", "m.msgpack", *SMALL, "--epochs", "30", "t.txt", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    note = (f"rnnpipe: a new model of {WHY} (a text of at most 500,000 read at least 30 times: the default one "
            "layer of 192 learns it by heart); --layers, --hidden or --dropout choose another")  # fmt: skip
    assert note in r.stderr.decode().splitlines()
    model = Model.load(tmp_path / "m.msgpack")
    assert (model.config.cell, model.config.layers, model.config.hidden, model.config.dropout) == ("gru", 2, 128, 0.4)
    out = run("info", "-m", "m.msgpack", cwd=tmp_path).stdout.decode()
    assert f"chosen        {WHY}" in out
    assert json.loads(run("info", "-m", "m.msgpack", "--json", cwd=tmp_path).stdout)["chosen"].startswith(WHY)
    # the model stays what it is: a second run chooses nothing
    again = run("train", "-m", "m.msgpack", *SMALL, "--epochs", "30", "t.txt", cwd=tmp_path)
    assert again.returncode == 0 and b"a new model of" not in again.stderr
    assert Model.load(tmp_path / "m.msgpack").chosen == model.chosen


def test_a_run_that_names_the_architecture_gets_what_it_named(tmp_path):
    (tmp_path / "t.txt").write_text(TEXT, encoding="utf-8")
    r = run("train", "-m", "m.msgpack", *SMALL, "--hidden", "64", "--epochs", "30", "t.txt", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert b"a new model of" not in r.stderr
    model = Model.load(tmp_path / "m.msgpack")
    assert model.config.layers == 1 and model.chosen is None
    assert "chosen" not in run("info", "-m", "m.msgpack", cwd=tmp_path).stdout.decode()
    # each of the four, through the session layer both faces open models with
    for given in ({"hidden": 64}, {"layers": 1}, {"dropout": 0.0}, {"cell": "lstm"}):
        notes = []
        s = training.Session(None, note=notes.append)
        model = s.open(given, size=len(TEXT), options=Options(epochs=30))
        assert model.config.layers == 1 and model.chosen is None and not notes, given
    s = training.Session(None, note=notes.append)
    assert s.open({}, size=len(TEXT), options=Options(epochs=30)).config.layers == 2 and notes  # none given


def test_a_run_read_fewer_times_gets_the_default(tmp_path):
    (tmp_path / "t.txt").write_text(TEXT, encoding="utf-8")
    r = run("train", "-m", "m.msgpack", *SMALL, "--epochs", "3", "t.txt", cwd=tmp_path)
    assert r.returncode == 0 and b"a new model of" not in r.stderr
    model = Model.load(tmp_path / "m.msgpack")
    assert (model.config.layers, model.config.hidden) == (Config().layers, Config().hidden)


def test_text_piped_in_gets_the_default_its_size_not_known_in_time(tmp_path):
    r = run("train", "-m", "m.msgpack", *SMALL, "--epochs", "30", input=TEXT, cwd=tmp_path)
    assert r.returncode == 0 and b"a new model of" not in r.stderr, r.stderr
    assert Model.load(tmp_path / "m.msgpack").config.layers == Config().layers


def test_the_notebook_chooses_the_same(ip, tmp_path):  # noqa: F811  (the fixture imported above)
    from IPython.utils.capture import capture_output

    with capture_output() as cap:
        result = ip.run_cell(f"%%charrnn_train --name many {' '.join(SMALL)} --epochs 30 -o run\n{TEXT}")
    result.raise_error()
    # the cell's text is its body, which ends in a newline
    assert f"a new model of {WHY.replace('600 characters', '601 characters')}" in cap.stdout
    model = ip.user_ns["run"].model
    assert (model.config.layers, model.config.hidden, model.config.dropout) == (2, 128, 0.4)


def test_the_file_keeps_why_and_refuses_what_is_not_a_reason():
    import msgpack
    from hostile_files import _seal

    from rnnpipe.fileread import ModelFormatError

    model = Model.new(Config(hidden=4), "ab")
    model.chosen = WHY
    assert Model.from_bytes(model.to_bytes()).chosen == WHY
    doc = msgpack.unpackb(msgpack.unpackb(model.to_bytes(), raw=False)["model"], raw=False)
    for bad in (5, "", "x" * 501):
        doc["state"]["chosen"] = bad
        with pytest.raises(ModelFormatError, match="state.chosen should be a string of at most 500 characters"):
            Model.from_bytes(_seal(doc))
    doc["state"]["chosen"] = WHY
    doc["state"]["resume"] = None
    with pytest.raises(ModelFormatError, match="state should have the keys"):
        Model.from_bytes(_seal(doc, version=6))  # version 7 added it
