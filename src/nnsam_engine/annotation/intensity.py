"""Mapping of image intensities to the 8-bit RGB input that SAM was trained on.

SAM expects a three-channel 0-255 image. Medical images hold CT Hounsfield units or
arbitrary MRI and ultrasound values, so each slice is clipped to an intensity window
(lower, upper), scaled to 0-255 and repeated over three channels. RGB images that are
already 8-bit pass through unchanged.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

#: Percentiles of the default window: robust to a few very bright or dark voxels.
DEFAULT_PERCENTILES = (0.5, 99.5)
#: Voxels sampled to estimate the default window of a large volume.
_PERCENTILE_SAMPLE = 2_000_000


@dataclass(frozen=True)
class Window:
    """Intensity window: values at or below ``lower`` map to 0, at or above ``upper`` to 255."""

    lower: float
    upper: float

    def __post_init__(self):
        if not (math.isfinite(self.lower) and math.isfinite(self.upper)):
            raise ValueError(f"Intensity window ({self.lower}, {self.upper}) must be finite.")
        if self.upper <= self.lower:
            raise ValueError(f"Intensity window upper bound {self.upper} must be greater than its lower bound "
                             f"{self.lower}.")

    @classmethod
    def from_level_width(cls, level: float, width: float) -> Window:
        """Build a window from a radiology level (centre) and width."""
        return cls(level - width / 2.0, level + width / 2.0)


#: Radiology windows for CT in Hounsfield units, as (level, width).
CT_PRESETS = {
    "CT soft tissue": Window.from_level_width(40, 400),
    "CT bone": Window.from_level_width(400, 1800),
    "CT lung": Window.from_level_width(-600, 1500),
    "CT brain": Window.from_level_width(40, 80),
}


def percentile_window(image: np.ndarray, percentiles: tuple[float, float] = DEFAULT_PERCENTILES) -> Window:
    """Return the window between two percentiles of the finite values of ``image``.

    Large images are sampled on a regular stride, so the cost stays near that of two million voxels.
    """
    values = np.asarray(image).ravel()
    if values.size > _PERCENTILE_SAMPLE:
        values = values[:: values.size // _PERCENTILE_SAMPLE]
    values = values[np.isfinite(values)] if np.issubdtype(values.dtype, np.floating) else values
    if values.size == 0:
        return Window(0.0, 1.0)
    lower, upper = (float(value) for value in np.percentile(values, percentiles))
    if upper <= lower:
        # A constant image, or one where most voxels share a value: widen so the window is valid.
        upper = lower + 1.0
    return Window(lower, upper)


def to_sam_rgb(plane: np.ndarray, window: Window | None, rgb: bool = False) -> np.ndarray:
    """Return a 2D ``plane`` as a contiguous ``(H, W, 3)`` uint8 image for SAM.

    Parameters
    ----------
    plane : ndarray
        A ``(H, W)`` grey-value slice, or an ``(H, W, 3|4)`` colour image when ``rgb`` is true.
    window : Window or None
        Intensity window applied to grey values and to colour images that are not uint8.
        Required unless ``plane`` is an 8-bit colour image.
    rgb : bool
        Whether the last axis of ``plane`` contains colour channels (an alpha channel is dropped).
    """
    plane = np.asarray(plane)
    if rgb:
        colour = plane[..., :3]
        if colour.dtype == np.uint8:
            return np.ascontiguousarray(colour)
        return _apply_window(colour, window)
    if plane.ndim != 2:
        raise ValueError(f"Expected a 2D slice, got an array of shape {plane.shape}.")
    grey = _apply_window(plane, window)
    return np.ascontiguousarray(np.repeat(grey[:, :, None], 3, axis=2))


def _apply_window(values: np.ndarray, window: Window | None) -> np.ndarray:
    if window is None:
        raise ValueError("An intensity window is needed to map this image to 0-255.")
    scaled = (values.astype(np.float32) - np.float32(window.lower)) * np.float32(255.0 / (window.upper - window.lower))
    # NaN voxels (missing data) map to 0, like values below the window.
    scaled = np.nan_to_num(scaled, nan=0.0, posinf=255.0, neginf=0.0)
    return np.clip(scaled, 0.0, 255.0).round().astype(np.uint8)
