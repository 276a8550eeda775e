"""A stand-in for MobileSAM with known answers, for tests of prompt geometry and propagation.

Random MobileSAM weights give masks unrelated to the image, so tests that check where a
mask lands use this segmenter. It returns the connected bright region (above 127 in
SAM's 0-255 input) under the positive points, limited to the box when one is given.
"""

import time

import numpy as np
from scipy import ndimage

from nnsam_engine.annotation.results import (
    LOW_RES_MASK_SIZE,
    PromptResult,
    SliceEmbedding,
)


class ThresholdSegmenter:
    weights_id = "threshold-stand-in"
    random_weights = False
    device = "cpu"

    def __init__(self):
        self.embedded = 0
        self.calls = []

    def embed(self, rgb: np.ndarray) -> SliceEmbedding:
        self.embedded += 1
        return SliceEmbedding(features=rgb[..., 0].astype(np.float32), original_size=rgb.shape[:2],
                              input_size=rgb.shape[:2])

    def predict(self, embedding, points=None, labels=None, box=None, mask_input=None) -> PromptResult:
        self.calls.append((None if points is None else np.array(points), None if labels is None else np.array(labels),
                           None if box is None else np.array(box)))
        bright = embedding.features > 127
        components, _ = ndimage.label(bright)
        mask = np.zeros(bright.shape, dtype=bool)
        if points is not None:
            for point, label in zip(np.asarray(points), np.asarray(labels)):
                row, column = (round(float(value)) for value in point)
                inside = 0 <= row < bright.shape[0] and 0 <= column < bright.shape[1]
                if label == 1 and inside and components[row, column]:
                    mask |= components == components[row, column]
        if box is not None:
            row_min, column_min, row_max, column_max = (round(float(value)) for value in box)
            in_box = np.zeros_like(mask)
            in_box[max(row_min, 0):row_max + 1, max(column_min, 0):column_max + 1] = True
            mask = (mask if points is not None else bright) & in_box
        return PromptResult(mask=mask, score=1.0, logits=np.zeros((LOW_RES_MASK_SIZE,) * 2, dtype=np.float32))


class SlowSegmenter(ThresholdSegmenter):
    """The stand-in with 0.3 s per embedding, so a propagation is still running when a test acts on it."""

    def embed(self, rgb: np.ndarray) -> SliceEmbedding:
        time.sleep(0.3)
        return super().embed(rgb)


def ellipsoid(shape, centre, radii) -> np.ndarray:
    """Return a bool ellipsoid mask of ``shape``."""
    grids = np.ogrid[tuple(slice(0, size) for size in shape)]
    distance = sum(((grid - c) / r) ** 2 for grid, c, r in zip(grids, centre, radii))
    return distance <= 1.0
