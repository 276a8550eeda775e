"""Starting and resuming a training run."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import threading
from dataclasses import replace
from pathlib import Path
from typing import Iterator

from ..dataset.check import require_valid_dataset
from ..dataset.locate import DatasetRef
from ..errors import PlanError, TrainingError
from ..planning.configurations import base_name, is_nnsam, nnsam_name
from ..planning.plan import PLANS_IDENTIFIER, load_plans
from ..workspace import Workspace, activated
from .options import TrainingOptions

logger = logging.getLogger(__name__)

TRAINER_NAME = "nnSAMTrainer"
LOCK_FILE = ".nnsam_training.lock"
#: Folds of nnU-Net's cross-validation split.
NUM_FOLDS = 5
_TRAINER_LOOKUP_FOLDER = Path(__file__).resolve().parent / "nnunet_trainers"


def resolve_configuration(configuration: str, model: str) -> str:
    """Return the plans configuration to train: ``2d`` with model ``nnsam`` becomes ``2d_nnsam``."""
    if model not in ("nnsam", "nnunet"):
        raise TrainingError(f"--model must be 'nnsam' or 'nnunet', got '{model}'.")
    if is_nnsam(configuration):
        if model == "nnunet":
            raise TrainingError(f"Configuration '{configuration}' is an nnSAM configuration but --model is nnunet; "
                                f"train '{base_name(configuration)}' for plain nnU-Net.")
        return configuration
    return nnsam_name(configuration) if model == "nnsam" else configuration


def fold_folder(workspace: Workspace, dataset: DatasetRef, configuration: str, fold: int | str) -> Path:
    """Return the folder nnunetv2 trains fold ``fold`` of ``configuration`` in."""
    return (workspace.results / dataset.name / f"{TRAINER_NAME}__{PLANS_IDENTIFIER}__{configuration}"
            / f"fold_{fold}")


def parse_fold(fold: str | int) -> int | str:
    if str(fold) == "all":
        return "all"
    try:
        value = int(fold)
    except ValueError:
        raise TrainingError(f"Fold must be 0 to 4 or 'all', got '{fold}'.") from None
    if value < 0:
        raise TrainingError(f"Fold must be 0 to 4 or 'all', got {value}.")
    return value


def _check_fold_has_split(workspace: Workspace, dataset: DatasetRef, fold: int | str) -> None:
    """Raise TrainingError when nnunetv2 cannot make fold 0-4 because the dataset has fewer than 5 cases.

    Without ``splits_final.json``, nnunetv2 2.8 creates a 5-fold split of the training cases, which
    fails with scikit-learn's "n_splits=5 ... greater than the number of samples" for fewer than 5 cases.
    """
    if fold == "all" or fold >= NUM_FOLDS:
        return
    preprocessed = workspace.preprocessed / dataset.name
    if (preprocessed / "splits_final.json").is_file():
        return
    try:
        num_cases = int(json.loads((preprocessed / "dataset.json").read_text(encoding="utf-8"))["numTraining"])
    except (OSError, ValueError, KeyError, TypeError):
        return  # nnunetv2 reports a missing or invalid dataset.json itself
    if num_cases < NUM_FOLDS:
        raise TrainingError(
            f"{dataset.name} has {num_cases} training case(s), but fold {fold} of nnU-Net's 5-fold "
            f"cross-validation needs at least {NUM_FOLDS}. Add cases, or train fold 'all', which trains on "
            "every case without a validation split.")


@contextlib.contextmanager
def _stop_on_signals(trainer_holder: dict) -> Iterator[None]:
    def handle(signal_number, _frame):
        trainer = trainer_holder.get("trainer")
        if trainer is None:
            raise KeyboardInterrupt
        logger.warning("Received %s: stopping after the current iteration and saving a checkpoint.",
                       signal.Signals(signal_number).name)
        trainer.request_stop(signal_number)

    if threading.current_thread() is not threading.main_thread():
        # Python installs signal handlers only in the main thread; callers in other threads stop by other means.
        yield
        return
    previous = {number: signal.signal(number, handle) for number in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)


def train(dataset: DatasetRef, workspace: Workspace, configuration: str, fold: int | str,
          options: TrainingOptions, *, device: str = "cuda", continue_training: bool = False,
          num_gpus: int = 1) -> Path:
    """Train one fold and return its folder.

    Parameters
    ----------
    dataset : DatasetRef
        A planned and preprocessed dataset.
    configuration : str
        ``2d``, ``3d_fullres``, ``3d_lowres`` or their ``_nnsam`` variants;
        ``options.model`` chooses the variant of a base name.
    fold : int or "all"
        Cross-validation fold 0-4 (nnU-Net's 5-fold split), or ``all`` to train on every case.
    options : TrainingOptions
        Run length, batch size and, for nnSAM, the verified SAM weights.
    device : {"cuda", "cpu", "mps"}
    continue_training : bool
        Resume from the fold's latest checkpoint (final, then latest, then best).
    num_gpus : int
        More than one uses nnunetv2's DistributedDataParallel launcher (CUDA only).

    Raises
    ------
    TrainingInterrupted
        After SIGINT or SIGTERM, once a resumable checkpoint is saved.
    """
    import torch

    if dataset.raw_folder.is_dir():
        require_valid_dataset(dataset.raw_folder)
    configuration = resolve_configuration(configuration, options.model)
    plans = load_plans(workspace, dataset)
    if configuration not in plans["configurations"]:
        raise PlanError(f"Configuration '{configuration}' is not in the plans of {dataset.name} "
                        f"(available: {', '.join(plans['configurations'])}). Run `nnsam plan {dataset.name} -c "
                        f"{base_name(configuration)}`.")
    if device not in ("cuda", "cpu", "mps"):
        raise TrainingError(f"--device must be cuda, cpu or mps, got '{device}'.")
    if device == "cuda" and not torch.cuda.is_available():
        raise TrainingError("--device cuda was requested but PyTorch sees no CUDA GPU; use --device cpu, or "
                            "install a CUDA build of PyTorch.")
    if num_gpus > 1 and device != "cuda":
        raise TrainingError(f"--num-gpus {num_gpus} needs --device cuda.")
    data_identifier = _resolved_data_identifier(plans, configuration)
    if not (workspace.preprocessed / dataset.name / data_identifier).is_dir():
        raise PlanError(f"{dataset.name} has no preprocessed data for '{configuration}' in "
                        f"{workspace.preprocessed / dataset.name / data_identifier}. Run `nnsam plan {dataset.name} "
                        f"-c {base_name(configuration)}`.")
    fold = parse_fold(fold)
    _check_fold_has_split(workspace, dataset, fold)
    folder = fold_folder(workspace, dataset, configuration, fold)
    if not continue_training and (folder / "checkpoint_final.pth").is_file():
        raise TrainingError(f"{folder} already holds a finished training. Use --continue to extend it "
                            "(with a larger --epochs), or delete the folder to start again.")
    folder.mkdir(parents=True, exist_ok=True)
    with _fold_lock(folder):
        options = replace(options, model="nnsam" if is_nnsam(configuration) else "nnunet")
        options.write(folder)
        _run_trainer(dataset, workspace, configuration, fold, device, continue_training, num_gpus)
    return folder


def _run_trainer(dataset: DatasetRef, workspace: Workspace, configuration: str, fold: int | str, device: str,
                 continue_training: bool, num_gpus: int) -> None:
    import torch

    holder: dict = {}
    with activated(workspace), _stop_on_signals(holder), _trainer_lookup():
        from nnunetv2.run.run_training import get_trainer_from_args, maybe_load_checkpoint, run_training

        if num_gpus > 1:
            run_training(dataset.name, configuration, fold, TRAINER_NAME, PLANS_IDENTIFIER, num_gpus=num_gpus,
                         continue_training=continue_training, device=torch.device("cuda"))
            return
        trainer = get_trainer_from_args(dataset.name, configuration, fold, TRAINER_NAME, PLANS_IDENTIFIER,
                                        continue_training, device=torch.device(device))
        holder["trainer"] = trainer
        maybe_load_checkpoint(trainer, continue_training, False)
        trainer.run_training()
        trainer.perform_actual_validation(False)


@contextlib.contextmanager
def _fold_lock(folder: Path) -> Iterator[None]:
    """Hold ``folder/.nnsam_training.lock`` so two processes never train one fold at once."""
    lock = folder / LOCK_FILE
    try:
        descriptor = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
    except FileExistsError:
        owner = _lock_owner(lock)
        if owner is not None and _process_exists(owner):
            raise TrainingError(f"{folder} is being trained by process {owner}. Stop that training first, or "
                                "train another fold.") from None
        lock.unlink(missing_ok=True)  # left by a process that no longer runs
        descriptor = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
    with os.fdopen(descriptor, "w") as stream:
        stream.write(str(os.getpid()))
    try:
        yield
    finally:
        lock.unlink(missing_ok=True)


def _lock_owner(lock: Path) -> int | None:
    try:
        return int(lock.read_text().strip())
    except (OSError, ValueError):
        return None


def _process_exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _resolved_data_identifier(plans: dict, configuration: str) -> str:
    config = plans["configurations"][configuration]
    while "data_identifier" not in config and "inherits_from" in config:
        config = plans["configurations"][config["inherits_from"]]
    return config["data_identifier"]


@contextlib.contextmanager
def _trainer_lookup() -> Iterator[None]:
    # nnunetv2 finds trainers outside its package through nnUNet_extTrainer.
    previous = os.environ.get("nnUNet_extTrainer")
    os.environ["nnUNet_extTrainer"] = str(_TRAINER_LOOKUP_FOLDER)
    try:
        yield
    finally:
        if previous is None:
            os.environ.pop("nnUNet_extTrainer", None)
        else:
            os.environ["nnUNet_extTrainer"] = previous
