"""The engine choice without torch (issue 12): nothing imports torch unless a
command asks for it, and asking without torch installed is one line that
says how to install it. These run whether torch is installed or not."""

import subprocess
import sys

import pytest
from cli_util import ENV, ROOT, TINY

import rnnpipe.engines as engine


def _python(code, timeout=120):
    return subprocess.run([sys.executable, "-c", code], capture_output=True, timeout=timeout, env=ENV, cwd=ROOT)


def test_rnnpipe_and_a_numpy_training_run_never_import_torch(tmp_path):
    model = tmp_path / "m.msgpack"
    code = f"""
import sys
import rnnpipe, rnnpipe.cli, rnnpipe.options, rnnpipe.engines
from rnnpipe import Config, Model
m = Model.new(Config(hidden=8, batch_size=2, seq_length=5))
m.train("hello world, hello numpy " * 4)
m.evaluate("hello")
m.sample(10, seed=1)
assert rnnpipe.cli.main(["train", "-m", {str(model)!r}, "-q", *{TINY!r}, {str(ROOT / "README.md")!r}]) == 0
assert rnnpipe.cli.main(["sample", "-m", {str(model)!r}, "-n", "5"]) == 0
assert "torch" not in sys.modules, "torch was imported"
"""
    r = _python(code)
    assert r.returncode == 0, r.stderr.decode()


# torch made unimportable, as in an install without the extra
NO_TORCH = "import sys; sys.modules['torch'] = None; from rnnpipe.cli import main; sys.exit(main(sys.argv[1:]))"


@pytest.mark.parametrize("command", ["train", "sample", "eval", "export", "import"])
def test_the_torch_engine_without_torch_is_one_line_naming_the_extra(tmp_path, command):
    model = tmp_path / "m.msgpack"
    text = tmp_path / "t.txt"
    text.write_text("some text to train on " * 20)
    made = subprocess.run([sys.executable, "-m", "rnnpipe", "train", "-m", model, "-q", *TINY, text], env=ENV)
    assert made.returncode == 0
    args = {
        "train": ["train", "-m", model, "--engine", "torch", text],
        "sample": ["sample", "-m", model, "--engine", "torch"],
        "eval": ["eval", "-m", model, "--engine", "torch", text],
        "export": ["export", "-m", model, "--torch", tmp_path / "m.pt"],
        "import": ["import", "--torch", tmp_path / "m.pt", "-m", tmp_path / "new.msgpack"],
    }[command]
    r = subprocess.run([sys.executable, "-c", NO_TORCH, *map(str, args)], capture_output=True, env=ENV, timeout=120)
    err = r.stderr.decode()
    assert r.returncode == 1, err
    assert err.count("\n") == 1 and err.startswith("rnnpipe: error: "), err
    assert "pip install 'rnnpipe[torch]'" in err
    assert r.stdout == b""


def test_device_without_the_torch_engine_is_a_usage_error(tmp_path):
    r = subprocess.run(
        [sys.executable, "-m", "rnnpipe", "train", "-m", tmp_path / "m.msgpack", "--device", "cpu", "x"],
        capture_output=True,
        env=ENV,
        timeout=60,
    )
    assert r.returncode == 2
    assert "--device cpu is for --engine torch" in r.stderr.decode()


def test_torchrun_is_recognised_by_its_variables():
    assert engine.launched({"RANK": "0", "WORLD_SIZE": "2", "LOCAL_RANK": "0"})
    assert not engine.launched({"RANK": "0"})
    assert not engine.launched({})


def test_the_torch_extra_and_ci_install_it():
    import tomllib

    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    assert extras["torch"] == ["torch>=2.1"]
    ci = (ROOT / ".ci" / "run").read_text()
    assert "pip install -q torch==2.13.0" in ci and "'.[test,torch]'" in ci
    assert ci.index("torch==2.13.0") < ci.index("'.[test,torch]'")  # the CPU wheel first
