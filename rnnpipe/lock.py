"""One trainer per model at a time, across faces: TrainLock, an exclusive
lock on the sidecar file MODEL.lock, held from before the model is loaded
until after its last save; the file names the holder (pid and face).

Portable: on POSIX the lock is flock(2); on Windows msvcrt.locking on one
byte far past the pid, since Windows locks are mandatory and would otherwise
keep the holder's pid from being read. Errors are SessionError (errors.py):
one line that names the file. This module imports no numpy (the command
line's help must start fast), and fcntl or msvcrt only to take a lock.
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
import sys
import time
from dataclasses import dataclass

from .errors import SessionError

# who holds a lock, as the lock file says and messages name it
CLI = "rnnpipe train"
NOTEBOOK = "%%charrnn_train in a notebook"

_BINARY = getattr(os, "O_BINARY", 0)  # Windows: no newline translation
# A lock file is opened as itself, never through what it points to: a link
# planted at MODEL.lock would otherwise have the lock's pid written over its
# target. Not inherited by children (a torchrun rank, a shell-out), and never
# blocking on a FIFO planted there. Windows has none of these flags.
_OWN = getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_NONBLOCK", 0)
_BUSY_RETRIES = 5  # tries before a held lock is reported: 80 ms, so still "at once"
_BUSY_WAIT = 0.02  # seconds between those tries


class LockBusy(SessionError):
    """Another run holds the model's lock; .holder says which (or None)."""

    def __init__(self, message, holder):
        super().__init__(message)
        self.holder = holder


class _Flock:
    """POSIX: flock(2) on the whole file. The kernel drops it when its
    holder dies, however it dies."""

    @staticmethod
    def lock(fd, shared=False):
        """Take the lock without waiting: True, or False when it is held."""
        import fcntl

        try:
            fcntl.flock(fd, (fcntl.LOCK_SH if shared else fcntl.LOCK_EX) | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        return True

    @staticmethod
    def unlock(fd):
        import fcntl

        fcntl.flock(fd, fcntl.LOCK_UN)

    # an open file can be unlinked, and is unlinked while still locked, so
    # no one can lock it and then see it vanish
    unlink_while_locked = True


class _Msvcrt:
    """Windows: msvcrt.locking on one byte at OFFSET. Windows locks are
    mandatory, so the byte is far past the pid the file holds, which others
    must read. Windows drops a dead process's locks too."""

    OFFSET = 1 << 30

    @classmethod
    def lock(cls, fd, shared=False):  # Windows has no shared msvcrt lock: a probe takes it briefly
        import msvcrt

        os.lseek(fd, cls.OFFSET, os.SEEK_SET)
        try:
            msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)
        except OSError as e:
            if e.errno in (errno.EACCES, getattr(errno, "EDEADLOCK", errno.EDEADLK)):
                return False
            raise
        return True

    @classmethod
    def unlock(cls, fd):
        import msvcrt

        os.lseek(fd, cls.OFFSET, os.SEEK_SET)
        msvcrt.locking(fd, msvcrt.LK_UNLCK, 1)

    # an open file cannot be removed on Windows: unlock and close first
    unlink_while_locked = False


def _platform_lock():
    return _Msvcrt if sys.platform == "win32" else _Flock


@dataclass(frozen=True)
class Holder:
    """Who holds a model's lock, from its lock file."""

    pid: int | None
    what: str = CLI

    def __str__(self):
        return self.what if self.pid is None else f"{self.what} (pid {self.pid})"


class TrainLock:
    """One trainer per model at a time, whichever face trains it: an
    exclusive lock on the sidecar file MODEL.lock, held for the whole run.

    Not on the model itself: saving renames a new file over it, so a lock on
    the old file would not stop a second run that opens the new one. The
    lock file holds the owner's pid and face for the message, and is removed
    by its owner at the end; the system drops the lock when a process dies,
    so a lock file left by a killed run is simply taken over.

    what: how the holder is named to others (CLI or NOTEBOOK)."""

    def __init__(self, model_path, what=CLI):
        self.model_path = os.fspath(model_path)
        self.path = os.path.realpath(self.model_path) + ".lock"
        self.what = what
        self.fd = None
        self.impl = _platform_lock()

    def __enter__(self):
        self.acquire()
        return self

    def __exit__(self, *exc):
        self.release()

    def acquire(self):
        """Take the lock at once or raise LockBusy naming the holder (or
        SessionError when the lock file cannot be made or locked)."""
        busy = 0
        while True:
            try:
                fd = os.open(self.path, os.O_RDWR | os.O_CREAT | _BINARY | _OWN, 0o644)
            except OSError as e:
                if os.path.islink(self.path):  # O_NOFOLLOW's ELOOP
                    raise SessionError(self._not_ours("is a symbolic link")) from None
                raise SessionError(f"{self.model_path}: cannot create lock file {self.path}: {e.strerror}") from None
            problem = self._not_a_lock_file(fd)
            if problem:
                os.close(fd)
                raise SessionError(self._not_ours(problem))
            try:
                locked = self.impl.lock(fd)
            except OSError as e:  # no locks on this file system (some network mounts)
                os.close(fd)
                raise SessionError(f"{self.model_path}: cannot lock {self.path}: {e.strerror}") from None
            if not locked:
                holder = self._owner(fd)
                os.close(fd)
                busy += 1
                if busy < _BUSY_RETRIES:
                    # a run that is just starting has not written its pid yet, and a
                    # probe (holder(), from sample or eval) holds the lock for an
                    # instant: look again for a moment before refusing
                    time.sleep(_BUSY_WAIT)
                    continue
                raise LockBusy(
                    f"{self.model_path}: another {holder} is training this model; "
                    f"wait for it to end or stop it (lock file {self.path})",
                    holder,
                )
            # the owner before us may have removed the file between our open
            # and our lock: then we hold a lock on a file nobody else sees
            try:
                current = os.path.samestat(os.fstat(fd), os.stat(self.path))
            except FileNotFoundError:
                current = False
            if current:
                break
            self._unlock_quietly(fd)
            os.close(fd)
        self.fd = fd
        with contextlib.suppress(OSError):
            os.ftruncate(fd, 0)
            os.lseek(fd, 0, os.SEEK_SET)
            os.write(fd, f"{os.getpid()}\n{self.what}\n".encode())

    def _not_ours(self, problem):
        return (
            f"{self.model_path}: lock file {self.path} {problem}; rnnpipe writes only a plain file of its own "
            "there: remove it"
        )

    @staticmethod
    def _not_a_lock_file(fd):
        """Why the opened file must not be written as a lock file, or None.
        Its pid is written over what it holds: a device, a FIFO or a second
        name (hard link) of some other file is not ours to overwrite."""
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            return "is not a regular file"
        if st.st_nlink > 1:
            return f"has {st.st_nlink} names (hard links), so it is another file too"
        return None

    def holder(self):
        """The Holder when a run holds the lock now, else None."""
        try:
            fd = os.open(self.path, os.O_RDONLY | _BINARY | _OWN)
        except OSError:
            return None
        try:
            if self._not_a_lock_file(fd):  # no run could have locked it: nothing to read there
                return None
            try:
                if self.impl.lock(fd, shared=True):
                    self._unlock_quietly(fd)
                    return None
            except OSError:
                return None
            return self._owner(fd)
        finally:
            os.close(fd)

    @classmethod
    def _owner(cls, fd):
        try:
            os.lseek(fd, 0, os.SEEK_SET)  # seek and read: os.pread does not exist on Windows
            data = os.read(fd, 256)
        except OSError:
            data = b""
        return cls._owner_of(data)

    @staticmethod
    def _owner_of(data):
        """Who a lock file's bytes say holds it: b'PID\\nWHAT\\n' (older files: the pid alone)."""
        lines = data.decode("ascii", "replace").splitlines()
        pid = int(lines[0]) if lines and lines[0].strip().isdigit() else None
        what = lines[1].strip() if len(lines) > 1 else ""
        return Holder(pid, what if what in (CLI, NOTEBOOK) else CLI)

    def _unlock_quietly(self, fd):
        with contextlib.suppress(OSError):
            self.impl.unlock(fd)

    def release(self):
        if self.fd is None:
            return
        fd, self.fd = self.fd, None
        if self.impl.unlink_while_locked:
            with contextlib.suppress(OSError):
                os.unlink(self.path)
            os.close(fd)
        else:
            self._unlock_quietly(fd)
            os.close(fd)
            with contextlib.suppress(OSError):  # another run may have it open already: it stays
                os.unlink(self.path)


def being_created(path):
    """For a model file that does not exist yet: the words saying who is
    creating it, when a run holds its lock, else None."""
    holder = TrainLock(path).holder()
    if holder is None:
        return None
    return f"no model file yet: {holder} is creating it and saves it when it ends (or every --save-every seconds)"
