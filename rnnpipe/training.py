"""One training run on a model, the same for every face: the command line
(rnnpipe.cli) and the notebook (rnnpipe_magic) differ only in where the
text comes from and how progress, notes and errors are shown.

    with Session(path, session.CLI, note=print) as s:   # the lock, stale temp files
        s.open(changes)                                  # load or create, configure
        outcome = s.train(text, options, callback=show)  # train, save, and say what the file holds

A Session owns what both faces must do alike:
- the model's lock (session.TrainLock), held from before the file is read
  to after its last save, and the temp files a killed save left;
- opening: the file loaded (or a model the face already holds), or a new
  model made; configuration changes applied, with a note;
- the saver: periodic saves (options.save_every), a save at the end, and
  SIGINT/SIGTERM only recorded (session.Interrupt) so a save is never cut;
- the failure policy, the same in every face:
  diverged: the file as it was before the run (a new one removed), and the
    model in memory too;
  vocabulary full: what was learned before is saved;
  refused or empty input: the file untouched, byte for byte;
- the last line: what the run did and what the file holds (Outcome.summary).

Errors are session.SessionError subclasses: one line that names the file;
configuration a model cannot take raises ValueError (errors.SettingError
where it names one setting), which faces show as a usage error. The core
here never imports IPython; numpy is imported when a run starts."""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass

from . import session
from .progress import clock, si


class Failed(session.SessionError):
    """Training stopped with an error; the message says what the file holds."""


@dataclass
class Outcome:
    """What a run did, for the face to show."""

    final: object  # the last train.Progress (kind "end"), or None when nothing was trained
    summary: str  # one line: why it ended, what it trained on, what the file holds
    exit_status: int = 0  # 0, or 128 + the signal that interrupted it
    saved: bool = False  # whether the model was written to its file at the end


def changes_note(before, changes):
    """The note both faces give when options change a saved model's
    hyperparameters, or None when they change nothing."""
    changed = [f"{k} {getattr(before, k)!r} -> {v!r}" for k, v in changes.items() if getattr(before, k) != v]
    return f"changing {', '.join(changed)} (saved with the model for later runs too)" if changed else None


def check_writable(path):
    """SessionError before any training when the model could not be saved at path."""
    if os.path.isdir(path):
        raise session.SessionError(f"{path}: is a directory; give a model file name")
    # saving follows a symbolic link (modelfile.save_bytes): check its target's folder
    folder = os.path.dirname(os.path.realpath(path))
    if not os.path.isdir(folder):
        what = "is not a folder" if os.path.exists(folder) else "does not exist"
        raise session.SessionError(f"{path}: folder {folder} {what}")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise session.SessionError(f"{path}: cannot write in folder {folder}")
    if os.path.exists(path) and not os.path.isfile(path):
        raise session.SessionError(f"{path}: is not a regular file")


class Session:
    """One training run on a model file (path), or on a model kept in
    memory (path None: no lock, no saves).

    face: who trains (session.CLI or session.NOTEBOOK), as the lock file
    names it; note: a function shown one-line notes (a configuration change,
    a stale temp file removed); interrupt: the session.Interrupt whose
    signals stop training (the face installs it); lead: False for a torchrun
    rank other than 0, which neither locks nor saves."""

    def __init__(self, path, face=session.CLI, *, note=None, interrupt=None, lead=True):
        self.path = None if path is None else os.fspath(path)
        self.face, self.lead = face, lead
        self.note = note or (lambda text: None)
        self.interrupt = interrupt or (lambda: False)
        self.lock = session.TrainLock(self.path, face) if self.path is not None and lead else None
        self.model = None
        self.held = None  # a model kept in memory (path None): its bytes before this run changed its configuration
        self.existed = False  # whether the file held a model when the run began
        self.saved_at = None  # the iteration the file holds, when it holds this model

    def __enter__(self):
        if self.lock is not None:
            check_writable(self.path)
            self.lock.acquire()
            try:
                for tmp in session.remove_stale_temp_files(self.path):
                    self.note(f"removed {tmp}, left by an interrupted save")
            except BaseException:
                self.lock.release()
                raise
        return self

    def __exit__(self, *exc):
        if self.lock is not None:
            self.lock.release()

    # -- opening -----------------------------------------------------------------

    def open(self, changes, model=None, *, saved_at=None, size=None, options=None):
        """The model to train: `model` when the face holds it already (as the
        file has it at iteration saved_at, or in memory), else the file's,
        else a new one; with `changes` (Config fields) applied, and a note
        when they change a saved model. A new model given none of
        plan.CHOSEN_BY is the one plan.choose picks for the run's
        train.Options and its text's size (characters, when known), and a
        note says so. ValueError for changes it cannot take;
        ModelFormatError for a file that is not a model."""
        from . import plan
        from .model import Model

        self.existed = self.path is not None and os.path.exists(self.path)
        if model is None and self.existed:
            model, saved_at = Model.load(self.path), None
        if model is None:
            chosen, why = {}, None
            if options is not None:
                chosen, why = plan.choose(size, options, changes)
            self.model = Model.new(**{**chosen, **changes})
            if why is not None:
                self.model.chosen = why
                self.note(f"a new model of {why}; --layers, --hidden or --dropout choose another")
            return self.model
        before = model.config
        if self.path is None:
            self.held = model.to_bytes()  # a run that gives up undoes these changes too, as the file keeps them out
        model.configure(**changes)
        note = changes_note(before, changes)
        if note:
            self.note(note)
        self.model = model
        if self.existed:
            self.saved_at = model.iterations if saved_at is None else saved_at
        return model

    def use(self, engine="numpy", device=None, world=None):
        """Train with `engine` (Model.use; engines.Unavailable when it cannot
        run here), saying which device the torch engine trains on."""
        self.model.use(engine, device, world)
        if self.model.engine is not None:
            self.note(f"the torch engine trains on {self.model.engine.device}")
        return self.model

    # -- training ----------------------------------------------------------------

    def train(self, text, options, *, callback=None, read=None, inputs=None, size=None, report_every=1.0,
              valid_every=10.0):  # fmt: skip
        """Train the opened model on text (anything Model.train takes) with
        train.Options, save it, and return the Outcome. read: a function
        giving the characters of input read so far (default: len(text) for
        a str). Raises Failed, with the file's state in its message."""
        import numpy as np

        from .reader import InputError
        from .train import Diverged, VocabularyFull

        model = self.model
        start_iteration, start_lr = model.iterations, model.config.lr
        was_pending = model.resume is not None
        before = self._before()
        saver = None
        if self.path is not None and self.lead:
            saver = session.Saver(model, self.path, options.save_every, on_disk=self.existed, saved_at=self.saved_at)
        self.saver = saver
        read = read or (lambda: len(text))

        def stop():
            # polled after every iteration, and while a pipe is silent: the model is whole at both points
            if self.interrupt():
                return True
            if saver is not None:
                saver.maybe_save()
            return False

        try:
            # overflow on the way to a NaN loss is the divergence guard's to handle, not a numpy warning
            with np.errstate(all="ignore"):
                final = model.train(text, options.replace(save_every=None), callback=callback, stop=stop,
                                    inputs=inputs, size=size, report_every=report_every,
                                    valid_every=valid_every)  # fmt: skip
        except Diverged as e:
            raise Failed(f"training diverged: {e}; {self._undo(before)}") from None
        except (InputError, VocabularyFull) as e:
            later = model.resume is not None and model.resume.current is not None  # trained past the best (keep-best)
            if (model.iterations > start_iteration or later) and saver is not None:
                saver.save()
                raise Failed(f"{e}; saved what was learned before to {self.path}") from None
            raise Failed(f"{e}; {self._undo(before)}") from None
        finally:
            self._saved(saver)
        # a signal that comes after this (during the last save, say) stops
        # nothing: the run finished, and says so
        signalled = self.interrupt()
        exit_status = self.interrupt.exit_status if signalled else 0
        trained = final.iteration - final.began
        if read() == 0 and not signalled:  # nothing came: the file stays byte for byte, a pending run included
            return Outcome(None, f"empty input: nothing to train on; {self._undo(before, 'left untouched')}")
        # a run rolled back to where it began still changed the model (its lower
        # rate), so it is saved, unless a signal stopped it: then the file keeps
        # what the last periodic save wrote
        rolled_back = model.config.lr < start_lr
        if trained == 0 and not (was_pending and model.resume is None) and (signalled or not rolled_back):
            if signalled:
                return Outcome(None, f"interrupted before any training; {self._undo(before)}", exit_status)
            held = (
                f" after --valid-fraction {options.valid_fraction:g} held out its tail"
                if options.valid_fraction
                else ""
            )
            raise Failed(f"input too short to train on: {read()} character(s){held}; training needs at least 2; "
                         f"{self._undo(before)}")  # fmt: skip
        if saver is not None:
            try:
                saver.save()
            finally:
                self._saved(saver)
        why = "interrupted" if signalled else final.stopped
        return Outcome(final, self._summary(why, final), exit_status, saver is not None)

    def _before(self):
        """What to put back if the run gives up: the file's bytes when a
        periodic save may overwrite them, else the model's (kept in memory),
        as it was before open() changed its configuration."""
        if self.path is None:
            return self.held if self.held is not None else self.model.to_bytes()
        if self.existed and self.lead:
            with open(self.path, "rb") as f:
                return f.read()
        return None

    def _undo(self, before, unchanged="left as it was"):
        """After a run that gave up or found no text: the model as it was
        before the run, on disk and in memory, in words."""
        from .modelfile import save_bytes

        if self.path is None:
            self.model.restore(before)
            return "the model is as it was before this run"
        if not self.lead:
            return "rank 0 keeps the file as it was"
        if not self.existed:
            if self.saver is not None and self.saver.on_disk:
                with contextlib.suppress(OSError):
                    os.unlink(self.path)
                self.saver.on_disk = False
            return f"{self.path} not created"
        self.model.restore(before)
        self.saved_at = self.model.iterations
        with open(self.path, "rb") as f:
            if f.read() != before:
                save_bytes(self.path, before)
                return f"{self.path} put back as it was before this run"
        return f"{self.path} {unchanged}"

    def _saved(self, saver):
        if saver is not None and saver.on_disk:
            self.saved_at = saver.clean_at

    def _summary(self, why, final):
        model = self.model
        trained = final.iteration - final.began
        held = f", held-out {final.valid_bits:.3f} bits/char" if final.valid_bits is not None else ""
        if final.kept is not None:
            bits, seconds, _ = final.kept
            when = "from an earlier run" if seconds is None else f"at {clock(seconds)}"
            held = f"; kept the best held-out model: {bits:.3f} bits/char {when}, not the last one"
        first, last = final.first_epoch, final.epoch
        passes = ""
        if first == 1 and last > 1:
            passes = f" ({last} passes)"
        elif first > 1:
            passes = f" (passes {first}-{last})" if last > first else f" (in pass {last})"
        world = getattr(model, "world", None)
        if world is not None:
            passes += f" on {world.size} ranks"
        kept = f"iterations {final.began + 1}-{final.iteration}" if trained else "no updates kept"
        r = model.resume
        where = "kept in memory" if self.path is None else f"saved to {self.path}"
        if r is not None and r.interrupted:
            where += "; run the same command again to continue where it stopped"
        rate = "" if final.chars_per_sec == 0 else f" ({si(final.chars_per_sec)} chars/s)"
        return (f"{why}: trained on {si(final.chars)} chars{passes} in {final.elapsed:.1f} s{rate}, {kept}, "
                f"loss {final.smooth_bits:.3f} bits/char{held}; {where}")  # fmt: skip
