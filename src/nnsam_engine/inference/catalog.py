"""The trained models of a workspace: model folders, their folds and the checkpoints each fold has.

Training writes ``<results>/<dataset>/<trainer>__<plans>__<configuration>/fold_<f>/``
with ``plans.json`` and ``dataset.json`` in the model folder. This module only
lists files, so it imports neither torch nor nnunetv2 and is quick enough to
call whenever a GUI refreshes its model list.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path

from ..training.options import OPTIONS_FILE
from ..workspace import Workspace

logger = logging.getLogger(__name__)

#: Checkpoint files in order of preference. The same names as
#: ``nnsam_engine.inference.model.CHECKPOINT_NAMES``, repeated here because that
#: module imports torch. A test checks that both agree.
CHECKPOINT_NAMES = ("checkpoint_final.pth", "checkpoint_best.pth", "checkpoint_latest.pth")
#: Short names of the checkpoints, as shown to users.
CHECKPOINT_LABELS = {"checkpoint_final.pth": "final", "checkpoint_best.pth": "best",
                     "checkpoint_latest.pth": "latest"}
# planning.configurations defines this suffix too, but importing it loads torch.
_NNSAM_SUFFIX = "_nnsam"


@dataclass(frozen=True)
class FoldCheckpoints:
    """The checkpoints of one fold folder.

    Attributes
    ----------
    fold : int or str
        0-4, or ``"all"``.
    checkpoints : tuple of str
        Checkpoint file names present, in the order of :data:`CHECKPOINT_NAMES`.
    sam_random : bool or None
        Whether training used seeded random SAM weights, as recorded in the fold's
        ``nnsam_training.json``, or None when that file is missing or unreadable.
    """

    fold: int | str
    checkpoints: tuple[str, ...]
    sam_random: bool | None = None


@dataclass(frozen=True)
class TrainedModel:
    """One trained model folder and its folds.

    Attributes
    ----------
    folder : Path
        ``<results>/<dataset>/<trainer>__<plans>__<configuration>``.
    dataset : str
        ``DatasetXXX_Name``.
    trainer, plans_identifier, configuration : str
        The three parts of the folder name.
    kind : str
        ``"nnsam"`` for an ``*_nnsam`` configuration, else ``"nnunet"``.
    folds : tuple of FoldCheckpoints
        Folds with at least one checkpoint, numbered folds first, then ``all``.
    channel_names : tuple of str
        Input channels from ``dataset.json``, in channel order. The model takes one
        image per channel.
    """

    folder: Path
    dataset: str
    trainer: str
    plans_identifier: str
    configuration: str
    kind: str
    folds: tuple[FoldCheckpoints, ...]
    channel_names: tuple[str, ...] = ()

    @property
    def sam_random(self) -> bool:
        """Whether any fold was trained with seeded random SAM weights (tests and demos only)."""
        return any(fold.sam_random for fold in self.folds)

    def checkpoint_names(self) -> list[str]:
        """Return the checkpoint names that at least one fold has, in the order of :data:`CHECKPOINT_NAMES`."""
        present = {name for fold in self.folds for name in fold.checkpoints}
        return [name for name in CHECKPOINT_NAMES if name in present]

    def folds_with(self, checkpoint_name: str) -> list:
        """Return the folds that have ``checkpoint_name``."""
        return [fold.fold for fold in self.folds if checkpoint_name in fold.checkpoints]

    def describe(self) -> str:
        """Return one line for a model list, such as ``2d_nnsam · nnSAM · folds 0 (final, best), 1 (latest)``."""
        kind = "nnSAM" if self.kind == "nnsam" else "nnU-Net"
        folds = ", ".join(f"{fold.fold} ({', '.join(CHECKPOINT_LABELS[name] for name in fold.checkpoints)})"
                          for fold in self.folds)
        text = f"{self.configuration} · {kind} · fold{'s' if len(self.folds) > 1 else ''} {folds}"
        if self.sam_random:
            text += " · random SAM weights"
        return text


def list_trained_models(workspace: Workspace, dataset: str | None = None) -> list[TrainedModel]:
    """Return the trained models of ``workspace``, optionally of one dataset only.

    Parameters
    ----------
    workspace : Workspace
        Its ``results`` folder is searched.
    dataset : str, optional
        A ``DatasetXXX_Name`` folder name. Every dataset is listed by default.

    Returns
    -------
    list of TrainedModel
        Sorted by dataset and folder name. A folder counts as a model when its name
        has the form ``<trainer>__<plans>__<configuration>``, it contains
        ``plans.json`` and ``dataset.json``, and at least one fold has a checkpoint.
        A missing results or dataset folder gives an empty list.
    """
    results = Path(workspace.results)
    if dataset:
        dataset_folders = [results / dataset]
    elif results.is_dir():
        dataset_folders = sorted(path for path in results.iterdir() if path.name.startswith("Dataset"))
    else:
        dataset_folders = []
    models = []
    for dataset_folder in dataset_folders:
        if not dataset_folder.is_dir():
            continue
        for folder in sorted(dataset_folder.iterdir()):
            model = read_trained_model(folder)
            if model is not None:
                models.append(model)
    return models


def read_trained_model(folder: Path | str) -> TrainedModel | None:
    """Return the model in ``folder``, or None when it is not a model folder with a checkpoint."""
    folder = Path(folder)
    parts = folder.name.split("__")
    if not folder.is_dir() or len(parts) != 3 or not all(parts):
        return None
    if not ((folder / "plans.json").is_file() and (folder / "dataset.json").is_file()):
        logger.debug("Skipping %s: plans.json or dataset.json is missing.", folder)
        return None
    folds = [fold for fold in (_read_fold(path) for path in folder.glob("fold_*")) if fold is not None]
    if not folds:
        return None
    folds.sort(key=lambda fold: (isinstance(fold.fold, str), str(fold.fold).zfill(8)))
    trainer, plans_identifier, configuration = parts
    kind = "nnsam" if configuration.endswith(_NNSAM_SUFFIX) else "nnunet"
    return TrainedModel(folder, folder.parent.name, trainer, plans_identifier, configuration, kind, tuple(folds),
                        _channel_names(folder / "dataset.json"))


def _channel_names(path: Path) -> tuple[str, ...]:
    """Return the channel names of a ``dataset.json`` in channel order (``modality`` in nnU-Net v1 files)."""
    try:
        description = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as error:
        logger.warning("Cannot read %s: %s", path, error)
        return ()
    channels = description.get("channel_names", description.get("modality", {})) if isinstance(description, dict) \
        else {}
    try:
        return tuple(str(channels[key]) for key in sorted(channels, key=int))
    except (TypeError, ValueError):
        logger.warning("%s has channel keys that are not channel numbers: %s", path, list(channels))
        return ()


def _read_fold(path: Path) -> FoldCheckpoints | None:
    name = path.name[len("fold_"):]
    if not path.is_dir() or not (name.isdigit() or name == "all"):
        return None
    checkpoints = tuple(checkpoint for checkpoint in CHECKPOINT_NAMES if (path / checkpoint).is_file())
    if not checkpoints:
        return None
    return FoldCheckpoints(int(name) if name.isdigit() else name, checkpoints, _recorded_sam_random(path))


def _recorded_sam_random(fold_folder: Path) -> bool | None:
    path = fold_folder / OPTIONS_FILE
    if not path.is_file():
        return None
    try:
        value = json.loads(path.read_text(encoding="utf-8")).get("sam_random")
    except (OSError, json.JSONDecodeError, AttributeError) as error:
        logger.warning("Cannot read %s: %s", path, error)
        return None
    return bool(value) if value is not None else None
