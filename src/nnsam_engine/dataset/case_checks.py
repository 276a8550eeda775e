"""Checks of the image and label contents of one case.

Each case's files are read once with SimpleITK. NIfTI images stored as floating
point are read a second time with nibabel to look for NaN and inf. The checks
compare the dimensionality, pixel components, shape, spacing, origin and
direction of every channel file and the label with the first channel file. Then
they check the values of each image (NaN, inf, constant) and of the label
(integers declared in dataset.json).
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import DatasetError
from .io import Geometry, file_ending, read_image
from .layout import CaseFiles
from .report import Problem

#: Absolute tolerance for origin (mm) and direction cosines (unitless).
GEOMETRY_TOLERANCE = 1e-4
_MAX_LISTED_VALUES = 10

#: Endings that nnU-Net v2 (2.8.1) reads with NaturalImage2DIO, which takes the 3 or 4
#: components of a 2D RGB or RGBA image as the channels of the case. It does not list
#: ``.tiff``, which goes to Tiff3DIO, a reader of 3D volumes only.
NATURAL_IMAGE_ENDINGS = (".png", ".bmp", ".tif")
_COLOR_COMPONENTS = (3, 4)
_NIFTI_ENDINGS = (".nii", ".nii.gz")
_CHANNEL_LAYOUTS = (
    "one single-component file per channel, or a single 2D .png, .bmp or .tif file _0000 whose 3 or 4 "
    "components (RGB or RGBA) are the channels listed in channel_names"
)


@dataclass
class LoadedFile:
    """An image or label file of a case, as read from disk."""

    relative: str
    array: np.ndarray
    geometry: Geometry
    is_label: bool
    path: Path
    #: Channel index from the file name, None for the label.
    channel: int | None

    @property
    def ndim(self) -> int:
        return self.geometry.ndim

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.array.shape[: self.ndim])

    @property
    def components(self) -> int:
        # read_image puts vector components (RGB) on an extra last axis.
        return int(self.array.shape[-1]) if self.array.ndim > self.ndim else 1


def _axes(ndim: int) -> str:
    if ndim == 3:
        return "(Z, Y, X)"
    if ndim == 2:
        return "(Y, X)"
    return f"({ndim} axes)"


def _listing(values) -> str:
    values = list(values)
    text = ", ".join(_format_number(value) for value in values[:_MAX_LISTED_VALUES])
    if len(values) > _MAX_LISTED_VALUES:
        text += f" and {len(values) - _MAX_LISTED_VALUES} more"
    return text


def _format_number(value) -> str:
    if isinstance(value, (int, np.integer)):
        return str(int(value))
    return f"{float(value):g}"


def _vector(values) -> str:
    return "(" + ", ".join(f"{value:g}" for value in values) + ")"


def load_case(folder: Path, case: CaseFiles, num_channels: int | None, problems: list[Problem]) -> list[LoadedFile]:
    """Read the declared channel files and the label of ``case``; report files that cannot be read."""
    channels = range(num_channels) if num_channels is not None else sorted(case.channels)
    paths = [(case.channels[channel], channel) for channel in channels if channel in case.channels]
    if case.label is not None:
        paths.append((case.label, None))

    loaded = []
    for path, channel in paths:
        relative = path.relative_to(folder).as_posix()
        try:
            array, geometry = read_image(path)
        except DatasetError as error:
            reason = str(error.__cause__ or error).strip().splitlines()
            problems.append(Problem.error(
                case.case, relative, f"file cannot be read: {reason[-1] if reason else 'unknown reason'}",
                "a complete image file that SimpleITK can read",
                "re-export or re-convert the file; it may be truncated or in an unsupported variant of the format",
            ))
            continue
        loaded.append(LoadedFile(relative, array, geometry, channel is None, path, channel))
    return loaded


def has_color_channels(files: list[LoadedFile], num_channels: int | None) -> bool:
    """Return whether the case's ``_0000`` file contains all ``num_channels`` channels as RGB(A) components.

    nnU-Net v2 (2.8.1) reads the 3 or 4 components of a 2D PNG, BMP or .tif image
    as channels, so such a case needs no other channel files.
    """
    return any(_components_are_channels(file, num_channels) for file in files)


def _components_are_channels(file: LoadedFile, num_channels: int | None) -> bool:
    return (
        file.channel == 0
        and file_ending(file.path) in NATURAL_IMAGE_ENDINGS
        and file.ndim == 2
        and file.components in _COLOR_COMPONENTS
        and file.components == num_channels
    )


def check_case(case: str, files: list[LoadedFile], num_channels: int | None, label_values: frozenset[int] | None,
               spacing_tolerance: float, problems: list[Problem]) -> int | None:
    """Run every per-case check on the loaded files; return the case's dimensionality, or None."""
    files = [file for file in files if _check_dimensionality(case, file, problems)]
    for file in files:
        _check_components(case, file, num_channels, problems)
    if not files:
        return None

    reference = next((file for file in files if not file.is_label), files[0])
    for file in files:
        if file is not reference:
            _check_grid(case, reference, file, spacing_tolerance, problems)

    for file in files:
        if file.components != 1:
            continue
        if file.is_label:
            _check_label_values(case, file, label_values, problems)
        else:
            _check_intensities(case, file, problems)
    return reference.ndim


def _check_dimensionality(case: str, file: LoadedFile, problems: list[Problem]) -> bool:
    if file.ndim in (2, 3):
        return True
    problems.append(Problem.error(
        case, file.relative, f"image has {file.ndim} spatial dimensions (array shape {file.array.shape})",
        "a 2D or 3D image",
        "save one 2D or 3D image per file; split time series or 4D files into separate cases or channels",
    ))
    return False


def _check_components(case: str, file: LoadedFile, num_channels: int | None, problems: list[Problem]) -> None:
    count = file.components
    # NOTE: SimpleITK 2.5.7 reads an 8-bit grayscale (palette) BMP file as 3 components,
    # but nnU-Net's reader (scikit-image) reads it as 1, so such a file is reported here.
    if count == 1 or _components_are_channels(file, num_channels):
        return
    if file.is_label:
        problems.append(Problem.error(
            case, file.relative, f"label has vector pixels with {count} components",
            "a single-component integer label map",
            "save the label as a grayscale integer image; for a color mask, map each color to its label value",
        ))
        return
    ending = file_ending(file.path)
    suffixes = ", ".join(f"_{index:04d}" for index in range(count))
    split = f"split the components into separate channel files {suffixes} and list each in channel_names"
    color_image = file.channel == 0 and ending in NATURAL_IMAGE_ENDINGS and file.ndim == 2
    if color_image and count in _COLOR_COMPONENTS and num_channels is not None:
        channels = _plural(num_channels, "channel")
        found = f"found vector pixels with {count} components but channel_names lists {channels}"
        fix = f"list {count} channels in channel_names to use the components as channels, or {split}"
    else:
        found = f"found vector pixels with {count} components in a {ending} file"
        fix = split
    problems.append(Problem.error(case, file.relative, found, _CHANNEL_LAYOUTS, fix))


def _plural(number: int, noun: str) -> str:
    return f"{number} {noun}" if number == 1 else f"{number} {noun}s"


def _check_grid(case: str, reference: LoadedFile, file: LoadedFile, tolerance: float,
                problems: list[Problem]) -> None:
    """Compare the voxel grid of ``file`` with the case's first image."""
    if file.shape != reference.shape:
        problems.append(Problem.error(
            case, file.relative,
            f"shape {_axes(file.ndim)} {file.shape} differs from shape {_axes(reference.ndim)} "
            f"{reference.shape} of {reference.relative}",
            "the same shape for all channel files and the label of a case",
            "resample or crop the files of this case onto one voxel grid",
        ))
    if file.ndim != reference.ndim:
        return

    spacing, reference_spacing = np.array(file.geometry.spacing), np.array(reference.geometry.spacing)
    limit = tolerance * np.maximum(np.abs(spacing), np.abs(reference_spacing))
    if np.any(np.abs(spacing - reference_spacing) > limit):
        problems.append(Problem.error(
            case, file.relative,
            f"spacing {_axes(file.ndim)} {_vector(spacing)} mm differs from {_vector(reference_spacing)} mm "
            f"of {reference.relative}",
            f"the same spacing within a relative tolerance of {tolerance:g}",
            "correct the spacing in the file header, or resample the file onto the image grid",
        ))

    for name, unit, values, reference_values in (
        ("origin", " mm", file.geometry.origin, reference.geometry.origin),
        ("direction", "", file.geometry.direction, reference.geometry.direction),
    ):
        if not np.allclose(values, reference_values, rtol=0.0, atol=GEOMETRY_TOLERANCE):
            problems.append(Problem.warning(
                case, file.relative,
                f"{name} {_vector(values)}{unit} differs from {_vector(reference_values)}{unit} "
                f"of {reference.relative}",
                f"the same {name} within {GEOMETRY_TOLERANCE:g}{unit}",
                "check in a viewer that the files overlap; if they do, copy the header geometry from the image",
            ))


def _check_intensities(case: str, file: LoadedFile, problems: list[Problem]) -> None:
    values = _intensities(case, file, problems)
    if np.issubdtype(values.dtype, np.floating):
        finite = np.isfinite(values)
        num_invalid = values.size - int(np.count_nonzero(finite))
        if num_invalid:
            num_nan = int(np.count_nonzero(np.isnan(values)))
            problems.append(Problem.error(
                case, file.relative,
                f"{num_invalid} of {values.size} voxels are not finite ({num_nan} NaN, {num_invalid - num_nan} inf)",
                "finite intensity values only",
                "replace NaN and inf with a meaningful value, such as the image minimum, before training",
            ))
            values = values[finite]
    if values.size and values.min() == values.max():
        problems.append(Problem.warning(
            case, file.relative, f"all voxels are equal to {_format_number(values.min())}",
            "an image with varying intensities",
            "check that the file contains the intended image; a constant channel carries no information",
        ))


def _intensities(case: str, file: LoadedFile, problems: list[Problem]) -> np.ndarray:
    """Return the image values to check, read again with nibabel for NIfTI files stored as floating point."""
    # SimpleITK 2.5.7 (ITK 5.4) reads NaN and inf in NIfTI files as 0, but nibabel keeps them.
    # SimpleITK reads stored floats as floats, so an integer array needs no second read.
    if file_ending(file.path) not in _NIFTI_ENDINGS or not np.issubdtype(file.array.dtype, np.floating):
        return file.array

    import nibabel
    from nibabel.filebasedimages import ImageFileError
    from nibabel.spatialimages import HeaderDataError

    try:
        image = nibabel.load(file.path)
        if not np.issubdtype(image.get_data_dtype(), np.floating):
            return file.array
        return np.asanyarray(image.dataobj)
    except (ImageFileError, HeaderDataError, OSError, EOFError, ValueError, zlib.error) as error:
        problems.append(Problem.warning(
            case, file.relative, f"nibabel cannot read the file, so NaN and inf were not checked: {error}",
            "a NIfTI file that both SimpleITK and nibabel can read",
            "re-save the file with nibabel and run the check again, because SimpleITK reads NaN and inf "
            "in NIfTI files as 0",
        ))
        return file.array


def _check_label_values(case: str, file: LoadedFile, label_values: frozenset[int] | None,
                        problems: list[Problem]) -> None:
    array = file.array
    values = np.unique(array)
    if np.issubdtype(array.dtype, np.floating):
        integral = values == np.round(values)
        if not np.all(integral):
            num_voxels = int(np.count_nonzero(array != np.round(array)))
            problems.append(Problem.error(
                case, file.relative,
                f"{num_voxels} voxels have non-integer label values such as {_listing(values[~integral])}",
                "integer label values",
                "save the label as an integer image; if it was resampled, use nearest-neighbor interpolation",
            ))
        values = values[integral]

    found = sorted(int(value) for value in values)
    if label_values is not None:
        undeclared = [value for value in found if value not in label_values]
        if undeclared:
            subject = "value" if len(undeclared) == 1 else "values"
            verb = "is" if len(undeclared) == 1 else "are"
            problems.append(Problem.error(
                case, file.relative,
                f'label {subject} {_listing(undeclared)} {verb} not declared in dataset.json "labels" '
                f"(found {_listing(found)})",
                f"only the declared values {_listing(sorted(label_values))}",
                'add the missing labels to dataset.json "labels", or correct the label file',
            ))
    if found == [0]:
        problems.append(Problem.warning(
            case, file.relative, "label contains only background (0)",
            "at least one foreground voxel in most cases",
            "check that this is the right label file; cases without foreground are allowed but rarely intended",
        ))
