"""What the command line's commands share: their errors, the streams they
write to, and reading model files and inputs with one-line failures."""

from __future__ import annotations

import os
import stat

from .. import session

EXIT_USAGE, EXIT_FAILURE = 2, 1


class UsageError(Exception):
    """The command line is wrong: exit 2."""


class Failure(Exception):
    """The command could not do its job: exit 1."""


class Streams:
    def __init__(self, stdin, stdout, stderr, process=False):
        self.stdin, self.stdout, self.stderr = stdin, stdout, stderr
        self.process = process  # main() runs as the process (the console script), not called in-process

    def note(self, text):
        """A message for the user on stderr."""
        print(f"rnnpipe: {text}", file=self.stderr, flush=True)


def load_model(path):
    """Load a model or fail with a message naming the file."""
    return read_model(path)[0]


def read_model(path):
    """(the model, the file's bytes), read once (a pipe can be read only
    once), or fail with a message naming the file."""
    from ..model import Model
    from ..modelfile import ModelFormatError

    if not os.path.exists(path):
        creating = session.being_created(path)
        if creating:
            raise Failure(f"{path}: {creating}")
        raise Failure(f"{path}: no such model file (create one with: rnnpipe train -m {path} FILE)")
    if os.path.isdir(path):
        raise Failure(f"{path}: is a directory, not a model file")
    # a device such as /dev/zero would be read until memory runs out; a pipe
    # (-m <(...)) is fine: it ends
    mode = os.stat(path).st_mode
    if not (stat.S_ISREG(mode) or stat.S_ISFIFO(mode)):
        raise Failure(f"{path}: is not a regular file")
    try:
        with open(path, "rb") as f:
            data = f.read()
        return Model.from_bytes(data), data
    except OSError as e:
        raise Failure(f"{path}: cannot read model: {e.strerror}") from None
    except ModelFormatError as e:
        raise Failure(f"{path}: {e}") from None


def use_engine(model, args, world=None):
    """The model with the engine and device args ask for (Failure without torch)."""
    from ..engines import Unavailable

    try:
        return model.use(args.engine, args.device, world)
    except Unavailable as e:  # no torch, or no such device
        raise Failure(str(e)) from None


def check_writable(path):
    """Fail before any work if a file could not be saved at path."""
    from ..training import check_writable

    try:
        check_writable(path)
    except session.SessionError as e:
        raise Failure(str(e)) from None


def check_output(path, model_path):
    """Fail before any work if writing path would write over the model being
    read: the same file, also through a link or a second name (hard link)."""
    try:
        out, model = os.stat(path), os.stat(model_path)
    except OSError:  # no output yet, or no model: nothing to overwrite
        return
    if (out.st_dev, out.st_ino) == (model.st_dev, model.st_ino):
        raise Failure(f"{path}: is the model being read ({model_path}); give the output another name")


def write_output(path, data, what, model_path=None):
    """Write an output file (a page, an export) whole or not at all, never
    over the model being read. A FIFO or a character device (-o /dev/stdout,
    -o >(gzip > f)) is written as a stream, as a shell's > would: replacing
    it with a file (as root, /dev/null too) would break whatever uses it.
    Other special files (a directory, a block device, a socket) are refused."""
    from ..modelfile import save_bytes

    if model_path is not None:
        check_output(path, model_path)
    try:
        try:
            mode = os.stat(path).st_mode
        except FileNotFoundError:
            mode = None
        if mode is not None and (stat.S_ISFIFO(mode) or stat.S_ISCHR(mode)):
            fd = os.open(path, os.O_WRONLY | getattr(os, "O_CLOEXEC", 0))  # no O_CREAT, no O_TRUNC
            with os.fdopen(fd, "wb") as f:
                if not stat.S_ISREG(os.fstat(fd).st_mode):  # swapped for a file meanwhile: saved below instead
                    f.write(data)
                    return
        elif mode is not None and not stat.S_ISREG(mode):
            raise Failure(f"{path}: is not a regular file, a FIFO or a character device; cannot write the {what}")
        save_bytes(path, data)
    except OSError as e:
        raise Failure(f"{path}: cannot write the {what}: {e.strerror}") from None


def open_inputs(files, stdin):
    from ..reader import InputError, open_inputs

    try:
        return open_inputs(files, stdin)
    except InputError as e:
        raise Failure(str(e)) from None


def escape(chars):
    """A vocabulary as one printable line: newline as \\n, other control or
    invisible characters as \\t, \\xNN, \\uNNNN; backslash doubled."""
    named = {"\n": "\\n", "\t": "\\t", "\r": "\\r", "\\": "\\\\"}
    out = []
    for c in chars:
        if c in named:
            out.append(named[c])
        elif c.isprintable():
            out.append(c)
        else:
            out.append(c.encode("unicode_escape").decode("ascii"))
    return "".join(out)


def reading_terminal(sources):
    """Whether one of the inputs is stdin on a terminal: text being typed."""
    return any(s.fd is not None and s.name == "<stdin>" and os.isatty(s.fd) for s in sources)
