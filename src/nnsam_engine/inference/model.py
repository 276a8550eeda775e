"""Loading a trained model folder into nnunetv2's predictor."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

from ..errors import ModelError
from ..training.checkpoints import load_checkpoint

logger = logging.getLogger(__name__)

CHECKPOINT_NAMES = ("checkpoint_final.pth", "checkpoint_best.pth", "checkpoint_latest.pth")


@dataclass
class LoadedModel:
    """A predictor ready to run, and what it was built from."""

    predictor: object
    model_folder: Path
    folds: list
    checkpoint_name: str
    configuration: str
    is_nnsam: bool
    sam_sha256: str | None
    sam_random: bool
    dataset_json: dict = field(repr=False)

    @property
    def num_input_channels(self) -> int:
        channels = self.dataset_json.get("channel_names", self.dataset_json.get("modality", {}))
        return len(channels)

    def metadata(self) -> dict:
        """Return the facts about this model that every prediction records."""
        return {
            "model_folder": str(self.model_folder),
            "configuration": self.configuration,
            "folds": [str(fold) for fold in self.folds],
            "checkpoint": self.checkpoint_name,
            "model": "nnsam" if self.is_nnsam else "nnunet",
            "sam_weights_sha256": self.sam_sha256,
            "sam_weights_random": self.sam_random,
            "test_time_mirroring": bool(getattr(self.predictor, "use_mirroring", False)),
        }


def available_folds(model_folder: Path, checkpoint_name: str) -> list:
    """Return the folds of ``model_folder`` that hold ``checkpoint_name``, sorted."""
    folds = []
    for path in sorted(Path(model_folder).glob("fold_*")):
        if (path / checkpoint_name).is_file():
            name = path.name[len("fold_"):]
            folds.append(int(name) if name.isdigit() else name)
    return folds


def load_model(model_folder: Path | str, folds: Sequence | None = None, checkpoint_name: str = "checkpoint_final.pth",
               *, device: str = "cpu", sam_weights: str | None = None, sam_sha256: str | None = None,
               use_mirroring: bool = True, tile_step_size: float = 0.5, verbose: bool = False) -> LoadedModel:
    """Build nnunetv2's predictor for a trained model folder.

    Parameters
    ----------
    model_folder : path-like
        ``<results>/<dataset>/<trainer>__<plans>__<configuration>``.
    folds : sequence, optional
        Folds to ensemble; every fold with the checkpoint by default.
    checkpoint_name : str
        ``checkpoint_final.pth`` (default), ``checkpoint_best.pth`` or ``checkpoint_latest.pth``.
    device : {"cpu", "cuda", "mps"}
    sam_weights : str, optional
        SAM weights file, or ``"random"`` for a model trained with random SAM
        weights; resolved like ``nnsam weights status`` otherwise. The file must
        have the SHA-256 recorded in the checkpoint.
    sam_sha256 : str, optional
        Accepted only if equal to the recorded hash; for an explicit check.
    use_mirroring : bool
        Test-time augmentation by mirroring, as nnU-Net does by default.

    Raises
    ------
    ModelError
        If the folder, a checkpoint or the plans are missing, or the SAM weights differ from training.
    """
    import torch
    from nnunetv2.inference.predict_from_raw_data import nnUNetPredictor
    from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer
    from nnunetv2.utilities.label_handling.label_handling import determine_num_input_channels
    from nnunetv2.utilities.plans_handling.plans_handler import PlansManager

    from ..network.nnsam_unet import NnSAMUNet

    model_folder = Path(model_folder)
    if not model_folder.is_dir():
        raise ModelError(f"Model folder not found: {model_folder}. Train the model first, or check the dataset, "
                         "configuration and --workspace (or pass the folder that training created).")
    for name in ("plans.json", "dataset.json"):
        if not (model_folder / name).is_file():
            raise ModelError(f"{model_folder} is not a trained model folder: {name} is missing. Pick the folder "
                             "named <trainer>__<plans>__<configuration> that training created.")
    if checkpoint_name not in CHECKPOINT_NAMES:
        raise ModelError(f"Checkpoint '{checkpoint_name}' is not one of {', '.join(CHECKPOINT_NAMES)}.")
    folds = list(folds) if folds else available_folds(model_folder, checkpoint_name)
    if not folds:
        raise ModelError(f"No fold of {model_folder} has {checkpoint_name}; finish a training or choose "
                         "--checkpoint checkpoint_latest.pth or checkpoint_best.pth.")
    checkpoints = [load_checkpoint(model_folder / f"fold_{fold}" / checkpoint_name) for fold in folds]
    parameters = [checkpoint["network_weights"] for checkpoint in checkpoints]
    configuration = checkpoints[0]["init_args"]["configuration"]

    dataset_json = json.loads((model_folder / "dataset.json").read_text(encoding="utf-8"))
    plans_manager = PlansManager(json.loads((model_folder / "plans.json").read_text(encoding="utf-8")))
    configuration_manager = plans_manager.get_configuration(configuration)
    network = nnUNetTrainer.build_network_architecture(
        plans_manager, configuration_manager,
        determine_num_input_channels(plans_manager, configuration_manager, dataset_json),
        plans_manager.get_label_manager(dataset_json).num_segmentation_heads, enable_deep_supervision=False)

    sha256, random = None, False
    if isinstance(network, NnSAMUNet):
        sha256, random = _load_sam(network, parameters[0], sam_weights, sam_sha256, model_folder)
    network.load_state_dict(parameters[0])

    predictor = nnUNetPredictor(tile_step_size=tile_step_size, use_gaussian=True, use_mirroring=use_mirroring,
                                perform_everything_on_device=device == "cuda", device=torch.device(device),
                                verbose=verbose, verbose_preprocessing=False, allow_tqdm=False)
    predictor.manual_initialization(network, plans_manager, configuration_manager, parameters, dataset_json,
                                    checkpoints[0]["trainer_name"], checkpoints[0].get("inference_allowed_mirroring_axes"))
    return LoadedModel(predictor, model_folder, folds, checkpoint_name, configuration, isinstance(network, NnSAMUNet),
                       sha256, random, dataset_json)


def _load_sam(network, state: dict, sam_weights: str | None, sam_sha256: str | None,
              model_folder: Path) -> tuple[str, bool]:
    from ..network.weights import RANDOM, load_sam_state_dict, resolve_weights

    recorded = bytes(state["sam_weights_sha256"].tolist()).hex()
    recorded_random = bool(state["sam_weights_random"].item())
    if sam_sha256 is not None and sam_sha256.lower() != recorded:
        raise ModelError(f"--sam-weights-sha256 {sam_sha256} differs from the hash recorded in {model_folder}: "
                         f"{recorded}.")
    if recorded_random:
        if sam_weights != RANDOM:
            raise ModelError(
                f"{model_folder} was trained with seeded RANDOM SAM weights (a test or demo model). Predicting with "
                "it needs --sam-weights random, and its outputs are marked as made with random SAM weights."
            )
        network.load_sam_weights(None, "", random=True, source=RANDOM)
        return network.recorded_sam_sha256, True
    if sam_weights == RANDOM:
        raise ModelError(f"{model_folder} was trained with SAM weights of SHA-256 {recorded}; random SAM weights "
                         "cannot replace them. Pass that file with --sam-weights PATH.")
    weights = resolve_weights(sam_weights, expected_sha256=recorded)
    network.load_sam_weights(load_sam_state_dict(weights), weights.sha256, random=False, source=str(weights.path))
    return weights.sha256, False
