"""The model file: one msgpack map, specified in docs/model-format.md.

Reading trusts nothing: the msgpack is read within a memory bound
(fileread), every field is checked before any array is built (filecheck),
and anything wrong raises ModelFormatError with a message that says what.
Writing is atomic: the old file stays whole until the new one is on disk.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import re
import stat
import sys
import tempfile

import msgpack
import numpy as np

from . import filecheck, optim
from .filecheck import COUNTER_DTYPE, DTYPES, RESUME_KEYS, RESUME_V5, RESUME_V7, check_type, unpack_array
from .fileread import ModelFormatError, fail, read

__all__ = ["FORMAT", "VERSION", "READS", "DTYPES", "COUNTER_DTYPE", "ModelFormatError", "pack", "pack_array",
           "pack_resume", "unpack", "unpack_array", "save_bytes", "stale_temp_files"]  # fmt: skip

FORMAT = "rnnpipe-model"
VERSION = 7  # what pack writes
READS = (1, 2, 3, 4, 5, 6, 7)  # what unpack reads; docs/model-format.md says how they differ


def pack_array(a):
    a = np.asarray(a)
    return {
        "dtype": a.dtype.newbyteorder("<").str,
        "shape": list(a.shape),
        "data": a.astype(a.dtype.newbyteorder("<")).tobytes(),
    }


def pack(config, vocab, params, opt_state, state) -> bytes:
    # a slot added at a later update count than the state's (a rollback past
    # its growth) counts from the next update, as optim.step treats it, and
    # as unpack requires: no count above state.iterations
    opt_state = {k: np.minimum(v, state["iterations"]) if k in optim.COUNTERS else v for k, v in opt_state.items()}
    body = msgpack.packb(
        {
            "config": config.to_dict(),
            "vocab": list(vocab),
            "params": {k: pack_array(v) for k, v in params.items()},
            "optimizer": {k: pack_array(v) for k, v in opt_state.items()},
            "state": state,
        },
        use_bin_type=True,
    )
    # the checksum covers the body's bytes as stored, so any reader can check
    # it without re-encoding anything, and no flipped bit goes unnoticed
    return msgpack.packb(
        {"format": FORMAT, "version": VERSION, "sha256": hashlib.sha256(body).digest(), "model": body},
        use_bin_type=True,
    )


def _temp_prefix(path):
    return "." + os.path.basename(path) + "."


def _sync(fd):
    """fsync, made durable on macOS too: there fsync leaves the data in the
    drive's cache, and F_FULLFSYNC asks the drive to write it out. A file
    system that does not support it (some network mounts) gets fsync."""
    if sys.platform == "darwin":
        import fcntl

        if hasattr(fcntl, "F_FULLFSYNC"):
            try:
                fcntl.fcntl(fd, fcntl.F_FULLFSYNC)
                return
            except OSError:
                pass
    os.fsync(fd)


def save_bytes(path, data: bytes):
    """Write atomically: temp file beside the target, fsync, rename over it.

    A symbolic link is followed: the file it points to is replaced and the
    link stays (renaming over the link itself would leave its target stale)."""
    path = os.path.realpath(os.fspath(path))
    folder = os.path.dirname(path)
    with contextlib.suppress(FileNotFoundError):
        # renaming over a device or a FIFO would replace it (as root, /dev/null too) with this file
        mode = os.stat(path).st_mode
        if not (stat.S_ISREG(mode) or stat.S_ISDIR(mode)):  # a directory fails in the rename, as it says
            raise OSError(errno.EINVAL, "not a regular file: only a regular file is replaced by a save", path)
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=_temp_prefix(path), suffix=".tmp")
    try:
        # mkstemp makes the file private (0600); give it the mode the old file
        # had, or the one a plain open() would, so a save changes no permissions
        try:
            mode = os.stat(path).st_mode & 0o7777
        except FileNotFoundError:
            umask = os.umask(0)
            os.umask(umask)
            mode = 0o666 & ~umask
        os.chmod(tmp, mode)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            _sync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    try:  # make the rename itself durable
        dfd = os.open(folder, os.O_RDONLY)  # fails on Windows, which has no such step
        try:
            _sync(dfd)
        finally:
            os.close(dfd)
    except OSError:
        pass


def stale_temp_files(path):
    """Temp files that save_bytes(path) left behind: only a process killed
    mid-save (SIGKILL, power loss) leaves one; every other failure removes
    its own. Named like mkstemp's: .NAME.XXXXXXXX.tmp beside the model."""
    path = os.path.realpath(os.fspath(path))
    folder = os.path.dirname(path)
    pattern = re.compile(re.escape(_temp_prefix(path)) + r"[a-z0-9_]{8}\.tmp")
    try:
        names = os.listdir(folder)
    except OSError:
        return []
    found = []
    for name in sorted(names):
        full = os.path.join(folder, name)
        if pattern.fullmatch(name) and os.path.isfile(full) and not os.path.islink(full):
            found.append(full)
    return found


def unpack(data: bytes):
    """Parse and validate; returns (config, vocab, params, opt_state, state)."""
    outer = read(data, "the file")
    if not isinstance(outer, dict) or outer.get("format") != FORMAT:
        fail(f"not an rnnpipe model file (no format marker {FORMAT!r})")
    version = outer.get("version")
    # an int, not merely equal to one: 1.0 and True are not version 1
    if type(version) is not int or version not in READS:
        reads = ", ".join(map(str, READS[:-1])) + f" and {READS[-1]}"
        fail(f"model file version {version!r} is not supported (this rnnpipe reads versions {reads})")
    if set(outer) != {"format", "version", "sha256", "model"}:
        fail("model file should have exactly the keys format, version, sha256, model")
    body = check_type(outer.pop("model"), bytes, "model")
    if hashlib.sha256(body).digest() != outer["sha256"]:
        fail("checksum mismatch: the file is damaged or was changed")
    doc = read(body, "the model body")
    del body  # the arrays built from doc next need not sit beside a second copy of them
    return filecheck.body(doc, version)


def pack_resume(resume):
    """state.resume of the file, from a train.Position's fields (a dict)."""
    doc = {k: resume[k] for k in (RESUME_KEYS | RESUME_V5 | RESUME_V7) - {"state"}}
    if resume.get("schedule") is not None:  # version 3: the learning-rate schedule's budget
        doc["schedule"] = dict(resume["schedule"])
    doc["state"] = [[pack_array(a) for a in layer] for layer in resume["state"]]
    return doc


def pack_rng(rng):
    """state.rng of the file, from a numpy Generator (PCG64)."""
    s = rng.bit_generator.state
    # 128-bit integers do not fit msgpack's ints, so they travel as text
    return {
        "bit_generator": "PCG64",
        "state": str(s["state"]["state"]),
        "inc": str(s["state"]["inc"]),
        "has_uint32": int(s["has_uint32"]),
        "uinteger": int(s["uinteger"]),
    }


def unpack_rng(r):
    """The numpy Generator that pack_rng's dict r describes, at the same point of its stream."""
    rng = np.random.Generator(np.random.PCG64())
    rng.bit_generator.state = {
        "bit_generator": "PCG64",
        "state": {"state": int(r["state"]), "inc": int(r["inc"])},
        "has_uint32": int(r["has_uint32"]),
        "uinteger": int(r["uinteger"]),
    }
    return rng
