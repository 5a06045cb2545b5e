"""IPython magics for rnnpipe: ``%%charrnn_train``, ``%charrnn_sample`` and ``%%charrnn_show``.

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

import math
import os
import shlex
import signal
import sys
import time
from dataclasses import dataclass, field, replace

try:
    from IPython.core.error import UsageError
    from IPython.core.magic import Magics, line_cell_magic, line_magic, magics_class
    from IPython.core.magic_arguments import argument, argument_group, magic_arguments
    from IPython.display import Image, Pretty, display
except ImportError as e:
    # IPython is an extra: the core and the CLI install without it
    raise ModuleNotFoundError(
        f"rnnpipe_magic needs IPython ({e}); install it with: pip install 'rnnpipe[notebook]'", name="IPython"
    ) from e

from rnnpipe import options, session, training

DEFAULT_NAME = "default"
UPDATES_PER_SEC = 4  # most in-place updates of the progress line per second
REPORT_EVERY = 0.1  # seconds between progress reports kept for the loss curve


def _options(title, table):
    """Decorators adding a group of options from rnnpipe.options to a magic."""
    decorators = [argument_group(title)] + [argument(*flags, **kwargs) for flags, kwargs in table]

    def apply(func):
        for deco in reversed(decorators):
            func = deco(func)
        return func

    return apply


def _parse(magic, line):
    """The magic's options from its line, split as a POSIX shell splits it.

    IPython's parse_argstring keeps quotes in values ('--prime "KING HENRY:"'
    would prime with the quotes), so a path or a prime with a space could not
    be written at all."""
    try:
        argv = shlex.split(line)
    except ValueError as e:  # "No closing quotation", "No escaped character"
        raise UsageError(f"{str(e).lower()} in the options: {line.strip()}") from None
    return magic.parser.parse_args(argv)  # MagicArgumentParser turns errors into UsageError


def _model_option(help):
    flags, kwargs = options.MODEL
    return argument(*flags, **{**kwargs, "help": help})


def _name_option(func):
    return argument(
        "--name",
        metavar="NAME",
        help=f"keep the model in this session's memory under NAME, without a file (default {DEFAULT_NAME!r})",
    )(func)


@dataclass
class _Entry:
    """A model held between cells."""

    model: object
    label: str  # how messages name it
    path: str | None = None
    stamp: tuple | None = None  # the file's (mtime, size, inode) when last read or written
    saved_at: int | None = None  # the iteration the file holds, when it holds this model
    curve: list = field(default_factory=list)  # (iteration, smooth bits, held-out bits) over this session


@dataclass(repr=False)
class TrainResult:
    """What `%%charrnn_train -o VAR` stores: one run of training.

    model: the rnnpipe.Model, trained (the same object later cells go on with)
    final: the last rnnpipe.Progress (kind "end"; .stopped says why)
    history: every rnnpipe.Progress of the run, samples and held-out scores included
    saved: the model file written, or None for a model kept in memory
    """

    model: object
    final: object
    history: list
    saved: str | None = None

    @property
    def bits_per_char(self):
        """The smoothed training loss at the end, in bits per character."""
        return self.final.smooth_bits

    @property
    def heldout_bits(self):
        """Bits per character on the held-out text (--valid-fraction), else None."""
        return self.final.valid_bits

    @property
    def iterations(self):
        return self.final.iteration

    @property
    def stopped(self):
        return self.final.stopped

    def __repr__(self):
        f = self.final
        held = "" if f.valid_bits is None else f", held out {f.valid_bits:.3f}"
        where = f"saved to {self.saved}" if self.saved else "in memory"
        return (
            f"<TrainResult: {f.stopped} at iteration {f.iteration:,}; {self.bits_per_char:.3f} bits/char{held};"
            f" {f.chars:,} chars in {f.elapsed:.1f} s; {len(self.history)} reports; {where}>"
        )


def _stamp(path):
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return None
    return (st.st_mtime_ns, st.st_size, st.st_ino)


def _status(p):
    """One line about a training run, from an rnnpipe.Progress."""
    parts = [f"iteration {p.iteration:,}"]
    parts.append(f"{p.chars:,} of {p.total:,} chars" if p.total else f"{p.chars:,} chars")
    if p.epoch > 1:
        parts.append(f"pass {p.epoch}")
    if p.done is not None:  # toward whichever of the text's end and --max-time comes first
        parts.append(f"{100 * p.done:.0f}%")
    parts.append(f"{p.chars_per_sec:,.0f} chars/s")
    if not math.isnan(p.loss_bits):  # NaN before the first update
        parts.append(f"loss {p.loss_bits:.3f} bits/char (smooth {p.smooth_bits:.3f})")
    if p.valid_bits is not None:
        parts.append(f"held out {p.valid_bits:.3f}")
    parts.append(f"{p.elapsed:.1f} of {p.max_time:g} s" if p.max_time else f"{p.elapsed:.1f} s")
    return " · ".join(parts)


def _sparkline(values, width=48):
    if not values:
        return ""
    if len(values) > width:
        values = [values[i * len(values) // width] for i in range(width - 1)] + [values[-1]]
    lo, hi = min(values), max(values)
    bars = "▁▂▃▄▅▆▇█"
    return "".join(bars[0 if hi == lo else round((v - lo) / (hi - lo) * (len(bars) - 1))] for v in values)


def _plot(entry):
    """The loss curve as PNG bytes, or None without matplotlib."""
    try:
        import matplotlib  # noqa: F401  (an optional extra: pip install 'rnnpipe[plot]')
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError:
        return None
    import io

    fig = Figure(figsize=(6.4, 2.6), dpi=80)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    it = [c[0] for c in entry.curve]
    ax.plot(it, [c[1] for c in entry.curve], label="training (smoothed)")
    held = [(c[0], c[2]) for c in entry.curve if c[2] is not None]
    if held:
        ax.plot([h[0] for h in held], [h[1] for h in held], "o-", ms=3, label="held out")
    ax.set_xlabel("iteration")
    ax.set_ylabel("bits per character")
    ax.set_title(entry.label)
    ax.grid(alpha=0.3)
    ax.legend(loc="upper right")
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return buf.getvalue()


class _View:
    """Shows a run in the notebook: one line updated in place (throttled),
    samples as they arrive. Keeps every report for the curve and for -o."""

    def __init__(self, entry):
        self.entry = entry
        self.reports = []
        self.handle = None
        self.last_update = 0.0

    def __call__(self, p):
        self.reports.append(p)
        if p.kind == "note":  # something to tell: a continued run, a rollback
            print(p.note)
            return
        if p.kind != "sample":
            held_out = p.valid_bits if p.kind in ("valid", "end") else None  # fresh measurements only
            self.entry.curve.append((p.iteration, p.smooth_bits, held_out))
        now = time.monotonic()
        if self.handle is None:
            self.handle = display(Pretty(_status(p)), display_id=True)
            self.last_update = now
        elif p.kind in ("valid", "end") or now - self.last_update >= 1 / UPDATES_PER_SEC:
            self.handle.update(Pretty(_status(p)))
            self.last_update = now
        if p.kind == "sample":
            head = f"iteration {p.iteration:,}, smooth loss {p.smooth_bits:.3f} bits/char"
            display(Pretty(f"{head}\n----\n{p.sample}\n----"))

    def finish(self, outcome):
        """The run's last line, the one the command line prints, and its loss curve."""
        if self.handle is None:
            print(outcome.summary)
            return
        self.handle.update(Pretty(outcome.summary))
        png = _plot(self.entry)
        if png is not None:
            display(Image(data=png, format="png"))
        else:
            bits = [c[1] for c in self.entry.curve]
            first, last = self.entry.curve[0][0], self.entry.curve[-1][0]
            display(
                Pretty(
                    f"smooth loss, iterations {first:,} to {last:,}: {bits[0]:.3f} {_sparkline(bits)} {bits[-1]:.3f}"
                    " bits/char (pip install matplotlib for a plot)"
                )
            )


@magics_class
class CharRNNMagics(Magics):
    """Train and sample rnnpipe models from a notebook."""

    def __init__(self, shell):
        super().__init__(shell)
        self.models = {}  # ("file", absolute path) or ("name", name) -> _Entry
        self._shown = 0  # pages shown by %charrnn_show

    # -- finding models --------------------------------------------------

    def _entry(self, args, create):
        """The cached entry for -m/--name, read again if its file changed;
        None when there is none and create is true."""
        from rnnpipe import Model, ModelFormatError

        if args.model and args.name:
            raise UsageError("give -m FILE or --name NAME, not both")
        if not args.model:
            name = args.name or DEFAULT_NAME
            entry = self.models.get(("name", name))
            if entry is None and not create:
                raise UsageError(
                    f"no model named {name!r} in this session;"
                    f" train one with %%charrnn_train --name {shlex.quote(name)}"
                )
            return entry
        path = os.path.abspath(os.path.expanduser(args.model))
        key, stamp = ("file", path), _stamp(path)
        entry = self.models.get(key)
        if stamp is None:  # the file is the truth: gone means start afresh
            self.models.pop(key, None)
            if not create:
                holder = session.TrainLock(path).holder()
                if holder is not None:
                    raise UsageError(
                        f"no model file {args.model} yet: {holder} is creating it and saves it when it ends"
                        " (or every --save-every seconds)"
                    )
                raise UsageError(
                    f"no model file {args.model}; train one with %%charrnn_train -m {shlex.quote(args.model)}"
                )
            self._check_folder(args)
            return None
        if entry is None or entry.stamp != stamp:
            try:
                model = Model.load(path)
            except ModelFormatError as e:
                raise UsageError(f"{args.model}: {e}") from None
            except OSError as e:
                raise UsageError(f"cannot read {args.model}: {e.strerror}") from None
            entry = self.models[key] = _Entry(model, args.model, path, stamp, saved_at=model.iterations)
        return entry

    @staticmethod
    def _check_folder(args):
        """A new model file must have a folder to be saved in: say so before any training."""
        folder = os.path.dirname(os.path.abspath(os.path.expanduser(args.model)))
        if not os.path.isdir(folder):
            raise UsageError(f"cannot save {args.model}: no folder {folder}")

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
            return text
        if cell is None:
            raise UsageError(f"%{magic} needs --text VAR; or put the text in the body of a %%{magic} cell")
        return cell

    @staticmethod
    def _check_output(var):
        if var is not None and not var.isidentifier():
            raise UsageError(f"-o needs a variable name, not {var!r}")

    # -- training ----------------------------------------------------------

    @magic_arguments(name="%charrnn_train")
    @_model_option("model file (msgpack): read if it exists, written after training (and every --save-every)")
    @_name_option
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
    @_options("architecture (fixed once a model exists)", options.ARCHITECTURE)
    @_options("hyperparameters (may change from run to run)", options.HYPER)
    @_options("run", options.RUN)
    @_options("engine", options.ENGINE)
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
        and again until the time is up.

        -o VAR stores a TrainResult: VAR.model is the trained rnnpipe.Model,
        VAR.bits_per_char the final smoothed training loss and
        VAR.heldout_bits the held-out loss (with --valid-fraction), both in
        bits per character; VAR.final is the last rnnpipe.Progress and
        VAR.history every one reported, for a loss curve of your own.

        With -m the run holds the model's lock, the one `rnnpipe train` takes
        (MODEL.lock beside it), from before the file is read to after the
        last save: a second run on the same file, in a notebook or on the
        command line, is refused at once, naming this one's pid, and this one
        is refused while another runs. --save-every also saves during the
        run, so a killed kernel loses at most that much. A kernel told to
        terminate (SIGTERM) saves, then ends.
        """
        args = _parse(self.charrnn_train, line)
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
        finally:
            # a kernel asked to end (SIGTERM) while training: the model is saved
            # and the lock released, so now it ends as it was asked to
            interrupt.pass_on(signal.SIGTERM)

    def _train(self, args, text, opts, s):
        """Train through the training.Session s (its lock held): this face
        only finds the model and shows the run."""
        entry = self._entry(args, create=True)  # read under the lock: the file as it is now
        label = args.model or (args.name or DEFAULT_NAME)
        try:
            if entry is None:
                s.open(options.config_changes(args))
            else:
                s.open(options.config_changes(args), entry.model, saved_at=entry.saved_at)
        except ValueError as e:
            raise UsageError(str(e)) from None
        if entry is None:
            entry = _Entry(s.model, label, os.path.abspath(s.path) if s.path else None)
            print(f"new model {label}: {_describe(s.model)}")
        else:
            print(f"continuing {entry.label} from iteration {s.model.iterations:,}: {_describe(s.model)}")
        _use_engine(s.model, args)
        view = _View(entry)
        entry.curve.append((s.model.iterations, s.model.smooth_loss / math.log(2), None))
        try:
            outcome = s.train(text, opts, callback=view, report_every=REPORT_EVERY)
        finally:
            if s.path is not None:
                entry.stamp, entry.saved_at = _stamp(entry.path), s.saved_at
            if s.existed or s.saved_at is not None or s.path is None and entry.model.iterations:
                self.models[("file", entry.path) if entry.path else ("name", entry.label)] = entry
        view.finish(outcome)
        if args.output and outcome.final is not None:
            saved = entry.label if outcome.saved else None
            self.shell.user_ns[args.output] = TrainResult(entry.model, outcome.final, view.reports, saved)

    # -- sampling ----------------------------------------------------------

    @magic_arguments()
    @_model_option("model file to sample from")
    @_name_option
    @argument(
        "-o",
        dest="output",
        metavar="VAR",
        help="also store the printed text in VAR (the prime included, unless --no-echo-prime)",
    )
    @_options("sampling", options.SAMPLE)
    @_options("engine", options.ENGINE)
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

        args = _parse(self.charrnn_sample, line)
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
        model = _use_engine(self._entry(args, create=False).model, args)

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
    @_model_option("model file to read the text with")
    @_name_option
    @argument("--text", metavar="VAR", help="show the string in the notebook variable VAR instead of the cell body")
    @_options("colour", options.SHOW)
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

        from rnnpipe import show
        from rnnpipe.errors import SettingError
        from rnnpipe.trace import check_unit, trace

        args = _parse(self.charrnn_show, line)
        text = self._text(args, cell, "charrnn_show")
        if not text:
            raise UsageError("nothing to show: the text is empty")
        entry = self._entry(args, create=False)
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
    from rnnpipe.engine import Unavailable

    try:
        return model.use(args.engine, args.device)
    except Unavailable as e:
        raise UsageError(str(e)) from None


def _describe(model):
    c = model.config
    return (
        f"{c.cell} cell, {c.layers} × {c.hidden} hidden, {model.num_params:,} parameters, {c.optimizer} lr {c.lr:g},"
        f" {c.batch_size} × {c.seq_length} characters per iteration"
    )


def load_ipython_extension(ipython):
    ipython.register_magics(CharRNNMagics)


def unload_ipython_extension(ipython):
    magics = ipython.magics_manager.magics
    magics["cell"].pop("charrnn_train", None)
    magics["line"].pop("charrnn_train", None)
    magics["line"].pop("charrnn_sample", None)
    magics["cell"].pop("charrnn_show", None)
    magics["line"].pop("charrnn_show", None)
    ipython.magics_manager.registry.pop(CharRNNMagics.__name__, None)
