"""Conversions between the engine's image geometry and napari layer parameters.

napari orders world axes like the array, ``(Z, Y, X)``, while ITK gives the
origin and the direction in ``(x, y, z)`` world order. With ``P`` the matrix
that reverses the axis order, a voxel at array index ``d`` (``(Z, Y, X)``
order) lies at the napari world position ``P @ origin + D' @ diag(spacing) @ d``,
where ``D' = P @ direction @ P`` is the direction matrix in array axis order.

Two cases map this onto a layer:

* Axis-aligned direction (``D'`` diagonal with entries +-1, the usual case,
  e.g. diag(-1, -1, 1) in LPS NIfTI files): the signs go into ``scale``, so
  ``scale = sign * spacing`` can be negative and ``translate`` is the reversed
  origin. The layer has no ``affine``.
* Oblique direction: ``scale`` is the spacing, ``affine`` contains ``D'`` as its
  linear part with a zero translation, and ``translate = inv(D') @ P @ origin``,
  so that ``affine`` applied after scale and translate places every voxel at
  its world position. NOTE: napari 0.9 shows an oblique affine exactly in 3D
  view only. In 2D view it warns "Non-orthogonal slicing is being requested"
  and draws the slice without the rotation out of the displayed plane.

The full geometry is also stored in the layer metadata under
``"nnsam_geometry"``. When a layer is saved, the geometry is computed from the
layer's current transform, and the stored values replace the computed ones
only when both agree within a tolerance, so float32 values read from a file
survive a round trip bit for bit.

This module needs only numpy and the engine's Geometry, so it imports neither napari nor torch.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import numpy as np

from nnsam_engine.dataset.io import Geometry

logger = logging.getLogger(__name__)

#: Metadata key of the geometry a layer was read with (a ``Geometry.as_dict()`` dict).
GEOMETRY_KEY = "nnsam_geometry"
#: Metadata key of the file a layer was read from (str or None).
SOURCE_KEY = "source_path"

# Directions whose entries are this close to 0 or +-1 count as axis-aligned.
_AXIS_ALIGNED_TOLERANCE = 1e-6
# Stored and computed geometries that agree this closely (mm, or unitless for
# the direction) are the same, so the stored, exact values are kept.
_MATCH_TOLERANCE = 1e-6


def _reversed_axes(matrix: np.ndarray) -> np.ndarray:
    """Return ``P @ matrix @ P`` for the axis-reversing permutation ``P``."""
    return np.asarray(matrix, dtype=float)[::-1, ::-1]


def axis_signs(direction_array_order: np.ndarray) -> np.ndarray | None:
    """Return the diagonal signs of an axis-aligned direction, or None for an oblique one.

    Parameters
    ----------
    direction_array_order : (N, N) ndarray
        Direction matrix with rows and columns in array axis order.
    """
    matrix = np.asarray(direction_array_order, dtype=float)
    diagonal = np.diag(matrix)
    off_diagonal = matrix - np.diag(diagonal)
    if np.any(np.abs(off_diagonal) > _AXIS_ALIGNED_TOLERANCE):
        return None
    if np.any(np.abs(np.abs(diagonal) - 1.0) > _AXIS_ALIGNED_TOLERANCE):
        return None
    return np.sign(diagonal)


def layer_kwargs(geometry: Geometry, name: str, source_path: str | None = None) -> dict[str, Any]:
    """Build napari layer keyword arguments that place an image at its world position.

    Parameters
    ----------
    geometry : Geometry
        Spacing in mm in array axis order ``(Z, Y, X)`` or ``(Y, X)``, origin and
        direction in ITK ``(x, y, z)`` order.
    name : str
        Layer name.
    source_path : str, optional
        File the image was read from, stored in the metadata.

    Returns
    -------
    dict
        ``name``, ``scale`` and ``translate`` (mm, array axis order) and
        ``metadata`` with the keys ``"nnsam_geometry"`` and ``"source_path"``.
        An oblique direction adds ``affine``, an ``(N + 1, N + 1)`` homogeneous
        matrix with a zero translation. See the module docstring for the mapping.
    """
    spacing = np.asarray(geometry.spacing, dtype=float)
    origin_array_order = np.asarray(geometry.origin, dtype=float)[::-1]
    direction = _reversed_axes(geometry.direction_matrix())
    kwargs: dict[str, Any] = {
        "name": name,
        "metadata": {GEOMETRY_KEY: geometry.as_dict(), SOURCE_KEY: source_path},
    }
    signs = axis_signs(direction)
    if signs is not None:
        kwargs["scale"] = tuple((signs * spacing).tolist())
        kwargs["translate"] = tuple(origin_array_order.tolist())
        return kwargs

    affine = np.eye(geometry.ndim + 1)
    affine[:-1, :-1] = direction
    kwargs["scale"] = tuple(spacing.tolist())
    kwargs["translate"] = tuple(np.linalg.solve(direction, origin_array_order).tolist())
    kwargs["affine"] = affine
    return kwargs


def _attribute(attributes: Mapping[str, Any], key: str, default: np.ndarray) -> np.ndarray:
    value = attributes.get(key)
    return default if value is None else np.asarray(value, dtype=float)


def _shear_matrix(shear: Any, ndim: int) -> np.ndarray:
    """Return napari's shear as a matrix. napari stores it as the upper-triangle values or as a full matrix."""
    shear = np.asarray(shear, dtype=float)
    if shear.ndim == 2:
        return shear
    matrix = np.eye(ndim)
    if shear.size:
        matrix[np.triu_indices(ndim, k=1)] = shear
    return matrix


def _world_transform(attributes: Mapping[str, Any]) -> tuple[np.ndarray, np.ndarray]:
    """Return the linear part and offset of a layer's data-to-world transform (array axis order).

    napari applies ``rotate @ shear @ diag(scale)`` and ``translate`` first and
    ``affine`` after them.
    """
    scale = np.asarray(attributes["scale"], dtype=float)
    ndim = scale.size
    translate = _attribute(attributes, "translate", np.zeros(ndim))
    rotate = _attribute(attributes, "rotate", np.eye(ndim))
    shear = _shear_matrix(_attribute(attributes, "shear", np.zeros(0)), ndim)
    affine = attributes.get("affine")
    if hasattr(affine, "affine_matrix"):
        affine = affine.affine_matrix
    affine = np.eye(ndim + 1) if affine is None else np.asarray(affine, dtype=float)

    linear = affine[:-1, :-1] @ rotate @ shear @ np.diag(scale)
    offset = affine[:-1, :-1] @ translate + affine[:-1, -1]
    return linear, offset


def _stored_geometry(metadata: Any, ndim: int) -> Geometry | None:
    """Return the geometry stored in a layer's metadata, or None when absent or malformed."""
    if not isinstance(metadata, Mapping) or not isinstance(metadata.get(GEOMETRY_KEY), Mapping):
        return None
    stored = metadata[GEOMETRY_KEY]
    try:
        geometry = Geometry(
            tuple(float(value) for value in stored["spacing"]),
            tuple(float(value) for value in stored["origin"]),
            tuple(float(value) for value in stored["direction"]),
        )
    except (KeyError, TypeError, ValueError):
        logger.warning("Ignoring malformed layer metadata %r: %r", GEOMETRY_KEY, stored)
        return None
    if geometry.ndim != ndim or len(geometry.origin) != ndim or len(geometry.direction) != ndim * ndim:
        return None
    return geometry


def _geometries_match(first: Geometry, second: Geometry) -> bool:
    return all(
        np.allclose(a, b, rtol=_MATCH_TOLERANCE, atol=_MATCH_TOLERANCE)
        for a, b in ((first.spacing, second.spacing), (first.origin, second.origin),
                     (first.direction, second.direction))
    )


def geometry_from_attributes(attributes: Mapping[str, Any], ndim: int | None = None) -> Geometry:
    """Compute the file geometry that reproduces a layer's world placement.

    Parameters
    ----------
    attributes : mapping
        Layer state as napari passes it to writers: ``scale`` is required;
        ``translate``, ``rotate``, ``shear``, ``affine`` (matrix or napari
        ``Affine``) and ``metadata`` are optional.
    ndim : int, optional
        Expected number of spatial dimensions (of the data, without RGB channels).

    Returns
    -------
    Geometry
        Positive spacing in mm (array axis order). A negative scale becomes a
        flipped direction axis. If the metadata contains a geometry that agrees
        with the layer's transform within 1e-6, that stored geometry is returned.

    Raises
    ------
    ValueError
        If ``scale`` is missing, its length differs from ``ndim``, or the
        transform collapses an axis (a scale of 0).
    """
    if attributes.get("scale") is None:
        raise ValueError(f"Layer attributes contain no 'scale' (keys found: {sorted(attributes)}). "
                         "Pass the layer state that napari gives writers, which always contains 'scale'.")
    linear, offset = _world_transform(attributes)
    layer_ndim = linear.shape[0]
    if ndim is not None and layer_ndim != ndim:
        raise ValueError(f"Layer scale has {layer_ndim} values but the data has {ndim} spatial dimensions. "
                         "Set one scale value per data axis on the layer.")

    spacing = np.linalg.norm(linear, axis=0)
    if np.any(spacing == 0):
        raise ValueError(f"Layer transform maps data axis {int(np.argmin(spacing))} to a single point "
                         f"(scale {list(attributes['scale'])}). Set a non-zero scale on every axis before saving.")
    direction_array_order = linear / spacing
    computed = Geometry(
        tuple(spacing.tolist()),
        tuple(offset[::-1].tolist()),
        tuple(_reversed_axes(direction_array_order).ravel().tolist()),
    )

    stored = _stored_geometry(attributes.get("metadata"), layer_ndim)
    if stored is not None and _geometries_match(stored, computed):
        return stored
    if stored is not None:
        logger.info("Layer transform differs from the geometry it was read with, so the layer's current "
                    "placement %s replaces the stored %s", computed, stored)
    return computed


def geometry_from_layer(layer) -> Geometry:
    """Compute the file geometry that reproduces a napari layer's world placement.

    Parameters
    ----------
    layer : napari.layers.Layer
        Any layer; for an RGB image the colour axis is not counted.

    Returns
    -------
    Geometry
        See :func:`geometry_from_attributes`.
    """
    attributes = {
        "scale": layer.scale,
        "translate": layer.translate,
        "rotate": layer.rotate,
        "shear": layer.shear,
        "affine": layer.affine.affine_matrix,
        "metadata": layer.metadata,
    }
    return geometry_from_attributes(attributes, ndim=layer.ndim)
