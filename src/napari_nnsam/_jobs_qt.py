"""Glue between the widgets and long work: workers, a training-job watcher, a close guard, a status line.

A training job runs ``nnsam train`` in a child process (see
:class:`nnsam_engine.jobs.training_job.TrainingJob`). :class:`TrainingWatcher`
polls it from a ``QTimer`` on the GUI thread. Each poll is a ``stat`` of the
metrics file, a re-read of that file when it changed, and a non-blocking
``poll()`` of the process, so the event loop does not wait on training.
"""

from __future__ import annotations

import logging
import sys
import threading
from pathlib import Path
from typing import Callable

from qtpy.QtCore import QEvent, QEventLoop, QObject, Qt, QTimer, Signal
from qtpy.QtWidgets import QApplication, QFrame, QLabel, QMessageBox, QProgressDialog, QScrollArea, QVBoxLayout, QWidget

logger = logging.getLogger(__name__)

#: How often a running training job is polled, in milliseconds.
POLL_INTERVAL_MS = 1000
#: Seconds a clean stop may take (the current iteration plus saving a checkpoint) before the
#: process is killed. The last per-epoch checkpoint then stays usable.
STOP_TIMEOUT_S = 120.0
#: The same limit while napari closes, which waits with a frozen window, so it is shorter.
CLOSE_STOP_TIMEOUT_S = 60.0

SUCCEEDED, INTERRUPTED, FAILED = "succeeded", "interrupted", "failed"
_ERROR_STYLE = "color: #ff6b6b;"


class _VerticalScrollArea(QScrollArea):
    """A scroll area that scrolls vertically only, with a size hint as wide as its content needs."""

    def _content_width(self, content_hint) -> int:
        return content_hint.width() + self.verticalScrollBar().sizeHint().width() + 2 * self.frameWidth()

    def minimumSizeHint(self):  # noqa: N802 (Qt's name)
        hint = super().minimumSizeHint()
        if self.widget() is not None:
            hint.setWidth(self._content_width(self.widget().minimumSizeHint()))
        return hint

    def sizeHint(self):  # noqa: N802 (Qt's name)
        hint = super().sizeHint()
        if self.widget() is not None:
            hint.setWidth(self._content_width(self.widget().sizeHint()))
        return hint


def add_scrolling_content(widget: QWidget) -> QVBoxLayout:
    """Fill ``widget`` with a vertical scroll area and return the layout of the content inside it.

    napari does not scroll dock widgets, so without this a tall widget on a small
    screen gets its rows squeezed until their text is clipped.
    """
    content = QWidget()
    scroll = _VerticalScrollArea()
    scroll.setWidgetResizable(True)
    scroll.setFrameShape(QFrame.Shape.NoFrame)
    scroll.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
    scroll.setWidget(content)
    outer = QVBoxLayout(widget)
    outer.setContentsMargins(0, 0, 0, 0)
    outer.addWidget(scroll)
    return QVBoxLayout(content)


class StatusLabel(QLabel):
    """A word-wrapped line for the next step, or for an error in red that is also sent as a napari notification."""

    def __init__(self, text: str = "", parent: QWidget | None = None):
        super().__init__(text, parent)
        self.setWordWrap(True)
        self.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.is_error = False

    def show_message(self, text: str) -> None:
        self.is_error = False
        self.setStyleSheet("")
        self.setText(text)

    def show_error(self, error: BaseException | str, notify: bool | None = None) -> None:
        """Show ``error`` in red.

        ``notify`` defaults to True for engine errors and plain text. Other exceptions
        come from workers, which napari already reports with their traceback.
        """
        from nnsam_engine.errors import NnsamError

        expected = isinstance(error, (NnsamError, str))
        text = str(error) if expected else f"Unexpected {type(error).__name__}: {error}"
        if not expected:
            logger.error("nnSAM widget operation failed", exc_info=error)
        self.is_error = True
        self.setStyleSheet(_ERROR_STYLE)
        self.setText(text)
        if notify if notify is not None else expected:
            from napari.utils.notifications import show_error

            show_error(text)


class UserError:
    """An engine error raised in a worker, returned so the GUI thread shows its message, not a traceback."""

    def __init__(self, error: Exception):
        self.error = error


def call_returning_user_errors(function, *args, **kwargs):
    from nnsam_engine.errors import NnsamError

    try:
        return function(*args, **kwargs)
    except NnsamError as error:
        return UserError(error)


def run_in_worker(function, *args, on_result: Callable, on_error: Callable, on_finished: Callable | None = None):
    """Run ``function(*args)`` in a napari ``thread_worker`` and return the started worker.

    ``on_result`` gets the return value and ``on_error`` an engine error or any other
    exception, both on the GUI thread. napari itself also shows exceptions that are
    not engine errors as notifications with their traceback.
    """
    from napari.qt.threading import create_worker

    worker = create_worker(call_returning_user_errors, function, *args, _start_thread=False)
    worker.returned.connect(lambda result: on_error(result.error) if isinstance(result, UserError)
                            else on_result(result))
    worker.errored.connect(on_error)
    if on_finished is not None:
        worker.finished.connect(on_finished)
    worker.start()
    return worker


def run_generator_in_worker(steps, *, on_yield: Callable, on_result: Callable, on_error: Callable,
                            on_finished: Callable | None = None):
    """Drive the generator ``steps`` in a napari worker and return the started worker.

    ``worker.quit()`` stops it before the next step, and ``steps`` is then closed,
    so its ``finally`` blocks run. ``on_yield`` gets each yielded value on the GUI thread.
    """
    from napari.qt.threading import create_worker

    worker = create_worker(_drive_returning_user_errors, steps, _start_thread=False)
    worker.yielded.connect(on_yield)
    worker.returned.connect(lambda result: on_error(result.error) if isinstance(result, UserError)
                            else on_result(result))
    worker.errored.connect(on_error)
    worker.aborted.connect(steps.close)
    if on_finished is not None:
        worker.finished.connect(on_finished)
    worker.start()
    return worker


def _drive_returning_user_errors(steps):
    from nnsam_engine.errors import NnsamError

    try:
        result = yield from steps
    except NnsamError as error:
        return UserError(error)
    return result


def hide_triton_if_llvm_loaded() -> bool:
    """Keep torch from importing triton into a process that already contains Mesa's LLVM, and return whether it did.

    Mesa's OpenGL drivers (llvmpipe, radeonsi) load ``libLLVM`` into napari's
    process for the canvas. nnunetv2's predictor imports ``torch._dynamo``, which
    imports triton, and triton's own LLVM then crashes the process with a
    segmentation fault (seen with triton 3.8 after Mesa's libLLVM-15 under Xvfb).
    Prediction does not use triton, so it is hidden from torch for this process.
    A ``None`` entry in ``sys.modules`` makes ``import triton`` raise ImportError.
    """
    if sys.platform != "linux" or "triton" in sys.modules:
        return False
    try:
        maps = Path("/proc/self/maps").read_text(encoding="utf-8", errors="replace")
    except OSError:
        return False
    if "libLLVM" not in maps:
        return False
    logger.warning("The OpenGL driver loaded LLVM into this process, and importing triton would crash it. torch "
                   "runs without triton, so torch.compile is unavailable, for the rest of this napari session.")
    sys.modules["triton"] = None
    return True


def create_training_job(request, workspace):
    """Return a :class:`TrainingJob` for ``request``, in the fold folder that ``nnsam train`` will use.

    Raises
    ------
    TrainingError
        If the fold already finished and ``request.continue_training`` is off, so
        the user learns it at once instead of from the child process.
    """
    from nnsam_engine.dataset.locate import resolve_dataset
    from nnsam_engine.errors import TrainingError
    from nnsam_engine.jobs.training_job import TrainingJob
    from nnsam_engine.training.run import fold_folder, parse_fold, resolve_configuration

    dataset = resolve_dataset(request.dataset, workspace)
    configuration = resolve_configuration(request.configuration, request.model)
    folder = fold_folder(workspace, dataset, configuration, parse_fold(request.fold))
    if not request.continue_training and (folder / "checkpoint_final.pth").is_file():
        raise TrainingError(f"{folder} already contains a finished training. Press Continue with more epochs to "
                            "extend it, choose another fold, or delete the folder to start again.")
    return TrainingJob(request, workspace, folder)


def start_training_job(request, workspace):
    """Create and start the job. Widgets call this in a worker because the engine imports torch on first use."""
    job = create_training_job(request, workspace)
    job.start()
    return job


def job_outcome(job) -> str:
    """Return ``"succeeded"``, ``"interrupted"`` (stopped by a signal) or ``"failed"`` for an ended job.

    A stop requested before the child has installed its signal handler (while it
    still imports torch) ends the process by the signal itself, so its exit status
    is negative, not the 130 of a clean stop. That counts as interrupted too.
    """
    if job.succeeded():
        return SUCCEEDED
    if job.interrupted() or (job.stop_requested and job.returncode() < 0):
        return INTERRUPTED
    return FAILED


def _stop_then_kill(job, timeout_s: float) -> None:
    if job.stop(timeout_s) is None:
        logger.warning("Training job did not stop within %.0f s, so its process %s is killed.", timeout_s,
                       job.process.pid)
        job.kill()


def stop_in_background(job, timeout_s: float = STOP_TIMEOUT_S) -> None:
    """Ask ``job`` to stop cleanly without blocking the GUI thread. Kill it if it still runs after ``timeout_s``."""
    threading.Thread(target=_stop_then_kill, args=(job, timeout_s), name="nnsam-stop-training", daemon=True).start()


def stop_and_wait(job, parent: QWidget | None, timeout_s: float = CLOSE_STOP_TIMEOUT_S) -> None:
    """Stop ``job`` on the GUI thread behind a progress dialog, which is only done when napari closes.

    This blocks the event loop on purpose. A nested event loop would run the
    deferred deletions that ``Viewer.close()`` has already queued, and napari's
    close handler then touches deleted objects.
    """
    dialog = QProgressDialog("Stopping training: finishing the current iteration and saving a checkpoint…",
                             "", 0, 0, parent)
    dialog.setCancelButton(None)
    dialog.setWindowTitle("nnSAM training")
    dialog.setWindowModality(Qt.WindowModality.ApplicationModal)
    dialog.setMinimumDuration(0)
    dialog.show()
    # Paint the dialog once. Unlike a nested event loop, processEvents does not run deferred deletions.
    QApplication.processEvents(QEventLoop.ProcessEventsFlag.ExcludeUserInputEvents)
    try:
        _stop_then_kill(job, timeout_s)
    finally:
        dialog.close()


class TrainingWatcher(QObject):
    """Polls a running :class:`TrainingJob` every ``interval_ms`` milliseconds on the GUI thread.

    Emits ``records_changed(list)`` with all epoch records whenever the metrics file
    changes, and ``ended(str)`` once with :func:`job_outcome` when the process exits.
    """

    records_changed = Signal(list)
    ended = Signal(str)

    def __init__(self, job, parent: QObject | None = None, interval_ms: int = POLL_INTERVAL_MS):
        super().__init__(parent)
        self.job = job
        self._signature: tuple[int, int] | None = None
        self._timer = QTimer(self)
        self._timer.setInterval(interval_ms)
        self._timer.timeout.connect(self.poll)

    def start(self) -> None:
        self._timer.start()
        self.poll()

    def is_active(self) -> bool:
        return self._timer.isActive()

    def poll(self) -> None:
        returncode = self.job.returncode()
        self._emit_changed_records()
        if returncode is None:
            return
        self._timer.stop()
        self.job.close()
        self.ended.emit(job_outcome(self.job))

    def _emit_changed_records(self) -> None:
        from nnsam_engine.training.metrics import METRICS_FILE

        try:
            stat = (self.job.fold_folder / METRICS_FILE).stat()
            signature = (stat.st_mtime_ns, stat.st_size)
        except FileNotFoundError:
            signature = None
        if signature == self._signature:
            return
        self._signature = signature
        self.records_changed.emit(self.job.metrics())


class CloseGuard(QObject):
    """Event filter for napari's main window that shows a question before closing while training runs.

    ``running_job()`` returns the current job or None. ``confirm(text)`` shows the
    question and returns True to stop the job and close. On True the job is stopped
    cleanly by :func:`stop_and_wait` and the window closes. On False the close is
    cancelled and training goes on.

    NOTE: ``Viewer.close()`` called from code tears parts of the viewer down before
    the window receives its close event, so cancelling there leaves a broken window.
    Scripts should stop the job before closing the viewer.
    """

    def __init__(self, parent: QWidget, running_job: Callable, confirm: Callable[[str], bool]):
        super().__init__(parent)
        self._running_job = running_job
        self._confirm = confirm

    def eventFilter(self, watched: QObject, event: QEvent) -> bool:  # noqa: N802 (Qt's name)
        if event.type() != QEvent.Type.Close:
            return False
        job = self._running_job()
        if job is None or not job.is_running():
            return False
        text = ("An nnSAM training job is running. Stop it and close napari?\n\n"
                "Training stops after the current iteration and saves a checkpoint. Press Continue in the "
                "Train widget later to resume it.")
        if not self._confirm(text):
            # An ignored close event keeps the window open.
            event.ignore()
            return True
        stop_and_wait(job, watched if isinstance(watched, QWidget) else None)
        return False


def ask_stop_on_close(parent: QWidget | None, text: str) -> bool:
    """Return whether the user chose to stop training and close."""
    box = QMessageBox(QMessageBox.Icon.Question, "nnSAM training is running", text, parent=parent)
    stop = box.addButton("Stop training and close", QMessageBox.ButtonRole.AcceptRole)
    box.addButton("Keep training", QMessageBox.ButtonRole.RejectRole)
    box.setDefaultButton(stop)
    box.exec()
    return box.clickedButton() is stop
