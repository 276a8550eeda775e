"""Reading and validating the ``dataset.json`` of a raw nnU-Net v2 dataset.

The rules follow what nnU-Net v2 (2.8.1) requires before planning. The keys
``channel_names`` (or the older ``modality``), ``labels``, ``numTraining`` and
``file_ending`` must be present. Label 0 must be named ``background``, and the label
values must be the consecutive integers 0, 1, 2, .... An ``ignore`` label, if present,
must be one above the highest label. A label given as a list of values (region-based
training) needs ``regions_class_order``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from .io import SUPPORTED_ENDINGS
from .report import Problem

JSON_NAME = "dataset.json"
_LABELS_EXAMPLE = '{"background": 0, "tumor": 1}'


@dataclass(frozen=True)
class DatasetSpec:
    """Values from dataset.json that the file and image checks need.

    Each attribute is None when its key is missing or invalid; the problem is
    reported separately.
    """

    num_channels: int | None
    label_values: frozenset[int] | None
    file_ending: str | None
    num_training: int | None


def _is_int(value) -> bool:
    # JSON true/false load as bool, which is a subclass of int.
    return isinstance(value, int) and not isinstance(value, bool)


def _json_error(found: str, expected: str, fix: str) -> Problem:
    return Problem.error(None, JSON_NAME, found, expected, fix)


def read_dataset_json(folder: Path, problems: list[Problem]) -> dict | None:
    """Load ``folder/dataset.json``; on failure append a problem and return None."""
    path = folder / JSON_NAME
    if not path.is_file():
        problems.append(_json_error(
            "is a folder, not a file" if path.exists() else "file not found",
            "a dataset.json next to imagesTr and labelsTr",
            'create dataset.json with the keys "channel_names", "labels", "numTraining" and "file_ending"',
        ))
        return None

    duplicate_keys: list[str] = []

    def collect_pairs(pairs):
        seen = set()
        for key, _ in pairs:
            if key in seen:
                duplicate_keys.append(key)
            seen.add(key)
        return dict(pairs)

    try:
        data = json.loads(path.read_text(encoding="utf-8"), object_pairs_hook=collect_pairs)
    except OSError as error:
        problems.append(_json_error(
            f"file cannot be read: {error.strerror or error}",
            "a readable dataset.json",
            "check the file permissions",
        ))
        return None
    except UnicodeDecodeError as error:
        problems.append(_json_error(
            f"file is not valid UTF-8 text ({error.reason} at byte {error.start})",
            "a UTF-8 encoded JSON file",
            "save dataset.json as UTF-8",
        ))
        return None
    except json.JSONDecodeError as error:
        problems.append(_json_error(
            f"invalid JSON at line {error.lineno}, column {error.colno}: {error.msg}",
            "a valid JSON object",
            f"correct the JSON syntax near line {error.lineno}, column {error.colno}",
        ))
        return None

    for key in duplicate_keys:
        problems.append(_json_error(
            f'key "{key}" appears more than once, so all but its last value are ignored',
            "each key once per JSON object",
            f'remove or rename the repeated "{key}" entries',
        ))
    if not isinstance(data, dict):
        problems.append(_json_error(
            f"top-level value is a JSON {type(data).__name__}",
            "a JSON object with the keys channel_names, labels, numTraining and file_ending",
            "wrap the dataset description in one JSON object {...}",
        ))
        return None
    return data


def parse_dataset_json(data: dict, problems: list[Problem]) -> DatasetSpec:
    """Validate the keys of a loaded dataset.json and return the values the checks need."""
    if "dataset" in data:
        # NOTE: nnU-Net also accepts a "dataset" key that lists each case's files; this
        # check reads imagesTr and labelsTr only.
        problems.append(Problem.warning(
            None, JSON_NAME,
            'dataset.json has a "dataset" file list, which this check ignores',
            "cases in imagesTr and labelsTr",
            'place the files in imagesTr and labelsTr, or check the listed files yourself',
        ))
    return DatasetSpec(
        num_channels=_parse_channels(data, problems),
        label_values=_parse_labels(data, problems),
        file_ending=_parse_file_ending(data, problems),
        num_training=_parse_num_training(data, problems),
    )


def _missing_key(key: str, example: str, problems: list[Problem]) -> None:
    problems.append(_json_error(f'required key "{key}" is missing', f"a {key} entry such as {example}",
                                f'add "{key}" to dataset.json'))


def _parse_channels(data: dict, problems: list[Problem]) -> int | None:
    if "channel_names" in data:
        key = "channel_names"
    elif "modality" in data:
        key = "modality"
    else:
        _missing_key("channel_names", '"channel_names": {"0": "CT"}', problems)
        return None

    channels = data[key]
    expected = 'an object with keys "0", "1", ... in order, one per channel file, such as {"0": "T1", "1": "T2"}'
    if not isinstance(channels, dict) or not channels:
        problems.append(_json_error(f'"{key}" is {json.dumps(channels)}', expected,
                                    f'list one name per input channel in "{key}"'))
        return None

    keys = list(channels)
    expected_keys = [str(index) for index in range(len(channels))]
    if sorted(keys, key=lambda k: (len(k), k)) != expected_keys:
        problems.append(_json_error(
            f'"{key}" has the keys {", ".join(keys)}',
            f"the keys {', '.join(expected_keys)}",
            "number the channels from 0 without gaps, matching the _XXXX suffix of the image files",
        ))
        return None

    for index, name in channels.items():
        if not isinstance(name, str):
            problems.append(_json_error(
                f'channel "{index}" in "{key}" has the name {json.dumps(name)}',
                'a string such as "CT" or "T1"',
                "give each channel a text name; nnU-Net picks its intensity normalization from it",
            ))
    return len(channels)


def _parse_labels(data: dict, problems: list[Problem]) -> frozenset[int] | None:
    """Validate "labels" and return every declared value, or None if a value is invalid."""
    if "labels" not in data:
        _missing_key("labels", _LABELS_EXAMPLE, problems)
        return None
    labels = data["labels"]
    if not isinstance(labels, dict) or not labels:
        problems.append(_json_error(
            f'"labels" is {json.dumps(labels)}',
            f"an object mapping label names to integers, such as {_LABELS_EXAMPLE}",
            'list every label name with its integer value in "labels"',
        ))
        return None

    values: set[int] = set()
    valid = True
    for name, value in labels.items():
        if _is_int(value):
            values.add(value)
        elif isinstance(value, list) and value and all(_is_int(item) for item in value):
            values.update(value)
        else:
            valid = False
            problems.append(_json_error(
                f'label "{name}" has the value {json.dumps(value)}',
                "an integer, or a list of integers for region-based training",
                f'set "{name}" to the integer that marks it in the label files',
            ))

    _check_background(labels, problems)
    _check_unique_values(labels, problems)
    _check_label_numbering(labels, problems)
    _check_regions(data, labels, problems)
    return frozenset(values) if valid else None


def _check_background(labels: dict, problems: list[Problem]) -> None:
    if "background" not in labels:
        problems.append(_json_error(
            f'"labels" has no "background" entry (names: {", ".join(labels)})',
            '"background": 0',
            'add "background": 0 to "labels", or rename the label with value 0 to "background"',
        ))
    elif not _is_int(labels["background"]) or labels["background"] != 0:
        problems.append(_json_error(
            f'"background" has the value {json.dumps(labels["background"])}',
            "the value 0",
            'set "background" to 0 and renumber the other labels from 1',
        ))


def _check_unique_values(labels: dict, problems: list[Problem]) -> None:
    names_by_value: dict[int, list[str]] = {}
    for name, value in labels.items():
        if _is_int(value):
            names_by_value.setdefault(value, []).append(name)
    for value, names in names_by_value.items():
        if len(names) > 1:
            quoted = " and ".join(f'"{name}"' for name in names)
            problems.append(_json_error(
                f"labels {quoted} have the same value {value}",
                "a different integer for each label name",
                "give each label its own value, or remove the duplicate name",
            ))


def _check_label_numbering(labels: dict, problems: list[Problem]) -> None:
    ignore = labels.get("ignore")
    if ignore is not None and not _is_int(ignore):
        problems.append(_json_error(
            f'the "ignore" label has the value {json.dumps(ignore)}',
            "a single integer one above the highest label",
            'set "ignore" to one integer',
        ))
        ignore = None

    classes: set[int] = set()
    for name, value in labels.items():
        if name == "ignore":
            continue
        members = value if isinstance(value, list) else [value]
        classes.update(member for member in members if _is_int(member))
    if not classes:
        return
    missing = sorted(set(range(max(classes) + 1)) - classes)
    negative = sorted(value for value in classes if value < 0)
    if missing or negative:
        gaps = f"; missing {', '.join(map(str, missing))}" if missing else ""
        problems.append(_json_error(
            f"label values {', '.join(map(str, sorted(classes)))} are not consecutive{gaps}",
            "consecutive values 0, 1, 2, ... as nnU-Net requires",
            "renumber the labels in dataset.json and in the label files without gaps",
        ))
    if ignore is not None and ignore != max(classes) + 1:
        problems.append(_json_error(
            f'the "ignore" label has the value {ignore}',
            f"the value {max(classes) + 1}, one above the highest label",
            f'set "ignore" to {max(classes) + 1} and use that value for unlabeled voxels',
        ))


def _check_regions(data: dict, labels: dict, problems: list[Problem]) -> None:
    regions = [name for name, value in labels.items()
               if name not in ("background", "ignore") and isinstance(value, list) and len(value) > 1]
    if not regions:
        return
    num_regions = sum(1 for name, value in labels.items()
                      if name not in ("background", "ignore") and value != 0 and value != [0])
    order = data.get("regions_class_order")
    if order is None:
        problems.append(_json_error(
            f'labels {", ".join(regions)} are lists of values (region-based training) '
            'but "regions_class_order" is missing',
            f'"regions_class_order" with {num_regions} values, one per region',
            'add "regions_class_order", or give each label a single integer',
        ))
    elif not isinstance(order, list) or len(order) != num_regions:
        problems.append(_json_error(
            f'"regions_class_order" is {json.dumps(order)}',
            f"a list of {num_regions} integers, one per region in \"labels\"",
            "list one output label value per region, in the order of \"labels\"",
        ))


def _parse_file_ending(data: dict, problems: list[Problem]) -> str | None:
    if "file_ending" not in data:
        _missing_key("file_ending", '".nii.gz"', problems)
        return None
    ending = data["file_ending"]
    if ending not in SUPPORTED_ENDINGS:
        problems.append(_json_error(
            f'"file_ending" is {json.dumps(ending)}',
            f"one of {', '.join(SUPPORTED_ENDINGS)}",
            'set "file_ending" to the ending of the image files, or convert the images to a supported format',
        ))
        return None
    return ending


def _parse_num_training(data: dict, problems: list[Problem]) -> int | None:
    if "numTraining" not in data:
        _missing_key("numTraining", '"numTraining": 20', problems)
        return None
    number = data["numTraining"]
    if not _is_int(number) or number < 0:
        problems.append(_json_error(
            f'"numTraining" is {json.dumps(number)}',
            "a non-negative integer, the number of training cases",
            'set "numTraining" to the number of cases in imagesTr',
        ))
        return None
    return number
