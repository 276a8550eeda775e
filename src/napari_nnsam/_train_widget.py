"""Dock widget to plan a dataset, train nnSAM or nnU-Net in a child process and follow its curves.

Planning runs :func:`nnsam_engine.planning.plan.plan_dataset` in a napari
``thread_worker``. Training runs ``nnsam train`` as a
:class:`~nnsam_engine.jobs.training_job.TrainingJob` in a child process, which a
:class:`~napari_nnsam._jobs_qt.TrainingWatcher` polls once a second for new
epochs and for the process exit.

When napari is closed while training runs, a dialog offers two choices. "Stop
training and close" stops the job after its current iteration, waits until it
has saved a checkpoint (Continue resumes from it) and then closes. "Keep
training" cancels the close.
"""

from __future__ import annotations

import math

from qtpy.QtWidgets import (QCheckBox, QComboBox, QFileDialog, QFormLayout, QGroupBox, QHBoxLayout, QLabel,
                            QPlainTextEdit, QProgressBar, QPushButton, QSpinBox, QVBoxLayout, QWidget)

from ._common import WorkspaceDatasetPicker
from ._jobs_qt import (FAILED, INTERRUPTED, SUCCEEDED, CloseGuard, StatusLabel, TrainingWatcher, add_scrolling_content,
                       ask_stop_on_close, run_in_worker, start_training_job, stop_in_background)
from ._loss_plot import LossPlot

_DEVICES = ("cpu", "cuda", "mps")


def _read_plan_summaries(workspace, dataset_name: str) -> list:
    """Return the summaries of the base configurations that have an nnSAM variant, and of those variants."""
    from nnsam_engine.dataset.locate import resolve_dataset
    from nnsam_engine.planning.configurations import base_name, nnsam_name, summarize
    from nnsam_engine.planning.plan import load_plans

    plans = load_plans(workspace, resolve_dataset(dataset_name, workspace))
    names = [name for name in plans["configurations"] if nnsam_name(base_name(name)) in plans["configurations"]]
    return [summarize(plans, name) for name in names]


def _plan(workspace, dataset_name: str, configurations: list[str]) -> list:
    from nnsam_engine.dataset.locate import resolve_dataset
    from nnsam_engine.planning.plan import plan_dataset

    return plan_dataset(resolve_dataset(dataset_name, workspace), workspace, configurations)


def _probe_environment() -> tuple[dict, str]:
    """Return the SAM weights status and the best device PyTorch can use."""
    from nnsam_engine.network.weights import weights_status

    status = weights_status()
    import torch

    if torch.cuda.is_available():
        return status, "cuda"
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        return status, "mps"
    return status, "cpu"


def _import_weights(path: str) -> dict:
    from nnsam_engine.network.weights import import_weights, weights_status

    import_weights(path)
    return weights_status()


def describe_weights(status: dict) -> tuple[str, bool]:
    """Return a line about the MobileSAM weights that training will use, and whether they are usable."""
    selected = next(entry for entry in status["locations"] if entry["source"] == status["selected"])
    if selected["random"]:
        return f"MobileSAM weights: random, set by {selected['description']} (tests and demos only).", True
    if selected["verified"]:
        return f"MobileSAM weights: verified, {selected['path']}", True
    return (f"MobileSAM weights not usable ({selected['path']}: {selected['reason']}). Import the official "
            "mobile_sam.pt with the button below, or run `nnsam weights download` in a terminal."), False


class TrainWidget(QWidget):
    """Plan and preprocess a dataset, then train one fold and watch its loss and pseudo-Dice curves."""

    def __init__(self, napari_viewer):
        super().__init__()
        self.viewer = napari_viewer
        self.job = None
        self.watcher: TrainingWatcher | None = None
        self.last_outcome: str | None = None
        self._workers: set = set()
        self._weights_usable = False
        self._device_chosen = False
        self._build_layout()

        self.picker.changed.connect(self._dataset_changed)
        self.model_combo.currentIndexChanged.connect(self._update_buttons)
        self.device_combo.activated.connect(self._device_activated)
        # NOTE: napari has no public API for its main window. In napari 0.9.2 it is Window._qt_window.
        main_window = getattr(napari_viewer.window, "_qt_window", None)
        if main_window is not None:
            self._close_guard = CloseGuard(self, lambda: self.job, lambda text: self.confirm_stop_on_close(text))
            main_window.installEventFilter(self._close_guard)
        self._dataset_changed()
        self._start_worker(_probe_environment, done=self._environment_probed)

    # --- layout --------------------------------------------------------------------------------------

    def _build_layout(self) -> None:
        self.picker = WorkspaceDatasetPicker()
        self.config_checks = {name: QCheckBox(name) for name in ("2d", "3d_fullres")}
        for check in self.config_checks.values():
            check.setChecked(True)
        self.config_checks["2d"].setToolTip("Slice-by-slice network: fast, and the only choice for 2D images")
        self.config_checks["3d_fullres"].setToolTip("Full-resolution 3D network, which needs a GPU for real datasets")
        self.plan_button = QPushButton("Plan and preprocess")
        self.plan_button.setToolTip("Fingerprint the dataset, plan nnU-Net and nnSAM networks and preprocess "
                                    "the cases into the workspace's nnUNet_preprocessed folder")
        self.busy_bar = QProgressBar()
        self.busy_bar.setRange(0, 0)
        self.busy_bar.setVisible(False)
        self.plans_text = QPlainTextEdit()
        self.plans_text.setReadOnly(True)
        self.plans_text.setMaximumHeight(110)
        self.plans_text.setStyleSheet("font-family: monospace;")
        plan_row = QHBoxLayout()
        for check in self.config_checks.values():
            plan_row.addWidget(check)
        plan_row.addWidget(self.plan_button, 1)
        plan_box = QGroupBox("1. Plan and preprocess")
        plan_layout = QVBoxLayout(plan_box)
        plan_layout.addLayout(plan_row)
        plan_layout.addWidget(self.busy_bar)
        plan_layout.addWidget(self.plans_text)

        self.configuration_combo = QComboBox()
        self.configuration_combo.setToolTip("Planned configurations. Plan the dataset to add one")
        self.model_combo = QComboBox()
        self.model_combo.addItem("nnSAM", "nnsam")
        self.model_combo.addItem("nnU-Net", "nnunet")
        self.model_combo.setToolTip("nnSAM adds the frozen MobileSAM encoder to nnU-Net's network")
        self.fold_combo = QComboBox()
        self.fold_combo.addItems(["0", "1", "2", "3", "4", "all"])
        self.fold_combo.setToolTip("Fold of nnU-Net's 5-fold cross-validation, or 'all' to train on every case")
        self.epochs_spin = self._spin(1, 100_000, 1000, "Number of epochs (nnU-Net trains 1000)")
        self.iterations_spin = self._spin(1, 100_000, 250, "Training iterations per epoch (nnU-Net: 250)")
        self.validation_spin = self._spin(1, 100_000, 50, "Validation iterations per epoch, used for the "
                                                          "pseudo-Dice curve (nnU-Net: 50)")
        self.batch_spin = self._spin(0, 1024, 0, "Images per iteration. 0 uses the plans' batch size")
        self.batch_spin.setSpecialValueText("from plans")
        self.device_combo = QComboBox()
        self.device_combo.addItems(_DEVICES)
        self.device_combo.setToolTip("cuda for an NVIDIA GPU, mps for Apple silicon. cpu is very slow")
        self.final_validation_check = QCheckBox("Predict the validation cases after training")
        self.final_validation_check.setChecked(True)
        self.final_validation_check.setToolTip("nnU-Net's final validation: writes the fold's validation Dice")
        form = QFormLayout()
        for label, control in (("Configuration", self.configuration_combo), ("Model", self.model_combo),
                               ("Fold", self.fold_combo), ("Epochs", self.epochs_spin),
                               ("Iterations per epoch", self.iterations_spin),
                               ("Validation iterations", self.validation_spin), ("Batch size", self.batch_spin),
                               ("Device", self.device_combo)):
            form.addRow(label, control)
        form.addRow(self.final_validation_check)

        self.weights_label = QLabel("MobileSAM weights: checking…")
        self.weights_label.setWordWrap(True)
        self.import_button = QPushButton("Import weights file…")
        self.import_button.setToolTip("Verify a downloaded mobile_sam.pt (SHA-256) and copy it into the cache")
        self.random_sam_check = QCheckBox("Random SAM weights (tests and demos only)")
        self.random_sam_check.setToolTip("Seeded random encoder weights in place of mobile_sam.pt, so a run can be "
                                         "tried without the file. Such a model will not segment real images well, "
                                         "and predicting with it needs random SAM weights too.")
        self.start_button = QPushButton("Start")
        self.start_button.setToolTip("Train from scratch in a separate process")
        self.stop_button = QPushButton("Stop")
        self.stop_button.setToolTip("Stop after the current iteration and save a checkpoint")
        self.continue_button = QPushButton("Continue")
        self.continue_button.setToolTip("Resume the fold from its latest checkpoint up to the number of epochs set")
        buttons = QHBoxLayout()
        for button in (self.start_button, self.stop_button, self.continue_button):
            buttons.addWidget(button)
        train_box = QGroupBox("2. Train")
        train_layout = QVBoxLayout(train_box)
        train_layout.addLayout(form)
        train_layout.addWidget(self.weights_label)
        train_layout.addWidget(self.import_button)
        train_layout.addWidget(self.random_sam_check)
        train_layout.addLayout(buttons)

        self.progress_label = QLabel("")
        self.status = StatusLabel("Choose a workspace and dataset, then plan it.")
        theme = _theme_colours(self.viewer)
        self.plot = LossPlot(*theme)
        self.plot.setMinimumHeight(280)
        layout = add_scrolling_content(self)
        layout.addWidget(self.picker)
        layout.addWidget(plan_box)
        layout.addWidget(train_box)
        layout.addWidget(self.progress_label)
        layout.addWidget(self.status)
        layout.addWidget(self.plot, 1)

        self.plan_button.clicked.connect(self._plan)
        self.import_button.clicked.connect(self._choose_weights_file)
        self.start_button.clicked.connect(lambda: self._start(continue_training=False))
        self.continue_button.clicked.connect(lambda: self._start(continue_training=True))
        self.stop_button.clicked.connect(self.stop_training)

    @staticmethod
    def _spin(minimum: int, maximum: int, value: int, tooltip: str) -> QSpinBox:
        spin = QSpinBox()
        spin.setRange(minimum, maximum)
        spin.setValue(value)
        spin.setToolTip(tooltip)
        return spin

    # --- state ---------------------------------------------------------------------------------------

    def is_training(self) -> bool:
        return self.job is not None and self.job.is_running()

    def is_busy(self) -> bool:
        """Return whether a worker (planning, importing, starting a job) or a training job is running."""
        return bool(self._workers) or self.is_training()

    def _start_worker(self, function, *args, done, on_error=None, busy_bar: bool = False) -> None:
        def finished():
            self._workers.discard(worker)
            self.busy_bar.setVisible(False)
            self._update_buttons()

        worker = run_in_worker(function, *args, on_result=done, on_error=on_error or self.status.show_error,
                               on_finished=finished)
        self._workers.add(worker)
        self.busy_bar.setVisible(busy_bar)
        self._update_buttons()

    def _update_buttons(self) -> None:
        idle = not self._workers and not self.is_training()
        planned = self.configuration_combo.count() > 0
        nnsam = self.model_combo.currentData() == "nnsam"
        self.plan_button.setEnabled(idle and bool(self.picker.dataset_name()))
        self.start_button.setEnabled(idle and planned)
        self.continue_button.setEnabled(idle and planned)
        self.stop_button.setEnabled(self.is_training() and not self.job.stop_requested)
        self.random_sam_check.setEnabled(nnsam)
        self.import_button.setEnabled(nnsam and idle)

    def confirm_stop_on_close(self, text: str) -> bool:
        """Ask whether to stop training so that napari can close. Tests replace this method."""
        return ask_stop_on_close(self.window(), text)

    # --- planning ------------------------------------------------------------------------------------

    def _dataset_changed(self) -> None:
        self._show_summaries([])
        name = self.picker.dataset_name()
        if not name:
            self.plans_text.setPlainText("No dataset in this workspace. Create one with the nnSAM Dataset widget.")
        else:
            self.plans_text.setPlainText("Reading plans…")
            self._start_worker(_read_plan_summaries, self.picker.workspace(), name, done=self._show_summaries,
                               on_error=self._plans_missing)
        self._update_buttons()

    def _plans_missing(self, error) -> None:
        from nnsam_engine.errors import PlanError

        if isinstance(error, PlanError):
            self.plans_text.setPlainText("Not planned yet: tick the configurations and press 'Plan and preprocess'.")
        else:
            self.plans_text.setPlainText("")
            self.status.show_error(error, notify=False)

    def _plan(self) -> None:
        configurations = [name for name, check in self.config_checks.items() if check.isChecked()]
        if not configurations:
            self.status.show_error("Tick at least one configuration (2d or 3d_fullres) to plan.")
            return
        self.status.show_message(f"Planning and preprocessing {self.picker.dataset_name()} "
                                 f"({', '.join(configurations)}). This takes a minute or more…")
        self._start_worker(_plan, self.picker.workspace(), self.picker.dataset_name(), configurations,
                           done=self._planned, busy_bar=True)

    def _planned(self, summaries: list) -> None:
        self._show_summaries(summaries)
        self.status.show_message("Planned. Next: check the training settings and press Start.")

    def _show_summaries(self, summaries: list) -> None:
        from_plans = self.configuration_combo.currentText()
        self.plans_text.setPlainText("\n".join(summary.format() for summary in summaries))
        bases = [summary.name for summary in summaries if not summary.name.endswith("_nnsam")]
        self.configuration_combo.clear()
        self.configuration_combo.addItems(bases)
        if from_plans in bases:
            self.configuration_combo.setCurrentText(from_plans)
        self._update_buttons()

    # --- SAM weights and device ----------------------------------------------------------------------

    def _environment_probed(self, result: tuple[dict, str]) -> None:
        status, device = result
        self._show_weights(status)
        if not self._device_chosen:
            self.device_combo.setCurrentText(device)

    def _device_activated(self, _index: int) -> None:
        self._device_chosen = True

    def _show_weights(self, status: dict) -> None:
        text, self._weights_usable = describe_weights(status)
        self.weights_label.setText(text)

    def _choose_weights_file(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Import MobileSAM weights", "", "PyTorch checkpoint (*.pt *.pth)")
        if path:
            self.status.show_message(f"Verifying and importing {path}…")
            self._start_worker(_import_weights, path, done=self._weights_imported)

    def _weights_imported(self, status: dict) -> None:
        self._show_weights(status)
        self.status.show_message("MobileSAM weights imported and verified.")

    # --- training ------------------------------------------------------------------------------------

    def _request(self, continue_training: bool):
        from nnsam_engine.jobs.training_job import TrainingRequest
        from nnsam_engine.network.weights import RANDOM

        model = self.model_combo.currentData()
        return TrainingRequest(
            dataset=self.picker.dataset_name(), configuration=self.configuration_combo.currentText(),
            fold=self.fold_combo.currentText(), model=model, epochs=self.epochs_spin.value(),
            iterations_per_epoch=self.iterations_spin.value(), validation_iterations=self.validation_spin.value(),
            batch_size=self.batch_spin.value() or None, device=self.device_combo.currentText(),
            sam_weights=RANDOM if model == "nnsam" and self.random_sam_check.isChecked() else None,
            continue_training=continue_training, final_validation=self.final_validation_check.isChecked())

    def _start(self, continue_training: bool) -> None:
        request = self._request(continue_training)
        if request.model == "nnsam" and request.sam_weights is None and not self._weights_usable:
            self.status.show_error("nnSAM needs the MobileSAM weights: import mobile_sam.pt with 'Import weights "
                                   "file…', or tick the random SAM weights box for a test run.")
            return
        if not continue_training:
            self.plot.show_records([])
        self.progress_label.setText("")
        self.status.show_message("Continuing training…" if continue_training else "Starting training…")
        self._start_worker(start_training_job, request, self.picker.workspace(), done=self._job_started)

    def _job_started(self, job) -> None:
        self.job = job
        self.last_outcome = None
        self.watcher = TrainingWatcher(job, self)
        self.watcher.records_changed.connect(self._show_records)
        self.watcher.ended.connect(self._job_ended)
        self.watcher.start()
        self.status.show_message(f"Training runs in a separate process. Its output goes to {job.log_path}.")
        self._update_buttons()

    def stop_training(self) -> None:
        """Ask the running job to stop after its current iteration. The watcher reports when it has ended."""
        if self.is_training():
            stop_in_background(self.job)
            self.job.stop_requested = True
            self.status.show_message("Stopping after the current iteration and saving a checkpoint…")
        self._update_buttons()

    def _show_records(self, records: list[dict]) -> None:
        from nnsam_engine.training.metrics import estimate_seconds_left

        self.plot.show_records(records)
        if not records:
            self.progress_label.setText("")
            return
        last = records[-1]
        text = f"Epoch {last['epoch'] + 1}/{last.get('epochs', '?')}"
        seconds = estimate_seconds_left(records)
        if seconds:
            text += f", about {math.ceil(seconds / 60)} min left"
        self.progress_label.setText(text)

    def _job_ended(self, outcome: str) -> None:
        job = self.job
        self.last_outcome = outcome
        if outcome == SUCCEEDED:
            self.status.show_message(f"Training finished: {job.fold_folder}. Next: predict with it in the "
                                     "nnSAM Predict widget.")
        elif outcome == INTERRUPTED:
            self.status.show_message("Training stopped and its checkpoint saved. Press Continue to resume it.")
        elif outcome == FAILED:
            self.status.show_error(f"Training failed (exit status {job.returncode()}):\n{job.error_message()}\n"
                                   f"Full output: {job.log_path}")
        self._update_buttons()


def _theme_colours(viewer) -> tuple[str, str]:
    """Return the napari theme's background and text colours as hex strings."""
    from napari.utils.theme import get_theme

    theme = get_theme(viewer.theme)
    return theme.background.as_hex(), theme.text.as_hex()
