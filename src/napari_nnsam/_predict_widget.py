"""Dock widget to segment the selected image layer, or a folder of images, with a trained model.

Models are listed by :func:`nnsam_engine.inference.catalog.list_trained_models`.
Loading and predicting run in napari ``thread_worker`` threads. The labels of an
image layer get exactly that layer's scale, translate, rotate, shear and affine,
so they lie over the image. A folder is predicted case by case with
:func:`nnsam_engine.inference.sequential.iter_predict_folder`, and Cancel stops
it between cases.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from qtpy.QtWidgets import (QCheckBox, QComboBox, QFileDialog, QFormLayout, QGroupBox, QHBoxLayout, QLineEdit,
                            QProgressBar, QPushButton, QVBoxLayout, QWidget)

from ._common import WorkspaceDatasetPicker
from ._jobs_qt import (StatusLabel, add_scrolling_content, hide_triton_if_llvm_loaded, run_generator_in_worker,
                       run_in_worker)

_DEVICES = ("cpu", "cuda", "mps")
_MODEL_TOOLTIP = "Trained models of the dataset: configuration, model and the checkpoints of each fold"
_SPATIAL_AXES = {2: "yx", 3: "zyx"}


def _load(settings: dict):
    hide_triton_if_llvm_loaded()
    from nnsam_engine.inference.model import load_model

    return load_model(settings["folder"], settings["folds"], settings["checkpoint"], device=settings["device"],
                      sam_weights=settings["sam_weights"], use_mirroring=settings["mirroring"])


def _predict_image(settings: dict, image: np.ndarray, spacing, origin, direction, axes: str, probabilities: bool):
    model = _load(settings)
    from nnsam_engine.inference.predict import predict_volume

    return predict_volume(model, image, spacing, origin, direction, axes=axes, return_probabilities=probabilities)


def _predict_folder_steps(settings: dict, input_folder: str, output_folder: str):
    model = _load(settings)
    from nnsam_engine.inference.sequential import iter_predict_folder

    yield from iter_predict_folder(model, input_folder, output_folder)


def _best_device() -> str:
    import torch

    if torch.cuda.is_available():
        return "cuda"
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        return "mps"
    return "cpu"


def image_input(layer, num_channels: int) -> dict:
    """Return the ``predict_volume`` arguments for an Image layer and the placement of its labels.

    A single-channel model takes a 2D ``(Y, X)`` or 3D ``(Z, Y, X)`` layer. A model
    with ``C`` channels takes a layer with a leading channel axis of size ``C``.

    Raises
    ------
    ValueError
        For RGB or multiscale layers, or a shape the model cannot take.
    """
    from ._geometry import geometry_from_layer

    if getattr(layer, "rgb", False):
        raise ValueError(f"Layer '{layer.name}' is RGB. Convert it to one grey channel first.")
    if getattr(layer, "multiscale", False):
        raise ValueError(f"Layer '{layer.name}' is multiscale. Predict its full-resolution level instead.")
    data = np.asarray(layer.data)
    channel_axis = num_channels > 1
    spatial = data.ndim - int(channel_axis)
    if spatial not in _SPATIAL_AXES or (channel_axis and data.shape[0] != num_channels):
        expected = "(Y, X) or (Z, Y, X)" if not channel_axis else f"({num_channels}, Z, Y, X) or ({num_channels}, Y, X)"
        raise ValueError(f"Layer '{layer.name}' has shape {data.shape}, but the model takes {num_channels} "
                         f"channel(s), so the expected shape is {expected}.")
    geometry = geometry_from_layer(layer)
    spacing = geometry.spacing[int(channel_axis):]
    # predict_volume returns the origin and direction unchanged, and a layer with a channel axis has no spatial one.
    origin, direction = (None, None) if channel_axis else (geometry.origin, geometry.direction)
    return {"image": data, "spacing": spacing, "origin": origin, "direction": direction,
            "axes": _SPATIAL_AXES[spatial], "placement": layer_placement(layer, drop_first_axis=channel_axis)}


def layer_placement(layer, drop_first_axis: bool = False) -> dict:
    """Return the layer's ``scale``, ``translate``, ``rotate``, ``shear``, ``affine`` and ``units`` as layer arguments.

    ``drop_first_axis`` leaves out a leading channel axis.
    """
    start = int(drop_first_axis)
    ndim = layer.ndim
    shear = np.eye(ndim)
    shear[np.triu_indices(ndim, k=1)] = np.asarray(layer.shear, dtype=float)
    placement = {
        "scale": tuple(np.asarray(layer.scale)[start:]),
        "translate": tuple(np.asarray(layer.translate)[start:]),
        "rotate": np.asarray(layer.rotate)[start:, start:],
        "shear": shear[start:, start:],
        "affine": np.asarray(layer.affine.affine_matrix)[start:, start:],
    }
    if getattr(layer, "units", None) is not None:
        placement["units"] = tuple(layer.units)[start:]
    return placement


class PredictWidget(QWidget):
    """Segment the selected image layer, or a folder of images, with a trained nnSAM or nnU-Net model."""

    def __init__(self, napari_viewer):
        super().__init__()
        self.viewer = napari_viewer
        self.folder_worker = None
        self._models: list = []
        self._workers: set = set()
        self._device_chosen = False
        self._build_layout()
        self.picker.changed.connect(self.refresh_models)
        self.model_combo.currentIndexChanged.connect(self._model_changed)
        self.checkpoint_combo.currentIndexChanged.connect(self._checkpoint_changed)
        self.device_combo.activated.connect(self._device_activated)
        self.refresh_models()
        self._start_worker(_best_device, done=self._device_probed)

    # --- layout --------------------------------------------------------------------------------------

    def _build_layout(self) -> None:
        self.picker = WorkspaceDatasetPicker()
        self.model_combo = QComboBox()
        # Long model descriptions would otherwise widen the dock and shrink the canvas.
        self.model_combo.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
        self.model_combo.setMinimumContentsLength(14)
        refresh = QPushButton("Refresh")
        refresh.clicked.connect(self.refresh_models)
        model_row = QHBoxLayout()
        model_row.addWidget(self.model_combo, 1)
        model_row.addWidget(refresh)
        self.checkpoint_combo = QComboBox()
        self.checkpoint_combo.setToolTip("final: end of training. best: best validation pseudo-Dice. "
                                         "latest: last saved epoch (of a stopped run)")
        self.fold_combo = QComboBox()
        self.fold_combo.setToolTip("Several folds are ensembled, as nnU-Net does")
        self.device_combo = QComboBox()
        self.device_combo.addItems(_DEVICES)
        self.tta_check = QCheckBox("Test-time augmentation (mirroring)")
        self.tta_check.setChecked(True)
        self.tta_check.setToolTip("Average over mirrored copies, as nnU-Net does by default. Slower but more accurate")
        self.random_sam_check = QCheckBox("Random SAM weights (tests and demos only)")
        self.random_sam_check.setToolTip("Only for models trained with random SAM weights. Their labels are not "
                                         "meant for real use")
        self.probabilities_check = QCheckBox("Also add probabilities")
        self.probabilities_check.setToolTip("Adds an image layer with the probability of any foreground class")
        form = QFormLayout()
        form.addRow("Model", model_row)
        form.addRow("Checkpoint", self.checkpoint_combo)
        form.addRow("Folds", self.fold_combo)
        form.addRow("Device", self.device_combo)
        model_box = QGroupBox("Model")
        model_layout = QVBoxLayout(model_box)
        model_layout.addLayout(form)
        for check in (self.tta_check, self.random_sam_check, self.probabilities_check):
            model_layout.addWidget(check)

        self.predict_button = QPushButton("Predict selected image layer")
        self.predict_button.setToolTip("Segment the image layer selected in the layer list and add a Labels layer")
        self.input_edit = QLineEdit()
        self.input_edit.setPlaceholderText("Folder of <case>_0000.nii.gz images")
        self.output_edit = QLineEdit()
        self.output_edit.setPlaceholderText("Folder for the <case>.nii.gz labels")
        folder_form = QFormLayout()
        for label, edit in (("Input folder", self.input_edit), ("Output folder", self.output_edit)):
            row = QHBoxLayout()
            browse = QPushButton("Browse…")
            browse.clicked.connect(lambda _checked=False, target=edit: self._browse(target))
            row.addWidget(edit, 1)
            row.addWidget(browse)
            folder_form.addRow(label, row)
        self.predict_folder_button = QPushButton("Predict folder")
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.setToolTip("Stop after the case being predicted")
        self.progress_bar = QProgressBar()
        self.progress_bar.setFormat("%v/%m cases")
        folder_buttons = QHBoxLayout()
        folder_buttons.addWidget(self.predict_folder_button, 1)
        folder_buttons.addWidget(self.cancel_button)
        folder_box = QGroupBox("Folder of images")
        folder_layout = QVBoxLayout(folder_box)
        folder_layout.addLayout(folder_form)
        folder_layout.addLayout(folder_buttons)
        folder_layout.addWidget(self.progress_bar)

        self.status = StatusLabel("Choose a dataset with a trained model, select an image layer, then press "
                                  "'Predict selected image layer'.")
        layout = add_scrolling_content(self)
        layout.addWidget(self.picker)
        layout.addWidget(model_box)
        layout.addWidget(self.predict_button)
        layout.addWidget(folder_box)
        layout.addWidget(self.status)
        layout.addStretch(1)

        self.predict_button.clicked.connect(self.predict_selected)
        self.predict_folder_button.clicked.connect(self.predict_folder)
        self.cancel_button.clicked.connect(self.cancel)
        self._update_buttons()

    def _browse(self, edit: QLineEdit) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Choose a folder", edit.text())
        if folder:
            edit.setText(folder)

    # --- state ---------------------------------------------------------------------------------------

    def is_busy(self) -> bool:
        return bool(self._workers)

    def _start_worker(self, function, *args, done) -> None:
        def finished():
            self._workers.discard(worker)
            self._update_buttons()

        worker = run_in_worker(function, *args, on_result=done, on_error=self.status.show_error, on_finished=finished)
        self._workers.add(worker)
        self._update_buttons()

    def _update_buttons(self) -> None:
        predicting = self.folder_worker is not None or bool(self._workers)
        has_model = self.model_combo.count() > 0
        self.predict_button.setEnabled(has_model and not predicting)
        self.predict_folder_button.setEnabled(has_model and not predicting)
        self.cancel_button.setEnabled(self.folder_worker is not None)

    def _device_probed(self, device: str) -> None:
        if not self._device_chosen:
            self.device_combo.setCurrentText(device)

    def _device_activated(self, _index: int) -> None:
        self._device_chosen = True

    # --- models --------------------------------------------------------------------------------------

    def refresh_models(self) -> None:
        """List the trained models of the chosen dataset again."""
        from nnsam_engine.inference.catalog import list_trained_models

        name = self.picker.dataset_name()
        self._models = list_trained_models(self.picker.workspace(), name) if name else []
        self.model_combo.clear()
        for model in self._models:
            self.model_combo.addItem(model.describe())
        if name and not self._models:
            self.status.show_message(f"{name} has no trained model yet. Train one in the nnSAM Train widget.")
        self._model_changed()

    def selected_model(self):
        index = self.model_combo.currentIndex()
        return self._models[index] if 0 <= index < len(self._models) else None

    def _model_changed(self, _index: int = 0) -> None:
        from nnsam_engine.inference.catalog import CHECKPOINT_LABELS

        model = self.selected_model()
        self.checkpoint_combo.clear()
        for name in model.checkpoint_names() if model else []:
            self.checkpoint_combo.addItem(CHECKPOINT_LABELS[name], name)
        self.random_sam_check.setEnabled(model is not None and model.kind == "nnsam")
        # The combo may be too narrow for the whole description.
        self.model_combo.setToolTip(f"{model.describe()}\n\n{_MODEL_TOOLTIP}" if model else _MODEL_TOOLTIP)
        self._checkpoint_changed()
        self._update_buttons()

    def _checkpoint_changed(self, _index: int = 0) -> None:
        model, checkpoint = self.selected_model(), self.checkpoint_combo.currentData()
        self.fold_combo.clear()
        if model is None or checkpoint is None:
            return
        folds = model.folds_with(checkpoint)
        if len(folds) > 1:
            self.fold_combo.addItem(f"ensemble of folds {', '.join(map(str, folds))}", None)
        for fold in folds:
            self.fold_combo.addItem(str(fold), [fold])

    def _settings(self) -> dict:
        from nnsam_engine.network.weights import RANDOM

        model = self.selected_model()
        return {"folder": model.folder, "folds": self.fold_combo.currentData(),
                "checkpoint": self.checkpoint_combo.currentData(), "device": self.device_combo.currentText(),
                "sam_weights": RANDOM if self.random_sam_check.isEnabled() and self.random_sam_check.isChecked()
                else None, "mirroring": self.tta_check.isChecked()}

    # --- one image -----------------------------------------------------------------------------------

    def predict_selected(self) -> None:
        """Predict the active Image layer and add the labels (and probabilities) when done."""
        from napari.layers import Image

        layer = self.viewer.layers.selection.active
        model = self.selected_model()
        if model is None:
            self.status.show_error("No trained model chosen. Train one in the nnSAM Train widget, then press Refresh.")
            return
        if not isinstance(layer, Image):
            self.status.show_error("Select an Image layer in the layer list first.")
            return
        try:
            inputs = image_input(layer, max(1, len(model.channel_names)))
        except ValueError as error:
            self.status.show_error(str(error))
            return
        probabilities = self.probabilities_check.isChecked()
        self.status.show_message(f"Predicting '{layer.name}' with {model.configuration}…")
        self._start_worker(_predict_image, self._settings(), inputs["image"], inputs["spacing"], inputs["origin"],
                           inputs["direction"], inputs["axes"], probabilities,
                           done=lambda result: self._add_prediction(layer, inputs["placement"], result))

    def _add_prediction(self, image_layer, placement: dict, prediction) -> None:
        from ._geometry import GEOMETRY_KEY

        metadata = {"nnsam_prediction": prediction.metadata}
        if GEOMETRY_KEY in image_layer.metadata and placement["scale"] == tuple(image_layer.scale):
            metadata[GEOMETRY_KEY] = image_layer.metadata[GEOMETRY_KEY]
        self.labels_layer = self.viewer.add_labels(prediction.labels, name=f"{image_layer.name} nnSAM labels",
                                                   metadata=metadata, **placement)
        if prediction.probabilities is not None:
            foreground = 1.0 - prediction.probabilities[0]
            self.viewer.add_image(foreground.astype(np.float32), name=f"{image_layer.name} foreground probability",
                                  colormap="inferno", blending="additive", contrast_limits=(0.0, 1.0),
                                  metadata={"nnsam_prediction": prediction.metadata}, **placement)
        text = f"Added '{self.labels_layer.name}'. Save it with File > Save Selected Layers."
        if "warning" in prediction.metadata:
            text += f" {prediction.metadata['warning']}"
        self.status.show_message(text)

    # --- a folder ------------------------------------------------------------------------------------

    def predict_folder(self) -> None:
        """Predict every case of the input folder into the output folder, case by case."""
        input_folder, output_folder = self.input_edit.text().strip(), self.output_edit.text().strip()
        if self.selected_model() is None:
            self.status.show_error("No trained model chosen. Train one in the nnSAM Train widget, then press Refresh.")
            return
        if not input_folder or not output_folder:
            self.status.show_error("Choose an input folder of images and an output folder first.")
            return
        if Path(input_folder).resolve() == Path(output_folder).resolve():
            self.status.show_error("Choose an output folder other than the input folder.")
            return
        self.progress_bar.setRange(0, 0)
        self.status.show_message(f"Loading the model and predicting {input_folder}…")
        steps = _predict_folder_steps(self._settings(), input_folder, output_folder)
        self.folder_worker = run_generator_in_worker(steps, on_yield=self._case_done, on_result=self._folder_done,
                                                     on_error=self.status.show_error,
                                                     on_finished=self._folder_finished)
        self.folder_worker.aborted.connect(self._folder_cancelled)
        self._update_buttons()

    def cancel(self) -> None:
        """Stop folder prediction after the case being predicted."""
        if self.folder_worker is not None:
            self.folder_worker.quit()
            self.status.show_message("Cancelling after the current case…")

    def _case_done(self, progress) -> None:
        self.progress_bar.setRange(0, progress.total)
        self.progress_bar.setValue(progress.done)
        self.status.show_message(f"Predicted {progress.case} ({progress.done}/{progress.total}).")

    def _folder_done(self, _result) -> None:
        self.status.show_message(f"Predicted {self.progress_bar.value()} case(s) into {self.output_edit.text()}.")

    def _folder_cancelled(self) -> None:
        self.status.show_message(f"Cancelled after {max(self.progress_bar.value(), 0)} case(s). The finished "
                                 f"cases are in {self.output_edit.text()}.")

    def _folder_finished(self) -> None:
        self.folder_worker = None
        if self.progress_bar.maximum() == 0:
            self.progress_bar.setRange(0, 1)
            self.progress_bar.setValue(0)
        self._update_buttons()
