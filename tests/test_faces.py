"""The failure policy of rnnpipe.training.Session, the same under both faces
(issue 19): each failure is driven through the real `rnnpipe` executable and
through %%charrnn_train in a real IPython shell, with the same options, and
the model file must end up the same way under both:

- diverged: the file as it was before the run, byte for byte, though
  --save-every wrote it during the run; a new file is not created; the
  notebook's next cell goes on from the old model;
- vocabulary full (--max-vocab) after some updates: what was learned is saved;
- bad input: the file untouched (the command line refuses binary data, the
  notebook a --text that names no str);
- empty input: the file untouched, a pending (interrupted) run included, and
  a new model not created.

Where training is deterministic (the same text, options and starting file)
the two faces' files hold the same weights. Their `resume` may differ in
`inputs` (the command line reads a file, the notebook a string), so the
weights, iterations and vocabulary are compared, not the bytes.
"""

from __future__ import annotations

import os
import random
import re
import shlex
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from cli_util import TINY, info, run
from texts import SHAKESPEARE_FILE

from rnnpipe import Model

FACES = ("cli", "notebook")
SHAKESPEARE = SHAKESPEARE_FILE.read_text(encoding="utf-8")
TEXT = SHAKESPEARE[:5000]  # TINY trains on it in a fraction of a second
MORE = SHAKESPEARE[5000:7000]  # what the next run trains on, after a failed one

# A rate that makes this tiny model diverge on TEXT only after some updates
# (so --save-every has written the file), and again after each of the
# guard's four rollbacks: it then gives up. A new model diverges at iteration
# 31, one trained on TEXT at 156. (1e38 gives NaN at the first update, before
# any save; 1e30 is not caught a second time on a new model.) --restart: a
# fresh schedule, so the rate applies from the start of the run.
DIVERGE = ["--lr", "1e15", "--restart", "--save-every", "0.001"]

# Vocabulary full after some updates: a pass is cut into blocks of about a
# million characters (train.block_length) and the vocabulary is checked per
# block, so the new characters must come after the first block. A wider
# batch than TINY's trains that block in about a second.
WIDE = ["--hidden", "16", "--batch-size", "64", "--seq-length", "50"]
ALPHABET = "abcdefghij \n"
BLOCK = 64 * 50 * -(-(1 << 20) // (64 * 50))  # train.block_length for WIDE


@pytest.fixture(scope="module")
def big_alphabet_text():
    rng = random.Random(19)
    return "".join(rng.choices(ALPHABET, k=BLOCK + 10_000)) + "漢字かな" * 100


# -- a real IPython shell (as tests/test_session.py drives it) --------------------------


def get_ipython():
    from IPython.testing import globalipapp

    globalipapp.start_ipython()
    return globalipapp.get_ipython()


@pytest.fixture(scope="module")
def ip():
    pytest.importorskip("IPython")
    from IPython.utils.capture import capture_output

    shell = get_ipython()
    shell.run_line_magic("load_ext", "rnnpipe_magic")
    yield shell
    with capture_output():
        shell.run_line_magic("unload_ext", "rnnpipe_magic")


# -- one run, through either face -------------------------------------------------------


@dataclass
class Shown:
    """What a face showed for one training run, in the words both use."""

    error: str | None  # the one-line error (the command line's without "rnnpipe: error: "), or None
    notes: list  # the lines before the last: configuration changes, rollbacks
    last: str | None  # the run's last line (its summary) when it did not fail


def cli_train(path, args, text, how="file"):
    """`rnnpipe train -m path ARGS FILE` (how "file": text written to a file
    beside the model) or `< /dev/null` (how "stdin", text must be empty)."""
    files = []
    if how == "file":
        source = path.parent / "input.txt"
        source.write_bytes(text if isinstance(text, bytes) else text.encode("utf-8"))
        files = [source]
    else:
        assert how == "stdin" and text == ""
    r = run("train", "-m", path, *args, *files, timeout=120)  # stdin: /dev/null
    err = r.stderr.decode("utf-8")
    assert r.stdout == b"" and "Traceback" not in err, err
    # a status line every 5 s is the command line's own: a slow machine may print one
    lines = [line for line in err.splitlines() if not line.startswith("rnnpipe: iteration ")]
    assert all(line.startswith("rnnpipe: ") for line in lines), err
    *notes, last = (line.removeprefix("rnnpipe: ") for line in lines)
    if r.returncode == 0:
        return Shown(None, notes, last)
    assert r.returncode == 1 and last.startswith("error: "), err
    return Shown(last.removeprefix("error: "), notes, None)


def notebook_train(ip, path, args, text, how="var"):
    """%charrnn_train -m path ARGS --text VAR (how "var"), or the text as the
    body of a %%charrnn_train cell (how "cell"); how "missing": --text names no
    variable; a text that is not a str is put in VAR as it is."""
    from IPython.core.error import UsageError
    from IPython.utils.capture import capture_output

    line = " ".join(shlex.quote(str(a)) for a in ["-m", path, *args])
    ip.user_ns.pop("faces_text", None)
    if how == "cell":
        source = f"%%charrnn_train {line}\n{text}"
    else:
        if how == "var":
            ip.user_ns["faces_text"] = text
        else:
            assert how == "missing"
        source = f"%charrnn_train {line} --text faces_text"
    with capture_output() as cap:
        result = ip.run_cell(source)
    error = result.error_in_exec
    assert error is None or isinstance(error, UsageError), error
    lines = cap.stdout.splitlines()
    # the notebook says which model a cell trains (after any note on changing it); the command line does not
    which = [i for i, text in enumerate(lines) if text.startswith((f"new model {path}: ", f"continuing {path} from "))]
    if which:
        del lines[which[0]]
    if error is not None:
        message = str(error)
        assert "\n" not in message
        return Shown(message, lines, None)
    if displayed(cap):
        return Shown(None, lines, displayed(cap)[-1])
    *notes, last = lines
    return Shown(None, notes, last)


def displayed(cap):
    """The notebook's status line as it was updated in place: the summary replaces it at the end (when no
    status line was shown, the summary is printed instead)."""
    return [o.data["text/plain"] for o in cap.outputs if "display_id" in (o.transient or {})]


def train(face, ip, path, args, text, how=None):
    if face == "cli":
        return cli_train(path, args, text, how or "file")
    return notebook_train(ip, path, args, text, how or "var")


def files_beside(path):
    """What the model's folder holds, the input file aside: no lock or temp file left behind."""
    return sorted(name for name in os.listdir(path.parent) if name != "input.txt")


def same_weights(a, b):
    """Two model files hold the same model: weights, iterations, vocabulary, configuration."""
    ma, mb = Model.load(a), Model.load(b)
    assert ma.iterations == mb.iterations
    assert ma.vocab.chars == mb.vocab.chars
    assert ma.config == mb.config
    assert ma.params.keys() == mb.params.keys()
    for name in ma.params:
        assert np.array_equal(ma.params[name], mb.params[name]), name


# -- starting files ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def starts(tmp_path_factory):
    """The model files a run starts from, as bytes: "existing" (trained on
    TEXT, its run finished) and "pending" (its run interrupted by its time
    limit in the first of three passes); "new" is no file."""
    folder = tmp_path_factory.mktemp("starts")
    existing = folder / "existing.rnn"
    r = run("train", "-m", existing, *TINY, "-q", input=TEXT)
    assert r.returncode == 0, r.stderr
    pending = folder / "pending.rnn"
    r = run("train", "-m", pending, *TINY, "--epochs", "3", "--max-time", "0.1", "-q", SHAKESPEARE_FILE)
    assert r.returncode == 0, r.stderr
    resume = info(pending)["resume"]
    assert resume["interrupted"] and resume["epoch"] == 1 and info(pending)["iterations"] > 0, resume
    return {"new": None, "existing": existing.read_bytes(), "pending": pending.read_bytes()}


def model_at(folder, start, starts):
    """The model file a test trains, made as `start` says; (path, its bytes or None)."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "m.rnn"
    if starts[start] is not None:
        path.write_bytes(starts[start])
    return path, starts[start]


# -- diverged ------------------------------------------------------------------------------


@dataclass
class Diverged:
    path: Path
    before: bytes | None
    shown: Shown
    after: bytes | None  # the file right after the failed run (None: no file)
    listing: list
    next_run: Path  # a copy of the file after the next run, on MORE


@pytest.fixture(scope="module")
def diverged(ip, starts, tmp_path_factory):
    """One diverging run per (face, start), made once and shared by the tests below."""
    made = {}

    def get(face, start):
        if (face, start) not in made:
            folder = tmp_path_factory.mktemp(f"diverge-{face}-{start}")
            path, before = model_at(folder, start, starts)
            shown = train(face, ip, path, [*TINY, *DIVERGE], TEXT)
            after = path.read_bytes() if path.exists() else None
            listing = files_beside(path)
            # the next run on this face: the notebook's goes on from the model it holds in memory
            again = train(face, ip, path, TINY, MORE)  # no --lr: the rate must be the old model's too
            assert again.error is None, again
            next_run = folder / "next.rnn"
            next_run.write_bytes(path.read_bytes())
            made[face, start] = Diverged(path, before, shown, after, listing, next_run)
        return made[face, start]

    return get


@pytest.mark.parametrize("start", ["new", "existing"])
@pytest.mark.parametrize("face", FACES)
def test_diverged_leaves_the_file_as_it_was(face, start, diverged, tmp_path):
    d = diverged(face, start)
    assert d.shown.error is not None and d.shown.error.startswith("training diverged: "), d.shown
    # four rollbacks, the first after updates had been made (and saved every 0.001 s), then it gave up
    rollbacks = [n for n in d.shown.notes if "rolled back to iteration" in n]
    assert len(rollbacks) == 4, d.shown.notes
    first = int(re.match(r"training diverged at iteration (\d+) ", rollbacks[0]).group(1))
    assert first > 2
    if start == "new":
        assert d.shown.error.endswith(f"; {d.path} not created")
        assert d.after is None and d.listing == []
    else:
        # "put back": a periodic save had written the file during the run
        assert d.shown.error.endswith(f"; {d.path} put back as it was before this run")
        assert d.after == d.before and d.listing == ["m.rnn"]
    # the next run starts from the model as it was before the failed one: in the
    # notebook that is the model kept in memory, which must have been put back too
    reference = tmp_path / "reference.rnn"
    if d.before is not None:
        reference.write_bytes(d.before)
    more = tmp_path / "more.txt"  # a file, as both faces' text is: a pipe of unknown length trains at another rate
    more.write_text(MORE, encoding="utf-8")
    r = run("train", "-m", reference, *TINY, "-q", more)
    assert r.returncode == 0, r.stderr
    same_weights(d.next_run, reference)


@pytest.mark.parametrize("start", ["new", "existing"])
def test_both_faces_say_the_same_about_a_divergence(start, diverged):
    cli, notebook = diverged("cli", start), diverged("notebook", start)
    assert cli.path != notebook.path
    assert cli.shown.notes == notebook.shown.notes
    assert cli.shown.error.replace(str(cli.path), "M") == notebook.shown.error.replace(str(notebook.path), "M")
    same_weights(cli.next_run, notebook.next_run)


@pytest.mark.parametrize("how", ["diverged", "empty"])
def test_a_model_kept_in_memory_is_put_back_as_it_was(how, ip):
    """Without a file (--name) the notebook's model itself is put back, the
    configuration the failed cell changed included, as a file keeps it out."""
    from IPython.utils.capture import capture_output

    name = f"faces_{how}"
    with capture_output():
        ip.run_cell(f"%%charrnn_train --name {name} {' '.join(TINY)}\n{TEXT}").raise_error()
    entry = ip.magics_manager.registry["TrainMagics"].models["name", name]
    before = entry.model.to_bytes()
    ip.user_ns["faces_text"] = TEXT if how == "diverged" else ""
    with capture_output() as cap:
        result = ip.run_cell(f"%charrnn_train --name {name} --lr 1e15 --restart --text faces_text")
    if how == "diverged":
        assert str(result.error_in_exec).startswith("training diverged: ")
        assert str(result.error_in_exec).endswith("; the model is as it was before this run")
    else:
        assert result.error_in_exec is None
        last = (displayed(cap) or cap.stdout.splitlines())[-1]
        assert last == "empty input: nothing to train on; the model is as it was before this run"
    assert ip.magics_manager.registry["TrainMagics"].models["name", name] is entry
    assert entry.model.to_bytes() == before
    assert entry.model.config.lr == 0.01  # the next cell trains at the old rate, not at 1e15


# -- vocabulary full ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def vocabulary_full(ip, big_alphabet_text, tmp_path_factory):
    """One run per (face, start) on text whose new characters come after its first block."""
    base = tmp_path_factory.mktemp("vocab-base") / "existing.rnn"
    r = run("train", "-m", base, *WIDE, "-q", input=big_alphabet_text[:20_000])
    assert r.returncode == 0, r.stderr
    assert info(base)["vocabulary"] == "".join(sorted(ALPHABET))
    starts = {"new": None, "existing": base.read_bytes()}
    made = {}

    def get(face, start):
        if (face, start) not in made:
            folder = tmp_path_factory.mktemp(f"vocab-{face}-{start}")
            path, before = model_at(folder, start, starts)
            shown = train(face, ip, path, [*WIDE, "--max-vocab", str(len(ALPHABET))], big_alphabet_text)
            made[face, start] = (path, before, shown)
        return made[face, start]

    return get


@pytest.mark.parametrize("start", ["new", "existing"])
@pytest.mark.parametrize("face", FACES)
def test_vocabulary_full_saves_what_was_learned(face, start, vocabulary_full):
    path, before, shown = vocabulary_full(face, start)
    assert shown.error == (
        f"the text has more than {len(ALPHABET)} distinct characters; raise the limit to train on it (--max-vocab);"
        f" saved what was learned before to {path}"
    )
    assert files_beside(path) == ["m.rnn"]
    d = info(path)
    was = 0 if before is None else Model.from_bytes(before).iterations
    # the first block, all of it, and nothing of the second
    assert d["iterations"] == was + BLOCK // (64 * 50)
    assert d["vocabulary"] == "".join(sorted(ALPHABET))


@pytest.mark.parametrize("start", ["new", "existing"])
def test_vocabulary_full_saves_the_same_model_under_both_faces(start, vocabulary_full):
    (cli, _, _), (notebook, _, _) = vocabulary_full("cli", start), vocabulary_full("notebook", start)
    same_weights(cli, notebook)


# -- bad input ----------------------------------------------------------------------------

BAD = [("cli", "binary"), ("notebook", "not-str"), ("notebook", "missing")]


@pytest.mark.parametrize("start", ["new", "existing", "pending"])
@pytest.mark.parametrize(("face", "how"), BAD)
def test_bad_input_leaves_the_file_untouched(face, how, start, ip, starts, tmp_path):
    path, before = model_at(tmp_path, start, starts)
    if face == "cli":
        shown = cli_train(path, TINY, b"\x7fELF\x02\x01\x01\x00\x00\x00" * 100)
        input_file = tmp_path / "input.txt"
        untouched = "not created" if before is None else "left as it was"
        assert shown.error == (
            f"{input_file}: binary data, not text (it has NUL bytes); --binary trains on it anyway; {path} {untouched}"
        )
    elif how == "not-str":
        shown = notebook_train(ip, path, TINY, TEXT.encode("utf-8"))
        assert shown.error == "--text: faces_text is a bytes, not a str"
    else:
        shown = notebook_train(ip, path, TINY, None, how="missing")
        assert shown.error == "--text: no variable 'faces_text' in the notebook"
    if before is None:
        assert not path.exists()
    else:
        assert path.read_bytes() == before
    assert files_beside(path) == ([] if before is None else ["m.rnn"])


# -- empty input --------------------------------------------------------------------------

EMPTY = [("cli", "file"), ("cli", "stdin"), ("notebook", "cell"), ("notebook", "var")]


@pytest.mark.parametrize("start", ["new", "existing", "pending"])
@pytest.mark.parametrize(("face", "how"), EMPTY)
def test_empty_input_leaves_the_file_untouched(face, how, start, ip, starts, tmp_path):
    path, before = model_at(tmp_path, start, starts)
    shown = train(face, ip, path, TINY, "", how)
    if how == "cell":
        # IPython itself refuses a cell magic with no body: the magic never runs, and says nothing of the file
        # (a body of blank lines is text, taken literally, not empty input)
        assert shown.error.startswith("%%charrnn_train is a cell magic, but the cell body is empty.")
    else:
        # the same words under both faces
        untouched = "not created" if before is None else "left untouched"
        assert shown == Shown(None, [], f"empty input: nothing to train on; {path} {untouched}")
    # the file byte for byte (a pending run stays pending), or none
    if before is None:
        assert not path.exists()
    else:
        assert path.read_bytes() == before
    assert files_beside(path) == ([] if before is None else ["m.rnn"])


# -- the last line of a run that went well ----------------------------------------------


def _timeless(summary):
    """A summary without what the clock measured: its seconds and speed."""
    return re.sub(r" in \d+\.\d s( \([^)]* chars/s\))?,", " in T s,", summary)


@pytest.mark.parametrize(
    ("start", "args"),
    [("new", []), ("new", ["--epochs", "2"]), ("existing", ["--valid-fraction", "0.1"])],
    ids=["one-pass", "two-passes", "held-out"],
)
def test_both_faces_end_a_run_with_the_same_sentence(start, args, ip, starts, tmp_path):
    summaries = {}
    for face in FACES:
        path, _ = model_at(tmp_path / face, start, starts)
        shown = train(face, ip, path, [*TINY, *args], TEXT)
        assert shown.error is None, shown
        assert shown.last.startswith("end of input: trained on ") and shown.last.endswith(f"; saved to {path}")
        summaries[face] = _timeless(shown.last.replace(str(path), "M"))
    assert " in T s," in summaries["cli"]
    assert summaries["cli"] == summaries["notebook"]
    same_weights(tmp_path / "cli" / "m.rnn", tmp_path / "notebook" / "m.rnn")
