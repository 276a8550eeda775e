"""MobileSAM as a prompt-based segmenter: one embedding per 2D slice, then masks from prompts.

Computing a slice's embedding runs the TinyViT image encoder (the slow step, about a
second on a CPU). A mask for a set of prompts then only runs the prompt encoder and the
mask decoder on that embedding, so previews stay interactive once the embedding exists.

Coordinates are given in the slice's array indices, ``(row, column)``; this module
converts them to SAM's ``(x, y)`` order and input frame.
"""

from __future__ import annotations

import warnings

import numpy as np
import torch

from ..errors import WeightsError
from ..network.sam_encoder import NATIVE_INPUT_SIZE, RANDOM_WEIGHTS_SEED, tensor_digest
from ..network.weights import SamWeights, load_sam_state_dict, resolve_weights
from .results import LOW_RES_MASK_SIZE, PromptResult, SliceEmbedding


def best_device() -> str:
    """Return ``"cuda"`` or ``"mps"`` when PyTorch can use them, else ``"cpu"``."""
    if torch.cuda.is_available():
        return "cuda"
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        return "mps"
    return "cpu"


def _build_vit_t():
    with warnings.catch_warnings():
        # mobile_sam 1.0 imports deprecated timm paths and re-registers timm's TinyViT names.
        warnings.simplefilter("ignore", category=FutureWarning)
        warnings.simplefilter("ignore", category=UserWarning)
        from mobile_sam.build_sam import build_sam_vit_t

        return build_sam_vit_t(checkpoint=None)


class PromptSegmenter:
    """MobileSAM (``vit_t``) image encoder, prompt encoder and mask decoder, in eval mode.

    Use :meth:`load` to build one from verified weights. ``weights_id`` identifies the
    weights (their SHA-256, or a digest of the random tensors) and is part of every
    embedding cache key, so embeddings of different weights never mix.
    """

    input_size = NATIVE_INPUT_SIZE

    def __init__(self, sam, weights_id: str, device: str = "cpu", random_weights: bool = False):
        from mobile_sam.utils.transforms import ResizeLongestSide

        self.sam = sam.to(device)
        # eval() after the weights are in place: MobileSAM's attention layers cache their biases in eval().
        self.sam.eval()
        self.weights_id = weights_id
        self.device = torch.device(device)
        self.random_weights = random_weights
        self._resize = ResizeLongestSide(self.input_size)

    @classmethod
    def load(cls, weights: SamWeights | str | None = None, device: str | None = None) -> PromptSegmenter:
        """Build MobileSAM with verified weights.

        Parameters
        ----------
        weights : SamWeights, path or ``"random"``, optional
            Weights from :func:`~nnsam_engine.network.weights.resolve_weights`, or a value to
            resolve (a path, ``"random"``, or None for ``$NNSAM_SAM_WEIGHTS`` and then the cache).
        device : str, optional
            PyTorch device; defaults to :func:`best_device`.

        Raises
        ------
        WeightsError
            If no verified weights are found or the file does not fit MobileSAM ``vit_t``.
        """
        if not isinstance(weights, SamWeights):
            weights = resolve_weights(weights)
        device = device or best_device()
        if weights.random:
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(RANDOM_WEIGHTS_SEED)
                sam = _build_vit_t()
            weights_id = "random-" + tensor_digest(sam.state_dict())[:16]
            return cls(sam, weights_id, device, random_weights=True)

        sam = _build_vit_t()
        state = load_sam_state_dict(weights)
        try:
            sam.load_state_dict(state, strict=True)
        except RuntimeError as error:
            first_line = str(error).strip().splitlines()[0]
            raise WeightsError(f"MobileSAM weights file {weights.path} does not fit the MobileSAM vit_t model: "
                               f"{first_line}. Import the official mobile_sam.pt with `nnsam weights import FILE`."
                               ) from error
        return cls(sam, weights.sha256, device)

    # --- embeddings --------------------------------------------------------------------------------

    def _input_tensor(self, rgb: np.ndarray) -> torch.Tensor:
        if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
            raise ValueError(f"Expected an (H, W, 3) uint8 image, got shape {rgb.shape} and dtype {rgb.dtype}.")
        resized = self._resize.apply_image(rgb)
        tensor = torch.as_tensor(resized, device=self.device).permute(2, 0, 1).contiguous()[None].float()
        return tensor

    @torch.inference_mode()
    def embed(self, rgb: np.ndarray) -> SliceEmbedding:
        """Compute the embedding of an ``(H, W, 3)`` uint8 slice (see :func:`.intensity.to_sam_rgb`)."""
        tensor = self._input_tensor(rgb)
        input_size = tuple(int(size) for size in tensor.shape[-2:])
        # Sam.preprocess normalises with SAM's pixel mean and std and pads to 1024 x 1024.
        features = self.sam.image_encoder(self.sam.preprocess(tensor))
        return SliceEmbedding(
            features=features[0].float().cpu().numpy(),
            original_size=(int(rgb.shape[0]), int(rgb.shape[1])),
            input_size=input_size,
        )

    # --- prompts -----------------------------------------------------------------------------------

    @torch.inference_mode()
    def predict(
        self,
        embedding: SliceEmbedding,
        points: np.ndarray | None = None,
        labels: np.ndarray | None = None,
        box: np.ndarray | None = None,
        mask_input: np.ndarray | None = None,
    ) -> PromptResult:
        """Predict the mask of one object from prompts on the slice of ``embedding``.

        Parameters
        ----------
        points : ndarray, optional
            ``(N, 2)`` point positions as ``(row, column)`` array indices of the slice.
        labels : ndarray, optional
            ``(N,)`` 1 for a positive (inside) point, 0 for a negative (outside) one.
        box : ndarray, optional
            ``(row_min, column_min, row_max, column_max)`` in array indices, inclusive.
        mask_input : ndarray, optional
            ``(256, 256)`` logits of an earlier :class:`PromptResult` for the same object.

        With a single point and nothing else, SAM predicts three candidate masks for the
        ambiguity of one click and the one with the highest predicted IoU is returned.
        """
        has_points = points is not None and len(points) > 0
        if not has_points and box is None:
            raise ValueError("At least one point or a box is needed to predict a mask.")
        original_size = embedding.original_size
        sparse_points = None
        if has_points:
            points = np.asarray(points, dtype=np.float64).reshape(-1, 2)
            labels = np.ones(len(points)) if labels is None else np.asarray(labels).reshape(-1)
            if len(labels) != len(points):
                raise ValueError(f"Got {len(points)} points but {len(labels)} point labels.")
            xy = self._resize.apply_coords(points[:, ::-1].copy(), original_size)
            sparse_points = (
                torch.as_tensor(xy, dtype=torch.float32, device=self.device)[None],
                torch.as_tensor(labels, dtype=torch.int64, device=self.device)[None],
            )
        box_tensor = None
        if box is not None:
            row_min, column_min, row_max, column_max = (float(value) for value in box)
            xyxy = np.array([[column_min, row_min, column_max, row_max]])
            box_tensor = torch.as_tensor(self._resize.apply_boxes(xyxy, original_size), dtype=torch.float32,
                                         device=self.device)
        mask_tensor = None
        if mask_input is not None:
            mask_tensor = torch.as_tensor(np.asarray(mask_input, dtype=np.float32), device=self.device)
            mask_tensor = mask_tensor.reshape(1, 1, LOW_RES_MASK_SIZE, LOW_RES_MASK_SIZE)

        sparse, dense = self.sam.prompt_encoder(points=sparse_points, boxes=box_tensor, masks=mask_tensor)
        multimask = has_points and len(points) == 1 and box is None and mask_input is None
        features = torch.as_tensor(embedding.features, device=self.device)[None]
        low_res, scores = self.sam.mask_decoder(
            image_embeddings=features,
            image_pe=self.sam.prompt_encoder.get_dense_pe(),
            sparse_prompt_embeddings=sparse,
            dense_prompt_embeddings=dense,
            multimask_output=multimask,
        )
        best = int(torch.argmax(scores[0]))
        best_logits = low_res[:, best:best + 1]
        full = self.sam.postprocess_masks(best_logits, embedding.input_size, original_size)
        mask = (full[0, 0] > self.sam.mask_threshold).cpu().numpy()
        return PromptResult(mask=mask, score=float(scores[0, best]), logits=best_logits[0, 0].float().cpu().numpy())
