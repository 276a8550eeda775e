"""Finding a raw dataset by ID, name or path, and making it visible to nnunetv2."""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from pathlib import Path

from ..errors import DatasetError
from ..workspace import Workspace

DATASET_NAME_PATTERN = re.compile(r"^Dataset(\d{3})_([A-Za-z0-9_\-]+)$")


@dataclass(frozen=True)
class DatasetRef:
    """A raw dataset: its nnU-Net ID, its folder name and where its files are."""

    dataset_id: int
    name: str
    raw_folder: Path

    def dataset_json(self) -> dict:
        return json.loads((self.raw_folder / "dataset.json").read_text(encoding="utf-8"))


def parse_dataset_name(name: str) -> tuple[int, str]:
    """Split ``DatasetXXX_Name`` into its ID and name; raise DatasetError otherwise."""
    match = DATASET_NAME_PATTERN.match(name)
    if not match:
        raise DatasetError(
            f"Dataset folder name '{name}' does not follow nnU-Net's pattern DatasetXXX_Name "
            "(three digits, then a name of letters, digits, '_' or '-'); rename the folder, e.g. Dataset501_Liver."
        )
    return int(match.group(1)), match.group(2)


def _find_in_raw(workspace: Workspace, dataset_id: int) -> Path | None:
    if not workspace.raw.is_dir():
        return None
    matches = sorted(path for path in workspace.raw.iterdir()
                     if path.is_dir() and path.name.startswith(f"Dataset{dataset_id:03d}_"))
    if len(matches) > 1:
        raise DatasetError(
            f"Dataset ID {dataset_id:03d} is used by several folders in {workspace.raw}: "
            f"{', '.join(path.name for path in matches)}. Give each dataset its own ID."
        )
    return matches[0] if matches else None


def resolve_dataset(spec: str | int | os.PathLike, workspace: Workspace, *, link: bool = True) -> DatasetRef:
    """Return the dataset that ``spec`` names.

    Parameters
    ----------
    spec : str, int or path-like
        A dataset ID (``4``), a folder name (``Dataset004_Hippocampus``) looked up
        in the workspace's raw folder, or the path of a raw dataset folder anywhere.
    workspace : Workspace
        The workspace whose raw folder nnunetv2 reads.
    link : bool
        For a folder outside the raw folder, create a symbolic link to it there so
        nnunetv2 finds it; the data stays where it is and is read in place.

    Raises
    ------
    DatasetError
        If the dataset is not found, or its ID is taken by another dataset.
    """
    text = str(spec)
    candidate = Path(text).expanduser()
    if candidate.is_dir() and (os.sep in text or text.startswith(".") or not text.isdigit()):
        return _register_folder(candidate.absolute(), workspace, link)
    if text.isdigit():
        found = _find_in_raw(workspace, int(text))
        if found is None:
            raise DatasetError(
                f"No dataset with ID {int(text):03d} in {workspace.raw}. Pass the dataset folder's path instead, "
                "or check --workspace / $nnUNet_raw."
            )
        return DatasetRef(int(text), found.name, found)
    if os.sep in text or text.startswith((".", "~")):
        raise DatasetError(f"Dataset folder not found: {candidate.absolute()}. Check the path, or pass a dataset "
                           "name such as Dataset004_Hippocampus to look it up in the workspace's raw folder.")
    dataset_id, _ = parse_dataset_name(text)
    found = workspace.raw / text
    if not found.is_dir():
        raise DatasetError(f"Dataset folder not found: {found}. Pass the dataset folder's path, "
                           "or check --workspace / $nnUNet_raw.")
    return DatasetRef(dataset_id, text, found)


def _register_folder(folder: Path, workspace: Workspace, link: bool) -> DatasetRef:
    dataset_id, _ = parse_dataset_name(folder.name)
    existing = _find_in_raw(workspace, dataset_id)
    if existing is not None:
        if existing.resolve() == folder.resolve():
            return DatasetRef(dataset_id, existing.name, existing)
        raise DatasetError(
            f"Dataset ID {dataset_id:03d} of {folder} is already used by {existing}. "
            "Rename one of them to a free ID, or use another --workspace."
        )
    if not link:
        return DatasetRef(dataset_id, folder.name, folder)
    workspace.raw.mkdir(parents=True, exist_ok=True)
    target = workspace.raw / folder.name
    target.symlink_to(folder, target_is_directory=True)
    return DatasetRef(dataset_id, folder.name, target)
