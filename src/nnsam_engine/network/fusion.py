"""Rules that place the SAM embedding in an nnU-Net plan.

Both rules work on the in-plane axes of a patch, the last two, because SAM sees
2D slices. nnU-Net puts the out-of-plane axis of anisotropic data first, so in 3D
the last two axes are the slice plane.
"""

from __future__ import annotations

import math
from typing import Sequence

from .sam_encoder import ENCODER_STRIDE, NATIVE_INPUT_SIZE

#: Encoder input sizes the planner chooses from, in pixels.
SAM_INPUT_SIZES = (256, 512, 1024)
#: Minimum upsampling of the patch's longer in-plane edge into the SAM input.
MIN_SAM_UPSAMPLING = 2.0
#: Cost budget of one training iteration, in MobileSAM encoder passes at 1024 x 1024.
SAM_PASSES_PER_ITERATION = 8.0


def choose_sam_input_size(patch_size: Sequence[int]) -> int:
    """Return the smallest SAM input size that upsamples the in-plane patch at least twofold.

    A patch is resized (aspect ratio kept, then zero padded) to ``S x S`` before SAM
    sees it. SAM was trained on objects spanning hundreds of pixels, so a small
    patch is enlarged, but beyond about 4x the cost grows with ``S**2`` and no
    detail is gained. The result is capped at MobileSAM's native 1024.
    """
    longest_edge = max(int(edge) for edge in patch_size[-2:])
    for size in SAM_INPUT_SIZES:
        if size >= MIN_SAM_UPSAMPLING * longest_edge:
            return size
    return NATIVE_INPUT_SIZE


def cumulative_strides(strides: Sequence[Sequence[int]]) -> list[list[int]]:
    """Return, for each encoder stage, its total downsampling along each axis."""
    totals = [1] * len(strides[0])
    result = []
    for stage_strides in strides:
        totals = [total * int(stride) for total, stride in zip(totals, stage_strides)]
        result.append(list(totals))
    return result


def choose_fusion_stage(patch_size: Sequence[int], strides: Sequence[Sequence[int]], sam_input_size: int) -> int:
    """Return the encoder stage whose skip connection receives the SAM embedding.

    One SAM embedding cell covers ``longest_edge * 16 / S`` patch pixels. The rule
    picks the stage whose in-plane downsampling is closest to that, on a log
    scale, so the embedding is neither stretched nor squeezed much; ties go to the
    deeper, cheaper stage. Any plan with two or more stages has a valid choice:
    the skips of stages ``0 .. n_stages - 2`` feed the decoder (the last stage is
    the bottleneck).

    Parameters
    ----------
    patch_size : sequence of int
        ``(Y, X)`` or ``(Z, Y, X)`` patch size of the configuration.
    strides : sequence of sequence of int
        Per-stage strides from the plans (``arch_kwargs["strides"]``).
    sam_input_size : int
        Edge length of the SAM encoder input.
    """
    if len(strides) < 2:
        raise ValueError(f"nnSAM needs a U-Net with at least 2 stages, the plan has {len(strides)}.")
    longest_edge = max(int(edge) for edge in patch_size[-2:])
    cell = longest_edge * ENCODER_STRIDE / sam_input_size
    best_stage, best_distance = 0, math.inf
    for stage, totals in enumerate(cumulative_strides(strides)[:-1]):
        in_plane = max(totals[-2:])
        distance = abs(math.log2(in_plane) - math.log2(cell))
        if distance <= best_distance + 1e-9:
            best_stage, best_distance = stage, distance
    return best_stage


def sam_slices_per_sample(patch_size: Sequence[int], strides: Sequence[Sequence[int]], fusion_stage: int) -> int:
    """Return how many slices of one patch go through SAM: 1 in 2D, the fused stage's depth in 3D."""
    if len(patch_size) == 2:
        return 1
    depth_stride = cumulative_strides(strides)[fusion_stage][0]
    return max(1, math.ceil(int(patch_size[0]) / depth_stride))


def sam_cost_per_sample(patch_size: Sequence[int], strides: Sequence[Sequence[int]], fusion_stage: int,
                        sam_input_size: int) -> float:
    """Return the SAM cost of one training sample, in encoder passes at 1024 x 1024."""
    slices = sam_slices_per_sample(patch_size, strides, fusion_stage)
    return slices * (sam_input_size / NATIVE_INPUT_SIZE) ** 2


def choose_nnsam_batch_size(base_batch_size: int, patch_size: Sequence[int], strides: Sequence[Sequence[int]],
                            fusion_stage: int, sam_input_size: int) -> int:
    """Return the batch size of an nnSAM configuration.

    nnU-Net sizes batches for a plain U-Net, and for small 2D images it uses
    hundreds of patches per batch. Each patch also costs SAM encoder passes, so
    the batch is limited to ``SAM_PASSES_PER_ITERATION`` passes at 1024 x 1024
    (about 64 ms on a current GPU at 8 ms a pass), never above nnU-Net's batch
    size and never below 2.
    """
    cost = sam_cost_per_sample(patch_size, strides, fusion_stage, sam_input_size)
    affordable = math.floor(SAM_PASSES_PER_ITERATION / cost)
    return int(max(2, min(int(base_batch_size), affordable)))
