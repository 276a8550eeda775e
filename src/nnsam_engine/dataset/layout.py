"""Folder layout and file names of a raw nnU-Net v2 dataset.

nnU-Net expects ``DatasetXXX_Name/`` (three-digit id) with ``imagesTr/`` holding
``<case>_<XXXX><file_ending>`` files, one per input channel (4-digit channel
index), and ``labelsTr/`` holding one ``<case><file_ending>`` label file per case.
A 2D PNG, BMP or .tif case may instead have a single ``_0000`` RGB or RGBA file
whose 3 or 4 components are its channels. Names starting with a dot (such as
``.DS_Store``) are ignored.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from .io import SUPPORTED_ENDINGS
from .report import Problem

IMAGES_FOLDER = "imagesTr"
LABELS_FOLDER = "labelsTr"
_FOLDER_NAME = re.compile(r"Dataset\d{3}_.+")
_IMAGE_STEM = re.compile(r"(?P<case>.+)_(?P<channel>\d{4})")


@dataclass
class CaseFiles:
    """Files of one case.

    Attributes
    ----------
    case : str
        Case identifier, the image file name without ``_XXXX`` and the file ending.
    channels : dict of int to Path
        Image file per channel index, including indices beyond the declared channels.
    label : Path or None
        Label file, None if it is missing.
    """

    case: str
    channels: dict[int, Path] = field(default_factory=dict)
    label: Path | None = None


def check_folder(folder: Path, problems: list[Problem]) -> bool:
    """Check that ``folder`` exists and has an nnU-Net name; return whether it exists."""
    if not folder.is_dir():
        state = "is a file, not a folder" if folder.exists() else "does not exist"
        problems.append(Problem.error(
            None, None, f"dataset folder {folder} {state}",
            "an existing folder DatasetXXX_Name containing dataset.json, imagesTr and labelsTr",
            "check the path, or create the dataset folder",
        ))
        return False

    if not _FOLDER_NAME.fullmatch(folder.name):
        problems.append(Problem.error(
            None, None, f'dataset folder name "{folder.name}" does not follow the nnU-Net pattern',
            'a name "Dataset" + three-digit id + "_" + name, such as Dataset004_Hippocampus',
            f'rename the folder, for example to "Dataset500_{_suggest_name(folder.name)}"',
        ))
    return True


def _suggest_name(name: str) -> str:
    cleaned = re.sub(r"[^A-Za-z0-9]+", "", name.removeprefix("Dataset"))
    return cleaned or "MyData"


def check_subfolder(folder: Path, name: str, problems: list[Problem]) -> bool:
    """Check that ``folder/name`` is a folder; return whether it is."""
    if (folder / name).is_dir():
        return True
    content = "image files <case>_0000" if name == IMAGES_FOLDER else "label files <case>"
    problems.append(Problem.error(
        None, name, "folder not found",
        f"a {name} folder with the {content} followed by the file ending",
        f"create {name} inside the dataset folder and move the files there",
    ))
    return False


def guess_file_ending(images_dir: Path) -> str | None:
    """Return the most common supported file ending in ``images_dir``, or None if there is none."""
    counts = Counter()
    for path in _visible_entries(images_dir, problems=[]):
        for ending in SUPPORTED_ENDINGS:
            if path.name.endswith(ending):
                counts[ending] += 1
                break
    return counts.most_common(1)[0][0] if counts else None


def _visible_entries(folder: Path, problems: list[Problem]) -> list[Path]:
    if not folder.is_dir():
        return []
    try:
        return sorted(path for path in folder.iterdir() if not path.name.startswith("."))
    except OSError as error:
        problems.append(Problem.error(
            None, folder.name, f"folder cannot be listed: {error.strerror or error}",
            "a readable folder", "check the folder permissions",
        ))
        return []


def _other_ending(folder_name: str, path: Path, file_ending: str) -> Problem:
    kind = "a folder" if path.is_dir() else "a file without the ending " + file_ending
    return Problem.warning(
        None, f"{folder_name}/{path.name}", f"{kind}, which nnU-Net ignores",
        f'only files ending in "{file_ending}" (the dataset.json "file_ending")',
        f'convert it to {file_ending}, or move it out of {folder_name} if it is not part of the dataset',
    )


def find_image_files(images_dir: Path, file_ending: str, problems: list[Problem]) -> dict[str, CaseFiles]:
    """Group the image files by case; report names without a channel index and other endings."""
    cases: dict[str, CaseFiles] = {}
    for path in _visible_entries(images_dir, problems):
        if not path.is_file() or not path.name.endswith(file_ending):
            problems.append(_other_ending(IMAGES_FOLDER, path, file_ending))
            continue
        match = _IMAGE_STEM.fullmatch(path.name[: -len(file_ending)])
        if match is None:
            problems.append(Problem.error(
                None, f"{IMAGES_FOLDER}/{path.name}", "image file name has no 4-digit channel index",
                f"a name <case>_<XXXX>{file_ending}, such as case_001_0000{file_ending}",
                "rename the file with its channel index, _0000 for the first channel",
            ))
            continue
        case = cases.setdefault(match["case"], CaseFiles(match["case"]))
        case.channels[int(match["channel"])] = path
    return cases


def attach_label_files(labels_dir: Path, file_ending: str, cases: dict[str, CaseFiles],
                       problems: list[Problem]) -> None:
    """Set the label file of each case; report label files without images and other endings."""
    for path in _visible_entries(labels_dir, problems):
        if not path.is_file() or not path.name.endswith(file_ending):
            problems.append(_other_ending(LABELS_FOLDER, path, file_ending))
            continue
        name = path.name[: -len(file_ending)]
        if name in cases:
            cases[name].label = path
            continue
        problems.append(Problem.error(
            name, f"{LABELS_FOLDER}/{path.name}", "label file has no image files",
            f"image files {IMAGES_FOLDER}/{name}_0000{file_ending} (and one per further channel)",
            "add the case's images to imagesTr, or remove the label file",
        ))


def _plural(number: int, noun: str) -> str:
    return f"{number} {noun}" if number == 1 else f"{number} {noun}s"


def _channel_suffixes(num_channels: int) -> str:
    return "_0000" if num_channels == 1 else f"_0000 to _{num_channels - 1:04d}"


def check_case_files(case: CaseFiles, num_channels: int | None, file_ending: str,
                     check_labels: bool, problems: list[Problem], color_channels: bool = False) -> None:
    """Report missing channels, channels beyond ``num_channels`` and a missing label file.

    ``color_channels`` is true when the case's ``_0000`` file contains all channels as
    its RGB(A) components. Every other channel file of the case is then reported as extra.
    """
    if color_channels:
        _check_extra_color_files(case, num_channels, file_ending, problems)
    elif num_channels is not None:
        for channel in range(num_channels):
            if channel not in case.channels:
                problems.append(Problem.error(
                    case.case, f"{IMAGES_FOLDER}/{case.case}_{channel:04d}{file_ending}", "channel file is missing",
                    f"one image file per channel ({_channel_suffixes(num_channels)}) for the "
                    f"{_plural(num_channels, 'channel')} in channel_names",
                    "add the missing channel file, or correct channel_names in dataset.json",
                ))
        for channel, path in sorted(case.channels.items()):
            if channel >= num_channels:
                problems.append(Problem.error(
                    case.case, f"{IMAGES_FOLDER}/{path.name}",
                    f"extra channel file: index {channel} is not declared in dataset.json",
                    f"only the suffixes {_channel_suffixes(num_channels)} for the "
                    f"{_plural(num_channels, 'channel')} in channel_names",
                    "add the channel to channel_names in dataset.json, or remove the file",
                ))

    if check_labels and case.label is None:
        problems.append(Problem.error(
            case.case, f"{LABELS_FOLDER}/{case.case}{file_ending}", "label file is missing",
            "one label file per case in labelsTr",
            "add the label file, or remove the case's images from imagesTr",
        ))


def _check_extra_color_files(case: CaseFiles, num_channels: int, file_ending: str, problems: list[Problem]) -> None:
    first = f"{case.case}_0000{file_ending}"
    for channel, path in sorted(case.channels.items()):
        if channel == 0:
            continue
        problems.append(Problem.error(
            case.case, f"{IMAGES_FOLDER}/{path.name}",
            f"extra channel file: {first} already contains the {num_channels} channels as color components",
            f"either {first} alone, with one color component per channel, or one single-component file per channel",
            f"remove the file, or split {first} into {num_channels} grayscale channel files",
        ))
