"""Documentation checks: the --help pages. Each reads at a glance (train's in
at most 60 lines of an 80-column terminal, every other in at most 40), lists
every option of its command in a line or two, gives three examples that
parse, and names its section of docs/cli.md, where the long explanations
live (tests/test_docs_cli.py checks what they say); and --help starts
without importing numpy. The behaviour the pages describe is tested where it
is built."""

from __future__ import annotations

import io
import re
import shlex
import subprocess
import sys

import pytest
from cli_doc import flat, section, shell_lines
from cli_util import ENV, run, shell
from texts import SHAKESPEARE_FILE

from rnnpipe import cli, options
from rnnpipe.cli import helptext
from rnnpipe.config import Config

COMMANDS = ["rnnpipe", *cli.build_parser().commands]
LINES = {"train": 60}  # the most lines a page may take at 80 columns; SHORT for the others
SHORT = 40
WIDTH = 79  # no line wider: it fits an 80-column terminal unwrapped


@pytest.fixture(scope="module")
def pages():
    """Each command's --help ("rnnpipe": the program's own), as an 80-column terminal shows it."""
    found = {}
    with pytest.MonkeyPatch.context() as m:
        m.setenv("COLUMNS", "80")  # argparse wraps to the terminal's width
        for command in COMMANDS:
            out = io.StringIO()
            assert cli.main(([] if command == "rnnpipe" else [command]) + ["--help"], stdout=out) == 0
            found[command] = out.getvalue()
    return found


def entries(page):
    """Each option's lines in a page: (its first line, the lines of its help)."""
    found, inside = [], False
    for line in page.splitlines():
        if re.match(r"^\S.*:$", line):  # a heading: "options:", "this run:", "examples:"
            inside = line != "examples:"
        elif inside and re.match(r"^  \S", line):
            invocation, _, help = line.strip().partition("  ")
            found.append((invocation, [help.strip()] if help.strip() else []))
        elif inside and re.match(r"^ {6,}\S", line) and found:
            found[-1][1].append(line.strip())
    return found


# -- short, complete, pointing at the long version ------------------------------------------


def test_every_page_reads_at_a_glance(pages):
    for command, page in pages.items():
        lines = page.splitlines()
        assert len(lines) <= LINES.get(command, SHORT), (command, len(lines))
        assert max(len(line) for line in lines) <= WIDTH, command
        assert lines[0].startswith("usage: rnnpipe") and lines[1] == "", command  # usage in one line
        examples = page.split("\nexamples:\n", 1)[1].split("\n\n", 1)[0].splitlines()
        assert len(examples) == 3, command
        anchor = "" if command == "rnnpipe" else f"#{helptext.anchor(command)}"
        assert lines[-1].endswith(f"docs/cli.md{anchor}"), command  # where the long explanations are
        section(command)  # which exists


def test_every_option_is_on_its_commands_page_in_a_line_or_two(pages):
    for command, parser in cli.build_parser().commands.items():
        page = pages[command]
        for action in parser._actions:
            for name in action.option_strings or [action.metavar]:
                assert re.search(rf"(?<![\w-]){re.escape(name)}(?![\w-])", page), (command, name)
        listed = entries(page)
        assert len(listed) == len(parser._actions), command
        for invocation, help in listed:
            assert 1 <= len(help) <= 2, (command, invocation, help)


def test_the_page_checker_finds_what_it_looks_for():
    page = "usage: x\n\noptions:\n  -a A    one\n          two\n          three\n  --b\n  c\n\nexamples:\n  x\n"
    assert entries(page) == [("-a A", ["one", "two", "three"]), ("--b", []), ("c", [])]


def test_no_option_help_carries_benchmark_figures():
    # figures belong in docs/benchmarks.md, measured with the command that made them, not in --help
    tables = [options.MODEL, *options.ARCHITECTURE, *options.HYPER, *options.RUN, *options.ENGINE, *options.SAMPLE,
              *options.SHOW]  # fmt: skip
    for flags, kwargs in tables:
        assert "benchmark" not in kwargs["help"] and " times " not in kwargs["help"], flags
    help = options.THREADS[1]["help"]
    assert re.findall(r"[\d.]+", help) == ["1"] and options.THREADS[1]["default"] == 1  # the default alone


def test_help_explains_every_option_without_numpy():
    code = (
        "import io, sys\n"
        "from rnnpipe.cli import main\n"
        f"for cmd in ([], *([c] for c in {COMMANDS[1:]!r})):\n"
        "    out = io.StringIO()\n"
        "    assert main(cmd + ['--help'], stdout=out) == 0\n"
        "    print(out.getvalue())\n"
        "    print('=====')\n"
        "assert 'numpy' not in sys.modules, 'help imported numpy'\n"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=30, env=ENV)
    assert r.returncode == 0, r.stderr
    pages = dict(zip(COMMANDS, r.stdout.split("====="), strict=False))
    expected = {
        "train": "--cell --hidden --layers --dropout --seq-length --batch-size --optimizer --lr --epochs --max-time "
        "--save-every --sample-every --valid-fraction --seed --dtype --binary --quiet",
        "sample": "-n --temperature --top-k --prime --no-echo-prime --skip-unknown --seed --beam --lines --until "
        "--prime-file",
        "eval": "--json",
        "info": "--json",
        "show": "--neuron --layer --output",
        "neurons": "--top --html",
    }
    for command, page in pages.items():
        assert "example" in page and "rnnpipe" in page, command
        for option in expected.get(command, "").split():
            assert option in page, (command, option)
    assert "read again from disk for each pass" in flat(section("train"))  # how --epochs and --max-time read input
    assert pages["rnnpipe"].count("write generated text to stdout") == 1  # each command listed once


# -- the examples ------------------------------------------------------------------------------


def test_every_example_in_the_help_parses(pages):
    parser = cli.build_parser()
    examples = 0
    for page in pages.values():
        examples_part = page.split("example")[1].replace("\\\n", " ")  # continued lines joined
        for line in examples_part.splitlines():
            commands = "|".join(cli.build_parser().commands)
            for pipeline in re.findall(rf"rnnpipe (?:{commands})\b[^|#&;]*", line):
                words = shlex.split(pipeline.strip())[1:]
                args = cli.parse(parser, words)  # raises UsageError for an option that does not exist
                assert args.model.endswith(".msgpack"), pipeline
                examples += 1
    assert examples >= 20


def test_help_says_the_default_cell_and_names_no_other_file_kind(pages):
    assert f"new: a {Config().cell.upper()}, the defaults" in pages["train"]
    assert f"a new model (a {Config().cell.upper()}, the defaults)" in section("train")
    for name, page in pages.items():
        assert ".rnn " not in page and "LSTM, defaults" not in page, name


@pytest.fixture(scope="module")
def model(scored):
    """A tiny model trained for one pass over 20 kB of Shakespeare, for score's examples. (conftest.scored)."""
    return scored


def test_help_lists_score_and_its_examples_run(model, tmp_path, pages):
    from rnnpipe import score

    top = run("--help").stdout.decode()
    assert "score" in top and "`score --over` exits as grep does" in top
    text = run("score", "--help").stdout.decode()
    assert "BITS<TAB>LINE" in text and "--learn" in text
    assert f"a line longer than {score.LONGEST:,} characters is scored whole" in flat(section("score"))
    code = "import io, sys\nfrom rnnpipe.cli import main\nmain(['score', '--help'], stdout=io.StringIO())\n"
    code += "print('numpy' in sys.modules)"  # the help starts fast, as every command's
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, env=ENV).stdout == b"False\n"
    log = tmp_path / "today.log"
    shakespeare = SHAKESPEARE_FILE.read_text()[20000:23000]
    log.write_text(shakespeare[shakespeare.index("\n") + 1 :] + "zqxj vvkkwq zzqx jjxq kwzv qqzj\n")
    in_help = pages["score"].split("examples:\n", 1)[1].split("\n\n", 1)[0].splitlines()
    examples = [x.strip().split("  #")[0] for x in in_help + shell_lines(section("score"))]
    ran = 0
    for example in examples:
        if example.startswith("tail -f") or "jq" in example:
            continue  # an endless pipe; jq may not be installed (its fields: test_json_...)
        r = shell(example.replace("log.msgpack", str(model)), cwd=tmp_path)
        assert r.returncode == 0 and r.stdout, (example, r.stderr)
        ran += 1
    assert ran >= 5


def test_eval_help_says_how_unknown_characters_are_treated():
    out = run("eval", "--help").stdout.decode()
    assert "one continuous stream" in out and "skipped" in out and "unknown" in out


def test_help_explains_show_and_neurons(pages):
    from rnnpipe.pages import features, show

    page = pages["show"]
    for option in ("--neuron", "--layer", "-o", "FILE"):
        assert option in page
    assert "nothing loaded from the network" in flat(page)
    assert f"first {show.MAX_CHARS:,}" in page
    assert "tanh of the cell state" in flat(section("show")) and "hidden state" in flat(section("show"))
    neurons = pages["neurons"]
    for option in ("--top", "--html"):
        assert option in neurons
    assert f"first {features.MAX_CHARS:,}" in flat(neurons)
    assert "unit, layer, feature, correlation" in flat(neurons)
