"""The package keeps its layers (docs/architecture.md): no module imports
one of a layer above its own, and no imports go round in a circle. Imports
inside functions count too: they are how the command line starts without
numpy, not a way around the layers. And no test imports bench/: what both
need lives in tests/ (or in the package), and bench/ imports it from there."""

from __future__ import annotations

import ast
import re
from pathlib import Path

from cli_util import ROOT

PACKAGES = ("rnnpipe", "rnnpipe_magic")


def modules():
    """Module name -> path, for every module of the packages."""
    found = {}
    for package in PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            parts = path.relative_to(ROOT).with_suffix("").parts
            if parts[-1] == "__init__":
                parts = parts[:-1]
            found[".".join(parts)] = path
    return found


def imports(name, path, known):
    """The package modules a module imports, by module name."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    here = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = ".".join(here[: len(here) - node.level + 1] + ([node.module] if node.module else []))
            elif node.module and node.module.split(".")[0] in PACKAGES:
                base = node.module
            else:
                continue
            for alias in node.names:  # `from . import net` names a module; `from .x import f` a name in one
                out.add(f"{base}.{alias.name}" if f"{base}.{alias.name}" in known else base)
        elif isinstance(node, ast.Import):
            out.update(a.name for a in node.names if a.name.split(".")[0] in PACKAGES)
    return {m for m in out if m in known and m != name}


def layers():
    """Module name -> layer number, from docs/architecture.md's table."""
    doc = (ROOT / "docs" / "architecture.md").read_text(encoding="utf-8")
    table = {}
    for number, cell in re.findall(r"^\| (\d) \w+ \| (.*?) \|", doc, re.M):
        for entry in re.findall(r"`([\w.*]+)`", cell):
            table[entry] = int(number)
    return table


def layer_of(name, table):
    short = name.removeprefix("rnnpipe.") if name != "rnnpipe" else "rnnpipe"
    if short in table:
        return table[short]
    for pattern, number in table.items():  # "cli.*": every module of a package
        if pattern.endswith(".*") and short.startswith(pattern[:-1]):
            return number
    raise AssertionError(f"{name} is in no layer of docs/architecture.md")


def test_every_module_is_in_a_layer_and_imports_none_above_it():
    known, table = modules(), layers()
    assert len(table) >= 8 * 2  # the table was read
    upward = []
    for name, path in known.items():
        mine = layer_of(name, table)
        for other in imports(name, path, known):
            if layer_of(other, table) > mine:
                upward.append(f"{name} (layer {mine}) imports {other} (layer {layer_of(other, table)})")
    assert not upward, "\n".join(upward)


def test_no_imports_in_a_circle():
    known = modules()
    graph = {name: imports(name, path, known) for name, path in known.items()}
    # a package's __init__ importing its own modules and them importing it back is the one circle
    # Python makes on purpose; none is allowed here either
    state, cycles = {}, []

    def visit(node, trail):
        state[node] = "open"
        for nxt in sorted(graph[node]):
            if state.get(nxt) == "open":
                cycles.append(" -> ".join(trail[trail.index(nxt) :] + [nxt]))
            elif nxt not in state:
                visit(nxt, trail + [nxt])
        state[node] = "done"

    for node in sorted(graph):
        if node not in state:
            visit(node, [node])
    assert not cycles, "\n".join(cycles)


def test_the_checker_finds_what_it_looks_for(tmp_path):
    # an upward import and a circle written on purpose are caught
    known = {"rnnpipe.a": tmp_path / "a.py", "rnnpipe.b": tmp_path / "b.py"}
    known["rnnpipe.a"].write_text("from . import b\n")
    known["rnnpipe.b"].write_text("def f():\n    from .a import x\n")
    assert imports("rnnpipe.a", known["rnnpipe.a"], known) == {"rnnpipe.b"}
    assert imports("rnnpipe.b", known["rnnpipe.b"], known) == {"rnnpipe.a"}


# ways of loading code by its path: bench/ on sys.path, or a file of it loaded directly
LOADERS = ("sys.path", "spec_from_file_location", "SourceFileLoader", "run_path", "import_module", "__import__")


def bench_imports(source):
    """The lines by which a test's source imports code from bench/: an import
    of a module bench/ holds (and tests/ does not), or bench/ loaded by path."""
    names = {p.stem for p in (ROOT / "bench").glob("*.py")} - {p.stem for p in (ROOT / "tests").glob("*.py")}
    names.add("bench")
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found += [f"import {a.name}" for a in node.names if a.name.split(".")[0] in names]
        elif isinstance(node, ast.ImportFrom) and not node.level and node.module.split(".")[0] in names:
            found.append(f"from {node.module} import ...")
    found += [line.strip() for line in source.splitlines() if "bench" in line and any(w in line for w in LOADERS)]
    return found


def test_no_test_imports_bench():
    offenders = []
    for path in sorted((ROOT / "tests").rglob("*.py")):
        if path.resolve() == Path(__file__).resolve():
            continue  # this file names the loaders it looks for
        offenders += [f"{path.relative_to(ROOT)}: {line}" for line in bench_imports(path.read_text(encoding="utf-8"))]
    assert not offenders, "\n".join(offenders)


def test_the_bench_checker_finds_what_it_looks_for():
    for source in (
        "import quality\n",
        "def f():\n    from run import quality_targets\n",
        "import bench.crash\n",
        'import sys\nsys.path.insert(0, str(ROOT / "bench"))\n',
        'spec = importlib.util.spec_from_file_location("crash", ROOT / "bench" / "crash.py")\n',
    ):
        assert bench_imports(source), source
    # a test helper of the same job is not bench/, and running a bench script is not importing it
    assert not bench_imports("import measures\nimport crash_loops\n")
    assert not bench_imports('subprocess.run([sys.executable, str(ROOT / "bench" / "crash.py")])\n')
