"""docs/cli.md, the command line in full, read by section for the documentation checks (tests/test_docs_*.py)."""

from __future__ import annotations

import re

from cli_util import ROOT

PATH = ROOT / "docs" / "cli.md"
TEXT = PATH.read_text(encoding="utf-8")


def section(command):
    """The section of `rnnpipe COMMAND` ("rnnpipe": the program's own), its heading to the next command's."""
    heading = "## rnnpipe" if command == "rnnpipe" else f"## rnnpipe {command}"
    parts = re.split(r"^(## .*)\n", TEXT, flags=re.M)
    found = [body for head, body in zip(parts[1::2], parts[2::2], strict=True) if head == heading]
    assert len(found) == 1, f"docs/cli.md has {len(found)} sections {heading!r}"
    return found[0]


def headings():
    """The commands docs/cli.md has a section for ("rnnpipe" for the program's own)."""
    return [h.removeprefix("## rnnpipe").strip() or "rnnpipe" for h in re.findall(r"^## rnnpipe.*$", TEXT, re.M)]


def flat(text):
    """Text with its line breaks and runs of spaces as single spaces, for sentences that wrap."""
    return " ".join(text.split())


def shell_lines(text):
    """The lines of text's ```sh blocks."""
    return [line for block in re.findall(r"```sh\n(.*?)```", text, re.S) for line in block.splitlines() if line]
