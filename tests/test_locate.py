"""Tests of how dataset and model arguments are resolved to folders."""

import pytest

from nnsam_engine.dataset.locate import resolve_dataset
from nnsam_engine.errors import DatasetError, ModelError
from nnsam_engine.workspace import Workspace


def test_missing_dataset_path_is_not_found(tmp_path):
    workspace = Workspace.resolve(tmp_path / "workspace")
    missing = tmp_path / "nowhere" / "Dataset004_Hippocampus"

    with pytest.raises(DatasetError, match="Dataset folder not found: .*nowhere/Dataset004_Hippocampus"):
        resolve_dataset(str(missing), workspace)


def test_missing_dataset_name_is_not_found(tmp_path):
    workspace = Workspace.resolve(tmp_path / "workspace")

    with pytest.raises(DatasetError, match="Dataset folder not found: .*Dataset004_Hippocampus"):
        resolve_dataset("Dataset004_Hippocampus", workspace)


def test_missing_model_folder_is_not_found(tmp_path):
    from nnsam_engine.inference.model import load_model

    with pytest.raises(ModelError, match="Model folder not found: .*absent_model"):
        load_model(tmp_path / "absent_model", device="cpu")
