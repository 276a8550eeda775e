"""Evaluation of a folder of predicted segmentations against a folder of reference labels.

Files are paired by name. For every case and foreground class the Dice coefficient,
HD95 and ASD (in mm, from the reference's spacing) are computed with the conventions
of :mod:`nnsam_engine.evaluation.metrics`. The results are written to
``evaluation.json`` and ``evaluation.csv``.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import math
import os
from pathlib import Path
from typing import Callable

import numpy as np

from ..atomic import write_json_atomic, write_text_atomic
from ..dataset.io import SUPPORTED_ENDINGS, file_ending as ending_of, read_image
from ..errors import DatasetError
from . import metrics

logger = logging.getLogger(__name__)

JSON_NAME = "evaluation.json"
CSV_NAME = "evaluation.csv"
CSV_COLUMNS = ("case", "label", "label_name", "dice", "hd95_mm", "asd_mm")
#: Relative tolerance for the spacing of a prediction against its reference.
SPACING_RTOL = 1e-3
#: nnU-Net's reserved label name for voxels that are excluded from training and evaluation.
IGNORE_LABEL_NAME = "ignore"
_METRIC_NAMES = ("dice", "hd95_mm", "asd_mm")


def _read_dataset_json(folder: Path) -> dict | None:
    path = folder / "dataset.json"
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise DatasetError(f"Cannot read {path}: {error}. Expected a valid JSON file. Fix or remove it.") from error


def _dataset_infos(prediction_folder: Path, reference_folder: Path) -> list[tuple[Path, dict]]:
    """Return the dataset.json files found, in the order they are consulted."""
    found = []
    for folder in (prediction_folder, reference_folder, reference_folder.parent):
        info = _read_dataset_json(folder)
        if info is not None:
            found.append((folder / "dataset.json", info))
    return found


def _choose_file_ending(file_ending: str | None, infos, reference_folder: Path) -> str:
    if file_ending:
        return file_ending if file_ending.startswith(".") else "." + file_ending
    for _, info in infos:
        if info.get("file_ending"):
            return str(info["file_ending"])
    found = {ending_of(path) for path in reference_folder.iterdir() if path.is_file()}
    endings = sorted(found & set(SUPPORTED_ENDINGS))
    if len(endings) != 1:
        raise DatasetError(
            f"Cannot determine the file ending of the labels in {reference_folder}: "
            f"found endings {endings or 'none'}, expected exactly one of {', '.join(SUPPORTED_ENDINGS)}. "
            "Pass file_ending, for example '.nii.gz'."
        )
    return endings[0]


def _list_cases(folder: Path, file_ending: str) -> dict[str, Path]:
    return {
        path.name[: -len(file_ending)]: path
        for path in sorted(folder.iterdir())
        if path.is_file() and not path.name.startswith(".") and path.name.endswith(file_ending)
    }


def _pair_cases(prediction_folder: Path, reference_folder: Path, file_ending: str):
    predictions = _list_cases(prediction_folder, file_ending)
    references = _list_cases(reference_folder, file_ending)
    if not references:
        raise DatasetError(
            f"No reference files ending in {file_ending} found in {reference_folder}. "
            "Check the folder and the file ending."
        )
    missing = sorted(set(references) - set(predictions))
    if missing:
        listed = ", ".join(missing[:10]) + (f" and {len(missing) - 10} more" if len(missing) > 10 else "")
        raise DatasetError(
            f"{len(missing)} of {len(references)} reference cases have no prediction in {prediction_folder}: {listed}. "
            f"Expected a file named CASE{file_ending} for each; run prediction for these cases or remove their labels."
        )
    extra = sorted(set(predictions) - set(references))
    if extra:
        logger.warning(
            "Ignoring %d predictions without a reference in %s: %s", len(extra), reference_folder, ", ".join(extra[:10])
        )
    return [(case, predictions[case], references[case]) for case in sorted(references)], extra


def _label_value(name: str, value, source: str):
    """Return an int, or a tuple of ints for an nnU-Net region label."""
    is_region = isinstance(value, (list, tuple))
    values = list(value) if is_region else [value]
    if not values or not all(isinstance(item, (int, np.integer)) and not isinstance(item, bool) for item in values):
        raise DatasetError(
            f"Invalid value {value!r} for label {name!r} in {source}: expected an integer or a list of integers."
        )
    if is_region:
        return tuple(int(item) for item in values)
    return int(value)


def _foreground_labels(labels: dict, source: str) -> tuple[dict, object]:
    """Split labels into foreground classes (name -> value) and the ignore value (or None)."""
    if not isinstance(labels, dict) or not labels:
        raise DatasetError(f"Invalid labels in {source}: found {labels!r}, expected a dict of name -> value.")
    foreground, ignore_value = {}, None
    for name, value in labels.items():
        checked = _label_value(name, value, source)
        if name == IGNORE_LABEL_NAME:
            ignore_value = checked
        elif checked != 0 and checked != (0,):
            foreground[str(name)] = checked
    return foreground, ignore_value


def _mask(array: np.ndarray, value) -> np.ndarray:
    return np.isin(array, value) if isinstance(value, tuple) else array == value


def _read_pair(prediction_path: Path, reference_path: Path) -> tuple[np.ndarray, np.ndarray, tuple[float, ...]]:
    prediction, prediction_geometry = read_image(prediction_path)
    reference, reference_geometry = read_image(reference_path)
    for path, array, geometry in (
        (prediction_path, prediction, prediction_geometry),
        (reference_path, reference, reference_geometry),
    ):
        if array.ndim != geometry.ndim:
            raise DatasetError(
                f"Label file {path} has vector pixels (array shape {array.shape}), "
                "expected a single-channel label map."
            )
    if prediction.shape != reference.shape:
        raise DatasetError(
            f"Shape mismatch: prediction {prediction_path} has shape {prediction.shape}, "
            f"reference {reference_path} has shape {reference.shape}. The prediction must be on the reference "
            "image's voxel grid, so check that both files belong to the same case."
        )
    if not np.allclose(prediction_geometry.spacing, reference_geometry.spacing, rtol=SPACING_RTOL, atol=0):
        raise DatasetError(
            f"Spacing mismatch: prediction {prediction_path} has spacing {prediction_geometry.spacing} mm, reference "
            f"{reference_path} has {reference_geometry.spacing} mm (relative tolerance {SPACING_RTOL}). "
            "Resample the prediction to the reference image's grid or check that both files belong to the same case."
        )
    return prediction, reference, reference_geometry.spacing


def _class_metrics(prediction: np.ndarray, reference: np.ndarray, value, spacing, ignored) -> dict:
    pred_mask, ref_mask = _mask(prediction, value), _mask(reference, value)
    if ignored is not None:
        # NOTE: ignored voxels become background, so their border adds surface voxels to both masks.
        pred_mask &= ~ignored
        ref_mask &= ~ignored
    hd95, asd = metrics.surface_distances(pred_mask, ref_mask, spacing)
    return {
        "label": list(value) if isinstance(value, tuple) else value,
        "dice": metrics.dice(pred_mask, ref_mask),
        "hd95_mm": hd95,
        "asd_mm": asd,
        "prediction_voxels": int(pred_mask.sum()),
        "reference_voxels": int(ref_mask.sum()),
    }


def _empty_class_metrics(value) -> dict:
    """Metrics of a class absent from both files, following the both-empty conventions of the metrics module."""
    return {"label": value, "dice": 1.0, "hd95_mm": 0.0, "asd_mm": 0.0, "prediction_voxels": 0, "reference_voxels": 0}


def _found_labels(prediction: np.ndarray, reference: np.ndarray) -> dict:
    values = np.union1d(np.unique(prediction), np.unique(reference))
    return {f"label_{int(value)}": int(value) for value in values if value != 0}


def _select_labels(labels: dict | None, infos) -> tuple[dict | None, object]:
    """Return (foreground labels or None to use the values found, ignore value or None)."""
    if labels is not None:
        return _foreground_labels(labels, "the labels argument")
    for source, info in infos:
        if "labels" in info:
            return _foreground_labels(info["labels"], str(source))
    return None, None


def _evaluate_case(case: str, prediction_path: Path, reference_path: Path, labels, ignore_value) -> dict:
    prediction, reference, spacing = _read_pair(prediction_path, reference_path)
    case_labels = labels if labels is not None else _found_labels(prediction, reference)
    ignored = _mask(reference, ignore_value) if ignore_value is not None else None
    return {
        "case": case,
        "prediction_file": str(prediction_path),
        "reference_file": str(reference_path),
        "spacing_mm": list(spacing),
        "classes": {
            name: _class_metrics(prediction, reference, value, spacing, ignored) for name, value in case_labels.items()
        },
    }


def _evaluate_pairs(pairs, labels: dict | None, ignore_value, progress) -> tuple[list[dict], dict]:
    """Evaluate every pair and return the per-case results and the labels evaluated."""
    cases = []
    for index, (case, prediction_path, reference_path) in enumerate(pairs, start=1):
        cases.append(_evaluate_case(case, prediction_path, reference_path, labels, ignore_value))
        if progress is not None:
            progress(index, len(pairs))
    if labels is not None:
        return cases, labels

    # Without a label list, each case contains only the values present in its files, so a
    # class absent from both files of a case gets the both-empty metrics here.
    found = {}
    for case in cases:
        found.update({name: row["label"] for name, row in case["classes"].items()})
    labels = dict(sorted(found.items(), key=lambda item: item[1]))
    for case in cases:
        case["classes"] = {
            name: case["classes"].get(name) or _empty_class_metrics(value) for name, value in labels.items()
        }
    return cases, labels


def _nan_mean(values) -> float:
    finite = [value for value in values if not math.isnan(value)]
    return float(np.mean(finite)) if finite else float("nan")


def _summarise(cases: list[dict], labels: dict) -> dict:
    per_class = {}
    for name, value in labels.items():
        rows = [case["classes"][name] for case in cases]
        per_class[name] = {"label": list(value) if isinstance(value, tuple) else value}
        for metric in _METRIC_NAMES:
            per_class[name][metric] = _nan_mean([row[metric] for row in rows])
        per_class[name]["cases_with_distances"] = sum(not math.isnan(row["hd95_mm"]) for row in rows)
    foreground_mean = {
        metric: _nan_mean([entry[metric] for entry in per_class.values()]) for metric in _METRIC_NAMES
    }
    return {"per_class": per_class, "foreground_mean": foreground_mean}


def _without_nan(value):
    """Replace nan with None recursively, because JSON has no nan."""
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, dict):
        return {key: _without_nan(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_without_nan(item) for item in value]
    return value


def _csv_text(cases: list[dict]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for case in cases:
        for name, row in case["classes"].items():
            label = "+".join(str(v) for v in row["label"]) if isinstance(row["label"], list) else row["label"]
            numbers = ["" if math.isnan(row[metric]) else repr(float(row[metric])) for metric in _METRIC_NAMES]
            writer.writerow([case["case"], label, name, *numbers])
    return buffer.getvalue()


def _software_note() -> dict:
    import scipy

    return {
        "package": "nnsam_engine.evaluation",
        "numpy": np.__version__,
        "scipy": scipy.__version__,
        "conventions": (
            "Dice of two empty masks is 1. HD95 and ASD are in mm, symmetric, from the pooled distances between "
            "face-connected surface voxels of both masks (HD95: 95th percentile, ASD: mean). Both masks empty: 0. "
            "Exactly one empty: null, which the means skip. Background (label 0) is not evaluated."
        ),
    }


def evaluate_folders(
    prediction_folder: os.PathLike | str,
    reference_folder: os.PathLike | str,
    *,
    labels: dict | None = None,
    file_ending: str | None = None,
    output_folder: os.PathLike | str | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> dict:
    """Compute Dice, HD95 and ASD per case and class, and write ``evaluation.json`` and ``evaluation.csv``.

    Parameters
    ----------
    prediction_folder, reference_folder : path-like
        Folders of label maps, paired by file name. Every reference case needs a prediction.
        Predictions without a reference are logged and skipped.
    labels : dict, optional
        Class name -> label value (an int, or a list of ints for an nnU-Net region). Label 0
        and the class named ``"ignore"`` are not evaluated, and ``"ignore"`` voxels of the
        reference are removed from both masks. Defaults to the ``labels`` of the first
        ``dataset.json`` in the prediction folder, the reference folder or its parent,
        else to every nonzero value found in the files (named ``label_<value>``).
    file_ending : str, optional
        Such as ``".nii.gz"``. Defaults to ``file_ending`` from ``dataset.json``, else the
        one ending found in the reference folder.
    output_folder : path-like, optional
        Where the two files are written atomically; defaults to ``prediction_folder``.
    progress : callable, optional
        Called as ``progress(cases_done, cases_total)`` after each case.

    Returns
    -------
    dict
        The content of ``evaluation.json``: ``cases`` (per case: files, ``spacing_mm`` and per
        class metrics), ``summary`` (nan-aware means per class and over the foreground classes)
        and the settings used. Undefined values (nan) are stored as None.

    Raises
    ------
    DatasetError
        If a folder or a prediction is missing, or a pair differs in shape or spacing.
    """
    prediction_folder, reference_folder = Path(prediction_folder), Path(reference_folder)
    for role, folder in (("Prediction", prediction_folder), ("Reference", reference_folder)):
        if not folder.is_dir():
            raise DatasetError(f"{role} folder not found: {folder}. Check the path.")
    infos = _dataset_infos(prediction_folder, reference_folder)
    file_ending = _choose_file_ending(file_ending, infos, reference_folder)
    pairs, extra = _pair_cases(prediction_folder, reference_folder, file_ending)
    labels, ignore_value = _select_labels(labels, infos)
    cases, labels = _evaluate_pairs(pairs, labels, ignore_value, progress)

    result = {
        "prediction_folder": str(prediction_folder),
        "reference_folder": str(reference_folder),
        "file_ending": file_ending,
        "labels": {name: list(value) if isinstance(value, tuple) else value for name, value in labels.items()},
        "number_of_cases": len(cases),
        "ignored_predictions": extra,
        "summary": _summarise(cases, labels),
        "cases": cases,
        "software": _software_note(),
    }
    output_folder = Path(output_folder) if output_folder is not None else prediction_folder
    write_text_atomic(output_folder / CSV_NAME, _csv_text(cases))
    result = _without_nan(result)
    write_json_atomic(output_folder / JSON_NAME, result)
    logger.info("Evaluated %d cases and wrote %s and %s to %s", len(cases), JSON_NAME, CSV_NAME, output_folder)
    return result
