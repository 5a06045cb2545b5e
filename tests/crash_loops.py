"""The reliability loops: the real `rnnpipe` executable killed at random
moments, interrupted by bursts of SIGINT, raced by a second trainer and
starved of disk, each case judged (nothing lost, one clear line, nothing left
behind) and counted in a Tally.

tests/test_reliability.py runs each loop a few times; bench/crash.py runs
them hundreds of times and records the figures in docs/reliability.md. They
live here, beside the tests, so that no test imports bench/; hostile_files.py
holds the loop over hostile model files.
"""

from __future__ import annotations

import contextlib
import os
import random
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from cli_util import DATA, ENV, RNNPIPE, Feeder

from rnnpipe import Model
from rnnpipe.modelfile import stale_temp_files

TINY = ["--hidden", "16", "--seq-length", "10", "--batch-size", "4"]


def training_text():
    path = DATA / "kafka.txt"
    if path.exists():
        return path.read_text(encoding="utf-8")[:200_000]
    words = "the quick brown fox jumps over a lazy dog while seven wizards box".split()
    rng = random.Random(0)
    return " ".join(rng.choice(words) for _ in range(40_000))


class Tally:
    """Cases tried and cases that went wrong, with a few notes."""

    def __init__(self, name):
        self.name, self.tried, self.failures, self.notes = name, 0, [], {}

    def fail(self, why):
        self.failures.append(why)
        print(f"  FAILED {self.name} #{self.tried}: {why}", file=sys.stderr, flush=True)

    def count(self, key, n=1):
        self.notes[key] = self.notes.get(key, 0) + n

    def as_dict(self):
        return {"tried": self.tried, "failed": len(self.failures), **self.notes, "failures": self.failures[:20]}


def _stderr_file(folder):
    return tempfile.TemporaryFile(dir=folder)


def _read(f):
    f.seek(0)
    return f.read().decode("utf-8", "replace")


def start_trainer(model, folder, text: bytes, *extra, stderr=None):
    """`rnnpipe train` on endless piped input (as from tail -f), saving after every iteration."""
    p = subprocess.Popen(
        RNNPIPE + ["train", "-m", str(model), *TINY, "--save-every", "0.001", "-q", *extra],
        stdin=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        stderr=stderr if stderr is not None else subprocess.DEVNULL,
        env=ENV,
    )
    feeder = Feeder(p.stdin, text)
    feeder.start()
    return p, feeder


def stop_trainer(p, feeder):
    feeder.stop.set()
    with contextlib.suppress(ProcessLookupError):
        p.kill()
    p.wait()
    with contextlib.suppress(OSError):
        p.stdin.close()
    feeder.join(5)


def _identity(path):
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return None
    return (st.st_ino, st.st_mtime_ns, st.st_size)


def check_after_kill(path, before_iterations):
    """(problem or None, iterations) for the file after a kill."""
    if not path.exists():
        return (None if before_iterations is None else "the model file disappeared"), None
    try:
        m = Model.load(path)
    except Exception as e:  # any failure to load is data lost
        return f"the model does not load: {type(e).__name__}: {e}", None
    if before_iterations is not None and m.iterations < before_iterations:
        return f"the model went back from iteration {before_iterations} to {m.iterations}", m.iterations
    return None, m.iterations


# Runs the command as its own child and reports that child's exit status and
# peak RSS on stdout. A process's peak RSS counts what it had before its exec,
# and a child forked straight from a large process (a long pytest session)
# starts as large as that process; this small launcher is what forks it.
LAUNCHER = """
import os, sys
pid = os.fork()
if pid == 0:
    null = os.open(os.devnull, os.O_WRONLY)
    os.dup2(null, 1)
    os.execv(sys.argv[1], sys.argv[1:])
_, status, usage = os.wait4(pid, 0)
print(os.waitstatus_to_exitcode(status), usage.ru_maxrss)
"""


def run_measured(args, input=b"", timeout=120):
    """Run rnnpipe with args and input; (exit status, stderr text, peak RSS in MiB
    of that process alone, from os.wait4 in a small launcher: LAUNCHER)."""
    import threading

    cmd = RNNPIPE + [str(a) for a in args]
    p = subprocess.Popen(
        [sys.executable, "-c", LAUNCHER, shutil.which(cmd[0]) or cmd[0], *cmd[1:]],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=ENV,
        start_new_session=True,  # a timeout kills the launcher and the command together
    )

    def feed():
        with contextlib.suppress(BrokenPipeError, OSError):
            p.stdin.write(input)
        with contextlib.suppress(OSError):
            p.stdin.close()

    err, out = [], []
    threads = [
        threading.Thread(target=feed, daemon=True),
        threading.Thread(target=lambda: err.append(p.stderr.read())),
        threading.Thread(target=lambda: out.append(p.stdout.read())),
    ]
    for t in threads:
        t.start()
    timer = threading.Timer(timeout, lambda: os.killpg(p.pid, signal.SIGKILL))
    timer.start()
    try:
        p.wait()
    finally:
        timer.cancel()
    for t in threads:
        t.join(10)
    status, maxrss = b"".join(out).split()
    return int(status), b"".join(err).decode("utf-8", "replace"), int(maxrss) / 1024


# -- kills -------------------------------------------------------------------


def kill_run(folder, kills, seed=0, log_every=50):
    """SIGKILL `rnnpipe train` at random moments; see the module docstring."""
    folder = Path(folder)
    t = Tally("kills")
    rng = random.Random(seed)
    model = folder / "killed.rnn"
    lock = Path(str(model) + ".lock")
    text = training_text().encode()
    iterations = None
    for i in range(kills):
        before = _identity(model)
        err = _stderr_file(folder)
        p, feeder = start_trainer(model, folder, text, stderr=err)
        try:
            if before is not None and rng.random() < 0.25:
                # any moment: starting up, loading, training, saving
                time.sleep(rng.uniform(0.0, 1.2))
                t.count("kills at any moment")
            else:
                # a moment after this run's first save: inside the save cycle. The
                # first run always gets this far, however slowly a busy machine
                # starts it, so that there is a model for the kills to threaten
                deadline = time.monotonic() + (60 if before is None else 20)
                while _identity(model) == before and time.monotonic() < deadline and p.poll() is None:
                    time.sleep(0.002)
                time.sleep(rng.uniform(0.0, 0.03))
                t.count("kills after the run's first save")
            if p.poll() is not None:
                t.fail(f"the trainer ended by itself with {p.returncode}: {_read(err)[-300:]}")
        finally:
            p.send_signal(signal.SIGKILL)
            stop_trainer(p, feeder)
        t.tried += 1
        temps = stale_temp_files(model)
        if temps:
            t.count("kills that landed inside a save (temp file left)")
        if len(temps) > 1:
            t.fail(f"{len(temps)} temp files lie beside the model: stale ones were not removed")
        if lock.exists():
            t.count("lock files left (taken over by the next run)")
        problem, now = check_after_kill(model, iterations)
        if problem:
            t.fail(problem)
        if now is not None:
            if iterations is not None and now > iterations:
                t.count("kills after which the model had advanced")
            iterations = now
        if "Traceback" in _read(err):
            t.fail("a traceback on stderr")
        err.close()
        if log_every and (i + 1) % log_every == 0:
            print(f"  kills: {i + 1}/{kills}, iteration {iterations}, {len(t.failures)} failed", file=sys.stderr)
    # the next clean run removes what the killed ones left
    r = subprocess.run(RNNPIPE + ["train", "-m", str(model)], input=b"", capture_output=True, env=ENV, timeout=60)
    if r.returncode != 0:
        t.fail(f"the clean run after the kills failed: {r.stderr.decode()[-300:]}")
    left = stale_temp_files(model) + ([str(lock)] if lock.exists() else [])
    if left:
        t.fail(f"left after a clean run: {left}")
    t.notes["final iteration"] = iterations
    return t


# -- SIGINT bursts --------------------------------------------------------------


def burst_run(folder, bursts, seed=0):
    """Bursts of SIGINTs into a training run that saves after every iteration."""
    folder = Path(folder)
    t = Tally("bursts")
    rng = random.Random(seed)
    model = folder / "burst.rnn"
    text = training_text().encode()
    iterations = None
    for _ in range(bursts):
        before = _identity(model)
        err = _stderr_file(folder)
        p, feeder = start_trainer(model, folder, text, stderr=err)
        try:
            deadline = time.monotonic() + 20
            while _identity(model) == before and time.monotonic() < deadline and p.poll() is None:
                time.sleep(0.002)
            time.sleep(rng.uniform(0.0, 0.05))
            n = rng.randint(2, 20)
            for _ in range(n):
                with contextlib.suppress(ProcessLookupError):
                    p.send_signal(signal.SIGINT)
                time.sleep(rng.uniform(0.001, 0.003))
            t.count("SIGINTs sent", n)
            try:
                status = p.wait(timeout=30)
            except subprocess.TimeoutExpired:
                status = "still running 30 s after the burst"
        finally:
            stop_trainer(p, feeder)
        t.tried += 1
        message = _read(err)
        err.close()
        if status != 130:
            t.fail(f"exit status {status}, not 130: {message[-300:]}")
        if "Traceback" in message or message.strip():
            t.fail(f"unexpected stderr with -q: {message[-300:]}")
        problem, now = check_after_kill(model, iterations)
        if problem:
            t.fail(problem)
        iterations = now if now is not None else iterations
        left = stale_temp_files(model) + ([f"{model}.lock"] if os.path.exists(f"{model}.lock") else [])
        if left:
            t.fail(f"left behind: {left}")
    return t


# -- two trainers on one model ---------------------------------------------------


def race_run(folder, races, seed=0):
    """Two `rnnpipe train` runs started together on one model, each adding a
    character of its own: a run that reports success must not be lost."""
    folder = Path(folder)
    t = Tally("races")
    rng = random.Random(seed)
    model = folder / "raced.rnn"
    base = training_text()[:60_000]
    marks = [chr(c) for c in range(0x3B1, 0x3C9)] + [chr(c) for c in range(0x410, 0x44F)]  # Greek, Cyrillic
    rng.shuffle(marks)
    r = subprocess.run(RNNPIPE + ["train", "-m", str(model), *TINY, "-q"], input=base[:2000].encode(), env=ENV)
    assert r.returncode == 0
    for i in range(races):
        mine = [marks[(2 * i) % len(marks)], marks[(2 * i + 1) % len(marks)]]
        procs = []
        for k, mark in enumerate(mine):
            text = base.replace("e", mark)[rng.randrange(0, 10_000) :][:30_000]
            err = _stderr_file(folder)
            if k:
                time.sleep(rng.uniform(0.0, 0.3))
            procs.append(
                (
                    subprocess.Popen(
                        RNNPIPE + ["train", "-m", str(model), "-q"],
                        stdin=subprocess.PIPE,
                        stdout=subprocess.DEVNULL,
                        stderr=err,
                        env=ENV,
                    ),
                    err,
                    mark,
                    text,
                )
            )
        for p, _, _, text in procs:
            with contextlib.suppress(BrokenPipeError):
                p.stdin.write(text.encode())
            p.stdin.close()
        outcomes = []
        for p, err, mark, _ in procs:
            status = p.wait(timeout=120)
            outcomes.append((status, _read(err), mark))
            err.close()
        t.tried += 1
        vocab = set(Model.load(model).vocab.chars)
        refused = 0
        for status, message, mark in outcomes:
            if status == 0:
                if mark not in vocab:
                    t.fail(f"a run that succeeded was lost: its character {mark!r} is not in the model")
            elif status == 1 and "another rnnpipe train (pid " in message and message.count("\n") == 1:
                refused += 1
            else:
                t.fail(f"exit status {status}: {message[-300:]}")
        t.count("races where one run was refused" if refused else "races where the runs did not overlap")
    return t


# -- full disk -----------------------------------------------------------------------


def _limit_file_size(limit):
    def preexec():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # an EFBIG error rather than death
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    return preexec


def disk_run(folder, cases, seed=0):
    """Saves that run into a file size limit at random sizes below the model's."""
    folder = Path(folder)
    t = Tally("disk")
    rng = random.Random(seed)
    model = folder / "full.rnn"
    text = training_text()
    r = subprocess.run(RNNPIPE + ["train", "-m", str(model), *TINY, "-q"], input=text[:3000].encode(), env=ENV)
    assert r.returncode == 0
    old = model.read_bytes()
    for _ in range(cases):
        limit = rng.randrange(0, len(old))
        r = subprocess.run(
            RNNPIPE + ["train", "-m", str(model)],
            input=text[:3000].encode(),
            capture_output=True,
            env=ENV,
            timeout=60,
            preexec_fn=_limit_file_size(limit),
        )
        t.tried += 1
        message = r.stderr.decode("utf-8", "replace")
        if r.returncode != 1 or message.count("\n") != 1 or not message.startswith("rnnpipe: error: "):
            t.fail(f"limit {limit}: exit {r.returncode}: {message[-300:]}")
        elif "cannot save model" not in message or "keeps its last saved state" not in message:
            t.fail(f"limit {limit}: unclear message: {message}")
        if model.read_bytes() != old:
            t.fail(f"limit {limit}: the old model changed")
        if stale_temp_files(model):
            t.fail(f"limit {limit}: a temp file was left")
        if os.path.exists(f"{model}.lock"):
            t.fail(f"limit {limit}: the lock file was left")
    return t
