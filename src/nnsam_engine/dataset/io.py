"""Reading and writing images with their geometry.

Arrays use SimpleITK's axis order: ``(Z, Y, X)`` for volumes and ``(Y, X)`` for
2D images, with channels (if any) first. ``Geometry.spacing`` follows the array
axes, in mm. ``origin`` and ``direction`` follow ITK's physical convention
(x, y, z world coordinates in LPS, direction as a row-major matrix whose columns
are the directions of the image's x, y, z index axes), exactly as SimpleITK's
``GetOrigin`` and ``GetDirection`` return them.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..atomic import atomic_path
from ..errors import DatasetError

#: File endings that nnU-Net's readers handle and this module reads with SimpleITK.
SUPPORTED_ENDINGS = (".nii.gz", ".nii", ".nrrd", ".mha", ".mhd", ".png", ".bmp", ".tif", ".tiff")


@dataclass(frozen=True)
class Geometry:
    """Voxel grid of an image.

    Attributes
    ----------
    spacing : tuple of float
        Voxel size along each array axis, in mm, ``(Z, Y, X)`` or ``(Y, X)``.
    origin : tuple of float
        World position of voxel 0 in mm, ITK order ``(x, y, z)``.
    direction : tuple of float
        Row-major ITK direction matrix (9 values in 3D, 4 in 2D).
    """

    spacing: tuple[float, ...]
    origin: tuple[float, ...]
    direction: tuple[float, ...]

    @property
    def ndim(self) -> int:
        return len(self.spacing)

    @classmethod
    def identity(cls, spacing: tuple[float, ...]) -> "Geometry":
        """Return a geometry with the given spacing, origin 0 and identity direction."""
        ndim = len(spacing)
        return cls(tuple(float(s) for s in spacing), (0.0,) * ndim, tuple(np.eye(ndim).ravel().tolist()))

    def direction_matrix(self) -> np.ndarray:
        """Return the direction as an ``(ndim, ndim)`` array."""
        return np.asarray(self.direction, dtype=float).reshape(self.ndim, self.ndim)

    def to_sitk(self, image) -> None:
        """Set this geometry on a SimpleITK image in place."""
        image.SetSpacing(tuple(reversed(self.spacing)))
        image.SetOrigin(self.origin)
        image.SetDirection(self.direction)

    @classmethod
    def from_sitk(cls, image) -> "Geometry":
        """Read the geometry of a SimpleITK image."""
        return cls(
            tuple(float(s) for s in reversed(image.GetSpacing())),
            tuple(float(o) for o in image.GetOrigin()),
            tuple(float(d) for d in image.GetDirection()),
        )

    def as_dict(self) -> dict:
        return {"spacing": list(self.spacing), "origin": list(self.origin), "direction": list(self.direction)}


def file_ending(path: os.PathLike | str) -> str:
    """Return the ending of ``path`` that names its format (``.nii.gz`` counts as one)."""
    name = Path(path).name.lower()
    for ending in SUPPORTED_ENDINGS:
        if name.endswith(ending):
            return ending
    return Path(path).suffix.lower()


def read_image(path: os.PathLike | str) -> tuple[np.ndarray, Geometry]:
    """Read an image file and its geometry.

    Parameters
    ----------
    path : path-like
        NIfTI, NRRD, MHA/MHD or a 2D format (PNG, BMP, TIFF).

    Returns
    -------
    array : ndarray
        ``(Z, Y, X)`` or ``(Y, X)``; vector pixels (RGB) are put last as ``(..., C)``.
    geometry : Geometry
        Spacing (mm), origin and direction. 2D natural images have spacing 1 and no origin.

    Raises
    ------
    DatasetError
        If the file is missing or cannot be read.
    """
    import SimpleITK as sitk

    path = Path(path)
    if not path.is_file():
        raise DatasetError(f"Image file not found: {path}. Check the path and that the file exists.")
    try:
        image = sitk.ReadImage(str(path))
    except RuntimeError as error:
        first_line = str(error).strip().splitlines()[-1] if str(error).strip() else "unknown reason"
        raise DatasetError(
            f"Cannot read image {path}: {first_line}. Expected a readable NIfTI, NRRD, MHA or PNG/TIFF file; "
            "check that the file is complete and not corrupted."
        ) from error
    return sitk.GetArrayFromImage(image), Geometry.from_sitk(image)


def write_image(path: os.PathLike | str, array: np.ndarray, geometry: Geometry) -> None:
    """Write ``array`` with ``geometry`` to ``path`` atomically; the format follows the extension."""
    import SimpleITK as sitk

    array = np.asarray(array)
    if array.ndim != geometry.ndim:
        raise ValueError(f"Array has {array.ndim} dimensions but the geometry has {geometry.ndim}.")
    image = sitk.GetImageFromArray(array)
    geometry.to_sitk(image)
    with atomic_path(path) as tmp:
        sitk.WriteImage(image, str(tmp), useCompression=True)
