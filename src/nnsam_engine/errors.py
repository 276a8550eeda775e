"""Exception hierarchy of the engine.

Every error raised for a user's input is an :class:`NnsamError`, so the CLI and
the napari plugin can show its message instead of a traceback. Messages name
the file or case, the value found, the value expected and the fix.
"""


class NnsamError(Exception):
    """Base class of all errors caused by user input, files or settings."""


class WorkspaceError(NnsamError):
    """A workspace folder is missing, not writable or inconsistent."""


class DatasetError(NnsamError):
    """A raw dataset cannot be found, read or used."""


class DatasetCheckError(DatasetError):
    """A raw dataset failed its check; ``report`` holds every problem found."""

    def __init__(self, message: str, report=None):
        super().__init__(message)
        self.report = report


class WeightsError(NnsamError):
    """The MobileSAM weights are missing, incomplete or do not match the expected hash."""


class PlanError(NnsamError):
    """Planning or preprocessing failed, or a requested configuration does not exist."""


class TrainingError(NnsamError):
    """Training cannot start or resume."""


class TrainingInterrupted(NnsamError):
    """Training stopped on a signal after saving a checkpoint it can resume from."""

    def __init__(self, message: str, signal_number: int):
        super().__init__(message)
        self.signal_number = signal_number


class ModelError(NnsamError):
    """A trained model folder or checkpoint is missing, incomplete or untrusted."""


class PredictionError(NnsamError):
    """Input images for prediction are missing or do not match the model."""
