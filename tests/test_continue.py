"""Run it again and it keeps learning (issue 19): what ends a run, what the
same command does next, through the real executable, and the rules under it.

Each test names the README's table row ("Running it again") it keeps true."""

from __future__ import annotations

import io
import json
import math
import signal
import subprocess
import threading

import pytest
from cli_util import TINY, copy, info, one_error_line, popen, run, shell, wait_for
from test_session import cell, ip  # noqa: F401  (ip: a real IPython shell with the magics loaded)
from texts import SHAKESPEARE_FILE

import rnnpipe.train
from rnnpipe import Model, cli, schedule

TEXT = SHAKESPEARE_FILE.read_text()


@pytest.fixture
def corpus(tmp_path):
    path = tmp_path / "corpus.txt"
    path.write_text(TEXT)
    return path


def trained(result):
    """The iterations a run's summary line says it made, (first, last) ("iterations 12-345")."""
    last = result.stderr.decode().splitlines()[-1]
    if "no updates kept" in last:
        return None
    first, end = last.split("iterations ", 1)[1].split(",", 1)[0].split("-")
    return int(first), int(end)


def updates(result):
    """How many iterations a run's summary line says it made."""
    made = trained(result)
    return 0 if made is None else made[1] - made[0] + 1


# -- --max-time alone: finished when the time is up ------------------------------------


def test_a_second_max_time_run_trains_as_long_again(tmp_path, corpus):
    """Row: `--max-time T` ends when T is up, finished; the same command trains T again, where the text goes on."""
    model = tmp_path / "m.msgpack"
    command = ["train", "-m", model, *TINY, "--max-time", "1", corpus]
    first = run(*command)
    assert first.returncode == 0 and b"time limit: trained on" in first.stderr, first.stderr
    state = info(model)
    assert state["resume"]["interrupted"] is False  # finished: only where the text goes on is kept
    assert run("info", "-m", model).stdout.decode().count("pending       nothing (the last run finished;") == 1
    second = run(*command)
    assert second.returncode == 0, second.stderr
    err = second.stderr.decode()
    assert err.startswith("rnnpipe: going on from pass ") and "time limit: trained on" in err
    # another second of training, not the single update a pending run's last 0.1 s gave, from the last model
    # the first run trained (the file's model is the best held-out one, which may be earlier: holdout.py)
    assert updates(second) > 1 and trained(second)[0] == trained(first)[1] + 1
    assert info(model)["iterations"] <= trained(second)[1]
    assert "run the same command again" not in err  # nothing is left pending


def test_passes_cut_by_the_time_limit_are_finished_by_the_next_runs(tmp_path):
    """Row: `--epochs N --max-time T` cut by T is interrupted; the same command trains up to T more toward them."""
    text = tmp_path / "t.txt"
    text.write_text(TEXT[:20000])
    model = tmp_path / "m.msgpack"
    command = ["train", "-m", model, *TINY, "--epochs", "8", "--max-time", "1", text]
    done = []
    for _ in range(60):
        r = run(*command)
        assert r.returncode == 0, r.stderr
        done.append(updates(r))
        if info(model)["resume"] is None:
            break
        assert info(model)["resume"]["interrupted"] is True
        assert b"run the same command again to continue where it stopped" in r.stderr
    assert len(done) > 1 and info(model)["resume"] is None, done  # cut, continued, finished
    assert all(n > 1 for n in done[:-1])  # each trains for its time, not the single update left of a spent limit
    assert "pending       nothing (the last run finished)" in run("info", "-m", model).stdout.decode()


def test_a_piped_run_with_a_time_limit_goes_on_where_the_text_does(tmp_path):
    """Row: `cat … | rnnpipe train --max-time T` twice: the second skips what the first trained."""
    model = tmp_path / "m.msgpack"
    text = TEXT * 10  # far more than a second of training
    first = run("train", "-m", model, *TINY, "--max-time", "1", input=text)
    assert first.returncode == 0 and info(model)["resume"]["interrupted"] is False, first.stderr
    second = run("train", "-m", model, *TINY, "--max-time", "1", input=text)
    err = second.stderr.decode()
    assert second.returncode == 0, err
    assert err.startswith("rnnpipe: the same text as the last run read: skipping the "), err
    assert updates(second) > 1


# -- Ctrl-C: interrupted, and the same command finishes it exactly -----------------------


@pytest.mark.posix("sends SIGINT to a trainer")
def test_ctrl_c_on_a_pipe_then_the_same_text_piped_again_ends_as_one_run(tmp_path):
    """Row: Ctrl-C, then the same command on the same piped text: it skips what was trained, bit for bit."""
    text = TEXT * 3
    whole = tmp_path / "whole.msgpack"
    assert run("train", "-m", whole, *TINY, "-q", input=text).returncode == 0
    model = tmp_path / "m.msgpack"
    p = popen("train", "-m", model, *TINY, "--save-every", "0.2", stdin=subprocess.PIPE, stderr=subprocess.PIPE)
    writer = threading.Thread(target=lambda: (p.stdin.write(text.encode()), p.stdin.close()), daemon=True)
    writer.start()
    try:
        assert wait_for(model.exists, timeout=60), "nothing was saved while training"
        p.send_signal(signal.SIGINT)
        assert p.wait(timeout=60) == 130
    finally:
        p.kill()
        p.wait()
    pending = info(model)
    assert pending["resume"]["interrupted"] is True and pending["resume"]["inputs"] == ["<stdin>"]
    assert 0 < pending["iterations"] < Model.load(whole).iterations
    again = run("train", "-m", model, *TINY, input=text)
    err = again.stderr.decode()
    assert again.returncode == 0 and err.startswith("rnnpipe: the same text as the interrupted run read: skipping"), err
    assert Model.load(model).to_bytes() == Model.load(whole).to_bytes()


@pytest.mark.posix("sends SIGINT to a trainer")
def test_other_text_piped_after_ctrl_c_is_trained_whole_and_said_so(tmp_path):
    model = tmp_path / "m.msgpack"
    p = popen("train", "-m", model, *TINY, "--save-every", "0.2", stdin=subprocess.PIPE, stderr=subprocess.PIPE)
    writer = threading.Thread(target=lambda: (p.stdin.write((TEXT * 3).encode()), p.stdin.close()), daemon=True)
    writer.start()
    try:
        assert wait_for(model.exists, timeout=60)
        p.send_signal(signal.SIGINT)
        assert p.wait(timeout=60) == 130
    finally:
        p.kill()
        p.wait()
    before = info(model)["chars_seen"]
    other = TEXT[::-1][:20000]
    r = run("train", "-m", model, *TINY, input=other)
    assert r.returncode == 0 and r.stderr.decode().startswith(
        "rnnpipe: the input is not the text the interrupted run read: starting a new pass\n"
    ), r.stderr
    assert info(model)["chars_seen"] - before > 0.9 * len(other)  # all of it, none skipped


# -- a pipe's text is trained on soon after it comes ------------------------------------


@pytest.mark.posix("sends SIGINT to a trainer")
def test_a_slowly_growing_log_is_learned_while_it_grows_and_ctrl_c_saves_it(tmp_path):
    """Row: `tail -f LOG | rnnpipe train`: each line is trained on within seconds, not at 1M characters."""
    model = tmp_path / "log.msgpack"
    lines = [f"{i:05d} GET /index.html 200 {i * 37 % 1000} ms user=u{i % 7} ".ljust(99) + "\n" for i in range(2000)]
    p = popen("train", "-m", model, *TINY, "--save-every", "0.5", stdin=subprocess.PIPE, stderr=subprocess.PIPE)
    stop, sent = threading.Event(), []

    def write():  # a line every 0.3 s, as a busy log grows, until told to stop
        for line in lines:
            if stop.wait(0.3):
                return
            p.stdin.write(line.encode())
            p.stdin.flush()
            sent.append(line)

    writer = threading.Thread(target=write, daemon=True)
    writer.start()
    try:
        # saved while the writer still writes: what came was trained on without waiting for more
        assert wait_for(model.exists, timeout=60), "nothing was trained while the log grew"
        assert writer.is_alive() and Model.load(model).iterations > 0
        p.send_signal(signal.SIGINT)
        assert p.wait(timeout=60) == 130
    finally:
        stop.set()
        p.kill()
        p.wait()
    err = p.stderr.read().decode()
    assert "rnnpipe: interrupted: trained on " in err and "Traceback" not in err
    # Ctrl-C saved what was learned: more than the first periodic save had
    assert Model.load(model).chars_seen > 0 and len(sent) < len(lines)


# -- input that trains nothing leaves the file as it was --------------------------------


def pending_model(tmp_path, corpus):
    model = tmp_path / "m.msgpack"
    r = run("train", "-m", model, *TINY, "--epochs", "3", "--max-time", "0.1", "-q", corpus)
    assert r.returncode == 0 and info(model)["resume"]["interrupted"] is True, r.stderr
    return model, model.read_bytes()


def test_empty_input_leaves_a_pending_model_byte_for_byte(tmp_path, corpus):
    """Row: empty input (an empty file, < /dev/null): the file stays as it was, a pending run included."""
    model, before = pending_model(tmp_path, corpus)
    empty = tmp_path / "empty.txt"
    empty.write_bytes(b"")
    for how in ([empty], []):  # an empty file; stdin at its end (< /dev/null)
        r = run("train", "-m", model, *how)
        assert r.returncode == 0, r.stderr
        assert r.stderr.decode() == f"rnnpipe: empty input: nothing to train on; {model} left untouched\n"
        assert model.read_bytes() == before


def test_a_glob_that_matched_nothing_or_binary_input_says_only_why(tmp_path, corpus):
    """Row: refused input: one line saying why; the file stays as it was."""
    model, before = pending_model(tmp_path, corpus)
    r = shell(f"cd {tmp_path} && rnnpipe train -m {model} *.nomatch")
    assert r.returncode == 1 and r.stderr.decode().startswith("rnnpipe: error: cannot read *.nomatch"), r.stderr
    assert len(r.stderr.splitlines()) == 1 and model.read_bytes() == before
    binary = tmp_path / "b.bin"
    binary.write_bytes(bytes(range(256)) * 10)
    line = one_error_line(run("train", "-m", model, binary), 1)
    assert "binary data, not text" in line and "interrupted" not in line  # no word of the pending run
    assert model.read_bytes() == before


# -- the learning rate of a run on a trained model --------------------------------------


def rates(monkeypatch):
    seen = []
    step = rnnpipe.train.Run.step

    def recording(self, X, Y, state):
        out = step(self, X, Y, state)
        seen.append(self.lr)
        return out

    monkeypatch.setattr(rnnpipe.train.Run, "step", recording)
    return seen


def test_a_run_on_a_trained_model_never_rises_above_where_the_last_ended(monkeypatch):
    """Row: the same command after a finished run: no warm-up back to the peak."""
    seen = rates(monkeypatch)
    model = Model.new(hidden=16, seq_length=10, batch_size=4)
    model.train(TEXT[:30000], epochs=1)
    end = seen[-1]
    assert end == pytest.approx(model.config.lr * model.rate) and model.rate < 0.1
    seen.clear()
    model.train(TEXT[:30000], epochs=1)
    assert seen[0] == pytest.approx(end) and max(seen) <= end * (1 + 1e-12)
    seen.clear()
    model.train(TEXT[:30000], epochs=1, restart=True)  # a fresh schedule: warm-up to the peak
    assert seen[0] == pytest.approx(model.config.lr * schedule.WARMUP_START)
    assert max(seen) == pytest.approx(model.config.lr, rel=0.01)


def test_the_schedule_counts_characters_not_bytes(tmp_path, monkeypatch):
    """Row: `--epochs N` ends its schedule at the floor, whatever the script (Cyrillic is 2 bytes a letter)."""
    cyrillic = TEXT[:20000].translate(str.maketrans("abcdefghijklmnopqrstuvwxyz", "абвгдежзийклмнопрстуфхцчшщ"))
    path = tmp_path / "ru.txt"
    path.write_text(cyrillic, encoding="utf-8")
    assert path.stat().st_size > 1.5 * len(cyrillic)
    seen = rates(monkeypatch)
    out = io.StringIO()
    status = cli.main(["train", "-m", str(tmp_path / "m.msgpack"), *TINY, "--epochs", "2", "-q", str(path)],
                      stdout=out, stderr=out)  # fmt: skip
    assert status == 0, out.getvalue()
    lr = Model.load(tmp_path / "m.msgpack").config.lr
    assert seen[-1] == pytest.approx(lr * schedule.FLOOR, rel=0.1)  # not half of --lr, as counting bytes left it


# -- the Python API behaves as the command line does -----------------------------------


@pytest.mark.parametrize("given, want", [({}, 1), ({"threads": 2}, 2)])
def test_model_train_uses_the_command_lines_threads(monkeypatch, given, want):
    from threadpoolctl import threadpool_info

    seen = []
    fit = rnnpipe.train.Run.fit

    def recording(self, *args, **kwargs):
        seen.append({p["num_threads"] for p in threadpool_info() if p["user_api"] == "blas"})
        return fit(self, *args, **kwargs)

    monkeypatch.setattr(rnnpipe.train.Run, "fit", recording)
    Model.new(hidden=8).train(TEXT[:2000], **given)
    assert seen == [{want}]


def test_a_python_run_stopped_early_without_held_out_text_saves_a_loadable_file():
    model = Model.new(hidden=8, seq_length=10, batch_size=4)
    model.train(TEXT[:20000], epochs=2, valid_fraction=0, stop=lambda: model.iterations >= 30)
    back = Model.from_bytes(model.to_bytes())  # valid_fraction 0 was kept as the int 0, which the loader refused
    assert back.resume is not None and back.resume.valid_fraction == 0.0


# -- options given again keep what they did not change ----------------------------------


def test_giving_the_same_optimizer_again_keeps_the_weight_decay(tmp_path, corpus):
    model = tmp_path / "m.msgpack"
    assert run("train", "-m", model, *TINY, "--weight-decay", "0.3", "-q", corpus).returncode == 0
    r = run("train", "-m", model, "--optimizer", "adam", "-q", corpus)
    assert r.returncode == 0, r.stderr
    assert info(model)["config"]["weight_decay"] == 0.3


@pytest.mark.posix("bash process substitution")
def test_info_reads_a_model_from_a_pipe(tmp_path, corpus):
    model = tmp_path / "m.msgpack"
    assert run("train", "-m", model, *TINY, "-q", corpus).returncode == 0
    r = shell(f"rnnpipe info -m <(cat {model}) --json")
    assert r.returncode == 0, r.stderr
    got = json.loads(r.stdout)
    assert got["iterations"] == info(model)["iterations"] and got["file_bytes"] == model.stat().st_size
    assert math.isfinite(got["smooth_loss_bits"])


def test_a_copy_of_the_file_continues_as_the_original_does(tmp_path, corpus):
    model, _ = pending_model(tmp_path, corpus)
    twin = copy(model, tmp_path / "twin.msgpack")
    for m in (model, twin):
        assert run("train", "-m", m, *TINY, "--epochs", "3", "-q", corpus).returncode == 0
    assert model.read_bytes() == twin.read_bytes()


# -- the same in a notebook ---------------------------------------------------------------


def test_a_second_timed_cell_trains_as_long_again(ip, tmp_path):  # noqa: F811  (the fixture imported above)
    """Row: `--max-time T` in a notebook too: running the cell again trains T again, not the last 0.1 s."""
    path = tmp_path / "n.msgpack"
    line = f"-m {path} {' '.join(TINY)} --max-time 1"
    result, cap = cell(ip, line, TEXT)
    result.raise_error()
    first = Model.load(path)
    assert first.resume is not None and first.resume.interrupted is False
    result, cap = cell(ip, line, TEXT)
    result.raise_error()
    assert "going on from pass " in cap.stdout
    assert any("time limit: trained on " in o.data.get("text/plain", "") for o in cap.outputs)
    assert Model.load(path).iterations - first.iterations > 1
