"""Rules that place SAM in a plan: input size, fusion stage and batch size."""

import pytest

from nnsam_engine.network import fusion

HIPPOCAMPUS_2D_STRIDES = [[1, 1], [2, 2], [2, 2], [2, 2]]
DEFAULT_2D_STRIDES = [[1, 1]] + [[2, 2]] * 7


@pytest.mark.parametrize("patch,expected", [([56, 40], 256), ([128, 96], 256), ([200, 100], 512),
                                            ([512, 512], 1024), ([2048, 64], 1024), ([40, 56, 40], 256)])
def test_choose_sam_input_size(patch, expected):
    assert fusion.choose_sam_input_size(patch) == expected


def test_fusion_stage_small_patch():
    # 56 px resized to 256: one embedding cell covers 3.5 px, closest to stride 4 (stage 2).
    assert fusion.choose_fusion_stage([56, 40], HIPPOCAMPUS_2D_STRIDES, 256) == 2


def test_fusion_stage_large_patch():
    # 512 px at 1024: one cell covers 8 px, stride 8 (stage 3), where the original nnSAM fuses.
    assert fusion.choose_fusion_stage([512, 512], DEFAULT_2D_STRIDES, 1024) == 3


@pytest.mark.parametrize("n_stages", range(2, 9))
def test_fusion_stage_valid_for_every_depth(n_stages):
    strides = DEFAULT_2D_STRIDES[:n_stages]
    stage = fusion.choose_fusion_stage([64, 64], strides, 1024)
    assert 0 <= stage <= n_stages - 2


def test_fusion_stage_one_stage_raises():
    with pytest.raises(ValueError, match="at least 2 stages"):
        fusion.choose_fusion_stage([64, 64], [[1, 1]], 256)


def test_batch_size_limits_sam_cost():
    # nnU-Net plans 281 patches of 56 x 40 for Hippocampus 2D; at 256 px each costs 1/16 of a 1024 pass.
    assert fusion.choose_nnsam_batch_size(281, [56, 40], HIPPOCAMPUS_2D_STRIDES, 2, 256) == 128


def test_batch_size_never_above_nnunet():
    assert fusion.choose_nnsam_batch_size(12, [56, 40], HIPPOCAMPUS_2D_STRIDES, 2, 256) == 12


def test_batch_size_floor_of_two():
    assert fusion.choose_nnsam_batch_size(12, [512, 512], DEFAULT_2D_STRIDES, 3, 1024 * 2) == 2


def test_slices_per_sample_3d():
    strides = [[1, 1, 1], [2, 2, 2], [2, 2, 2], [2, 2, 2]]
    assert fusion.sam_slices_per_sample([40, 56, 40], strides, 2) == 10
    assert fusion.sam_slices_per_sample([56, 40], HIPPOCAMPUS_2D_STRIDES, 2) == 1
