"""Reliability, through the real `rnnpipe` executable: a model file that is
never lost or trusted blindly, and bad input that never crashes.

This is the fast part (CI). tests/crash_loops.py and tests/hostile_files.py
hold the loops (SIGKILL at random moments, SIGINT bursts, racing trainers,
full disks, hostile model files); the tests here run each of them a few
times, bench/crash.py hundreds of times, and the slow test at the end runs
that whole script (`pytest -m slow`). The figures are in
docs/reliability.md. Models are tiny so this file runs in well under a minute.

Cases that tests/test_cli.py, tests/test_core.py and tests/test_fuzz.py
already cover (empty input, a single character, invalid UTF-8, SIGINT and
SIGTERM exit codes, `| head`, the loader's own fuzzing) are not repeated here;
a missing folder and a directory as the model come back only to check that
the error comes before any input is read.
"""

from __future__ import annotations

import hashlib
import io
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import msgpack
import pytest
from cli_util import ROOT, one_error_line, popen, run, wait_for

from rnnpipe import Model, cli
from rnnpipe.modelfile import VERSION, stale_temp_files

if os.name != "posix":  # the loops import resource and send real signals
    pytest.skip("needs POSIX: the loops drive SIGKILL, SIGINT bursts and RLIMIT_FSIZE", allow_module_level=True)

import crash_loops as crash  # noqa: E402 (POSIX only)
import hostile_files  # noqa: E402

TINY = crash.TINY  # the trainers the loops start must agree with the models made here


@pytest.fixture(scope="module")
def text():
    return crash.training_text()


@pytest.fixture(scope="module")
def model(tmp_path_factory, text):
    """A tiny trained model file, to copy."""
    path = tmp_path_factory.mktemp("model") / "m.rnn"
    r = run("train", "-m", path, *TINY, "-q", input=text[:5000])
    assert r.returncode == 0, r.stderr
    return path


def fresh_copy(model, folder, name="m.rnn"):
    dst = Path(folder) / name
    dst.write_bytes(model.read_bytes())
    return dst


def no_failures(tally):
    assert tally.tried > 0
    assert not tally.failures, tally.failures
    return tally


# -- hostile model files through the command line -----------------------------------


def _seal(body, **outer):
    data = msgpack.packb(body, use_bin_type=True) if not isinstance(body, bytes) else body
    doc = {"format": "rnnpipe-model", "version": VERSION, "sha256": hashlib.sha256(data).digest(), "model": data}
    return msgpack.packb({**doc, **outer}, use_bin_type=True)


def _body(good):
    return msgpack.unpackb(msgpack.unpackb(good, raw=False)["model"], raw=False)


def _edit(good, change):
    body = _body(good)
    change(body)
    return _seal(body)


HOSTILE = {
    "empty file": (lambda g: b"", "the file is empty"),
    "truncated to half": (lambda g: g[: len(g) // 2], "the file is truncated: it ends after"),
    "one bit flipped": (lambda g: g[:-40] + bytes([g[-40] ^ 4]) + g[-39:], "checksum mismatch"),
    "random bytes": (lambda g: bytes(range(256)) * 3, "not valid msgpack"),
    "msgpack, not a map": (lambda g: msgpack.packb([1, 2, 3]), "not an rnnpipe model"),
    "wrong type": (lambda g: _edit(g, lambda b: b.update(vocab=5)), "vocab should be list"),
    "unknown version": (lambda g: _seal(_body(g), version=8), "version 8 is not supported"),
    "version 1.0": (lambda g: _seal(_body(g), version=1.0), "version 1.0 is not supported"),
    "NaN weight": (
        lambda g: _edit(g, lambda b: b["params"]["by"].update(data=b"\x00\x00\xc0\x7f" * (len(b["vocab"])))),
        "NaN or infinite",
    ),
    "size bomb": (lambda g: _edit(g, lambda b: b["params"]["Why"].update(shape=[2**31, 2**31])), "has shape"),
    "2**62 layers": (lambda g: _edit(g, lambda b: b["config"].update(layers=2**62)), "layers must be at most"),
}


@pytest.mark.parametrize("case", sorted(HOSTILE))
def test_hostile_model_files_through_the_cli(case, model, tmp_path):
    make, message = HOSTILE[case]
    path = tmp_path / "hostile.rnn"
    data = make(model.read_bytes())
    path.write_bytes(data)
    command = ["info", "sample", "eval", "train"][sorted(HOSTILE).index(case) % 4]
    line = one_error_line(run(command, "-m", path, input="abcabc" * 20), 1)
    assert str(path) in line and message in line, line
    assert path.read_bytes() == data  # train refused before touching it
    if command == "train":
        assert not os.path.exists(f"{path}.lock") and not stale_temp_files(path)


def test_seeded_hostile_files_through_the_cli(tmp_path):
    """bench/crash.py's fuzz loop, briefly: in-process through cli.main, every
    100th case through the real executable."""
    t = no_failures(hostile_files.fuzz_run(tmp_path, 300, seed=6, subprocess_every=100))
    assert t.notes["through the real executable"] == 3


def test_a_model_that_is_a_device_is_refused(tmp_path):
    # /dev/zero would be read until memory ran out
    assert "not a regular file" in one_error_line(run("info", "-m", "/dev/zero"), 1)
    assert "not a regular file" in one_error_line(run("train", "-m", "/dev/null", input="abc" * 20), 1)


# -- crash safety ---------------------------------------------------------------------


def test_sigkill_at_random_moments_never_loses_the_model(tmp_path):
    """bench/crash.py kills hundreds of times; here a few, a save after every
    iteration: after each kill the file loads and is at least as far trained."""
    t = no_failures(crash.kill_run(tmp_path, 6, seed=3, log_every=0))
    assert t.notes["final iteration"] > 0
    # the clean run at the end removed temp and lock files the kills left
    assert sorted(p.name for p in tmp_path.iterdir() if not p.name.startswith("tmp")) == ["killed.rnn"]


def test_stale_temp_files_are_removed_by_the_next_run(model, tmp_path):
    path = fresh_copy(model, tmp_path)
    stale = [tmp_path / ".m.rnn.abcd1234.tmp", tmp_path / ".m.rnn.x_y_z_00.tmp"]
    others = [tmp_path / ".m.rnn.short.tmp", tmp_path / ".other.rnn.abcd1234.tmp", tmp_path / "m.rnn.abcd1234.tmp"]
    for p in stale + others:
        p.write_bytes(b"half a model")
    (tmp_path / "m.rnn.lock").write_text("999999\n")  # left by a killed run: no one holds it
    r = run("train", "-m", path, input="abcabc" * 30)
    assert r.returncode == 0, r.stderr
    err = r.stderr.decode()
    assert err.count("left by an interrupted save") == 2 and "Traceback" not in err
    assert not any(p.exists() for p in stale) and all(p.exists() for p in others)
    assert not (tmp_path / "m.rnn.lock").exists()
    Model.load(path)


def test_readers_never_see_a_partial_file_while_training_saves(model, tmp_path, text):
    path = fresh_copy(model, tmp_path)
    p, feeder = crash.start_trainer(path, tmp_path, text.encode())
    try:
        first = path.stat().st_ino
        assert wait_for(lambda: path.stat().st_ino != first, timeout=30), "no save"
        # a save is a new file: inode and mtime together tell versions apart,
        # since a freed inode number can come back for the next save
        loads, versions = 0, set()
        end = time.monotonic() + 30
        while time.monotonic() < end and (loads <= 20 or len(versions) <= 3):
            st = path.stat()
            versions.add((st.st_ino, st.st_mtime_ns))
            Model.load(path)  # raises if the file were ever partial
            loads += 1
        assert loads > 20 and len(versions) > 3  # many loads across several saves
    finally:
        crash.stop_trainer(p, feeder)


# -- a full disk -------------------------------------------------------------------------


def test_full_disk_keeps_the_old_model(tmp_path):
    """Saves that run into RLIMIT_FSIZE at random sizes below the model's:
    the old model byte for byte, no temp file, one clear line, exit 1."""
    no_failures(crash.disk_run(tmp_path, 3, seed=2))


def test_full_disk_on_a_new_model_creates_nothing(tmp_path, text):
    path = tmp_path / "new.rnn"
    r = subprocess.run(
        crash.RNNPIPE + ["train", "-m", str(path), *TINY],
        input=text[:3000].encode(),
        capture_output=True,
        env=crash.ENV,
        timeout=60,
        preexec_fn=crash._limit_file_size(1000),
    )
    line = one_error_line(r, 1)
    assert "cannot save model: File too large; no model file was created" in line
    assert list(tmp_path.iterdir()) == []  # no model, no temp file, no lock file


# -- two trainers on one model ------------------------------------------------------------


def test_a_second_trainer_is_refused_at_once(model, tmp_path, text):
    path = fresh_copy(model, tmp_path)
    lock = tmp_path / "m.rnn.lock"
    p, feeder = crash.start_trainer(path, tmp_path, text.encode())
    try:
        assert wait_for(lock.exists, timeout=30)
        line = one_error_line(run("train", "-m", path, input="xyz" * 100), 1)
        assert f"another rnnpipe train (pid {p.pid}) is training this model" in line and str(path) in line
        # at once, not after waiting for the lock: the first run (endless input) still trains
        assert p.poll() is None
        p.send_signal(signal.SIGINT)
        assert p.wait(timeout=30) == 130
    finally:
        crash.stop_trainer(p, feeder)
    assert not lock.exists()  # removed by its owner
    r = run("train", "-m", path, "-q", input="xyz" * 100)
    assert r.returncode == 0, r.stderr
    assert "x" in Model.load(path).vocab


def test_a_killed_trainers_lock_is_taken_over(model, tmp_path, text):
    path = fresh_copy(model, tmp_path)
    p, feeder = crash.start_trainer(path, tmp_path, text.encode())
    try:
        assert wait_for((tmp_path / "m.rnn.lock").exists, timeout=30)
        p.send_signal(signal.SIGKILL)
        p.wait()
    finally:
        crash.stop_trainer(p, feeder)
    assert (tmp_path / "m.rnn.lock").exists()  # the file stays; the kernel dropped the lock
    r = run("train", "-m", path, "-q", input="xyz" * 100)
    assert r.returncode == 0, r.stderr
    assert not (tmp_path / "m.rnn.lock").exists()


def test_racing_trainers_lose_no_update(tmp_path):
    """Two runs started together, each adding a character of its own: each
    run that reports success has its character in the model."""
    t = no_failures(crash.race_run(tmp_path, 2, seed=4))
    assert t.notes.get("races where one run was refused", 0) + t.notes.get("races where the runs did not overlap", 0)


# -- model paths --------------------------------------------------------------------------


def test_model_path_problems_are_reported_before_reading_any_input(tmp_path):
    """A directory and a missing folder are in test_cli.py; the input here is a
    pipe that never ends, so each error must come before any reading."""
    (tmp_path / "file.txt").write_text("x")
    cases = {
        str(tmp_path / "file.txt" / "m.rnn"): "is not a folder",
        str(tmp_path): "is a directory",
        str(tmp_path / "none" / "m.rnn"): "does not exist",
        "/dev/null": "is not a regular file",
    }
    if os.path.isdir("/sys") and not os.access("/sys", os.W_OK):
        cases["/sys/m.rnn"] = "cannot write in folder"
    elif os.path.isdir("/sys"):  # root: access() says yes, creating the lock file says no
        cases["/sys/m.rnn"] = "cannot create lock file"
    for model_path, message in cases.items():
        p = popen("train", "-m", model_path, stdin=subprocess.PIPE, stderr=subprocess.PIPE)
        try:
            assert p.wait(timeout=20) == 1
        finally:
            p.kill()
            p.wait()
            p.stdin.close()
        err = p.stderr.read().decode()
        assert err.startswith("rnnpipe: error: ") and err.count("\n") == 1 and message in err, (model_path, err)


def test_an_unwritable_folder_is_reported_before_training(tmp_path):
    folder = tmp_path / "ro"
    folder.mkdir()
    folder.chmod(0o500)
    try:
        if os.access(folder, os.W_OK):
            pytest.skip("running as root: a chmod 0o500 folder is writable (see the next test)")
        line = one_error_line(run("train", "-m", folder / "m.rnn", input="abc" * 50), 1)
        assert "cannot write in folder" in line
    finally:
        folder.chmod(0o700)


def test_an_unwritable_folder_as_access_reports_it(tmp_path, monkeypatch):
    """The same check with access() answering as it does for a user who may
    not write there (as root it always says yes)."""
    real = os.access
    monkeypatch.setattr(os, "access", lambda p, mode, **kw: False if mode & os.W_OK else real(p, mode, **kw))
    err = io.StringIO()
    status = cli.main(["train", "-m", str(tmp_path / "m.rnn")], stdin=io.StringIO("abc" * 50), stderr=err)
    assert status == 1 and "cannot write in folder" in err.getvalue()
    assert list(tmp_path.iterdir()) == []


def test_a_symlinked_model_is_saved_through_the_link(model, tmp_path):
    target = fresh_copy(model, tmp_path, "real.rnn")
    link = tmp_path / "link.rnn"
    link.symlink_to(target.name)
    before = Model.load(target).iterations
    r = run("train", "-m", link, "-q", input="abcabc" * 30)
    assert r.returncode == 0, r.stderr
    assert link.is_symlink() and Model.load(target).iterations > before


# -- bad text ------------------------------------------------------------------------------


def test_binary_input_is_refused_and_trains_with_replaced_bytes_on_request(tmp_path):
    binary = Path("/bin/ls").read_bytes()
    line = one_error_line(run("train", "-m", tmp_path / "m.rnn", *TINY, input=binary), 1)
    assert "binary data, not text" in line and "--binary" in line
    assert not (tmp_path / "m.rnn").exists()
    args = ["train", "-m", tmp_path / "m.rnn", *TINY, "--max-time", "1", "--binary"]
    status, err, _ = crash.run_measured(args, binary)
    assert status == 0, err
    assert "invalid UTF-8 byte(s) in the input were replaced by U+FFFD" in err and "Traceback" not in err
    assert "\ufffd" in Model.load(tmp_path / "m.rnn").vocab


def test_nul_bytes_and_crlf_are_characters_like_any_other(tmp_path):
    r = run("train", "-m", tmp_path / "m.rnn", *TINY, "--binary", input=b"one\x00two\r\nthree\x00\r\n" * 40)
    assert r.returncode == 0 and b"invalid" not in r.stderr, r.stderr
    m = Model.load(tmp_path / "m.rnn")
    assert "\x00" in m.vocab and "\r" in m.vocab and "\n" in m.vocab
    out = run("info", "-m", tmp_path / "m.rnn").stdout.decode()
    assert "\\x00" in out and "\\r" in out and out.count("\n") == 11  # escaped, one line each
    r = run("sample", "-m", tmp_path / "m.rnn", "-n", "200", "--seed", "1")
    assert r.returncode == 0 and len(r.stdout.decode()) == 200  # NUL and CR written as they are


def test_the_peak_measured_is_the_commands_own_not_the_test_processs():
    """A child forked from this (large) pytest process would start as large
    as it; run_measured's launcher keeps that out of the figure."""
    ballast = bytearray(400 * 1024 * 1024)  # 400 MiB, every page touched
    ballast[::4096] = b"x" * len(ballast[::4096])
    status, err, peak = crash.run_measured(["--help"])
    assert status == 0, err
    assert peak < 150, f"peak RSS {peak:.0f} MiB"
    del ballast


def test_one_enormous_line_is_streamed_in_bounded_memory(tmp_path, text):
    line = (text.replace("\n", " ").encode("ascii", "ignore") * 40)[:5_000_000]
    assert b"\n" not in line and len(line) == 5_000_000
    status, err, peak = crash.run_measured(["train", "-m", tmp_path / "m.rnn", *TINY, "--max-time", "1"], line)
    assert status == 0, err
    assert "time limit" in err
    assert peak < 400, f"peak RSS {peak:.0f} MiB"  # blocks of 1M characters, not the line


def test_a_vocabulary_of_thousands_trains(tmp_path):
    """CJK text: 3000 distinct characters; the model grows to them and trains
    (slowly: the output layer is as wide as the vocabulary)."""
    import random

    rng = random.Random(0)
    chars = [chr(0x4E00 + i) for i in range(3000)]
    cjk = "".join(rng.choice(chars) for _ in range(30_000)).encode()
    status, err, peak = crash.run_measured(["train", "-m", tmp_path / "m.rnn", *TINY, "--max-time", "2"], cjk)
    assert status == 0, err
    assert len(Model.load(tmp_path / "m.rnn").vocab) > 2900
    assert peak < 500, f"peak RSS {peak:.0f} MiB"


# -- bad sample options ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "args, message",
    [
        (["--temperature", "nan"], "--temperature must be 0 or more, not nan"),
        (["--temperature", "-0.5"], "--temperature must be 0 or more"),
        (["--top-k", "0"], "--top-k must be at least 1, not 0"),
        (["--top-k", "-3"], "--top-k must be at least 1"),
        (["-n", "-5"], "-n must be 0 (no end) or more"),
        (["--seed", "-1"], "--seed must be 0 or more"),
    ],
)
def test_bad_sample_options_exit_2(args, message, model):
    assert message in one_error_line(run("sample", "-m", model, *args), 2)


def test_extreme_but_valid_sample_options(model):
    def sample(*args):
        r = run("sample", "-m", model, "-n", "100", "--seed", "3", *args)
        assert r.returncode == 0 and r.stderr == b"", r.stderr
        return r.stdout.decode()

    plain, greedy = sample(), sample("--temperature", "0")
    # a temperature so small that dividing by it would overflow: the likeliest character, as 0
    assert sample("--temperature", "1e-320") == greedy
    # huge temperatures sample almost uniformly: many distinct characters, no error
    hot = sample("--temperature", "1e6")
    assert len(hot) == 100 and len(set(hot)) > len(set(greedy))
    assert len(sample("--temperature", "1e308")) == 100
    # a top-k as large as the vocabulary or larger: all of it, as without --top-k
    vocab = len(Model.load(model).vocab)
    assert sample("--top-k", str(vocab)) == sample("--top-k", "1000000") == plain
    assert sample("--prime", "") == plain  # an empty prime is no prime


# -- signals --------------------------------------------------------------------------------


def test_bursts_of_sigint_during_saves(tmp_path):
    """2-20 SIGINTs 1-3 ms apart into a run that saves after every iteration:
    exit 130, nothing on stderr, the model loads, no temp or lock file."""
    no_failures(crash.burst_run(tmp_path, 3, seed=5))


# -- the long runs ----------------------------------------------------------------------------


@pytest.mark.slow
def test_long_reliability_runs(tmp_path):
    """All of bench/crash.py at its default counts: several minutes."""
    out = tmp_path / "crash.json"
    r = subprocess.run([sys.executable, str(ROOT / "bench" / "crash.py"), "--json", str(out)], timeout=1800)
    assert r.returncode == 0
    assert out.exists()
