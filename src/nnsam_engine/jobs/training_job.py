"""A training run in a child process, watched through its metrics file and log."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import TrainingError
from ..training.metrics import estimate_seconds_left, read_metrics
from ..workspace import Workspace, worker_environment

logger = logging.getLogger(__name__)

LOG_FILE = "nnsam_job.log"
_INTERRUPTED_STATUS = (128 + signal.SIGINT, 128 + signal.SIGTERM)


@dataclass
class TrainingRequest:
    """Arguments of one training run, mirroring the options of ``nnsam train``."""

    dataset: str
    configuration: str
    fold: str = "0"
    model: str = "nnsam"
    epochs: int = 1000
    iterations_per_epoch: int = 250
    validation_iterations: int = 50
    batch_size: int | None = None
    device: str = "cuda"
    sam_weights: str | None = None
    continue_training: bool = False
    final_validation: bool = True
    extra_arguments: list[str] = field(default_factory=list)

    def arguments(self, workspace: Workspace) -> list[str]:
        """Return the ``nnsam train`` arguments for this request."""
        arguments = ["train", self.dataset, self.configuration, str(self.fold), "--model", self.model,
                     "--epochs", str(self.epochs), "--iterations-per-epoch", str(self.iterations_per_epoch),
                     "--validation-iterations", str(self.validation_iterations), "--device", self.device,
                     "--raw", str(workspace.raw), "--preprocessed", str(workspace.preprocessed),
                     "--results", str(workspace.results)]
        if self.batch_size:
            arguments += ["--batch-size", str(self.batch_size)]
        if self.sam_weights:
            arguments += ["--sam-weights", self.sam_weights]
        if self.continue_training:
            arguments.append("--continue")
        if not self.final_validation:
            arguments.append("--no-final-validation")
        return arguments + list(self.extra_arguments)


class TrainingJob:
    """Runs ``nnsam train`` in a child process.

    The child writes its output to ``nnsam_job.log`` in the fold folder and its
    epochs to ``metrics.jsonl``; :meth:`metrics` reads them while it runs.
    :meth:`stop` sends SIGINT, on which training saves a checkpoint that
    ``continue_training=True`` resumes.
    """

    def __init__(self, request: TrainingRequest, workspace: Workspace, fold_folder: Path):
        self.request = request
        self.workspace = workspace
        self.fold_folder = Path(fold_folder)
        self.process: subprocess.Popen | None = None
        self.stop_requested = False
        self._log_stream = None

    @property
    def log_path(self) -> Path:
        return self.fold_folder / LOG_FILE

    def start(self) -> None:
        """Start the child process; raise TrainingError if a job is already running."""
        if self.is_running():
            raise TrainingError("This training job is already running; stop it before starting it again.")
        self.fold_folder.mkdir(parents=True, exist_ok=True)
        command = [sys.executable, "-m", "nnsam_engine.cli.main", *self.request.arguments(self.workspace)]
        environment = {**os.environ, **worker_environment(), "PYTHONUNBUFFERED": "1"}
        self._log_stream = open(self.log_path, "a", encoding="utf-8")
        self._log_stream.write(f"$ {' '.join(command)}\n")
        self._log_stream.flush()
        logger.info("Starting training job: %s", " ".join(command))
        # A new session keeps Ctrl+C in the parent's terminal away from the child.
        self.process = subprocess.Popen(command, stdout=self._log_stream, stderr=subprocess.STDOUT,
                                        stdin=subprocess.DEVNULL, env=environment, start_new_session=True)
        self.stop_requested = False

    def is_running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def returncode(self) -> int | None:
        return None if self.process is None else self.process.poll()

    def stop(self, timeout: float = 120.0) -> int | None:
        """Ask training to stop after its current iteration and wait up to ``timeout`` seconds.

        Returns the exit status, or None if the process still runs (then call
        :meth:`kill`).
        """
        if not self.is_running():
            return self.returncode()
        self.stop_requested = True
        self.process.send_signal(signal.SIGINT)
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            logger.warning("Training job did not stop within %.0f s after SIGINT.", timeout)
            return None

    def kill(self) -> None:
        """End the process at once; the last per-epoch checkpoint stays usable."""
        if self.is_running():
            self.process.kill()
            self.process.wait()

    def wait(self, timeout: float | None = None) -> int:
        return self.process.wait(timeout)

    def metrics(self) -> list[dict]:
        return read_metrics(self.fold_folder)

    def seconds_left(self) -> float | None:
        return estimate_seconds_left(self.metrics())

    def succeeded(self) -> bool:
        return self.returncode() == 0

    def interrupted(self) -> bool:
        """Return whether the run ended on a stop request or a signal, not an error."""
        code = self.returncode()
        # A stop that arrives while the child still imports ends it by the signal itself (negative status).
        return code in _INTERRUPTED_STATUS or (code is not None and code < 0 and self.stop_requested)

    def error_message(self, lines: int = 15) -> str:
        """Return the end of the log: the error report of a failed run."""
        if not self.log_path.is_file():
            return ""
        tail = self.log_path.read_text(encoding="utf-8", errors="replace").splitlines()[-lines:]
        errors = [line for line in tail if line.startswith(("ERROR", "Traceback")) or "Error" in line]
        return "\n".join(errors or tail)

    def close(self) -> None:
        if self._log_stream is not None:
            self._log_stream.close()
            self._log_stream = None


def wait_for_first_epoch(job: TrainingJob, timeout: float) -> bool:
    """Wait until the job records an epoch or ends; return whether an epoch was recorded."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and job.is_running():
        if job.metrics():
            return True
        time.sleep(0.5)
    return bool(job.metrics())
