"""Shared pytest fixtures."""

from pathlib import Path

import pytest

#: Real nnU-Net raw datasets kept next to the repository, never copied into it.
SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """Return the folder with the real datasets, or skip the test if it is absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real dataset folder {SHARED_DATA} not found; tests on real data need it next to the repository")
    return SHARED_DATA
