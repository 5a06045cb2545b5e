"""The texts in examples/ are what the tests and the notebook need, and nothing
in tests/ or examples/ reaches outside the repository for data."""

import hashlib
import json
import re

import nbformat
from texts import EXAMPLES, KAFKA_FILE, KAFKA_HEADER_END, ROOT, SHAKESPEARE_FILE, kafka_text

# the text the seed's notebook trained on: a byte-for-byte copy of the file it read
KAFKA_SHA256 = "836497d1e5a47b1744e68da78822e8af19ddadc565e3a09fde348f300e14ec78"


def test_kafka_is_the_seeds_text_once_the_header_is_off():
    text = kafka_text()
    assert hashlib.sha256(text.encode("utf-8")).hexdigest() == KAFKA_SHA256
    assert len(text) == 137_628 and len(set(text)) == 80
    assert text.startswith("One morning, when Gregor Samsa woke from troubled dreams")


def test_kafka_keeps_gutenbergs_header_and_licence():
    raw = KAFKA_FILE.read_text(encoding="utf-8")
    header = raw[: raw.index(KAFKA_HEADER_END) + len(KAFKA_HEADER_END)]
    assert header.startswith("The Project Gutenberg EBook of Metamorphosis, by Franz Kafka\n")
    assert "** This is a COPYRIGHTED Project Gutenberg eBook, Details Below **" in header
    assert "Release Date: August 16, 2005 [EBook #5200]" in header
    assert raw.count(KAFKA_HEADER_END) == 1
    licence = raw[raw.index("End of the Project Gutenberg EBook of Metamorphosis") :]
    assert "*** START: FULL LICENSE ***" in licence
    assert "This particular work is one of the few copyrighted individual works" in licence
    assert raw.endswith("subscribe to our email newsletter to hear about new eBooks.\n\n\n\n")


def test_shakespeare_is_the_first_100_kB_of_tinyshakespeare():
    data = SHAKESPEARE_FILE.read_bytes()
    assert data.startswith(b"First Citizen:\nBefore we proceed any further, hear me speak.\n")
    assert 99_000 < len(data) <= 100_000 and data.isascii()


def test_the_notebook_reads_kafka_beside_it_and_cuts_the_header_as_the_tests_do():
    nb = nbformat.read(EXAMPLES / "metamorphosis.ipynb", as_version=4)
    reading = [c.source for c in nb.cells if c.cell_type == "code" and "kafka.txt" in c.source]
    assert len(reading) == 1
    assert 'Path("kafka.txt")' in reading[0]
    assert f".split({json.dumps(KAFKA_HEADER_END)}, 1)[1].lstrip(" in reading[0]


# "../shared" in any spelling, or "shared" as a quoted path component ("shared" / "data", join(.., "shared"))
SHARED = re.compile(r"""\.\.[/\\]+shared\b|(["'])shared\1|(["'])shared[/\\]""")


def strings(value):
    """Every string in a parsed JSON document (a notebook's sources and outputs)."""
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for v in value.values():
            yield from strings(v)
    elif isinstance(value, list):
        for v in value:
            yield from strings(v)


def test_nothing_in_tests_or_examples_uses_the_shared_folder():
    # the checker itself must be able to spot what it looks for
    for bad in ['ROOT.parent / "shared" / "data"', "open('../shared/data/kafka.txt')", 'join(up, "shared/data")']:
        assert SHARED.search(bad), bad
    offenders = []
    for folder in ("tests", "examples"):
        for path in sorted((ROOT / folder).rglob("*")):
            if not path.is_file() or "__pycache__" in path.parts:
                continue
            try:
                text = path.read_text(encoding="utf-8")
            except UnicodeDecodeError:
                continue
            if path.suffix == ".ipynb":
                text = "\n".join(strings(json.loads(text)))
            for n, line in enumerate(text.splitlines(), 1):
                if SHARED.search(line) and path.name != "test_examples.py":
                    offenders.append(f"{path.relative_to(ROOT)}:{n}: {line.strip()}")
    assert offenders == []
