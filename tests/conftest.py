"""Shared pytest fixtures."""

import os
import sys
from pathlib import Path

import pytest

# Qt tests draw with Mesa's OpenGL under Xvfb, which loads Mesa's LLVM into this
# process; importing triton (torch._dynamo does, through nnunetv2) afterwards crashes
# it with a segmentation fault. No test needs triton, so it is hidden from the start:
# a None entry in sys.modules makes `import triton` raise ImportError.
sys.modules.setdefault("triton", None)

REPOSITORY = Path(__file__).resolve().parents[1]
#: Real nnU-Net raw datasets kept next to the repository, never copied into it.
SHARED_DATA = REPOSITORY.parent / "shared" / "data"
#: Set to 1 to let tests update the README's screenshots and the measured records in benchmarks/results.
RECORD_ENV_VAR = "NNSAM_UPDATE_RECORDS"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """Return the folder with the real datasets, or skip the test if it is absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real dataset folder {SHARED_DATA} not found; tests on real data need it next to the repository")
    return SHARED_DATA


@pytest.fixture
def record_path(tmp_path):
    """Return a function that maps a repository path (``docs/images/x.png``) to where a test writes that record.

    Tests write screenshots and measurements into their temporary folder, so a test run leaves the
    working tree unchanged. With ``NNSAM_UPDATE_RECORDS=1`` they replace the files in the repository.
    """

    def resolve(relative: str) -> Path:
        target = REPOSITORY / relative if os.environ.get(RECORD_ENV_VAR) == "1" else tmp_path / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        return target

    return resolve
