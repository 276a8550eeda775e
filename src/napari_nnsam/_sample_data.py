"""napari sample data: the engine's synthetic MRI-like phantom with its labels."""

from __future__ import annotations

from typing import Any

import numpy as np

from nnsam_engine.dataset.io import Geometry
from nnsam_engine.dataset.phantom import PHANTOM_SPACING, make_phantom_case

from ._geometry import layer_kwargs

#: World position (mm, ITK x, y, z order) of the phantom's first voxel, the one the engine's phantom dataset uses.
PHANTOM_ORIGIN = (-25.6, -25.6, -16.0)


def make_phantom_sample() -> list[tuple[np.ndarray, dict[str, Any], str]]:
    """Make one phantom volume and its labels as napari layer data tuples.

    Returns
    -------
    list of (data, kwargs, layer_type)
        ``"phantom"``, a float32 ``(16, 64, 64)`` ``(Z, Y, X)`` image, and
        ``"phantom labels"``, uint8 labels (0 background, 1 core, 2 satellite).
        Both have spacing ``PHANTOM_SPACING`` (mm) and origin ``PHANTOM_ORIGIN``.
    """
    image, labels = make_phantom_case(seed=0)
    geometry = Geometry(PHANTOM_SPACING, PHANTOM_ORIGIN, tuple(np.eye(3).ravel().tolist()))
    image_kwargs = {**layer_kwargs(geometry, "phantom"), "colormap": "gray"}
    labels_kwargs = layer_kwargs(geometry, "phantom labels")
    return [(image, image_kwargs, "image"), (labels, labels_kwargs, "labels")]
