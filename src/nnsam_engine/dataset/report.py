"""Problems found by the dataset check and the report that collects them."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path

ERROR = "error"
WARNING = "warning"
SEVERITIES = (ERROR, WARNING)


@dataclass(frozen=True)
class Problem:
    """One finding of the dataset check.

    Attributes
    ----------
    severity : {"error", "warning"}
        Errors make the dataset unusable for training; warnings only need a look.
    case : str or None
        Case identifier, or None for problems of the whole dataset.
    file : str or None
        Path relative to the dataset folder (POSIX separators), or None when the
        problem concerns the dataset folder itself.
    found : str
        What the check found, as a sentence fragment without a final period.
    expected : str
        What nnU-Net expects instead, as a noun phrase ("one of 0, 1, 2").
    fix : str
        What to do next.
    """

    severity: str
    case: str | None
    file: str | None
    found: str
    expected: str
    fix: str

    def __post_init__(self):
        if self.severity not in SEVERITIES:
            raise ValueError(f"Invalid severity {self.severity!r}; expected one of {SEVERITIES}.")

    @classmethod
    def error(cls, case: str | None, file: str | None, found: str, expected: str, fix: str) -> "Problem":
        """Create a problem with severity "error"."""
        return cls(ERROR, case, file, found, expected, fix)

    @classmethod
    def warning(cls, case: str | None, file: str | None, found: str, expected: str, fix: str) -> "Problem":
        """Create a problem with severity "warning"."""
        return cls(WARNING, case, file, found, expected, fix)

    def describe(self) -> str:
        """Return the file, finding, expectation and fix as one sentence, without severity or case."""
        location = f"{self.file}: " if self.file else ""
        fix = self.fix.rstrip(".")
        return f"{location}{self.found}; expected {self.expected}. Fix: {fix}."

    def __str__(self) -> str:
        return f"{self.severity:<7} {self.case or '-'}  {self.describe()}"


def _count(number: int, noun: str) -> str:
    return f"{number} {noun}" if number == 1 else f"{number} {noun}s"


@dataclass
class CheckReport:
    """Result of checking one raw nnU-Net dataset.

    Attributes
    ----------
    folder : Path
        The dataset folder that was checked.
    problems : list of Problem
        Every error and warning, dataset-level problems first, then by case.
    num_cases : int
        Number of cases whose files were found and read.
    ndim : int or None
        Spatial dimensionality of most cases (2 or 3), None if no image could be read.
    num_channels : int or None
        Number of input channels, from ``channel_names`` in dataset.json or, when
        that key is unusable, from the highest channel index found.
    file_ending : str or None
        File ending of the images and labels, such as ``".nii.gz"``.
    """

    folder: Path
    problems: list[Problem] = field(default_factory=list)
    num_cases: int = 0
    ndim: int | None = None
    num_channels: int | None = None
    file_ending: str | None = None

    @property
    def errors(self) -> list[Problem]:
        """Problems with severity "error"."""
        return [problem for problem in self.problems if problem.severity == ERROR]

    @property
    def warnings(self) -> list[Problem]:
        """Problems with severity "warning"."""
        return [problem for problem in self.problems if problem.severity == WARNING]

    @property
    def ok(self) -> bool:
        """True when the check found no errors (warnings are allowed)."""
        return not self.errors

    def summary(self) -> str:
        """Return the one-line count, e.g. ``"2 errors, 1 warning in 200 cases"``."""
        return (
            f"{_count(len(self.errors), 'error')}, {_count(len(self.warnings), 'warning')} "
            f"in {_count(self.num_cases, 'case')}"
        )

    def format(self) -> str:
        """Return a readable multi-line report: a header, the problems grouped by case, the summary."""
        dimensions = f"{self.ndim}D" if self.ndim else "dimensionality unknown"
        channels = _count(self.num_channels, "channel") if self.num_channels is not None else "channels unknown"
        ending = self.file_ending or "unknown"
        lines = [f"Dataset check of {self.folder} ({dimensions}, {channels}, file ending {ending})"]

        groups: dict[str | None, list[Problem]] = {}
        for problem in self.problems:
            groups.setdefault(problem.case, []).append(problem)
        for case, problems in groups.items():
            lines.append(f"{case if case is not None else 'dataset'}:")
            for problem in problems:
                lines.append(f"  {problem.severity:<7} {problem.describe()}")

        lines.append(self.summary())
        return "\n".join(lines)

    def to_dict(self) -> dict:
        """Return the report as plain JSON-serializable types."""
        return {
            "folder": str(self.folder),
            "ok": self.ok,
            "num_cases": self.num_cases,
            "ndim": self.ndim,
            "num_channels": self.num_channels,
            "file_ending": self.file_ending,
            "num_errors": len(self.errors),
            "num_warnings": len(self.warnings),
            "problems": [asdict(problem) for problem in self.problems],
        }
