"""napari reader for medical images: NIfTI, NRRD, MHA/MHD, PNG and TIFF with their geometry.

Each file becomes one layer placed at its world position in mm (see
:mod:`napari_nnsam._geometry`). A file opens as a Labels layer when its array
has an integer dtype and either

* its parent folder is named ``labelsTr``, ``labelsTs`` or ``labels`` (the
  nnU-Net raw layout), or
* it has at most 255 distinct values and its name does not end with an
  nnU-Net channel suffix such as ``_0000`` (``case_0000.nii.gz`` is an image).

Every other file opens as an Image layer. Vector pixels with 3 or 4 components
open as an RGB(A) image; other vector pixels open as one Image layer per
component.
"""

from __future__ import annotations

import copy
import logging
import re
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from nnsam_engine.dataset.io import file_ending, read_image

from ._geometry import layer_kwargs

logger = logging.getLogger(__name__)

#: File endings this reader opens; matches the reader's filename patterns in napari.yaml.
READER_ENDINGS = (".nii.gz", ".nii", ".nrrd", ".mha", ".mhd", ".png", ".tif", ".tiff")
#: Parent folder names whose integer files always open as labels.
LABEL_FOLDERS = frozenset({"labelsTr", "labelsTs", "labels"})
#: Largest number of distinct values an integer file outside a label folder may have to open as labels.
MAX_LABEL_VALUES = 255

_CHANNEL_SUFFIX = re.compile(r"_\d{4}$")
# np.bincount counts distinct values fast when their range is at most this large.
_BINCOUNT_RANGE = 1 << 20

LayerDataTuple = tuple[np.ndarray, dict[str, Any], str]


def _is_supported(path: str) -> bool:
    return str(path).lower().endswith(READER_ENDINGS)


def get_reader(path: str | Sequence[str]) -> Callable[[str | Sequence[str]], list[LayerDataTuple]] | None:
    """Return a function that reads ``path``, or None if this plugin cannot read it.

    Parameters
    ----------
    path : str or list of str
        One file or several files; every file must have one of ``READER_ENDINGS``.

    Returns
    -------
    callable or None
        ``read_layers(path) -> list of (data, kwargs, layer_type)``, or None for
        directories and other endings so napari can try another reader.
    """
    paths = [path] if isinstance(path, (str, Path)) else list(path)
    if not paths or not all(_is_supported(str(item)) for item in paths):
        return None
    if any(Path(item).is_dir() for item in paths):
        return None
    return read_layers


def read_layers(path: str | Sequence[str]) -> list[LayerDataTuple]:
    """Read one or several image files into napari layer data tuples.

    Parameters
    ----------
    path : str or list of str
        Files with one of ``READER_ENDINGS``.

    Returns
    -------
    list of (data, kwargs, layer_type)
        One ``"image"`` or ``"labels"`` tuple per file, or one image tuple per
        vector component for non-RGB vector files. Data is ``(Z, Y, X)`` or
        ``(Y, X)``, RGB data ``(Y, X, C)``.

    Raises
    ------
    nnsam_engine.errors.DatasetError
        If a file is missing or cannot be read.
    """
    paths = [path] if isinstance(path, (str, Path)) else list(path)
    layers: list[LayerDataTuple] = []
    for item in paths:
        layers.extend(read_file(Path(item)))
    return layers


def layer_name(path: Path) -> str:
    """Return the file name of ``path`` without its format ending (``case.nii.gz`` -> ``case``)."""
    ending = file_ending(path)
    name = path.name
    return name[: -len(ending)] if ending and name.lower().endswith(ending) else path.stem


def count_distinct_values(array: np.ndarray) -> int:
    """Return the number of distinct values of an integer array."""
    if array.size == 0:
        return 0
    low, high = int(array.min()), int(array.max())
    if high - low < _BINCOUNT_RANGE:
        counts = np.bincount((array.ravel().astype(np.int64) - low), minlength=high - low + 1)
        return int(np.count_nonzero(counts))
    return int(np.unique(array).size)


def is_label_file(path: Path, array: np.ndarray) -> bool:
    """Decide whether a file read as ``array`` opens as a Labels layer (rule in the module docstring)."""
    if not np.issubdtype(array.dtype, np.integer):
        return False
    if path.parent.name in LABEL_FOLDERS:
        return True
    if _CHANNEL_SUFFIX.search(layer_name(path)):
        return False
    return count_distinct_values(array) <= MAX_LABEL_VALUES


def read_file(path: Path) -> list[LayerDataTuple]:
    """Read one image file into napari layer data tuples (see :func:`read_layers`)."""
    array, geometry = read_image(path)
    name = layer_name(path)
    kwargs = layer_kwargs(geometry, name, source_path=str(path))

    if array.ndim == geometry.ndim + 1:
        components = array.shape[-1]
        if components in (3, 4):
            logger.debug("Opening %s as an RGB image with %d components", path, components)
            return [(array, {**kwargs, "rgb": True}, "image")]
        logger.debug("Opening %s as %d image layers, one per vector component", path, components)
        return [
            (array[..., index], {**kwargs, "name": f"{name} [{index}]", "metadata": copy.deepcopy(kwargs["metadata"])},
             "image")
            for index in range(components)
        ]

    if is_label_file(path, array):
        logger.debug("Opening %s as labels", path)
        return [(array, kwargs, "labels")]
    return [(array, kwargs, "image")]
