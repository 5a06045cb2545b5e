"""`rnnpipe score`: each line's bits per character as it arrives, a grep for the unusual with --over,
and with --learn a training.Session that trains on each line once it is scored."""

from __future__ import annotations

import json
import math
import os

from .. import options, session
from .common import EXIT_FAILURE, EXIT_USAGE, Failure, UsageError, load_model, open_inputs, reading_terminal

LEARN_SAVE_EVERY = 60.0  # seconds between saves with --learn: a watcher runs for days and may be killed outright


def cmd_score(args, io):
    # with --over the exit status is grep's: 0 a line written, 1 none, 2 trouble of any kind (main() reads this)
    args.failure_status = EXIT_USAGE if args.over is not None else EXIT_FAILURE
    if args.over is not None and math.isnan(args.over):
        raise UsageError("--over needs a number of bits per character, not nan")
    if args.count and args.json:
        raise UsageError("give --json or -c, not both: -c writes only the count")
    if args.save_every is not None and not args.learn:
        raise UsageError("--save-every saves what --learn learns: give --learn too")
    out = Writer(args, io)
    if args.learn:
        status = _learn(args, io, out)
    else:
        status = _score(args, io, out)
    return out.end(status)


class Writer:
    """Writes each scored line as the options say, flushed at once, and counts what it wrote."""

    def __init__(self, args, io):
        self.io, self.json, self.over = io, args.json, args.over
        self.count_only, self.quiet = args.count, args.quiet
        self.written = 0
        self.warned_cut = False

    def __call__(self, line):
        """Write line if it is selected; True once -q has its answer (a line over X) and reading may stop."""
        bpc = line.bits_per_char
        if self.over is not None and not bpc > self.over:  # NaN, a line with nothing scored, is never over
            return False
        self.written += 1
        if self.quiet or self.count_only:
            return self.quiet
        if line.cut and not self.warned_cut:
            self.warned_cut = True
            self.io.note(f"line {line.number} has {line.length:,} characters: written cut after {len(line.text):,}")
        text = line.text[:-1] if line.text.endswith("\n") else line.text
        if self.json:
            record = {
                "line": line.number,
                "bits_per_char": None if math.isnan(bpc) else bpc,
                "bits": line.bits,
                "chars": line.chars,
                "unknown": line.unknown,
                "worst_pos": line.worst,
                "worst_char": None if line.worst is None or line.worst >= len(line.text) else line.text[line.worst],
                "worst_prob": line.worst_prob,
                "text": text,
            }
            self.io.stdout.write(json.dumps(record, ensure_ascii=False) + "\n")
        else:
            self.io.stdout.write(f"{bpc:.3f}\t{text}\n")
        self.io.stdout.flush()  # within a pipe too: the reader sees each line as it is scored
        return False

    def end(self, status):
        """The exit status: status when not 0 (interrupted), else grep's with --over."""
        if self.count_only and not self.quiet:
            print(self.written, file=self.io.stdout, flush=True)
        if status:
            return status
        return (0 if self.written else 1) if self.over is not None else 0


def _reader(args, io, sources, stopped=None):
    from ..reader import TextReader

    if reading_terminal(sources):
        io.note("reading lines to score from the terminal; end with Ctrl-D")
    return TextReader(sources, stopped=stopped)


def _score(args, io, out):
    from ..score import LineScorer

    scorer = LineScorer(load_model(args.model))
    sources = open_inputs(args.files, io.stdin)
    try:
        reader = _reader(args, io, sources)
        with options.blas_threads(args.threads):
            for piece in reader.blocks():
                for line in scorer.feed(piece or ""):
                    if out(line):
                        return 0  # -q: the answer is known, as grep -q stops at the first match
            last = scorer.finish()
            if last is not None:
                out(last)
    finally:
        for s in sources:
            s.close()
    _warn_replaced(args, io, reader)
    return 0


def _warn_replaced(args, io, reader):
    if reader.replaced and not args.quiet:
        io.note(f"warning: {reader.replaced} invalid UTF-8 byte(s) in the input were replaced by U+FFFD")


def _learn(args, io, out):
    """Score each line, then hand it to a training.Session, which trains, saves and locks as `rnnpipe train` does."""
    from .. import training
    from ..score import LineScorer
    from ..train import Options

    if not os.path.exists(args.model):
        load_model(args.model)  # says why there is none, before the lock is ours (which would name us as its creator)
    opts = Options(save_every=args.save_every or LEARN_SAVE_EVERY, threads=args.threads)
    note = (lambda text: None) if args.quiet else io.note
    sources = open_inputs(args.files, io.stdin)  # before signals are only recorded: opening a FIFO may wait
    try:
        with session.Interrupt(hold=io.process) as interrupt:
            with training.Session(args.model, session.CLI, note=note, interrupt=interrupt) as s:
                s.open({}, load_model(args.model))  # read under the lock: the file as it is now
                reader = _reader(args, io, sources, stopped=interrupt)
                scorer = LineScorer(s.model)
                gone = []  # the reader of stdout went away: what was learned is saved, then we end quietly

                def lines():
                    # each piece is scored, and its lines written, before training sees it
                    for piece in reader.blocks():
                        if piece is None:
                            yield None  # a silent pipe: training may act on what has come
                            continue
                        try:
                            for line in scorer.feed(piece):
                                out(line)
                        except BrokenPipeError:
                            gone.append(True)  # the piece was scored whole: it is learned, then the run ends
                        yield piece
                        if gone:
                            return
                    last = scorer.finish()
                    if last is not None:
                        try:
                            out(last)
                        except BrokenPipeError:
                            gone.append(True)

                def callback(p):
                    if p.kind == "note":
                        note(p.note)

                outcome = s.train(lines(), opts, callback=callback, read=lambda: reader.chars,
                                  inputs=[src.describe() for src in sources])  # fmt: skip
    except session.SessionError as e:  # the lock is held, a save failed, training gave up
        raise Failure(str(e)) from None
    finally:
        for src in sources:
            src.close()
    _warn_replaced(args, io, reader)
    note(outcome.summary)
    if gone:
        raise BrokenPipeError  # main() ends quietly, as without --learn
    return outcome.exit_status


def add_arguments(p):
    """score's options (build_parser registers the command)."""
    flags, kwargs = options.MODEL
    p.add_argument(*flags, required=True, **{**kwargs, "help": "model file to score with (and with --learn, to train)"})
    p.add_argument("files", nargs="*", metavar="FILE", help="text to score, line by line; stdin when none or -")
    p.add_argument("--over", type=float, metavar="X", help="lines above X bits/char only; exits as grep does")
    p.add_argument("-c", "--count", action="store_true", help="write only how many lines were selected")
    p.add_argument("-q", "--quiet", action="store_true", help="write nothing: the exit status says if a line was over")
    p.add_argument("--json", action="store_true", help="write JSON Lines instead, the most surprising character too")
    learn = p.add_argument_group("learning")
    learn.add_argument("--learn", action="store_true", help="train MODEL on each line after scoring it")
    learn.add_argument(
        "--save-every",
        type=float,
        metavar="SECONDS",
        help=f"with --learn, save the model this often (default {LEARN_SAVE_EVERY:g})",
    )
    options.add(p, [options.THREADS])
