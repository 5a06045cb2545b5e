"""The IPython extension, exercised in a real InteractiveShell (no mocks)."""

import os
import signal
import subprocess
import sys
import threading
import time
import types

import IPython.lib.pretty
import numpy as np
import pytest
from IPython.core.error import UsageError
from IPython.testing import globalipapp
from IPython.utils.capture import capture_output

import rnnpipe
import rnnpipe.sampling
import rnnpipe_magic.views

TEXT = (
    "One morning, when Gregor Samsa woke from troubled dreams, he found himself transformed in his bed into a "
    "horrible vermin. He lay on his armour-like back, and if he lifted his head a little he could see his brown "
    "belly, slightly domed and divided by arches into stiff sections.\n"
) * 4
TINY = "--hidden 8 --batch-size 2 --seq-length 10"  # trains on TEXT in a few milliseconds


def get_ipython():
    """The test session's one shell (IPython's testing app, started once)."""
    globalipapp.start_ipython()
    return globalipapp.get_ipython()


@pytest.fixture
def ip():
    shell = get_ipython()
    shell.run_line_magic("load_ext", "rnnpipe_magic")
    yield shell
    with capture_output():
        shell.run_line_magic("unload_ext", "rnnpipe_magic")


def magics(shell):
    m = shell.magics_manager.magics
    return {name for kind in ("line", "cell") for name in m[kind] if name.startswith("charrnn")}


def plain(output):
    return output.data.get("text/plain", "")


def train(shell, line, body=TEXT):
    """Run a %%charrnn_train cell through IPython's input handling, as a
    notebook does; return the captured output."""
    with capture_output() as cap:
        result = shell.run_cell(f"%%charrnn_train {line}\n{body}")
    result.raise_error()
    return cap


def test_load_unload_reload():
    shell = get_ipython()
    with capture_output():
        shell.run_line_magic("unload_ext", "rnnpipe_magic")
    import rnnpipe_magic  # noqa: F401  (importing registers nothing)

    assert magics(shell) == set()
    shell.run_line_magic("load_ext", "rnnpipe_magic")
    assert set(shell.magics_manager.magics["cell"]) >= {"charrnn_train"}
    assert set(shell.magics_manager.magics["line"]) >= {"charrnn_train", "charrnn_sample"}
    shell.run_line_magic("unload_ext", "rnnpipe_magic")
    assert magics(shell) == set()
    result = shell.run_cell("%charrnn_sample -n 5")
    assert isinstance(result.error_in_exec, UsageError)  # "Line magic function ... not found"
    shell.run_line_magic("load_ext", "rnnpipe_magic")
    before = shell.find_cell_magic("charrnn_train").__self__
    shell.run_line_magic("reload_ext", "rnnpipe_magic")
    after = shell.find_cell_magic("charrnn_train").__self__
    assert after is not before and type(after).__module__ == "rnnpipe_magic.train"
    train(shell, f"--name reloaded {TINY}")  # the reloaded magics work
    shell.run_line_magic("unload_ext", "rnnpipe_magic")


def test_train_then_sample_and_continue(ip):
    body = TEXT + "Prices: $x and {y} stay as typed.\n"
    cap = train(ip, f"--name g {TINY} --seed 3", body)
    assert "new model g" in cap.stdout
    model = ip.find_cell_magic("charrnn_train").__self__.models["name", "g"].model
    # the body was taken literally: no $ or {} expansion
    assert {"$", "{", "}"} <= set(model.vocab.chars)
    assert model.config.hidden == 8 and model.config.seed == 3 and model.config.cell == rnnpipe.Config().cell
    first = model.iterations
    assert first == len(body) // (2 * 10) or first == len(body) // (2 * 10) + 1

    cap = train(ip, "--name g", body)
    assert f"continuing g from iteration {first:,}" in cap.stdout and "changing" not in cap.stdout
    assert model.iterations == 2 * first  # the same object went on training
    cap = train(ip, "--name g --lr 0.002 --epochs 1", body)
    assert cap.stdout.count("changing lr 0.01 -> 0.002 (saved with the model for later runs too)") == 1

    with capture_output() as cap:
        ip.run_line_magic("charrnn_sample", "--name g -n 40 --seed 5 -o s")  # after the third run
    s = ip.user_ns["s"]
    assert len(s) == 40 and set(s) <= set(model.vocab.chars)
    assert cap.stdout == s + "\n"
    assert s == model.sample(40, seed=5)  # what the Python API gives for the same seed


def test_model_file_and_memory(ip, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    train(ip, f"--name mem {TINY}")
    assert os.listdir(tmp_path) == []  # --name keeps the model in memory only

    cap = train(ip, f"-m k.model {TINY} --cell gru")
    assert "saved to k.model" in cap.outputs[0].data["text/plain"] or any(
        "saved to k.model" in plain(o) for o in cap.outputs
    )
    on_disk = rnnpipe.Model.load(tmp_path / "k.model")
    assert on_disk.config.cell == "gru" and on_disk.iterations > 0

    # another process trains the file further: the magic notices and reads it again
    on_disk.train(TEXT)
    on_disk.save(tmp_path / "k.model")
    cap = train(ip, "-m k.model")
    assert f"continuing k.model from iteration {on_disk.iterations:,}" in cap.stdout
    assert rnnpipe.Model.load(tmp_path / "k.model").iterations > on_disk.iterations

    with capture_output() as cap:
        ip.run_line_magic("charrnn_sample", f"-m {tmp_path / 'k.model'} -n 25 --seed 1")
    assert len(cap.stdout) == 26

    # a file that is not a model is a usage error naming it, never a traceback
    (tmp_path / "bad.model").write_bytes(b"not a model")
    with pytest.raises(UsageError, match=r"^bad\.model: "):
        ip.run_line_magic("charrnn_sample", "-m bad.model")

    # a deleted file means starting afresh, not the stale copy in memory
    os.remove(tmp_path / "k.model")
    with pytest.raises(UsageError, match="no model file k.model"):
        ip.run_line_magic("charrnn_sample", "-m k.model")
    cap = train(ip, f"-m k.model {TINY}")
    assert "new model k.model" in cap.stdout


def test_text_variable_and_line_expansion(ip):
    ip.user_ns.update(kafka=TEXT, secs=5, start="Gre", how_many=30)
    with capture_output() as cap:
        ip.run_cell(f"%charrnn_train --name v --text kafka --epochs 1 --max-time $secs {TINY}").raise_error()
    assert "new model v" in cap.stdout
    with capture_output() as cap:
        ip.run_cell("%charrnn_sample --name v --prime $start -n {how_many} --temperature 0 -o out").raise_error()
    out = ip.user_ns["out"]
    assert out.startswith("Gre") and len(out) == 3 + 30
    assert cap.stdout == out + "\n"
    # temperature 0 is greedy: the same text every time, whatever the seed
    with capture_output():
        ip.run_cell("%charrnn_sample --name v --prime Gre -n 30 --temperature 0 --seed 9 -o again").raise_error()
    assert ip.user_ns["again"] == out


def test_progress_updates_in_place_and_samples(ip, monkeypatch):
    big = TEXT * 4
    # the view's clock stands still, so throttling alone decides which reports update the line
    monkeypatch.setattr(rnnpipe_magic.views, "time", types.SimpleNamespace(monotonic=lambda: 1000.0))
    with capture_output() as cap:
        # nothing held out (the default for many passes): every character counts below
        line = f"--name p {TINY} --epochs 3 --valid-fraction 0 --sample-every 50 -o log"
        ip.run_cell_magic("charrnn_train", line, big)
    log = ip.user_ns["log"].history
    assert isinstance(log[-1], rnnpipe.Progress) and log[-1].kind == "end"
    chunks = list(rnnpipe.train.batches(np.arange(len(big)), 10, 2))
    iterations = log[-1].iteration
    assert log[-1].stopped == "end of input" and iterations == len(chunks) * 3
    assert log[-1].chars == len(big) * 3  # every character read counts, the few past the last stream too
    assert [p.iteration for p in log] == sorted(p.iteration for p in log)

    progress = [o for o in cap.outputs if "display_id" in (o.transient or {})]
    ids = {o.transient["display_id"] for o in progress}
    assert len(ids) == 1  # one line, updated in place
    assert not progress[0].update and all(o.update for o in progress[1:])
    # throttled: with no time passing, only the first report, the end and the summary reach the line
    assert len(progress) == 1 + sum(p.kind == "end" for p in log[1:]) + 1 < len(log)
    # the line the command line ends with too
    assert plain(progress[-1]).startswith("end of input: trained on ") and f"iterations 1-{iterations}," in plain(
        progress[-1]
    )

    samples = [plain(o) for o in cap.outputs if "----" in plain(o)]
    assert len(samples) == iterations // 50
    assert samples[0].startswith("iteration 50,")
    reported = [p.sample for p in log if p.kind == "sample"]
    assert len(reported) == len(samples)
    assert all(shown.endswith(f"\n----\n{sample}\n----") for shown, sample in zip(samples, reported, strict=True))


def test_summary_without_matplotlib(ip, monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # as if the plot extra were not installed
    with capture_output() as cap:
        ip.run_cell_magic("charrnn_train", f"--name nm {TINY}", TEXT)
    assert not any("image/png" in o.data for o in cap.outputs)
    summary = plain(cap.outputs[-1])
    assert summary.startswith("smooth loss, iterations 0 to ") and "pip install matplotlib" in summary


def test_plot_with_matplotlib(ip):
    pytest.importorskip("matplotlib")
    with capture_output() as cap:
        ip.run_cell_magic("charrnn_train", f"--name pl {TINY}", TEXT)
    png = cap.outputs[-1].data.get("image/png")
    assert png is not None


@pytest.mark.posix("SIGINTs its own process, as a kernel interrupt does")
def test_interrupt_stops_saves_and_says_where(ip, tmp_path):
    calls = []

    def sentinel(signum, frame):
        calls.append(signum)

    previous = signal.signal(signal.SIGINT, sentinel)

    def interrupt_when_training():
        deadline = time.monotonic() + 10
        while signal.getsignal(signal.SIGINT) is sentinel and time.monotonic() < deadline:
            time.sleep(0.01)
        time.sleep(0.2)
        os.kill(os.getpid(), signal.SIGINT)

    path = tmp_path / "i.model"
    thread = threading.Thread(target=interrupt_when_training)
    try:
        thread.start()
        with capture_output() as cap:
            ip.run_cell_magic("charrnn_train", f"-m {path} {TINY} --epochs 100000 --max-time 20", TEXT)
        thread.join()
        assert signal.getsignal(signal.SIGINT) is sentinel  # the notebook's handler is back
    finally:
        signal.signal(signal.SIGINT, previous)
    assert calls == []
    # stopped by the interrupt, not by the 20 s limit: the last line says which
    line = next(plain(o) for o in cap.outputs if "interrupted" in plain(o))
    saved = rnnpipe.Model.load(path)
    # the file's model is the best held-out one; the last one trained, where the summary ends, waits beside it
    later = rnnpipe.Model.from_bytes(saved.resume.current) if saved.resume.current else saved
    assert line.startswith("interrupted: trained on ") and f"iterations 1-{later.iterations}," in line
    assert f"saved to {path}" in line


@pytest.mark.parametrize(
    "magic, line, expected",
    [
        ("charrnn_train", "--hidden many", "argument --hidden: invalid int value: 'many'"),
        ("charrnn_train", "--cell transformer", "argument --cell: invalid choice: 'transformer'"),
        ("charrnn_train", "--bogus 1", "unrecognized arguments: --bogus 1"),
        ("charrnn_train", "--hidden 0", "hidden must be a positive integer, not 0"),
        ("charrnn_train", "--name u --hidden 9", "cannot change hidden of an existing model (it has hidden=8)"),
        ("charrnn_train", "-m x.model --name y", "give -m FILE or --name NAME, not both"),
        ("charrnn_train", "--text missing", "--text: no variable 'missing'"),
        ("charrnn_train", "--text number", "--text: number is a int, not a str"),
        ("charrnn_train", "-o 2x", "-o needs a variable name, not '2x'"),
        # names whose loss breaks the notebook: IPython's own, dunders, keywords, builtins
        *(
            ("charrnn_train", f"-o {n}", f"-o {n} would replace a name the notebook or Python needs")
            for n in ("get_ipython", "In", "Out", "exit", "__name__", "__builtins__", "print", "len", "open")
        ),
        *(
            ("charrnn_sample", f"--name u -o {n}", f"-o needs a variable name, not {n!r}")
            for n in ("None", "True", "False", "class", "lambda")
        ),
        ("charrnn_sample", "--name u -o get_ipython", "-o get_ipython would replace a name the notebook or Python"),
        (
            "charrnn_train",
            "-m /no/such/folder/x.model",
            "/no/such/folder/x.model: folder /no/such/folder does not exist",
        ),
        ("charrnn_sample", "--name nobody", "no model named 'nobody' in this session"),
        ("charrnn_sample", "--name u --prime Gregür", "the prime has characters the model has never seen: 'ü'"),
        ("charrnn_sample", "--name u -n -1", "-n must be 0 (no end) or more characters, not -1"),
        ("charrnn_sample", "--name u --top-k 0", "--top-k must be at least 1, not 0"),
        ("charrnn_sample", "--name u --temperature hot", "argument --temperature: invalid float value: 'hot'"),
        ("charrnn_sample", "--name u --temperature nan", "--temperature must be 0 or more, not nan"),
        ("charrnn_sample", "--name u --temperature -1", "--temperature must be 0 or more, not -1"),
        ("charrnn_sample", "--name u --seed -1", "--seed must be 0 or more, not -1"),
        ("charrnn_train", "--name u --seed -1", "seed must be a non-negative integer, not -1"),
        ("charrnn_train", "--name u --epochs 0", "--epochs must be at least 1, not 0"),
        ("charrnn_train", "--name u --max-time 0", "--max-time must be a positive number of seconds, not 0"),
        ("charrnn_train", "--name u --max-time nan", "--max-time must be a positive number of seconds, not nan"),
        ("charrnn_train", "--name u --max-time inf", "--max-time must be a positive number of seconds, not inf"),
        ("charrnn_train", "--name u --max-time 10x", "argument --max-time: '10x' is not a duration"),
        ("charrnn_train", "--name u --sample-every -1", "--sample-every must be 0 (never) or more, not -1"),
        ("charrnn_train", "--name u --valid-fraction 1", "--valid-fraction must be at least 0 and below 1, not 1"),
        # the core refuses dropout that would silently do nothing; the magic says so in one line
        ("charrnn_train", f"--name d {TINY} --dropout 0.5", "dropout 0.5 would do nothing"),
        ("charrnn_train", "--name u --dropout 0.5", "dropout 0.5 would do nothing"),
        # quotes that a shell would refuse are refused the same way
        ("charrnn_sample", '--name u --prime "KING', 'no closing quotation in the options: --name u --prime "KING'),
        ("charrnn_sample", "--name u --prime 'KING", "no closing quotation in the options: --name u --prime 'KING"),
        ("charrnn_sample", "--name u --prime KING\\", "no escaped character in the options: --name u --prime KING\\"),
        ("charrnn_train", '-m "a b.msgpack', 'no closing quotation in the options: -m "a b.msgpack'),
    ],
)
def test_usage_errors(ip, magic, line, expected):
    ip.user_ns["number"] = 3
    with capture_output():
        ip.run_cell_magic("charrnn_train", f"--name u {TINY}", TEXT)
    with pytest.raises(UsageError) as e:
        if magic == "charrnn_train" and "--text" in line:
            ip.run_line_magic(magic, line)
        elif magic == "charrnn_train":
            ip.run_cell_magic(magic, line, TEXT)
        else:
            ip.run_line_magic(magic, line)
    message = str(e.value)
    assert message.startswith(expected) and "\n" not in message


def test_usage_error_shows_one_line_not_a_traceback(ip):
    with capture_output() as cap:
        result = ip.run_cell("%%charrnn_train --hidden many\nsome text")
    assert isinstance(result.error_in_exec, UsageError)
    assert cap.stderr.strip() == "UsageError: argument --hidden: invalid int value: 'many'"
    with capture_output() as cap:
        ip.run_cell("%charrnn_train --max-time 1")
    assert cap.stderr.strip().startswith("UsageError: %charrnn_train needs --text VAR")


def test_help_text_lists_the_options(ip):
    train_help = ip.object_inspect_text("%charrnn_train")
    for option in ("--hidden", "--cell", "--max-time", "--sample-every", "--text", "--name", "-m MODEL"):
        assert option in train_help
    assert "%%charrnn_train [-m MODEL]" in train_help
    sample_help = ip.object_inspect_text("%charrnn_sample")
    for option in ("--temperature", "--top-k", "--prime", "-o VAR", "-n N"):
        assert option in sample_help
    # the options mean what they mean on the command line: the same help lines
    hidden = dict(rnnpipe.options.ARCHITECTURE[1:2])[("--hidden",)]["help"]
    assert " ".join(hidden.split()[:3]) in train_help


# -- the line is split as a shell splits it (issue 9, item 3) -----------------

QUOTED = TEXT + 'KING HENRY: He said "no" and it\'s a\\b, Zoe, for $5.\n'


def test_quoted_model_paths_name_the_file_without_quotes(ip, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    cap = train(ip, f'-m "my model.msgpack" {TINY}', QUOTED)
    assert "new model my model.msgpack" in cap.stdout
    train(ip, f"-m 'single quoted.msgpack' {TINY}", QUOTED)
    train(ip, f"-m back\\ slash.msgpack {TINY}", QUOTED)
    assert sorted(os.listdir(tmp_path)) == ["back slash.msgpack", "my model.msgpack", "single quoted.msgpack"]
    # the same file again, however it is quoted: one model, continued
    cap = train(ip, "-m my\\ model.msgpack", QUOTED)
    assert "continuing my model.msgpack from iteration" in cap.stdout
    with capture_output() as cap:
        ip.run_cell("%charrnn_sample -m 'my model.msgpack' -n 5 --seed 1 -o five").raise_error()
    assert len(ip.user_ns["five"]) == 5
    # a message that suggests a command quotes the path so it can be pasted back
    with pytest.raises(UsageError, match=r"^no model file gone away\.msgpack; .* -m 'gone away\.msgpack'$"):
        ip.run_line_magic("charrnn_sample", '-m "gone away.msgpack"')


@pytest.mark.parametrize(
    "written, prime",
    [
        ('"KING HENRY:"', "KING HENRY:"),
        ("'KING HENRY:'", "KING HENRY:"),
        ("KING\\ HENRY:", "KING HENRY:"),
        ('--prime="He said \\"no\\""', 'He said "no"'),
        ('"and it\'s"', "and it's"),
        ("'it'\"'\"'s a\\b'", "it's a\\b"),  # single quotes keep a backslash, as in a shell
        ('"a\\\\b, Zoe"', "a\\b, Zoe"),  # double quotes take \\ as one backslash
        ("'$'", "$"),  # IPython expands $name before the split; a lone $ is left alone
    ],
)
def test_quoted_primes_are_printed_and_stored_without_quotes(ip, written, prime):
    train(ip, f"--name q {TINY}", QUOTED)
    option = written if written.startswith("--prime") else f"--prime {written}"
    with capture_output() as cap:
        ip.run_cell(f"%charrnn_sample --name q {option} -n 20 --seed 4 -o out").raise_error()
    model = ip.find_cell_magic("charrnn_train").__self__.models["name", "q"].model
    expected = model.sample(20, prime=prime, seed=4)  # the prime, then the sample
    assert ip.user_ns["out"] == expected
    assert cap.stdout == expected + "\n"


def test_a_quoted_variable_with_spaces_is_one_value(ip):
    train(ip, f"--name qv {TINY}", QUOTED)
    ip.user_ns["who"] = "KING HENRY:"
    with capture_output():
        ip.run_cell('%charrnn_sample --name qv --prime "$who" -n 10 -o out').raise_error()
    assert ip.user_ns["out"].startswith("KING HENRY:") and len(ip.user_ns["out"]) == 11 + 10


def test_unbalanced_quotes_are_one_line_not_a_traceback(ip):
    train(ip, f"--name ub {TINY}", QUOTED)
    with capture_output() as cap:
        result = ip.run_cell('%charrnn_sample --name ub --prime "KING HENRY:')
    assert isinstance(result.error_in_exec, UsageError)
    assert cap.stderr.strip() == 'UsageError: no closing quotation in the options: --name ub --prime "KING HENRY:'
    with capture_output() as cap:
        result = ip.run_cell(f"%%charrnn_train --name ub2 {TINY} -m 'x.msgpack\n{TEXT}")
    assert isinstance(result.error_in_exec, UsageError)
    assert len(cap.stderr.strip().splitlines()) == 1 and "no closing quotation" in cap.stderr


# -- the command line's sampling options (item 4) ------------------------------


def test_no_echo_prime_prints_and_stores_only_the_new_text(ip):
    train(ip, f"--name ne {TINY}", QUOTED)
    model = ip.find_cell_magic("charrnn_train").__self__.models["name", "ne"].model
    with capture_output() as cap:
        ip.run_cell(
            '%charrnn_sample --name ne --prime "KING HENRY:" --no-echo-prime -n 30 --seed 2 -o out'
        ).raise_error()
    generated = model.sample(30, prime="KING HENRY:", seed=2, echo_prime=False)
    assert ip.user_ns["out"] == generated
    assert cap.stdout == generated + "\n"


def test_skip_unknown_warns_naming_the_characters_then_samples(ip):
    train(ip, f"--name sk {TINY}", QUOTED)
    model = ip.find_cell_magic("charrnn_train").__self__.models["name", "sk"].model
    assert {"ë", "1", "2"}.isdisjoint(model.vocab.chars)
    with pytest.raises(UsageError, match="never seen: '1' '2' 'ë'"):  # refused unless asked
        ip.run_line_magic("charrnn_sample", "--name sk --prime 'Zoë said: 1 2'")
    with capture_output() as cap:
        ip.run_cell(
            "%charrnn_sample --name sk --prime 'Zoë said: 1 2' --skip-unknown -n 25 --seed 3 -o out"
        ).raise_error()
    assert cap.stderr.strip().splitlines() == ["warning: left out of the prime, never seen by the model: '1' '2' 'ë'"]
    generated = model.sample(25, prime="Zo said:  ", seed=3, echo_prime=False)  # conditioned on the prime without them
    assert ip.user_ns["out"] == "Zoë said: 1 2" + generated  # the prime is shown as it was written
    assert cap.stdout == ip.user_ns["out"] + "\n"
    # nothing to leave out: no warning
    with capture_output() as cap:
        ip.run_cell("%charrnn_sample --name sk --prime Zoe --skip-unknown -n 5").raise_error()
    assert cap.stderr == ""


def test_lines_without_n_are_not_cut_at_ns_default(ip):
    long_lines = (TEXT.replace("\n", " ") * 3 + "\n") * 4  # lines of 780 characters
    train(ip, f"--name ll {TINY} --epochs 3", long_lines)
    model = ip.find_cell_magic("charrnn_train").__self__.models["name", "ll"].model
    with capture_output() as cap:
        ip.run_cell("%charrnn_sample --name ll --seed 2 --lines 3 -o out").raise_error()
    out = ip.user_ns["out"]
    assert out.count("\n") == 3 and out.endswith("\n") and len(out) > 300  # -n's default held less than a line
    assert out == model.sample(lines=3, seed=2)
    assert cap.stdout == out + "\n"


def test_a_stop_condition_that_never_comes_ends_after_the_bound(ip, monkeypatch):
    train(ip, f"--name nb {TINY}", QUOTED)
    monkeypatch.setattr(rnnpipe.sampling, "MAX_CHARS", 500)  # 100,000 takes seconds
    with capture_output() as cap:
        ip.run_cell("%charrnn_sample --name nb --prime Gregor --until @ -o out").raise_error()  # never written
    assert len(ip.user_ns["out"]) == len("Gregor") + 500
    assert cap.stdout == ip.user_ns["out"] + "\n"


def test_infinite_temperature_samples_uniformly(ip):
    train(ip, f"--name inf {TINY}", QUOTED)
    with capture_output():
        ip.run_cell("%charrnn_sample --name inf --temperature inf -n 2000 --seed 1 -o out").raise_error()
    model = ip.find_cell_magic("charrnn_train").__self__.models["name", "inf"].model
    out = ip.user_ns["out"]
    assert len(out) == 2000 and set(out) <= set(model.vocab.chars)
    assert len(set(out)) > 0.9 * len(model.vocab.chars)  # even the rarest characters come up


def test_help_shows_every_command_line_option(ip):
    sample_help = ip.object_inspect_text("%charrnn_sample")
    for option in ("--no-echo-prime", "--skip-unknown", "--seed", "--top-k"):
        assert option in sample_help
    assert "TrainResult" in ip.object_inspect_text("%charrnn_train")


# -- train -o stores a result to use (item 5) ----------------------------------


def test_train_output_is_a_result_with_the_model_and_losses(ip, tmp_path):
    import rnnpipe_magic

    path = tmp_path / "r.msgpack"
    train(ip, f"-m {path} {TINY} --epochs 2 --valid-fraction 0.2 -o run")
    run = ip.user_ns["run"]
    assert isinstance(run, rnnpipe_magic.TrainResult)
    entry = ip.find_cell_magic("charrnn_train").__self__.models["file", str(path)]
    assert run.model is entry.model and isinstance(run.model, rnnpipe.Model)
    assert run.final is run.history[-1] and run.final.kind == "end" and run.stopped == "end of input"
    assert all(isinstance(p, rnnpipe.Progress) for p in run.history)
    assert run.iterations == run.model.iterations == run.final.iteration
    assert run.bits_per_char == run.final.smooth_bits and 0 < run.bits_per_char < 8
    assert run.heldout_bits == run.final.valid_bits and 0 < run.heldout_bits < 8
    assert run.saved == str(path)
    assert run.model.sample(10, seed=1) == rnnpipe.Model.load(path).sample(10, seed=1)
    # readable, in a notebook too: one line with what a user looks for
    text = repr(run)
    assert text.startswith(
        f"<TrainResult: end of input at iteration {run.iterations:,}; {run.bits_per_char:.3f} bits/char"
    )
    assert f"held out {run.heldout_bits:.3f}" in text and f"saved to {path}" in text and "\n" not in text
    assert IPython.lib.pretty.pretty(run) == text  # what a notebook shows for `run`

    train(ip, f"--name mem {TINY} -o run")
    run = ip.user_ns["run"]
    assert run.saved is None and run.heldout_bits is None
    assert "held out" not in repr(run) and repr(run).endswith("in memory>")


# -- the core's rules, through the magic (item 6) ------------------------------


def test_max_time_without_epochs_trains_for_that_time(ip):
    train(ip, f"--name mt {TINY} --max-time 0.025m -o run")  # the command line's suffixes: 1.5 s
    run = ip.user_ns["run"]
    assert run.stopped == "time limit" and run.final.max_time == 1.5 and run.final.elapsed >= 1.5
    assert run.final.epoch > 1 and run.final.chars > 3 * len(TEXT)  # pass after pass, not one
    train(ip, f"--name one {TINY} -o run")
    assert ip.user_ns["run"].stopped == "end of input" and ip.user_ns["run"].final.chars == len(TEXT)


# -- IPython is an extra (item 13) ---------------------------------------------


def test_without_ipython_the_import_says_how_to_install_it():
    code = (
        "import sys\n"
        "sys.modules['IPython'] = None  # as if IPython were not installed\n"
        "try:\n"
        "    import rnnpipe_magic\n"
        "except ImportError as e:\n"
        "    print(type(e).__name__, e.name, str(e), sep='|')\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    kind, name, message = done.stdout.strip().split("|")
    assert kind == "ModuleNotFoundError" and name == "IPython"
    assert message.startswith("rnnpipe_magic needs IPython") and "pip install 'rnnpipe[notebook]'" in message
    assert "\n" not in message
