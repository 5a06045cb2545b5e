"""A sampling session, the same for every face: `rnnpipe sample` (rnnpipe.cli),
`%charrnn_sample` (rnnpipe_magic) and Model.sample all write what pieces()
yields, so they write the same text for the same model and options.

- SampleOptions: the options, checked when made (errors.SettingError, which
  each face words with its own flags).
- read_prime: the text of a prime file.
- pieces: the text to write, in pieces a face writes and flushes as they come.

This module imports neither numpy (the command line's help must start fast)
nor IPython (the core never needs it).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace

from .errors import SettingError

DEFAULT_N = 300  # characters written when neither n nor a stop condition is given
# without n, lines and until stop where they say, or after this many characters: a text they
# wait for may never come
MAX_CHARS = 100_000

# the largest --beam, stated beside the reason, as config.MOST does for the model's sizes
MOST = {"beam": (1024, "each character scores every beam's every next character")}

PIECE_CHARS = 4096  # the most characters held back from the reader at once
PIECE_SECONDS = 0.1  # and for at most this long, so a slow model's text still streams


def _whole(value):
    return isinstance(value, int) and not isinstance(value, bool)


@dataclass
class SampleOptions:
    """What to generate and how; see Model.stream. Checked when made."""

    n: int | None = None  # characters to generate, 0 for no end; None: DEFAULT_N, or with lines or until MAX_CHARS
    temperature: float = 1.0  # below 1 safer, above 1 wilder; 0 takes the likeliest character
    top_k: int | None = None  # sample only among the top_k likeliest characters
    seed: int | None = None  # the same seed and model give the same text on any machine
    prime: str = ""  # text the model reads before it generates
    skip_unknown: bool = False  # leave out of the prime the characters the model has never seen, instead of refusing
    echo_prime: bool = True  # write the prime before the generated text, as typed (unknown characters included)
    beam: int | None = None  # search for the likeliest text with this many beams instead of sampling
    lines: int | None = None  # stop right after the lines-th newline generated
    until: str | None = None  # stop right after this text first appears in the generated text (not in the prime)
    prime_file: str | None = None  # read the prime from this UTF-8 file (- for stdin) instead of prime

    def __post_init__(self):
        from .sample import check  # numpy: only once sampling is asked for

        check(self.n if self.n is not None else 0, self.temperature, self.top_k, self.seed)
        if self.beam is not None and (not _whole(self.beam) or self.beam < 1):
            raise SettingError("beam", self.beam, "{name} must be at least 1, not {value}")
        if self.beam is not None and self.beam > MOST["beam"][0]:  # before any work: 10^6 beams took 3.8 GB
            most, why = MOST["beam"]
            raise SettingError("beam", self.beam, f"{{name}} must be at most {most:,} ({why}), not {{value}}")
        if self.beam is not None and (self.temperature != 1.0 or self.top_k is not None):
            raise SettingError("beam", self.beam, "{name} searches for the likeliest text: it takes no {temperature} "
                               "or {top_k}", others=("temperature", "top_k"))  # fmt: skip
        if self.lines is not None and (not _whole(self.lines) or self.lines < 1):
            raise SettingError("lines", self.lines, "{name} must be at least 1, not {value}")
        if self.until is not None and not isinstance(self.until, str):
            raise SettingError("until", self.until, "{name} must be a text, not {value}")
        if self.until is not None and not self.until:
            raise SettingError("until", self.until, "{name} needs a text to stop after, not an empty one")
        if not isinstance(self.prime, str):
            raise SettingError("prime", self.prime, "{name} must be a text, not {value}")
        if self.prime_file is not None and self.prime:
            raise SettingError("prime_file", self.prime_file, "give {prime} or {name}, not both", others=("prime",))

    def length(self):
        """The n to generate: n when given; else MAX_CHARS with a stop
        condition (which ends the text sooner), DEFAULT_N without."""
        if self.n is not None:
            return self.n
        # read when called, not when defined, so that a test can lower it
        return MAX_CHARS if self.lines is not None or self.until is not None else DEFAULT_N


def _literal(text):
    """text inside a SettingError template, braces and all."""
    return text.replace("{", "{{").replace("}", "}}")


MAX_PRIME = 1 << 20  # bytes a prime file may hold


def read_prime(path, stdin=None):
    """The text of a prime file (stdin for -), or SettingError("prime_file")
    saying what is wrong with it."""
    shown = _literal(path)
    try:
        if path == "-":  # read one byte past the limit: enough to know it is over (an endless /dev/zero too)
            data = stdin.buffer.read(MAX_PRIME + 1) if hasattr(stdin, "buffer") else stdin.read(MAX_PRIME + 1)
        else:
            with open(path, "rb") as f:
                data = f.read(MAX_PRIME + 1)
    except FileNotFoundError:
        raise SettingError("prime_file", path, f"{{name}} {shown}: no such file") from None
    except IsADirectoryError:
        raise SettingError("prime_file", path, f"{{name}} {shown}: is a directory") from None
    except OSError as e:
        raise SettingError("prime_file", path, f"{{name}} {shown}: cannot read it: {_literal(e.strerror)}") from None
    if len(data) > MAX_PRIME:
        where = "stdin" if path == "-" else shown
        raise SettingError("prime_file", path, f"{{name}} {where}: longer than {MAX_PRIME:,} bytes; a prime that "
                           "long adds nothing the model can use (give its end)")  # fmt: skip
    if isinstance(data, str):  # a text stream (a test's StringIO): already decoded
        return data
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        where = "stdin" if path == "-" else shown
        raise SettingError("prime_file", path, f"{{name}} {where}: not UTF-8 text (byte 0x{data[e.start]:02x} at "
                           f"offset {e.start})") from None  # fmt: skip


def pieces(model, options, *, stdin=None, skipped=None, clock=time.monotonic):
    """The text to write for options, in pieces: the prime (when echoed)
    with the first generated character, then the rest cut after each
    newline, every PIECE_CHARS characters and every PIECE_SECONDS, so that
    a reader such as less shows it as it comes.

    Everything that can refuse the request fails here, before a piece is
    made: the prime file (read from stdin for -), a prime with characters the
    model has never seen (ValueError), an untrained model. With
    skip_unknown, skipped(characters) is called with those left out of the
    prime (in the order vocab.missing gives), for the face to warn in its
    own way. On KeyboardInterrupt the characters generated before it are
    still yielded, then it is raised again. clock: time.monotonic, or a
    test's."""
    if options.prime_file is not None:
        options = replace(options, prime=read_prime(options.prime_file, stdin), prime_file=None)
    o = options
    chars = model.stream(o.length(), o.prime, o.temperature, o.top_k, o.seed, o.skip_unknown, beam=o.beam,
                         lines=o.lines, until=o.until)  # fmt: skip
    first = next(chars, "")  # a bad prime fails here
    unknown = model.vocab.missing(o.prime) if o.skip_unknown else []
    if unknown and skipped is not None:
        skipped(unknown)
    return _cut((o.prime if o.echo_prime else "") + first, chars, clock)


def _cut(first, chars, clock):
    if first:
        yield first
    pending = []
    last = clock()
    try:
        for c in chars:
            pending.append(c)
            if c == "\n" or len(pending) >= PIECE_CHARS or clock() - last >= PIECE_SECONDS:
                yield "".join(pending)
                pending.clear()
                last = clock()
    except KeyboardInterrupt:
        if pending:
            yield "".join(pending)
        raise
    if pending:
        yield "".join(pending)
