"""IPython magics for rnnpipe: ``%%charrnn_train``, ``%charrnn_sample``, ``%%charrnn_show`` (and ``%%charrnn_score``,
in score.py).

Load with ``%load_ext rnnpipe_magic`` (IPython comes with
``pip install 'rnnpipe[notebook]'``)::

    %%charrnn_train -m kafka.msgpack --cell rnn --hidden 100 --max-time 60 -o run
    One morning, when Gregor Samsa woke from troubled dreams, ...

    %charrnn_sample -m kafka.msgpack -n 300 --temperature 0.8 --prime "Gregor " -o text

    %%charrnn_show -m kafka.msgpack --neuron 17
    "Oh, God", he thought, "what a strenuous career it is that I've chosen!"

The options are those of ``rnnpipe train``, ``rnnpipe sample`` and ``rnnpipe show`` (one table,
rnnpipe.options), plus a few that only make sense in a notebook: ``--name``
keeps a model in memory without a file, ``--text VAR`` trains on a string the
notebook already holds, ``-o VAR`` stores a result in the user's namespace
(the text for sample, a TrainResult for train). The line is split as a POSIX
shell splits it, so quotes and backslashes work as they do on the command line.

Models stay in memory between cells, keyed by file or name; a model file that
changed on disk since (another process trained it, say) is read again.
Training a model file goes through rnnpipe.session, as `rnnpipe train` does:
the same lock (one trainer per file, whichever face), stale temp files
removed under it, atomic saves (periodic with --save-every), and signals
that only stop training between iterations.
"""

from __future__ import annotations

import builtins
import keyword
import math
import os
import signal
import sys
from dataclasses import replace

try:
    from IPython.core.error import UsageError
    from IPython.core.magic import Magics, line_cell_magic, line_magic, magics_class
    from IPython.core.magic_arguments import argument, magic_arguments
    from IPython.display import display
except ImportError as e:
    # IPython is an extra: the core and the CLI install without it
    raise ModuleNotFoundError(
        f"rnnpipe_magic needs IPython ({e}); install it with: pip install 'rnnpipe[notebook]'", name="IPython"
    ) from e

from rnnpipe import options, session, training
from rnnpipe.errors import SettingError, Unavailable
from rnnpipe.reader import lone_surrogate

from . import parsing, store, views
from .views import TrainResult  # noqa: F401  (what `%%charrnn_train -o VAR` stores, by its name here too)

REPORT_EVERY = 0.1  # seconds between progress reports kept for the loss curve


@magics_class
class CharRNNMagics(Magics):
    """Train and sample rnnpipe models from a notebook."""

    def __init__(self, shell):
        super().__init__(shell)
        self.models = {}  # ("file", absolute path) or ("name", name) -> _Entry
        self._shown = 0  # pages shown by %charrnn_show

    # -- finding models --------------------------------------------------

    def _text(self, args, cell, magic):
        """The text a cell magic works on: the cell's body, or for the line
        magic the str variable --text names."""
        if args.text is not None:
            if cell and cell.strip():
                raise UsageError("give the text in the cell body or with --text, not both")
            if args.text not in self.shell.user_ns:
                raise UsageError(f"--text: no variable {args.text!r} in the notebook")
            text = self.shell.user_ns[args.text]
            if not isinstance(text, str):
                raise UsageError(f"--text: {args.text} is a {type(text).__name__}, not a str")
        elif cell is None:
            raise UsageError(f"%{magic} needs --text VAR; or put the text in the body of a %%{magic} cell")
        else:
            text = cell
        bad = lone_surrogate(text)
        if bad is not None:
            raise UsageError(bad)
        return text

    def _check_output(self, var):
        if var is None:
            return
        if not var.isidentifier() or keyword.iskeyword(var):  # None, True and False are keywords too
            raise UsageError(f"-o needs a variable name, not {var!r}")
        # storing over one of these breaks the notebook itself: get_ipython, In, Out, exit, print, __name__
        ipython = set(getattr(self.shell, "user_ns_hidden", ()))
        if var.startswith("__") and var.endswith("__") or var in ipython or hasattr(builtins, var):
            raise UsageError(f"-o {var} would replace a name the notebook or Python needs; choose another name")

    # -- training ----------------------------------------------------------

    @magic_arguments(name="%charrnn_train")
    @parsing.model_option("model file (msgpack): read if it exists, written after training (and every --save-every)")
    @parsing.name_option
    @argument(
        "--text",
        metavar="VAR",
        help="train on the string in the notebook variable VAR instead of the cell body",
    )
    @argument(
        "-o",
        dest="output",
        metavar="VAR",
        help="store the run's TrainResult in VAR: .model, .bits_per_char, .heldout_bits, .final and .history "
        "(every rnnpipe.Progress reported)",
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
        self._check_output(args.output)
        text = self._text(args, cell, "charrnn_train")
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
                s.open(options.config_changes(args))
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

    # -- sampling ----------------------------------------------------------

    @magic_arguments()
    @parsing.model_option("model file to sample from")
    @parsing.name_option
    @argument(
        "-o",
        dest="output",
        metavar="VAR",
        help="also store the printed text in VAR (the prime included, unless --no-echo-prime)",
    )
    @parsing.group("sampling", options.SAMPLE)
    @parsing.group("engine", options.ENGINE)
    @line_magic
    def charrnn_sample(self, line):
        """Print text generated by a model, one character at a time.

        The prime, if any, is printed first (not with --no-echo-prime), then
        the generated characters. -n 0 generates until the kernel is
        interrupted.

        The line is split as a shell splits it: --prime "KING HENRY:" or
        --prime 'KING HENRY:'. IPython expands $var and {expression} first,
        so --prime "$who" primes with a variable's text; $$ is a plain $.
        --prime-file reads a prime from a file (a notebook has no stdin, so
        not -). --beam, --lines and --until work as on the command line.
        """
        from rnnpipe.errors import SettingError
        from rnnpipe.sampling import pieces

        args = parsing.parse(self.charrnn_sample, line)
        self._check_output(args.output)
        try:
            sample = options.sample_options(args)  # the command line's rules and words
            options.check_engine(args)
        except SettingError as e:
            raise UsageError(e.flag(options.FLAGS)) from None
        except ValueError as e:
            raise UsageError(str(e)) from None
        if args.prime_file == "-":
            raise UsageError('--prime-file -: a notebook has no stdin to read; use --prime "$variable" or a file')
        if args.prime_file is not None:
            sample = replace(sample, prime_file=os.path.expanduser(args.prime_file))
        model = _use_engine(store.find(self.models, args, create=False).model, args)

        def skipped(chars):
            # the command line's words: the prime is still printed as written
            print("warning: left out of the prime, never seen by the model: " + " ".join(repr(c) for c in chars),
                  file=sys.stderr)  # fmt: skip

        try:
            text = pieces(model, sample, skipped=skipped)  # bad primes and untrained models fail here
        except SettingError as e:  # the prime file
            raise UsageError(e.flag(options.FLAGS)) from None
        except ValueError as e:
            raise UsageError(str(e)) from None
        written = []
        try:
            for piece in text:
                written.append(piece)
                sys.stdout.write(piece)
                sys.stdout.flush()
        except KeyboardInterrupt:
            pass  # sampling changes nothing: stopping anywhere is fine
        sys.stdout.write("\n")
        sys.stdout.flush()
        if args.output:
            self.shell.user_ns[args.output] = "".join(written)

    # -- pictures ------------------------------------------------------------

    @magic_arguments(name="%charrnn_show")
    @parsing.model_option("model file to read the text with")
    @parsing.name_option
    @argument("--text", metavar="VAR", help="show the string in the notebook variable VAR instead of the cell body")
    @parsing.group("colour", options.SHOW)
    @line_cell_magic
    def charrnn_show(self, line, cell=None):
        """Show a text coloured by how surprised the model was at each
        character (or, with --neuron K, by unit K's activation), inline, as
        `rnnpipe show` draws it: hover over a character (or Tab to the text
        and use the arrow keys) for its probability and the model's top five
        guesses. As a cell magic, %%charrnn_show shows the cell's text; as a
        line magic, the string named by --text.
        """
        from IPython.display import HTML

        from rnnpipe.errors import SettingError
        from rnnpipe.pages import show
        from rnnpipe.pages.trace import check_unit, trace

        args = parsing.parse(self.charrnn_show, line)
        text = self._text(args, cell, "charrnn_show")
        if not text:
            raise UsageError("nothing to show: the text is empty")
        entry = store.find(self.models, args, create=False)
        model = entry.model
        neuron = args.neuron is not None
        try:
            check_unit(model.config, args.layer, args.neuron)
        except SettingError as e:
            raise UsageError(e.flag(options.FLAGS)) from None
        note = None
        if len(text) > show.MAX_CHARS:
            note = (
                f"The text is longer than {show.MAX_CHARS:,} characters: this page shows its first {show.MAX_CHARS:,}."
            )
            print(note, file=sys.stderr)
            text = text[: show.MAX_CHARS]
        try:
            tr = trace(model.config, model.vocab, model.params, text, layers=[args.layer] if neuron else [])
        except ValueError as e:
            raise UsageError(str(e)) from None
        self._shown += 1  # two pages in one notebook need two ids
        page = show.fragment(tr, model.vocab, model_label=show.model_label(model, entry.label),
                             layer=args.layer if neuron else None, unit=args.neuron, note=note,
                             uid=f"{os.getpid()}-{self._shown}")  # fmt: skip
        display(HTML(page))


def _use_engine(model, args):
    """The model with --engine and --device applied (UsageError without torch, as the command line's one line)."""
    try:
        return model.use(args.engine, args.device)
    except Unavailable as e:
        raise UsageError(str(e)) from None


def load_ipython_extension(ipython):
    from . import score

    ipython.register_magics(CharRNNMagics)
    score.register(ipython)  # %charrnn_score, which finds its models in CharRNNMagics' cache


def unload_ipython_extension(ipython):
    magics = ipython.magics_manager.magics
    magics["cell"].pop("charrnn_train", None)
    magics["line"].pop("charrnn_train", None)
    magics["line"].pop("charrnn_sample", None)
    magics["cell"].pop("charrnn_show", None)
    magics["line"].pop("charrnn_show", None)
    ipython.magics_manager.registry.pop(CharRNNMagics.__name__, None)
    from . import score

    score.unregister(ipython)
