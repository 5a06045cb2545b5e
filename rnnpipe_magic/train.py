"""``%%charrnn_train``: train a model on a cell's text (or a notebook
variable's), through rnnpipe.training.Session as `rnnpipe train` does."""

from __future__ import annotations

import math
import os
import signal

from IPython.core.error import UsageError
from IPython.core.magic import line_cell_magic, magics_class
from IPython.core.magic_arguments import argument, magic_arguments

from rnnpipe import options, session, training
from rnnpipe.errors import SettingError, Unavailable

from . import parsing, store, views
from .common import ModelMagics

REPORT_EVERY = 0.1  # seconds between progress reports kept for the loss curve


@magics_class
class TrainMagics(ModelMagics):
    """%charrnn_train and %%charrnn_train."""

    @magic_arguments(name="%charrnn_train")
    @parsing.model_option("model file (msgpack): read if it exists, written after training (and every --save-every)")
    @parsing.name_option
    @argument(
        "--text",
        metavar="VAR",
        help="train on the string in the notebook variable VAR instead of the cell body",
    )
    @parsing.output_option(
        "store the run's TrainResult in VAR: .model, .bits_per_char, .heldout_bits, .final and .history "
        "(every rnnpipe.Progress reported)"
    )
    @parsing.group("architecture (fixed once a model exists)", options.ARCHITECTURE)
    @parsing.group("hyperparameters (may change from run to run)", options.HYPER)
    @parsing.group("run", options.RUN)
    @parsing.group("engine", options.ENGINE)
    @line_cell_magic
    def charrnn_train(self, line, cell=None):
        """Train a character-level model on the cell's text (taken literally),
        or, as the line magic %charrnn_train, on the string named by --text.

        Running the cell again keeps training the same model. With -m the
        model is read from the file if it exists and saved to it at the end
        (also when interrupted); without -m it lives in memory under --name.
        Options not given keep the model's own values; a new model takes
        rnnpipe's defaults. Interrupt the kernel to stop early: training ends
        after the current iteration and the model is saved.

        Without --epochs the text is read once, or, with --max-time, again
        and again until the time is up. A run that reads it more than once
        holds out its last 5% (at most 10,000 characters) and ends with the
        model that scored best on it, as `rnnpipe train` does.

        -o VAR stores a TrainResult: VAR.model is the trained rnnpipe.Model,
        VAR.bits_per_char the final smoothed training loss and
        VAR.heldout_bits the model's held-out loss, both in bits per
        character; VAR.final is the last rnnpipe.Progress and VAR.history
        every one reported, for a loss curve of your own.

        With -m the run holds the model's lock, the one `rnnpipe train` takes
        (MODEL.lock beside it), from before the file is read to after the
        last save: a second run on the same file, in a notebook or on the
        command line, is refused at once, naming this one's pid, and this one
        is refused while another runs. --save-every also saves during the
        run, so a killed kernel loses at most that much. A kernel told to
        terminate (SIGTERM) saves, then ends.
        """
        args = parsing.parse(self.charrnn_train, line)
        self.check_output(args.output)
        text = self.text(args, cell, "charrnn_train")
        try:
            opts = options.train_options(args)  # the command line's rules and words
            options.check_engine(args)
        except ValueError as e:
            raise UsageError(str(e)) from None
        if args.model and args.name:
            raise UsageError("give -m FILE or --name NAME, not both")
        if args.save_every is not None and not args.model:
            raise UsageError("--save-every saves to a model file: give -m FILE (a model kept with --name is not saved)")
        path = os.path.expanduser(args.model) if args.model else None
        interrupt = session.Interrupt()
        try:
            # signals only set a flag from here to after the last save and the lock's release
            with interrupt, training.Session(path, session.NOTEBOOK, note=print, interrupt=interrupt) as s:
                self._train(args, text, opts, s)
        except session.SessionError as e:  # the lock is held elsewhere, a save failed, training gave up
            raise UsageError(str(e)) from None
        except SettingError as e:  # a setting the core refused once it knew the model (plan.check_memory)
            raise UsageError(e.flag(options.FLAGS)) from None
        finally:
            # a kernel asked to end (SIGTERM) while training: the model is saved
            # and the lock released, so now it ends as it was asked to
            interrupt.pass_on(signal.SIGTERM)

    def _train(self, args, text, opts, s):
        """Train through the training.Session s (its lock held): this face
        only finds the model and shows the run."""
        entry = store.find(self.models, args, create=True)  # read under the lock: the file as it is now
        label = args.model or (args.name or store.DEFAULT_NAME)
        try:
            if entry is None:
                s.open(options.config_changes(args), size=len(text), options=opts)
            else:
                s.open(options.config_changes(args), entry.model, saved_at=entry.saved_at)
        except ValueError as e:
            raise UsageError(str(e)) from None
        if entry is None:
            entry = store.Entry(s.model, label, os.path.abspath(s.path) if s.path else None)
            print(f"new model {label}: {views.describe(s.model)}")
        else:
            print(f"continuing {entry.label} from iteration {s.model.iterations:,}: {views.describe(s.model)}")
        try:
            s.use(args.engine, args.device)
        except Unavailable as e:
            raise UsageError(str(e)) from None
        view = views.View(entry)
        entry.curve.append((s.model.iterations, s.model.smooth_loss / math.log(2), None))
        try:
            outcome = s.train(text, opts, callback=view, report_every=REPORT_EVERY)
        finally:
            if s.path is not None:
                entry.stamp, entry.saved_at = store.stamp(entry.path), s.saved_at
            if s.existed or s.saved_at is not None or s.path is None and entry.model.iterations:
                self.models[("file", entry.path) if entry.path else ("name", entry.label)] = entry
        view.finish(outcome)
        if args.output and outcome.final is not None:
            saved = entry.label if outcome.saved else None
            self.shell.user_ns[args.output] = views.TrainResult(entry.model, outcome.final, view.reports, saved)
