"""Checking a raw nnU-Net v2 dataset before planning and training.

:func:`check_dataset` collects every problem it finds, by case, instead of
stopping at the first, so one run shows everything to fix.
:func:`require_valid_dataset` raises if any of them is an error.
"""

from __future__ import annotations

import logging
import os
from collections import Counter
from pathlib import Path
from typing import Callable

from ..errors import DatasetCheckError
from .case_checks import check_case, has_color_channels, load_case
from .dataset_json import DatasetSpec, parse_dataset_json, read_dataset_json
from .layout import (
    IMAGES_FOLDER,
    LABELS_FOLDER,
    CaseFiles,
    attach_label_files,
    check_case_files,
    check_folder,
    check_subfolder,
    find_image_files,
    guess_file_ending,
)
from .report import CheckReport, Problem

logger = logging.getLogger(__name__)

ProgressCallback = Callable[[int, int], None]


def check_dataset(
    folder: os.PathLike | str,
    *,
    spacing_tolerance: float = 1e-3,
    progress: ProgressCallback | None = None,
) -> CheckReport:
    """Check a raw nnU-Net v2 dataset and report every problem found.

    The check covers the folder layout, dataset.json, the file names in
    ``imagesTr`` and ``labelsTr`` and, for each case, the contents of its channel
    files and label. Every file is read once with SimpleITK. NIfTI images stored
    as floating point are read again with nibabel to look for NaN and inf.

    Parameters
    ----------
    folder : path-like
        The dataset folder, ``DatasetXXX_Name``.
    spacing_tolerance : float, optional
        Largest allowed relative difference between the spacings of a case's
        files, per axis.
    progress : callable, optional
        Called as ``progress(done, total)`` after each case is checked.

    Returns
    -------
    CheckReport
        All problems, the number of cases, the dimensionality (2 or 3), the
        number of channels and the file ending.

    Raises
    ------
    ValueError
        If ``spacing_tolerance`` is negative. Problems in the dataset, including
        missing, unreadable or unlisted files, are reported instead of raised.
    """
    if not spacing_tolerance >= 0:
        raise ValueError(f"spacing_tolerance must be a non-negative number, got {spacing_tolerance!r}.")
    folder = Path(folder)
    report = CheckReport(folder=folder)
    problems = report.problems
    if not check_folder(folder, problems):
        return report

    has_images = check_subfolder(folder, IMAGES_FOLDER, problems)
    has_labels = check_subfolder(folder, LABELS_FOLDER, problems)
    data = read_dataset_json(folder, problems)
    spec = parse_dataset_json(data, problems) if data is not None else DatasetSpec(None, None, None, None)

    # When file_ending is missing or invalid, the most common ending in imagesTr
    # is used instead, so the file and image checks still run.
    report.file_ending = spec.file_ending or guess_file_ending(folder / IMAGES_FOLDER)

    if not has_images or report.file_ending is None:
        return _sorted(report)

    cases = find_image_files(folder / IMAGES_FOLDER, report.file_ending, problems)
    if has_labels:
        attach_label_files(folder / LABELS_FOLDER, report.file_ending, cases, problems)
    report.num_channels = spec.num_channels or _highest_channel_count(cases)
    _check_case_count(spec.num_training, len(cases), report.file_ending, problems)

    dimensions = _check_cases(folder, cases, spec, report, has_labels, spacing_tolerance, progress)
    report.num_cases = len(cases)
    report.ndim = _check_mixed_dimensions(dimensions, problems)
    return _sorted(report)


def require_valid_dataset(folder: os.PathLike | str, **kwargs) -> CheckReport:
    """Check a dataset, log its warnings and raise if it has errors.

    Parameters
    ----------
    folder : path-like
        The dataset folder, ``DatasetXXX_Name``.
    **kwargs
        Passed to :func:`check_dataset`.

    Returns
    -------
    CheckReport
        The report of a dataset without errors (it may contain warnings).

    Raises
    ------
    DatasetCheckError
        If the check found at least one error; ``error.report`` contains the report.
    """
    report = check_dataset(folder, **kwargs)
    for problem in report.warnings:
        logger.warning("Dataset check of %s: %s", report.folder, problem)
    if not report.ok:
        raise DatasetCheckError(
            f"Dataset {report.folder} is not ready for nnU-Net: {report.summary()}. "
            f"Fix the errors below and run the check again.\n{report.format()}",
            report=report,
        )
    return report


def _sorted(report: CheckReport) -> CheckReport:
    # Dataset-level problems first, then by case. The sort is stable, so each case keeps its order.
    report.problems.sort(key=lambda problem: (problem.case is not None, problem.case or ""))
    return report


def _highest_channel_count(cases: dict[str, CaseFiles]) -> int | None:
    indices = [channel for case in cases.values() for channel in case.channels]
    return max(indices) + 1 if indices else None


def _check_case_count(num_training: int | None, num_cases: int, file_ending: str, problems: list[Problem]) -> None:
    if num_cases == 0:
        problems.append(Problem.error(
            None, IMAGES_FOLDER, f'no image files ending in "{file_ending}"',
            f"at least one training case, such as case_001_0000{file_ending}",
            'add the training images, or correct "file_ending" in dataset.json',
        ))
    if num_training is not None and num_training != num_cases:
        problems.append(Problem.error(
            None, "dataset.json", f'"numTraining" is {num_training} but imagesTr contains {num_cases} cases',
            f"numTraining equal to the number of cases ({num_cases}), as nnU-Net requires",
            f'set "numTraining" to {num_cases}, or add the missing cases',
        ))


def _check_cases(
    folder: Path,
    cases: dict[str, CaseFiles],
    spec: DatasetSpec,
    report: CheckReport,
    has_labels: bool,
    spacing_tolerance: float,
    progress: ProgressCallback | None,
) -> dict[str, tuple[int, str]]:
    """Check each case's files and contents; return each case's dimensionality and first file."""
    dimensions = {}
    for done, name in enumerate(sorted(cases), start=1):
        case = cases[name]
        # The files are read first because whether the case needs files _0001 and up depends on
        # the components of _0000. The read problems are reported after the file name problems.
        read_problems = []
        files = load_case(folder, case, report.num_channels, read_problems)
        color_channels = has_color_channels(files, report.num_channels)
        check_case_files(case, report.num_channels, report.file_ending, has_labels, report.problems, color_channels)
        report.problems.extend(read_problems)
        ndim = check_case(name, files, report.num_channels, spec.label_values, spacing_tolerance, report.problems)
        if ndim is not None:
            first_file = next(file.relative for file in files if file.ndim == ndim)
            dimensions[name] = (ndim, first_file)
        if progress is not None:
            progress(done, len(cases))
    return dimensions


def _check_mixed_dimensions(dimensions: dict[str, tuple[int, str]], problems: list[Problem]) -> int | None:
    """Report cases whose dimensionality differs from most cases; return the majority (2 or 3)."""
    counts = Counter(ndim for ndim, _ in dimensions.values())
    if not counts:
        return None
    # On a tie, the higher dimensionality is taken as the dataset's.
    majority = max(counts, key=lambda ndim: (counts[ndim], ndim))
    for name, (ndim, relative) in dimensions.items():
        if ndim != majority:
            problems.append(Problem.error(
                name, relative,
                f"case is {ndim}D but {counts[majority]} of {len(dimensions)} cases are {majority}D",
                "all cases 2D or all cases 3D",
                f"convert this case to {majority}D, or remove it from the dataset",
            ))
    return majority
