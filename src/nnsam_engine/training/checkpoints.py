"""Loading nnU-Net checkpoints without executing code stored in them."""

from __future__ import annotations

import os
import pickle

import numpy as np
import torch

from ..errors import ModelError

# Bound at import, so the trainer can route nnunetv2's torch.load calls here without recursion.
_torch_load = torch.load


def _allowed_globals() -> list:
    # Types that nnU-Net checkpoints contain besides tensors and builtins: numpy
    # scalars and arrays in the training log and best-EMA value.
    # numpy 2 pickles them under numpy._core, numpy 1 under numpy.core.
    multiarray = np._core.multiarray if hasattr(np, "_core") else np.core.multiarray
    allowed: list = [np.dtype, np.ndarray]
    for module in ("numpy._core.multiarray", "numpy.core.multiarray"):
        allowed += [(multiarray.scalar, f"{module}.scalar"), (multiarray._reconstruct, f"{module}._reconstruct")]
    allowed += [type(np.dtype(name)) for name in ("float64", "float32", "float16", "int64", "int32", "bool")]
    return allowed


def load_checkpoint(path: os.PathLike | str, map_location="cpu") -> dict:
    """Load a checkpoint with ``torch.load(weights_only=True)`` and the numpy types nnU-Net stores.

    Raises
    ------
    ModelError
        If the file is missing, truncated, or holds types outside the allowed set.
    """
    if not os.path.isfile(path):
        raise ModelError(f"Checkpoint not found: {path}. Train the fold first or pick an existing checkpoint.")
    try:
        with torch.serialization.safe_globals(_allowed_globals()):
            return _torch_load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as error:
        raise ModelError(
            f"Refusing to load {path}: it contains objects outside the types a checkpoint needs ({error}). "
            "Only load checkpoints from sources you trust."
        ) from error
    except (RuntimeError, EOFError) as error:
        raise ModelError(f"Cannot read checkpoint {path}: {error}. The file may be truncated; "
                         "use another checkpoint or train again.") from error
