"""Creating raw nnU-Net v2 datasets and adding training cases to them (safe fixes are in fixes.py).

Every function here writes through :mod:`nnsam_engine.atomic`, so a reader sees a
file either as it was or complete. :func:`add_training_case` writes the case's
files under hidden temporary names first, which the dataset check and nnU-Net
ignore, and renames them only when all of them are written.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..atomic import write_json_atomic
from ..errors import DatasetError
from .dataset_json import JSON_NAME, DatasetSpec, parse_dataset_json, read_dataset_json
from .io import Geometry, write_image
from .layout import IMAGES_FOLDER, LABELS_FOLDER, find_image_files
from .locate import parse_dataset_name

TEST_IMAGES_FOLDER = "imagesTs"
#: Endings that store spacing, origin and direction for 2D and 3D images of any pixel type
#: in one file. PNG, BMP and TIFF lose the origin and direction and limit the pixel types,
#: and MHD writes a second data file beside the header.
WRITABLE_ENDINGS = (".nii.gz", ".nii", ".nrrd", ".mha")
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_\-]*")
_TEMPORARY_PREFIX = ".adding-"



@dataclass(frozen=True)
class CaseInfo:
    """Files of one case of a dataset.

    Attributes
    ----------
    case : str
        Case identifier, the file name without ``_XXXX`` and the file ending.
    channel_files : tuple of Path
        Image files by channel index (``_0000`` first).
    label_file : Path or None
        The file in ``labelsTr``, None when the case has no label.
    is_test : bool
        True for images in ``imagesTs``, which nnU-Net does not train on.
    """

    case: str
    channel_files: tuple[Path, ...]
    label_file: Path | None
    is_test: bool = False

    @property
    def labelled(self) -> bool:
        return self.label_file is not None


@dataclass(frozen=True)
class DatasetDescription:
    """The parts of a dataset.json that editing needs: channel names in order, labels and file ending."""

    channel_names: tuple[str, ...]
    labels: dict[str, int]
    file_ending: str


def next_free_dataset_id(raw_folder: os.PathLike | str, start: int = 1) -> int:
    """Return the lowest dataset ID from ``start`` that no ``DatasetXXX_*`` folder in ``raw_folder`` uses."""
    matches = [re.match(r"Dataset(\d{3})_", path.name) for path in _entries(raw_folder)]
    used = {int(match[1]) for match in matches if match}
    for dataset_id in range(start, 1000):
        if dataset_id not in used:
            return dataset_id
    raise DatasetError(f"All dataset IDs from {start:03d} to 999 are used in {raw_folder}; remove unused datasets.")


def labels_from_names(names: list[str]) -> dict[str, int]:
    """Return nnU-Net labels for foreground ``names``: background 0, then 1, 2, ... in order.

    A name "background" in ``names`` is skipped, because label 0 always is the background.

    Raises
    ------
    DatasetError
        If a name occurs twice.
    """
    labels = {"background": 0}
    for name in names:
        if name == "background":
            continue
        if name in labels:
            raise DatasetError(f"Label name {name!r} occurs twice in {names}; give each label its own name.")
        labels[name] = len(labels)
    return labels


def create_dataset(raw_folder: os.PathLike | str, dataset_id: int, name: str, channel_names: list[str],
                   labels: dict[str, int], file_ending: str = ".nii.gz") -> Path:
    """Create an empty raw dataset ``DatasetXXX_Name`` with imagesTr, labelsTr and dataset.json.

    Parameters
    ----------
    raw_folder : path-like
        The workspace's ``nnUNet_raw`` folder; created if missing.
    dataset_id : int
        Three-digit nnU-Net dataset ID, 1 to 999, unused in ``raw_folder``.
    name : str
        Dataset name of letters, digits, ``_`` and ``-``, such as ``Liver``.
    channel_names : list of str
        One name per input channel, such as ``["T1", "T2"]``; nnU-Net picks the
        intensity normalization from it (``"CT"`` selects CT normalization).
    labels : dict of str to int
        Label names and values; ``"background": 0`` plus consecutive values 1, 2, ....
    file_ending : str
        One of :data:`WRITABLE_ENDINGS`.

    Returns
    -------
    Path
        The new dataset folder.

    Raises
    ------
    DatasetError
        If an argument is invalid or the ID is already used.
    """
    _validate_new_dataset(raw_folder, dataset_id, name, channel_names, labels, file_ending)
    folder = Path(raw_folder) / f"Dataset{dataset_id:03d}_{name}"
    (folder / IMAGES_FOLDER).mkdir(parents=True)
    (folder / LABELS_FOLDER).mkdir()
    write_json_atomic(folder / JSON_NAME, {
        "name": name,
        "channel_names": {str(index): channel for index, channel in enumerate(channel_names)},
        "labels": dict(labels),
        "numTraining": 0,
        "file_ending": file_ending,
    })
    return folder


def _validate_new_dataset(raw_folder, dataset_id, name, channel_names, labels, file_ending) -> None:
    if not isinstance(dataset_id, int) or isinstance(dataset_id, bool) or not 1 <= dataset_id <= 999:
        raise DatasetError(f"Invalid dataset ID {dataset_id!r}; expected an integer from 1 to 999. "
                           f"Use {next_free_dataset_id(raw_folder)}, the lowest free ID.")
    used = [path.name for path in _entries(raw_folder) if path.name.startswith(f"Dataset{dataset_id:03d}_")]
    if used:
        raise DatasetError(f"Dataset ID {dataset_id:03d} is already used by {used[0]} in {raw_folder}; "
                           f"choose a free ID such as {next_free_dataset_id(raw_folder)}.")
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        suggestion = re.sub(r"[^A-Za-z0-9_\-]+", "", str(name)).lstrip("_-") or "MyData"
        raise DatasetError(f"Invalid dataset name {name!r}; expected letters, digits, '_' or '-', "
                           f"starting with a letter or digit. Use for example {suggestion!r}.")
    parse_dataset_name(f"Dataset{dataset_id:03d}_{name}")
    if not channel_names or not all(isinstance(channel, str) and channel.strip() for channel in channel_names):
        raise DatasetError(f"Invalid channel names {channel_names!r}; expected one non-empty name per input "
                           'channel, such as ["CT"] or ["T1", "T2"].')
    _validate_labels(labels)
    if file_ending not in WRITABLE_ENDINGS:
        raise DatasetError(f"Unsupported file ending {file_ending!r} for a new dataset; expected one of "
                           f"{', '.join(WRITABLE_ENDINGS)}, which store the full image geometry. Use '.nii.gz'.")


def _validate_labels(labels: dict[str, int]) -> None:
    example = '{"background": 0, "tumor": 1}'
    if not isinstance(labels, dict) or labels.get("background") != 0:
        raise DatasetError(f"Labels {labels!r} have no background 0; expected a mapping such as {example}. "
                           'Add "background": 0 and number the other labels from 1.')
    for label_name, value in labels.items():
        if not isinstance(label_name, str) or not label_name.strip() or not isinstance(value, int) \
                or isinstance(value, bool) or value < 0:
            raise DatasetError(f"Invalid label {label_name!r}: {value!r}; expected a non-empty name and a "
                               f"non-negative integer value, as in {example}.")
    if len(labels) < 2:
        raise DatasetError(f"Labels {labels!r} have no foreground label; expected at least one more label, as in "
                           f"{example}. Add the structures to segment.")
    values = list(labels.values())
    duplicates = sorted({value for value in values if values.count(value) > 1})
    if duplicates:
        raise DatasetError(f"Labels {labels!r} use the values {duplicates} more than once; expected one value "
                           "per label name. Give each label its own value.")
    if sorted(values) != list(range(len(values))):
        raise DatasetError(f"Label values {sorted(values)} are not consecutive; expected 0 to {len(values) - 1}, "
                           "as nnU-Net requires. Renumber the labels without gaps.")


def describe_dataset(dataset_folder: os.PathLike | str) -> DatasetDescription:
    """Read the channel names, integer labels and file ending from a dataset's dataset.json.

    Raises
    ------
    DatasetError
        If dataset.json is missing or invalid; the message lists each problem and its fix.
    """
    data = _read_valid_json(Path(dataset_folder))[0]
    channels = data.get("channel_names", data.get("modality"))
    labels = {name: value for name, value in data["labels"].items() if isinstance(value, int)}
    return DatasetDescription(tuple(channels[str(index)] for index in range(len(channels))), labels,
                              data["file_ending"])


def _read_valid_json(folder: Path) -> tuple[dict, DatasetSpec]:
    problems = []
    data = read_dataset_json(folder, problems)
    spec = parse_dataset_json(data, problems) if data is not None else None
    errors = [problem for problem in problems if problem.severity == "error"]
    if errors:
        details = " ".join(problem.describe() for problem in errors)
        raise DatasetError(f"The dataset.json of {folder} is missing or invalid: {details}")
    return data, spec


def _declared_values(folder: Path) -> frozenset[int]:
    """Return every label value of dataset.json, including the members of region labels."""
    return _read_valid_json(folder)[1].label_values


def list_cases(dataset_folder: os.PathLike | str, include_test: bool = False) -> list[CaseInfo]:
    """List the training cases in imagesTr, labelled or not, and optionally the test images in imagesTs.

    Files whose names lack the ``_XXXX`` channel index or the dataset's file ending
    are left out; :func:`~nnsam_engine.dataset.check.check_dataset` reports them.
    """
    folder = Path(dataset_folder)
    ending = describe_dataset(folder).file_ending
    cases = []
    for case in _training_cases(folder, ending).values():
        label = folder / LABELS_FOLDER / f"{case.case}{ending}"
        cases.append(CaseInfo(case.case, _channel_files(case), label if label.is_file() else None))
    if include_test:
        test_cases = find_image_files(folder / TEST_IMAGES_FOLDER, ending, problems=[])
        cases.extend(CaseInfo(case.case, _channel_files(case), None, is_test=True) for case in test_cases.values())
    return cases


def _training_cases(folder: Path, ending: str) -> dict:
    cases = find_image_files(folder / IMAGES_FOLDER, ending, problems=[])
    return dict(sorted(cases.items()))


def _channel_files(case) -> tuple[Path, ...]:
    return tuple(path for _, path in sorted(case.channels.items()))


def add_training_case(dataset_folder: os.PathLike | str, images: list[np.ndarray], labels: np.ndarray,
                      geometry: Geometry, case_name: str | None = None) -> str:
    """Write a new labelled training case and update numTraining in dataset.json.

    Parameters
    ----------
    dataset_folder : path-like
        The dataset folder, ``DatasetXXX_Name``.
    images : list of ndarray
        One ``(Z, Y, X)`` or ``(Y, X)`` array per channel of dataset.json, all of one shape.
    labels : ndarray
        Integer label map of the same shape, with values declared in dataset.json.
    geometry : Geometry
        Spacing (mm), origin and direction of the images; the label is written with it too.
    case_name : str, optional
        Case identifier. By default ``<name>_<NNN>``, the dataset name in lower case
        and the next free number, such as ``liver_003``.

    Returns
    -------
    str
        The case identifier.

    Raises
    ------
    DatasetError
        If dataset.json is invalid, the arrays do not match it or each other, or the
        case exists. On any error no file of the case is left and dataset.json is unchanged.
    """
    folder = Path(dataset_folder)
    data, spec = _read_valid_json(folder)
    ending = spec.file_ending
    images = _validate_images(folder, images, geometry, spec.num_channels, ending)
    labels = _validate_labels_array(folder, labels, images[0].shape, spec.label_values)
    case = case_name if case_name is not None else _next_case_name(folder, ending)
    _validate_case_name(folder, case, ending)

    targets = [(folder / IMAGES_FOLDER / f"{case}_{index:04d}{ending}", image) for index, image in enumerate(images)]
    targets.append((folder / LABELS_FOLDER / f"{case}{ending}", labels))
    _write_all(targets, geometry)
    try:
        data["numTraining"] = len(_training_cases(folder, ending))
        write_json_atomic(folder / JSON_NAME, data)
    except BaseException:
        for path, _ in targets:
            path.unlink(missing_ok=True)
        raise
    return case


def _validate_images(folder: Path, images, geometry: Geometry, num_channels: int, ending: str) -> list[np.ndarray]:
    if isinstance(images, np.ndarray) or not isinstance(images, (list, tuple)):
        raise DatasetError(f"Images for {folder.name} must be a list with one array per channel, got "
                           f"{type(images).__name__}; pass [image] for a single channel.")
    if len(images) != num_channels:
        raise DatasetError(f"{folder.name} has {num_channels} channel(s) in dataset.json but {len(images)} "
                           "images were given; pass one image per channel, in the order of channel_names.")
    arrays = [np.asarray(image) for image in images]
    arrays = [array.astype(np.uint8) if array.dtype == bool else array for array in arrays]
    for index, array in enumerate(arrays):
        if array.ndim not in (2, 3) or array.ndim != geometry.ndim:
            raise DatasetError(f"Image of channel {index} has shape {array.shape}; expected a 2D or 3D array "
                               f"with {geometry.ndim} axes like its geometry. Pass one (Z, Y, X) or (Y, X) "
                               "image per channel, without RGB or time axes.")
        if array.shape != arrays[0].shape:
            raise DatasetError(f"Image of channel {index} has shape {array.shape} but channel 0 has shape "
                               f"{arrays[0].shape}; resample the channels onto one grid.")
        if not (np.issubdtype(array.dtype, np.integer) or np.issubdtype(array.dtype, np.floating)):
            raise DatasetError(f"Image of channel {index} has pixel type {array.dtype}; expected integers or "
                               "floating point. Convert the image to a numeric type.")
    existing = _existing_ndim(folder, ending)
    if existing is not None and existing != geometry.ndim:
        raise DatasetError(f"The new case is {geometry.ndim}D but the cases of {folder.name} are {existing}D; "
                           "nnU-Net needs all cases 2D or all 3D. Add the case to another dataset.")
    return arrays


def _existing_ndim(folder: Path, ending: str) -> int | None:
    import SimpleITK as sitk

    for path in sorted((folder / IMAGES_FOLDER).glob(f"[!.]*_0000{ending}")):
        reader = sitk.ImageFileReader()
        reader.SetFileName(str(path))
        try:
            reader.ReadImageInformation()
        except RuntimeError:
            continue  # the dataset check reports unreadable files
        return reader.GetDimension()
    return None


def _validate_labels_array(folder: Path, labels, shape: tuple[int, ...], declared: frozenset[int]) -> np.ndarray:
    labels = np.asarray(labels)
    if labels.shape != shape:
        raise DatasetError(f"Labels have shape {labels.shape} but the images have shape {shape}; draw the "
                           "labels on the image grid, for example in a Labels layer made from the image.")
    values = np.unique(labels)
    if not (np.issubdtype(values.dtype, np.integer) or np.issubdtype(values.dtype, np.bool_)) \
            and not np.all(values == np.round(values)):
        raise DatasetError(f"Labels have non-integer values such as {values[values != np.round(values)][:5]}; "
                           "expected integer label values. Round the labels or paint them again.")
    values = values.astype(np.int64)
    undeclared = [int(value) for value in values if value not in declared]
    if undeclared:
        raise DatasetError(
            f"Labels contain the values {undeclared}, which {folder.name}/dataset.json does not declare "
            f"(declared: {sorted(declared)}); paint those voxels with a declared value, or add the labels to "
            '"labels" in dataset.json.')
    return labels.astype(_label_dtype(int(values.max()) if values.size else 0))


def _label_dtype(max_value: int) -> type:
    if max_value <= np.iinfo(np.uint8).max:
        return np.uint8
    return np.uint16 if max_value <= np.iinfo(np.uint16).max else np.int32


def _next_case_name(folder: Path, ending: str) -> str:
    prefix = parse_dataset_name(folder.name)[1].lower()
    pattern = re.compile(rf"{re.escape(prefix)}_(\d+)")
    names = list(_training_cases(folder, ending)) + [path.name[: -len(ending)] for path in
                                                     (folder / LABELS_FOLDER).glob(f"*{ending}")]
    numbers = [int(match[1]) for match in map(pattern.fullmatch, names) if match]
    return f"{prefix}_{max(numbers, default=0) + 1:03d}"


def _validate_case_name(folder: Path, case: str, ending: str) -> None:
    if not isinstance(case, str) or not _NAME.fullmatch(case):
        raise DatasetError(f"Invalid case name {case!r}; expected letters, digits, '_' or '-', starting with a "
                           "letter or digit, such as 'liver_001'.")
    existing = sorted((folder / IMAGES_FOLDER).glob(f"{case}_[0-9][0-9][0-9][0-9]{ending}"))
    label = folder / LABELS_FOLDER / f"{case}{ending}"
    if label.exists():
        existing.append(label)
    if existing:
        raise DatasetError(f"Case {case} already exists in {folder.name} ({existing[0].name}); choose another "
                           "case name, or remove the existing files first.")


def _write_all(targets: list[tuple[Path, np.ndarray]], geometry: Geometry) -> None:
    """Write every file under a temporary name, then rename all; on failure remove what was written."""
    temporary = [path.with_name(_TEMPORARY_PREFIX + path.name) for path, _ in targets]
    renamed: list[Path] = []
    try:
        for path, (_, array) in zip(temporary, targets):
            write_image(path, array, geometry)
        for path, (target, _) in zip(temporary, targets):
            os.replace(path, target)
            renamed.append(target)
    except BaseException:
        for path in temporary + renamed:
            path.unlink(missing_ok=True)
        raise


def _entries(folder: os.PathLike | str) -> list[Path]:
    folder = Path(folder)
    return sorted(folder.iterdir()) if folder.is_dir() else []


__all__ = [
    "WRITABLE_ENDINGS",
    "CaseInfo",
    "DatasetDescription",
    "add_training_case",
    "create_dataset",
    "describe_dataset",
    "labels_from_names",
    "list_cases",
    "next_free_dataset_id",
]
