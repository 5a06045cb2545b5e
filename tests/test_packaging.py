"""The core and the command line need numpy, msgpack, tqdm and threadpoolctl only; IPython is
the `notebook` extra's, for the magics."""

import re
import subprocess
import sys
import textwrap
import tomllib

from texts import ROOT

PROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]


def names(requirements):
    """Distribution names, normalised, of PEP 508 requirement strings."""
    return {re.split(r"[\s<>=!~;\[(@]", r.strip(), maxsplit=1)[0].lower().replace("_", "-") for r in requirements}


def test_the_core_needs_numpy_msgpack_tqdm_and_threadpoolctl_only():
    assert names(PROJECT["dependencies"]) == {"numpy", "msgpack", "tqdm", "threadpoolctl"}


def test_ipython_is_the_notebook_extras():
    extras = PROJECT["optional-dependencies"]
    assert "ipython" in names(extras["notebook"])
    assert {"ipython", "ipykernel", "nbclient", "nbformat", "pytest"} <= names(extras["test"])


CLI_WITHOUT_IPYTHON = """
import sys
sys.modules["IPython"] = None  # `import IPython` now raises ImportError, as where it is not installed
from rnnpipe.cli import main

model, text = sys.argv[1], sys.argv[2]
status = main(["train", "-q", "-m", model, "--hidden", "16", "--seq-length", "10", "--batch-size", "4", text])
if status:
    sys.exit(f"train exited {status}")
status = main(["sample", "-m", model, "-n", "50", "--prime", "to be", "--seed", "1"])
if status:
    sys.exit(f"sample exited {status}")
assert not any(name == "IPython" or name.startswith("IPython.") for name, m in sys.modules.items() if m), "imported"
"""


def test_the_cli_trains_and_samples_without_ipython(tmp_path):
    text = tmp_path / "hamlet.txt"
    text.write_text("to be, or not to be, that is the question.\n" * 40, encoding="utf-8")
    model = tmp_path / "m.msgpack"
    r = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(CLI_WITHOUT_IPYTHON), str(model), str(text)],
        capture_output=True,
        timeout=120,
        stdin=subprocess.DEVNULL,
        cwd=tmp_path,
    )
    assert r.returncode == 0, r.stderr.decode()
    assert model.exists()
    sample = r.stdout.decode("utf-8")
    assert sample.startswith("to be")
    assert len(sample) - len("to be") in (50, 51)  # 50 characters, and maybe a newline to end on
