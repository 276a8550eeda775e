"""napari writer that saves a Labels layer as NIfTI, NRRD or MHA with the geometry of its layer."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np

from nnsam_engine.dataset.io import write_image

from ._geometry import geometry_from_attributes

logger = logging.getLogger(__name__)

#: File endings the labels writer saves; matches the writer's filename extensions in napari.yaml.
WRITER_ENDINGS = (".nii.gz", ".nii", ".nrrd", ".mha")


def writer_ending(path: str | Path) -> str | None:
    """Return the ending of ``path`` in ``WRITER_ENDINGS`` (``.nii.gz`` counts as one), or None."""
    name = Path(path).name.lower()
    for ending in WRITER_ENDINGS:
        if name.endswith(ending):
            return ending
    return None


def label_array(data: Any, path: str | Path) -> np.ndarray:
    """Convert labels to the smallest of uint8, uint16 and int32 that contains their values.

    Parameters
    ----------
    data : array-like
        Integer, boolean, or float with whole-number values.
    path : str or Path
        File being written, named in error messages.

    Raises
    ------
    ValueError
        If the array is empty, holds fractional values, or its values do not fit int32.
    """
    array = np.asarray(data)
    if array.size == 0:
        raise ValueError(f"Cannot save empty labels (shape {array.shape}) to {path}. The layer contains no data.")
    if array.dtype == bool:
        return array.astype(np.uint8)
    if not np.issubdtype(array.dtype, np.integer):
        if not np.issubdtype(array.dtype, np.floating) or not np.all(np.mod(array, 1) == 0):
            raise ValueError(f"Cannot save labels of dtype {array.dtype} with non-integer values to {path}. "
                             "Expected whole-number label values. Round or cast the layer data to integers first.")

    low, high = array.min(), array.max()
    if low >= 0 and high <= np.iinfo(np.uint8).max:
        return array.astype(np.uint8, copy=False)
    if low >= 0 and high <= np.iinfo(np.uint16).max:
        return array.astype(np.uint16, copy=False)
    limits = np.iinfo(np.int32)
    if low >= limits.min and high <= limits.max:
        return array.astype(np.int32, copy=False)
    raise ValueError(f"Cannot save labels with values from {low} to {high} to {path}. Expected values within "
                     f"int32 ({limits.min} to {limits.max}). Relabel the layer to smaller label values.")


def write_labels(path: str, data: Any, attributes: dict[str, Any]) -> list[str]:
    """Write a Labels layer to a NIfTI, NRRD or MHA file with its world geometry.

    Parameters
    ----------
    path : str
        Target file ending in ``.nii.gz``, ``.nii``, ``.nrrd`` or ``.mha``.
    data : array-like or list of array-like
        ``(Z, Y, X)`` or ``(Y, X)`` labels. For multiscale data only the first,
        full-resolution level is written.
    attributes : dict
        Layer state from napari (``scale``, ``translate``, ``rotate``, ``shear``,
        ``affine``, ``metadata``). See
        :func:`napari_nnsam._geometry.geometry_from_attributes` for how it becomes
        the file's spacing, origin and direction.

    Returns
    -------
    list of str
        The written path. The file is replaced atomically, so a failed write
        leaves an existing file untouched.

    Raises
    ------
    ValueError
        If the ending is not supported or the labels cannot be stored (see :func:`label_array`).

    Notes
    -----
    NIfTI headers store spacing and origin as float32, so 0.1 mm reads back as
    0.10000000149 mm. NRRD and MHA store them as decimal text and keep float64 values.
    """
    if writer_ending(path) is None:
        raise ValueError(f"Cannot save labels to {path}: unsupported file ending {Path(path).suffix or '(none)'!r}. "
                         f"Expected one of {', '.join(WRITER_ENDINGS)}. Choose a file name with one of them.")
    if attributes.get("multiscale") or isinstance(data, (list, tuple)):
        logger.info("Saving only the full-resolution level of multiscale labels to %s", path)
        data = data[0]
    array = label_array(data, path)
    try:
        geometry = geometry_from_attributes(attributes, ndim=array.ndim)
    except ValueError as error:
        raise ValueError(f"Cannot save labels to {path}: {error}") from error
    write_image(path, array, geometry)
    logger.info("Saved labels %s (dtype %s, spacing %s mm) to %s", array.shape, array.dtype, geometry.spacing, path)
    return [str(path)]
