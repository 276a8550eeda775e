"""The frozen MobileSAM image encoder used as nnSAM's second encoder.

MobileSAM's encoder is a TinyViT (``vit_t``) that maps a ``3 x S x S`` image to a
``256 x S/16 x S/16`` embedding. It was trained at ``S = 1024``; this module builds
it for any ``S`` that is a multiple of 64 (the same parameters fit every size
because the attention windows do not depend on it), so small nnU-Net patches need
not be upsampled to 1024 pixels.
"""

from __future__ import annotations

import hashlib
import logging
import warnings

import torch
from torch import nn

from ..errors import WeightsError

logger = logging.getLogger(__name__)

#: Channels of a MobileSAM image embedding.
EMBEDDING_CHANNELS = 256
#: Total downsampling of the TinyViT encoder.
ENCODER_STRIDE = 16
#: Input edge length MobileSAM was trained with, in pixels.
NATIVE_INPUT_SIZE = 1024
#: Prefix of the image encoder's keys in a MobileSAM ``Sam`` state dict.
STATE_DICT_PREFIX = "image_encoder."
#: Seed of the encoder drawn for ``--sam-weights random``, so training and prediction draw the same one.
RANDOM_WEIGHTS_SEED = 20230929


def _build_tiny_vit(input_size: int) -> nn.Module:
    with warnings.catch_warnings():
        # mobile_sam 1.0 imports deprecated timm paths and re-registers timm's TinyViT names.
        warnings.simplefilter("ignore", category=FutureWarning)
        warnings.simplefilter("ignore", category=UserWarning)
        from mobile_sam.modeling import TinyViT

    # The vit_t hyper-parameters of MobileSAM's released model (mobile_sam 1.0, build_sam_vit_t).
    return TinyViT(
        img_size=input_size,
        in_chans=3,
        num_classes=1000,
        embed_dims=[64, 128, 160, 320],
        depths=[2, 2, 6, 2],
        num_heads=[2, 4, 5, 10],
        window_sizes=[7, 7, 14, 7],
        mlp_ratio=4.0,
        drop_rate=0.0,
        drop_path_rate=0.0,
        use_checkpoint=False,
        mbconv_expand_ratio=4.0,
        local_conv_size=3,
        layer_lr_decay=0.8,
    )


def tensor_digest(state_dict: dict) -> str:
    """Return the SHA-256 of the names, shapes and values of the tensors in ``state_dict``."""
    digest = hashlib.sha256()
    for name in sorted(state_dict):
        tensor = state_dict[name].detach().to("cpu").contiguous()
        digest.update(name.encode())
        digest.update(str(tuple(tensor.shape)).encode())
        digest.update(tensor.numpy().tobytes())
    return digest.hexdigest()


class SamImageEncoder(nn.Module):
    """MobileSAM's TinyViT image encoder, frozen and always in eval mode.

    Parameters
    ----------
    input_size : int
        Edge length ``S`` of the square encoder input, a multiple of 64.

    Notes
    -----
    The encoder never trains: its parameters have ``requires_grad=False``, its
    forward pass runs without autograd, and :meth:`train` keeps it in eval mode so
    its BatchNorm layers use their stored statistics whatever mode the enclosing
    network is in. MobileSAM caches attention biases when ``eval()`` is called,
    so :meth:`load_encoder_state` calls it again after loading.
    """

    def __init__(self, input_size: int = NATIVE_INPUT_SIZE):
        super().__init__()
        if input_size % 64 or input_size < 64:
            raise ValueError(f"SAM input size must be a positive multiple of 64, got {input_size}.")
        self.input_size = int(input_size)
        self.grid_size = self.input_size // ENCODER_STRIDE
        self.tiny_vit = _build_tiny_vit(self.input_size)
        # The classification head is never used; drop it so its parameters do not count.
        self.tiny_vit.head = nn.Identity()
        self.tiny_vit.norm_head = nn.Identity()
        for parameter in self.parameters():
            parameter.requires_grad_(False)
        self.eval()

    def train(self, mode: bool = True) -> "SamImageEncoder":
        return super().train(False)

    def encoder_state_dict(self) -> dict:
        """Return the encoder's tensors under MobileSAM's ``image_encoder.`` key names."""
        return {STATE_DICT_PREFIX + key: value for key, value in self.tiny_vit.state_dict().items()
                if not key.startswith(("head.", "norm_head."))}

    def load_encoder_state(self, sam_state_dict: dict, source: str) -> None:
        """Load the ``image_encoder.*`` tensors of a MobileSAM state dict.

        Raises
        ------
        WeightsError
            If tensors are missing or have other shapes than ``vit_t`` expects.
        """
        encoder_state = {key[len(STATE_DICT_PREFIX):]: value for key, value in sam_state_dict.items()
                         if key.startswith(STATE_DICT_PREFIX)}
        if not encoder_state:
            raise WeightsError(f"{source} has no '{STATE_DICT_PREFIX}*' tensors; expected a MobileSAM vit_t state dict.")
        expected = {key for key in self.tiny_vit.state_dict() if not key.startswith(("head.", "norm_head."))}
        missing = sorted(expected - set(encoder_state))
        if missing:
            raise WeightsError(
                f"{source} lacks {len(missing)} MobileSAM vit_t encoder tensors, for example "
                f"'{STATE_DICT_PREFIX}{missing[0]}'; expected the official mobile_sam.pt or a vit_t fine-tune of it."
            )
        encoder_state = {key: value for key, value in encoder_state.items() if key in expected}
        try:
            self.tiny_vit.load_state_dict(encoder_state, strict=False)
        except RuntimeError as error:
            raise WeightsError(f"{source} does not fit the MobileSAM vit_t encoder: {error}") from error
        self.eval()

    def randomize(self) -> str:
        """Draw reproducible random weights (seeded) and return their tensor digest."""
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(RANDOM_WEIGHTS_SEED)
            fresh = _build_tiny_vit(self.input_size)
        state = {key: value for key, value in fresh.state_dict().items()
                 if not key.startswith(("head.", "norm_head."))}
        self.tiny_vit.load_state_dict(state, strict=False)
        self.eval()
        return tensor_digest(state)

    @torch.no_grad()
    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Encode ``(N, 3, S, S)`` images into ``(N, 256, S/16, S/16)`` embeddings."""
        vit = self.tiny_vit
        tokens = vit.layers[0](vit.patch_embed(images))
        for layer in vit.layers[1:]:
            tokens = layer(tokens)
        batch, _, channels = tokens.shape
        grid = tokens.view(batch, self.grid_size, self.grid_size, channels).permute(0, 3, 1, 2)
        return vit.neck(grid)
