"""nnSAM network: shapes, the frozen SAM branch, and SAM weights bookkeeping."""

import copy

import pytest
import torch
from dynamic_network_architectures.architectures.unet import PlainConvUNet

from nnsam_engine.errors import ModelError
from nnsam_engine.network import fusion
from nnsam_engine.network.nnsam_unet import SAM_PREFIX, NnSAMUNet, to_three_channels
from nnsam_engine.network.sam_encoder import SamImageEncoder

BASE = "dynamic_network_architectures.architectures.unet.PlainConvUNet"


def arch_kwargs(dim: int, n_stages: int) -> dict:
    conv = torch.nn.Conv2d if dim == 2 else torch.nn.Conv3d
    norm = torch.nn.InstanceNorm2d if dim == 2 else torch.nn.InstanceNorm3d
    first = [1] * dim
    # 3D plans keep the out-of-plane axis at full resolution in the first pooling, as nnU-Net does for thick slices.
    strides = [first] + [[2] * dim for _ in range(n_stages - 1)]
    if dim == 3 and n_stages > 2:
        strides[1] = [1, 2, 2]
    return {
        "n_stages": n_stages, "features_per_stage": [min(8 * 2 ** i, 32) for i in range(n_stages)],
        "conv_op": conv, "kernel_sizes": [[3] * dim] * n_stages, "strides": strides,
        "n_conv_per_stage": [1] * n_stages, "n_conv_per_stage_decoder": [1] * (n_stages - 1), "conv_bias": True,
        "norm_op": norm, "norm_op_kwargs": {"eps": 1e-5, "affine": True}, "dropout_op": None,
        "dropout_op_kwargs": None, "nonlin": torch.nn.LeakyReLU, "nonlin_kwargs": {"inplace": True},
    }


def build(dim=2, channels=1, n_stages=4, patch=None, classes=3, deep_supervision=False, sam_input_size=256):
    kwargs = arch_kwargs(dim, n_stages)
    edge = 2 ** (n_stages - 1) * 2
    patch = patch or ([edge] * 2 if dim == 2 else [max(8, edge // 2), edge, edge])
    stage = fusion.choose_fusion_stage(patch, kwargs["strides"], sam_input_size)
    network = NnSAMUNet(channels, classes, BASE, sam_input_size, stage, deep_supervision=deep_supervision, **kwargs)
    network.apply(network.initialize)
    network.load_sam_weights(None, "", random=True, source="random")
    return network, patch


@pytest.mark.parametrize("channels", [1, 2, 3, 4])
@pytest.mark.parametrize("dim", [2, 3])
def test_network_output_shape_per_channel_count(dim, channels):
    network, patch = build(dim=dim, channels=channels, n_stages=3)
    output = network(torch.randn(2, channels, *patch))
    assert output.shape == (2, 3, *patch)


@pytest.mark.parametrize("n_stages", [2, 3, 4, 5, 6, 7, 8])
def test_network_output_shape_per_depth_2d(n_stages):
    network, patch = build(dim=2, n_stages=n_stages)
    assert 0 <= network.fusion_stage <= n_stages - 2
    output = network(torch.randn(1, 1, *patch))
    assert output.shape == (1, 3, *patch)


@pytest.mark.parametrize("n_stages", [2, 4, 6])
def test_network_output_shape_per_depth_3d(n_stages):
    network, patch = build(dim=3, n_stages=n_stages)
    output = network(torch.randn(1, 1, *patch))
    assert output.shape == (1, 3, *patch)


def test_network_deep_supervision_outputs():
    network, patch = build(dim=2, n_stages=4, deep_supervision=True)
    outputs = network(torch.randn(2, 1, *patch))
    assert [tuple(output.shape[2:]) for output in outputs] == [(16, 16), (8, 8), (4, 4)]


def test_network_non_square_patch():
    network, _ = build(dim=2, n_stages=4, patch=[56, 40])
    assert network(torch.randn(2, 1, 56, 40)).shape == (2, 3, 56, 40)


@pytest.mark.parametrize("channels,expected", [(1, 3), (2, 3), (3, 3), (4, 3), (7, 3)])
def test_to_three_channels_shape(channels, expected):
    assert to_three_channels(torch.randn(2, channels, 5, 6)).shape == (2, expected, 5, 6)


def test_to_three_channels_values():
    images = torch.arange(4, dtype=torch.float32).view(1, 4, 1, 1)
    assert to_three_channels(images).flatten().tolist() == [0.5, 2.0, 3.0]
    assert to_three_channels(images[:, :2]).flatten().tolist() == [0.0, 1.0, 0.5]
    assert to_three_channels(images[:, :1]).flatten().tolist() == [0.0, 0.0, 0.0]


def sam_tensors(network) -> dict:
    # Parameters and buffers, BatchNorm running statistics included.
    state = network.sam_encoder.state_dict(keep_vars=False)
    return {key: value.clone() for key, value in state.items()}


def test_sam_unchanged_after_training_step():
    network, patch = build(dim=2, n_stages=4, deep_supervision=True)
    before = sam_tensors(network)
    optimizer = torch.optim.SGD(list(network.trainable_parameters()), lr=0.1, momentum=0.9)
    network.train()
    assert network.sam_encoder.training is False
    assert all(module.training is False for module in network.sam_encoder.modules())
    for _ in range(2):
        outputs = network(torch.randn(4, 1, *patch) * 3 + 1)
        loss = sum(output.mean() for output in outputs)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    after = sam_tensors(network)
    changed = [key for key in before if not torch.equal(before[key], after[key])]
    assert changed == []
    assert all(parameter.grad is None for parameter in network.sam_encoder.parameters())


def test_batchnorm_statistics_unchanged_in_train_mode():
    network, patch = build(dim=2)
    batchnorms = [module for module in network.sam_encoder.modules() if isinstance(module, torch.nn.BatchNorm2d)]
    assert batchnorms
    running_means = [module.running_mean.clone() for module in batchnorms]
    network.train()
    network(torch.randn(2, 1, *patch) * 10)
    assert all(torch.equal(mean, module.running_mean) for mean, module in zip(running_means, batchnorms))


def test_optimizer_parameters_exclude_sam():
    network, _ = build(dim=2)
    trainable = {id(parameter) for parameter in network.trainable_parameters()}
    sam = {id(parameter) for parameter in network.sam_encoder.parameters()}
    assert trainable
    assert trainable.isdisjoint(sam)


def test_trainer_optimizer_excludes_sam():
    from nnsam_engine.training.trainer import nnSAMTrainer

    network, _ = build(dim=2)
    holder = type("Holder", (), {"network": network, "initial_lr": 0.01, "weight_decay": 3e-5, "num_epochs": 10})()
    optimizer, _ = nnSAMTrainer.configure_optimizers(holder)
    optimised = {id(parameter) for group in optimizer.param_groups for parameter in group["params"]}
    assert optimised.isdisjoint({id(parameter) for parameter in network.sam_encoder.parameters()})
    assert len(optimised) == len(list(network.trainable_parameters()))


def test_initialisation_leaves_sam_untouched():
    network, _ = build(dim=2)
    before = sam_tensors(network)
    network.apply(network.initialize)
    after = sam_tensors(network)
    assert all(torch.equal(before[key], after[key]) for key in before)


def test_attention_bias_cache_follows_loaded_weights():
    encoder = SamImageEncoder(256)
    state = {f"image_encoder.{key}": value.clone() for key, value in encoder.tiny_vit.state_dict().items()}
    for key in state:
        if key.endswith("attention_biases"):
            state[key] = torch.randn_like(state[key])
    encoder.load_encoder_state(state, "test weights")
    attentions = [module for module in encoder.modules() if hasattr(module, "attention_biases")]
    assert attentions
    for module in attentions:
        assert torch.equal(module.ab, module.attention_biases[:, module.attention_bias_idxs])


def test_state_dict_excludes_sam():
    network, _ = build(dim=2)
    state = network.state_dict()
    assert not any(key.startswith(SAM_PREFIX) for key in state)
    assert "sam_weights_sha256" in state


def test_load_state_dict_restores_weights():
    network, patch = build(dim=2)
    other, _ = build(dim=2)
    other.load_state_dict(network.state_dict())
    network.eval()
    other.eval()
    x = torch.randn(1, 1, *patch)
    assert torch.allclose(network(x), other(x))


def test_load_state_dict_rejects_other_sam_weights():
    network, _ = build(dim=2)
    state = copy.deepcopy(network.state_dict())
    state["sam_weights_sha256"] = torch.full_like(state["sam_weights_sha256"], 7)
    with pytest.raises(ModelError, match="trained with seeded random SAM weights of SHA-256 0707"):
        network.load_state_dict(state)


def test_forward_without_sam_weights_raises():
    kwargs = arch_kwargs(2, 3)
    network = NnSAMUNet(1, 2, BASE, 256, 0, deep_supervision=False, **kwargs)
    with pytest.raises(ModelError, match="SAM encoder weights were not loaded"):
        network(torch.randn(1, 1, 16, 16))


def test_random_sam_weights_are_reproducible():
    first, _ = build(dim=2)
    second, _ = build(dim=2)
    assert first.recorded_sam_sha256 == second.recorded_sam_sha256
    assert all(torch.equal(a, b) for a, b in zip(sam_tensors(first).values(), sam_tensors(second).values()))


def test_invalid_fusion_stage_raises():
    with pytest.raises(ModelError, match="fusion_stage 3 is invalid for a U-Net with 4 stages"):
        NnSAMUNet(1, 2, BASE, 256, 3, deep_supervision=False, **arch_kwargs(2, 4))


def test_sam_encoder_output_size():
    encoder = SamImageEncoder(256)
    assert encoder(torch.randn(1, 3, 256, 256)).shape == (1, 256, 16, 16)


def test_plain_unet_matches_base_layout():
    # The nnSAM network reuses nnU-Net's encoder, so its parameter names match PlainConvUNet's.
    kwargs = arch_kwargs(2, 4)
    base = PlainConvUNet(1, num_classes=3, deep_supervision=False, **kwargs)
    network, _ = build(dim=2, n_stages=4)
    base_keys = {key for key in base.state_dict() if key.startswith("encoder.")}
    assert base_keys <= set(network.state_dict())
