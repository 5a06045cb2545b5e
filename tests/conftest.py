import pytest
from texts import kafka_text


@pytest.fixture(scope="session")
def kafka():
    """Kafka's Metamorphosis and the Gutenberg licence after it, from examples/kafka.txt."""
    return kafka_text()
