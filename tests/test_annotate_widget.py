"""Tests of the SAM annotation dock widget in a real napari viewer (drawn under Xvfb).

Most tests use a threshold stand-in for MobileSAM (tests/_sam_stub.py), whose masks are
known, to check where prompts and masks land. The tests marked "real MobileSAM" run the
real model with random weights, whose masks are meaningless but whose code path is the
one users run.
"""

import numpy as np
import pytest
from _sam_stub import SlowSegmenter, ThresholdSegmenter, ellipsoid
from qtpy.QtCore import Qt

from napari_nnsam._annotate_widget import SHORTCUTS, AnnotationWidget
from nnsam_engine.annotation.segmenter import PromptSegmenter

SHAPE = (16, 40, 50)
CENTRE = (8, 20, 25)
RADII = (5, 8, 12)
WAIT_MS = 60000


@pytest.fixture
def viewer(make_napari_viewer, monkeypatch, tmp_path):
    # The widget starts loading MobileSAM when created; random weights keep that offline and quick.
    monkeypatch.setenv("NNSAM_SAM_WEIGHTS", "random")
    monkeypatch.setenv("NNSAM_CACHE_DIR", str(tmp_path / "cache"))
    return make_napari_viewer(show=True)


def add_blob(viewer, **transform):
    blob = ellipsoid(SHAPE, CENTRE, RADII)
    layer = viewer.add_image(blob.astype(np.float32), name="blob", contrast_limits=(0.0, 1.0), **transform)
    return layer, blob


def make_widget(viewer, qtbot, segmenter=None) -> AnnotationWidget:
    widget = AnnotationWidget(viewer)
    viewer.window.add_dock_widget(widget, name="SAM annotation")
    qtbot.waitUntil(lambda: widget.segmenter is not None, timeout=WAIT_MS)
    if segmenter is not None:
        widget.use_segmenter(segmenter)
    return widget


def click_world(widget: AnnotationWidget, layer, world, positive: bool = True) -> None:
    """Add a prompt point at a world position, as a click in add mode does."""
    points = widget.positive_layer if positive else widget.negative_layer
    points.add(np.asarray(points.world_to_data(np.asarray(world, dtype=float))))


def go_to_slice(viewer, image_layer, index: int, axis: int = 0) -> None:
    """Move the viewer to the world position of slice ``index`` of ``image_layer`` along ``axis``."""
    voxel = np.zeros(3)
    voxel[axis] = index
    world = np.asarray(image_layer.data_to_world(voxel), dtype=float)
    point = list(viewer.dims.point)
    point[axis] = world[axis]
    viewer.dims.point = point


def wait_for_preview(qtbot, widget: AnnotationWidget, index: int, axis: int = 0) -> np.ndarray:
    key = (slice(None),) * axis + (index,)
    qtbot.waitUntil(lambda: widget.preview_layer.data[key].any(), timeout=WAIT_MS)
    return widget.preview_layer.data[key] > 0


@pytest.mark.parametrize("transform", [
    {"scale": (3.0, 0.5, -0.5), "translate": (10.0, -5.0, 3.0)},
    {"scale": (2.0, 0.7, 0.7), "rotate": 30},
], ids=["negative-scale", "rotated"])
def test_point_gives_mask_on_its_slice(viewer, qtbot, transform):
    image, blob = add_blob(viewer, **transform)
    widget = make_widget(viewer, qtbot, ThresholdSegmenter())
    go_to_slice(viewer, image, 6)

    click_world(widget, image, image.data_to_world(np.array([6.0, 20.0, 30.0])))
    mask = wait_for_preview(qtbot, widget, 6)

    assert widget.current_slice() == (0, 6)
    assert np.array_equal(mask, blob[6])
    preview_slices = np.nonzero(widget.preview_layer.data.any(axis=(1, 2)))[0]
    assert preview_slices.tolist() == [6]
    points, labels, box = widget.segmenter.calls[-1]
    np.testing.assert_allclose(points, [[20.0, 30.0]], atol=1e-6)
    assert labels.tolist() == [1]
    assert box is None


def test_point_on_other_axis(viewer, qtbot):
    image, blob = add_blob(viewer, scale=(3.0, 0.5, 0.5))
    widget = make_widget(viewer, qtbot, ThresholdSegmenter())
    viewer.dims.order = (1, 0, 2)  # display axes 0 and 2, slice along axis 1
    go_to_slice(viewer, image, 22, axis=1)

    click_world(widget, image, image.data_to_world(np.array([8.0, 22.0, 25.0])))
    mask = wait_for_preview(qtbot, widget, 22, axis=1)

    assert widget.current_slice() == (1, 22)
    assert np.array_equal(mask, blob[:, 22, :])


def test_axis_change_keeps_preview(viewer, qtbot):
    image, blob = add_blob(viewer)
    widget = make_widget(viewer, qtbot, ThresholdSegmenter())
    go_to_slice(viewer, image, 8)
    click_world(widget, image, image.data_to_world(np.array([8.0, 20.0, 25.0])))
    wait_for_preview(qtbot, widget, 8)

    viewer.dims.order = (1, 0, 2)

    assert widget.current_slice()[0] == 1
    assert len(widget.positive_layer.data) == 0
    assert np.array_equal(widget.preview_layer.data[8] > 0, blob[8])


def test_box_limits_mask(viewer, qtbot):
    image, blob = add_blob(viewer, scale=(3.0, 0.5, 0.5))
    widget = make_widget(viewer, qtbot, ThresholdSegmenter())
    go_to_slice(viewer, image, 8)
    corners = np.array([[8, 10, 10], [8, 10, 25], [8, 30, 25], [8, 30, 10]], dtype=float)

    widget.box_layer.add_rectangles(corners)
    mask = wait_for_preview(qtbot, widget, 8)

    expected = blob[8].copy()
    expected[:, 26:] = False
    assert np.array_equal(mask, expected)
    assert widget.segmenter.calls[-1][2].tolist() == [10.0, 10.0, 30.0, 25.0]


def test_negative_point_is_passed_as_label_0(viewer, qtbot):
    image, _ = add_blob(viewer)
    widget = make_widget(viewer, qtbot, ThresholdSegmenter())
    go_to_slice(viewer, image, 8)

    click_world(widget, image, image.data_to_world(np.array([8.0, 20.0, 25.0])))
    click_world(widget, image, image.data_to_world(np.array([8.0, 2.0, 2.0])), positive=False)
    qtbot.waitUntil(lambda: len(widget.segmenter.calls) and len(widget.segmenter.calls[-1][1]) == 2, timeout=WAIT_MS)

    points, labels, _ = widget.segmenter.calls[-1]
    assert sorted(zip(labels.tolist(), points.tolist())) == [(0, [2.0, 2.0]), (1, [20.0, 25.0])]


def test_accept_clear_and_undo(viewer, qtbot):
    image, blob = add_blob(viewer, scale=(3.0, 0.5, 0.5))
    widget = make_widget(viewer, qtbot, ThresholdSegmenter())
    go_to_slice(viewer, image, 8)
    widget.label_spin.setValue(3)
    click_world(widget, image, image.data_to_world(np.array([8.0, 20.0, 25.0])))
    wait_for_preview(qtbot, widget, 8)

    count = widget.accept()
    labels = widget.labels_layer()

    assert count == int(blob[8].sum())
    assert np.array_equal(labels.data[8] == 3, blob[8])
    assert int(labels.data.sum()) == 3 * count
    assert not widget.preview_layer.data.any()
    assert len(widget.positive_layer.data) == 0
    np.testing.assert_allclose(labels.scale, image.scale)

    widget.undo()
    assert not labels.data.any()
    labels.redo()
    assert int((labels.data == 3).sum()) == count


def test_undo_with_empty_history(viewer, qtbot):
    add_blob(viewer)
    widget = make_widget(viewer, qtbot, ThresholdSegmenter())
    widget.new_labels_layer()

    widget.undo()

    assert "Nothing to undo" in widget.status.text()


def test_clear_removes_preview_and_prompts(viewer, qtbot):
    image, _ = add_blob(viewer)
    widget = make_widget(viewer, qtbot, ThresholdSegmenter())
    go_to_slice(viewer, image, 8)
    click_world(widget, image, image.data_to_world(np.array([8.0, 20.0, 25.0])))
    widget.box_layer.add_rectangles(np.array([[8, 1, 1], [8, 1, 40], [8, 35, 40], [8, 35, 1]], dtype=float))
    wait_for_preview(qtbot, widget, 8)

    widget.clear()

    assert not widget.preview_layer.data.any()
    assert len(widget.positive_layer.data) == 0
    assert len(widget.box_layer.data) == 0
    assert widget.labels_layer() is None


def test_accept_keeps_other_labels_when_preserving(viewer, qtbot):
    image, blob = add_blob(viewer)
    widget = make_widget(viewer, qtbot, ThresholdSegmenter())
    labels = widget.new_labels_layer()
    labels.data[8, :20, :] = 5
    labels.preserve_labels = True
    go_to_slice(viewer, image, 8)
    click_world(widget, image, image.data_to_world(np.array([8.0, 20.0, 25.0])))
    wait_for_preview(qtbot, widget, 8)

    widget.accept()

    assert np.array_equal(labels.data[8, :20, :], np.full((20, 50), 5))
    assert np.array_equal(labels.data[8, 20:, :] == 1, blob[8, 20:, :])


def test_next_object_takes_unused_label(viewer, qtbot):
    image, _ = add_blob(viewer)
    widget = make_widget(viewer, qtbot, ThresholdSegmenter())
    go_to_slice(viewer, image, 8)
    click_world(widget, image, image.data_to_world(np.array([8.0, 20.0, 25.0])))
    wait_for_preview(qtbot, widget, 8)

    widget.next_object()

    assert int(widget.labels_layer().data.max()) == 1
    assert widget.label_spin.value() == 2
    assert len(widget.positive_layer.data) == 0


def test_propagation_stops_at_blob_end(viewer, qtbot):
    image, blob = add_blob(viewer, scale=(3.0, 0.5, -0.5))
    widget = make_widget(viewer, qtbot, ThresholdSegmenter())
    go_to_slice(viewer, image, 8)
    click_world(widget, image, image.data_to_world(np.array([8.0, 20.0, 25.0])))
    wait_for_preview(qtbot, widget, 8)

    widget.propagate()
    qtbot.waitUntil(lambda: not widget.is_propagating(), timeout=WAIT_MS)

    areas = blob.sum(axis=(1, 2))
    expected = [index for index in range(SHAPE[0]) if areas[index] >= 4]
    preview_slices = np.nonzero(widget.preview_layer.data.any(axis=(1, 2)))[0].tolist()
    assert preview_slices == expected
    for index in expected:
        assert np.array_equal(widget.preview_layer.data[index] > 0, blob[index]), index
    assert "object ended" in widget.status.text()

    widget.accept()
    assert np.array_equal(widget.labels_layer().data > 0, blob & (areas >= 4)[:, None, None])


def test_propagation_from_accepted_mask(viewer, qtbot):
    image, blob = add_blob(viewer)
    widget = make_widget(viewer, qtbot, ThresholdSegmenter())
    labels = widget.new_labels_layer()
    labels.data[8] = blob[8]
    go_to_slice(viewer, image, 8)
    widget.direction_combo.setCurrentIndex(1)  # increasing slice index only
    widget.max_slices_spin.setValue(2)

    widget.propagate()
    qtbot.waitUntil(lambda: not widget.is_propagating(), timeout=WAIT_MS)

    preview_slices = np.nonzero(widget.preview_layer.data.any(axis=(1, 2)))[0].tolist()
    assert preview_slices == [8, 9, 10]
    assert "limit of 2 slices" in widget.status.text()


def test_propagation_cancel(viewer, qtbot):
    image, _ = add_blob(viewer)

    widget = make_widget(viewer, qtbot, SlowSegmenter())
    widget.prefetch_spin.setValue(0)
    go_to_slice(viewer, image, 8)
    click_world(widget, image, image.data_to_world(np.array([8.0, 20.0, 25.0])))
    wait_for_preview(qtbot, widget, 8)

    widget.propagate()
    widget.cancel_propagation()
    qtbot.waitUntil(lambda: not widget.is_propagating(), timeout=WAIT_MS)

    assert "cancelled" in widget.status.text()
    assert widget.accept_button.isEnabled()


def test_window_change_gives_new_embeddings(viewer, qtbot):
    image, _ = add_blob(viewer)
    segmenter = ThresholdSegmenter()
    widget = make_widget(viewer, qtbot, segmenter)
    go_to_slice(viewer, image, 8)
    qtbot.waitUntil(lambda: widget.service.lookup(8) is not None, timeout=WAIT_MS)
    old_key = widget.service.source.key(8)

    widget.preset_combo.setCurrentText("CT soft tissue")
    widget.preset_combo.activated.emit(widget.preset_combo.currentIndex())
    qtbot.waitUntil(lambda: widget.service.source.key(8) != old_key, timeout=WAIT_MS)

    assert tuple(image.contrast_limits) == (-160.0, 240.0)
    assert (widget.lower_spin.value(), widget.upper_spin.value()) == (-160.0, 240.0)


def test_shortcuts_are_bound_and_shown(viewer, qtbot):
    add_blob(viewer)
    widget = make_widget(viewer, qtbot, ThresholdSegmenter())
    bound = {str(key) for key in viewer.keymap}

    for key in SHORTCUTS.values():
        assert key.replace("-", "+") in bound
    assert "Shift+S" in widget.accept_button.text()
    assert "Shift+G" in widget.propagate_button.text()

    canvas = viewer.window._qt_viewer.canvas.native
    qtbot.keyClick(canvas, Qt.Key.Key_T, Qt.KeyboardModifier.ShiftModifier)
    assert widget.negative_radio.isChecked()
    assert viewer.layers.selection.active is widget.negative_layer


def test_missing_weights_offer_import(make_napari_viewer, qtbot, monkeypatch, tmp_path):
    monkeypatch.setenv("NNSAM_SAM_WEIGHTS", str(tmp_path / "absent.pt"))
    viewer = make_napari_viewer(show=True)
    widget = AnnotationWidget(viewer)
    viewer.window.add_dock_widget(widget)

    qtbot.waitUntil(lambda: widget.import_button.isVisible(), timeout=WAIT_MS)

    assert "No verified MobileSAM weights" in widget.weights_label.text()
    assert "absent.pt" in widget.weights_label.text()
    assert not widget.accept_button.isEnabled()


def test_real_mobilesam_preview_and_cache(viewer, qtbot):
    """Real MobileSAM: the preview lands on the clicked slice, and a revisited slice is served from the cache."""
    image, _ = add_blob(viewer, scale=(3.0, 0.5, -0.5))
    widget = make_widget(viewer, qtbot)
    assert isinstance(widget.segmenter, PromptSegmenter)
    widget.prefetch_spin.setValue(0)
    go_to_slice(viewer, image, 6)

    click_world(widget, image, image.data_to_world(np.array([6.0, 20.0, 25.0])))
    qtbot.waitUntil(lambda: widget.last_preview_ms is not None, timeout=WAIT_MS)
    computed = widget.service.computed
    preview_slices = set(np.nonzero(widget.preview_layer.data.any(axis=(1, 2)))[0].tolist())

    go_to_slice(viewer, image, 3)
    qtbot.waitUntil(lambda: widget.service.lookup(3) is not None, timeout=WAIT_MS)
    hits_before = widget.cache.stats.memory_hits
    go_to_slice(viewer, image, 6)
    widget.last_preview_ms = None
    widget.update_preview()

    assert preview_slices <= {6}
    assert widget.last_preview_ms is not None
    assert widget.service.computed == computed + 1
    assert widget.cache.stats.memory_hits > hits_before
    assert "random" in widget.weights_label.text()


@pytest.mark.slow
def test_hippocampus_annotation_becomes_training_case(viewer, qtbot, shared_data, tmp_path, record_path):
    """Real MRI volume and real MobileSAM: prompt, propagate, accept, then add the case to a new dataset."""
    from napari_nnsam._dataset_widget import DatasetWidget
    from napari_nnsam._reader import read_layers
    from nnsam_engine.dataset import read_image
    from nnsam_engine.dataset.check import check_dataset

    source = shared_data / "Dataset004_Hippocampus" / "imagesTr" / "hippocampus_001_0000.nii.gz"
    data, kwargs, _ = read_layers(str(source))[0]
    image = viewer.add_image(data, **kwargs)
    widget = make_widget(viewer, qtbot)
    widget.image_combo.setCurrentText(image.name)
    middle = data.shape[0] // 2
    go_to_slice(viewer, image, middle)

    click_world(widget, image, image.data_to_world(np.array([middle, data.shape[1] / 2, data.shape[2] / 2])))
    qtbot.waitUntil(lambda: widget.last_preview_ms is not None, timeout=WAIT_MS)
    assert widget.preview_layer.data[middle].any(), "random MobileSAM gave an empty mask for this seeded input"
    widget.min_score_spin.setValue(0.0)
    widget.max_slices_spin.setValue(2)
    widget.propagate()
    qtbot.waitUntil(lambda: not widget.is_propagating(), timeout=WAIT_MS)
    viewer.window._qt_window.resize(1500, 1000)
    viewer.reset_view()
    qtbot.wait(300)
    viewer.screenshot(str(record_path("docs/images/annotate_widget.png")), canvas_only=False)
    accepted = widget.accept()

    dataset_widget = DatasetWidget(viewer)
    viewer.window.add_dock_widget(dataset_widget, name="nnSAM dataset")
    dataset_widget.picker.folder_edit.setText(str(tmp_path / "workspace"))
    dataset_widget.picker.refresh()
    dataset_widget.new_toggle.click()
    dataset_widget.new_form.name_edit.setText("Annotated")
    dataset_widget.new_form.channels_edit.setText("MRI")
    dataset_widget.new_form.labels_edit.setText("hippocampus")
    dataset_widget.new_form.create_button.click()
    assert "SAM preview" not in [dataset_widget.labels_combo.itemText(i)
                                 for i in range(dataset_widget.labels_combo.count())]
    widget.add_to_dataset()
    qtbot.waitUntil(lambda: not dataset_widget.is_busy(), timeout=WAIT_MS)

    folder = dataset_widget.dataset_folder()
    label_files = sorted((folder / "labelsTr").glob("*.nii.gz"))
    assert accepted > 0
    assert len(label_files) == 1
    saved, geometry = read_image(label_files[0])
    _, source_geometry = read_image(source)
    assert int((saved == 1).sum()) == accepted
    np.testing.assert_allclose(geometry.spacing, source_geometry.spacing, rtol=1e-5)
    np.testing.assert_allclose(geometry.origin, source_geometry.origin, atol=1e-4)
    assert check_dataset(folder).ok


SAM_LAYER_NAMES = ["SAM preview", "SAM box", "SAM negative points", "SAM positive points"]


def sam_layer_names(viewer) -> list[str]:
    return [layer.name for layer in viewer.layers if layer.name.startswith("SAM")]


def test_switching_image_keeps_one_layer_set(viewer, qtbot):
    first, _ = add_blob(viewer)
    widget = make_widget(viewer, qtbot, ThresholdSegmenter())
    second = viewer.add_image(np.zeros((4, 10, 12), dtype=np.float32), name="second")

    widget.image_combo.setCurrentText(second.name)
    widget.image_combo.setCurrentText(first.name)
    viewer.layers.remove(first)

    assert widget.image_layer is second
    assert sorted(sam_layer_names(viewer)) == sorted(SAM_LAYER_NAMES)
    assert widget.positive_layer.name == "SAM positive points"


def test_closing_dock_shuts_widget_down(viewer, qtbot):
    image, _ = add_blob(viewer)
    widget = AnnotationWidget(viewer)
    dock = viewer.window.add_dock_widget(widget, name="SAM annotation")
    qtbot.waitUntil(lambda: widget.segmenter is not None, timeout=WAIT_MS)
    widget.use_segmenter(ThresholdSegmenter())

    viewer.window.remove_dock_widget(dock)
    viewer.layers.remove(image)
    add_blob(viewer)

    assert widget.service is None
    # Only the emptied, hidden box layer stays (see AnnotationWidget._retire_box_layer).
    assert sam_layer_names(viewer) == ["SAM box"]
    assert not viewer.layers["SAM box"].visible
    bound = {str(key) for key in viewer.keymap}
    assert not bound & {key.replace("-", "+") for key in SHORTCUTS.values()}


def test_renamed_labels_layer_stays_chosen(viewer, qtbot):
    image, blob = add_blob(viewer)
    widget = make_widget(viewer, qtbot, ThresholdSegmenter())
    labels = widget.new_labels_layer()
    labels.name = "hippocampus mask"
    go_to_slice(viewer, image, 8)
    click_world(widget, image, image.data_to_world(np.array([8.0, 20.0, 25.0])))
    wait_for_preview(qtbot, widget, 8)

    widget.accept()

    assert widget.labels_combo.currentText() == "hippocampus mask"
    assert np.array_equal(labels.data[8] == 1, blob[8])
    assert [layer.name for layer in viewer.layers if layer.name.endswith("labels")] == []


def test_3d_view_keeps_preview(viewer, qtbot):
    image, blob = add_blob(viewer)
    widget = make_widget(viewer, qtbot, ThresholdSegmenter())
    go_to_slice(viewer, image, 8)
    click_world(widget, image, image.data_to_world(np.array([8.0, 20.0, 25.0])))
    wait_for_preview(qtbot, widget, 8)

    viewer.dims.ndisplay = 3
    assert "switch the viewer to 2D view" in widget.status.text()
    viewer.dims.ndisplay = 2

    assert np.array_equal(widget.preview_layer.data[8] > 0, blob[8])
    assert not widget.status.is_error


def test_new_box_replaces_old_box(viewer, qtbot):
    image, _ = add_blob(viewer)
    widget = make_widget(viewer, qtbot, ThresholdSegmenter())
    go_to_slice(viewer, image, 8)

    widget.box_layer.add_rectangles(np.array([[8, 1, 1], [8, 1, 10], [8, 10, 10], [8, 10, 1]], dtype=float))
    widget.box_layer.add_rectangles(np.array([[8, 12, 14], [8, 12, 30], [8, 28, 30], [8, 28, 14]], dtype=float))
    wait_for_preview(qtbot, widget, 8)

    assert len(widget.box_layer.data) == 1
    assert widget.segmenter.calls[-1][2].tolist() == [12.0, 14.0, 28.0, 30.0]


def test_next_object_keeps_unused_label(viewer, qtbot):
    add_blob(viewer)
    widget = make_widget(viewer, qtbot, ThresholdSegmenter())
    widget.new_labels_layer()

    widget.next_object()

    assert widget.label_spin.value() == 1


def test_unwritable_disk_cache_is_reported(viewer, qtbot, tmp_path, monkeypatch):
    blocker = tmp_path / "not a folder"
    blocker.write_text("a file where the cache folder would be")
    monkeypatch.setenv("NNSAM_CACHE_DIR", str(blocker))
    add_blob(viewer)
    widget = make_widget(viewer, qtbot, ThresholdSegmenter())

    widget.disk_check.setChecked(True)

    assert not widget.disk_check.isChecked()
    assert widget.status.is_error
    assert "Cannot keep embeddings in" in widget.status.text()
    assert widget.cache.disk_folder is None


def test_propagate_rejects_misplaced_labels(viewer, qtbot):
    image, blob = add_blob(viewer)
    widget = make_widget(viewer, qtbot, ThresholdSegmenter())
    misplaced = viewer.add_labels(blob.astype(np.uint8), name="misplaced", scale=(2.0, 1.0, 1.0))
    widget.labels_combo.setCurrentText(misplaced.name)
    go_to_slice(viewer, image, 8)

    widget.propagate()

    assert "does not lie over image" in widget.status.text()
    assert not widget.is_propagating()


def test_deleted_sam_layers_come_back(viewer, qtbot):
    image, blob = add_blob(viewer)
    widget = make_widget(viewer, qtbot, ThresholdSegmenter())
    viewer.layers.remove(widget.preview_layer)
    viewer.layers.remove(widget.positive_layer)
    labels = widget.new_labels_layer()
    labels.data[8] = blob[8]
    go_to_slice(viewer, image, 8)
    widget.max_slices_spin.setValue(1)

    widget.propagate()
    qtbot.waitUntil(lambda: not widget.is_propagating(), timeout=WAIT_MS)

    assert sorted(sam_layer_names(viewer)) == sorted(SAM_LAYER_NAMES)
    assert np.nonzero(widget.preview_layer.data.any(axis=(1, 2)))[0].tolist() == [7, 8, 9]


def test_shortcuts_wait_for_propagation(viewer, qtbot):
    image, _ = add_blob(viewer)

    widget = make_widget(viewer, qtbot, SlowSegmenter())
    go_to_slice(viewer, image, 8)
    click_world(widget, image, image.data_to_world(np.array([8.0, 20.0, 25.0])))
    wait_for_preview(qtbot, widget, 8)

    widget.propagate()
    widget._shortcut_pressed(widget.accept, "accept")
    accepted_early = widget.labels_layer()
    qtbot.waitUntil(lambda: not widget.is_propagating(), timeout=WAIT_MS)

    assert accepted_early is None
    assert widget.preview_layer.data.any()


def test_add_to_dataset_counts_only_written_cases(viewer, qtbot, tmp_path, monkeypatch):
    from napari_nnsam._dataset_widget import DatasetWidget

    _, blob = add_blob(viewer, scale=(2.0, 0.5, 0.5))
    widget = make_widget(viewer, qtbot, ThresholdSegmenter())
    labels = widget.new_labels_layer()
    labels.data[8] = blob[8]
    dataset_widget = DatasetWidget(viewer)
    viewer.window.add_dock_widget(dataset_widget, name="nnSAM dataset")
    dataset_widget.picker.folder_edit.setText(str(tmp_path / "workspace"))
    dataset_widget.picker.refresh()
    questions = []
    monkeypatch.setattr(widget, "_confirm", lambda question: questions.append(question) or False)

    widget.add_to_dataset()
    assert "Choose or create a dataset" in dataset_widget.message_label.text()
    dataset_widget.new_toggle.click()
    dataset_widget.new_form.name_edit.setText("Blob")
    dataset_widget.new_form.channels_edit.setText("MRI")
    dataset_widget.new_form.labels_edit.setText("blob")
    dataset_widget.new_form.create_button.click()
    widget.add_to_dataset()
    qtbot.waitUntil(lambda: "Added the annotation" in widget.status.text(), timeout=WAIT_MS)
    widget.add_to_dataset()

    assert len(questions) == 1
    assert len(list((dataset_widget.dataset_folder() / "labelsTr").iterdir())) == 1
