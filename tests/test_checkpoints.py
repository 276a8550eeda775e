"""Checkpoints load with torch's weights-only unpickler."""

import os

import numpy as np
import pytest
import torch

from nnsam_engine.errors import ModelError
from nnsam_engine.training.checkpoints import load_checkpoint


class Exploit:
    def __reduce__(self):
        return (os.system, ("echo should-not-run",))


def test_load_checkpoint_accepts_nnunet_content(tmp_path):
    path = tmp_path / "checkpoint.pth"
    torch.save({"network_weights": {"w": torch.ones(2)}, "_best_ema": np.float64(0.5),
                "logging": {"mean_fg_dice": [np.float32(0.25)], "dice": [np.array([0.1, 0.2])]},
                "init_args": {"device": torch.device("cpu"), "fold": 0},
                "inference_allowed_mirroring_axes": (0, 1)}, path)
    checkpoint = load_checkpoint(path)
    assert float(checkpoint["_best_ema"]) == 0.5
    assert torch.equal(checkpoint["network_weights"]["w"], torch.ones(2))


def test_load_checkpoint_rejects_code(tmp_path):
    path = tmp_path / "evil.pth"
    torch.save({"payload": Exploit()}, path)
    with pytest.raises(ModelError, match="Refusing to load"):
        load_checkpoint(path)


def test_load_checkpoint_missing_file(tmp_path):
    with pytest.raises(ModelError, match="Checkpoint not found"):
        load_checkpoint(tmp_path / "absent.pth")


def test_load_checkpoint_truncated(tmp_path):
    path = tmp_path / "truncated.pth"
    torch.save({"w": torch.ones(1000)}, path)
    path.write_bytes(path.read_bytes()[:200])
    with pytest.raises(ModelError, match="Cannot read checkpoint"):
        load_checkpoint(path)
