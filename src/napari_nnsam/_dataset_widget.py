"""Dock widget to create a raw nnU-Net dataset, add the viewer's layers as cases and check the dataset.

The widget only reads its controls and the viewer's layers; creating, writing,
checking and fixing are done by :mod:`nnsam_engine.dataset.editing` and
:func:`nnsam_engine.dataset.check_dataset`. Everything that reads or writes
image files runs in a napari ``thread_worker``, so large volumes do not freeze
the viewer.
"""

from __future__ import annotations

import logging
from functools import partial
from pathlib import Path

import numpy as np
from qtpy.QtCore import Signal
from qtpy.QtWidgets import (
    QAbstractItemView,
    QComboBox,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QPlainTextEdit,
    QPushButton,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from ._common import SAM_ROLE_KEY, WorkspaceDatasetPicker
from ._dataset_dialogs import NewDatasetForm, RemapDialog

logger = logging.getLogger(__name__)

_ERROR_STYLE = "color: #ff6b6b;"
_TABLE_HEADERS = ("Case", "Channels", "Labelled")
_COPY_GEOMETRY_TOOLTIP = ("Rewrite the label file with the spacing, origin and direction of the case's first "
                          "image; the label values stay as they are")
_REMAP_TOOLTIP = "Choose a declared label for each undeclared value, then rewrite the label file"


class _UserError:
    """An engine error raised in a worker, returned so the GUI thread shows it as a message, not a traceback."""

    def __init__(self, error: Exception):
        self.error = error


def _call_returning_user_errors(function, *args):
    from nnsam_engine.errors import NnsamError

    try:
        return function(*args)
    except NnsamError as error:
        return _UserError(error)


def _check_and_find_fixes(folder: Path):
    from nnsam_engine.dataset import check_dataset
    from nnsam_engine.dataset.fixes import find_safe_fixes

    report = check_dataset(folder)
    return report, find_safe_fixes(folder, report)


def _read_case(case, channel_names: tuple[str, ...]) -> list[tuple[np.ndarray, object, str, Path, bool]]:
    from nnsam_engine.dataset import read_image

    names = [f"{case.case} {name}" for name in channel_names]
    names += [f"{case.case} channel {index}" for index in range(len(names), len(case.channel_files))]
    files = [(path, name, False) for path, name in zip(case.channel_files, names)]
    if case.label_file is not None:
        files.append((case.label_file, f"{case.case} labels", True))
    return [(*read_image(path), name, path, is_label) for path, name, is_label in files]


class DatasetWidget(QWidget):
    """Create a dataset, add Image and Labels layers to it as training cases, open cases and check it."""

    #: Emitted with the case name after a training case was written.
    case_added = Signal(str)

    def __init__(self, napari_viewer):
        super().__init__()
        self.viewer = napari_viewer
        self._cases = []
        self._description = None
        self._workers = set()

        self.picker = WorkspaceDatasetPicker()
        self.new_toggle = QPushButton("New dataset…")
        self.new_toggle.setCheckable(True)
        self.new_form = NewDatasetForm()
        self.new_form.setVisible(False)
        self.new_toggle.toggled.connect(self._toggle_new_form)
        self.new_form.create_requested.connect(self._create_dataset)

        self.case_table = QTableWidget(0, len(_TABLE_HEADERS))
        self.case_table.setHorizontalHeaderLabels(_TABLE_HEADERS)
        self.case_table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.case_table.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.case_table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        header = self.case_table.horizontalHeader()
        header.setSectionResizeMode(0, QHeaderView.ResizeMode.Stretch)
        for column in range(1, len(_TABLE_HEADERS)):
            header.setSectionResizeMode(column, QHeaderView.ResizeMode.ResizeToContents)
        self.case_table.verticalHeader().setVisible(False)
        self.case_table.cellDoubleClicked.connect(lambda _row, _column: self._open_case())
        self.open_button = QPushButton("Open case")
        self.open_button.setToolTip("Add the selected case's images and label as layers (or double-click a row)")
        self.open_button.clicked.connect(self._open_case)

        self.layer_form = QFormLayout()
        self.channel_combos: list[QComboBox] = []
        self.labels_combo = QComboBox()
        self.add_button = QPushButton("Add as training case")
        self.add_button.setToolTip("Save the chosen layers into imagesTr and labelsTr with the image's geometry")
        self.add_button.clicked.connect(self._add_case)

        self.check_button = QPushButton("Check dataset")
        self.check_button.setToolTip("Check files, dataset.json, geometry and label values as nnU-Net needs them")
        self.check_button.clicked.connect(self._check)
        self.fix_box = QVBoxLayout()
        self.report_text = QPlainTextEdit()
        self.report_text.setReadOnly(True)
        self.report_text.setPlaceholderText("Click 'Check dataset' to list the problems to fix before training.")
        self.message_label = QLabel()
        self.message_label.setWordWrap(True)

        self._build_layout()
        self._busy_buttons = [self.open_button, self.add_button, self.check_button, self.new_form.create_button]
        self.picker.changed.connect(self._dataset_changed)
        self.viewer.layers.events.inserted.connect(self._layer_inserted)
        self.viewer.layers.events.removed.connect(self._refresh_layer_combos)
        for layer in self.viewer.layers:
            layer.events.name.connect(self._refresh_layer_combos)
        self._dataset_changed()

    def _build_layout(self) -> None:
        cases = QGroupBox("Cases")
        cases_layout = QVBoxLayout(cases)
        cases_layout.addWidget(self.case_table)
        cases_layout.addWidget(self.open_button)

        add = QGroupBox("Add layers as a training case")
        add_layout = QVBoxLayout(add)
        add_layout.addLayout(self.layer_form)
        add_layout.addWidget(self.add_button)

        check = QGroupBox("Check")
        check_layout = QVBoxLayout(check)
        check_layout.addWidget(self.check_button)
        check_layout.addLayout(self.fix_box)
        check_layout.addWidget(self.report_text)

        top = QHBoxLayout()
        top.addStretch(1)
        top.addWidget(self.new_toggle)
        layout = QVBoxLayout(self)
        layout.addWidget(self.picker)
        layout.addLayout(top)
        layout.addWidget(self.new_form)
        layout.addWidget(self.message_label)
        layout.addWidget(cases)
        layout.addWidget(add)
        layout.addWidget(check, 1)

    # --- state shown to the user ---------------------------------------------------------------------

    def dataset_folder(self) -> Path | None:
        name = self.picker.dataset_name()
        return self.picker.workspace().raw / name if name else None

    def _show_message(self, text: str) -> None:
        self.message_label.setStyleSheet("")
        self.message_label.setText(text)

    def _show_error(self, error: BaseException | str, notify: bool = True) -> None:
        from nnsam_engine.errors import NnsamError

        if isinstance(error, (NnsamError, str)):
            text = str(error)
        else:
            logger.error("Dataset widget operation failed", exc_info=error)
            text = f"Unexpected {type(error).__name__}: {error}"
        self.message_label.setStyleSheet(_ERROR_STYLE)
        self.message_label.setText(text)
        if notify:
            from napari.utils.notifications import show_error

            show_error(text)

    def _run(self, function, *args, done) -> None:
        """Run ``function(*args)`` in a worker thread and pass its result to ``done`` on the GUI thread."""
        from napari.qt.threading import create_worker

        worker = create_worker(_call_returning_user_errors, function, *args, _start_thread=False)
        worker.returned.connect(lambda result: self._show_error(result.error) if isinstance(result, _UserError)
                                else done(result))
        # napari already shows any other exception of a worker as a notification with its traceback.
        worker.errored.connect(lambda error: self._show_error(error, notify=False))
        worker.finished.connect(lambda: self._worker_finished(worker))
        self._workers.add(worker)
        self._set_busy(True)
        worker.start()

    def _worker_finished(self, worker) -> None:
        self._workers.discard(worker)
        self._set_busy(bool(self._workers))

    def _set_busy(self, busy: bool) -> None:
        for button in self._busy_buttons + [self.fix_box.itemAt(i).widget() for i in range(self.fix_box.count())]:
            button.setEnabled(not busy)

    def is_busy(self) -> bool:
        return bool(self._workers)

    # --- dataset and cases ---------------------------------------------------------------------------

    def _toggle_new_form(self, visible: bool) -> None:
        from nnsam_engine.dataset.editing import next_free_dataset_id

        if visible:
            self.new_form.id_spin.setValue(next_free_dataset_id(self.picker.workspace().raw, start=501))
        self.new_form.setVisible(visible)

    def _create_dataset(self) -> None:
        from nnsam_engine.dataset.editing import create_dataset, labels_from_names
        from nnsam_engine.errors import NnsamError

        dataset_id, name, channels, label_names = self.new_form.values()
        try:
            folder = create_dataset(self.picker.workspace().raw, dataset_id, name, channels,
                                    labels_from_names(label_names))
        except NnsamError as error:
            self._show_error(error)
            return
        self.new_toggle.setChecked(False)
        self.picker.refresh(select=folder.name)
        self._show_message(f"Created {folder}. Choose an Image and a Labels layer below to add training cases.")

    def _dataset_changed(self) -> None:
        from nnsam_engine.dataset.editing import describe_dataset, list_cases
        from nnsam_engine.errors import NnsamError

        self._clear_check()
        self._cases, self._description = [], None
        folder = self.dataset_folder()
        if folder is not None:
            try:
                self._description = describe_dataset(folder)
                self._cases = list_cases(folder, include_test=True)
            except NnsamError as error:
                self._show_error(error, notify=False)
        self._fill_table()
        self._rebuild_layer_form(self._description.channel_names if self._description else ("image",))

    def _fill_table(self) -> None:
        self.case_table.setRowCount(len(self._cases))
        for row, case in enumerate(self._cases):
            labelled = "yes" if case.labelled else "no"
            if case.is_test:
                labelled = "test image"
            files = [path.name for path in case.channel_files] + ([case.label_file.name] if case.labelled else [])
            for column, text in enumerate((case.case, str(len(case.channel_files)), labelled)):
                item = QTableWidgetItem(text)
                item.setToolTip("\n".join(files))
                self.case_table.setItem(row, column, item)

    def _open_case(self) -> None:
        if self.is_busy():
            return  # a double-click does not go through the disabled "Open case" button
        row = self.case_table.currentRow()
        if not 0 <= row < len(self._cases):
            self._show_error("No case selected; click a row of the case table first, then 'Open case'.")
            return
        self._run(_read_case, self._cases[row], self._description.channel_names, done=self._add_case_layers)

    def _add_case_layers(self, files) -> None:
        from ._geometry import layer_kwargs

        for array, geometry, name, path, is_label in files:
            kwargs = layer_kwargs(geometry, name, source_path=str(path))
            if is_label:
                self.viewer.add_labels(array, **kwargs)
            else:
                self.viewer.add_image(array, **kwargs)
        self._show_message(f"Opened {', '.join(name for _, _, name, _, _ in files)}.")

    # --- adding layers as a case ---------------------------------------------------------------------

    def _rebuild_layer_form(self, channel_names: tuple[str, ...]) -> None:
        while self.layer_form.rowCount():
            self.layer_form.removeRow(0)  # deletes the row's widgets, including the old labels combo
        self.channel_combos = []
        for name in channel_names:
            combo = QComboBox()
            combo.setToolTip(f"Image layer to save as channel '{name}'")
            self.channel_combos.append(combo)
            self.layer_form.addRow(f"Image ({name})", combo)
        self.labels_combo = QComboBox()
        self.labels_combo.setToolTip("Labels layer to save in labelsTr; values must be declared in dataset.json")
        self.layer_form.addRow("Labels", self.labels_combo)
        self._refresh_layer_combos()

    def _layer_inserted(self, event) -> None:
        event.value.events.name.connect(self._refresh_layer_combos)
        self._refresh_layer_combos()

    def _refresh_layer_combos(self, _event=None) -> None:
        from napari.layers import Image, Labels

        images = [layer.name for layer in self.viewer.layers if isinstance(layer, Image)]
        # The SAM annotation widget's preview is a Labels layer, but not one to save as a case.
        labels = [layer.name for layer in self.viewer.layers
                  if isinstance(layer, Labels) and SAM_ROLE_KEY not in layer.metadata]
        for index, combo in enumerate(self.channel_combos):
            self._set_combo_items(combo, images, default=images[index] if index < len(images) else None)
        self._set_combo_items(self.labels_combo, labels, default=labels[-1] if labels else None)

    @staticmethod
    def _set_combo_items(combo: QComboBox, names: list[str], default: str | None) -> None:
        current = combo.currentText()
        combo.blockSignals(True)
        combo.clear()
        combo.addItems(names)
        combo.setCurrentText(current if current in names else default or "")
        combo.blockSignals(False)

    def add_layers_as_case(self, image_name: str, labels_name: str) -> None:
        """Choose ``image_name`` for the first channel and ``labels_name`` as labels, then add them as a case.

        A dataset with more channels gets only the choice; the user picks the other channels and clicks
        'Add as training case'.
        """
        self._refresh_layer_combos()
        self.channel_combos[0].setCurrentText(image_name)
        self.labels_combo.setCurrentText(labels_name)
        if self.dataset_folder() is None:
            self._show_error(f"{image_name} and {labels_name} are chosen below. Choose or create a dataset above, "
                             "then click 'Add as training case'.")
            return
        if len(self.channel_combos) > 1:
            self._show_message(f"{image_name} is chosen as channel 1 and {labels_name} as labels. Choose the other "
                               "channels' layers, then click 'Add as training case'.")
            return
        self._add_case()

    def _add_case(self) -> None:
        from nnsam_engine.dataset.editing import add_training_case

        from ._geometry import geometry_from_layer

        folder = self.dataset_folder()
        chosen = [combo.currentText() for combo in self.channel_combos] + [self.labels_combo.currentText()]
        if folder is None or not all(chosen):
            self._show_error("Choose a dataset, an Image layer for each channel and a Labels layer first; "
                             "open an image or load File > Open Sample > nnSAM phantom to get layers.")
            return
        layers = [self.viewer.layers[name] for name in chosen]
        multiscale = [layer.name for layer in layers if getattr(layer, "multiscale", False)]
        if multiscale:
            self._show_error(f"Layer {multiscale[0]} is multiscale; expected a single-resolution layer. "
                             "Open the full-resolution image instead.")
            return
        try:
            geometry = geometry_from_layer(layers[0])
        except ValueError as error:
            self._show_error(f"Layer {layers[0].name}: {error}")
            return
        images = [np.asarray(layer.data) for layer in layers[:-1]]
        self._run(add_training_case, folder, images, np.asarray(layers[-1].data), geometry,
                  done=self._case_added)

    def _case_added(self, case: str) -> None:
        self._dataset_changed()
        self._show_message(f"Added training case {case} to {self.picker.dataset_name()}.")
        self.case_added.emit(case)

    # --- check and fixes -----------------------------------------------------------------------------

    def _clear_check(self) -> None:
        self.report_text.clear()
        while self.fix_box.count():
            button = self.fix_box.takeAt(0).widget()
            button.hide()
            button.deleteLater()

    def _check(self, _checked: bool = False, note: str = "") -> None:
        folder = self.dataset_folder()
        if folder is None:
            self._show_error("No dataset chosen; choose one in the dataset list or create one with 'New dataset…'.")
            return
        self._clear_check()
        self.report_text.setPlainText(f"Checking {folder}…")
        self._run(_check_and_find_fixes, folder, done=partial(self._show_report, note=note))

    def _show_report(self, result, note: str = "") -> None:
        from nnsam_engine.dataset.fixes import REMAP_LABELS

        report, fixes = result
        self._clear_check()
        self.report_text.setPlainText(report.format())
        for fix in fixes:
            remap = fix.kind == REMAP_LABELS
            button = QPushButton(fix.title + ("…" if remap else ""))
            button.setToolTip(_REMAP_TOOLTIP if remap else _COPY_GEOMETRY_TOOLTIP)
            button.clicked.connect(lambda _checked=False, fix=fix: self._apply_fix(fix))
            self.fix_box.addWidget(button)
        if not report.ok:
            next_step = "fix the errors listed below, then check again"
        elif report.warnings:
            next_step = "ready for training; review the warnings below"
        else:
            next_step = "ready for training"
        self._show_message(f"{note}\nCheck: {report.summary()}; {next_step}.".strip())

    def _apply_fix(self, fix) -> None:
        from nnsam_engine.dataset.fixes import REMAP_LABELS, copy_image_geometry_to_label, remap_label_values

        folder = self.dataset_folder()
        if fix.kind != REMAP_LABELS:
            self._run(copy_image_geometry_to_label, folder, fix.case, done=self._fix_applied)
            return
        dialog = RemapDialog(fix.case, fix.undeclared_values, self._description.labels, parent=self)
        if dialog.exec() == RemapDialog.DialogCode.Accepted:
            self._run(remap_label_values, folder, fix.case, dialog.mapping(), done=self._fix_applied)

    def _fix_applied(self, description: str) -> None:
        self._check(note=description)
