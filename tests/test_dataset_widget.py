"""Tests of the dataset dock widget in a real napari viewer (drawn under Xvfb)."""

from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from napari.layers import Image, Labels
from napari_nnsam._dataset_dialogs import RemapDialog, split_names
from napari_nnsam._dataset_widget import DatasetWidget
from nnsam_engine.dataset import Geometry, read_image, write_image
from nnsam_engine.dataset.phantom import PHANTOM_SPACING, make_phantom_case

PHANTOM_SHAPE = (8, 32, 32)
PHANTOM_TRANSLATE = (-16.0, -12.8, -12.8)
DATASET = "Dataset501_Phantom"
WAIT_MS = 20000


@pytest.fixture
def widget(make_napari_viewer, qtbot, tmp_path) -> DatasetWidget:
    viewer = make_napari_viewer(show=True)
    widget = DatasetWidget(viewer)
    viewer.window.add_dock_widget(widget, name="nnSAM dataset")
    # The text is set directly so that the test does not store the folder in the user's QSettings.
    widget.picker.folder_edit.setText(str(tmp_path / "workspace"))
    widget.picker.refresh()
    return widget


def create_phantom_dataset(widget: DatasetWidget) -> Path:
    widget.new_toggle.click()
    widget.new_form.name_edit.setText("Phantom")
    widget.new_form.channels_edit.setText("MRI")
    widget.new_form.labels_edit.setText("core, satellite")
    widget.new_form.create_button.click()
    return widget.dataset_folder()


def add_phantom_layers(viewer, seed: int = 0) -> tuple[Image, Labels]:
    image, labels = make_phantom_case(seed, PHANTOM_SHAPE)
    image_layer = viewer.add_image(image, name="phantom", scale=PHANTOM_SPACING, translate=PHANTOM_TRANSLATE)
    labels_layer = viewer.add_labels(labels, name="phantom labels", scale=PHANTOM_SPACING,
                                     translate=PHANTOM_TRANSLATE)
    return image_layer, labels_layer


def click_and_wait(qtbot, widget: DatasetWidget, button) -> None:
    button.click()
    qtbot.waitUntil(lambda: not widget.is_busy(), timeout=WAIT_MS)


def run_check(qtbot, widget: DatasetWidget) -> str:
    click_and_wait(qtbot, widget, widget.check_button)
    qtbot.waitUntil(lambda: widget.report_text.toPlainText().startswith("Dataset check"), timeout=WAIT_MS)
    return widget.report_text.toPlainText()


def table_rows(widget: DatasetWidget) -> list[tuple[str, ...]]:
    table = widget.case_table
    return [tuple(table.item(row, column).text() for column in range(table.columnCount()))
            for row in range(table.rowCount())]


def dataset_files(folder: Path) -> list[str]:
    return sorted(path.relative_to(folder).as_posix() for path in folder.rglob("*"))


def test_split_names_drops_empty():
    assert split_names(" core, satellite ,, ") == ["core", "satellite"]


def test_widget_creates_dataset(widget):
    folder = create_phantom_dataset(widget)

    assert folder == Path(widget.picker.workspace().raw) / DATASET
    assert widget.picker.dataset_name() == DATASET
    assert (folder / "dataset.json").is_file()
    assert not widget.new_form.isVisible()
    assert [widget.layer_form.itemAt(row, widget.layer_form.ItemRole.LabelRole).widget().text()
            for row in range(widget.layer_form.rowCount())] == ["Image (MRI)", "Labels"]


def test_widget_create_invalid_name_shows_error(widget):
    widget.new_toggle.click()
    widget.new_form.name_edit.setText("my phantom")
    widget.new_form.create_button.click()

    assert "Invalid dataset name 'my phantom'" in widget.message_label.text()
    assert widget.picker.dataset_name() == ""


def test_widget_add_cases_check_and_open(widget, qtbot):
    viewer = widget.viewer
    folder = create_phantom_dataset(widget)
    image_layer, labels_layer = add_phantom_layers(viewer)
    assert widget.channel_combos[0].currentText() == "phantom"
    assert widget.labels_combo.currentText() == "phantom labels"

    click_and_wait(qtbot, widget, widget.add_button)
    image_layer.data, labels_layer.data = make_phantom_case(1, PHANTOM_SHAPE)
    click_and_wait(qtbot, widget, widget.add_button)

    assert table_rows(widget) == [("phantom_001", "1", "yes"), ("phantom_002", "1", "yes")]
    assert "Added training case phantom_002" in widget.message_label.text()
    for name in ("imagesTr/phantom_001_0000.nii.gz", "labelsTr/phantom_001.nii.gz", "labelsTr/phantom_002.nii.gz"):
        written = sitk.ReadImage(str(folder / name))
        np.testing.assert_allclose(written.GetSpacing()[::-1], image_layer.scale, rtol=1e-6)
        np.testing.assert_allclose(written.GetOrigin()[::-1], image_layer.translate, rtol=1e-6)

    report = run_check(qtbot, widget)
    assert report.splitlines()[-1] == "0 errors, 0 warnings in 2 cases"
    assert "ready for training" in widget.message_label.text()

    widget.case_table.selectRow(1)
    click_and_wait(qtbot, widget, widget.open_button)
    opened_image, opened_labels = viewer.layers["phantom_002 MRI"], viewer.layers["phantom_002 labels"]
    assert isinstance(opened_labels, Labels)
    assert np.array_equal(opened_image.data, image_layer.data)
    assert np.array_equal(opened_labels.data, labels_layer.data)
    for opened in (opened_image, opened_labels):
        np.testing.assert_allclose(opened.scale, image_layer.scale, rtol=1e-6)
        np.testing.assert_allclose(opened.translate, image_layer.translate, rtol=1e-6)


def test_widget_layer_combos_follow_viewer(widget):
    viewer = widget.viewer
    create_phantom_dataset(widget)
    image_layer, labels_layer = add_phantom_layers(viewer)

    image_layer.name = "renamed"
    assert widget.channel_combos[0].currentText() == "renamed"

    viewer.layers.remove(labels_layer)
    assert widget.labels_combo.count() == 0


def test_widget_add_without_layers_shows_error(widget):
    create_phantom_dataset(widget)

    widget.add_button.click()

    assert "Choose a dataset, an Image layer for each channel and a Labels layer first" in \
        widget.message_label.text()


def test_widget_invalid_add_writes_nothing(widget, qtbot):
    folder = create_phantom_dataset(widget)
    _, labels_layer = add_phantom_layers(widget.viewer)
    labels_layer.data = np.where(labels_layer.data == 2, 5, labels_layer.data).astype(np.uint8)
    before_files = dataset_files(folder)
    before_json = (folder / "dataset.json").read_bytes()

    click_and_wait(qtbot, widget, widget.add_button)

    assert "Labels contain the values [5], which Dataset501_Phantom/dataset.json does not declare" in \
        widget.message_label.text()
    assert widget.message_label.styleSheet() != ""
    assert dataset_files(folder) == before_files
    assert (folder / "dataset.json").read_bytes() == before_json
    assert widget.case_table.rowCount() == 0


def test_widget_geometry_fix_button(widget, qtbot):
    folder = create_phantom_dataset(widget)
    add_phantom_layers(widget.viewer)
    click_and_wait(qtbot, widget, widget.add_button)
    label_path = folder / "labelsTr" / "phantom_001.nii.gz"
    label, geometry = read_image(label_path)
    write_image(label_path, label, Geometry(geometry.spacing, (0.0, 0.0, 0.0), geometry.direction))

    report = run_check(qtbot, widget)
    assert "origin (0, 0, 0) mm differs" in report
    assert widget.fix_box.count() == 1
    fix_button = widget.fix_box.itemAt(0).widget()
    assert fix_button.text() == "Copy image geometry to phantom_001 label"

    click_and_wait(qtbot, widget, fix_button)
    qtbot.waitUntil(lambda: widget.report_text.toPlainText().endswith("0 errors, 0 warnings in 1 case"),
                    timeout=WAIT_MS)

    assert widget.fix_box.count() == 0
    assert widget.message_label.text().startswith("Copied the geometry of phantom_001_0000.nii.gz")
    assert read_image(label_path)[1] == read_image(folder / "imagesTr" / "phantom_001_0000.nii.gz")[1]


def test_widget_remap_fix_button(widget, qtbot, monkeypatch):
    folder = create_phantom_dataset(widget)
    add_phantom_layers(widget.viewer)
    click_and_wait(qtbot, widget, widget.add_button)
    label_path = folder / "labelsTr" / "phantom_001.nii.gz"
    label, geometry = read_image(label_path)
    write_image(label_path, np.where(label == 2, 9, label).astype(np.uint8), geometry)
    report = run_check(qtbot, widget)
    assert "label value 9 is not declared" in report
    fix_button = widget.fix_box.itemAt(0).widget()
    assert fix_button.text() == "Remap label values of phantom_001…"

    def accept_satellite(dialog):
        combo = dialog.combos[9]
        combo.setCurrentIndex(combo.findData(2))
        return RemapDialog.DialogCode.Accepted

    monkeypatch.setattr(RemapDialog, "exec", accept_satellite)
    click_and_wait(qtbot, widget, fix_button)
    qtbot.waitUntil(lambda: widget.report_text.toPlainText().endswith("0 errors, 0 warnings in 1 case"),
                    timeout=WAIT_MS)

    assert np.array_equal(read_image(label_path)[0], label)


def test_remap_dialog_lists_declared_labels(qtbot):
    dialog = RemapDialog("case_001", (7, 9), {"background": 0, "core": 1, "satellite": 2})
    qtbot.addWidget(dialog)

    assert [dialog.combos[7].itemText(index) for index in range(3)] == ["0: background", "1: core", "2: satellite"]
    dialog.combos[9].setCurrentIndex(2)
    assert dialog.mapping() == {7: 0, 9: 2}


def test_widget_real_hippocampus_roundtrip(widget, qtbot, shared_data):
    from napari_nnsam._geometry import layer_kwargs

    source = shared_data / "Dataset004_Hippocampus"
    if not source.is_dir():
        pytest.skip(f"real dataset {source} not found")
    widget.new_toggle.click()
    widget.new_form.name_edit.setText("Hippocampus")
    widget.new_form.channels_edit.setText("MRI")
    widget.new_form.labels_edit.setText("Anterior, Posterior")
    widget.new_form.create_button.click()
    folder = widget.dataset_folder()
    image, geometry = read_image(source / "imagesTr" / "hippocampus_001_0000.nii.gz")
    label, _ = read_image(source / "labelsTr" / "hippocampus_001.nii.gz")
    widget.viewer.add_image(image, **layer_kwargs(geometry, "hippocampus"))
    widget.viewer.add_labels(label, **layer_kwargs(geometry, "hippocampus labels"))

    click_and_wait(qtbot, widget, widget.add_button)

    assert table_rows(widget) == [("hippocampus_001", "1", "yes")]
    written_image, written_geometry = read_image(folder / "imagesTr" / "hippocampus_001_0000.nii.gz")
    assert written_geometry == geometry
    assert np.array_equal(written_image, image)
    assert read_image(folder / "labelsTr" / "hippocampus_001.nii.gz")[1] == geometry
    assert run_check(qtbot, widget).splitlines()[-1] == "0 errors, 0 warnings in 1 case"
