"""nnSAM: an nnU-Net U-Net with a frozen MobileSAM embedding fused into one skip connection.

The plans name :class:`NnSAMUNet` as ``network_class_name`` of an nnSAM
configuration, so nnunetv2 builds it from the plans like any of its own networks,
and a checkpoint can only be loaded into the model it was trained as.
"""

from __future__ import annotations

import logging
import math
import pydoc
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..errors import ModelError
from .sam_encoder import EMBEDDING_CHANNELS, ENCODER_STRIDE, SamImageEncoder

logger = logging.getLogger(__name__)

SAM_PREFIX = "sam_encoder."
_DIGEST_BYTES = 32


def to_three_channels(images: torch.Tensor) -> torch.Tensor:
    """Map ``(N, C, H, W)`` images with any ``C >= 1`` to the three channels SAM takes.

    One channel is repeated. Two channels become ``(c0, c1, mean(c0, c1))``. Three or
    more are split into three contiguous groups as evenly as possible (the first
    groups get the extra channels) and each group is averaged, so three channels
    pass unchanged and four become ``(mean(c0, c1), c2, c3)``.
    """
    channels = images.shape[1]
    if channels == 1:
        return images.expand(-1, 3, -1, -1)
    if channels == 2:
        return torch.cat([images, images.mean(dim=1, keepdim=True)], dim=1)
    groups = np.array_split(np.arange(channels), 3)
    return torch.cat([images[:, group.tolist()].mean(dim=1, keepdim=True) for group in groups], dim=1)


def _widen_first_conv(stage: nn.Module, extra_channels: int) -> None:
    """Replace the first convolution of a decoder stage with one taking ``extra_channels`` more inputs."""
    block = stage.convs[0]
    old = block.conv
    block.conv = type(old)(
        old.in_channels + extra_channels, old.out_channels, old.kernel_size, stride=old.stride,
        padding=old.padding, dilation=old.dilation, groups=old.groups, bias=old.bias is not None,
    )
    if hasattr(block, "all_modules"):
        block.all_modules[0] = block.conv


def _digest_to_hex(buffer: torch.Tensor) -> str:
    return bytes(buffer.to("cpu").tolist()).hex()


class NnSAMUNet(nn.Module):
    """U-Net from nnU-Net plans with a frozen MobileSAM embedding concatenated to one skip.

    Parameters
    ----------
    input_channels, num_classes : int
        Set by nnunetv2 from the dataset.
    base_network_class_name : str
        Importable name of the nnU-Net network it extends, such as
        ``dynamic_network_architectures.architectures.unet.PlainConvUNet``.
    sam_input_size : int
        Edge length of the square SAM input, a multiple of 64.
    fusion_stage : int
        Encoder stage whose skip receives the embedding, ``0 <= fusion_stage <= n_stages - 2``.
    **base_kwargs
        The base network's keyword arguments from the plans.

    Notes
    -----
    Forward pass on ``(B, C, Y, X)`` or ``(B, C, Z, Y, X)`` patches: the patch is
    detached, mapped to three channels (:func:`to_three_channels`), each in-plane
    slice is resized with its aspect ratio kept so its longer edge is
    ``sam_input_size``, zero padded to a square (zero is the mean after nnU-Net's
    normalisation) and encoded. The part of the embedding that covers the image is
    resized to the fused skip's in-plane size and concatenated to it along
    channels; the decoder stage that reads this skip takes 256 more input channels.

    In 3D, SAM runs only on as many slices as the fused stage has along the first
    axis, one from the middle of each slab that a feature of that stage covers, and
    their embeddings are stacked into a 3D feature map.

    SAM tensors are not part of :meth:`state_dict`, so checkpoints stay small. The
    network records the SHA-256 of the SAM weights it was trained with in the
    ``sam_weights_sha256`` buffer, and :meth:`load_state_dict` refuses weights
    recorded for another SAM file.
    """

    def __init__(self, input_channels: int, num_classes: int, base_network_class_name: str,
                 sam_input_size: int, fusion_stage: int, **base_kwargs):
        super().__init__()
        base_class = pydoc.locate(base_network_class_name)
        if base_class is None:
            raise ModelError(f"Network class '{base_network_class_name}' named in the plans cannot be imported.")
        base = base_class(input_channels=input_channels, num_classes=num_classes, **base_kwargs)
        n_stages = len(base.encoder.stages)
        if not 0 <= fusion_stage <= n_stages - 2:
            raise ModelError(
                f"fusion_stage {fusion_stage} is invalid for a U-Net with {n_stages} stages; "
                f"expected 0 to {n_stages - 2}. Re-plan or pick another --fusion-stage."
            )
        self.encoder = base.encoder
        self.decoder = base.decoder
        self._base_initialize = getattr(base_class, "initialize", None)
        self.fusion_stage = int(fusion_stage)
        self.spatial_dims = len(base_kwargs["strides"][0])
        decoder_stage = n_stages - 2 - self.fusion_stage
        _widen_first_conv(self.decoder.stages[decoder_stage], EMBEDDING_CHANNELS)

        self.sam_encoder = SamImageEncoder(sam_input_size)
        self._sam_module_ids = {id(module) for module in self.sam_encoder.modules()}
        self.register_buffer("sam_weights_sha256", torch.zeros(_DIGEST_BYTES, dtype=torch.uint8))
        self.register_buffer("sam_weights_random", torch.zeros(1, dtype=torch.uint8))
        self._sam_loaded_digest: str | None = None

    # Weight initialisation: nnunetv2 calls network.apply(network.initialize) on every module.
    def initialize(self, module: nn.Module) -> None:
        """Initialise one module as the base network does, leaving the SAM branch untouched."""
        if id(module) in self._sam_module_ids or self._base_initialize is None:
            return
        self._base_initialize(module)

    def train(self, mode: bool = True) -> "NnSAMUNet":
        super().train(mode)
        self.sam_encoder.eval()
        return self

    def trainable_parameters(self):
        """Yield the parameters an optimiser should update (all but SAM's)."""
        return (parameter for parameter in self.parameters() if parameter.requires_grad)

    # SAM weights
    def load_sam_weights(self, sam_state_dict: dict | None, sha256: str, random: bool, source: str) -> None:
        """Load SAM encoder weights and record their hash.

        Call after weight initialisation. ``sam_state_dict`` is ``None`` for
        seeded random weights, whose digest is then computed here.
        """
        if random:
            sha256 = self.sam_encoder.randomize()
            logger.warning("The SAM encoder uses seeded RANDOM weights (digest %s); use this for tests and "
                           "demos only.", sha256[:12])
        else:
            self.sam_encoder.load_encoder_state(sam_state_dict, source)
        digest = torch.tensor(list(bytes.fromhex(sha256)), dtype=torch.uint8, device=self.sam_weights_sha256.device)
        self.sam_weights_sha256.copy_(digest)
        self.sam_weights_random.fill_(int(random))
        self._sam_loaded_digest = sha256
        self.sam_encoder.eval()

    @property
    def recorded_sam_sha256(self) -> str:
        return _digest_to_hex(self.sam_weights_sha256)

    @property
    def recorded_sam_random(self) -> bool:
        return bool(self.sam_weights_random.item())

    # Checkpoints carry everything but the SAM tensors
    def state_dict(self, *args, **kwargs):
        state = super().state_dict(*args, **kwargs)
        prefix = kwargs.get("prefix", "") + SAM_PREFIX
        for key in [key for key in state if key.startswith(prefix)]:
            del state[key]
        return state

    def load_state_dict(self, state_dict, strict: bool = True, assign: bool = False):
        state_dict = {key: value for key, value in state_dict.items() if not key.startswith(SAM_PREFIX)}
        result = super().load_state_dict(state_dict, strict=False, assign=assign)
        missing = [key for key in result.missing_keys if not key.startswith(SAM_PREFIX)]
        if strict and (missing or result.unexpected_keys):
            raise ModelError(
                f"Checkpoint does not fit this nnSAM network: missing {missing[:3]}, unexpected "
                f"{result.unexpected_keys[:3]}. Was it trained with other plans or another configuration?"
            )
        self._verify_sam_digest()
        return result

    def _verify_sam_digest(self) -> None:
        recorded = self.recorded_sam_sha256
        if self._sam_loaded_digest is None or recorded == "00" * _DIGEST_BYTES:
            return
        if recorded != self._sam_loaded_digest:
            kind = "seeded random SAM weights" if self.recorded_sam_random else "SAM weights"
            raise ModelError(
                f"This checkpoint was trained with {kind} of SHA-256 {recorded}, but the loaded SAM weights have "
                f"SHA-256 {self._sam_loaded_digest}. Use the same weights file as in training "
                f"(--sam-weights PATH{' or --sam-weights random' if self.recorded_sam_random else ''})."
            )

    # Forward pass
    def forward(self, x: torch.Tensor):
        if self._sam_loaded_digest is None:
            raise ModelError("SAM encoder weights were not loaded; call load_sam_weights() before the forward pass.")
        skips = list(self.encoder(x))
        target = skips[self.fusion_stage]
        embedding = self.sam_features(x, target.shape[2:])
        skips[self.fusion_stage] = torch.cat([target, embedding.to(target.dtype)], dim=1)
        return self.decoder(skips)

    def sam_features(self, x: torch.Tensor, size: Sequence[int]) -> torch.Tensor:
        """Return SAM embeddings of patch ``x`` resized to the spatial ``size`` of the fused skip."""
        x = x.detach()
        if self.spatial_dims == 2:
            return self._encode_slices(x, tuple(size))
        batch, channels, depth = x.shape[:3]
        out_depth = int(size[0])
        centres = [min(depth - 1, math.floor((index + 0.5) * depth / out_depth)) for index in range(out_depth)]
        slices = x[:, :, centres].permute(0, 2, 1, 3, 4).reshape(batch * out_depth, channels, *x.shape[3:])
        encoded = self._encode_slices(slices, tuple(size[1:]))
        return encoded.reshape(batch, out_depth, EMBEDDING_CHANNELS, *size[1:]).permute(0, 2, 1, 3, 4)

    def _encode_slices(self, slices: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        input_size = self.sam_encoder.input_size
        height, width = slices.shape[-2:]
        scale = input_size / max(height, width)
        resized_h = max(1, min(input_size, round(height * scale)))
        resized_w = max(1, min(input_size, round(width * scale)))
        images = F.interpolate(to_three_channels(slices.float()), size=(resized_h, resized_w), mode="bilinear",
                               align_corners=False)
        images = F.pad(images, (0, input_size - resized_w, 0, input_size - resized_h))
        embedding = self.sam_encoder(images)
        valid = embedding[:, :, :math.ceil(resized_h / ENCODER_STRIDE), :math.ceil(resized_w / ENCODER_STRIDE)]
        return F.interpolate(valid, size=size, mode="bilinear", align_corners=False)
