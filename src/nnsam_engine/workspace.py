"""Where raw datasets, preprocessed data and trained models live.

Each location resolves, in order, from an explicit argument, then nnU-Net's
environment variable (``nnUNet_raw``, ``nnUNet_preprocessed``,
``nnUNet_results``), then a default under the user's data folder
(``platformdirs.user_data_dir("nnsam")``, for example ``~/.local/share/nnsam``
on Linux). ``--workspace DIR`` stands for ``DIR/nnUNet_raw``,
``DIR/nnUNet_preprocessed`` and ``DIR/nnUNet_results``. The environment is read
when a workspace is resolved, never at import.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Mapping

from .errors import WorkspaceError

RAW_VARIABLE = "nnUNet_raw"
PREPROCESSED_VARIABLE = "nnUNet_preprocessed"
RESULTS_VARIABLE = "nnUNet_results"
FOLDER_NAMES = {RAW_VARIABLE: "nnUNet_raw", PREPROCESSED_VARIABLE: "nnUNet_preprocessed",
                RESULTS_VARIABLE: "nnUNet_results"}


def default_workspace_root() -> Path:
    """Return the default workspace folder under the user's data folder."""
    import platformdirs

    return Path(platformdirs.user_data_dir("nnsam", appauthor=False))


@dataclass(frozen=True)
class Workspace:
    """Resolved raw, preprocessed and results folders, and where each came from."""

    raw: Path
    preprocessed: Path
    results: Path
    sources: Mapping[str, str]

    @classmethod
    def resolve(cls, root: os.PathLike | str | None = None, *, raw: os.PathLike | str | None = None,
                preprocessed: os.PathLike | str | None = None, results: os.PathLike | str | None = None,
                environ: Mapping[str, str] | None = None) -> "Workspace":
        """Resolve the three folders.

        Parameters
        ----------
        root : path-like, optional
            Workspace folder (``--workspace``); its subfolders are used for every
            location not given explicitly.
        raw, preprocessed, results : path-like, optional
            Explicit folders; they win over ``root`` and the environment.
        environ : mapping, optional
            Environment to read; ``os.environ`` by default.
        """
        environ = os.environ if environ is None else environ
        explicit = {RAW_VARIABLE: raw, PREPROCESSED_VARIABLE: preprocessed, RESULTS_VARIABLE: results}
        paths: dict[str, Path] = {}
        sources: dict[str, str] = {}
        for variable, value in explicit.items():
            if value is not None:
                paths[variable], sources[variable] = Path(value), "option"
            elif root is not None:
                paths[variable], sources[variable] = Path(root) / FOLDER_NAMES[variable], "--workspace"
            elif environ.get(variable):
                paths[variable], sources[variable] = Path(environ[variable]), f"${variable}"
            else:
                paths[variable] = default_workspace_root() / FOLDER_NAMES[variable]
                sources[variable] = "default"
        return cls(paths[RAW_VARIABLE].expanduser().absolute(),
                   paths[PREPROCESSED_VARIABLE].expanduser().absolute(),
                   paths[RESULTS_VARIABLE].expanduser().absolute(), sources)

    def create(self) -> "Workspace":
        """Create the three folders if needed; raise WorkspaceError if one cannot be created."""
        for name, path in (("raw", self.raw), ("preprocessed", self.preprocessed), ("results", self.results)):
            try:
                path.mkdir(parents=True, exist_ok=True)
            except OSError as error:
                raise WorkspaceError(
                    f"Cannot create the {name} folder {path}: {error.strerror}. "
                    "Choose a writable folder with --workspace or the nnUNet_* environment variables."
                ) from error
        return self

    def environment(self) -> dict[str, str]:
        """Return the nnU-Net variables that point nnunetv2 at this workspace."""
        return {RAW_VARIABLE: str(self.raw), PREPROCESSED_VARIABLE: str(self.preprocessed),
                RESULTS_VARIABLE: str(self.results)}

    def describe(self) -> str:
        return "\n".join(f"{variable:20s} {path}  ({self.sources[variable]})" for variable, path in
                         zip((RAW_VARIABLE, PREPROCESSED_VARIABLE, RESULTS_VARIABLE),
                             (self.raw, self.preprocessed, self.results)))


def worker_environment(cpu_count: int | None = None) -> dict[str, str]:
    """Return nnU-Net's worker-count variables sized to this machine's CPUs.

    nnunetv2 otherwise starts 8 preprocessing and up to 12 augmentation workers
    whatever the machine has. Values the user already set are kept.
    """
    cpus = cpu_count or os.cpu_count() or 1
    defaults = {"nnUNet_def_n_proc": str(max(1, min(cpus, 8))), "nnUNet_n_proc_DA": str(max(1, min(cpus, 12)))}
    return {key: os.environ.get(key, value) for key, value in defaults.items()}


@contextlib.contextmanager
def activated(workspace: Workspace) -> Iterator[Workspace]:
    """Set the nnU-Net variables for ``workspace`` (and worker counts) while the block runs.

    nnunetv2 reads these variables when its functions run, and its spawned worker
    processes inherit them.
    """
    updates = {**workspace.environment(), **worker_environment()}
    previous = {key: os.environ.get(key) for key in updates}
    os.environ.update(updates)
    try:
        yield workspace
    finally:
        for key, value in previous.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
