"""The texts the tests train on. They ship with the repository, in examples/;
nothing here reads anything outside it."""

from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"
KAFKA_FILE = EXAMPLES / "kafka.txt"
SHAKESPEARE_FILE = EXAMPLES / "shakespeare.txt"

# examples/kafka.txt is Project Gutenberg eBook #5200 with Gutenberg's header on
# top and its licence at the end, as the licence asks. The header ends with the
# translator's copyright line; the story starts after it. The notebook cuts the
# header off with this same expression (tests/test_examples.py checks it does).
KAFKA_HEADER_END = "Copyright (C) 2002 by David Wyllie.\n"


def without_gutenberg_header(raw: str) -> str:
    """Kafka's text without Gutenberg's header: the story, then the licence."""
    return raw.split(KAFKA_HEADER_END, 1)[1].lstrip("\n")


def kafka_text() -> str:
    """The text min-char-rnn's walkthrough trained on: 137,628 characters, 80
    distinct, starting "One morning, when Gregor Samsa"."""
    return without_gutenberg_header(KAFKA_FILE.read_text(encoding="utf-8"))
