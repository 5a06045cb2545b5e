from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = ROOT.parent / "shared" / "data"


@pytest.fixture(scope="session")
def kafka():
    path = SHARED_DATA / "kafka.txt"
    if not path.exists():
        pytest.skip(f"{path} is not here (it sits beside the repo in CI and the dev checkout)")
    return path.read_text(encoding="utf-8")
