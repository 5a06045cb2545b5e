"""Long reliability runs: the real `rnnpipe` executable killed, interrupted,
raced, starved of disk and fed hostile model files, many times over.

Each run counts the cases it tried and the cases that lost data or crashed
(the goal is zero); the figures go into docs/reliability.md.

    .venv/bin/python bench/crash.py                    # everything, a few minutes on two cores
    .venv/bin/python bench/crash.py --kills 20 --fuzz 500 --bursts 5 --races 5 --disk 5   # a quick look
    .venv/bin/python bench/crash.py --only kills --kills 1000 --seed 7
    .venv/bin/python bench/crash.py --only text --text 1   # hostile training text, about 2 minutes

tests/test_reliability.py runs each of these a few times in CI, and
`pytest -m slow` runs this whole script.

kills   SIGKILL `rnnpipe train` (endless piped input, a save after every
        iteration) at a random moment, hundreds of times, resuming the same
        model each time. After every kill the file must load, be at least as
        far trained as before, and no more than one temp file may lie beside it
        (the next run removes it). Kills that left a temp file landed inside a
        save.
bursts  a burst of 2-20 SIGINTs (1-3 ms apart) into a training run that saves
        after every iteration: exit 130, no traceback, the model loads, no temp
        file or lock file left.
races   two `rnnpipe train` runs started together on the same model, each with
        a character of its own: every run that reports success has its
        character in the final model (no silent lost update); a refused run
        says why and names the other's pid.
disk    a save into a file size limit (RLIMIT_FSIZE) at a random size below the
        model's: exit 1, one error line, the old model byte for byte, no temp
        file.
text    (only with --text N) hostile training text, each trained on N times: /bin/ls, NUL bytes and
        CRLF, one 5 MB line (all of it), CJK text with 5000 distinct
        characters (10 s, tiny and full-size models): exit 0, no traceback;
        seconds, peak RSS (os.wait4) and vocabulary recorded.
fuzz    corrupted model files (truncations, bit flips, byte edits, random
        bytes, valid msgpack with wrong types, NaN weights, size bombs, other
        versions) through the command line: exit 1 and one line
        `rnnpipe: error: ...`, never an internal error. Most run in-process
        through cli.main; every 20th runs the real executable (info, sample,
        eval or train in turn; train must leave the file as it was).
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import io
import json
import math
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

import msgpack

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from cli_util import DATA, ENV, RNNPIPE, Feeder  # noqa: E402

from rnnpipe import Config, Model, cli  # noqa: E402
from rnnpipe.modelfile import VERSION, stale_temp_files  # noqa: E402

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
            if before is None or rng.random() < 0.25:
                # any moment: starting up, loading, training, saving
                time.sleep(rng.uniform(0.0, 1.2))
                t.count("kills at any moment")
            else:
                # a moment after this run's first save: inside the save cycle
                deadline = time.monotonic() + 20
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


# -- hostile model files through the command line ---------------------------------------


def good_model_bytes():
    m = Model.new(Config(cell="gru", hidden=3, layers=2, optimizer="adam", seq_length=4, batch_size=2), "ab\n")
    m.train("ab\nba\n" * 4)
    return m.to_bytes()


def _seal(body, **outer):
    data = body if isinstance(body, bytes) else msgpack.packb(body, use_bin_type=True)
    doc = {"format": "rnnpipe-model", "version": VERSION, "sha256": hashlib.sha256(data).digest(), "model": data}
    doc.update(outer)
    return msgpack.packb(doc, use_bin_type=True)


def _nodes(doc, prefix=()):
    if prefix:
        yield prefix
    if isinstance(doc, dict):
        for k, v in doc.items():
            yield from _nodes(v, prefix + (k,))
    elif isinstance(doc, list):
        for i, v in enumerate(doc):
            yield from _nodes(v, prefix + (i,))


def _random_value(rng):
    return rng.choice(
        [
            None,
            True,
            -1,
            2**63,
            rng.randrange(-(2**31), 2**31),
            math.nan,
            math.inf,
            rng.random(),
            "",
            "x" * rng.randrange(1, 9),
            rng.randbytes(rng.randrange(0, 9)),
            [],
            [2**31, 2**31],
            {},
            {"dtype": "<f4", "shape": [2**40], "data": b""},
        ]
    )


def mutate(good, rng):
    """(kind, bytes): one hostile variant of a good model file."""
    outer = msgpack.unpackb(good, raw=False)
    body = msgpack.unpackb(outer["model"], raw=False)
    kind = rng.choice(
        ["truncate", "bit flip", "byte edits", "random bytes", "wrong type", "NaN weight", "size bomb", "version"]
    )
    if kind == "truncate":
        return kind, good[: rng.randrange(len(good))]
    if kind == "bit flip":
        data = bytearray(good)
        i = rng.randrange(len(data) * 8)
        data[i // 8] ^= 1 << (i % 8)
        return kind, bytes(data)
    if kind == "byte edits":
        data = bytearray(good)
        for _ in range(rng.randint(1, 4)):
            op, i = rng.randrange(3), rng.randrange(len(data))
            if op == 0:
                data[i] = rng.randrange(256)
            elif op == 1:
                del data[i : i + rng.randint(1, 16)]
            else:
                data[i:i] = rng.randbytes(rng.randint(1, 16))
        return kind, bytes(data)
    if kind == "random bytes":
        return kind, rng.randbytes(rng.randrange(0, 4000))
    if kind == "wrong type":
        path = rng.choice(list(_nodes(body)))
        node = body
        for key in path[:-1]:
            node = node[key]
        node[path[-1]] = _random_value(rng)
        return kind, _seal(body)
    if kind == "NaN weight":
        name = rng.choice(sorted(body["params"]))
        a = body["params"][name]
        values = bytearray(a["data"])
        i = rng.randrange(len(values) // 4) * 4
        values[i : i + 4] = rng.choice([b"\x00\x00\xc0\x7f", b"\x00\x00\x80\x7f", b"\x00\x00\x80\xff"])
        a["data"] = bytes(values)
        return kind, _seal(body)
    if kind == "size bomb":
        name = rng.choice(sorted(body["params"]))
        body["params"][name]["shape"] = rng.choice([[2**31, 2**31], [2**40], [2**64 - 1, 3], [-1, -5]])
        if rng.random() < 0.5:
            body["config"]["hidden"] = 2**40
        return kind, _seal(body)
    return kind, _seal(outer["model"], version=rng.choice([0, 3, 99, -1, "1", "2", None, 1.0, 2.0]))


@contextlib.contextmanager
def memory_cap(extra=2 << 30):
    """Cap this process's address space at its present size plus `extra`, so
    an allocation bomb is a MemoryError (an "out of memory" line, counted as
    a failure) rather than the kernel's OOM killer taking the machine down."""
    try:
        with open("/proc/self/status") as f:
            vm = next(int(line.split()[1]) * 1024 for line in f if line.startswith("VmSize:"))
    except (OSError, StopIteration):
        yield
        return
    old = resource.getrlimit(resource.RLIMIT_AS)
    resource.setrlimit(resource.RLIMIT_AS, (vm + extra, old[1]))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_AS, old)


def fuzz_run(folder, cases, seed=0, subprocess_every=20):
    with memory_cap():
        return _fuzz_run(folder, cases, seed, subprocess_every)


def _fuzz_run(folder, cases, seed, subprocess_every):
    folder = Path(folder)
    t = Tally("fuzz")
    rng = random.Random(seed)
    good = good_model_bytes()
    path = folder / "hostile.rnn"
    commands = ["info", "sample", "eval", "train"]
    for i in range(cases):
        kind, data = mutate(good, rng)
        path.write_bytes(data)
        t.tried += 1
        t.count(f"case {kind}")
        real = subprocess_every and i % subprocess_every == 0
        command = commands[(i // max(subprocess_every, 1)) % len(commands)] if real else "info"
        args = [command, "-m", str(path)]
        if real:
            t.count("through the real executable")
            r = subprocess.run(RNNPIPE + args, input=b"ab\nba\n" * 20, capture_output=True, env=ENV, timeout=60)
            status, out, err = r.returncode, r.stdout.decode("utf-8", "replace"), r.stderr.decode("utf-8", "replace")
        else:
            o, e = io.StringIO(), io.StringIO()
            status = cli.main(args, stdin=io.StringIO("ab\nba\n" * 20), stdout=o, stderr=e)
            out, err = o.getvalue(), e.getvalue()
        if status == 0 and data == good:
            t.count("unchanged by the mutation (loaded)")
            continue
        if status == 0:
            # only changes that leave a valid model may load (a wrong type in a field that accepts it)
            try:
                Model.from_bytes(data)
                t.count("still a valid model (loaded)")
            except Exception as e:
                t.fail(f"{kind}: {command} exited 0 on a file the loader refuses: {e}")
            continue
        if status != 1 or err.count("\n") != 1 or not err.startswith("rnnpipe: error: ") or out:
            t.fail(f"{kind}: {command} exit {status}: {err[-300:]!r}")
        elif "internal error" in err or "Traceback" in err or "out of memory" in err:
            t.fail(f"{kind}: {command}: {err.strip()}")
        if command == "train" and path.read_bytes() != data:
            t.fail(f"{kind}: train changed a file it could not load")
    return t


# -- bad text ------------------------------------------------------------------------------


def text_cases(text):
    """(name, bytes, extra options) of hostile training text."""
    rng = random.Random(0)
    cjk = [chr(0x4E00 + i) for i in range(5000)]
    cjk_text = "".join(rng.choice(cjk) for _ in range(200_000)).encode()
    return [
        ("binary (/bin/ls)", Path("/bin/ls").read_bytes(), ["--binary"]),
        ("NUL bytes and CRLF", b"one\x00two\r\nthree\x00\r\n" * 2000, ["--binary"]),
        ("one 5 MB line", (text.replace("\n", " ").encode("ascii", "ignore") * 40)[:5_000_000], []),
        ("CJK, 5000 distinct characters, tiny model", cjk_text, ["--max-time", "10"]),
        (
            "CJK, 5000 distinct characters, GRU 192 units",
            cjk_text,
            ["--cell", "gru", "--hidden", "192", "--seq-length", "50", "--batch-size", "32", "--max-time", "10"],
        ),
        (
            "CJK, 5000 distinct characters, LSTM 256 units",
            cjk_text,
            ["--cell", "lstm", "--hidden", "256", "--seq-length", "50", "--batch-size", "32", "--max-time", "10"],
        ),
    ]


def text_run(folder, repeat=1, seed=0):
    """Each hostile text once (repeat times): exit 0, no traceback; the
    seconds, peak RSS and vocabulary are recorded."""
    folder = Path(folder)
    t = Tally("text")
    t.notes["runs"] = []
    for _ in range(repeat):
        for i, (name, data, extra) in enumerate(text_cases(training_text())):
            model = folder / f"text{i}.rnn"
            with contextlib.suppress(FileNotFoundError):
                model.unlink()
            arch = [] if "--cell" in extra else TINY
            start = time.monotonic()
            status, err, peak = run_measured(["train", "-m", model, *arch, *extra], data, timeout=600)
            seconds = time.monotonic() - start
            t.tried += 1
            if status != 0 or "Traceback" in err:
                t.fail(f"{name}: exit {status}: {err[-300:]}")
                continue
            m = Model.load(model)
            t.notes["runs"].append(
                {
                    "input": name,
                    "bytes": len(data),
                    "seconds": round(seconds, 1),
                    "peak_rss_mib": round(peak),
                    "vocabulary": len(m.vocab),
                    "chars_seen": m.chars_seen,
                    "file_bytes": model.stat().st_size,
                    "stderr": err.strip().splitlines()[-1][:200] if err.strip() else "",
                }
            )
    return t


# -- all ---------------------------------------------------------------------------------


RUNS = {
    "kills": kill_run,
    "bursts": burst_run,
    "races": race_run,
    "disk": disk_run,
    "fuzz": fuzz_run,
    "text": text_run,
}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--kills", type=int, default=300)
    ap.add_argument("--bursts", type=int, default=50)
    ap.add_argument("--races", type=int, default=30)
    ap.add_argument("--disk", type=int, default=40)
    ap.add_argument("--fuzz", type=int, default=5000)
    ap.add_argument(
        "--text", type=int, default=0, help="times to run each hostile training text (default 0: about 2 minutes each)"
    )
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--only", choices=sorted(RUNS), action="append", help="run only these (repeatable)")
    ap.add_argument("--json", metavar="FILE", help="also write the tallies as JSON")
    args = ap.parse_args(argv)
    results = {}
    with tempfile.TemporaryDirectory(prefix="rnnpipe-crash-") as folder:
        for name, run in RUNS.items():
            if args.only and name not in args.only or getattr(args, name) <= 0:
                continue
            start = time.monotonic()
            t = run(folder, getattr(args, name), seed=args.seed)
            results[name] = {**t.as_dict(), "seconds": round(time.monotonic() - start, 1)}
            print(json.dumps({name: results[name]}), flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1) + "\n")
    failed = sum(r["failed"] for r in results.values())
    print(f"{sum(r['tried'] for r in results.values())} cases, {failed} failed", flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
