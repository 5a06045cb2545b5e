"""One session layer for every face (issue 10, items 6 and 7): the lock
(rnnpipe.lock), the saver, stale temp files and signals (rnnpipe.session),
and the command line and the notebook both go through it.

Driven as a user would break it: a real IPython shell racing the real
`rnnpipe` executable on one model file, a notebook kernel killed or told to
terminate in the middle of a run, a command-line run started while the
notebook is in the middle of a save. Windows and macOS cannot be run here:
their code paths (msvcrt.locking, F_FULLFSYNC) are driven with stand-ins for
the platform modules, across real processes where the lock is concerned.
"""

from __future__ import annotations

import errno
import io
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
import types

import pytest
from cli_util import ENV, Feeder, info, one_error_line, popen, run, wait_for

from rnnpipe import Model, cli, modelfile, session
from rnnpipe import lock as locks

TINY = ["--hidden", "16", "--seq-length", "10", "--batch-size", "4"]
TEXT = (
    "One morning, when Gregor Samsa woke from troubled dreams, he found himself transformed in his bed into a "
    "horrible vermin. He lay on his armour-like back, and if he lifted his head a little he could see his brown "
    "belly, slightly domed and divided by arches into stiff sections.\n"
) * 4
NOTEBOOK_CHAR, CLI_CHAR = "µ", "ß"  # each face trains on a character of its own: a lost update shows


# -- a real IPython shell -----------------------------------------------------------


def get_ipython():
    from IPython.testing import globalipapp

    globalipapp.start_ipython()
    return globalipapp.get_ipython()


@pytest.fixture
def ip():
    pytest.importorskip("IPython")
    from IPython.utils.capture import capture_output

    shell = get_ipython()
    shell.run_line_magic("load_ext", "rnnpipe_magic")
    yield shell
    with capture_output():
        shell.run_line_magic("unload_ext", "rnnpipe_magic")


def cell(shell, line, body):
    """Run a %%charrnn_train cell as a notebook does; (result, captured output)."""
    from IPython.utils.capture import capture_output

    with capture_output() as cap:
        result = shell.run_cell(f"%%charrnn_train {line}\n{body}")
    return result, cap


def usage_error(result):
    from IPython.core.error import UsageError

    assert isinstance(result.error_in_exec, UsageError), result.error_in_exec
    message = str(result.error_in_exec)
    assert "\n" not in message
    return message


def lock_says(path):
    try:
        return open(f"{path}.lock", "rb").read().decode()
    except FileNotFoundError:
        return ""


def interrupt_when_training(then=None):
    """SIGINT this process once a session's handler replaced the sentinel
    installed here (so the signal can only land on it), after running `then`."""
    sentinel_calls = []

    def sentinel(signum, frame):
        sentinel_calls.append(signum)

    previous = signal.signal(signal.SIGINT, sentinel)
    done = {}

    def body():
        try:
            deadline = time.monotonic() + 30
            while signal.getsignal(signal.SIGINT) is sentinel and time.monotonic() < deadline:
                time.sleep(0.01)
            if then is not None:
                done["result"] = then()
        finally:
            os.kill(os.getpid(), signal.SIGINT)

    thread = threading.Thread(target=body)
    return thread, previous, sentinel, sentinel_calls, done


# -- the notebook and the command line on one model file -----------------------------


@pytest.mark.posix("stops the command-line trainer with SIGINT")
def test_the_notebook_is_refused_while_the_command_line_trains(ip, tmp_path):
    path = tmp_path / "m.rnn"
    assert run("train", "-m", path, *TINY, "-q", input=TEXT).returncode == 0
    p = popen("train", "-m", path, "--save-every", "0.05", "-q", stdin=subprocess.PIPE, stderr=subprocess.PIPE)
    feeder = Feeder(p.stdin, (TEXT + CLI_CHAR).encode())  # endless, as from tail -f
    feeder.start()
    try:
        assert wait_for(lambda: lock_says(path).startswith(f"{p.pid}\n"), timeout=30)
        # the command line has trained on its text and saved it (a pipe's text waits up to
        # train.LATENCY before it is trained on, longer on a busy machine)
        assert wait_for(lambda: CLI_CHAR in Model.load(path).vocab, timeout=60)
        result, refused = cell(ip, f"-m {path} --epochs 100", TEXT + NOTEBOOK_CHAR)
        message = usage_error(result)
        assert message.startswith(f"{path}: another rnnpipe train (pid {p.pid}) is training this model"), message
        # at once, not after training: refused while the command line still trains, and no progress shown
        assert p.poll() is None and refused.stdout == "" and refused.outputs == []
        assert NOTEBOOK_CHAR not in Model.load(path).vocab  # the refused run wrote nothing
        p.send_signal(signal.SIGINT)
        assert p.wait(timeout=30) == 130
    finally:
        feeder.stop.set()
        p.kill()
        p.wait()
    assert not os.path.exists(f"{path}.lock")
    by_cli = Model.load(path)
    assert CLI_CHAR in by_cli.vocab
    # now the notebook goes on from what the command line saved: nothing lost on either side
    result, cap = cell(ip, f"-m {path} -o run", TEXT + NOTEBOOK_CHAR)
    result.raise_error()
    assert f"continuing {path} from iteration {by_cli.iterations:,}" in cap.stdout
    final = Model.load(path)
    assert {CLI_CHAR, NOTEBOOK_CHAR} <= set(final.vocab.chars)
    assert final.iterations == ip.user_ns["run"].iterations > by_cli.iterations


@pytest.mark.posix("stops the notebook's run with SIGINT from a thread, as a kernel interrupt does")
def test_the_command_line_is_refused_while_the_notebook_trains(ip, tmp_path):
    path = tmp_path / "new.rnn"  # created by the notebook run: the command line cannot even read it yet

    def race():
        trained = run("train", "-m", path, *TINY, input=TEXT + CLI_CHAR)
        sampled = run("sample", "-m", path)
        return trained, sampled, lock_says(path)

    thread, previous, sentinel, sentinel_calls, done = interrupt_when_training(race)
    try:
        thread.start()
        result, cap = cell(ip, f"-m {path} {' '.join(TINY)} --epochs 100000 --max-time 30 -o run", TEXT + NOTEBOOK_CHAR)
        thread.join()
        assert signal.getsignal(signal.SIGINT) is sentinel  # the notebook's handler is back
    finally:
        signal.signal(signal.SIGINT, previous)
    result.raise_error()
    assert sentinel_calls == []  # the signal stopped training and went no further
    trained, sampled, lock = done["result"]
    pid = os.getpid()
    assert lock == f"{pid}\n{session.NOTEBOOK}\n"
    line = one_error_line(trained, 1)
    assert f"{path}: another %%charrnn_train in a notebook (pid {pid}) is training this model" in line, line
    line = one_error_line(sampled, 1)
    assert f"no model file yet: %%charrnn_train in a notebook (pid {pid}) is creating it" in line, line
    # the notebook saved on the interrupt and let go of the lock
    run_ = ip.user_ns["run"]
    # "stopped", not "time limit": the refusals came while the cell trained, not after its 30 s
    assert run_.stopped == "stopped" and not os.path.exists(f"{path}.lock")
    by_notebook = Model.load(path)
    # the file's model is the best held-out one, and the last one trained waits in resume.current (holdout.py)
    later = Model.from_bytes(by_notebook.resume.current) if by_notebook.resume.current else by_notebook
    assert by_notebook.iterations == run_.model.iterations and later.iterations == run_.iterations
    assert CLI_CHAR not in by_notebook.vocab
    # the refused command-line run, run again, now trains on from the notebook's model
    r = run("train", "-m", path, input=TEXT + CLI_CHAR)
    assert r.returncode == 0, r.stderr
    final = Model.load(path)
    assert {CLI_CHAR, NOTEBOOK_CHAR} <= set(final.vocab.chars) and final.iterations > by_notebook.iterations


def test_racing_the_notebook_and_the_command_line_loses_no_update(ip, tmp_path):
    """bench/crash.py's race loop with one racer a notebook: runs started 0 to
    0.3 s apart (after the first holds the lock), either first, each with a
    character of its own. Whichever is refused names the other's pid in one
    line; whichever succeeds has its character in the model."""
    import random

    rng = random.Random(10)
    base = tmp_path / "base.rnn"
    assert run("train", "-m", base, *TINY, "-q", input=TEXT).returncode == 0
    refused = {"notebook": 0, "command line": 0}
    for race in range(6):
        path = tmp_path / f"race{race}.rnn"
        path.write_bytes(base.read_bytes())
        delay, cli_first = rng.uniform(0, 0.3), race % 2 == 0
        started = {}

        def start_cli(path=path, started=started):
            started["p"] = popen(
                "train", "-m", path, "-q", stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE
            )

        if cli_first:
            start_cli()  # it takes the lock before it reads any input, which comes later
            assert wait_for(lambda path=path, started=started: lock_says(path).startswith(f"{started['p'].pid}\n"))
            time.sleep(delay)
            timer = None
        else:
            timer = threading.Timer(delay, start_cli)
            timer.start()
        result, _ = cell(ip, f"-m {path} --max-time 1.5", TEXT + NOTEBOOK_CHAR)
        if timer is not None:
            timer.join()
        p = started["p"]
        out, err = p.communicate((TEXT * 3 + CLI_CHAR).encode(), timeout=60)
        final = Model.load(path)
        if result.success:
            assert NOTEBOOK_CHAR in final.vocab, race
        else:
            assert usage_error(result).startswith(f"{path}: another rnnpipe train (pid {p.pid}) is training")
            refused["notebook"] += 1
        if p.returncode == 0:
            assert CLI_CHAR in final.vocab, race
        else:
            line = one_error_line(subprocess.CompletedProcess(p.args, p.returncode, out, err), 1)
            assert f"another %%charrnn_train in a notebook (pid {os.getpid()}) is training" in line, line
            refused["command line"] += 1
        assert result.success or p.returncode == 0, race  # never both refused
        assert sorted(os.listdir(tmp_path)) == sorted(["base.rnn"] + [f"race{i}.rnn" for i in range(race + 1)])
    assert refused["notebook"] and refused["command line"], refused  # each side was second at least once


def test_a_command_line_start_leaves_the_notebooks_temp_file_alone(ip, tmp_path, monkeypatch):
    """A command-line run started while the notebook is in the middle of a save
    (its temp file written, not yet renamed) must not take that file for one
    a killed run left: it is refused, and the save completes."""
    path = tmp_path / "n.rnn"
    real_replace = os.replace
    seen = {}

    def replace(src, dst, *args, **kwargs):
        if os.path.basename(os.fspath(src)).startswith(".n.rnn.") and "cli" not in seen:
            seen["cli"] = run("train", "-m", path, *TINY, input=TEXT + CLI_CHAR)
            seen["temp file still there"] = os.path.exists(src)
        return real_replace(src, dst, *args, **kwargs)

    monkeypatch.setattr(os, "replace", replace)
    result, cap = cell(ip, f"-m {path} {' '.join(TINY)}", TEXT + NOTEBOOK_CHAR)
    monkeypatch.undo()
    result.raise_error()
    line = one_error_line(seen["cli"], 1)
    assert f"%%charrnn_train in a notebook (pid {os.getpid()}) is training this model" in line
    assert seen["temp file still there"]
    model = Model.load(path)
    assert NOTEBOOK_CHAR in model.vocab and CLI_CHAR not in model.vocab
    assert sorted(os.listdir(tmp_path)) == ["n.rnn"]  # no temp file, no lock file


def test_the_notebook_removes_stale_temp_files_under_the_lock(ip, tmp_path):
    path = tmp_path / "s.rnn"
    result, _ = cell(ip, f"-m {path} {' '.join(TINY)}", TEXT)
    result.raise_error()
    stale = [tmp_path / ".s.rnn.abcd1234.tmp", tmp_path / ".s.rnn.x_y_z_00.tmp"]
    others = [tmp_path / ".s.rnn.short.tmp", tmp_path / ".other.rnn.abcd1234.tmp"]
    for p in stale + others:
        p.write_bytes(b"half a model")
    (tmp_path / "s.rnn.lock").write_bytes(b"999999\n")  # left by a killed run: no one holds it
    result, cap = cell(ip, f"-m {path}", TEXT)
    result.raise_error()
    assert cap.stdout.count("left by an interrupted save") == 2  # said with the run's other notes
    assert not any(p.exists() for p in stale) and all(p.exists() for p in others)
    assert not (tmp_path / "s.rnn.lock").exists()


def test_the_notebooks_periodic_saves_happen(ip, tmp_path):
    """--save-every in a notebook: the file changes during the run, not only at its end."""
    path = tmp_path / "p.rnn"
    versions = []
    stop = threading.Event()

    def watch():
        while not stop.is_set():
            try:
                st = os.stat(path)
                if (st.st_ino, st.st_mtime_ns) not in [v[0] for v in versions]:
                    versions.append(((st.st_ino, st.st_mtime_ns), Model.load(path).iterations))
            except (FileNotFoundError, modelfile.ModelFormatError):  # renamed away between stat and read
                pass
            time.sleep(0.01)

    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        result, _ = cell(ip, f"-m {path} {' '.join(TINY)} --save-every 0.1 --max-time 1.5 -o run", TEXT)
    finally:
        stop.set()
        watcher.join()
    result.raise_error()
    final = ip.user_ns["run"].iterations
    during = [it for _, it in versions if it < final]
    assert len(during) >= 3, versions  # saves before the last one
    assert during == sorted(during)


KERNEL = textwrap.dedent(
    """
    import sys
    from traitlets.config import Config
    from IPython.core.interactiveshell import InteractiveShell

    config = Config()
    config.HistoryManager.enabled = False
    shell = InteractiveShell.instance(config=config)
    shell.run_line_magic("load_ext", "rnnpipe_magic")
    with open(sys.argv[2], encoding="utf-8") as f:
        body = f.read()
    result = shell.run_cell("%%charrnn_train " + sys.argv[1] + "\\n" + body)
    sys.exit(0 if result.success else 1)
    """
)


def start_kernel(tmp_path, line, text=TEXT):
    """A notebook kernel in a process of its own (an IPython shell), training one cell."""
    pytest.importorskip("IPython")
    (tmp_path / "cell.txt").write_text(text, encoding="utf-8")
    env = {**ENV, "IPYTHONDIR": str(tmp_path / "ipython")}
    p = subprocess.Popen(
        [sys.executable, "-c", KERNEL, line, str(tmp_path / "cell.txt")],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        env=env,
    )
    lines = []
    reader = threading.Thread(target=lambda: lines.extend(iter(p.stdout.readline, b"")), daemon=True)
    reader.start()
    return p, lines


@pytest.mark.posix("SIGKILLs the kernel")
def test_a_killed_kernel_keeps_its_periodic_saves(tmp_path):
    path = tmp_path / "k.rnn"
    p, out = start_kernel(tmp_path, f"-m {path} {' '.join(TINY)} --save-every 0.2 --epochs 1000000 --max-time 60")
    try:
        seen = set()

        def saved_twice():
            if path.exists():
                st = path.stat()
                seen.add((st.st_ino, st.st_mtime_ns))
            return len(seen) >= 2

        assert wait_for(saved_twice, timeout=60), b"".join(out).decode()
        p.send_signal(signal.SIGKILL)
        assert p.wait(timeout=30) == -signal.SIGKILL
    finally:
        p.kill()
        p.wait()
    assert Model.load(path).iterations > 0  # a kernel killed in the middle of a run kept its last save
    assert os.path.exists(f"{path}.lock")  # its lock file stays; the system dropped the lock
    # the command line takes the model over: the lock file and any half-written save go
    r = run("train", "-m", path, input=TEXT + CLI_CHAR)
    assert r.returncode == 0, r.stderr
    assert sorted(n for n in os.listdir(tmp_path) if n not in ("cell.txt", "ipython")) == ["k.rnn"]


@pytest.mark.posix("sends SIGTERM to the kernel")
def test_a_terminated_kernel_saves_then_ends(tmp_path):
    path = tmp_path / "t.rnn"
    p, out = start_kernel(tmp_path, f"-m {path} {' '.join(TINY)} --epochs 1000000 --max-time 60")
    try:
        # the status line shows: training has begun, and signals only set a flag
        assert wait_for(lambda: any(b"iteration" in line for line in out), timeout=60), b"".join(out).decode()
        assert not path.exists()  # no periodic saves: only the one on the way out
        p.send_signal(signal.SIGTERM)
        status = p.wait(timeout=30)
    finally:
        p.kill()
        p.wait()
    assert status == -signal.SIGTERM, b"".join(out).decode()  # it ended as asked, after saving
    assert Model.load(path).iterations > 0
    assert not os.path.exists(f"{path}.lock") and not modelfile.stale_temp_files(path)


# -- the magic's options and their errors -------------------------------------------


def test_sampling_in_a_notebook_a_model_still_being_created_names_the_run(ip, tmp_path):
    from IPython.core.error import UsageError

    path = tmp_path / "c.rnn"
    with session.TrainLock(path, session.CLI):  # as a `rnnpipe train` creating it holds it
        with pytest.raises(UsageError) as e:
            ip.run_line_magic("charrnn_sample", f"-m {path}")
    assert str(e.value).startswith(f"{path}: no model file yet: rnnpipe train (pid {os.getpid()}) is creating it")
    with pytest.raises(UsageError, match="no model file .*; train one with"):
        ip.run_line_magic("charrnn_sample", f"-m {path}")


def test_the_magics_session_errors_are_one_line(ip, tmp_path):
    path = tmp_path / "e.rnn"
    cell(ip, f"-m {path} {' '.join(TINY)} --seed 3", TEXT)[0].raise_error()
    cases = {
        "--name mem --save-every 1": "--save-every saves to a model file: give -m FILE",
        f"-m {path} --save-every 0": "--save-every must be a positive number of seconds, not 0",
        f"-m {path} --seed 4": "seed 4 seeds a new model only; this one was created with seed 3",
        f"-m {path} --clip 0": "clip must be a positive number, not 0.0",
    }
    before = path.read_bytes()
    for line, expected in cases.items():
        message = usage_error(cell(ip, line, TEXT)[0])
        assert message.startswith(expected), (line, message)
    assert path.read_bytes() == before and not os.path.exists(f"{path}.lock")
    cell(ip, f"-m {path} --seed 3 --clip 0.5", TEXT)[0].raise_error()  # the model's own seed is fine
    assert Model.load(path).config.clip == 0.5


# -- --seed on an existing model, --clip (item 7) ------------------------------------


def test_seed_on_an_existing_model_is_refused_unless_it_is_its_own(tmp_path):
    path = tmp_path / "m.rnn"
    assert run("train", "-m", path, *TINY, "--seed", "3", "-q", input=TEXT).returncode == 0
    before = path.read_bytes()
    line = one_error_line(run("train", "-m", path, "--seed", "4", input=TEXT), 2)
    assert "seed 4 seeds a new model only; this one was created with seed 3" in line
    assert path.read_bytes() == before
    assert run("train", "-m", path, "--seed", "3", "-q", input=TEXT).returncode == 0
    assert info(path)["config"]["seed"] == 3
    out = io.StringIO()
    cli.main(["train", "--help"], stdout=out)
    assert "seeds a new model's" in " ".join(out.getvalue().split())


@pytest.mark.parametrize("optimizer", ["adam", "adagrad"])
def test_clip_changes_training_and_is_saved(tmp_path, optimizer):
    plain, clipped = tmp_path / "plain.rnn", tmp_path / "clipped.rnn"
    for path, extra in ((plain, []), (clipped, ["--clip", "1e-4"])):
        r = run("train", "-m", path, *TINY, "--optimizer", optimizer, "--seed", "1", "-q", *extra, input=TEXT)
        assert r.returncode == 0, r.stderr
    assert info(plain)["config"]["clip"] == 5.0 and info(clipped)["config"]["clip"] == 1e-4
    a, b = Model.load(plain), Model.load(clipped)
    assert a.iterations == b.iterations
    assert any((a.params[k] != b.params[k]).any() for k in a.params)
    # a hyperparameter: an existing model takes a new value, and keeps it
    assert run("train", "-m", clipped, "--clip", "2", "-q", input=TEXT).returncode == 0
    assert info(clipped)["config"]["clip"] == 2.0
    assert "clip" in one_error_line(run("train", "-m", clipped, "--clip", "-1", input=TEXT), 2)


# -- the session module itself --------------------------------------------------------


def test_the_session_layer_imports_neither_numpy_nor_ipython():
    code = (
        "import sys\n"
        "import rnnpipe.session, rnnpipe.cli\n"
        "bad = [m for m in ('numpy', 'IPython') if m in sys.modules]\n"
        "assert not bad, bad\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr


def test_the_lock_file_names_its_holder_and_face(tmp_path):
    path = tmp_path / "m.rnn"
    lock = session.TrainLock(path, session.NOTEBOOK)
    assert lock.holder() is None
    with lock:
        assert open(lock.path, "rb").read() == f"{os.getpid()}\n{session.NOTEBOOK}\n".encode()
        holder = session.TrainLock(path).holder()
        assert holder == session.Holder(os.getpid(), session.NOTEBOOK)
        with pytest.raises(session.LockBusy) as e:
            session.TrainLock(path).acquire()
        assert str(e.value) == (
            f"{path}: another %%charrnn_train in a notebook (pid {os.getpid()}) is training this model; "
            f"wait for it to end or stop it (lock file {lock.path})"
        )
        assert e.value.holder.pid == os.getpid()
    assert not os.path.exists(lock.path) and lock.holder() is None
    # a lock file in the older form (the pid alone) names an rnnpipe train
    assert str(session.TrainLock._owner_of(b"4242\n")) == "rnnpipe train (pid 4242)"
    assert str(session.TrainLock._owner_of(b"")) == "rnnpipe train"


def test_a_failed_save_is_one_line_saying_what_the_file_keeps(tmp_path):
    class Unsaveable:
        iterations = 7

        def save(self, path):
            raise OSError(errno.ENOSPC, "No space left on device")

    saver = session.Saver(Unsaveable(), tmp_path / "m.rnn", on_disk=True, saved_at=5)
    with pytest.raises(session.SaveError, match=r"m\.rnn: cannot save model: No space left on device; "
                       r"the file keeps its last saved state \(iteration 5\)$"):  # fmt: skip
        saver.save()
    saver = session.Saver(Unsaveable(), tmp_path / "m.rnn")
    with pytest.raises(session.SaveError, match="no model file was created$"):
        saver.save()


# -- Windows and macOS, with stand-ins for their modules ------------------------------

# msvcrt.locking as Windows has it (a byte range from the file position, LK_NBLCK
# failing with EACCES when another process holds it), played by POSIX record
# locks, which are per process as Windows locks are per handle's process
FAKE_MSVCRT = textwrap.dedent(
    """
    import errno, fcntl, os

    LK_UNLCK, LK_LOCK, LK_NBLCK, LK_RLCK, LK_NBRLCK = 0, 1, 2, 3, 4
    calls = []

    def locking(fd, mode, nbytes):
        start = os.lseek(fd, 0, os.SEEK_CUR)
        calls.append((mode, start, nbytes))
        if mode == LK_UNLCK:
            fcntl.lockf(fd, fcntl.LOCK_UN, nbytes, start)
            return
        assert mode == LK_NBLCK, mode
        for kind in (fcntl.LOCK_EX, fcntl.LOCK_SH):  # a read-only handle can lock on Windows too
            try:
                fcntl.lockf(fd, kind | fcntl.LOCK_NB, nbytes, start)
                return
            except OSError as e:
                if e.errno == errno.EBADF and kind == fcntl.LOCK_EX:
                    continue
                if e.errno in (errno.EACCES, errno.EAGAIN):
                    raise OSError(errno.EACCES, "Permission denied") from None
                raise
    """
)

AS_WINDOWS = textwrap.dedent(
    """
    import sys
    sys.path.insert(0, {folder!r})
    import msvcrt  # the stand-in
    from rnnpipe import lock, session
    lock._platform_lock = lambda: lock._Msvcrt
    """
)


@pytest.fixture
def as_windows(tmp_path, monkeypatch):
    """This process takes the Windows lock path, with the stand-in msvcrt;
    returns the code that makes a child process do the same."""
    pytest.importorskip("fcntl")
    folder = tmp_path / "fake"
    folder.mkdir()
    (folder / "msvcrt.py").write_text(FAKE_MSVCRT)
    spec = types.ModuleType("msvcrt")
    exec(FAKE_MSVCRT, spec.__dict__)
    monkeypatch.setitem(sys.modules, "msvcrt", spec)
    monkeypatch.setattr(locks, "_platform_lock", lambda: locks._Msvcrt)
    return spec, AS_WINDOWS.format(folder=str(folder))


@pytest.mark.posix("plays Windows' msvcrt with POSIX record locks (fcntl)")
def test_the_windows_lock_path_across_processes(tmp_path, as_windows):
    msvcrt, prelude = as_windows
    path = tmp_path / "m.rnn"
    child = prelude + textwrap.dedent(
        f"""
        try:
            session.TrainLock({str(path)!r}).acquire()
        except session.LockBusy as e:
            print(e.holder.pid, session.TrainLock({str(path)!r}).holder().pid)
        else:
            print("acquired")
        """
    )

    def in_child():
        done = subprocess.run([sys.executable, "-c", child], capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stderr
        return done.stdout.split()

    lock = session.TrainLock(path, session.CLI)
    with lock:
        assert in_child() == [str(os.getpid())] * 2  # refused, naming this process, from the pid it can read
        # the lock is one byte far past the pid, which Windows would otherwise keep others from reading
        assert msvcrt.calls == [(msvcrt.LK_NBLCK, locks._Msvcrt.OFFSET, 1)]
        assert open(lock.path, "rb").read() == f"{os.getpid()}\nrnnpipe train\n".encode()
    # released, closed, then removed (Windows cannot remove an open file)
    assert msvcrt.calls[-1] == (msvcrt.LK_UNLCK, locks._Msvcrt.OFFSET, 1)
    assert not os.path.exists(lock.path)
    assert in_child() == ["acquired"]


@pytest.mark.posix("plays Windows' msvcrt with POSIX record locks, and stops a trainer with SIGINT")
def test_two_command_line_trainers_on_the_windows_lock_path(tmp_path, as_windows):
    _, prelude = as_windows
    main = prelude + "from rnnpipe.cli import main\nsys.exit(main(sys.argv[1:]))\n"
    path = tmp_path / "w.rnn"
    first = subprocess.Popen(
        [sys.executable, "-c", main, "train", "-m", str(path), *TINY, "--save-every", "0.05", "-q"],
        stdin=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=ENV,
    )
    feeder = Feeder(first.stdin, (TEXT + CLI_CHAR).encode())
    feeder.start()
    try:
        assert wait_for(path.exists, timeout=30)
        second = subprocess.run(
            [sys.executable, "-c", main, "train", "-m", str(path), *TINY],
            input=(TEXT + NOTEBOOK_CHAR).encode(),
            capture_output=True,
            env=ENV,
            timeout=60,
        )
        line = one_error_line(second, 1)
        assert f"another rnnpipe train (pid {first.pid}) is training this model" in line
        first.send_signal(signal.SIGINT)
        assert first.wait(timeout=30) == 130
    finally:
        feeder.stop.set()
        first.kill()
        first.wait()
    assert not os.path.exists(f"{path}.lock")
    again = subprocess.run(
        [sys.executable, "-c", main, "train", "-m", str(path), "-q"],
        input=(TEXT + NOTEBOOK_CHAR).encode(),
        capture_output=True,
        env=ENV,
        timeout=60,
    )
    assert again.returncode == 0, again.stderr
    assert {CLI_CHAR, NOTEBOOK_CHAR} <= set(Model.load(path).vocab.chars)


def test_without_signal_masks_saves_still_run(tmp_path, monkeypatch):
    """Windows has no pthread_sigmask: signals_blocked is then a plain block."""
    monkeypatch.delattr(signal, "pthread_sigmask")
    model = Model.new(text=TEXT, hidden=8)
    saver = session.Saver(model, tmp_path / "m.rnn")
    saver.save()
    assert Model.load(tmp_path / "m.rnn").vocab.chars == model.vocab.chars


def test_macos_saves_ask_the_drive_for_a_full_fsync(tmp_path, monkeypatch):
    calls, fsyncs = [], []
    fake = types.SimpleNamespace(F_FULLFSYNC=51, fcntl=lambda fd, op: calls.append(op))
    monkeypatch.setitem(sys.modules, "fcntl", fake)
    monkeypatch.setattr(sys, "platform", "darwin")
    real_fsync = os.fsync
    monkeypatch.setattr(os, "fsync", lambda fd: (fsyncs.append(fd), real_fsync(fd)))
    modelfile.save_bytes(tmp_path / "m.bin", b"data")
    assert calls == [51, 51] and fsyncs == []  # the file, then its folder (the rename)
    assert (tmp_path / "m.bin").read_bytes() == b"data"

    def unsupported(fd, op):  # some file systems (network mounts) refuse it: plain fsync then
        raise OSError(errno.ENOTSUP, "Operation not supported")

    fake.fcntl = unsupported
    modelfile.save_bytes(tmp_path / "m.bin", b"more")
    assert len(fsyncs) == 2 and (tmp_path / "m.bin").read_bytes() == b"more"


def test_elsewhere_saves_fsync(tmp_path, monkeypatch):
    fsyncs = []
    real_fsync = os.fsync
    monkeypatch.setattr(os, "fsync", lambda fd: (fsyncs.append(fd), real_fsync(fd)))
    monkeypatch.setattr(sys, "platform", "linux")
    modelfile.save_bytes(tmp_path / "m.bin", b"data")
    assert len(fsyncs) == 2
