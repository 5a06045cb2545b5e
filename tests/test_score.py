"""`rnnpipe score` and %charrnn_score (issue 23): each line's bits per
character, as it arrives, through the real executable and real pipes; the
magic in a real IPython shell."""

from __future__ import annotations

import io
import json
import math
import queue
import signal
import subprocess
import threading

import numpy as np
import pytest
from cli_util import TINY, info, one_error_line, popen, run, shell, wait_for
from texts import SHAKESPEARE_FILE

from rnnpipe import Model, cli, score
from rnnpipe.cells import net
from rnnpipe.pages.show import surprise_colour
from rnnpipe.pages.trace import trace

_HELD_OUT = SHAKESPEARE_FILE.read_text()[20000:23000]  # the model is trained on the first 20,000 characters
NORMAL = _HELD_OUT[_HELD_OUT.index("\n") + 1 : _HELD_OUT.rindex("\n") + 1].lstrip("\n")  # whole lines
ODD = "zqxj vvkkwq zzqx jjxq kwzv qqzj\n"  # known characters, in an order Shakespeare never has


@pytest.fixture(scope="module")
def model(scored):
    """A tiny model trained for one pass over 20 kB of Shakespeare. (conftest.scored)."""
    return scored


def records(result):
    assert result.returncode == 0, result.stderr
    return [json.loads(x) for x in result.stdout.decode().splitlines()]


# -- what a line's score is ------------------------------------------------------


def test_the_lines_bits_add_up_to_evals_total_on_the_same_text(model, tmp_path):
    text = NORMAL + "Ω unknown to the model\n" + ODD + "no newline at the end"
    path = tmp_path / "t.txt"
    path.write_text(text)
    lines = records(run("score", "-m", model, "--json", path))
    ev = json.loads(run("eval", "-m", model, "--json", path).stdout)
    assert [x["text"] for x in lines] == text.split("\n")  # every line, the last one without its newline too
    assert sum(x["chars"] for x in lines) == ev["chars"]
    assert sum(x["unknown"] for x in lines) == ev["unknown"] == 1
    total = sum(x["bits"] for x in lines)
    # eval reads parts side by side, equal to one stream within its tolerance (evaluate.TOL)
    assert total == pytest.approx(ev["bits_per_char"] * ev["chars"], rel=1e-5)
    # piped in pieces, the text is the same stream: the same lines' bits
    piped = records(shell(f"cat {path} | rnnpipe score -m {model} --json"))
    assert [x["bits"] for x in piped] == pytest.approx([x["bits"] for x in lines], rel=1e-6)


def test_a_line_is_scored_with_the_lines_before_it_as_context(model):
    """A line repeated right after itself is far less surprising the second time (its context is kept)."""
    line = "To be, or not to be, that is the question:\n"
    first, second = records(run("score", "-m", model, "--json", input=line + line))
    alone = records(run("score", "-m", model, "--json", input="x\n" + line))[1]
    assert second["bits"] != pytest.approx(alone["bits"], rel=1e-3)  # not scored from the zero state
    assert first["chars"] == len(line) - 1 and second["chars"] == len(
        line
    )  # the text's first character has no prediction


def test_a_scorer_follows_the_model_given_other_weights_at_the_same_update(model):
    """The scorer prepares the model's weights once per change: new arrays
    (Model.params assigned, or restore) at the same iteration count and
    vocabulary are a change too, and what it scores with is the new weights."""
    m = Model.load(model)
    scorer = score.LineScorer(m)
    scorer.feed(ODD)
    m.params = {name: np.asarray(a) * 0.5 for name, a in m.params.items()}  # same iterations, same vocabulary
    scorer.feed(ODD)
    now = net.prepare(m.params, m.config)
    for (used, *_), (weights, *_) in zip(scorer.prepared, now, strict=True):  # each layer's weights
        assert all(np.array_equal(used[k], weights[k]) for k in weights)


def test_the_plain_output_is_bits_tab_line_and_sort_lists_the_odd_line_first(model, tmp_path):
    text = NORMAL + ODD + NORMAL[:400]
    path = tmp_path / "t.txt"
    path.write_text(text)
    r = shell(f"rnnpipe score -m {model} {path} | sort -rn | head -1")
    assert r.returncode == 0, r.stderr
    bits, line = r.stdout.decode().rstrip("\n").split("\t")
    assert line == ODD.rstrip("\n")
    plain = run("score", "-m", model, input=text).stdout.decode().splitlines()
    exact = records(run("score", "-m", model, "--json", input=text))
    assert len(plain) == len(exact) == len(text.splitlines())
    for row, rec in zip(plain, exact, strict=True):
        assert row == f"{rec['bits_per_char']:.3f}\t{rec['text']}"


def test_json_names_the_most_surprising_character_as_trace_does(model):
    text = NORMAL[:600] + ODD
    recs = records(run("score", "-m", model, "--json", input=text))
    m = Model.load(model)
    tr = trace(m.config, m.vocab, m.params, text)
    start = 0
    for rec in recs:
        end = start + len(rec["text"]) + 1
        bits = tr.bits[start:end]
        assert rec["worst_pos"] == int(np.nanargmax(bits))
        assert rec["worst_char"] == (text[start:end])[rec["worst_pos"]]
        assert rec["worst_prob"] == pytest.approx(tr.prob[start + rec["worst_pos"]], rel=1e-3)
        assert rec["bits_per_char"] == pytest.approx(rec["bits"] / rec["chars"])
        start = end


def test_a_line_with_nothing_scored_is_nan_and_never_over(model):
    # the text's first character has nothing before it; Ω is unknown to the model; a newline is scored
    r = run("score", "-m", model, input="\nthe end\nΩΩ")
    first, middle, last = r.stdout.decode().splitlines()
    assert (first, last) == ("nan\t", "nan\tΩΩ") and not middle.startswith("nan")
    assert json.loads(run("score", "-m", model, "--json", input="\n").stdout)["bits_per_char"] is None
    assert run("score", "-m", model, "--over", "-1", input="ΩΩ\n").returncode == 1


# -- grep's exit codes ---------------------------------------------------------------


def test_over_writes_only_the_unusual_lines_with_greps_exit_codes(model, tmp_path):
    text = NORMAL + ODD
    every = records(run("score", "-m", model, "--json", input=text))
    x = sorted(r["bits_per_char"] or 0 for r in every)[-2]  # only the odd line is above
    assert every[-1]["bits_per_char"] > x
    r = run("score", "-m", model, "--over", x, input=text)
    assert r.returncode == 0 and r.stdout.decode() == f"{every[-1]['bits_per_char']:.3f}\t{ODD}"
    assert run("score", "-m", model, "--over", x, "-c", input=text).stdout == b"1\n"
    r = run("score", "-m", model, "--over", 1000, input=text)
    assert (r.returncode, r.stdout) == (1, b"")
    assert run("score", "-m", model, "--over", 1000, "-c", input=text).stdout == b"0\n"
    q = run("score", "-m", model, "--over", x, "-q", input=text)
    assert (q.returncode, q.stdout, q.stderr) == (0, b"", b"")
    assert run("score", "-m", model, "--over", 1000, "-q", input=text).returncode == 1
    # errors are 2 with --over, usage or runtime, as grep's
    assert one_error_line(run("score", "-m", model, "--over", "many", input=text), 2)
    assert "no such model file" in one_error_line(run("score", "-m", tmp_path / "none", "--over", 3, input=text), 2)
    assert "cannot read" in one_error_line(run("score", "-m", model, "--over", 3, tmp_path / "no.txt"), 2)
    assert one_error_line(run("score", "-m", model, "--json", "-c", input=text), 2)
    # without --over, a runtime error is 1 as in every other command, and no line over anything is no failure
    assert one_error_line(run("score", "-m", tmp_path / "none", input=text), 1)
    assert run("score", "-m", model, input="").returncode == 0
    assert run("score", "-m", model, "-c", input=text).stdout == f"{text.count(chr(10))}\n".encode()
    r = shell(f"if rnnpipe score -m {model} --over {x} -q; then echo unusual; fi <<< {json.dumps(ODD)}")
    assert r.stdout == b"unusual\n"


def test_quiet_stops_at_the_first_line_over_as_grep_q_does(model):
    p = popen("score", "-m", model, "--over", 6, "-q", stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    try:
        p.stdin.write((NORMAL[:300] + "\n" + ODD).encode())
        p.stdin.flush()
        assert p.wait(timeout=60) == 0  # the pipe is still open: it did not wait for the end
        assert p.stdout.read() == b""
    finally:
        p.kill()
        p.wait()


# -- streaming ---------------------------------------------------------------------


def _lines_of(stream):
    """A queue of the lines a process writes, read in a thread so the test can wait with a timeout."""
    got = queue.Queue()

    def pump():
        for line in stream:
            got.put(line)
        got.put(None)

    threading.Thread(target=pump, daemon=True).start()
    return got


@pytest.mark.posix("a pipe held open while lines are written one at a time")
def test_each_line_is_written_as_soon_as_it_arrives_through_a_pipe(model):
    p = popen("score", "-m", model, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        got = _lines_of(p.stdout)
        for line in ["First Citizen:\n", "Before we proceed any further, hear me speak.\n", ODD]:
            p.stdin.write(line.encode())
            p.stdin.flush()
            # the line's score comes before the next line is written (generous timeout: a loaded machine)
            out = got.get(timeout=30)
            assert out.decode().split("\t", 1)[1] == line
        assert got.empty()
        p.stdin.close()
        assert got.get(timeout=30) is None and p.wait(timeout=30) == 0
    finally:
        p.kill()
        p.wait()


@pytest.mark.posix("a shell pipeline")
@pytest.mark.parametrize("learn", [[], ["--learn"]])
def test_head_ends_it_quietly(model, tmp_path, learn):
    m = tmp_path / "m.msgpack"
    m.write_bytes(model.read_bytes())
    r = shell(f"yes 'First Citizen: we are accounted poor citizens' | head -n 200000 "
              f"| rnnpipe score -m {m} {' '.join(learn)} | head -n 2; echo \"${{PIPESTATUS[2]}}\"")  # fmt: skip
    out = r.stdout.decode().splitlines()
    assert len(out) == 3 and out[2] == "0", r.stdout
    assert r.stderr == b"" if not learn else r.stderr.decode().count("\n") == 1  # --learn: its summary alone


def test_a_line_longer_than_the_longest_kept_is_scored_whole_and_written_cut(model, monkeypatch):
    monkeypatch.setattr(score, "LONGEST", 10)
    out, err = io.StringIO(), io.StringIO()
    text = "a" * 25 + "\nshort\n"
    assert cli.main(["score", "-m", str(model), "--json"], io.StringIO(text), out, err) == 0
    long, short = [json.loads(x) for x in out.getvalue().splitlines()]
    assert long["text"] == "a" * 10 and long["chars"] == 25 and short["text"] == "short"
    assert err.getvalue() == "rnnpipe: line 1 has 26 characters: written cut after 10\n"


# -- learning ----------------------------------------------------------------------


def test_learn_trains_as_train_does_on_the_same_piped_text(model, tmp_path):
    a, b = tmp_path / "a.msgpack", tmp_path / "b.msgpack"
    a.write_bytes(model.read_bytes())
    b.write_bytes(model.read_bytes())
    text = NORMAL + "µ is new\n"
    r = run("score", "-m", a, "--learn", "--json", input=text)
    assert r.returncode == 0, r.stderr
    assert r.stderr.decode().startswith("rnnpipe: end of input: trained on ")
    assert run("train", "-m", b, input=text).returncode == 0
    assert Model.load(a).to_bytes() == Model.load(b).to_bytes()  # bit for bit, vocabulary grown the same
    assert "µ" in Model.load(a).vocab
    lines = records(r)
    assert lines[-1]["unknown"] == 1  # scored before it was learned


@pytest.mark.posix("sends SIGINT")
def test_learn_saves_while_it_runs_stops_on_ctrl_c_and_the_same_text_again_skips_what_it_learned(model, tmp_path):
    m = tmp_path / "m.msgpack"
    m.write_bytes(model.read_bytes())
    before = info(m)
    cut = NORMAL.index("\n", 1500) + 1
    first, rest = NORMAL[:cut], NORMAL[cut:]
    p = popen("score", "-m", m, "--learn", "--json", "--save-every", "0.2", stdin=subprocess.PIPE,
              stdout=subprocess.PIPE, stderr=subprocess.PIPE)  # fmt: skip
    try:
        got = _lines_of(p.stdout)
        p.stdin.write((first + "µµ\n").encode())
        p.stdin.flush()
        # the pipe stays open: what came is learned after train.LATENCY and saved while it runs
        assert wait_for(lambda: info(m)["iterations"] > before["iterations"], timeout=60)
        assert "µ" in info(m)["vocabulary"]
        p.stdin.write(b"\xc2\xb5\xc2\xb5\n")
        p.stdin.flush()
        recs = []
        while len(recs) < first.count("\n") + 2:
            recs.append(json.loads(got.get(timeout=30)))
        assert recs[-2]["text"] == recs[-1]["text"] == "µµ"
        assert recs[-2]["unknown"] == 2 and recs[-1]["unknown"] == 0  # the vocabulary grew, as in train
        p.send_signal(signal.SIGINT)
        assert p.wait(timeout=60) == 130
        err = p.stderr.read().decode()
    finally:
        p.kill()
        p.wait()
    assert err.rstrip("\n").splitlines()[-1].endswith("run the same command again to continue where it stopped"), err
    pending = info(m)
    assert pending["resume"]["interrupted"] is True and pending["resume"]["inputs"] == ["<stdin>"]
    again = run("score", "-m", m, "--learn", "-c", input=first + "µµ\n" + "µµ\n" + rest)
    assert again.returncode == 0 and again.stdout == f"{(first + rest).count(chr(10)) + 2}\n".encode()
    assert again.stderr.decode().startswith("rnnpipe: the same text as the interrupted run read: skipping"), again
    trained = info(m)["chars_seen"] - pending["chars_seen"]
    assert 0 < trained < len(rest) + 10  # the rest alone, not what the interrupted run learned


def test_learn_takes_the_models_lock_and_score_alone_does_not(model, tmp_path):
    m = tmp_path / "m.msgpack"
    m.write_bytes(model.read_bytes())
    holder = popen("train", "-m", m, *TINY, stdin=subprocess.PIPE, stderr=subprocess.DEVNULL)
    try:
        assert wait_for(lambda: (tmp_path / "m.msgpack.lock").exists(), timeout=60)
        line = one_error_line(run("score", "-m", m, "--learn", input=NORMAL), 1)
        assert "is training this model" in line and f"pid {holder.pid}" in line
        assert one_error_line(run("score", "-m", m, "--learn", "--over", 3, input=NORMAL), 2)
        assert run("score", "-m", m, input=NORMAL).returncode == 0  # reading a model needs no lock
    finally:
        holder.stdin.close()
        holder.wait(timeout=60)
    missing = tmp_path / "new.msgpack"
    assert "no such model file" in one_error_line(run("score", "-m", missing, "--learn", input=NORMAL), 1)
    assert not missing.exists()
    assert "give --learn too" in one_error_line(run("score", "-m", m, "--save-every", 5, input=NORMAL), 2)


# -- the notebook --------------------------------------------------------------------


@pytest.fixture
def ip():
    pytest.importorskip("IPython")
    from IPython.testing import globalipapp
    from IPython.utils.capture import capture_output

    globalipapp.start_ipython()
    shell = globalipapp.get_ipython()
    shell.run_line_magic("load_ext", "rnnpipe_magic")
    yield shell
    with capture_output():
        shell.run_line_magic("unload_ext", "rnnpipe_magic")
    assert "charrnn_score" not in shell.magics_manager.magics["line"]


def test_the_magic_returns_the_command_lines_scores_and_shows_the_odd_line_first(ip, model):
    from IPython.utils.capture import capture_output

    lines = NORMAL.splitlines(keepends=True)
    text = "".join(lines[:20]) + ODD + "".join(lines[20:35])
    cli_lines = records(run("score", "-m", model, "--json", input=text))
    ip.user_ns["log"] = text
    with capture_output():
        result = ip.run_cell(f"scores = %charrnn_score -m {model} --text log --top 3")
    assert result.error_in_exec is None, result.error_in_exec
    scores = ip.user_ns["scores"]
    assert [line for _, line in scores] == [x["text"] for x in cli_lines]
    expected = [math.nan if x["bits_per_char"] is None else x["bits_per_char"] for x in cli_lines]
    assert [bits for bits, _ in scores] == pytest.approx(expected, rel=1e-6, nan_ok=True)
    page = scores._repr_html_()
    rows = page.split("<tr>")[2:]  # after the header row
    assert len(rows) == 3 and ">zq" not in rows[0] and ODD.split()[0][0] in rows[0]
    worst = max(cli_lines, key=lambda x: x["bits_per_char"])
    assert worst["text"] == ODD.rstrip("\n")
    assert f"background:{surprise_colour(8.0)}" in rows[0]  # coloured as show colours an 8-bit surprise
    assert repr(scores).splitlines()[2].endswith(ODD.rstrip("\n"))
    with capture_output():
        cell = ip.run_cell(f"%%charrnn_score -m {model} --over {worst['bits_per_char'] - 0.01}\n{text}")
    [(bits, line)] = cell.result
    assert line == worst["text"] and bits == pytest.approx(worst["bits_per_char"], rel=1e-6)


def test_the_magic_says_what_is_missing_in_one_line(ip, model):
    from IPython.core.error import UsageError
    from IPython.utils.capture import capture_output

    with capture_output():
        result = ip.run_cell(f"%charrnn_score -m {model}")
    assert isinstance(result.error_in_exec, UsageError) and "--text VAR" in str(result.error_in_exec)
    ip.user_ns["x"] = "some text\n"
    with capture_output():
        result = ip.run_cell("%charrnn_score -m /no/such.msgpack --text x")
    assert isinstance(result.error_in_exec, UsageError) and "no model file" in str(result.error_in_exec)


# -- in-process: memory, and --learn's saves ------------------------------------------


class _Drip:
    """stdin that hands over `text` 10,000 characters per read, as a pipe does."""

    def __init__(self, text):
        self.text, self.at = text, 0

    def read(self, n):
        piece = self.text[self.at : self.at + 10_000]
        self.at += len(piece)
        return piece


class _Sink:
    def write(self, text):
        return len(text)

    def flush(self):
        pass


def test_memory_does_not_grow_with_the_input(model):
    import tracemalloc

    line = "First Citizen: we are accounted poor citizens, the patricians good.\n"

    def peak(lines):
        stdin = _Drip(line * lines)  # the input itself is not the command's memory
        tracemalloc.start()
        try:
            assert cli.main(["score", "-m", str(model), "--json"], stdin, _Sink(), io.StringIO()) == 0
            return tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()

    peak(10)  # the imports, once
    small, large = peak(200), peak(1000)  # 13,600 and 68,000 characters, 10,000 at a time
    assert large < 1.1 * small + 50_000, (small, large)


def test_learn_saves_every_60_seconds_by_default(model, tmp_path, monkeypatch):
    from rnnpipe import training

    m = tmp_path / "m.msgpack"
    m.write_bytes(model.read_bytes())
    given = []
    real = training.Session.train

    def train(self, text, options, **kwargs):
        given.append(options.save_every)
        return real(self, text, options, **kwargs)

    monkeypatch.setattr(training.Session, "train", train)
    out, err = io.StringIO(), io.StringIO()
    assert cli.main(["score", "-m", str(m), "--learn", "-c"], io.StringIO(NORMAL), out, err) == 0, err.getvalue()
    before = Model.load(m).chars_seen
    assert cli.main(["score", "-m", str(m), "--learn", "--save-every", "5", "-q"], io.StringIO(NORMAL), out, err) == 0
    assert given == [60.0, 5.0]
    # -q selects every line without --over, yet with --learn it reads on to learn the whole text
    assert Model.load(m).chars_seen - before > 0.9 * len(NORMAL)
