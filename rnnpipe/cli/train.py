"""`rnnpipe train`: read the text, hand it to a training.Session, show its progress."""

from __future__ import annotations

import math
import os

from .. import options, session
from ..errors import SettingError
from .common import Failure, UsageError, load_model, open_inputs, reading_terminal


def cmd_train(args, io):
    try:
        opts = options.train_options(args)
        options.check_engine(args)
    except ValueError as e:
        raise UsageError(str(e)) from None
    world = _world(args)
    try:
        return _train(args, io, opts, world)
    except SettingError as e:  # a setting the core refused once it knew the model (plan.check_memory)
        raise UsageError(e.flag(options.FLAGS)) from None
    finally:
        if world is not None:
            from ..engines import ddp

            ddp.stop()


def _world(args):
    """The ddp.World when torchrun started this process, else None."""
    from ..engines import launched

    if not launched():
        return None
    if args.engine != "torch":
        raise UsageError("under torchrun, train with --engine torch (the numpy engine trains in one process)")
    if not args.files or "-" in args.files:
        raise UsageError("under torchrun, give the text as FILEs, which every rank reads (not stdin)")
    try:
        from ..engines import torch_engine

        torch_engine()
    except RuntimeError as e:
        raise Failure(str(e)) from None
    from ..engines import ddp

    return ddp.start(args.device)


def _train(args, io, opts, world):
    """Train through a training.Session: this face only reads the text and shows progress."""
    from .. import training

    lead = world is None or world.rank == 0  # rank 0 alone holds the lock, saves and shows progress
    quiet = args.quiet or not lead
    # opened before signals are only recorded: opening a FIFO waits for a
    # writer, and Ctrl-C must still end that wait
    sources = open_inputs(args.files, io.stdin)
    try:
        # signals are only recorded from here to the end, lock release
        # included: a burst of Ctrl-C cannot cut short a save or the cleanup
        with session.Interrupt(hold=io.process) as interrupt:
            note = (lambda text: None) if quiet else io.note
            with training.Session(args.model, session.CLI, note=note, interrupt=interrupt, lead=lead) as s:
                # characters in one pass of FILEs (read to count them, once): for the new model and the schedule
                size = sum(src.chars() for src in sources) if all(src.rereadable for src in sources) else None
                _open(args, s, sources, world, opts, size)
                try:
                    return _run(args, io, s, sources, opts if lead else opts.replace(sample_every=0), world, quiet,
                                size)  # fmt: skip
                finally:
                    # the torch engine's DDP module must go before its process group (ddp.stop)
                    s.model.engine = None
    except session.SessionError as e:  # the lock is held, a save failed, training gave up: one line, exit 1
        raise Failure(str(e)) from None
    except RuntimeError as e:
        if world is None or lead:
            raise
        import torch.distributed as dist

        # a rank that failed (rank 0's folder or lock, say) closes its connections: say so
        # in one line; the failed rank's own message says why
        if isinstance(e, (dist.DistBackendError, dist.DistNetworkError)) or "by peer" in str(e):
            raise Failure(f"rank {world.rank}: another rank ended, so this one stops too") from None
        raise
    finally:
        for src in sources:
            src.close()


def _open(args, s, sources, world, opts, size):
    """Open the session's model: the file's (or a new one, for the run's
    opts and the text's size) with the command line's changes; under
    torchrun, rank 0's, sent to every rank."""
    from ..model import Model

    changes = options.config_changes(args)
    if world is not None:
        inputs = world.gather([src.describe() for src in sources])
        if any(i != inputs[0] for i in inputs):
            raise Failure("under torchrun every rank must read the same text: the FILEs differ between ranks")
        if world.rank != 0:
            data = world.broadcast(None)
            if data is None:
                raise Failure(f"rank {world.rank}: rank 0 could not start training (its message says why)")
            s.open({}, Model.from_bytes(data))
            return _use(s, args, world)
    try:
        model = load_model(args.model) if os.path.exists(args.model) else None
        try:
            s.open(changes, model, size=size, options=opts)
        except ValueError as e:
            raise UsageError(f"{args.model}: {e}" if model is not None else str(e)) from None
    except BaseException:
        if world is not None:
            world.broadcast(None)  # the other ranks stop too
        raise
    if world is not None:
        world.broadcast(s.model.to_bytes())
    return _use(s, args, world)


def _use(s, args, world):
    from ..engines import Unavailable

    try:
        return s.use(args.engine, args.device, world)
    except Unavailable as e:  # no torch, or no such device
        raise Failure(str(e)) from None


def _run(args, io, s, sources, opts, world, quiet, size):
    from ..progress import Display, isatty
    from ..reader import TextReader

    rereadable = all(src.rereadable for src in sources)
    spool = opts.spool(rereadable)  # stdin read once, kept in a temporary file for more passes
    # ranks must read the same blocks: their reader never stops early, and
    # training stops them all after the same chunk (train.Run.after_step)
    reader = TextReader(sources, stopped=s.interrupt if world is None else None, binary_ok=args.binary, spool=spool)
    text = reader.again if rereadable or spool else reader.blocks()
    typed = reading_terminal(sources)
    if typed and not quiet:
        io.note("reading text to train on from the terminal; end it with Ctrl-D (no progress is shown while you type)")
    # a bar or status lines would land in the middle of what is being typed
    display = Display(io.stderr, quiet=quiet, tty=isatty(io.stderr) and not typed, interval=math.inf if typed else 5.0)
    try:
        outcome = s.train(text, opts, callback=display, read=lambda: reader.chars,
                          inputs=[src.describe() for src in sources], size=size, report_every=display.report_every,
                          valid_every=10.0 if world is None or world.rank == 0 else math.inf)  # fmt: skip
    finally:
        display.close()
    if reader.replaced and not quiet:
        io.note(f"warning: {reader.replaced} invalid UTF-8 byte(s) in the input were replaced by U+FFFD")
    if not quiet:
        io.note(outcome.summary)
    return outcome.exit_status
