"""`rnnpipe eval`: a text's bits per character under a model."""

from __future__ import annotations

import json

from .. import options
from .common import Failure, UsageError, load_model, open_inputs, reading_terminal, use_engine


def cmd_eval(args, io):
    try:
        options.check_engine(args)
    except ValueError as e:
        raise UsageError(str(e)) from None
    if args.threads < 1:  # as train refuses it (train.Options)
        raise UsageError(f"--threads must be at least 1, not {args.threads}")
    model = use_engine(load_model(args.model), args)
    sources = open_inputs(args.files, io.stdin)
    try:
        return _eval(args, io, model, sources)
    finally:
        for s in sources:
            s.close()


def _eval(args, io, model, sources):
    from ..reader import TextReader

    if reading_terminal(sources):
        io.note("reading text to score from the terminal; end it with Ctrl-D")
    reader = TextReader(sources)
    # the inputs are one text, scored as one stream whatever sizes the reads
    # come in: the scorer cuts it by character position (see evaluate.py)
    scorer = model.scorer()  # evaluate.TextScorer, or the torch engine's
    with options.blas_threads(args.threads):
        for piece in reader.blocks():
            if piece:
                scorer.feed(piece)
    try:
        ev = scorer.result()
    except ValueError:  # fewer than two known characters
        if reader.chars == 0:
            raise Failure("empty input: nothing to score") from None
        raise Failure(
            f"nothing to score: {reader.chars} character(s), {scorer.unknown} unknown to the model; "
            "scoring needs at least two characters the model knows"
        ) from None
    scored, unknown = ev.chars, ev.unknown
    result = {"model": args.model, **ev.to_dict(), "invalid_bytes": reader.replaced}
    if args.json:
        print(json.dumps(result), file=io.stdout)
    else:
        lines = [
            f"bits/char     {result['bits_per_char']:.4f}",
            f"nats/char     {result['nats_per_char']:.4f}",
            f"perplexity    {result['perplexity']:.4f}",
            f"scored        {scored} characters",
            f"unknown       {unknown} characters (not in the model's vocabulary: skipped, as if not there)",
        ]
        if reader.replaced:
            lines.append(f"invalid UTF-8 {reader.replaced} bytes (replaced by U+FFFD)")
        print("\n".join(lines), file=io.stdout)
    io.stdout.flush()
    return 0
