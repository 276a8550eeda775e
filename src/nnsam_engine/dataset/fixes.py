"""Safe fixes of dataset problems: copying image geometry onto a label, remapping label values.

Each fix rewrites one label file atomically and returns a sentence saying what changed.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import DatasetError
from .case_checks import GEOMETRY_TOLERANCE
from .editing import _declared_values, describe_dataset
from .io import Geometry, read_image, write_image
from .layout import IMAGES_FOLDER, LABELS_FOLDER
from .report import CheckReport

COPY_GEOMETRY = "copy_geometry"
REMAP_LABELS = "remap_labels"


@dataclass(frozen=True)
class SafeFix:
    """A check problem of one case that a file rewrite can fix without guessing.

    Attributes
    ----------
    kind : {"copy_geometry", "remap_labels"}
        ``copy_geometry``: the label has the image's shape but another spacing, origin
        or direction, fixed by :func:`copy_image_geometry_to_label`.
        ``remap_labels``: the label contains undeclared integer values, fixed by
        :func:`remap_label_values` with a mapping that the user chooses.
    case : str
        Case identifier.
    title : str
        Short imperative description, such as a button text.
    undeclared_values : tuple of int
        For ``remap_labels``, the label values not declared in dataset.json.
    """

    kind: str
    case: str
    title: str
    undeclared_values: tuple[int, ...] = ()


def _case_files(folder: Path, case: str) -> tuple[Path, Path]:
    ending = describe_dataset(folder).file_ending
    image, label = folder / IMAGES_FOLDER / f"{case}_0000{ending}", folder / LABELS_FOLDER / f"{case}{ending}"
    for path in (image, label):
        if not path.is_file():
            raise DatasetError(f"File {path} of case {case} not found; check the case name, or add the file.")
    return image, label


def copy_image_geometry_to_label(dataset_folder: os.PathLike | str, case: str) -> str:
    """Rewrite the label of ``case`` with the spacing, origin and direction of its ``_0000`` image.

    Returns
    -------
    str
        A sentence describing what changed.

    Raises
    ------
    DatasetError
        If a file is missing or the label's shape differs from the image's, because then
        the label is on another voxel grid and needs resampling, not a new header.
    """
    folder = Path(dataset_folder)
    image_path, label_path = _case_files(folder, case)
    image, image_geometry = read_image(image_path)
    label, label_geometry = read_image(label_path)
    if image.shape != label.shape:
        raise DatasetError(f"Label {label_path.name} of case {case} has shape {label.shape} but image "
                           f"{image_path.name} has shape {image.shape}; copying the geometry needs equal shapes. "
                           "Resample the label onto the image grid with nearest-neighbor interpolation.")
    relative = label_path.relative_to(folder).as_posix()
    if label_geometry == image_geometry:
        return f"{relative} already has the geometry of {image_path.name}; nothing changed."
    write_image(label_path, label, image_geometry)
    changes = [f"{name} {_vector(old)} -> {_vector(new)}{unit}" for name, unit, old, new in (
        ("spacing", " mm", label_geometry.spacing, image_geometry.spacing),
        ("origin", " mm", label_geometry.origin, image_geometry.origin),
        ("direction", "", label_geometry.direction, image_geometry.direction),
    ) if old != new]
    return f"Copied the geometry of {image_path.name} to {relative}: {', '.join(changes)}."


def _vector(values) -> str:
    return "(" + ", ".join(f"{value:g}" for value in values) + ")"


def remap_label_values(dataset_folder: os.PathLike | str, case: str, mapping: dict[int, int]) -> str:
    """Rewrite the label of ``case`` with each value ``old`` replaced by ``mapping[old]``, all at once.

    Values not in ``mapping`` stay as they are, so ``{1: 2, 2: 1}`` swaps two labels.

    Returns
    -------
    str
        A sentence describing what changed.

    Raises
    ------
    DatasetError
        If a target value is not declared in dataset.json or a source value does not
        occur in the label.
    """
    folder = Path(dataset_folder)
    _, label_path = _case_files(folder, case)
    declared = sorted(_declared_values(folder))
    undeclared_targets = sorted({new for new in mapping.values() if new not in declared})
    if undeclared_targets:
        raise DatasetError(f"Cannot remap the label of case {case} to {undeclared_targets}, which dataset.json "
                           f"does not declare (declared: {declared}); map each value to a declared label.")
    label, geometry = read_image(label_path)
    found = np.unique(label).tolist()
    absent = sorted(old for old in mapping if old not in found)
    if absent:
        raise DatasetError(f"Label {label_path.name} of case {case} has no voxels with the values {absent} "
                           f"(found: {found}); remap only values that occur in the label.")
    remapped = label.copy()
    for old, new in mapping.items():
        remapped[label == old] = new
    write_image(label_path, remapped, geometry)
    changes = ", ".join(f"{old} -> {new}" for old, new in sorted(mapping.items()))
    remaining = [value for value in np.unique(remapped).tolist() if value not in declared]
    note = f" Values {remaining} are still undeclared." if remaining else ""
    return f"Remapped the values of {label_path.relative_to(folder).as_posix()}: {changes}.{note}"


def find_safe_fixes(dataset_folder: os.PathLike | str, report: CheckReport,
                    spacing_tolerance: float = 1e-3) -> list[SafeFix]:
    """Return the safe fixes for the label problems of ``report``, judged from the files themselves.

    Only cases with a problem in their label file are read. The files are compared
    again, so the result does not depend on the wording of the problems.
    """
    folder = Path(dataset_folder)
    ending = report.file_ending or ""
    cases = sorted({problem.case for problem in report.problems if problem.case
                    and problem.file == f"{LABELS_FOLDER}/{problem.case}{ending}"})
    declared = _declared_values(folder) if cases else frozenset()
    fixes = []
    for case in cases:
        try:
            image, image_geometry = read_image(folder / IMAGES_FOLDER / f"{case}_0000{ending}")
            label, label_geometry = read_image(folder / LABELS_FOLDER / f"{case}{ending}")
        except DatasetError:
            continue  # the report already names the unreadable file
        if image.shape == label.shape and _geometry_differs(image_geometry, label_geometry, spacing_tolerance):
            fixes.append(SafeFix(COPY_GEOMETRY, case, f"Copy image geometry to {case} label"))
        values = np.unique(label)
        if np.all(values == np.round(values)):
            undeclared = tuple(int(value) for value in values if int(value) not in declared)
            if undeclared:
                fixes.append(SafeFix(REMAP_LABELS, case, f"Remap label values of {case}", undeclared))
    return fixes


def _geometry_differs(reference: Geometry, other: Geometry, spacing_tolerance: float) -> bool:
    if reference.ndim != other.ndim:
        return True
    spacing, reference_spacing = np.array(other.spacing), np.array(reference.spacing)
    limit = spacing_tolerance * np.maximum(np.abs(spacing), np.abs(reference_spacing))
    return bool(np.any(np.abs(spacing - reference_spacing) > limit)
                or not np.allclose(other.origin, reference.origin, rtol=0.0, atol=GEOMETRY_TOLERANCE)
                or not np.allclose(other.direction, reference.direction, rtol=0.0, atol=GEOMETRY_TOLERANCE))


__all__ = ["COPY_GEOMETRY", "REMAP_LABELS", "SafeFix", "copy_image_geometry_to_label", "find_safe_fixes",
           "remap_label_values"]
