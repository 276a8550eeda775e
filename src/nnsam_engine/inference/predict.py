"""Prediction of image folders and of in-memory volumes."""

from __future__ import annotations

import logging
import os
import re
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..atomic import write_json_atomic
from ..dataset.io import Geometry
from ..errors import PredictionError
from .model import LoadedModel

logger = logging.getLogger(__name__)

METADATA_FILE = "nnsam_prediction.json"
_CHANNEL_FILE = re.compile(r"^(?P<case>.+)_(?P<channel>\d{4})$")


def _strip_ending(name: str, ending: str) -> str | None:
    return name[: -len(ending)] if name.endswith(ending) else None


def find_input_cases(input_folder: Path, file_ending: str, num_channels: int) -> dict[str, list[Path]]:
    """Group the files of ``input_folder`` by case and check every case has each channel once.

    Files must be named ``<case>_<XXXX><file_ending>`` as in nnU-Net's ``imagesTr``.

    Raises
    ------
    PredictionError
        Naming every badly named file and every case with missing or extra channels.
    """
    input_folder = Path(input_folder)
    if not input_folder.is_dir():
        raise PredictionError(f"Input folder not found: {input_folder}.")
    cases: dict[str, dict[int, Path]] = {}
    problems = []
    for path in sorted(input_folder.iterdir()):
        if path.name.startswith("."):
            continue
        if path.is_symlink() and not path.exists():
            problems.append(f"{path.name}: broken symbolic link to {os.readlink(path)}")
            continue
        if not path.is_file():
            continue
        stem = _strip_ending(path.name, file_ending)
        match = _CHANNEL_FILE.match(stem) if stem is not None else None
        if match is None:
            problems.append(f"{path.name}: expected a name like <case>_0000{file_ending}")
            continue
        channel = int(match.group("channel"))
        if channel >= num_channels:
            problems.append(f"{path.name}: channel {channel} found, the model takes channels 0 to {num_channels - 1}")
            continue
        cases.setdefault(match.group("case"), {})[channel] = path
    for case, channels in cases.items():
        missing = [f"{index:04d}" for index in range(num_channels) if index not in channels]
        if missing:
            problems.append(f"case {case}: channel file(s) {', '.join(missing)} missing; the model expects "
                            f"{num_channels} channel(s)")
    if problems:
        raise PredictionError(f"Input folder {input_folder} does not fit the model:\n  " + "\n  ".join(problems)
                              + "\nRename or add the files, then run again.")
    if not cases:
        raise PredictionError(f"No '*_0000{file_ending}' images in {input_folder}. The model reads {file_ending} "
                              "files named <case>_0000" f"{file_ending}.")
    return {case: [channels[index] for index in range(num_channels)] for case, channels in sorted(cases.items())}


def predict_folder(model: LoadedModel, input_folder: Path | str, output_folder: Path | str, *,
                   save_probabilities: bool = False, overwrite: bool = True, part_id: int = 0, num_parts: int = 1,
                   num_processes: int | None = None) -> list[Path]:
    """Predict every case of ``input_folder`` into ``output_folder``.

    Outputs carry each input's spacing, origin and direction. They are written to
    a temporary folder inside ``output_folder`` and moved into place when all are
    done, so an interrupted run leaves no partial file among the outputs.
    ``part_id`` and ``num_parts`` split the cases across jobs as nnU-Net does.

    Returns
    -------
    list of Path
        The segmentation files written.
    """
    from ..workspace import worker_environment

    if not 0 <= part_id < num_parts:
        raise PredictionError(f"--part-id must be 0 to {num_parts - 1} for --num-parts {num_parts}, got {part_id}.")
    file_ending = model.dataset_json["file_ending"]
    cases = find_input_cases(Path(input_folder), file_ending, model.num_input_channels)
    output_folder = Path(output_folder)
    output_folder.mkdir(parents=True, exist_ok=True)
    names = sorted(cases)[part_id::num_parts]
    if not overwrite:
        names = [name for name in names if not (output_folder / f"{name}{file_ending}").exists()]
    workers = num_processes or int(worker_environment()["nnUNet_def_n_proc"])
    staging = Path(tempfile.mkdtemp(prefix=".partial-", dir=output_folder))
    try:
        if names:
            model.predictor.predict_from_files([[str(path) for path in cases[name]] for name in names],
                                               [str(staging / name) for name in names],
                                               save_probabilities=save_probabilities, overwrite=True,
                                               num_processes_preprocessing=max(1, min(workers, len(names))),
                                               num_processes_segmentation_export=max(1, min(workers, len(names))))
        written = []
        for path in sorted(staging.iterdir()):
            os.replace(path, output_folder / path.name)
            if path.name.endswith(file_ending):
                written.append(output_folder / path.name)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    _write_metadata(model, output_folder)
    return written


def _write_metadata(model: LoadedModel, output_folder: Path) -> None:
    metadata = model.metadata()
    if model.sam_random:
        metadata["warning"] = "Made with seeded RANDOM SAM weights: for tests and demos only, not for use on patients."
        logger.warning("Predictions in %s were made with RANDOM SAM weights (tests and demos only).", output_folder)
    write_json_atomic(output_folder / METADATA_FILE, metadata)


@dataclass
class VolumePrediction:
    """Result of :func:`predict_volume`, in the input's axis order and geometry."""

    labels: np.ndarray
    geometry: Geometry
    probabilities: np.ndarray | None
    metadata: dict


def predict_volume(model: LoadedModel, image: np.ndarray, spacing, origin=None, direction=None, *,
                   axes: str = "zyx", return_probabilities: bool = False) -> VolumePrediction:
    """Predict one image held in memory.

    Parameters
    ----------
    model : LoadedModel
        From :func:`nnsam_engine.inference.model.load_model`.
    image : ndarray
        ``(Z, Y, X)`` or ``(C, Z, Y, X)`` for 3D, ``(Y, X)`` or ``(C, Y, X)`` for 2D,
        with axes as named by ``axes`` (channels always first). A missing channel
        axis means one channel.
    spacing : sequence of float
        Voxel size in mm along the spatial axes, in the same order as ``axes``.
    origin, direction : sequence of float, optional
        World origin and row-major direction matrix in ITK (x, y, z) convention;
        they do not change the prediction and are returned unchanged.
    axes : {"zyx", "xyz", "yx", "xy"}
        Order of the spatial axes of ``image`` and ``spacing``. ``zyx`` is what
        SimpleITK and napari use; ``xyz`` is nibabel's.
    return_probabilities : bool
        Also return per-class probabilities ``(K, *spatial)``.

    Returns
    -------
    VolumePrediction
        ``labels`` has the spatial shape of ``image`` in the same axis order.
    """
    spatial = len(axes)
    if axes not in ("zyx", "xyz", "yx", "xy"):
        raise PredictionError(f"axes must be 'zyx', 'xyz', 'yx' or 'xy', got '{axes}'.")
    image = np.asarray(image)
    if image.ndim == spatial:
        image = image[None]
    if image.ndim != spatial + 1:
        raise PredictionError(f"Image has shape {image.shape}; expected {spatial} spatial axes ('{axes}') with an "
                              "optional channel axis first.")
    if image.shape[0] != model.num_input_channels:
        raise PredictionError(f"Image has {image.shape[0]} channel(s); the model takes {model.num_input_channels}.")
    spacing = [float(value) for value in spacing]
    if len(spacing) != spatial or min(spacing) <= 0:
        raise PredictionError(f"spacing {spacing} must have {spatial} positive values in mm, one per axis of '{axes}'.")
    if not np.all(np.isfinite(image)):
        raise PredictionError("Image contains NaN or infinite values; replace them before predicting.")

    reverse = axes in ("xyz", "xy")
    if reverse:
        image = np.ascontiguousarray(np.moveaxis(image, list(range(1, spatial + 1)), list(range(spatial, 0, -1))))
        spacing = spacing[::-1]
    if spatial == 2:
        # nnU-Net treats 2D images as one slice with a large out-of-plane spacing.
        image = image[:, None]
        spacing = [999.0] + spacing
    result = model.predictor.predict_single_npy_array(image.astype(np.float32), {"spacing": spacing}, None, None,
                                                      return_probabilities)
    labels, probabilities = (result if return_probabilities else (result, None))
    if spatial == 2:
        labels = labels[0]
        probabilities = probabilities[:, 0] if probabilities is not None else None
    if reverse:
        labels = np.ascontiguousarray(labels.T)
        if probabilities is not None:
            probabilities = np.ascontiguousarray(np.moveaxis(probabilities, list(range(1, spatial + 1)),
                                                             list(range(spatial, 0, -1))))
    geometry_spacing = tuple(spacing[1:] if spatial == 2 else spacing)
    if reverse:
        geometry_spacing = geometry_spacing[::-1]
    ndim = spatial
    geometry = Geometry(geometry_spacing, tuple(origin) if origin is not None else (0.0,) * ndim,
                        tuple(direction) if direction is not None else tuple(np.eye(ndim).ravel().tolist()))
    metadata = model.metadata()
    if model.sam_random:
        metadata["warning"] = "Made with seeded RANDOM SAM weights: for tests and demos only."
    return VolumePrediction(labels, geometry, probabilities, metadata)
