"""Training set-up that needs no training: configuration names, folds, the fold lock, options."""

import os

import pytest

from nnsam_engine.errors import TrainingError
from nnsam_engine.training.options import TrainingOptions
from nnsam_engine.training.run import LOCK_FILE, _fold_lock, parse_fold, resolve_configuration


@pytest.mark.parametrize("configuration,model,expected", [
    ("2d", "nnsam", "2d_nnsam"), ("2d", "nnunet", "2d"), ("3d_fullres_nnsam", "nnsam", "3d_fullres_nnsam"),
])
def test_resolve_configuration(configuration, model, expected):
    assert resolve_configuration(configuration, model) == expected


def test_resolve_configuration_rejects_mismatch():
    with pytest.raises(TrainingError, match="is an nnSAM configuration but --model is nnunet"):
        resolve_configuration("2d_nnsam", "nnunet")


@pytest.mark.parametrize("fold,expected", [("0", 0), ("4", 4), ("all", "all"), (2, 2)])
def test_parse_fold(fold, expected):
    assert parse_fold(fold) == expected


@pytest.mark.parametrize("fold", ["x", "-1"])
def test_parse_fold_rejects_invalid(fold):
    with pytest.raises(TrainingError, match="Fold must be 0 to 4 or 'all'"):
        parse_fold(fold)


def test_fold_lock_blocks_second_process(tmp_path):
    with _fold_lock(tmp_path):
        assert (tmp_path / LOCK_FILE).read_text() == str(os.getpid())
        with pytest.raises(TrainingError, match=f"is being trained by process {os.getpid()}"):
            with _fold_lock(tmp_path):
                pass
    assert not (tmp_path / LOCK_FILE).exists()


def test_fold_lock_takes_over_stale_lock(tmp_path):
    # PID 2**22 + 1 is above Linux's maximum PID, so no process has it.
    (tmp_path / LOCK_FILE).write_text(str(2 ** 22 + 1))
    with _fold_lock(tmp_path):
        assert (tmp_path / LOCK_FILE).read_text() == str(os.getpid())


def test_options_round_trip(tmp_path):
    options = TrainingOptions(epochs=3, iterations_per_epoch=5, batch_size=4, sam_random=True, time_limit_minutes=2.5)
    options.write(tmp_path)
    assert TrainingOptions.read(tmp_path) == options


@pytest.mark.parametrize("field,value,message", [
    ("epochs", 0, "epochs must be a positive integer, got 0"),
    ("batch_size", -2, "batch_size must be a positive integer, got -2"),
    ("time_limit_minutes", 0, "time_limit_minutes must be positive"),
    ("model", "unet", "model must be 'nnsam' or 'nnunet', got 'unet'"),
])
def test_options_reject_invalid(field, value, message):
    with pytest.raises(TrainingError, match=message):
        TrainingOptions(**{field: value})


def small_workspace(tmp_path, num_training: int, with_splits: bool = False):
    import json

    from nnsam_engine.dataset.locate import DatasetRef
    from nnsam_engine.workspace import Workspace

    workspace = Workspace.resolve(tmp_path / "workspace")
    preprocessed = workspace.preprocessed / "Dataset777_Small"
    preprocessed.mkdir(parents=True)
    (preprocessed / "dataset.json").write_text(json.dumps({"numTraining": num_training}))
    if with_splits:
        (preprocessed / "splits_final.json").write_text("[]")
    return workspace, DatasetRef(dataset_id=777, name="Dataset777_Small", raw_folder=tmp_path / "absent")


def test_fold_check_rejects_too_few_cases(tmp_path):
    from nnsam_engine.training.run import _check_fold_has_split

    workspace, dataset = small_workspace(tmp_path, 3)

    with pytest.raises(TrainingError, match="has 3 training case\\(s\\), but fold 2 .* train fold 'all'"):
        _check_fold_has_split(workspace, dataset, 2)


@pytest.mark.parametrize("fold,num_training,with_splits", [("all", 3, False), (5, 3, False), (0, 5, False),
                                                            (0, 3, True)])
def test_fold_check_accepts_possible_split(tmp_path, fold, num_training, with_splits):
    from nnsam_engine.training.run import _check_fold_has_split

    workspace, dataset = small_workspace(tmp_path, num_training, with_splits)

    _check_fold_has_split(workspace, dataset, fold)
