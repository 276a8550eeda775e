"""Overlap and surface-distance metrics of binary masks.

Conventions, chosen so that every pair of masks gets a defined value where one exists:

* Dice of two empty masks is 1.0 (both agree that the structure is absent).
* Surface voxels are the mask voxels that have at least one background neighbour
  sharing a face with them. Voxels on the array border count as surface, because the
  area outside the array is treated as background.
* Distances are Euclidean, in mm, between voxel centres, using the voxel spacing.
* The metrics are symmetric. The distances from each surface voxel of the prediction
  to the nearest surface voxel of the reference, and those of the reference to the
  prediction, are pooled into one set. HD95 is the 95th percentile of that set
  (numpy's default linear interpolation) and ASD is its mean.
* Both masks empty: HD95 and ASD are 0.0. Exactly one empty: both are nan, because no
  distance to an absent surface exists.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
from scipy import ndimage


def _as_mask_pair(pred_mask, ref_mask) -> tuple[np.ndarray, np.ndarray]:
    pred = np.asarray(pred_mask).astype(bool, copy=False)
    ref = np.asarray(ref_mask).astype(bool, copy=False)
    if pred.shape != ref.shape:
        raise ValueError(f"Mask shapes differ: prediction {pred.shape}, reference {ref.shape}. Expected equal shapes.")
    return pred, ref


def dice(pred_mask: np.ndarray, ref_mask: np.ndarray) -> float:
    """Compute the Dice coefficient ``2 |P ∩ R| / (|P| + |R|)`` of two binary masks.

    Parameters
    ----------
    pred_mask, ref_mask : ndarray
        Masks of equal shape, any number of dimensions. Nonzero values are foreground.

    Returns
    -------
    float
        Value in [0, 1], and 1.0 when both masks are empty.
    """
    pred, ref = _as_mask_pair(pred_mask, ref_mask)
    total = int(pred.sum()) + int(ref.sum())
    if total == 0:
        return 1.0
    return 2.0 * int(np.logical_and(pred, ref).sum()) / total


def _surface(mask: np.ndarray) -> np.ndarray:
    structure = ndimage.generate_binary_structure(mask.ndim, 1)
    return mask & ~ndimage.binary_erosion(mask, structure=structure, border_value=0)


def _crop_to_union(pred: np.ndarray, ref: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Crop both masks to their joint bounding box plus one voxel, which leaves the distances unchanged."""
    coordinates = np.nonzero(pred | ref)
    slices = tuple(
        slice(max(int(axis.min()) - 1, 0), min(int(axis.max()) + 2, size))
        for axis, size in zip(coordinates, pred.shape)
    )
    return pred[slices], ref[slices]


def _distances_to_surface(from_surface: np.ndarray, to_surface: np.ndarray, spacing) -> np.ndarray:
    distance_map = ndimage.distance_transform_edt(~to_surface, sampling=spacing)
    return distance_map[from_surface]


def surface_distances(
    pred_mask: np.ndarray,
    ref_mask: np.ndarray,
    spacing: Sequence[float],
) -> tuple[float, float]:
    """Compute the symmetric 95th-percentile Hausdorff distance and average surface distance.

    Parameters
    ----------
    pred_mask, ref_mask : ndarray
        Masks of equal shape, 2D ``(Y, X)`` or 3D ``(Z, Y, X)``. Nonzero values are foreground.
    spacing : sequence of float
        Voxel size along each array axis in mm, in the same order as the array axes.

    Returns
    -------
    hd95_mm : float
        95th percentile of the pooled surface distances, in mm.
    asd_mm : float
        Mean of the pooled surface distances, in mm.

    Notes
    -----
    Both empty: ``(0.0, 0.0)``. Exactly one empty: ``(nan, nan)``. See the module
    docstring for the surface and pooling conventions.
    """
    pred, ref = _as_mask_pair(pred_mask, ref_mask)
    spacing = tuple(float(value) for value in spacing)
    if len(spacing) != pred.ndim or not all(np.isfinite(value) and value > 0 for value in spacing):
        raise ValueError(
            f"Invalid spacing {spacing} for masks of shape {pred.shape}: expected {pred.ndim} positive values in mm."
        )
    pred_empty, ref_empty = not pred.any(), not ref.any()
    if pred_empty and ref_empty:
        return 0.0, 0.0
    if pred_empty or ref_empty:
        return float("nan"), float("nan")

    pred, ref = _crop_to_union(pred, ref)
    pred_surface, ref_surface = _surface(pred), _surface(ref)
    pooled = np.concatenate(
        [
            _distances_to_surface(pred_surface, ref_surface, spacing),
            _distances_to_surface(ref_surface, pred_surface, spacing),
        ]
    )
    return float(np.percentile(pooled, 95)), float(pooled.mean())
