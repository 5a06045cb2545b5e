"""A training session on a model file, the same for every face: the command
line (rnnpipe.cli) and the notebook (rnnpipe_magic) both use it.

- TrainLock: one trainer per model at a time, across faces. An exclusive
  lock on the sidecar file MODEL.lock, held from before the model is loaded
  until after its last save; the file names the holder (pid and face).
- remove_stale_temp_files: temp files of a save that a killed run left,
  removed only with the lock held, so none of them can be in use.
- Saver: atomic saves with SIGINT and SIGTERM held back, on demand and every
  `every` seconds (maybe_save, polled between iterations).
- Interrupt, ignore_signals, signals_blocked: SIGINT and SIGTERM only set a
  flag that training polls, so a model is never left half-updated.

Errors are SessionError: one line that names the file. Each face shows it
in its own way (the command line as `rnnpipe: error: ...`, exit 1; the
notebook as a UsageError). This module imports neither numpy (the command
line's help must start fast) nor IPython (the core never needs it).

Portable: on POSIX the lock is flock(2); on Windows msvcrt.locking on one
byte far past the pid, since Windows locks are mandatory and would otherwise
keep the holder's pid from being read. Signal masks exist only on POSIX;
elsewhere a signal during a save is simply recorded after it.
"""

from __future__ import annotations

import contextlib
import errno
import os
import signal
import stat
import sys
import threading
import time
from dataclasses import dataclass

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


class SessionError(Exception):
    """The session cannot go on; the message is one line naming the file."""


class LockBusy(SessionError):
    """Another run holds the model's lock; .holder says which (or None)."""

    def __init__(self, message, holder):
        super().__init__(message)
        self.holder = holder


class SaveError(SessionError):
    """A save failed; the file on disk is as it was (modelfile.save_bytes)."""


# -- signals -----------------------------------------------------------------


class Interrupt:
    """Signal handlers that only record the signal; training polls it
    (interrupt() is true once one came), so the model is never left
    half-updated.

    hold: after a signal, ignore further ones until the process exits (the
    command line, which exits with 128 + signum: a second Ctrl-C must not
    become a KeyboardInterrupt, or a death by signal, on the way out).
    Handlers are only installed from the main thread, and a signal ignored on
    purpose (a background job's SIGINT, nohup) stays ignored."""

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self, hold=False):
        self.signum = None
        self.hold = hold
        self._old = {}

    def __call__(self):
        return self.signum is not None

    def _handle(self, signum, frame):
        if self.signum is None:
            self.signum = signum

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            for s in self.SIGNALS:
                if signal.getsignal(s) is not signal.SIG_IGN:
                    self._old[s] = signal.signal(s, self._handle)
        return self

    def __exit__(self, *exc):
        if self.hold and self.signum is not None:
            self._old.clear()
            ignore_signals()
        for s, old in self._old.items():
            signal.signal(s, old)
        self._old.clear()

    @property
    def exit_status(self):
        return 128 + self.signum

    def pass_on(self, *signums):
        """Deliver again, with the handlers before this Interrupt back in
        place, a recorded signal among signums: a notebook kernel asked to
        terminate (SIGTERM) saves first, then ends as it was asked to."""
        if self.signum in signums and not self._old:
            os.kill(os.getpid(), self.signum)


def ignore_signals():
    """Ignore SIGINT and SIGTERM for the rest of the process's life. Not a
    signal mask: that holds for one thread, and numpy's BLAS threads would
    take the signal, which after Python's finalisation resets the handler
    kills the process (exit -2 instead of 130)."""
    if threading.current_thread() is threading.main_thread():
        for s in Interrupt.SIGNALS:
            signal.signal(s, signal.SIG_IGN)


@contextlib.contextmanager
def signals_blocked():
    """Hold SIGINT and SIGTERM back (they are delivered afterwards). POSIX
    only: elsewhere there are no signal masks, and an Interrupt's handler
    just records the signal after the save."""
    if not hasattr(signal, "pthread_sigmask"):
        yield
        return
    old = signal.pthread_sigmask(signal.SIG_BLOCK, Interrupt.SIGNALS)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old)


# -- the lock ----------------------------------------------------------------


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


def remove_stale_temp_files(path):
    """Remove the temp files left by a run killed mid-save; returns their
    paths. Only with the lock held: no other run is saving this model, so
    none of them is in use."""
    from .modelfile import stale_temp_files

    removed = []
    for tmp in stale_temp_files(path):
        try:
            os.unlink(tmp)
        except OSError:
            continue
        removed.append(tmp)
    return removed


# -- saving ------------------------------------------------------------------


class Saver:
    """Saves the model atomically, with SIGINT and SIGTERM held back, when
    asked (save) and every `every` seconds (maybe_save).

    on_disk: whether path holds this model already (as loaded); saved_at: the
    iteration that file is at (default: the model's now)."""

    def __init__(self, model, path, every=None, on_disk=False, saved_at=None):
        self.model, self.path, self.every = model, os.fspath(path), every
        self.last = time.monotonic()
        self.on_disk = on_disk  # whether path holds this model (as loaded, or as saved by this run)
        self.clean_at = model.iterations if saved_at is None else saved_at  # the iteration that state is at

    def kept(self):
        """What the file holds after a failure, in words."""
        if self.on_disk:
            return f"the file keeps its last saved state (iteration {self.clean_at})"
        return "no model file was created"

    def save(self):
        with signals_blocked():
            try:
                self.model.save(self.path)
            except OSError as e:
                # the temp file is gone and the file on disk is whatever it was (modelfile.save_bytes)
                raise SaveError(f"{self.path}: cannot save model: {e.strerror or e}; {self.kept()}") from None
        self.last = time.monotonic()
        self.on_disk, self.clean_at = True, self.model.iterations

    def maybe_save(self):
        """Save if `every` seconds have passed and there is something new.
        Called between iterations and while waiting for input."""
        if self.every and self.model.iterations != self.clean_at and time.monotonic() - self.last >= self.every:
            self.save()
