"""Slices and prompts of the SAM annotation widget, in the array indices of the image layer.

Prompts are stored in napari Points and Shapes layers. Each position is converted from
the prompt layer's data coordinates to world coordinates and then to the image layer's
data coordinates, so scale (including negative scale), translate, rotate, shear and
affine of both layers are respected. The displayed slice of a 3D image is the image
axis that is not displayed; its index comes from the viewer's current world position.

This module needs numpy only; layers and dims are napari objects passed in.
"""

from __future__ import annotations

import itertools

import numpy as np

#: Prompts whose slice coordinate is this close to the displayed slice belong to it (in voxels).
SLICE_TOLERANCE = 0.5
#: World positions of corresponding voxels of two layers that differ less than this are the same.
_WORLD_TOLERANCE = 1e-4


def spatial_shape(layer) -> tuple[int, ...]:
    """Return the spatial shape of an Image or Labels layer (without RGB channels)."""
    if getattr(layer, "multiscale", False):
        raise ValueError(f"Layer {layer.name} is multiscale; SAM annotation needs a single-resolution layer.")
    shape = tuple(int(size) for size in layer.data.shape)
    return shape[:-1] if getattr(layer, "rgb", False) else shape


def check_annotatable(layer) -> None:
    """Raise ValueError unless ``layer`` is a 2D grey or RGB image or a 3D grey volume."""
    shape = spatial_shape(layer)
    if len(shape) not in (2, 3) or (getattr(layer, "rgb", False) and len(shape) != 2):
        kind = "RGB " if getattr(layer, "rgb", False) else ""
        raise ValueError(f"Layer {layer.name} is a {len(shape)}D {kind}image of shape {tuple(layer.data.shape)}; "
                         "SAM annotation works on 2D images and 3D volumes. Split channels or time points into "
                         "separate layers first (right-click the layer > Split Stack).")


def slicing_axis(layer, dims) -> int | None:
    """Return the image axis that the 2D view slices through, or None for a 2D image.

    Raises
    ------
    ValueError
        If the viewer is in 3D view or does not display two of the image's axes.
    """
    ndim = len(spatial_shape(layer))
    if ndim == 2:
        return None
    if dims.ndisplay != 2:
        raise ValueError("SAM annotation works on 2D slices: switch the viewer to 2D view (Ctrl+Y).")
    offset = dims.ndim - ndim
    displayed = [axis - offset for axis in dims.displayed if axis >= offset]
    if len(displayed) != 2:
        raise ValueError(f"The viewer displays world axes {tuple(dims.displayed)}, which are not two axes of layer "
                         f"{layer.name}. Display two of its axes to annotate it.")
    return next(axis for axis in range(ndim) if axis not in displayed)


def current_slice(layer, dims, axis: int | None) -> int | None:
    """Return the index of the displayed slice along ``axis``, or None if the view is outside the image."""
    if axis is None:
        return 0
    position = np.asarray(layer.world_to_data(np.asarray(dims.point, dtype=float)), dtype=float)
    index = int(np.floor(position[axis] + 0.5))
    return index if 0 <= index < spatial_shape(layer)[axis] else None


def transform_kwargs(layer) -> dict:
    """Return the scale, translate, rotate, shear and affine of ``layer``, for a layer that must lie over it."""
    return {
        "scale": np.asarray(layer.scale),
        "translate": np.asarray(layer.translate),
        "rotate": np.asarray(layer.rotate),
        "shear": np.asarray(layer.shear),
        "affine": np.asarray(layer.affine.affine_matrix),
    }


def to_image_data(image_layer, prompt_layer, coordinates: np.ndarray) -> np.ndarray:
    """Convert ``(N, D)`` data coordinates of ``prompt_layer`` to data coordinates of ``image_layer``."""
    coordinates = np.asarray(coordinates, dtype=float).reshape(-1, prompt_layer.ndim)
    converted = [np.asarray(image_layer.world_to_data(np.asarray(prompt_layer.data_to_world(row), dtype=float)),
                            dtype=float) for row in coordinates]
    return np.array(converted, dtype=float).reshape(-1, image_layer.ndim)


def in_plane(coordinates: np.ndarray, axis: int | None, index: int) -> np.ndarray:
    """Return the ``(row, column)`` positions of the coordinates that lie on slice ``index`` of ``axis``."""
    coordinates = np.asarray(coordinates, dtype=float)
    if axis is None:
        return coordinates.reshape(-1, 2)
    on_slice = np.abs(coordinates[:, axis] - index) <= SLICE_TOLERANCE
    return np.delete(coordinates[on_slice], axis, axis=1)


def slice_key(axis: int | None, index: int, ndim: int) -> tuple:
    """Return the index tuple that selects slice ``index`` of ``axis`` in an ``ndim`` array."""
    if axis is None:
        return (slice(None),) * ndim
    return (slice(None),) * axis + (index,)


def same_geometry(first, second) -> bool:
    """Return whether two layers have the same spatial shape and put every voxel at the same world position."""
    shape = spatial_shape(first)
    if shape != spatial_shape(second):
        return False
    for corner in itertools.product(*[(0, size - 1) for size in shape]):
        first_world = np.asarray(first.data_to_world(np.asarray(corner, dtype=float)), dtype=float)
        second_world = np.asarray(second.data_to_world(np.asarray(corner, dtype=float)), dtype=float)
        if not np.allclose(first_world, second_world, atol=_WORLD_TOLERANCE, rtol=0):
            return False
    return True
