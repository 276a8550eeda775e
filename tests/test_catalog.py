"""Listing trained models from fake model folders (no training, no torch)."""

import json
import subprocess
import sys

import pytest

from nnsam_engine.inference.catalog import (CHECKPOINT_NAMES, list_trained_models, read_trained_model)
from nnsam_engine.workspace import Workspace


def make_model_folder(results, dataset, configuration, folds, *, trainer="nnSAMTrainer", plans="nnUNetPlans",
                      sam_random=None, with_json=True):
    """Create ``results/dataset/trainer__plans__configuration`` with empty checkpoint files.

    ``folds`` maps a fold name to the checkpoint names its folder gets.
    """
    folder = results / dataset / f"{trainer}__{plans}__{configuration}"
    folder.mkdir(parents=True)
    if with_json:
        (folder / "plans.json").write_text("{}")
        (folder / "dataset.json").write_text("{}")
    for fold, checkpoints in folds.items():
        fold_folder = folder / f"fold_{fold}"
        fold_folder.mkdir()
        for name in checkpoints:
            (fold_folder / name).write_bytes(b"")
        if sam_random is not None:
            (fold_folder / "nnsam_training.json").write_text(json.dumps({"sam_random": sam_random}))
    return folder


@pytest.fixture
def workspace(tmp_path):
    return Workspace.resolve(tmp_path / "workspace")


def test_catalog_lists_models_and_folds(workspace):
    results = workspace.results
    nnsam = make_model_folder(results, "Dataset990_Phantom", "2d_nnsam",
                              {1: ["checkpoint_latest.pth"], 0: ["checkpoint_best.pth", "checkpoint_final.pth"]},
                              sam_random=True)
    make_model_folder(results, "Dataset990_Phantom", "3d_fullres", {"all": ["checkpoint_final.pth"]},
                      sam_random=False)

    models = list_trained_models(workspace)

    assert [model.configuration for model in models] == ["2d_nnsam", "3d_fullres"]
    first, second = models
    assert first.folder == nnsam
    assert first.dataset == "Dataset990_Phantom"
    assert first.trainer == "nnSAMTrainer"
    assert first.plans_identifier == "nnUNetPlans"
    assert first.kind == "nnsam"
    assert [fold.fold for fold in first.folds] == [0, 1]
    assert first.folds[0].checkpoints == ("checkpoint_final.pth", "checkpoint_best.pth")
    assert first.checkpoint_names() == list(CHECKPOINT_NAMES)
    assert first.folds_with("checkpoint_final.pth") == [0]
    assert first.folds_with("checkpoint_latest.pth") == [1]
    assert first.sam_random
    assert second.kind == "nnunet"
    assert [fold.fold for fold in second.folds] == ["all"]
    assert not second.sam_random


def test_catalog_describe_line(workspace):
    make_model_folder(workspace.results, "Dataset990_Phantom", "2d_nnsam",
                      {0: ["checkpoint_final.pth", "checkpoint_best.pth"], 1: ["checkpoint_latest.pth"]},
                      sam_random=True)

    text = list_trained_models(workspace)[0].describe()

    assert text == "2d_nnsam · nnSAM · folds 0 (final, best), 1 (latest) · random SAM weights"


def test_catalog_filters_by_dataset(workspace):
    make_model_folder(workspace.results, "Dataset990_Phantom", "2d", {0: ["checkpoint_final.pth"]})
    make_model_folder(workspace.results, "Dataset004_Hippocampus", "2d", {0: ["checkpoint_final.pth"]})

    models = list_trained_models(workspace, "Dataset004_Hippocampus")

    assert [model.dataset for model in models] == ["Dataset004_Hippocampus"]
    assert list_trained_models(workspace, "Dataset123_Missing") == []


def test_catalog_numbered_folds_sort_numerically(workspace):
    make_model_folder(workspace.results, "Dataset990_Phantom", "2d",
                      {fold: ["checkpoint_final.pth"] for fold in ("all", 10, 2, 0)})

    model = list_trained_models(workspace)[0]

    assert [fold.fold for fold in model.folds] == [0, 2, 10, "all"]


@pytest.mark.parametrize("case", ["no checkpoint", "no plans", "bad name", "bad fold name"])
def test_catalog_skips_non_model_folders(workspace, case):
    results = workspace.results
    if case == "no checkpoint":
        make_model_folder(results, "Dataset990_Phantom", "2d", {0: []})
    elif case == "no plans":
        make_model_folder(results, "Dataset990_Phantom", "2d", {0: ["checkpoint_final.pth"]}, with_json=False)
    elif case == "bad name":
        make_model_folder(results, "Dataset990_Phantom", "2d", {0: ["checkpoint_final.pth"]}, trainer="a__b")
    else:
        make_model_folder(results, "Dataset990_Phantom", "2d", {"x": ["checkpoint_final.pth"]})

    assert list_trained_models(workspace) == []


def test_catalog_channel_names_order(workspace):
    folder = make_model_folder(workspace.results, "Dataset990_Phantom", "2d", {0: ["checkpoint_final.pth"]})
    (folder / "dataset.json").write_text(json.dumps({"channel_names": {"10": "ADC", "2": "T2", "0": "T1"}}))

    assert read_trained_model(folder).channel_names == ("T1", "T2", "ADC")


@pytest.mark.parametrize("content", ["{not json", "[]", '{"channel_names": {"T1": "T1"}}'])
def test_catalog_bad_dataset_json(workspace, content):
    folder = make_model_folder(workspace.results, "Dataset990_Phantom", "2d", {0: ["checkpoint_final.pth"]})
    (folder / "dataset.json").write_text(content)

    assert read_trained_model(folder).channel_names == ()


def test_catalog_empty_workspace(workspace):
    assert list_trained_models(workspace) == []


def test_catalog_unreadable_training_options(workspace):
    folder = make_model_folder(workspace.results, "Dataset990_Phantom", "2d_nnsam", {0: ["checkpoint_final.pth"]})
    (folder / "fold_0" / "nnsam_training.json").write_text("{not json")

    model = read_trained_model(folder)

    assert model.folds[0].sam_random is None
    assert not model.sam_random


def test_catalog_checkpoint_names_match_loader():
    from nnsam_engine.inference.model import CHECKPOINT_NAMES as LOADER_NAMES

    assert CHECKPOINT_NAMES == LOADER_NAMES


def test_catalog_import_loads_no_torch():
    script = "import sys, nnsam_engine.inference.catalog; print('torch' in sys.modules, 'nnunetv2' in sys.modules)"
    output = subprocess.run([sys.executable, "-c", script], check=True, capture_output=True, text=True).stdout

    assert output.split() == ["False", "False"]
