"""Shared pytest fixtures."""

import sys
from pathlib import Path

import pytest

# Qt tests draw with Mesa's OpenGL under Xvfb, which loads Mesa's LLVM into this
# process; importing triton (torch._dynamo does, through nnunetv2) afterwards crashes
# it with a segmentation fault. No test needs triton, so it is hidden from the start:
# a None entry in sys.modules makes `import triton` raise ImportError.
sys.modules.setdefault("triton", None)

#: Real nnU-Net raw datasets kept next to the repository, never copied into it.
SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """Return the folder with the real datasets, or skip the test if it is absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real dataset folder {SHARED_DATA} not found; tests on real data need it next to the repository")
    return SHARED_DATA
