"""Dock widget for MobileSAM-assisted annotation of 2D images and 3D volumes, slice by slice.

The user places positive and negative points (two Points layers) and a box (a Shapes
layer) on the displayed slice. Once the slice's SAM embedding exists, every prompt
change predicts a mask into the "SAM preview" Labels layer on the GUI thread (tens of
milliseconds on a CPU). Accept writes the preview into the chosen label of a Labels
layer as one undoable edit. Propagate segments the neighbouring slices one by one in
a worker thread. Embeddings are computed ahead for the slices around the displayed one
by :class:`nnsam_engine.annotation.embeddings.EmbeddingService` and cached.

SAM's input is each slice as the image layer shows it: the intensity window is the
layer's contrast limits.
"""

from __future__ import annotations

import threading
import time

import numpy as np
from qtpy.QtCore import QEvent, QTimer, Signal
from qtpy.QtWidgets import (
    QApplication,
    QCheckBox,
    QComboBox,
    QDoubleSpinBox,
    QFileDialog,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QMessageBox,
    QProgressBar,
    QPushButton,
    QRadioButton,
    QSizePolicy,
    QSpinBox,
    QWidget,
)

from . import _annotate_geometry as geometry
from ._common import SAM_ROLE_KEY
from ._jobs_qt import (
    StatusLabel,
    add_scrolling_content,
    hide_triton_if_llvm_loaded,
    run_generator_in_worker,
    run_in_worker,
)

#: Keyboard shortcuts, bound on the viewer while the widget exists. None of them is used by napari 0.9's layers.
SHORTCUTS = {
    "accept": "Shift-S",
    "clear": "Shift-C",
    "next_object": "Shift-N",
    "propagate": "Shift-G",
    "toggle_sign": "Shift-T",
    "undo": "Shift-Z",
}
PREVIEW_COLOR = (1.0, 0.8, 0.0, 1.0)
#: Window presets besides the layer's own contrast limits (see nnsam_engine.annotation.intensity.CT_PRESETS).
_PERCENTILE_PRESET = "Percentiles 0.5-99.5 %"
_FULL_RANGE_PRESET = "Full range (min-max)"
#: Seconds without new prefetching after each prompt change.
_PROMPTING_PREFETCH_PAUSE_S = 3.0
#: Delay before a changed window or slice reschedules embeddings, so dragging a slider does not queue each step.
_RESCHEDULE_DELAY_MS = 400
_STATS_INTERVAL_MS = 500


def _load_segmenter():
    hide_triton_if_llvm_loaded()
    from nnsam_engine.annotation.segmenter import PromptSegmenter

    return PromptSegmenter.load(None)


def _import_weights(path: str) -> None:
    from nnsam_engine.network.weights import import_weights

    import_weights(path)


def _shortcut_text(key: str) -> str:
    return key.replace("-", "+")


class AnnotationWidget(QWidget):
    """Segment objects with MobileSAM prompts on slices, propagate them, accept them into a Labels layer."""

    #: Emitted (from the embedding thread) with the index of a slice whose embedding is ready.
    embedding_ready = Signal(int)
    #: Emitted (from the embedding thread) with a slice index and the exception that computing it raised.
    embedding_failed = Signal(int, object)

    def __init__(self, napari_viewer):
        super().__init__()
        self.viewer = napari_viewer
        self.segmenter = None
        self.service = None
        self.cache = None
        self.image_layer = None
        self.positive_layer = None
        self.negative_layer = None
        self.box_layer = None
        self.preview_layer = None
        self.last_preview_ms: float | None = None
        self._axis: int | None = None
        self._waiting_index: int | None = None
        self._propagation = None
        self._cancel_propagation = threading.Event()
        self._stop_reasons: list[str] = []
        self._workers: set = set()
        self._updating_window = False
        self._propagated_count = 0
        # Slices whose preview comes from prompts: removing their last prompt removes the preview.
        # Previews from propagation have no prompts and stay until Accept or Clear.
        self._prompted_slices: set[int] = set()
        # Guards against re-entry: removing this widget's layers emits layer events that would choose an image again.
        self._switching_image = False
        self._chosen_labels = None
        self._had_parent = False
        self._shut_down = False
        self._propagation_lost_image = False
        self._view_error_shown = False
        self._added_to_dataset: set[tuple] = set()
        self._pending_dataset_signature: tuple | None = None
        self._connected_dataset_widgets: set = set()

        self._build_layout()
        self._connect()
        self._bind_shortcuts()
        self._refresh_layer_combos()
        self._load_model()

    # --- layout --------------------------------------------------------------------------------------

    def _build_layout(self) -> None:
        layout = add_scrolling_content(self)

        self.weights_label = QLabel("MobileSAM: loading…")
        self.weights_label.setWordWrap(True)
        self.import_button = QPushButton("Import weights file…")
        self.import_button.setToolTip("Copy a downloaded mobile_sam.pt into the cache after checking its SHA-256")
        self.import_button.setVisible(False)
        weights_box = QGroupBox("MobileSAM")
        weights_layout = QFormLayout(weights_box)
        weights_layout.addRow(self.weights_label)
        weights_layout.addRow(self.import_button)

        self.image_combo = QComboBox()
        self.image_combo.setToolTip("2D image or 3D volume to annotate")
        self.labels_combo = QComboBox()
        self.labels_combo.setToolTip("Labels layer that accepted masks are written into")
        self.new_labels_button = QPushButton("New")
        self.new_labels_button.setToolTip("Add an empty Labels layer with the image's shape and position")
        labels_row = QHBoxLayout()
        labels_row.addWidget(self.labels_combo, 1)
        labels_row.addWidget(self.new_labels_button)
        self.label_spin = QSpinBox()
        self.label_spin.setRange(1, 65535)
        self.label_spin.setToolTip("Label value that Accept writes: the class as declared in the dataset's labels")
        layers_box = QGroupBox("Layers")
        layers_form = QFormLayout(layers_box)
        layers_form.addRow("Image", self.image_combo)
        layers_form.addRow("Labels", labels_row)
        layers_form.addRow("Label value", self.label_spin)

        from nnsam_engine.annotation.intensity import CT_PRESETS

        self.preset_combo = QComboBox()
        self.preset_combo.addItem("Choose a preset…")
        self.preset_combo.addItems([_PERCENTILE_PRESET, _FULL_RANGE_PRESET, *CT_PRESETS])
        self.preset_combo.setToolTip("Set the image layer's contrast limits, which are the window SAM sees")
        self.lower_spin = QDoubleSpinBox()
        self.upper_spin = QDoubleSpinBox()
        for spin in (self.lower_spin, self.upper_spin):
            spin.setRange(-1e9, 1e9)
            spin.setDecimals(2)
            spin.setKeyboardTracking(False)
        window_row = QHBoxLayout()
        window_row.addWidget(self.lower_spin)
        window_row.addWidget(QLabel("to"))
        window_row.addWidget(self.upper_spin)
        window_box = QGroupBox("Intensity window")
        window_form = QFormLayout(window_box)
        window_note = QLabel("SAM sees the slice as the layer shows it: the window is the layer's contrast limits, "
                             "mapped to 0-255 in three channels.")
        window_note.setWordWrap(True)
        window_form.addRow(window_note)
        window_form.addRow("Preset", self.preset_combo)
        window_form.addRow("Window", window_row)

        self.positive_radio = QRadioButton("Positive")
        self.negative_radio = QRadioButton("Negative")
        self.positive_radio.setChecked(True)
        sign_row = QHBoxLayout()
        sign_row.addWidget(QLabel(f"Points ({_shortcut_text(SHORTCUTS['toggle_sign'])}):"))
        sign_row.addWidget(self.positive_radio)
        sign_row.addWidget(self.negative_radio)
        sign_row.addStretch(1)
        self.accept_button = QPushButton(f"Accept ({_shortcut_text(SHORTCUTS['accept'])})")
        self.accept_button.setToolTip("Write the preview into the label value of the Labels layer")
        self.clear_button = QPushButton(f"Clear ({_shortcut_text(SHORTCUTS['clear'])})")
        self.clear_button.setToolTip("Remove the preview and all prompts")
        self.next_button = QPushButton(f"Next object ({_shortcut_text(SHORTCUTS['next_object'])})")
        self.next_button.setToolTip("Accept the preview, then switch to the next unused label value")
        self.undo_button = QPushButton(f"Undo ({_shortcut_text(SHORTCUTS['undo'])})")
        self.undo_button.setToolTip("Undo the last edit of the Labels layer, such as an Accept; Ctrl+Z does the same "
                                    "while the Labels layer is selected")
        buttons_row = QHBoxLayout()
        for button in (self.accept_button, self.clear_button, self.next_button, self.undo_button):
            buttons_row.addWidget(button)
        prompts_box = QGroupBox("Prompts")
        prompts_layout = QFormLayout(prompts_box)
        help_label = QLabel("Click in the 'SAM positive points' or 'SAM negative points' layer to add points, or draw "
                            "a rectangle in 'SAM box'. The yellow preview follows each prompt.")
        help_label.setWordWrap(True)
        prompts_layout.addRow(help_label)
        prompts_layout.addRow(sign_row)
        prompts_layout.addRow(buttons_row)

        self.direction_combo = QComboBox()
        self.direction_combo.addItem("Both directions", (1, -1))
        self.direction_combo.addItem("Increasing slice index", (1,))
        self.direction_combo.addItem("Decreasing slice index", (-1,))
        self.max_slices_spin = QSpinBox()
        self.max_slices_spin.setRange(0, 100000)
        self.max_slices_spin.setSpecialValueText("to the volume's edge")
        self.max_slices_spin.setToolTip("Largest number of slices segmented on each side; 0 goes to the volume's edge")
        self.min_score_spin = QDoubleSpinBox()
        self.min_score_spin.setRange(0.0, 1.0)
        self.min_score_spin.setSingleStep(0.05)
        self.min_score_spin.setValue(0.5)
        self.min_score_spin.setToolTip("Stop where SAM's predicted IoU of a slice's mask falls below this value")
        self.propagate_button = QPushButton(f"Propagate ({_shortcut_text(SHORTCUTS['propagate'])})")
        self.propagate_button.setToolTip("Segment the neighbouring slices from this slice's preview or accepted "
                                         "mask until the object ends")
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.setEnabled(False)
        self.progress_bar = QProgressBar()
        self.progress_bar.setVisible(False)
        propagate_row = QHBoxLayout()
        propagate_row.addWidget(self.propagate_button, 1)
        propagate_row.addWidget(self.cancel_button)
        propagate_box = QGroupBox("Propagate through slices")
        propagate_form = QFormLayout(propagate_box)
        propagate_form.addRow("Direction", self.direction_combo)
        propagate_form.addRow("Max slices", self.max_slices_spin)
        propagate_form.addRow("Min predicted IoU", self.min_score_spin)
        propagate_form.addRow(propagate_row)
        propagate_form.addRow(self.progress_bar)

        from nnsam_engine.annotation.cache import (
            DEFAULT_MEMORY_LIMIT_BYTES,
            default_disk_folder,
        )

        self.prefetch_spin = QSpinBox()
        self.prefetch_spin.setRange(0, 1000)
        self.prefetch_spin.setValue(8)
        self.prefetch_spin.setToolTip("Slices on each side of the displayed one whose embeddings are computed ahead")
        self.memory_spin = QSpinBox()
        self.memory_spin.setRange(16, 1 << 20)
        self.memory_spin.setSuffix(" MiB")
        self.memory_spin.setValue(DEFAULT_MEMORY_LIMIT_BYTES // 2**20)
        self.memory_spin.setToolTip("Memory for embeddings (4 MiB each); the least recently used are dropped")
        self.disk_check = QCheckBox("Keep embeddings on disk")
        self.disk_check.setToolTip(f"Store embeddings in {default_disk_folder()} (at most 4 GiB) so that reopening "
                                   "the same image needs no recomputation")
        self.stats_label = QLabel("")
        self.stats_label.setWordWrap(True)
        embeddings_box = QGroupBox("Embeddings")
        embeddings_form = QFormLayout(embeddings_box)
        embeddings_form.addRow("Prefetch ± slices", self.prefetch_spin)
        embeddings_form.addRow("Memory limit", self.memory_spin)
        embeddings_form.addRow(self.disk_check)
        embeddings_form.addRow(self.stats_label)

        self.dataset_button = QPushButton("Add to dataset…")
        self.dataset_button.setToolTip("Open the Dataset widget with this image and Labels layer chosen and add them "
                                       "as a training case")
        self.status = StatusLabel("")

        # Long paths in these labels must wrap instead of widening the dock.
        for label in (self.weights_label, self.status, self.stats_label):
            label.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)
            label.setMinimumWidth(0)
        # The status line sits near the top, so a short window does not hide the result of the last action.
        layout.addWidget(weights_box)
        layout.addWidget(self.status)
        for widget in (layers_box, window_box, prompts_box, propagate_box, embeddings_box):
            layout.addWidget(widget)
        layout.addWidget(self.dataset_button)
        layout.addStretch(1)
        self._action_buttons = [self.accept_button, self.clear_button, self.next_button, self.undo_button,
                                self.propagate_button, self.dataset_button]

    def _connect(self) -> None:
        self.import_button.clicked.connect(self._choose_weights_file)
        self.image_combo.currentTextChanged.connect(self._image_chosen)
        self.new_labels_button.clicked.connect(self.new_labels_layer)
        self.preset_combo.activated.connect(self._preset_chosen)
        self.lower_spin.valueChanged.connect(self._window_edited)
        self.upper_spin.valueChanged.connect(self._window_edited)
        self.positive_radio.toggled.connect(self._sign_chosen)
        self.accept_button.clicked.connect(self.accept)
        self.clear_button.clicked.connect(self.clear)
        self.next_button.clicked.connect(self.next_object)
        self.undo_button.clicked.connect(self.undo)
        self.propagate_button.clicked.connect(self.propagate)
        self.cancel_button.clicked.connect(self.cancel_propagation)
        self.memory_spin.valueChanged.connect(self._memory_limit_changed)
        self.disk_check.toggled.connect(self._disk_cache_toggled)
        self.dataset_button.clicked.connect(self.add_to_dataset)
        self.embedding_ready.connect(self._embedding_ready)
        self.embedding_failed.connect(self._embedding_failed)

        self._reschedule_timer = QTimer(self)
        self._reschedule_timer.setSingleShot(True)
        self._reschedule_timer.setInterval(_RESCHEDULE_DELAY_MS)
        self._reschedule_timer.timeout.connect(self._update_source)
        self._preview_timer = QTimer(self)
        self._preview_timer.setSingleShot(True)
        self._preview_timer.setInterval(0)
        self._preview_timer.timeout.connect(self.update_preview)
        self._stats_timer = QTimer(self)
        self._stats_timer.setInterval(_STATS_INTERVAL_MS)
        self._stats_timer.timeout.connect(self._show_stats)
        self._stats_timer.start()

        self.labels_combo.currentTextChanged.connect(self._labels_chosen)
        self.viewer.layers.events.inserted.connect(self._layer_inserted)
        self.viewer.layers.events.removed.connect(self._layer_removed)
        for layer in self.viewer.layers:
            layer.events.name.connect(self._refresh_layer_combos)
        self.viewer.dims.events.current_step.connect(self._view_changed)
        self.viewer.dims.events.order.connect(self._axes_changed)
        self.viewer.dims.events.ndisplay.connect(self._axes_changed)

    def _bind_shortcuts(self) -> None:
        actions = {
            "accept": self.accept,
            "clear": self.clear,
            "next_object": self.next_object,
            "propagate": self.propagate,
            "toggle_sign": self.toggle_sign,
            "undo": self.undo,
        }
        for name, key in SHORTCUTS.items():
            self.viewer.bind_key(key, lambda _viewer, name=name: self._shortcut_pressed(actions[name], name),
                                 overwrite=True)
        viewer = self.viewer
        keys = list(SHORTCUTS.values())

        def unbind(_object=None) -> None:
            for key in keys:
                viewer.bind_key(key, None, overwrite=True)

        # A closure, because the widget's own methods cannot run once Qt deleted it.
        self.destroyed.connect(unbind)

    def _shortcut_pressed(self, action, name: str) -> None:
        if self._propagation is not None and name != "toggle_sign":
            self.status.show_message("Propagation is running: wait for it to finish or click Cancel first.")
            return
        action()

    def event(self, event) -> bool:
        # napari's dock close button un-parents the widget without deleting it, so the widget
        # shuts itself down when it loses the parent it was docked in.
        if event.type() == QEvent.Type.ParentChange:
            if self.parent() is not None:
                self._had_parent = True
            elif self._had_parent:
                self.shutdown()
        return super().event(event)

    def shutdown(self) -> None:
        """Stop the embedding thread and propagation, unbind the shortcuts and remove this widget's layers."""
        if self._shut_down:
            return
        self._deactivate()
        self._shut_down = True
        for timer in (self._reschedule_timer, self._preview_timer, self._stats_timer):
            timer.stop()
        events = self.viewer.layers.events
        for emitter, callback in ((events.inserted, self._layer_inserted), (events.removed, self._layer_removed),
                                  (self.viewer.dims.events.current_step, self._view_changed),
                                  (self.viewer.dims.events.order, self._axes_changed),
                                  (self.viewer.dims.events.ndisplay, self._axes_changed)):
            emitter.disconnect(callback)
        for layer in self.viewer.layers:
            layer.events.name.disconnect(self._refresh_layer_combos)
        for key in SHORTCUTS.values():
            self.viewer.bind_key(key, None, overwrite=True)
        if self.service is not None:
            self.service.close(timeout_s=0)
            self.service = None

    # --- model and weights ---------------------------------------------------------------------------

    def _start_worker(self, function, *args, done, failed=None) -> None:
        worker = run_in_worker(function, *args, on_result=done, on_error=failed or self.status.show_error,
                               on_finished=lambda: self._workers.discard(worker))
        self._workers.add(worker)

    def _load_model(self) -> None:
        self.weights_label.setText("MobileSAM: loading…")
        self._set_actions_enabled(False)
        self._start_worker(_load_segmenter, done=self.use_segmenter, failed=self._model_failed)

    def _model_failed(self, error: BaseException) -> None:
        from nnsam_engine.errors import WeightsError

        if not isinstance(error, WeightsError):
            self.status.show_error(error)
            return
        self.weights_label.setText("No verified MobileSAM weights, so SAM annotation is off. Import the official "
                                   "mobile_sam.pt (40.7 MB) with the button below, or run `nnsam weights download` "
                                   f"in a terminal.\n\nDetails: {error}")
        self.import_button.setVisible(True)

    def _choose_weights_file(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Import MobileSAM weights", "", "PyTorch checkpoint (*.pt *.pth)")
        if path:
            self.weights_label.setText("Checking and importing the weights file…")
            self._start_worker(_import_weights, path, done=lambda _result: self._load_model(),
                               failed=self._model_failed)

    def use_segmenter(self, segmenter) -> None:
        """Annotate with ``segmenter`` (a :class:`~nnsam_engine.annotation.segmenter.PromptSegmenter`)."""
        from nnsam_engine.annotation.cache import EmbeddingCache, default_disk_folder
        from nnsam_engine.annotation.embeddings import EmbeddingService

        if self._shut_down:
            return
        if self.service is not None:
            self.service.close()
        self.segmenter = segmenter
        disk = default_disk_folder() if self.disk_check.isChecked() else None
        self.cache = EmbeddingCache(self.memory_spin.value() * 2**20, disk_folder=disk)
        self.service = EmbeddingService(segmenter, self.cache, on_ready=self.embedding_ready.emit,
                                        on_error=self.embedding_failed.emit)
        service = self.service
        self.destroyed.connect(lambda _object=None: service.close())
        if getattr(segmenter, "random_weights", False):
            self.weights_label.setText("MobileSAM weights: random (tests and demos only, masks are meaningless).")
        else:
            self.weights_label.setText(f"MobileSAM weights: verified (SHA-256 {segmenter.weights_id[:12]}…), "
                                       f"on {segmenter.device}.")
        self.import_button.setVisible(False)
        if self.image_layer is not None:
            self._update_source()
        else:
            self._image_chosen(self.image_combo.currentText())

    def _set_actions_enabled(self, enabled: bool) -> None:
        for button in self._action_buttons:
            button.setEnabled(enabled)

    def _update_actions(self) -> None:
        self._set_actions_enabled(self.segmenter is not None and self.image_layer is not None
                                  and self._propagation is None)

    # --- layers --------------------------------------------------------------------------------------

    def _own_layer(self, layer) -> bool:
        return SAM_ROLE_KEY in getattr(layer, "metadata", {})

    def _refresh_layer_combos(self, _event=None) -> None:
        from napari.layers import Image, Labels

        if self._switching_image or self._shut_down:
            return
        images = [layer.name for layer in self.viewer.layers if isinstance(layer, Image)]
        labels = [layer.name for layer in self.viewer.layers if isinstance(layer, Labels) and not self._own_layer(layer)]
        # The chosen layers are followed by identity, so renaming one keeps it chosen.
        for combo, names, layer in ((self.image_combo, images, self.image_layer),
                                    (self.labels_combo, labels, self._chosen_labels)):
            current = layer.name if layer is not None and layer in self.viewer.layers else combo.currentText()
            combo.blockSignals(True)
            combo.clear()
            combo.addItems(names)
            fallback = names[-1] if names else ""
            combo.setCurrentText(current if current in names else fallback)
            combo.blockSignals(False)
        self._labels_chosen(self.labels_combo.currentText())
        if self.image_combo.currentText() != getattr(self.image_layer, "name", ""):
            self._image_chosen(self.image_combo.currentText())

    def _layer_inserted(self, event) -> None:
        event.value.events.name.connect(self._refresh_layer_combos)
        self._refresh_layer_combos()

    def _layer_removed(self, event) -> None:
        if self._switching_image or self._shut_down:
            return
        if event.value is self.image_layer:
            self._deactivate()
            self.status.show_message(f"Image {event.value.name} was removed. Choose another image to annotate.")
        for name in ("positive_layer", "negative_layer", "box_layer", "preview_layer"):
            if getattr(self, name) is event.value:
                setattr(self, name, None)
        self._refresh_layer_combos()

    def _labels_chosen(self, name: str) -> None:
        self._chosen_labels = self.viewer.layers[name] if name and name in self.viewer.layers else None

    def labels_layer(self):
        """Return the chosen Labels layer, or None."""
        layer = self._chosen_labels
        return layer if layer is not None and layer in self.viewer.layers else None

    def new_labels_layer(self):
        """Add an empty Labels layer that lies over the image and choose it."""
        if self.image_layer is None:
            reason = ("MobileSAM is not loaded: see the MobileSAM box above." if self.segmenter is None
                      else "Choose a 2D image or 3D volume in the Image list first.")
            self.status.show_error(reason)
            return None
        shape = geometry.spatial_shape(self.image_layer)
        layer = self.viewer.add_labels(np.zeros(shape, dtype=np.uint8), name=f"{self.image_layer.name} labels",
                                       **geometry.transform_kwargs(self.image_layer))
        self._refresh_layer_combos()
        self.labels_combo.setCurrentText(layer.name)
        self._chosen_labels = layer
        self._select_prompt_layer()
        return layer

    def _image_chosen(self, name: str) -> None:
        layer = self.viewer.layers[name] if name and name in self.viewer.layers else None
        if self._switching_image or self._shut_down:
            return
        if layer is self.image_layer and layer is not None:
            self._ensure_layers()
            return
        self._switching_image = True
        try:
            self._deactivate()
            if layer is None or self.segmenter is None:
                return
            try:
                geometry.check_annotatable(layer)
            except ValueError as error:
                self.status.show_error(str(error))
                return
            self.image_layer = layer
            layer.events.contrast_limits.connect(self._contrast_changed)
            self._create_prompt_layers()
        finally:
            self._switching_image = False
            self._update_actions()
        if self.image_layer is None:
            return
        self._refresh_layer_combos()
        self._show_window()
        self._update_source()
        self.status.show_message(f"Annotating {layer.name}. Click to add points; the preview appears once the "
                                 "slice's embedding is ready.")

    def _deactivate(self) -> None:
        if self._propagation is not None:
            self._propagation_lost_image = True
        self.cancel_propagation()
        if self.image_layer is not None:
            try:
                self.image_layer.events.contrast_limits.disconnect(self._contrast_changed)
            except (TypeError, ValueError, RuntimeError):
                pass
        # Removing the layers emits layer events, whose handlers must not choose an image meanwhile.
        was_switching, self._switching_image = self._switching_image, True
        try:
            for name in ("positive_layer", "negative_layer", "preview_layer"):
                layer = getattr(self, name)
                setattr(self, name, None)
                if layer is not None and layer in self.viewer.layers:
                    self.viewer.layers.remove(layer)
            self._retire_box_layer()
        finally:
            self._switching_image = was_switching
        self.image_layer = None
        self._update_actions()
        if self.service is not None:
            self.service.set_source(None)

    def _retire_box_layer(self) -> None:
        # NOTE: napari 0.9.2 with vispy 0.17 crashed in glDrawArrays (Mesa, under Xvfb) on the redraw after
        # the last Shapes layer was removed while other layers remained. The box layer is therefore emptied
        # and hidden here, and removed only once a new box layer exists (in _create_prompt_layers).
        layer, self.box_layer = self.box_layer, None
        if layer is None or layer not in self.viewer.layers:
            return
        layer.events.data.disconnect(self._prompts_changed)
        layer.data = []
        layer.visible = False

    def _layers_missing(self) -> bool:
        layers = (self.positive_layer, self.negative_layer, self.box_layer, self.preview_layer)
        return any(layer is None or layer not in self.viewer.layers for layer in layers)

    def _ensure_layers(self) -> None:
        """Add back the prompt and preview layers that the user deleted while the image is chosen."""
        if self.image_layer is not None and self._layers_missing():
            self._create_prompt_layers()
            self.status.show_message("Added back the SAM layers that were deleted.")

    def _create_prompt_layers(self) -> None:
        """Add the prompt and preview layers that are missing, with the image's transform."""
        from napari.utils.colormaps import DirectLabelColormap

        image = self.image_layer
        transform = geometry.transform_kwargs(image)
        shape = geometry.spatial_shape(image)
        ndim = len(shape)
        point_size = max(2.0, 0.02 * max(shape[-2:]))
        present = set(self.viewer.layers)
        if self.preview_layer not in present:
            self.preview_layer = self.viewer.add_labels(
                np.zeros(shape, dtype=np.uint8), name="SAM preview", opacity=0.6,
                colormap=DirectLabelColormap(color_dict={None: (0, 0, 0, 0), 0: (0, 0, 0, 0), 1: PREVIEW_COLOR}),
                metadata={SAM_ROLE_KEY: "preview"}, **transform)
        if self.box_layer not in present:
            self.box_layer = self.viewer.add_shapes(
                ndim=ndim, name="SAM box", edge_color="yellow", face_color="transparent", edge_width=point_size / 3,
                metadata={SAM_ROLE_KEY: "box"}, **transform)
            self.box_layer.events.data.connect(self._prompts_changed)
            self.box_layer.mode = "add_rectangle"
        if self.negative_layer not in present:
            self.negative_layer = self.viewer.add_points(
                np.empty((0, ndim)), ndim=ndim, name="SAM negative points", face_color="red", size=point_size,
                metadata={SAM_ROLE_KEY: "negative"}, **transform)
            self.negative_layer.events.data.connect(self._prompts_changed)
        if self.positive_layer not in present:
            self.positive_layer = self.viewer.add_points(
                np.empty((0, ndim)), ndim=ndim, name="SAM positive points", face_color="lime", size=point_size,
                metadata={SAM_ROLE_KEY: "positive"}, **transform)
            self.positive_layer.events.data.connect(self._prompts_changed)
        retired = [layer for layer in self.viewer.layers
                   if layer.metadata.get(SAM_ROLE_KEY) == "box" and layer is not self.box_layer]
        for layer in retired:
            self.viewer.layers.remove(layer)
        if retired:
            self.box_layer.name = "SAM box"  # napari had suffixed it while the retired layer existed
        self._select_prompt_layer()

    def _select_prompt_layer(self) -> None:
        layer = self.positive_layer if self.positive_radio.isChecked() else self.negative_layer
        if layer is not None and layer in self.viewer.layers:
            self.viewer.layers.selection.active = layer
            layer.mode = "add"

    def _sign_chosen(self, _checked: bool = False) -> None:
        self._select_prompt_layer()

    def toggle_sign(self) -> None:
        """Switch between adding positive and negative points."""
        if self.positive_radio.isChecked():
            self.negative_radio.setChecked(True)
        else:
            self.positive_radio.setChecked(True)

    # --- window and slices ---------------------------------------------------------------------------

    def _show_window(self) -> None:
        lower, upper = (float(value) for value in self.image_layer.contrast_limits)
        self._updating_window = True
        self.lower_spin.setValue(lower)
        self.upper_spin.setValue(upper)
        self._updating_window = False

    def _contrast_changed(self, _event=None) -> None:
        self._show_window()
        self._reschedule_timer.start()

    def _window_edited(self, _value: float = 0.0) -> None:
        if self._updating_window or self.image_layer is None:
            return
        lower, upper = self.lower_spin.value(), self.upper_spin.value()
        if upper <= lower:
            self.status.show_error(f"The window's upper value {upper:g} must be greater than its lower value "
                                   f"{lower:g}.", notify=False)
            return
        if self.status.is_error:
            self.status.show_message("")
        self.set_window(lower, upper)

    def set_window(self, lower: float, upper: float) -> None:
        """Set the image layer's contrast limits, which are the intensity window of SAM's input."""
        layer = self.image_layer
        range_lower, range_upper = layer.contrast_limits_range
        if lower < range_lower or upper > range_upper:
            layer.contrast_limits_range = (min(lower, range_lower), max(upper, range_upper))
        layer.contrast_limits = (lower, upper)

    def _preset_chosen(self, index: int) -> None:
        from nnsam_engine.annotation.intensity import (
            CT_PRESETS,
            Window,
            percentile_window,
        )

        name = self.preset_combo.itemText(index)
        self.preset_combo.setCurrentIndex(0)
        if self.image_layer is None or index == 0:
            return
        data = np.asarray(self.image_layer.data)
        if name == _PERCENTILE_PRESET:
            window = percentile_window(data)
        elif name == _FULL_RANGE_PRESET:
            finite = data[np.isfinite(data)] if np.issubdtype(data.dtype, np.floating) else data
            lower, upper = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 1.0)
            window = Window(lower, upper if upper > lower else lower + 1.0)
        else:
            window = CT_PRESETS[name]
        self.set_window(window.lower, window.upper)

    def current_window(self):
        """Return the intensity window SAM gets, or None for an 8-bit RGB image."""
        from nnsam_engine.annotation.intensity import Window

        layer = self.image_layer
        if layer.rgb and np.asarray(layer.data[:1, :1]).dtype == np.uint8:
            return None
        lower, upper = (float(value) for value in layer.contrast_limits)
        return Window(lower, upper if upper > lower else lower + 1.0)

    def current_slice(self) -> tuple[int | None, int | None]:
        """Return ``(axis, index)`` of the displayed slice of the image; index is None outside the image."""
        axis = geometry.slicing_axis(self.image_layer, self.viewer.dims)
        return axis, geometry.current_slice(self.image_layer, self.viewer.dims, axis)

    def _update_source(self) -> None:
        """Rebuild the slice source after the image, the window or the displayed axes changed."""
        from nnsam_engine.annotation.embeddings import SliceSource

        if self.image_layer is None or self.service is None:
            return
        if self._propagation is not None:
            # A new source would end the running propagation, so the change waits until it finishes.
            self._reschedule_timer.start()
            return
        try:
            axis, _ = self.current_slice()
        except ValueError as error:
            self.service.set_source(None)
            self.status.show_error(str(error), notify=False)
            self._view_error_shown = True
            return
        if self._view_error_shown:
            self._view_error_shown = False
            self.status.show_message(f"Annotating {self.image_layer.name}.")
        self._axis = axis
        window = self.current_window()
        current = self.service.source
        unchanged = (current is not None and current.image is self.image_layer.data and current.axis == axis
                     and current.window == window and current.weights_id == self.segmenter.weights_id)
        if not unchanged:
            source = SliceSource(self.image_layer.data, axis, window, self.segmenter.weights_id,
                                 rgb=bool(self.image_layer.rgb))
            self.service.set_source(source)
            self._preview_timer.start()
        self._schedule_prefetch()

    def _schedule_prefetch(self) -> None:
        from nnsam_engine.annotation.embeddings import neighbour_order

        source = self.service.source if self.service is not None else None
        if source is None or self._propagation is not None:
            return
        try:
            _, index = self.current_slice()
        except ValueError:
            return
        if index is not None:
            self.service.schedule(neighbour_order(index, source.n_slices, self.prefetch_spin.value()))

    def _view_changed(self, _event=None) -> None:
        if self.image_layer is not None and self.service is not None:
            self._schedule_prefetch()

    def _axes_changed(self, _event=None) -> None:
        if self.image_layer is None:
            return
        # A prompt belongs to the slice it was placed on, which another slicing axis would change, so prompts go.
        # The preview is a mask of the whole volume and stays for review from any axis.
        self._clear_prompts()
        self._update_source()

    # --- prompts and preview -------------------------------------------------------------------------

    def _prompts_changed(self, event=None) -> None:
        # napari sends "adding", "removing" and "changing" before each edit and "added", "removed" and
        # "changed" after it. Predicting at once on the second one, not from a timer, saves one redraw
        # of the viewer before the preview (about 20 ms on a CPU-rendered display).
        action = str(getattr(event, "action", ""))
        if action.endswith(("adding", "removing", "changing")):
            return
        if self.service is not None:
            # While the user places prompts, background embeddings would slow each preview several times over.
            self.service.defer_prefetch(_PROMPTING_PREFETCH_PAUSE_S)
        if action.endswith("added") and getattr(event, "source", None) is self.box_layer:
            self._keep_last_box()
        self.update_preview()

    def _keep_last_box(self) -> None:
        """Remove older rectangles on the displayed slice: SAM takes one box per object."""
        try:
            axis, index = self.current_slice()
        except ValueError:
            return
        on_slice = []
        for position, vertices in enumerate(self.box_layer.data):
            corners = geometry.in_plane(geometry.to_image_data(self.image_layer, self.box_layer, vertices), axis, index)
            if len(corners) == len(vertices):
                on_slice.append(position)
        if len(on_slice) > 1:
            self.box_layer.selected_data = set(on_slice[:-1])
            self.box_layer.remove_selected()

    def prompts_on_slice(self, axis: int | None, index: int):
        """Return ``(points, labels, box)`` on slice ``index`` in (row, column) image indices; each may be empty/None."""
        points, labels = [], []
        for layer, label in ((self.positive_layer, 1), (self.negative_layer, 0)):
            if layer is None or len(layer.data) == 0:
                continue
            on_slice = geometry.in_plane(geometry.to_image_data(self.image_layer, layer, layer.data), axis, index)
            points.append(on_slice)
            labels.append(np.full(len(on_slice), label))
        points = np.concatenate(points) if points else np.empty((0, 2))
        labels = np.concatenate(labels) if labels else np.empty((0,), dtype=int)
        box = None
        if self.box_layer is not None:
            for vertices, shape_type in zip(self.box_layer.data, self.box_layer.shape_type):
                if shape_type != "rectangle":
                    continue
                corners = geometry.in_plane(geometry.to_image_data(self.image_layer, self.box_layer, vertices),
                                            axis, index)
                if len(corners) == len(vertices):
                    box = np.concatenate([corners.min(axis=0), corners.max(axis=0)])
        return points, labels, box

    def update_preview(self) -> None:
        """Predict the mask of the prompts on the displayed slice into the preview layer."""
        if self.image_layer is None or self.preview_layer is None or self.segmenter is None:
            return
        try:
            self._predict_displayed_slice()
        except Exception as error:  # noqa: BLE001 (shown in the widget: a failed preview must not end napari)
            self.status.show_error(error)

    def _predict_displayed_slice(self) -> None:
        try:
            axis, index = self.current_slice()
        except ValueError as error:
            self.status.show_error(str(error), notify=False)
            return
        if index is None:
            return

        points, labels, box = self.prompts_on_slice(axis, index)
        key = geometry.slice_key(axis, index, self.preview_layer.ndim)
        if len(points) == 0 and box is None:
            if index in self._prompted_slices:
                self._prompted_slices.discard(index)
                self.preview_layer.data[key] = 0
                self.preview_layer.refresh()
            return

        embedding = self.service.lookup(index)
        if embedding is None:
            self._waiting_index = index
            self._schedule_prefetch()
            self.service.request(index)
            self.status.show_message(f"Computing the SAM embedding of slice {index}; the preview follows.")
            return

        self._waiting_index = None
        started = time.perf_counter()
        result = self.segmenter.predict(embedding, points if len(points) else None, labels, box)
        self.preview_layer.data[key] = result.mask.astype(np.uint8)
        self.preview_layer.refresh()
        self.last_preview_ms = (time.perf_counter() - started) * 1000
        self._prompted_slices.add(index)

        where = f"slice {index}" if axis is not None else "the image"
        self.status.show_message(
            f"Preview on {where}: {int(result.mask.sum())} pixels, predicted IoU {result.score:.2f}, "
            f"{self.last_preview_ms:.0f} ms. Accept with {_shortcut_text(SHORTCUTS['accept'])}.")

    def _embedding_ready(self, index: int) -> None:
        if index == self._waiting_index:
            self.update_preview()

    def _embedding_failed(self, index: int, error: BaseException) -> None:
        self.status.show_error(f"Computing the SAM embedding of slice {index} failed: {error}")

    # --- accept, clear, next object ------------------------------------------------------------------

    def _geometry_mismatch(self, layer) -> str:
        image = self.image_layer
        return (f"Labels layer {layer.name} (shape {tuple(layer.data.shape)}, scale {tuple(np.round(layer.scale, 6))}, "
                f"translate {tuple(np.round(layer.translate, 6))}) does not lie over image {image.name} (shape "
                f"{geometry.spatial_shape(image)}, scale {tuple(np.round(image.scale, 6))}, translate "
                f"{tuple(np.round(image.translate, 6))}): expected the same shape, scale, translate and affine. "
                "Click 'New' to add a matching Labels layer.")

    def _target_labels(self):
        layer = self.labels_layer()
        if layer is None:
            layer = self.new_labels_layer()
        if layer is not None and not geometry.same_geometry(layer, self.image_layer):
            self.status.show_error(self._geometry_mismatch(layer))
            return None
        return layer

    def accept(self) -> int:
        """Write the preview into the chosen label of the Labels layer as one undoable edit; return the voxel count."""
        if self.image_layer is None:
            self.status.show_error("Choose an image layer to annotate first.")
            return 0
        self._ensure_layers()
        mask = self.preview_layer.data > 0
        if not mask.any():
            self.status.show_message("Nothing to accept: place points or a box to get a preview first.")
            return 0
        labels = self._target_labels()
        if labels is None:
            return 0
        value = self.label_spin.value()
        dtype = labels.data.dtype
        if np.issubdtype(dtype, np.integer) and value > np.iinfo(dtype).max:
            labels.data = labels.data.astype(np.uint16)
        indices = np.nonzero(mask)
        if labels.preserve_labels:
            current = labels.data[indices]
            keep = (current == 0) | (current == value)
            indices = tuple(axis_indices[keep] for axis_indices in indices)
        with labels.block_history():
            labels.data_setitem(indices, value)
        count = len(indices[0])
        slices = len(np.unique(indices[self._axis])) if self._axis is not None and count else 1
        self.clear()
        self.status.show_message(f"Accepted {count} voxels on {slices} slice(s) into label {value} of {labels.name}. "
                                 f"Undo with {_shortcut_text(SHORTCUTS['undo'])}.")
        return count

    def clear(self) -> None:
        """Remove the preview on every slice and all prompts."""
        if self.preview_layer is not None:
            self.preview_layer.data[...] = 0
            self.preview_layer.refresh()
        self._clear_prompts()

    def _clear_prompts(self) -> None:
        self._prompted_slices.clear()
        for layer in (self.positive_layer, self.negative_layer):
            if layer is not None and len(layer.data):
                layer.data = np.empty((0, layer.ndim))
        if self.box_layer is not None and len(self.box_layer.data):
            self.box_layer.data = []
        self._select_prompt_layer()

    def next_object(self) -> None:
        """Accept the preview, if any, and switch to the next unused label value."""
        has_preview = self.preview_layer is not None and self.preview_layer.data.any()
        if has_preview and not self.accept():
            return
        labels = self.labels_layer()
        value = self.label_spin.value()
        if labels is not None and (labels.data == value).any():
            # The current label already marks an object, so the next object gets a value no object uses.
            value = max(int(np.max(labels.data)), value) + 1
        if value > self.label_spin.maximum():
            self.status.show_error(f"No label value is left above {self.label_spin.maximum()}; choose a free value "
                                   "in 'Label value'.")
            return
        self.label_spin.setValue(value)
        self.clear()
        self.status.show_message(f"Next object: label {value}. Place its prompts.")

    def undo(self) -> None:
        """Undo the last edit of the chosen Labels layer, such as an Accept."""
        labels = self.labels_layer()
        if labels is None:
            self.status.show_error("No Labels layer is chosen, so there is nothing to undo.")
            return
        # NOTE: napari 0.9 has no public way to ask whether a Labels layer can undo; _undo_history is its deque.
        history = getattr(labels, "_undo_history", None)
        if history is not None and len(history) == 0:
            self.status.show_message(f"Nothing to undo in {labels.name}.")
            return
        labels.undo()
        self.status.show_message(f"Undid the last edit of {labels.name}.")

    # --- propagation ---------------------------------------------------------------------------------

    def propagate(self) -> None:
        """Segment the neighbouring slices from this slice's preview, or else its accepted mask, into the preview."""
        from nnsam_engine.annotation.propagation import PropagationSettings, propagate

        if self._propagation is not None:
            return
        if self.image_layer is None or self.service is None:
            self.status.show_error("Choose a 3D volume in the Image list first; propagation runs through its slices.")
            return
        self._ensure_layers()
        try:
            axis, index = self.current_slice()
        except ValueError as error:
            self.status.show_error(str(error))
            return
        if axis is None or index is None:
            self.status.show_error("Propagation needs a 3D volume with its displayed slice inside the image.")
            return
        key = geometry.slice_key(axis, index, self.preview_layer.ndim)
        seed = self.preview_layer.data[key] > 0
        labels = self.labels_layer()
        if not seed.any() and labels is not None:
            if not geometry.same_geometry(labels, self.image_layer):
                self.status.show_error(self._geometry_mismatch(labels))
                return
            seed = labels.data[key] == self.label_spin.value()
        if not seed.any():
            self.status.show_error(f"Nothing to propagate on slice {index}: get a preview with prompts, or accept a "
                                   f"mask of label {self.label_spin.value()} on this slice first.")
            return
        self.preview_layer.data[key] = np.maximum(self.preview_layer.data[key], seed.astype(np.uint8))

        settings = PropagationSettings(max_slices=self.max_slices_spin.value(), min_score=self.min_score_spin.value())
        directions = self.direction_combo.currentData()
        n_slices = geometry.spatial_shape(self.image_layer)[axis]
        total = sum((n_slices - 1 - index) if direction > 0 else index for direction in directions)
        if settings.max_slices:
            total = min(total, settings.max_slices * len(directions))
        self.progress_bar.setRange(0, max(total, 1))
        self.progress_bar.setValue(0)
        self.progress_bar.setVisible(True)
        self._cancel_propagation.clear()
        self._stop_reasons = []
        self._propagated_count = 0
        service, segmenter, cancel = self.service, self.segmenter, self._cancel_propagation

        def segment(slice_index, prompt):
            embedding = service.wait(slice_index, cancelled=cancel.is_set)
            if embedding is None:
                return None
            return segmenter.predict(embedding, prompt.points, prompt.labels, prompt.box)

        steps = propagate(seed, index, n_slices, segment, settings, directions)
        self._set_actions_enabled(False)
        self.cancel_button.setEnabled(True)
        self.status.show_message(f"Propagating from slice {index}…")
        self._propagation = run_generator_in_worker(
            steps, on_yield=self._propagated, on_result=lambda _result: None, on_error=self.status.show_error,
            on_finished=self._propagation_finished)

    def _propagated(self, event) -> None:
        from nnsam_engine.annotation.propagation import PropagatedSlice

        if self.preview_layer is None:
            return
        if isinstance(event, PropagatedSlice):
            key = geometry.slice_key(self._axis, event.index, self.preview_layer.ndim)
            self.preview_layer.data[key] = event.mask.astype(np.uint8)
            self.preview_layer.refresh()
            self._propagated_count += 1
            self.progress_bar.setValue(min(self.progress_bar.maximum(), self.progress_bar.value() + 1))
        else:
            direction = "increasing" if event.direction > 0 else "decreasing"
            self._stop_reasons.append(f"{direction} slice index: {event.reason}")

    def _propagation_finished(self) -> None:
        self._propagation = None
        self.progress_bar.setVisible(False)
        self.cancel_button.setEnabled(False)
        self._update_actions()
        if self._propagation_lost_image:
            self._propagation_lost_image = False
            self.status.show_message("Propagation stopped because its image was removed or another image was chosen; "
                                     "its preview was discarded with the image's SAM layers.")
        elif self._cancel_propagation.is_set():
            self.status.show_message(f"Propagation cancelled after {self._propagated_count} slice(s); their masks "
                                     "stay in the preview.")
        elif self._stop_reasons:
            self.status.show_message(
                f"Propagated to {self._propagated_count} slice(s). Stopped at {'; '.join(self._stop_reasons)}. Review "
                f"the preview slice by slice, correct a slice with prompts, then Accept "
                f"({_shortcut_text(SHORTCUTS['accept'])}).")
        self._schedule_prefetch()

    def is_propagating(self) -> bool:
        return self._propagation is not None

    def cancel_propagation(self) -> None:
        """Stop propagation after the slice being segmented; the slices done so far stay in the preview."""
        if self._propagation is not None:
            self._cancel_propagation.set()
            self._propagation.quit()

    # --- embeddings cache ----------------------------------------------------------------------------

    def _memory_limit_changed(self, value: int) -> None:
        if self.cache is not None:
            self.cache.memory_limit_bytes = value * 2**20

    def _disk_cache_toggled(self, checked: bool) -> None:
        from nnsam_engine.annotation.cache import default_disk_folder

        if self.cache is None:
            return
        folder = default_disk_folder() if checked else None
        try:
            self.cache.set_disk_folder(folder)
            if self.status.is_error:
                self.status.show_message(f"Embeddings are kept in {folder} too." if folder else "")
        except OSError as error:
            self.disk_check.setChecked(False)
            self.status.show_error(f"Cannot keep embeddings in {folder}: {error}. Set NNSAM_CACHE_DIR to a writable "
                                   "folder before starting napari; embeddings stay in memory meanwhile.")

    def _show_stats(self) -> None:
        if self.cache is None or self.service is None:
            return
        if self.cache.disk_error is not None and self.disk_check.isChecked():
            self.disk_check.blockSignals(True)
            self.disk_check.setChecked(False)
            self.disk_check.blockSignals(False)
            self.status.show_error(self.cache.disk_error)
        stats = self.cache.stats
        text = (f"{stats.memory_entries} embeddings in memory ({stats.memory_bytes / 2**20:.0f} of "
                f"{self.memory_spin.value()} MiB), {self.service.pending()} waiting, {self.service.computed} "
                f"computed; {stats.memory_hits + stats.disk_hits} cache hits.")
        if self.cache.disk_folder is not None:
            text += f" On disk: {stats.disk_bytes / 2**20:.0f} MiB in {self.cache.disk_folder}."
        self.stats_label.setText(text)

    # --- dataset -------------------------------------------------------------------------------------

    def _dataset_widget(self):
        from ._dataset_widget import DatasetWidget

        for widget in QApplication.allWidgets():
            if isinstance(widget, DatasetWidget) and widget.viewer is self.viewer:
                return widget
        _, widget = self.viewer.window.add_plugin_dock_widget("napari-nnsam", "Dataset")
        return widget

    def add_to_dataset(self) -> None:
        """Hand the image and Labels layer to the Dataset widget's 'Add as training case'."""
        labels = self.labels_layer()
        if self.image_layer is None or labels is None:
            self.status.show_error("Choose the annotated image and its Labels layer first.")
            return
        if self.preview_layer is not None and self.preview_layer.data.any():
            self.status.show_error("The preview has masks that are not accepted yet: Accept "
                                   f"({_shortcut_text(SHORTCUTS['accept'])}) or Clear them first.")
            return
        import hashlib

        signature = (id(self.image_layer), id(labels), hashlib.blake2b(np.ascontiguousarray(labels.data).data,
                                                                       digest_size=16).hexdigest())
        if signature in self._added_to_dataset and not self._confirm(
                f"{labels.name} with {self.image_layer.name} was already handed to the Dataset widget unchanged. "
                "Add it again as another training case?"):
            return
        dataset_widget = self._dataset_widget()
        if dataset_widget not in self._connected_dataset_widgets:
            self._connected_dataset_widgets.add(dataset_widget)
            dataset_widget.case_added.connect(self._case_added_to_dataset)
        # Recorded only when the Dataset widget reports the case as written.
        self._pending_dataset_signature = signature
        dataset_widget.add_layers_as_case(self.image_layer.name, labels.name)
        self.status.show_message("Handed the image and labels to the Dataset widget's 'Add as training case'; its "
                                 "message below the case list says whether the case was added.")

    def _case_added_to_dataset(self, case: str) -> None:
        if self._pending_dataset_signature is not None:
            self._added_to_dataset.add(self._pending_dataset_signature)
            self._pending_dataset_signature = None
            self.status.show_message(f"Added the annotation as training case {case}.")

    def _confirm(self, question: str) -> bool:
        answer = QMessageBox.question(self, "nnSAM SAM annotation", question)
        return answer == QMessageBox.StandardButton.Yes
