"""Results of MobileSAM on one slice: the embedding and a predicted mask.

This module needs numpy only, so the GUI and the cache can use these types without importing PyTorch.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

#: Edge length of SAM's low-resolution mask logits.
LOW_RES_MASK_SIZE = 256


@dataclass(frozen=True)
class SliceEmbedding:
    """SAM image embedding of one 2D slice.

    Attributes
    ----------
    features : ndarray
        float32 array of shape ``(256, 64, 64)``.
    original_size : tuple of int
        ``(H, W)`` of the slice.
    input_size : tuple of int
        ``(h, w)`` of the slice after resizing its longer side to 1024 pixels.
    """

    features: np.ndarray
    original_size: tuple[int, int]
    input_size: tuple[int, int]

    @property
    def nbytes(self) -> int:
        return int(self.features.nbytes)


@dataclass(frozen=True)
class PromptResult:
    """Mask predicted for one set of prompts.

    Attributes
    ----------
    mask : ndarray
        bool array of the slice's shape.
    score : float
        SAM's predicted IoU of the mask, between 0 and 1.
    logits : ndarray
        float32 ``(256, 256)`` low-resolution logits, usable as ``mask_input`` of a later prompt.
    """

    mask: np.ndarray
    score: float
    logits: np.ndarray
