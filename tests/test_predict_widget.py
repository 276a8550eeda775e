"""The Predict widget in a real napari viewer, with a tiny 2d nnSAM model trained on a phantom dataset.

The workspace lives in pytest's base temporary folder. When the train widget
tests ran first in the same session, their trained model is reused. Otherwise
it is trained here through the engine (2 epochs of 2 iterations on the CPU).
"""

import sys

import numpy as np
import pytest

from napari_nnsam import _jobs_qt
from napari_nnsam._predict_widget import PredictWidget

DATASET = "Dataset990_Phantom"
TIMEOUT_MS = 300_000


@pytest.fixture(scope="module")
def trained_workspace(tmp_path_factory):
    """Return a workspace with the phantom dataset planned (2d) and 2d nnSAM fold 0 trained with random SAM weights."""
    from nnsam_engine.dataset.locate import resolve_dataset
    from nnsam_engine.dataset.phantom import make_phantom_dataset
    from nnsam_engine.jobs.training_job import TrainingJob, TrainingRequest
    from nnsam_engine.planning.plan import plan_dataset, plans_path
    from nnsam_engine.training.run import fold_folder
    from nnsam_engine.workspace import Workspace

    root = tmp_path_factory.getbasetemp() / "phantom-workspace"
    if not (root / "nnUNet_raw" / DATASET).is_dir():
        make_phantom_dataset(root / "nnUNet_raw", num_cases=6, shape=(8, 32, 32))
    workspace = Workspace.resolve(root)
    dataset = resolve_dataset(DATASET, workspace)
    if not plans_path(workspace, dataset).is_file():
        plan_dataset(dataset, workspace, ["2d"])
    folder = fold_folder(workspace, dataset, "2d_nnsam", 0)
    if not (folder / "checkpoint_final.pth").is_file():
        request = TrainingRequest(DATASET, "2d", "0", epochs=2, iterations_per_epoch=2, validation_iterations=1,
                                  batch_size=2, device="cpu", sam_weights="random", final_validation=False)
        job = TrainingJob(request, workspace, folder)
        job.start()
        try:
            assert job.wait(timeout=900) == 0, job.error_message()
        finally:
            job.kill()
            job.close()
    return root


@pytest.fixture
def predict_widget(trained_workspace, make_napari_viewer, qtbot):
    viewer = make_napari_viewer(show=True)
    widget = PredictWidget(viewer)
    viewer.window.add_dock_widget(widget, name="nnSAM prediction")
    # Set the folder without storing it in the user's QSettings.
    widget.picker.folder_edit.setText(str(trained_workspace))
    widget.picker.refresh(select=DATASET)
    qtbot.waitUntil(lambda: not widget.is_busy(), timeout=120_000)
    # The train widget tests may have left other models (nnU-Net folds, a stopped fold 1).
    widget.model_combo.setCurrentIndex(next(index for index, model in enumerate(widget._models)
                                            if model.configuration == "2d_nnsam"))
    widget.checkpoint_combo.setCurrentIndex(widget.checkpoint_combo.findData("checkpoint_final.pth"))
    widget.fold_combo.setCurrentIndex(widget.fold_combo.findData([0]))
    widget.device_combo.setCurrentText("cpu")
    widget.tta_check.setChecked(False)
    yield widget
    if widget.folder_worker is not None:
        widget.cancel()
    qtbot.waitUntil(lambda: not widget.is_busy() and widget.folder_worker is None, timeout=TIMEOUT_MS)


def add_phantom_image(viewer, workspace, case="phantom_000"):
    from napari_nnsam._geometry import layer_kwargs
    from nnsam_engine.dataset.io import read_image

    path = workspace / "nnUNet_raw" / DATASET / "imagesTr" / f"{case}_0000.nii.gz"
    data, geometry = read_image(path)
    return viewer.add_image(data, **layer_kwargs(geometry, case, str(path)))


def predict_and_wait(widget, qtbot):
    count = len(widget.viewer.layers)
    widget.predict_button.click()
    qtbot.waitUntil(lambda: not widget.is_busy(), timeout=TIMEOUT_MS)
    assert not widget.status.is_error, widget.status.text()
    return list(widget.viewer.layers)[count:]


def assert_same_placement(layer, image):
    assert layer.data.shape == image.data.shape
    np.testing.assert_array_equal(layer.scale, image.scale)
    np.testing.assert_array_equal(layer.translate, image.translate)
    np.testing.assert_array_equal(layer.affine.affine_matrix, image.affine.affine_matrix)
    np.testing.assert_array_equal(layer.rotate, image.rotate)


def test_predict_widget_lists_trained_model(predict_widget):
    widget = predict_widget

    text = widget.model_combo.currentText()

    assert text.startswith("2d_nnsam · nnSAM · fold")
    assert "0 (final" in text
    assert text.endswith("random SAM weights")
    assert widget.checkpoint_combo.itemText(0) == "final"
    assert widget.fold_combo.currentData() == [0]
    assert widget.predict_button.isEnabled()


def test_predict_widget_3d_image(predict_widget, qtbot, trained_workspace, record_path):
    widget = predict_widget
    image = add_phantom_image(widget.viewer, trained_workspace)
    widget.viewer.layers.selection.active = image
    widget.random_sam_check.setChecked(True)
    widget.probabilities_check.setChecked(True)

    labels, probabilities = predict_and_wait(widget, qtbot)

    assert labels.__class__.__name__ == "Labels"
    assert_same_placement(labels, image)
    assert set(np.unique(labels.data)) <= {0, 1, 2}
    assert labels.metadata["nnsam_prediction"]["sam_weights_random"] is True
    assert "random" in widget.status.text().lower()
    assert probabilities.__class__.__name__ == "Image"
    assert_same_placement(probabilities, image)
    assert 0.0 <= probabilities.data.min() <= probabilities.data.max() <= 1.0

    probabilities.visible = False
    labels.opacity = 0.6
    widget.viewer.layers.selection.active = labels
    widget.viewer.window._qt_window.resize(1500, 820)
    widget.viewer.dims.set_point(0, image.translate[0] + 4 * image.scale[0])
    widget.viewer.reset_view()
    qtbot.wait(500)
    widget.viewer.screenshot(str(record_path("docs/images/predict_widget.png")), canvas_only=False)


def test_predict_widget_2d_image(predict_widget, qtbot, trained_workspace):
    widget = predict_widget
    volume = add_phantom_image(widget.viewer, trained_workspace)
    image = widget.viewer.add_image(volume.data[4], name="slice 4", scale=volume.scale[1:],
                                    translate=volume.translate[1:])
    widget.viewer.layers.selection.active = image
    widget.random_sam_check.setChecked(True)

    (labels,) = predict_and_wait(widget, qtbot)

    assert labels.ndim == 2
    assert_same_placement(labels, image)


def test_predict_widget_random_sam_required(predict_widget, qtbot, trained_workspace):
    widget = predict_widget
    widget.viewer.layers.selection.active = add_phantom_image(widget.viewer, trained_workspace)
    widget.random_sam_check.setChecked(False)
    count = len(widget.viewer.layers)

    widget.predict_button.click()
    qtbot.waitUntil(lambda: not widget.is_busy(), timeout=TIMEOUT_MS)

    assert widget.status.is_error
    assert "RANDOM SAM weights" in widget.status.text()
    assert len(widget.viewer.layers) == count


@pytest.mark.parametrize("shape, message", [((2, 8, 32, 32), "takes 1 channel"), ((3, 8, 8, 8, 8), "takes 1 channel")])
def test_predict_widget_rejects_wrong_image_shape(predict_widget, shape, message):
    widget = predict_widget
    widget.viewer.layers.selection.active = widget.viewer.add_image(np.zeros(shape, dtype=np.float32))

    widget.predict_button.click()

    assert widget.status.is_error
    assert message in widget.status.text()
    assert not widget.is_busy()


def test_predict_widget_needs_selected_image(predict_widget):
    widget = predict_widget
    widget.viewer.layers.selection.active = widget.viewer.add_labels(np.zeros((8, 8), dtype=np.uint8))

    widget.predict_button.click()

    assert widget.status.is_error
    assert "Select an Image layer" in widget.status.text()


def test_predict_widget_folder_reaches_total(predict_widget, qtbot, trained_workspace, tmp_path):
    widget = predict_widget
    widget.random_sam_check.setChecked(True)
    widget.input_edit.setText(str(trained_workspace / "nnUNet_raw" / DATASET / "imagesTr"))
    widget.output_edit.setText(str(tmp_path / "predictions"))

    widget.predict_folder_button.click()
    assert widget.cancel_button.isEnabled()
    qtbot.waitUntil(lambda: widget.folder_worker is None, timeout=TIMEOUT_MS)

    assert not widget.status.is_error, widget.status.text()
    assert widget.progress_bar.maximum() == 6
    assert widget.progress_bar.value() == 6
    assert len(list((tmp_path / "predictions").glob("phantom_*.nii.gz"))) == 6
    assert (tmp_path / "predictions" / "nnsam_prediction.json").is_file()
    assert not widget.cancel_button.isEnabled()


def test_predict_widget_folder_cancel(predict_widget, qtbot, trained_workspace, tmp_path):
    widget = predict_widget
    widget.random_sam_check.setChecked(True)
    widget.input_edit.setText(str(trained_workspace / "nnUNet_raw" / DATASET / "imagesTr"))
    output = tmp_path / "predictions"
    widget.output_edit.setText(str(output))

    widget.predict_folder_button.click()
    widget.cancel_button.click()
    qtbot.waitUntil(lambda: widget.folder_worker is None, timeout=TIMEOUT_MS)

    assert "Cancelled" in widget.status.text()
    assert widget.progress_bar.value() < 6
    written = list(output.glob("phantom_*.nii.gz")) if output.is_dir() else []
    assert len(written) < 6
    assert not (output / "nnsam_prediction.json").exists()
    assert not list(output.glob(".partial-*")) if output.is_dir() else True


def test_predict_widget_folder_error_shown(predict_widget, qtbot, tmp_path):
    widget = predict_widget
    widget.random_sam_check.setChecked(True)
    (tmp_path / "images").mkdir()
    (tmp_path / "images" / "scan.nii.gz").write_bytes(b"")
    widget.input_edit.setText(str(tmp_path / "images"))
    widget.output_edit.setText(str(tmp_path / "predictions"))

    widget.predict_folder_button.click()
    qtbot.waitUntil(lambda: widget.folder_worker is None, timeout=TIMEOUT_MS)

    assert widget.status.is_error
    assert "expected a name like <case>_0000.nii.gz" in widget.status.text()


@pytest.mark.parametrize("maps, hidden", [("7f0 r-xp /usr/lib/x86_64-linux-gnu/libLLVM-15.so.1\n", True),
                                          ("7f0 r-xp /usr/lib/x86_64-linux-gnu/libc.so.6\n", False)])
def test_triton_hidden_only_beside_llvm(monkeypatch, maps, hidden):
    # setitem first so that teardown restores the real entry, or its absence.
    monkeypatch.setitem(sys.modules, "triton", None)
    monkeypatch.delitem(sys.modules, "triton")
    monkeypatch.setattr(sys, "platform", "linux")
    monkeypatch.setattr(_jobs_qt.Path, "read_text", lambda self, **kwargs: maps)

    assert _jobs_qt.hide_triton_if_llvm_loaded() is hidden
    assert ("triton" in sys.modules) is hidden
