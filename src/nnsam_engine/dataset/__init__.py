"""Raw nnU-Net v2 datasets: reading images and checking a dataset before training."""

from .check import check_dataset, require_valid_dataset
from .io import SUPPORTED_ENDINGS, Geometry, file_ending, read_image, write_image
from .report import CheckReport, Problem

__all__ = [
    "SUPPORTED_ENDINGS",
    "CheckReport",
    "Geometry",
    "Problem",
    "check_dataset",
    "file_ending",
    "read_image",
    "require_valid_dataset",
    "write_image",
]
