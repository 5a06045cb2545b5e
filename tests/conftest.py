import os

import pytest
from texts import kafka_text


def pytest_configure(config):
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
