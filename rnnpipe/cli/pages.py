"""`rnnpipe show` and `rnnpipe neurons`: pages of a text as the model sees it."""

from __future__ import annotations

import os

from .. import options
from .common import Failure, UsageError, check_output, load_model, open_inputs, reading_terminal, write_output


def read_text(path, stdin, limit, io):
    """The text of one input (stdin for -), its first `limit` characters at
    most; (text, whether it was cut). Stops reading at the limit, so an
    endless pipe ends too. Invalid UTF-8 becomes U+FFFD, with a warning."""
    from ..reader import TextReader

    sources = open_inputs([path], stdin)
    try:
        if reading_terminal(sources):
            io.note("reading the text from the terminal; end it with Ctrl-D")
        reader = TextReader(sources)
        pieces, have = [], 0
        for piece in reader.blocks():
            if piece:
                pieces.append(piece)
                have += len(piece)
                if have > limit:
                    break
    finally:
        for s in sources:
            s.close()
    if reader.replaced:
        io.note(f"warning: {reader.replaced} invalid UTF-8 byte(s) in the input were replaced by U+FFFD")
    text = "".join(pieces)
    if not text:
        raise Failure("empty input: nothing to show")
    return text[:limit], len(text) > limit


def _trace(model, text, layers, threads):
    from ..pages.trace import trace

    with options.blas_threads(threads):
        try:
            return trace(model.config, model.vocab, model.params, text, layers=layers)
        except ValueError as e:  # a model that has seen no text
            raise Failure(str(e)) from None


def _check_unit(model, args):
    from ..errors import SettingError
    from ..pages.trace import check_unit

    try:
        check_unit(model.config, args.layer, args.neuron)
    except SettingError as e:
        raise UsageError(e.flag(options.FLAGS)) from None


def _write_page(path, page, model_path):
    """Write a page whole or not at all (a reader never sees half of one), never over the model."""
    write_output(path, page.encode("utf-8"), "page", model_path)


def cmd_show(args, io):
    from ..pages import show

    if args.output is not None:
        check_output(args.output, args.model)  # before any work
    model = load_model(args.model)
    if args.neuron is not None or args.layer != 0:
        _check_unit(model, args)
    text, cut = read_text(args.file, io.stdin, show.MAX_CHARS, io)
    note = None
    if cut:
        note = f"The text is longer than {show.MAX_CHARS:,} characters: this page shows its first {show.MAX_CHARS:,}."
        io.note(f"note: {note[0].lower()}{note[1:]}")
    neuron = args.neuron is not None
    tr = _trace(model, text, [args.layer] if neuron else [], 1)
    label = show.model_label(model, os.path.basename(args.model))
    page = show.page(tr, model.vocab, model_label=label, layer=args.layer if neuron else None, unit=args.neuron,
                     note=note)  # fmt: skip
    if args.output is None:
        io.stdout.write(page)
        io.stdout.flush()
        return 0
    _write_page(args.output, page, args.model)
    bpc = f"{tr.bits_per_char:.3f} bits/char" if tr.chars else "nothing predicted"
    io.note(f"wrote {args.output}: {len(text):,} characters, {bpc}")
    return 0


def cmd_neurons(args, io):
    from ..pages import features, show

    if args.top < 1:
        raise UsageError(f"--top must be at least 1, not {args.top}")
    model = load_model(args.model)
    text, cut = read_text(args.file, io.stdin, features.MAX_CHARS, io)
    if cut:
        io.note(f"note: the text is longer than {features.MAX_CHARS:,} characters: ranking on its first "
                f"{features.MAX_CHARS:,}")  # fmt: skip
    tr = _trace(model, text, list(range(model.config.layers)), 1)
    rows, flat = features.rank(tr, args.top)
    for name in flat:
        io.note(f"feature {name} left out: {features.FEATURES[name]} does not vary in this text")
    if not rows:
        raise Failure("no feature varies in this text: nothing to rank (it needs at least two known characters)")
    lines = [f"{'unit':>6}  {'layer':>5}  {'feature':<11}  {'correlation':>11}  meaning"]
    for name, layer, unit, r in rows:
        lines.append(f"{unit:>6}  {layer:>5}  {name:<11}  {r:>+11.3f}  {features.FEATURES[name]}")
    io.stdout.write("\n".join(lines) + "\n")
    io.stdout.flush()
    if args.html:
        try:
            os.makedirs(args.html, exist_ok=True)
        except OSError as e:
            raise Failure(f"{args.html}: cannot make the folder: {e.strerror}") from None
        label = show.model_label(model, os.path.basename(args.model))
        for name, layer, unit, r in rows:
            note = f"Ranked by rnnpipe neurons: correlation {r:+.3f} with {name}, {features.FEATURES[name]}."
            path = os.path.join(args.html, f"{name}-layer{layer}-unit{unit}.html")
            _write_page(path, show.page(_cut_trace(tr, show.MAX_CHARS), model.vocab, model_label=label, layer=layer,
                                        unit=unit, note=note), args.model)  # fmt: skip
        io.note(f"wrote {len(rows)} page(s) into {args.html}")
    return 0


def _cut_trace(tr, limit):
    """The first `limit` characters of a trace: a page shows at most show.MAX_CHARS."""
    from ..pages.trace import Trace

    if len(tr.text) <= limit:
        return tr
    return Trace(tr.text[:limit], tr.known[:limit], tr.scored[:limit], tr.prob[:limit], tr.bits[:limit],
                 tr.top[:limit], tr.top_prob[:limit], {k: v[:limit] for k, v in tr.units.items()})  # fmt: skip
