"""Running the real `rnnpipe` executable in subprocesses, for tests/test_cli.py."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "examples"  # the texts shipped with the repository (kafka.txt: see texts.py)
_script = Path(sys.executable).parent / "rnnpipe"
RNNPIPE = [str(_script)] if _script.exists() else [sys.executable, "-m", "rnnpipe"]
TINY = ["--hidden", "16", "--seq-length", "10", "--batch-size", "4"]
ENV = {**os.environ, "PYTHONUNBUFFERED": "1", "LC_ALL": "C"}  # C locale: output must still be UTF-8


def run(*args, input=None, timeout=60, cwd=None):
    """Run rnnpipe with args; input is bytes or str for stdin (None: no stdin)."""
    if isinstance(input, str):
        input = input.encode("utf-8")
    return subprocess.run(
        RNNPIPE + [str(a) for a in args],
        input=input,
        stdin=subprocess.DEVNULL if input is None else None,
        capture_output=True,
        timeout=timeout,
        env=ENV,
        cwd=cwd,
    )


def shell(command, timeout=60, cwd=None):
    """Run a shell pipeline in which `rnnpipe` means the real executable."""
    return subprocess.run(
        ["bash", "-c", f'rnnpipe() {{ {shlex_join(RNNPIPE)} "$@"; }}\n{command}'],
        capture_output=True,
        timeout=timeout,
        env=ENV,
        cwd=cwd,
    )


def shlex_join(words):
    import shlex

    return " ".join(shlex.quote(w) for w in words)


def popen(*args, **kwargs):
    return subprocess.Popen(RNNPIPE + [str(a) for a in args], env=ENV, **kwargs)


def info(path):
    r = run("info", "-m", path, "--json")
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


def wait_for(predicate, timeout=30.0, every=0.05):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if predicate():
            return True
        time.sleep(every)
    return False


class Feeder(threading.Thread):
    """Writes text to a pipe over and over until it breaks or `stop` is set."""

    def __init__(self, pipe, data: bytes, repeat=True):
        super().__init__(daemon=True)
        self.pipe, self.data, self.repeat = pipe, data, repeat
        self.stop = threading.Event()

    def run(self):
        try:
            while not self.stop.is_set():
                self.pipe.write(self.data)
                self.pipe.flush()
                if not self.repeat:
                    break
        except (BrokenPipeError, ValueError, OSError):
            pass


def one_error_line(result, status):
    """The result failed with `status` and said so in one line."""
    err = result.stderr.decode("utf-8")
    assert result.returncode == status, (result.returncode, err)
    assert "Traceback" not in err
    lines = err.splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("rnnpipe: error: "), err
    assert result.stdout == b""
    return lines[0]


def copy(src, dst):
    shutil.copyfile(src, dst)
    return dst


def pty_run(args, stdin_text=None, timeout=60, cols=150):
    """Run rnnpipe with stdout and stderr on a pseudo-terminal (and stdin too
    when stdin_text is given, typed then ended with Ctrl-D); returns (exit
    status, everything the terminal showed)."""
    import pytest

    pty = pytest.importorskip("pty")
    import fcntl
    import struct
    import termios

    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, cols, 0, 0))
    stdin = slave if stdin_text is not None else subprocess.DEVNULL
    p = popen(*args, stdin=stdin, stdout=slave, stderr=slave)
    os.close(slave)
    if stdin_text is not None:
        time.sleep(0.5)  # typed after the program has started, as a person types
        os.write(master, stdin_text.encode() + b"\n\x04")
    out = b""
    while True:
        try:
            chunk = os.read(master, 65536)
        except OSError:
            break
        if not chunk:
            break
        out += chunk
    status = p.wait(timeout=timeout)
    os.close(master)
    return status, out.decode("utf-8", "replace")
