"""Propagation of a 2D mask through the neighbouring slices of a volume.

Starting from a seed mask on one slice, each next slice is prompted with the box and
an inner point of the previous slice's mask. Propagation goes up and down until the
object ends or a stop rule fires; a mask that breaks a rule is not kept.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from .results import PromptResult


@dataclass(frozen=True)
class PropagationSettings:
    """Stop rules of :func:`propagate`.

    Attributes
    ----------
    max_slices : int
        Largest number of slices segmented on each side of the seed; 0 means up to the volume's edge.
    min_area_fraction : float
        The object has ended when a mask is smaller than this fraction of the previous slice's mask.
    min_pixels : int
        The object has ended when a mask has fewer pixels than this.
    max_growth : float
        Stop when a mask is more than this many times larger than the previous one (the mask likely leaks).
    min_overlap : float
        Stop when less than this fraction of a mask overlaps the previous mask (it jumped to another structure).
    min_score : float
        Stop when SAM's predicted IoU of a mask is below this value.
    box_margin : float
        Margin added to each side of the previous mask's bounding box, as a fraction of its size (at least 2 pixels).
    """

    max_slices: int = 0
    min_area_fraction: float = 0.1
    min_pixels: int = 4
    max_growth: float = 3.0
    min_overlap: float = 0.2
    min_score: float = 0.5
    box_margin: float = 0.1


@dataclass(frozen=True)
class SlicePrompt:
    """Prompts derived from a mask: one positive point and a bounding box, in (row, column) indices."""

    points: np.ndarray
    labels: np.ndarray
    box: np.ndarray


@dataclass(frozen=True)
class PropagatedSlice:
    """Mask kept for one slice."""

    index: int
    mask: np.ndarray
    score: float


@dataclass(frozen=True)
class PropagationStop:
    """End of propagation in one direction (+1 towards higher slice indices, -1 towards lower)."""

    direction: int
    index: int
    reason: str


def prompt_from_mask(mask: np.ndarray, box_margin: float = 0.1) -> SlicePrompt:
    """Return a positive point at the innermost pixel of the largest component, and a padded bounding box."""
    mask = np.asarray(mask, dtype=bool)
    if not mask.any():
        raise ValueError("Cannot build a prompt from an empty mask.")
    components, count = ndimage.label(mask)
    if count > 1:
        sizes = np.bincount(components.ravel())[1:]
        largest = components == (int(np.argmax(sizes)) + 1)
    else:
        largest = mask
    # The pixel farthest from the background lies inside even a concave or ring-shaped object.
    distance = ndimage.distance_transform_edt(np.pad(largest, 1))[1:-1, 1:-1]
    point = np.array(np.unravel_index(int(np.argmax(distance)), mask.shape), dtype=np.float64)

    rows, columns = np.nonzero(mask)
    low = np.array([rows.min(), columns.min()], dtype=np.float64)
    high = np.array([rows.max(), columns.max()], dtype=np.float64)
    margin = np.maximum(2.0, (high - low + 1) * box_margin)
    limit = np.array(mask.shape, dtype=np.float64) - 1
    low = np.clip(low - margin, 0, None)
    high = np.minimum(high + margin, limit)
    return SlicePrompt(points=point[None], labels=np.array([1]), box=np.concatenate([low, high]))


def _stop_reason(result: PromptResult, previous: np.ndarray, index: int, settings: PropagationSettings) -> str | None:
    area = int(result.mask.sum())
    previous_area = int(previous.sum())
    min_area = max(settings.min_pixels, settings.min_area_fraction * previous_area)
    if area < min_area:
        return f"the object ended at slice {index}: mask of {area} pixels, below {min_area:.0f}"
    if result.score < settings.min_score:
        return (f"low confidence at slice {index}: predicted IoU {result.score:.2f}, "
                f"below the minimum {settings.min_score:.2f}")
    if area > settings.max_growth * previous_area:
        return (f"the mask grew from {previous_area} to {area} pixels at slice {index}, more than "
                f"{settings.max_growth:g} times, so it likely leaks into a neighbouring structure")
    overlap = int(np.logical_and(result.mask, previous).sum()) / area
    if overlap < settings.min_overlap:
        return (f"the mask moved at slice {index}: {overlap:.0%} of it overlaps the previous slice's mask, "
                f"below {settings.min_overlap:.0%}")
    return None


def propagate(
    seed_mask: np.ndarray,
    start: int,
    n_slices: int,
    segment: Callable[[int, SlicePrompt], PromptResult | None],
    settings: PropagationSettings = PropagationSettings(),
    directions: tuple[int, ...] = (1, -1),
) -> Iterator[PropagatedSlice | PropagationStop]:
    """Segment the slices next to ``start`` one by one, prompting each from its neighbour's mask.

    Parameters
    ----------
    seed_mask : ndarray
        bool mask of the object on slice ``start``.
    n_slices : int
        Number of slices in the volume.
    segment : callable
        ``segment(index, prompt)`` returns the :class:`PromptResult` for slice ``index``,
        or None when the caller cancelled (propagation then ends).
    directions : tuple of int
        ``1`` (higher indices), ``-1`` (lower indices) or both, in the order run.

    Yields
    ------
    PropagatedSlice or PropagationStop
        Each kept mask, then one stop per direction with its reason. Nothing more is
        yielded after a cancelled ``segment`` call.
    """
    seed_mask = np.asarray(seed_mask, dtype=bool)
    if not seed_mask.any():
        raise ValueError(f"The seed mask on slice {start} is empty: accept a mask on this slice first.")
    for direction in directions:
        previous = seed_mask
        index = start
        steps = 0
        while True:
            index += direction
            if not 0 <= index < n_slices:
                edge = "last" if direction > 0 else "first"
                yield PropagationStop(direction, index - direction, f"reached the {edge} slice ({index - direction})")
                break
            if settings.max_slices and steps >= settings.max_slices:
                yield PropagationStop(direction, index - direction,
                                      f"reached the limit of {settings.max_slices} slices")
                break
            result = segment(index, prompt_from_mask(previous, settings.box_margin))
            if result is None:
                return
            reason = _stop_reason(result, previous, index, settings)
            if reason is not None:
                yield PropagationStop(direction, index, reason)
                break
            yield PropagatedSlice(index, result.mask, result.score)
            previous = result.mask
            steps += 1
