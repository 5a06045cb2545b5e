"""A training session on a model file, the same for every face: the command
line (rnnpipe.cli) and the notebook (rnnpipe_magic) both use it.

- TrainLock (lock.py): one trainer per model at a time, across faces.
- remove_stale_temp_files: temp files of a save that a killed run left,
  removed only with the lock held, so none of them can be in use.
- Saver: atomic saves with SIGINT and SIGTERM held back, on demand and every
  `every` seconds (maybe_save, polled between iterations).
- Interrupt, ignore_signals, signals_blocked: SIGINT and SIGTERM only set a
  flag that training polls, so a model is never left half-updated.

Errors are SessionError: one line that names the file. Each face shows it
in its own way (the command line as `rnnpipe: error: ...`, exit 1; the
notebook as a UsageError). This module imports neither numpy (the command
line's help must start fast) nor IPython (the core never needs it). Signal
masks exist only on POSIX; elsewhere a signal during a save is simply
recorded after it.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
import time

from .errors import SessionError
from .lock import CLI, NOTEBOOK, Holder, LockBusy, TrainLock, being_created  # noqa: F401  (the faces' names for them)


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
