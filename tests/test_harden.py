"""Issue 21: nothing a user, a file or a busy machine can do loses a model or
reaches past it. Each test goes through the real executable where the
behaviour is the command line's (docs/reliability.md, "Hostile options,
paths and files")."""

import math
import os
import re
import socket
import stat
import subprocess
import threading

import pytest
from cli_util import TINY, info, one_error_line, run, shell

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


# -- outputs never over the model, never replacing a device or a FIFO ---------------------

PAGE = 'He said "to be (or not) to be", and went.\n'  # every feature varies: no notes before an error


def output_commands(model, out, tmp_path):
    """Every command that writes a file named on its command line, writing out from model."""
    text = tmp_path / "page.txt"
    text.write_text(PAGE)
    yield "show", ["show", "-m", model, text, "-o", out]
    yield "export", ["export", "-m", model, "--torch", out]


@pytest.mark.parametrize("through", ["the same name", "a symbolic link", "a hard link"])
def test_an_output_is_never_written_over_the_model_being_read(small, tmp_path, through):
    pytest.importorskip("torch")
    model = tmp_path / "m.msgpack"
    model.write_bytes(small.read_bytes())
    before = model.read_bytes()
    out = {"the same name": model, "a symbolic link": tmp_path / "out", "a hard link": tmp_path / "out"}[through]
    if through == "a symbolic link":
        out.symlink_to(model)
    elif through == "a hard link":
        os.link(model, out)
    for name, args in output_commands(model, out, tmp_path):
        line = one_error_line(run(*args), 1)
        assert line == f"rnnpipe: error: {out}: is the model being read ({model}); give the output another name", name
        assert model.read_bytes() == before, name
    assert out.is_symlink() == (through == "a symbolic link")


def test_a_neurons_page_is_never_written_over_the_model(small, tmp_path):
    model, pages = tmp_path / "m.msgpack", tmp_path / "pages"
    model.write_bytes(small.read_bytes())
    before = model.read_bytes()
    assert run("neurons", "-m", model, "--html", pages, "--top", "1", input=PAGE * 20).returncode == 0
    page = sorted(pages.iterdir())[0]
    page.unlink()
    page.symlink_to(model)  # the page it will write again is now the model
    r = run("neurons", "-m", model, "--html", pages, "--top", "1", input=PAGE * 20)
    assert r.returncode == 1 and r.stdout.startswith(b"  unit")  # the table, then the pages
    assert r.stderr.decode().splitlines() == [f"rnnpipe: error: {page}: is the model being read ({model}); give the "
                                               "output another name"]  # fmt: skip
    assert model.read_bytes() == before and page.is_symlink()


@pytest.mark.posix("FIFOs")
def test_an_output_that_is_a_fifo_is_written_as_a_stream(small, tmp_path):
    pytest.importorskip("torch")
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    for name, args in output_commands(small, fifo, tmp_path):
        got = {}
        reader = threading.Thread(target=lambda got=got: got.setdefault("data", fifo.read_bytes()), daemon=True)
        reader.start()
        r = run(*args, timeout=60)
        if r.returncode != 0 and reader.is_alive():  # unblock the reader so the test can end
            os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
        reader.join(timeout=30)
        assert r.returncode == 0, (name, r.stderr)
        assert stat.S_ISFIFO(os.lstat(fifo).st_mode), name  # still a FIFO, not replaced by a file
        assert got["data"].startswith(b"<!DOCTYPE html>" if name == "show" else b"PK"), name


@pytest.mark.posix("mknod")
def test_an_output_that_is_a_character_device_is_written_as_a_stream(small, tmp_path):
    device = tmp_path / "null"
    try:
        os.mknod(device, stat.S_IFCHR | 0o666, os.makedev(1, 3))  # a /dev/null of this test's own
    except PermissionError:
        pytest.skip("creating a device node needs CAP_MKNOD")
    text = tmp_path / "page.txt"
    text.write_text(PAGE)
    r = run("show", "-m", small, text, "-o", device)
    assert r.returncode == 0, r.stderr
    assert stat.S_ISCHR(os.lstat(device).st_mode)  # still the device
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")] == []
    # and in Python: a save never renames a file over a device
    with pytest.raises(OSError, match="not a regular file"):
        Model.load(small).save(device)
    assert stat.S_ISCHR(os.lstat(device).st_mode)


def test_an_output_that_is_another_special_file_is_refused(small, tmp_path):
    text = tmp_path / "page.txt"
    text.write_text(PAGE)
    sock = socket.socket(socket.AF_UNIX)
    sock.bind(str(tmp_path / "sock"))
    try:
        line = one_error_line(run("show", "-m", small, text, "-o", tmp_path / "sock"), 1)
    finally:
        sock.close()
    assert "sock: is not a regular file, a FIFO or a character device; cannot write the page" in line


# -- import --torch of weights rnnpipe cannot hold ------------------------------------------


def exported(tmp_path, small):
    torch = pytest.importorskip("torch")
    pt = tmp_path / "m.pt"
    assert run("export", "-m", small, "--torch", pt).returncode == 0
    return torch, torch.load(pt, weights_only=True)


@pytest.mark.parametrize(
    "change, says",
    [
        (lambda t, w: w.double().fill_(float("nan")), "holds NaN or infinite weights"),
        (lambda t, w: w.double().fill_(float("inf")), "holds NaN or infinite weights"),
        (lambda t, w: w.double().fill_(1e39), "weights too large for float32"),  # finite in float64 only
        (lambda t, w: w.to(t.complex64), "holds torch.complex64, not real floating-point weights"),
        (lambda t, w: w.to(t.int64), "holds torch.int64, not real floating-point weights"),
    ],
)
def test_import_refuses_weights_it_cannot_hold(small, tmp_path, change, says):
    torch, data = exported(tmp_path, small)
    data["state_dict"]["head.bias"] = change(torch, data["state_dict"]["head.bias"])
    torch.save(data, tmp_path / "bad.pt")
    line = one_error_line(run("import", "--torch", tmp_path / "bad.pt", "-m", tmp_path / "new.msgpack"), 1)
    assert line.startswith(f"rnnpipe: error: {tmp_path / 'bad.pt'}: head.bias ") and says in line, line
    assert not (tmp_path / "new.msgpack").exists()


def test_import_refuses_a_vocabulary_with_a_lone_surrogate(small, tmp_path):
    torch, data = exported(tmp_path, small)
    data["vocab"][-1] = "\ud800"
    torch.save(data, tmp_path / "bad.pt")
    line = one_error_line(run("import", "--torch", tmp_path / "bad.pt", "-m", tmp_path / "new.msgpack"), 1)
    assert line.endswith("vocab holds a lone surrogate, not a character: '\\ud800'"), line
    assert not (tmp_path / "new.msgpack").exists()


def import_peak(pt, model):
    """(exit status, stderr, peak RSS in MiB) of `rnnpipe import --torch pt -m model`, its address
    space capped at 3 GiB so that what once took gigabytes fails instead of swamping the machine."""
    import resource

    from cli_util import ENV, RNNPIPE

    def cap():
        resource.setrlimit(resource.RLIMIT_AS, (3 << 30, 3 << 30))

    p = subprocess.Popen([*RNNPIPE, "import", "--torch", str(pt), "-m", str(model)], env=ENV, preexec_fn=cap,
                         stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)  # fmt: skip
    err = p.stderr.read()
    _, status, usage = os.wait4(p.pid, 0)
    p.returncode = os.waitstatus_to_exitcode(status)
    return p.returncode, err.decode(), usage.ru_maxrss / 1024


def hidden_20000(torch, data, pt):  # issue 21: 27 KB took 4.8 GB and 16 s, the modules built before any check
    torch.save(dict(data, config=dict(data["config"], hidden=20000)), pt)


def views_of_one_number(torch, data, pt):
    # every tensor the config says hidden 2,000 needs, each a view of one number: 50 MB once made whole
    config = dict(data["config"], hidden=2000)
    G, H, V = {"rnn": 1, "lstm": 4, "gru": 3}[config["cell"]], 2000, len(data["vocab"])
    shapes = {"head.weight": (V, H), "head.bias": (V,)}
    for k in range(config["layers"]):
        shapes |= {f"rnn.weight_ih_l{k}": (G * H, V if k == 0 else H), f"rnn.weight_hh_l{k}": (G * H, H),
                   f"rnn.bias_ih_l{k}": (G * H,), f"rnn.bias_hh_l{k}": (G * H,)}  # fmt: skip
    one = torch.zeros(1)
    torch.save(dict(data, config=config, state_dict={k: one.expand(*v) for k, v in shapes.items()}), pt)


def deflated_storage(torch, data, pt):  # issue 21: a megabyte of deflated storage took 1.25 GB
    import zipfile

    good = pt.with_name("good.pt")
    torch.save(data, good)
    with zipfile.ZipFile(good) as a, zipfile.ZipFile(pt, "w") as b:
        for m in a.infolist():
            if m.filename.endswith("/data/0"):  # the first storage: 256 MiB of zeros in a few hundred KB
                b.writestr(m.filename, b"\0" * (256 << 20), compress_type=zipfile.ZIP_DEFLATED)
            else:
                b.writestr(m.filename, a.read(m))


def pickle_of_empty_dicts(torch, data, pt):  # 4 MB of data.pkl, a list of 2 million {}: 145 MB unpickled
    import zipfile

    good = pt.with_name("good.pt")
    torch.save(data, good)
    with zipfile.ZipFile(good) as a, zipfile.ZipFile(pt, "w") as b:
        for m in a.infolist():
            b.writestr(
                m.filename, b"\x80\x02]" + b"}a" * 2_000_000 + b"." if m.filename.endswith("data.pkl") else a.read(m)
            )


@pytest.mark.posix("RLIMIT_AS and wait4")
@pytest.mark.parametrize(
    "make, says",
    [
        (hidden_20000, r"rnn.weight_ih_l0 has shape \(\d+, \d+\), expected \(60000, \d+\)$"),
        (views_of_one_number, r"its tensors stand for 49,[\d,]+ bytes of weights; the file holds 4$"),
        (deflated_storage, r"'good/data/0' is compressed \([\d,]+ bytes unpacking to 268,435,456\); torch.save"),
        (pickle_of_empty_dicts, r"its data.pkl would take more than [\d,]+ bytes to unpickle, 16 times the file's"),
    ],
)
def test_import_checks_what_a_file_holds_before_it_builds_or_unpacks_anything(small, tmp_path, make, says):
    torch, data = exported(tmp_path, small)
    status, err, baseline = import_peak(tmp_path / "m.pt", tmp_path / "good.msgpack")
    assert status == 0, err
    make(torch, data, tmp_path / "bad.pt")
    status, err, peak = import_peak(tmp_path / "bad.pt", tmp_path / "new.msgpack")
    line = one_error_line(subprocess.CompletedProcess([], status, b"", err.encode()), 1)
    assert line.startswith(f"rnnpipe: error: {tmp_path / 'bad.pt'}: ") and re.search(says, line), line
    assert peak < baseline + 64, f"{peak:.0f} MiB, against {baseline:.0f} for the good file"
    assert not (tmp_path / "new.msgpack").exists()


# -- integers beyond the file format's ranges or sane memory --------------------------------


@pytest.mark.parametrize(
    "flag, says",
    [
        ("--epochs", "--epochs must be at most 2**63-1"),
        ("--max-vocab", "--max-vocab must be at most 2**63-1"),
        ("--seed", "seed must be at most 2**63-1"),
        ("--hidden", "hidden must be at most 32,768"),
        ("--layers", "layers must be at most 1,024"),
        ("--seq-length", "seq_length must be at most 1,048,576"),
        ("--batch-size", "batch_size must be at most 1,048,576"),
    ],
)
def test_integers_beyond_the_formats_range_or_memory_are_refused_before_any_work(tmp_path, flag, says):
    # 2**64: once an overflow in the save, an OOM kill (--layers), or a run that never ended (--epochs)
    line = one_error_line(run("train", "-m", tmp_path / "m.msgpack", flag, str(2**64), input=TEXT, timeout=60), 2)
    assert says in line, line
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("field", ["iterations", "chars_seen"])
def test_a_file_counting_past_2_63_is_refused(field):
    from test_fuzz import body, seal

    from rnnpipe import ModelFormatError

    doc = body()
    doc["state"][field] = 2**63
    with pytest.raises(ModelFormatError, match=f"state.{field} should be a non-negative integer below 2\\*\\*63"):
        Model.from_bytes(seal(doc))


def test_a_file_with_more_layers_than_the_stated_most_is_refused():
    # 20,000 layers of one unit: a valid file once, and 107 s to sample 10 characters
    from test_fuzz import body, seal

    from rnnpipe import ModelFormatError

    doc = body()
    doc["config"]["layers"] = 20000
    with pytest.raises(ModelFormatError, match="bad config: layers must be at most 1,024 "):
        Model.from_bytes(seal(doc))


# -- issue 21, item 4: --beam, and sampling's memory -------------------------------------


@pytest.mark.parametrize("beam", ["1025", "1000000"])
def test_a_beam_wider_than_the_stated_most_is_refused_before_any_work(small, beam):
    # --beam 1000000 reached 3.8 GB; refused before the model is read, as the help says
    line = one_error_line(run("sample", "-m", small, "--beam", beam, "-n", "5", timeout=30), 2)
    assert line.endswith(f"--beam must be at most 1,024 (each character scores every beam's every next "
                         f"character), not {beam}"), line  # fmt: skip
    assert "K at most 1,024" in " ".join(run("sample", "--help").stdout.decode().split())
    assert run("sample", "-m", small, "--beam", "1024", "-n", "2").returncode == 0


def test_python_refuses_a_beam_wider_than_the_stated_most():
    model = Model.new(hidden=8)
    model.train(TEXT)
    with pytest.raises(SettingError, match="beam must be at most 1,024"):
        model.sample(5, beam=1025)


def test_sampling_memory_refuses_a_beam_that_does_not_fit_and_shrinks_a_prime_chunk():
    from rnnpipe import Config, plan

    config = Config()
    assert plan.check_sampling(config, 100, 1024, 4096, total=2 * 2**30) == 4096  # the widest beam, 100 characters
    says = r"beam 1024 over this model's 20,000 characters needs about 1.\d GiB for each character, more than half"
    with pytest.raises(SettingError, match=says + " of this machine's 2.0 GiB") as e:
        plan.check_sampling(config, 20000, 1024, 4096, total=2 * 2**30)
    assert e.value.flag().startswith("--beam 1024 over this model's")
    assert plan.prime_chunk(config, 100, 4096, total=2 * 2**30) == 4096  # the default model: a whole chunk
    big = config.replace(hidden=4096)  # 200 KB of activations a character, 0.8 GB of weights in float64 twice
    chunk = plan.prime_chunk(big, 100, 4096, total=2 * 2**30)
    assert 1 < chunk < 4096
    assert plan.sample_bytes(big, 100, chunk) <= 2**30 < plan.sample_bytes(big, 100, chunk + 1)


# -- issue 21, item 12: the smaller ones ------------------------------------------------


def test_an_error_is_one_line_whatever_a_path_holds(tmp_path):
    # a newline or ESC in a path must not forge a second `rnnpipe: error:` line or colour the terminal
    folder = "a\nrnnpipe: error: forged\x1b[31m"
    line = one_error_line(run("train", "-m", tmp_path / folder / "m.msgpack", input="some text to learn"), 1)
    assert "\\n" in line and "\\x1b[31m" in line and "\x1b" not in line


@pytest.mark.posix("closes the standard input of a shell command")
def test_eval_and_show_with_stdin_closed_say_so_in_one_line(tmp_path):
    model = tmp_path / "m.msgpack"
    assert run("train", "-m", model, *TINY, "-q", input="some text to learn " * 20).returncode == 0
    for command in ("eval", "show"):
        r = shell(f"rnnpipe {command} -m {model} <&-")
        assert (
            r.returncode == 1 and r.stderr.decode() == "rnnpipe: error: cannot read stdin: it is closed; give a FILE\n"
        )


def test_eval_refuses_threads_below_one_as_train_does(tmp_path):
    line = one_error_line(run("eval", "-m", tmp_path / "m.msgpack", "--threads", "-5"), 2)
    assert "--threads must be at least 1, not -5" in line


def test_a_device_that_holds_no_numbers_is_refused(tmp_path):
    pytest.importorskip("torch")
    line = one_error_line(run("train", "-m", tmp_path / "m.msgpack", "--engine", "torch", "--device", "meta",
                              input="some text to learn"), 1)  # fmt: skip
    assert "--device meta: the torch engine trains on cpu, cuda or mps, not meta" in line
    assert not (tmp_path / "m.msgpack").exists()


# -- issue 21, item 5: lone surrogates at every door -----------------------------------


def test_python_text_with_a_lone_surrogate_is_refused_before_it_is_learned():
    from rnnpipe import Model
    from rnnpipe.reader import InputError

    model = Model.new(hidden=8)
    with pytest.raises(InputError, match=r"lone surrogate, U\+D800, at character 3"):
        model.train("abc\ud800def" * 10)
    assert len(model.vocab) == 0 and model.iterations == 0  # nothing learned, so nothing that cannot be saved


@pytest.mark.parametrize("magic", ["charrnn_train", "charrnn_show"])
def test_the_magics_refuse_a_lone_surrogate_in_one_line(tmp_path, magic):
    pytest.importorskip("IPython")
    from IPython.core.error import UsageError
    from IPython.testing import globalipapp

    globalipapp.start_ipython()
    shell = globalipapp.get_ipython()
    shell.run_line_magic("load_ext", "rnnpipe_magic")
    path = tmp_path / "m.msgpack"
    if magic == "charrnn_show":
        shell.run_cell_magic("charrnn_train", f"-m {path} {' '.join(TINY)}", "some text to learn " * 20)
    before = path.read_bytes() if path.exists() else None
    shell.user_ns["poisoned"] = "ab\ud800cd" * 20
    result = shell.run_cell(f"%{magic} -m {path} --text poisoned")
    assert isinstance(result.error_in_exec, UsageError), result.error_in_exec
    assert "lone surrogate, U+D800" in str(result.error_in_exec)
    assert (path.read_bytes() if path.exists() else None) == before


def test_a_file_with_a_negative_squared_gradient_sum_is_refused(tmp_path):
    # Adam's v and Adagrad's mem sum squares: negative, every later update would be NaN and every run diverge
    import hashlib

    import msgpack
    import numpy as np

    from rnnpipe import Model, ModelFormatError

    for optimizer, slot in (("adam", "v"), ("adagrad", "mem")):
        model = Model.new(hidden=8, optimizer=optimizer)
        model.train("some text to learn " * 20)
        outer = msgpack.unpackb(model.to_bytes(), raw=False)
        body = msgpack.unpackb(outer["model"], raw=False)
        name = f"{slot}.Why"
        a = np.frombuffer(body["optimizer"][name]["data"], body["optimizer"][name]["dtype"]).copy()
        a[0] = -1.0
        body["optimizer"][name]["data"] = a.tobytes()
        data = msgpack.packb(body, use_bin_type=True)
        outer.update(model=data, sha256=hashlib.sha256(data).digest())
        with pytest.raises(ModelFormatError, match=f"optimizer.{name} holds a negative value"):
            Model.from_bytes(msgpack.packb(outer, use_bin_type=True))


# -- issue 21, item 4: memory before any work -------------------------------------------


def test_a_run_too_big_for_the_machine_is_refused_before_any_work(tmp_path):
    # 10^10 positions an update: terabytes on any machine, refused in one line naming the settings
    model = tmp_path / "m.msgpack"
    line = one_error_line(run("train", "-m", model, "--batch-size", "100000", "--seq-length", "100000",
                              input="some text to learn"), 2)  # fmt: skip
    assert "--batch-size 100000 with --seq-length 100000 needs about " in line and "GiB for one update" in line
    assert not model.exists()


def test_the_memory_estimate_refuses_what_does_not_fit_and_passes_the_defaults():
    from rnnpipe import Config
    from rnnpipe.errors import SettingError
    from rnnpipe.plan import check_memory, update_bytes

    default = Config()
    assert update_bytes(default, 65) < 100 * 2**20  # the default run: tens of MB
    check_memory(default, 65, total=2 * 2**30)  # fits a 2 GiB machine
    big = default.replace(batch_size=4096)
    with pytest.raises(SettingError, match="batch_size 4096 with seq_length 50 needs about 4.3 GiB") as e:
        check_memory(big, 65, total=8 * 2**30)
    assert e.value.flag().startswith("--batch-size 4096 with --seq-length 50 ")
    check_memory(big, 65, total=16 * 2**30)  # and fits a machine twice the estimate


def test_a_long_prime_is_run_through_in_bounded_chunks(monkeypatch):
    # a 238 KB prime took 2.8 GB when its activations were all held at once; now a chunk's at a time
    import rnnpipe.sample
    from rnnpipe import Model
    from rnnpipe.cells import net

    model = Model.new(hidden=8)
    model.train("some text to learn, and more of it " * 20)
    seen, forward = [], net.forward

    def spying(params, config, X, state, *args, **kwargs):
        seen.append(X.shape[0])
        return forward(params, config, X, state, *args, **kwargs)

    monkeypatch.setattr(rnnpipe.sample, "PRIME_CHUNK", 16)
    monkeypatch.setattr(net, "forward", spying)
    prime = "some text to learn, " * 5  # 100 characters
    for beam in (None, 2):
        seen.clear()
        model.sample(5, prime=prime, seed=1, beam=beam)
        chunks = -(-(len(prime) - 1) // 16)  # all of the prime but its last character, 16 at a time
        assert seen[:chunks] == [16] * (chunks - 1) + [(len(prime) - 1) % 16 or 16], seen
        assert all(t == 1 for t in seen[chunks:])  # then one character at a time


def test_a_prime_file_longer_than_the_limit_is_refused_in_one_line(tmp_path):
    from rnnpipe.sampling import MAX_PRIME

    model = tmp_path / "m.msgpack"
    assert run("train", "-m", model, *TINY, "-q", input="some text to learn " * 20).returncode == 0
    long = tmp_path / "long.txt"
    long.write_text("some text " * (MAX_PRIME // 10 + 1))
    line = one_error_line(run("sample", "-m", model, "--prime-file", long), 1)
    assert f"--prime-file {long}: longer than {MAX_PRIME:,} bytes" in line
    if os.path.exists("/dev/zero"):  # endless: read to one byte past the limit, then refused
        assert "longer than" in one_error_line(run("sample", "-m", model, "--prime-file", "/dev/zero"), 1)


def test_info_escapes_what_a_file_names_before_it_reaches_the_terminal(tmp_path):
    # a pending run's input names come from the file: ESC in them must not colour (or clear) the terminal
    model = tmp_path / "m.msgpack"
    text = tmp_path / "a\x1b[2Jb.txt"
    text.write_text("some text to learn " * 2000)
    assert run("train", "-m", model, *TINY, "--epochs", "10", "--max-time", "0.1", "-q", text).returncode == 0
    out = run("info", "-m", model).stdout.decode()
    assert "\x1b" not in out and "a\\x1b[2Jb.txt" in out


# -- issue 21, item 4: the loader's memory, whatever the file holds -------------------------

# docs/reliability.md: a load's peak RSS above the process's before it, at most this (bench/loadfuzz.py)
LOAD_PER_BYTE, LOAD_FIXED = 8, 24 << 20

LOAD_CHILD = r"""
import json, resource, sys
from rnnpipe import Model, ModelFormatError
import msgpack, numpy  # all the loader imports, before the baseline

def rss(field):
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) * 1024 for line in f if line.startswith(field + ":"))

with open("/proc/self/clear_refs", "w") as f:  # the peak (VmHWM) back to the present RSS
    f.write("5")
base = rss("VmRSS")
resource.setrlimit(resource.RLIMIT_AS, (rss("VmSize") + (2 << 30), resource.RLIM_INFINITY))  # a bomb: MemoryError
try:
    Model.load(sys.argv[1])
    outcome = "loaded"
except ModelFormatError as e:
    outcome = str(e)
print(json.dumps({"extra": rss("VmHWM") - base, "outcome": outcome}))
"""


def load_peak(path):
    """(peak RSS a Model.load of path added, what it said), in a process of its own."""
    import json
    import sys

    from cli_util import ROOT

    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    # from the file's folder: `python -c` puts the working directory first on the path, before ROOT
    r = subprocess.run([sys.executable, "-c", LOAD_CHILD, str(path)], capture_output=True, text=True, env=env,
                       timeout=120, cwd=path.parent)  # fmt: skip
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    return out["extra"], out["outcome"]


def sealed(body):
    import hashlib

    import msgpack

    from rnnpipe.modelfile import VERSION

    doc = {"format": "rnnpipe-model", "version": VERSION, "sha256": hashlib.sha256(body).digest(), "model": body}
    return msgpack.packb(doc, use_bin_type=True)


def repeated(one, size, arrays=100):
    """An array of `arrays` arrays, each of `one` (a msgpack value's bytes) repeated: about size bytes."""
    n = size // arrays // len(one)
    inner = b"\xdd" + n.to_bytes(4, "big") + one * n
    head = bytes([0x90 | arrays]) if arrays < 16 else b"\xdc" + arrays.to_bytes(2, "big")
    return head + inner * arrays


@pytest.mark.posix("/proc/self/status and RLIMIT_AS")
@pytest.mark.skipif(not os.path.exists("/proc/self/clear_refs"), reason="needs Linux's /proc/self/clear_refs")
@pytest.mark.parametrize(
    "one",
    [
        b"\x80",  # {}: issue 21's 20 MB of them took 1.45 GB (72 times the file)
        b"\x91\x80",  # [{}]: bench/loadfuzz.py's worst, before (78 times) and after
        b"\x81\xa0\xc0",  # {"": nil}
        b"\xcd\x01\x02",  # 258: an integer Python makes for each
    ],
)
def test_a_hostile_file_costs_the_loader_at_most_the_stated_multiple_of_its_size(tmp_path, one):
    # a valid checksum over values a model never holds, cut into 100 arrays so that none is refused by its header alone
    path = tmp_path / "m.msgpack"
    path.write_bytes(sealed(repeated(one, 3_000_000)))
    extra, outcome = load_peak(path)
    size = path.stat().st_size
    assert extra <= LOAD_PER_BYTE * size + LOAD_FIXED, f"{extra / 2**20:.1f} MiB for {size:,} bytes"
    assert "holds more msgpack values than a model of" in outcome, outcome


@pytest.mark.posix("/proc/self/status")
@pytest.mark.skipif(not os.path.exists("/proc/self/clear_refs"), reason="needs Linux's /proc/self/clear_refs")
def test_a_valid_model_with_the_most_arrays_loads_within_the_bound(tmp_path):
    # 1,024 layers of one unit, Adam, an interrupted run: the most small maps a valid file holds
    from rnnpipe import Config, Model

    model = Model.new(Config(cell="gru", hidden=1, layers=1024, optimizer="adam", batch_size=2, seq_length=2), "ab")
    model.train("ab" * 50, epochs=2, stop=lambda: model.iterations >= 1)
    path = tmp_path / "m.msgpack"
    model.save(path)
    extra, outcome = load_peak(path)
    assert outcome == "loaded"
    assert extra <= LOAD_PER_BYTE * path.stat().st_size + LOAD_FIXED


# -- issue 21, item 14: info says which engine and device trained the model ------------------


def test_info_says_which_engine_made_the_latest_update(tmp_path):
    import hashlib

    import msgpack

    model = tmp_path / "m.msgpack"
    assert run("train", "-m", model, *TINY, "-q", input=TEXT).returncode == 0
    assert "\ntrained on    numpy\n" in run("info", "-m", model).stdout.decode()
    assert info(model)["trained_on"] == "numpy"
    # a file from before version 6 does not know; a model without an update has none
    outer = msgpack.unpackb(model.read_bytes(), raw=False)
    body = msgpack.unpackb(outer["model"], raw=False)
    del body["state"]["engine"], body["state"]["chosen"]  # (version 7's, absent from version 5 too)
    data = msgpack.packb(body, use_bin_type=True)
    outer.update(version=5, model=data, sha256=hashlib.sha256(data).digest())
    old = tmp_path / "old.msgpack"
    old.write_bytes(msgpack.packb(outer, use_bin_type=True))
    assert (
        "\ntrained on    not recorded (the file predates rnnpipe recording it, version 6)\n"
        in run("info", "-m", old).stdout.decode()
    )
    assert info(old)["trained_on"] is None
    fresh = Model.new(hidden=8)
    fresh.save(tmp_path / "fresh.msgpack")
    assert "\ntrained on    no update yet\n" in run("info", "-m", tmp_path / "fresh.msgpack").stdout.decode()
    # what a file says reaches the terminal escaped
    body["state"]["engine"] = "torch \x1b[2Jcuda:0"
    data = msgpack.packb(body, use_bin_type=True)
    outer.update(version=6, model=data, sha256=hashlib.sha256(data).digest())
    old.write_bytes(msgpack.packb(outer, use_bin_type=True))
    assert "\ntrained on    torch \\x1b[2Jcuda:0\n" in run("info", "-m", old).stdout.decode()


def test_info_names_the_torch_engines_device_until_numpy_trains_again(tmp_path):
    pytest.importorskip("torch")
    model = tmp_path / "m.msgpack"
    r = run("train", "-m", model, *TINY, "--engine", "torch", "--device", "cpu", "-q", input=TEXT, timeout=120)
    assert r.returncode == 0, r.stderr
    assert "\ntrained on    torch cpu\n" in run("info", "-m", model).stdout.decode()
    assert run("train", "-m", model, "-q", input=TEXT).returncode == 0
    assert info(model)["trained_on"] == "numpy"
