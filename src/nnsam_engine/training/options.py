"""Training options, written next to each fold so a run can be reproduced and resumed."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, fields
from pathlib import Path

from ..atomic import write_json_atomic
from ..errors import TrainingError

OPTIONS_FILE = "nnsam_training.json"


@dataclass(frozen=True)
class TrainingOptions:
    """Options of one training run.

    Attributes
    ----------
    epochs : int
        Number of epochs (nnU-Net's default is 1000).
    iterations_per_epoch : int
        Training iterations per epoch (nnU-Net: 250).
    validation_iterations : int
        Validation iterations per epoch for the pseudo-Dice (nnU-Net: 50).
    batch_size : int or None
        Overrides the plans' batch size when set.
    final_validation : bool
        Whether to predict the fold's validation cases after training, as nnU-Net does.
    model : str
        ``"nnsam"`` or ``"nnunet"``.
    sam_weights_path, sam_weights_sha256 : str or None
        The SAM weights file and its hash (nnSAM only).
    sam_random : bool
        True when SAM uses seeded random weights (tests and demos only).
    time_limit_minutes : float or None
        Ends training after the first epoch that finishes past this wall-clock
        time, with a final checkpoint; ``--continue`` later runs the remaining epochs.
    """

    epochs: int = 1000
    iterations_per_epoch: int = 250
    validation_iterations: int = 50
    batch_size: int | None = None
    final_validation: bool = True
    model: str = "nnsam"
    sam_weights_path: str | None = None
    sam_weights_sha256: str | None = None
    sam_random: bool = False
    time_limit_minutes: float | None = None

    def __post_init__(self):
        for name in ("epochs", "iterations_per_epoch", "validation_iterations"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise TrainingError(f"{name} must be a positive integer, got {value!r}.")
        if self.batch_size is not None and (not isinstance(self.batch_size, int) or self.batch_size < 1):
            raise TrainingError(f"batch_size must be a positive integer, got {self.batch_size!r}.")
        if self.time_limit_minutes is not None and not self.time_limit_minutes > 0:
            raise TrainingError(f"time_limit_minutes must be positive, got {self.time_limit_minutes!r}.")
        if self.model not in ("nnsam", "nnunet"):
            raise TrainingError(f"model must be 'nnsam' or 'nnunet', got {self.model!r}.")

    def write(self, fold_folder: Path) -> Path:
        path = Path(fold_folder) / OPTIONS_FILE
        write_json_atomic(path, asdict(self))
        return path

    @classmethod
    def read(cls, fold_folder: Path | str | None) -> "TrainingOptions":
        """Read the options of a fold folder; defaults if the folder has none."""
        if fold_folder is None or not (Path(fold_folder) / OPTIONS_FILE).is_file():
            return cls()
        path = Path(fold_folder) / OPTIONS_FILE
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as error:
            raise TrainingError(f"{path} is not valid JSON ({error}); delete it and start the training again.") from error
        known = {field.name for field in fields(cls)}
        return cls(**{key: value for key, value in data.items() if key in known})
