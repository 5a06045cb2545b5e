"""Documentation checks: the README (and examples/README.md). Its examples do
what it says they do, and its figures are docs/benchmarks.md's. The longer
promises about options (time-limited passes, stdin read once, binary input,
the newline on a terminal) are behaviour, kept by tests/test_first_hour.py."""

from __future__ import annotations

import re
import shlex
import shutil
import subprocess
import sys

import pytest
from cli_util import ENV, RNNPIPE, ROOT, shell
from texts import EXAMPLES

from rnnpipe import Config, Model, cli

README = (ROOT / "README.md").read_text(encoding="utf-8")
SECTION = README.split("## Finding the unusual\n", 1)[1].split("\n## ", 1)[0]  # rnnpipe score's


def blocks(language):
    return re.findall(rf"```{language}\n(.*?)```", README, re.S)


def commands(block):
    return [line.strip() for line in block.splitlines() if line.strip() and not line.strip().startswith("#")]


def test_the_first_command_trains_for_a_minute_of_passes_then_samples(tmp_path):
    first, tests = commands(blocks("sh")[0])
    assert tests.endswith("pip install '.[test]' && python -m pytest")
    install, train, sample = first.split(" && ")[-3:]
    assert install == "pip install ." and " --max-time 60 " in train and "--epochs" not in train
    # the same two commands, on a model in tmp_path and with 3 s instead of 60
    model = str(tmp_path / "shakespeare.msgpack")
    rnnpipe = shlex.join(RNNPIPE)
    train = train.replace("--max-time 60", "--max-time 3").replace("shakespeare.msgpack", model)
    sample = sample.replace("shakespeare.msgpack", model)
    r = subprocess.run(
        ["bash", "-c", f"{train.replace('rnnpipe', rnnpipe, 1)} && {sample.replace('rnnpipe', rnnpipe, 1)}"],
        cwd=ROOT,
        capture_output=True,
        timeout=120,
        env=ENV,
    )
    assert r.returncode == 0, r.stderr
    # the time decides (passes over the file until then: tests/test_first_hour.py)
    took = re.search(rb"^rnnpipe: time limit: trained on .* in ([0-9.]+) s ", r.stderr, re.M)
    assert took and float(took.group(1)) >= 3, r.stderr
    # its last 5% held out and scored (the model kept is the best on it: tests/test_holdout.py)
    # (the summary gives the last model's score, or the earlier best one's when the run ends with that)
    assert re.search(rb"^rnnpipe: time limit: .*(held-out|kept the best held-out model:) \d\.\d{3} bits/char", r.stderr,
                     re.M), r.stderr  # fmt: skip
    assert len(r.stdout.decode()) == 300


def test_every_command_line_example_parses():
    parser = cli.build_parser()
    seen = 0
    for block in blocks("sh")[1:]:
        for line in commands(block):
            for pipeline in re.findall(r"rnnpipe (?:train|sample|eval|info|show|neurons)[^|#]*", line):
                cli.parse(parser, shlex.split(pipeline)[1:])  # UsageError for an option that does not exist
                seen += 1
    assert seen >= 9


def test_the_notebook_examples_parse_with_the_magics_options():
    pytest.importorskip("IPython")
    from rnnpipe_magic import SampleMagics, ShowMagics, TrainMagics

    parsers = {
        "charrnn_train": TrainMagics.charrnn_train.parser,
        "charrnn_sample": SampleMagics.charrnn_sample.parser,
        "charrnn_show": ShowMagics.charrnn_show.parser,
    }
    seen = set()
    for block in blocks("python"):
        for magic, line in re.findall(r"^%%?(charrnn_\w+) (.*)$", block, re.M):
            args = parsers[magic].parse_args(shlex.split(line))
            seen.add(magic)
            if magic == "charrnn_sample":
                assert args.prime == "Gregor "  # quoted as in a shell: the space is kept
    assert seen == set(parsers)


def test_the_python_example_runs(tmp_path):
    (code,) = [b for b in blocks("python") if "from rnnpipe import" in b]
    assert "max_time=60" in code
    (tmp_path / "examples").mkdir()
    shutil.copy(ROOT / "examples" / "shakespeare.txt", tmp_path / "examples")
    code = code.replace("max_time=60", "max_time=2").replace("hidden=256", "hidden=32")
    code = code.replace("Display(sys.stderr)", "Display(sys.stderr, interval=0.5)")  # a line every 5 s otherwise
    r = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    sample, bits = r.stdout.rsplit("\n", 2)[0], float(r.stdout.split()[-1])
    assert sample.startswith("ROMEO:") and len(sample) >= len("ROMEO:") + 300 and 0 < bits < 8
    assert "rnnpipe: iteration " in r.stderr  # Display's progress lines
    assert (tmp_path / "shakespeare.msgpack").exists()


def test_the_sampling_paragraph_says_what_the_code_does():
    # the behaviour is tested through the executable in tests/test_sample_options.py; here, the numbers are the code's
    from rnnpipe import sampling

    text = " ".join(README.split())
    assert (
        f"Given without `-n`, they are not cut at its default of {sampling.DEFAULT_N}: they stop where they say, "
        f"or after {sampling.MAX_CHARS:,} characters in case that never comes." in text
    )
    assert f"(`-` reads it from stdin), of at most {sampling.MAX_PRIME:,} bytes." in text
    assert sampling.MAX_PRIME == 1 << 20  # the help's "1 MiB"


def test_the_pictures_section_says_what_the_code_does():
    # the behaviours are tested in tests/test_show.py, test_show_browser.py and test_magic_show.py;
    # here, that the README's numbers and colours are the code's
    from rnnpipe.pages import features, show

    text = " ".join(README.split())
    assert f"at most the first {show.MAX_CHARS:,} characters of a text" in text
    assert f"to dark red at {show.SCALE_BITS:g} bits or more" in text
    assert show.surprise_colour(0) == "#ffffff" and show.surprise_colour(show.SCALE_BITS) == show.SURPRISE_STOPS[-1]
    assert show.luminance(show.SURPRISE_STOPS[-1]) < 0.1 and show.SURPRISE_STOPS[2] == "#fdba74"  # orange
    assert "blue for -1 through white to red for +1" in text
    assert [show.activation_colour(a) for a in (-1, 0, 1)] == show.ACTIVATION_STOPS
    for words in ("inside quotes", "inside brackets", "the position in the line", "the first character of a word",
                  "just after a newline"):  # fmt: skip
        assert words in text
    assert len(features.FEATURES) == 5


def test_the_pictures_are_there_and_made_by_the_script():
    from chromium import decode_png

    script = (ROOT / "docs" / "screenshots.py").read_text()
    assert "default=120" in script and '"--cell", "lstm"' in script and '"kafka.txt"' in script
    assert 'default="any"' in script  # the unit rnnpipe neurons ranks highest
    for name in ("show-surprise.png", "show-neuron.png"):
        assert f"](docs/{name})" in README and f'"{name}"' in script
        width, height, rows = decode_png((ROOT / "docs" / name).read_bytes())
        assert (width, height) == (1000, 620)
        assert len({p for row in rows[::4] for p in row[::4]}) > 100  # a picture, not a blank page


def test_every_row_of_running_it_again_names_a_test_that_exists():
    # the rows' behaviours are tested where each row says; here, that each test it names is there
    import ast

    from rnnpipe import schedule, train

    table = README.split("### Running it again", 1)[1].split("\n\n`--restart`", 1)[0]
    rows = [line for line in table.splitlines() if line.startswith("| ") and "---" not in line][1:]
    assert len(rows) == 7
    for row in rows:
        cited = re.findall(r"`((?:test_\w+\.py)(?:::\w+)?|test_\w+)`", row.rsplit("|", 2)[-2])
        assert cited, row
        module = None
        for name in cited:
            if name.endswith(".py") or "::" in name:
                module, _, func = name.partition("::")
            else:
                func = name
            tree = ast.parse((ROOT / "tests" / module).read_text())
            defined = {n.name for n in ast.walk(tree) if isinstance(n, ast.FunctionDef)}
            assert not func or func in defined, (module, func)
    text = " ".join(README.split())
    assert f"once the oldest character not yet trained on has waited {train.LATENCY:g} seconds" in text
    assert f"falls to {schedule.FLOOR:.0%} of `--lr`" in text


def test_the_torch_extra_can_be_installed_cpu_only_as_the_readme_says():
    # the README's two commands: torch's CPU build from its own index, then the extra, which must not pin
    # a torch that the CPU index lacks (a version range, no CUDA-only package)
    import tomllib

    block = next(b for b in blocks("sh") if "download.pytorch.org/whl/cpu" in b)
    assert block.splitlines()[0] == "pip install torch --index-url https://download.pytorch.org/whl/cpu"
    assert "pip install '.[torch]'" in block
    extra = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]["torch"]
    assert extra == ["torch>=2.1"] and not any("nvidia" in d or "cuda" in d for d in extra)


# -- the README's claims are the benchmark tables ------------------------------------------


def test_the_readme_claim_on_the_schedule_is_the_benchmark_table():
    """README: with the schedule the default GRU ended 'about 0.08 bits/char
    lower than the best constant rate measured' after a minute on
    Shakespeare: the figures are docs/benchmarks.md's table (measured by
    bench/quality.py, not here: no timing in tests)."""
    readme = " ".join((ROOT / "README.md").read_text(encoding="utf-8").split())
    assert "ended about 0.08 bits/char lower than the best constant rate measured" in readme
    doc = (ROOT / "docs" / "benchmarks.md").read_text(encoding="utf-8")
    constant = [float(b) for b in re.findall(r"^\| [\d.e-]+, constant \| ([\d.]+) \|$", doc, re.M)]
    (runs,) = re.findall(r"^\| 1e-2, cosine schedule \(the default\) \| ([\d., ]+) \(", doc, re.M)
    scheduled = [float(b) for b in runs.split(", ")]
    assert len(constant) == 2 and len(scheduled) == 2
    assert all(0.06 <= min(constant) - s <= 0.10 for s in scheduled)


def test_the_readme_claim_on_weight_decay_is_the_benchmark_table():
    """README: without weight decay the default trained for 10 minutes on
    each of the three texts ended worse than after 3, with it better: the
    figures are docs/benchmarks.md's table (bench/quality.py, not here)."""
    readme = " ".join((ROOT / "README.md").read_text(encoding="utf-8").split())
    assert "`--lr` times `--weight-decay` of itself (0.1 by default with Adam, none with the seed's Adagrad;" in readme
    assert Config().weight_decay == 0.1 and Config(optimizer="adagrad").weight_decay == 0.0
    assert Config(optimizer="adagrad", weight_decay=0.2).weight_decay == 0.2
    assert Model.new(optimizer="adagrad").config.weight_decay == 0.0  # as the command line and magics build one
    assert Config().replace(optimizer="adagrad", weight_decay=0.3).weight_decay == 0.3
    assert (
        "without it the default model trained for 10 minutes on each of the benchmark's three texts ended worse "
        "than after 3 minutes, and with it better" in readme
    )
    doc = (ROOT / "docs" / "benchmarks.md").read_text(encoding="utf-8")
    rows = re.findall(r"^\| (\w+) \| (180|600) \| [^|]+ \| ([\d.]+) \| ([\d., ]+) \|$", doc, re.M)
    table = {(corpus, int(budget)): (float(none), [float(b) for b in decay.split(", ")])
             for corpus, budget, none, decay in rows}  # fmt: skip
    assert {c for c, _ in table} == {"prose", "code", "cyrillic"}
    for corpus in ("prose", "code", "cyrillic"):
        (none_180, decay_180), (none_600, decay_600) = table[corpus, 180], table[corpus, 600]
        assert none_600 > none_180
        assert decay_600[0] < min(decay_180)


def test_the_readme_claim_on_what_holding_out_costs_is_the_benchmark_table():
    """README: on tinyshakespeare's first million characters, 60 and 180
    seconds ended 0.02 and 0.04 bits/char worse with the held-out default
    than with --valid-fraction 0: the figures are docs/benchmarks.md's table
    (bench/quality.py, not here), and the default does hold out for such a
    text, read more than once."""
    from rnnpipe.holdout import DEFAULT_FRACTION
    from rnnpipe.plan import Options

    readme = " ".join(README.split())
    said = re.search(r"60 and 180 seconds on both cores ended ([\d.]+) and ([\d.]+) bits/char worse than with "
                     r"`--valid-fraction 0`", readme)  # fmt: skip
    assert said, "the README no longer says what holding out costs"
    doc = (ROOT / "docs" / "benchmarks.md").read_text(encoding="utf-8")
    section = doc.split("### What it costs on a long text\n", 1)[1].split("\n#", 1)[0]
    rows = re.findall(r"^\| (60|180) \| ([\d.]+) \| ([\d.]+) \| ([\d.]+) \|$", section, re.M)
    assert [r[0] for r in rows] == ["60", "180"]
    for (_, default, nothing, worse), stated in zip(rows, said.groups(), strict=True):
        assert f"{float(default) - float(nothing):.3f}" == worse
        assert f"{float(worse):.2f}" == stated
    million = 1_000_000
    settled = Options().settle(None, million, 1_048_640)  # --max-time over a file: passes until the time is up
    assert settled.valid_fraction == min(DEFAULT_FRACTION, 10_000 / million) and settled.keep_best
    assert Options(valid_fraction=0).settle(None, million, 1_048_640).keep_best is False


def test_the_readmes_benchmark_figures_are_the_recorded_run():
    docs = (ROOT / "docs" / "benchmarks.md").read_text(encoding="utf-8").split("## Finding the unusual\n", 1)[1]
    rows = {r.split(" | ")[0].lstrip("| "): r.split(" | ") for r in docs.splitlines() if r.startswith("| ")}
    n = int(re.search(r": (\d+) of \d+ lines", docs).group(1))
    hits = {name: round(float(rows[name][3]) * n) for name in rows if name != "score" and name != "---"}
    said = re.search(r"the (\d+) lines with the highest bits per character were exactly those,\s+against (\d+) and "
                     r"(\d+) of them for gzip", SECTION)  # fmt: skip
    assert said, SECTION
    assert int(said.group(1)) == n == hits["rnnpipe bits/char"]
    assert (int(said.group(2)), int(said.group(3))) == (hits["gzip bytes/char (32 KB dict)"], hits["length z-score"])
    assert f"{n} lines of other kinds" in " ".join(SECTION.split())


# -- Finding the unusual: rnnpipe score's commands -----------------------------------------


def test_the_readmes_score_commands_parse_and_the_notebook_line_too():
    parser = cli.build_parser()
    code = "\n".join(re.findall(r"```sh\n(.*?)```", README, re.S))
    found = re.findall(r"rnnpipe score[^|#;\n]*", code)
    assert len(found) >= 8
    for command in found:
        cli.parse(parser, shlex.split(command)[1:])
    pytest.importorskip("IPython")
    from rnnpipe_magic.score import ScoreMagics

    line = re.search(r"`%charrnn_score (.*?)`", SECTION).group(1)
    assert ScoreMagics.charrnn_score.parser.parse_args(shlex.split(line)).text == "VAR"


def test_the_worked_example_on_dpkgs_log(tmp_path):
    """The README's commands, with a shorter training: dpkg's later lines, and another program's line above them."""
    shutil.copytree(ROOT / "bench" / "data", tmp_path / "bench" / "data")
    block = SECTION.split("A worked example", 1)[1]
    commands = re.search(r"```sh\n(.*?)```", block, re.S).group(1).strip().splitlines()
    printed = re.search(r"printed, with the default GRU:\n\n```\n(.*?)```", block, re.S).group(1).splitlines()
    assert len(commands) == 4 and "--max-time 60" in commands[1]
    commands[1] = commands[1].replace("--max-time 60", "--max-time 10 -q")
    results = [shell(c, cwd=tmp_path, timeout=120) for c in commands]
    assert all(r.returncode == 0 for r in results), [r.stderr for r in results]
    top = [x.split("\t") for x in results[2].stdout.decode().splitlines()]
    assert len(top) == 3 and [float(b) for b, _ in top] == sorted((float(b) for b, _ in top), reverse=True)
    seen = (tmp_path / "seen.log").read_text()
    package = top[0][1].split()[3].split(":")[0]  # "DATE TIME ACTION PACKAGE:ARCH ..."
    assert f" {package}:" not in seen  # a package it had not seen installed before
    last = [x.split("\t") for x in results[3].stdout.decode().splitlines()]
    assert [t for _, t in last] == [t for _, t in (x.split("\t") for x in printed[3:])]
    assert float(last[2][0]) > max(float(last[0][0]), float(last[1][0]))  # the other program's line stands out


# -- examples/README.md ---------------------------------------------------------------------


def test_examples_readme_names_each_text_its_source_and_licence():
    readme = (EXAMPLES / "README.md").read_text(encoding="utf-8")
    for name in sorted(p.name for p in EXAMPLES.glob("*.txt")):
        assert f"`{name}`" in readme, name
    assert "#5200" in readme and "David Wyllie" in readme and "Project Gutenberg License" in readme
    assert "public domain" in readme


def test_the_busy_machine_check_runs_the_readme_test_command_with_every_core_spinning():
    """docs/reliability.md: bench/busy.sh installs as the README's test command does,
    spins on every core, and runs that command RUNS times, stopping at a failure."""
    script = (ROOT / "bench" / "busy.sh").read_text(encoding="utf-8")
    install, test = commands(blocks("sh")[0])[1].split(" && ")[-2:]
    assert install == "pip install '.[test]'" and "python -m pip install -q '.[test]'" in script
    assert f"if {test} -q -p no:cacheprovider" in script
    assert 'for _ in $(seq "$(nproc)")' in script and "while True: pass" in script
    assert 'for run in $(seq "$runs")' in script and "break" in script
    assert "`bash bench/busy.sh 5`" in (ROOT / "docs" / "reliability.md").read_text(encoding="utf-8")


def test_the_readme_claim_on_the_model_it_chooses_is_the_benchmark_table_and_the_code():
    """README: a small text read many times gets two layers of 128 with
    dropout 0.4; its figures are docs/benchmarks.md's table, its bounds
    plan.choose's."""
    from rnnpipe import plan

    readme = " ".join(README.split())
    said = re.search(r"files of at most ([\d,]+) characters that `--epochs`, or `--max-time` at about ([\d,]+) "
                     r"characters a second, have it read (\d+) times or more get two layers of (\d+) with "
                     r"`--dropout ([\d.]+)`", readme)  # fmt: skip
    assert said, "the README no longer says which model it chooses"
    small, rate, many, hidden, dropout = said.groups()
    assert (int(small.replace(",", "")), int(rate.replace(",", "")), int(many)) == (plan.SMALL, plan.RATE, plan.MANY)
    assert plan.MANY_PASSES == {"layers": 2, "hidden": int(hidden), "dropout": float(dropout)}
    figures = re.search(r"it ended ([\d.]+) bits/char on the text after the sample, against ([\d.]+) for the "
                        r"default model; on a million characters read (\d+) times in 180 seconds the default did "
                        r"better, ([\d.]+) against ([\d.]+)", readme)  # fmt: skip
    assert figures, "the README no longer gives the figures"
    doc = (ROOT / "docs" / "benchmarks.md").read_text(encoding="utf-8")
    section = doc.split("### The model for the text and the time\n", 1)[1].split("\n#", 1)[0]
    sample = re.search(r"^\| the README's sample \(99,843\) \| 60 \| \d+, ([\d.]+) \| \d+, ([\d.]+) \|$", section, re.M)
    million = re.search(r"^\| tinyshakespeare's first 1,115,394 \(1,003,854\) \| 180 \| (\d+), ([\d.]+) \| \d+, "
                        r"([\d.]+) \|$", section, re.M)  # fmt: skip
    assert (sample[2], sample[1]) == figures.groups()[:2]
    assert million.groups() == figures.groups()[2:]
    # the first command is such a run: 60 s over the 99,843-character sample
    assert plan.choose(99_843, plan.Options(max_time=60))[0] == plan.MANY_PASSES
