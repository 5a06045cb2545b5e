import os
import signal

import pytest
from cli_util import TINY, run
from hypothesis import settings
from texts import SHAKESPEARE_FILE, kafka_text

# `python -m pytest` must give the same verdict on every run: hypothesis draws
# its examples from a seed fixed per test ("ci"), and keeps no database that
# could replay an example found on another run. The random search is a
# separate command, HYPOTHESIS_PROFILE=explore (docs/reliability.md).
settings.register_profile("ci", derandomize=True, database=None, print_blob=True)
settings.register_profile("explore", derandomize=False, print_blob=True)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))


def pytest_configure(config):
    # A shell starting CI in the background (`bash .ci/run &`) ignores SIGINT
    # for it, every process it starts inherits that, and rnnpipe rightly
    # leaves an ignored SIGINT ignored (as nohup asks); the tests that send
    # SIGINT to rnnpipe need it heard, so their children start with it
    # restored (a handler, unlike SIG_IGN, does not survive exec).
    if os.name == "posix" and signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)
    config.addinivalue_line(
        "markers",
        "posix(why): needs POSIX (real signals such as SIGKILL, pty, fcntl, chmod modes, /dev); "
        "elsewhere (Windows) it is skipped, and the reason says why",
    )


def pytest_collection_modifyitems(config, items):
    if os.name == "posix":
        return
    for item in items:
        marker = item.get_closest_marker("posix")
        if marker is not None:
            why = marker.args[0] if marker.args else "POSIX only"
            item.add_marker(pytest.mark.skip(reason=f"needs POSIX: {why}"))


@pytest.fixture(scope="session")
def kafka():
    """Kafka's Metamorphosis and the Gutenberg licence after it, from examples/kafka.txt."""
    return kafka_text()


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    """A tiny model trained on a few kB of Shakespeare, through the command line."""
    path = tmp_path_factory.mktemp("small") / "s.msgpack"
    r = run("train", "-m", path, *TINY, "-q", input=SHAKESPEARE_FILE.read_text()[:8000])
    assert r.returncode == 0, r.stderr
    return path


@pytest.fixture(scope="module")
def scored(tmp_path_factory):
    """A tiny model trained for one pass over 20 kB of Shakespeare, through the
    command line: what rnnpipe score's tests and examples score with (one a module)."""
    path = tmp_path_factory.mktemp("score") / "s.msgpack"
    r = run("train", "-m", path, *TINY, "-q", input=SHAKESPEARE_FILE.read_text()[:20000])
    assert r.returncode == 0, r.stderr
    return path
