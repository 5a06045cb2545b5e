"""Documentation checks: docs/cli.md, the command line in full, where --help
sends the reader. It has a section for every command, naming every option
the command takes; its examples parse; its numbers and defaults are the
code's; and the long explanations that left --help say there what they said.
The behaviour its sentences describe is tested where it is built
(tests/test_cli.py, test_first_hour.py, test_continue.py, test_score.py ...)."""

from __future__ import annotations

import inspect
import re
import shlex

from cli_doc import TEXT, flat, headings, section, shell_lines
from cli_util import ROOT

from rnnpipe import cli, holdout, options, sampling, schedule

# -- complete ----------------------------------------------------------------------------------


def documented(command):
    """The options (a positional by its metavar) the bullets of a command's "Options of" part name."""
    part = section(command).split(f"### Options of rnnpipe {command}\n", 1)[1].split("\n### ", 1)[0]
    named = []
    for code in re.findall(r"^- (`[^:]*`):", part, re.M):
        for piece in re.findall(r"`([^`]*)`", code):
            named += [word.split()[0] for word in piece.split(", ")]
    return named


def bullet(command, name):
    """The text of the bullet that names an option, in a command's section, as one line."""
    for item in re.split(r"\n(?=- `)", section(command)):
        if item.startswith("- `") and name in documented_in(item):
            return bullet("train", name) if "as for [rnnpipe train]" in item else flat(item)
    raise AssertionError(f"no bullet for {name} in docs/cli.md's {command}")


def documented_in(item):
    head = item.split(":", 1)[0]
    return [word.split()[0] for piece in re.findall(r"`([^`]*)`", head) for word in piece.split(", ")]


def test_a_section_for_every_command_naming_every_option():
    parser = cli.build_parser()
    assert sorted(headings()) == sorted(["rnnpipe", *parser.commands])  # one each
    for command, p in parser.commands.items():
        wanted = {name for a in p._actions for name in (a.option_strings or [a.metavar])} - {"-h", "--help"}
        named = documented(command)
        assert len(named) == len(set(named)), command
        assert set(named) == wanted, (command, set(named) ^ wanted)


def test_every_option_says_the_default_its_help_says():
    # --help's defaults come from the code (rnnpipe.options builds them from Config); the page must agree
    checked = 0
    for command, p in cli.build_parser().commands.items():
        for action in p._actions:
            said = re.search(r"\(default:? ([\w.]+(?:,\d{3})*)", action.help or "")
            if not said or not action.option_strings:
                continue
            value = re.escape(said.group(1))
            text = bullet(command, action.option_strings[-1])
            assert re.search(rf"\bdefault:? {value}\b|\b{value} \(the default\)", text), (command, action.dest, text)
            checked += 1
    assert checked >= 25


def test_every_example_parses():
    parser = cli.build_parser()
    commands = "|".join(parser.commands)
    seen = 0
    for line in shell_lines(TEXT):
        for pipeline in re.findall(rf"rnnpipe (?:{commands})\b[^|#&;]*", line):
            args = cli.parse(parser, shlex.split(pipeline.strip())[1:])  # UsageError for an option that is not there
            assert args.model.endswith(".msgpack"), pipeline
            seen += 1
    assert seen >= 25
    for command in parser.commands:
        assert any(f"rnnpipe {command} " in line for line in shell_lines(section(command))), command


def test_the_help_and_readme_point_here():
    readme = flat((ROOT / "README.md").read_text(encoding="utf-8"))
    assert "[docs/cli.md](docs/cli.md)" in readme
    assert "[README.md](../README.md)" in TEXT


# -- the numbers are the code's ----------------------------------------------------------------


def test_train_says_what_the_code_does():
    from rnnpipe import guard, reader, train
    from rnnpipe.model import Model

    text = flat(section("train"))
    assert f"a pipe's text that has waited {train.LATENCY:g} seconds" in text
    assert f"as each million characters comes within {train.LATENCY:g} seconds" in text
    assert train.BLOCK_CHARS == reader.BLOCK_CHARS == 1 << 20  # "about a million characters"
    assert "over a tenth of its first 64 KiB invalid UTF-8" in text
    assert reader.BINARY_INVALID == 0.1 and reader.BINARY_SNIFF == 64 * 1024
    assert f"divides --lr by {guard.LR_CUT:g}, saying so; after four tries" in text and guard.ROLLBACKS == 4
    defaults = inspect.signature(Model.train).parameters
    assert f"(the held-out characters times {holdout.COST}), never by the clock" in bullet("train", "--keep-best")
    assert f"a {defaults['sample_length'].default}-character sample" in bullet("train", "--sample-every")


def test_the_long_explanations_of_train_are_here():
    text = flat(section("train"))
    assert "MODEL.lock" in text and ".MODEL.*.tmp" in text  # the lock, and what a killed run leaves
    clip = bullet("train", "--clip")
    assert "adagrad clips each gradient entry" in clip and "global norm" in clip and "per-character" in clip
    assert "seeds a new model's" in bullet("train", "--seed")


def test_the_readme_and_the_page_state_the_schedule_the_code_follows():
    readme = " ".join((ROOT / "README.md").read_text(encoding="utf-8").split())
    assert (
        f"rises over the first {schedule.WARMUP:.0%} of the run and falls to {schedule.FLOOR:.0%} of `--lr`" in readme
    )
    assert "(`--schedule cosine`, the default, or `linear`)" in readme
    assert "text piped in without `--max-time`, train at half `--lr` throughout" in readme
    help_text = bullet("train", "--schedule")
    said = f"rise over the first {schedule.WARMUP:.0%} of the run and fall to {schedule.FLOOR:.0%} of --lr"
    assert said in help_text
    assert "trains at half --lr throughout (cosine or linear) or at --lr (none)" in help_text
    assert schedule.UNKNOWN_END == 0.5  # "half"


def test_the_threads_sentence_is_the_benchmark_table():
    """docs/cli.md: on a 2-core machine a second thread 'gains little, and makes
    training several times slower beside another busy program': the figures are
    docs/benchmarks.md's table (bench/threads.py, not here)."""
    assert "a second thread gains little, and makes training several times slower beside another busy program" in (
        bullet("train", "--threads")
    )
    doc = (ROOT / "docs" / "benchmarks.md").read_text(encoding="utf-8")

    def row(name):
        (cells,) = re.findall(rf"^\| {name} \| ([\d., ]+) \|$", doc, re.M)
        return [float(x) for x in cells.split(", ")]

    assert max(row("quiet machine")) < 1.5  # little
    assert max(row("another process spinning on one core")) <= 0.5  # several times slower
    assert options.THREADS[1]["default"] == 1


def test_the_sampling_options_say_what_the_code_does():
    page = flat(section("sample"))
    for option in ("--beam K", "--lines N", "--until TEXT", "--prime-file PATH"):
        assert f"`{option}`" in page
    assert "stop right after TEXT first appears in the generated text (the prime is not searched)" in page
    assert "stop after N complete lines: right after the Nth newline generated" in page
    assert "- reads it from stdin" in page
    assert "more conservative than sampling, like a lower --temperature" in page
    assert f"K at most {sampling.MOST['beam'][0]:,} ({sampling.MOST['beam'][1]})" in page
    assert "would need more than half of the machine's memory is refused before any work" in page  # plan.py
    # the bound on a stop condition given without -n, in each of the three
    assert (
        f"characters to generate; 0 means until stopped (default {sampling.DEFAULT_N}; with --lines or --until, as "
        f"many as they take, at most {sampling.MAX_CHARS:,})" in page
    )
    assert page.count(f"or after -n characters if sooner (without -n, at most {sampling.MAX_CHARS:,})") == 2
    assert sampling.MAX_PRIME == 1 << 20 and "at most 1 MiB" in page  # and in --prime-file's help
    assert "A --temperature below 1e-30 counts as 0" in page


def test_score_show_and_neurons_say_what_the_code_does():
    from rnnpipe import score
    from rnnpipe.cli.score import LEARN_SAVE_EVERY
    from rnnpipe.pages import features, show, trace

    text = flat(section("score"))
    assert f"a line longer than {score.LONGEST:,} characters is scored whole" in text
    assert f"saved every --save-every seconds ({LEARN_SAVE_EVERY:g} by default)" in text
    text = flat(section("show"))
    assert f"At most the first {show.MAX_CHARS:,} characters are shown" in text
    assert f"orange to dark red ({show.SCALE_BITS:g} bits or more)" in text and trace.TOP == 5  # "top five"
    assert "tanh of the cell state" in text and "hidden state" in text
    assert all(show.escaped(c) for c in "\x00\x1b\x80\x9f\r") and not show.escaped("\n")
    assert "drawn as the escape `rnnpipe info` writes for it (`\\x00`, `\\x80`, `\\r`)" in text
    assert "the page's data holds the text exactly" in text
    assert "the engine and device that made its latest update" in flat(section("info"))
    text = flat(section("neurons"))
    assert f"At most the first {features.MAX_CHARS:,} characters are read" in text
    assert len(features.FEATURES) == 5 and "unit, layer, feature, correlation" in text
