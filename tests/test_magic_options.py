"""The magics take the command line's options (issue 9, item 4): both are
built from rnnpipe.options, and these tests keep them from drifting apart."""

import argparse

import pytest

import rnnpipe.cli
from rnnpipe import options
from rnnpipe_magic import SampleMagics, ShowMagics, TrainMagics

# Options that make sense on one side only; every other option must exist on
# both sides and mean the same.
CLI_ONLY = {
    "train": {
        "FILE",  # the magic trains on the cell's text or on --text VAR, never on files
        "-q",
        "--quiet",  # the notebook shows progress in one line updated in place; nothing to silence
        "--binary",  # a cell holds text already decoded; there are no bytes to judge
        "-h",
        "--help",  # `%%charrnn_train?` is IPython's help
    },
    "sample": {"-h", "--help"},
    "show": {
        "FILE",  # the magic shows the cell's text or --text VAR
        "-o",
        "--output",  # the page is shown inline, not written
        "-h",
        "--help",
    },
}
MAGIC_ONLY = {
    "train": {
        "--name",  # a model kept in the kernel's memory, without a file
        "--text",  # train on a str the notebook holds
        "-o",  # store the result in a notebook variable
    },
    "sample": {"--name", "-o"},
    "show": {"--name", "--text"},
}

# What each option means. help is left out for -m alone, where each side says
# what the file is for in its own words; required differs for -m too (the
# magic can use --name instead).
MEANING = ("dest", "type", "default", "choices", "nargs", "const", "metavar", "help")


def _subcommands():
    parser = rnnpipe.cli.build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return sub.choices


def _magic_parser(command):
    return {
        "train": TrainMagics.charrnn_train,
        "sample": SampleMagics.charrnn_sample,
        "show": ShowMagics.charrnn_show,
    }[command].parser


def _by_name(parser):
    """Each option string (a positional by its metavar) -> its argparse action."""
    found = {}
    for action in parser._actions:
        for name in action.option_strings or [action.metavar or action.dest]:
            found[name] = action
    return found


@pytest.mark.parametrize("command", ["train", "sample", "show"])
def test_the_magic_has_the_command_lines_options(command):
    cli = _by_name(_subcommands()[command])
    magic = _by_name(_magic_parser(command))
    assert set(cli) - set(magic) == CLI_ONLY[command]
    assert set(magic) - set(cli) == MAGIC_ONLY[command]


@pytest.mark.parametrize("command", ["train", "sample", "show"])
def test_shared_options_mean_the_same(command):
    cli = _by_name(_subcommands()[command])
    magic = _by_name(_magic_parser(command))
    shared = sorted(set(cli) & set(magic))
    assert {"-m", "--model"} <= set(shared) and (command == "show" or "--seed" in shared)
    for name in shared:
        a, b = cli[name], magic[name]
        assert type(a) is type(b), name  # the action: store, store_true, ...
        assert a.option_strings == b.option_strings, name  # -m and --model go together on both sides
        for attr in MEANING:
            if name in ("-m", "--model") and attr == "help":
                continue
            assert getattr(a, attr) == getattr(b, attr), f"{name}: {attr} {getattr(a, attr)!r} != {getattr(b, attr)!r}"


def test_save_every_and_clip_are_on_both_sides():
    # the session layer (rnnpipe.session) serves both faces, so a notebook run saves every
    # --save-every seconds as a command-line run does (issue 10, items 6 and 7)
    for flag in ("--save-every", "--clip"):
        assert flag in _by_name(_subcommands()["train"]) and flag in _by_name(_magic_parser("train"))


def test_the_table_is_what_both_sides_are_built_from():
    # an option added to the table reaches both sides; one added to one side only fails the tests above
    table = {
        "train": options.ARCHITECTURE + options.HYPER + options.RUN + options.ENGINE + [options.MODEL],
        "sample": options.SAMPLE + options.ENGINE + [options.MODEL],
        "show": options.SHOW + [options.MODEL],
    }
    for command, rows in table.items():
        cli = _by_name(_subcommands()[command])
        magic = _by_name(_magic_parser(command))
        for flags, kwargs in rows:
            for flag in flags:
                assert flag in cli and flag in magic, (command, flag)
                if flags != options.MODEL[0]:  # -m's help is each side's own (see MEANING)
                    assert cli[flag].help == magic[flag].help == kwargs["help"], (command, flag)


def test_the_new_sampling_and_show_options_are_on_both_sides():
    # issue 13: the notebook gets the same sampling options and %charrnn_show the command's
    for flag in ("--beam", "--lines", "--until", "--prime-file"):
        assert flag in _by_name(_subcommands()["sample"]) and flag in _by_name(_magic_parser("sample"))
    for flag in ("--neuron", "--layer", "-m"):
        assert flag in _by_name(_subcommands()["show"]) and flag in _by_name(_magic_parser("show"))
