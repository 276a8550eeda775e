"""Reader, writer, sample data and layer geometry of the napari plugin, in a real viewer."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from napari_nnsam._geometry import GEOMETRY_KEY, geometry_from_attributes, geometry_from_layer, layer_kwargs
from napari_nnsam._reader import get_reader
from napari_nnsam._writer import write_labels
from nnsam_engine.dataset.io import Geometry
from nnsam_engine.dataset.phantom import PHANTOM_SPACING
from nnsam_engine.errors import DatasetError

PLUGIN = "napari-nnsam"
HIPPOCAMPUS_IMAGE = "Dataset004_Hippocampus/imagesTr/hippocampus_001_0000.nii.gz"
HIPPOCAMPUS_LABELS = "Dataset004_Hippocampus/labelsTr/hippocampus_001.nii.gz"
HC18_IMAGE = "Dataset201_HC18/imagesTr/hc18_000_1_0000.png"
HC18_LABELS = "Dataset201_HC18/labelsTr/hc18_000_1.png"
CT_3MM_IMAGE = "Dataset302_TotalSegExamples/imagesTr/ts_ct_3mm_0000.nii.gz"
CT_3MM_LABELS = "Dataset302_TotalSegExamples/labelsTr/ts_ct_3mm.nii.gz"

# A rotation of 30 degrees about z followed by 20 degrees about x, in ITK (x, y, z) order.
_ANGLE_Z, _ANGLE_X = np.radians(30.0), np.radians(20.0)
_ROTATION_Z = np.array([[np.cos(_ANGLE_Z), -np.sin(_ANGLE_Z), 0.0], [np.sin(_ANGLE_Z), np.cos(_ANGLE_Z), 0.0],
                        [0.0, 0.0, 1.0]])
_ROTATION_X = np.array([[1.0, 0.0, 0.0], [0.0, np.cos(_ANGLE_X), -np.sin(_ANGLE_X)],
                        [0.0, np.sin(_ANGLE_X), np.cos(_ANGLE_X)]])
OBLIQUE_DIRECTION = tuple((_ROTATION_X @ _ROTATION_Z).ravel().tolist())

GEOMETRIES = {
    "identity 3D": Geometry((1.0, 1.0, 1.0), (0.0, 0.0, 0.0), tuple(np.eye(3).ravel().tolist())),
    "LPS flips 3D": Geometry((3.0, 0.7, 0.8), (177.9, -11.3, 94.3), (-1.0, 0.0, 0.0, 0.0, -1.0, 0.0, 0.0, 0.0, 1.0)),
    "z flip 3D": Geometry((2.5, 1.0, 0.5), (1.0, 2.0, 3.0), (1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, -1.0)),
    "flip 2D": Geometry((0.25, 0.5), (-3.0, 7.0), (-1.0, 0.0, 0.0, 1.0)),
    "oblique 3D": Geometry((2.0, 0.9, 1.1), (12.5, -40.0, 7.25), OBLIQUE_DIRECTION),
    "oblique 2D": Geometry((0.5, 2.0), (4.0, -1.0), (0.6, -0.8, 0.8, 0.6)),
}


def world_position(image: sitk.Image, index_array_order) -> np.ndarray:
    """Return SimpleITK's physical position of a voxel, in napari's reversed axis order."""
    index_itk = tuple(int(i) for i in reversed(index_array_order))
    return np.asarray(image.TransformIndexToPhysicalPoint(index_itk))[::-1]


def expected_scale_translate(image: sitk.Image) -> tuple[np.ndarray, np.ndarray]:
    """Return the scale and translate an axis-aligned file should get: signed spacing, reversed origin."""
    ndim = image.GetDimension()
    signs = np.sign(np.diag(np.asarray(image.GetDirection()).reshape(ndim, ndim)))
    scale = (signs * np.asarray(image.GetSpacing()))[::-1]
    return scale, np.asarray(image.GetOrigin())[::-1]


def open_layers(viewer, path: Path):
    return viewer.open(str(path), plugin=PLUGIN)


def save_single_layer(viewer, layer, path: Path) -> list[str]:
    viewer.layers.selection.active = layer
    viewer.layers.selection = {layer}
    return viewer.layers.save(str(path), selected=True, plugin=PLUGIN)


# Reader on the real datasets


@pytest.mark.parametrize("relative", [HIPPOCAMPUS_IMAGE, CT_3MM_IMAGE])
def test_reader_volume_geometry(make_napari_viewer, shared_data, relative):
    path = shared_data / relative
    viewer = make_napari_viewer()
    (layer,) = open_layers(viewer, path)
    image = sitk.ReadImage(str(path))
    scale, translate = expected_scale_translate(image)

    assert layer._type_string == "image"
    assert layer.data.shape == sitk.GetArrayViewFromImage(image).shape
    np.testing.assert_array_equal(layer.scale, scale)
    np.testing.assert_array_equal(layer.translate, translate)
    far_corner = np.asarray(layer.data.shape) - 1
    for index in ([0, 0, 0], [2, 3, 4], far_corner):
        np.testing.assert_allclose(layer.data_to_world(index), world_position(image, index), atol=1e-9)


def test_reader_hippocampus_signs(make_napari_viewer, shared_data):
    viewer = make_napari_viewer()
    (layer,) = open_layers(viewer, shared_data / HIPPOCAMPUS_IMAGE)

    # The file's direction is diag(-1, -1, 1) in (x, y, z), so the Y and X scales are negative.
    np.testing.assert_array_equal(layer.scale, [1.0, -1.0, -1.0])
    assert layer.metadata["source_path"] == str(shared_data / HIPPOCAMPUS_IMAGE)
    assert layer.metadata[GEOMETRY_KEY]["direction"] == [-1.0, 0.0, 0.0, 0.0, -1.0, 0.0, 0.0, 0.0, 1.0]


def test_reader_ct_3mm_scale(make_napari_viewer, shared_data):
    viewer = make_napari_viewer()
    (layer,) = open_layers(viewer, shared_data / CT_3MM_IMAGE)

    np.testing.assert_array_equal(np.abs(layer.scale), [3.0, 3.0, 3.0])
    assert layer.data.dtype == np.int16


@pytest.mark.parametrize("relative", [HIPPOCAMPUS_LABELS, CT_3MM_LABELS, HC18_LABELS])
def test_reader_label_files_open_as_labels(make_napari_viewer, shared_data, relative):
    path = shared_data / relative
    viewer = make_napari_viewer()
    (layer,) = open_layers(viewer, path)
    image = sitk.ReadImage(str(path))
    scale, translate = expected_scale_translate(image)

    assert layer._type_string == "labels"
    np.testing.assert_array_equal(layer.data, sitk.GetArrayFromImage(image))
    np.testing.assert_array_equal(layer.scale, scale)
    np.testing.assert_array_equal(layer.translate, translate)


def test_reader_hc18_png_image(make_napari_viewer, shared_data):
    viewer = make_napari_viewer()
    (layer,) = open_layers(viewer, shared_data / HC18_IMAGE)

    assert layer._type_string == "image"
    assert layer.ndim == 2
    assert not layer.rgb
    np.testing.assert_array_equal(layer.scale, [1.0, 1.0])
    np.testing.assert_array_equal(layer.translate, [0.0, 0.0])


def test_reader_labels_overlay_drawn(make_napari_viewer, shared_data):
    # A hidden viewer's screenshot is all black here, so this viewer is shown (under Xvfb in tests).
    viewer = make_napari_viewer(show=True)
    open_layers(viewer, shared_data / HIPPOCAMPUS_IMAGE)
    (labels,) = open_layers(viewer, shared_data / HIPPOCAMPUS_LABELS)
    viewer.dims.set_point(0, labels.data_to_world(np.argwhere(labels.data > 0).mean(axis=0).round())[0])

    with_labels = viewer.screenshot(canvas_only=True, flash=False)
    labels.visible = False
    without_labels = viewer.screenshot(canvas_only=True, flash=False)

    changed = np.any(with_labels[..., :3] != without_labels[..., :3], axis=-1)
    assert without_labels[..., :3].max() > 0
    assert changed.sum() > 50


# Reader rule for labels, on synthetic files


def write_synthetic(path: Path, array: np.ndarray, is_vector: bool = False) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    image = sitk.GetImageFromArray(array, isVector=is_vector)
    sitk.WriteImage(image, str(path))
    return path


LABEL_RULE_CASES = {
    "integer in labelsTr with 300 values": ("labelsTr/case.nii.gz", np.arange(300, dtype=np.int16), "labels"),
    "integer in labelsTs": ("labelsTs/case.nii.gz", np.arange(3, dtype=np.uint8), "labels"),
    "integer with few values": ("results/case.nrrd", np.arange(3, dtype=np.uint8), "labels"),
    "integer with channel suffix": ("results/case_0000.nii.gz", np.arange(3, dtype=np.uint8), "image"),
    "integer with 300 values": ("results/case.mha", np.arange(300, dtype=np.int16), "image"),
    "integer with 255 values": ("results/case.mha", np.arange(255, dtype=np.int32), "labels"),
    "integer with 256 values": ("results/case.mha", np.arange(256, dtype=np.int32), "image"),
    "float with few values in labelsTr": ("labelsTr/case.nii.gz", np.arange(3, dtype=np.float32), "image"),
}


@pytest.mark.parametrize("relative, values, expected", LABEL_RULE_CASES.values(), ids=LABEL_RULE_CASES.keys())
def test_reader_label_rule(tmp_path, relative, values, expected):
    array = np.zeros((2, 20, 20), dtype=values.dtype)
    array.ravel()[: values.size] = values
    path = write_synthetic(tmp_path / relative, array)

    layers = get_reader(str(path))(str(path))

    assert [layer_type for _data, _kwargs, layer_type in layers] == [expected]


def test_reader_rgb_png(tmp_path):
    rgb = np.random.default_rng(0).integers(0, 255, size=(12, 10, 3), dtype=np.uint8)
    path = write_synthetic(tmp_path / "photo.png", rgb, is_vector=True)

    ((data, kwargs, layer_type),) = get_reader(str(path))(str(path))

    assert layer_type == "image"
    assert kwargs["rgb"] is True
    np.testing.assert_array_equal(data, rgb)
    assert kwargs["scale"] == (1.0, 1.0)


def test_reader_vector_components_split(tmp_path):
    vector = np.random.default_rng(0).random((4, 6, 5, 2)).astype(np.float32)
    path = write_synthetic(tmp_path / "field.mha", vector, is_vector=True)

    layers = get_reader(str(path))(str(path))

    assert [kwargs["name"] for _data, kwargs, _type in layers] == ["field [0]", "field [1]"]
    np.testing.assert_array_equal(layers[1][0], vector[..., 1])
    assert layers[0][1]["metadata"] is not layers[1][1]["metadata"]


def test_reader_list_of_paths(tmp_path):
    first = write_synthetic(tmp_path / "a.nrrd", np.zeros((3, 4, 5), dtype=np.uint8))
    second = write_synthetic(tmp_path / "b_0000.nii.gz", np.ones((3, 4, 5), dtype=np.float32))

    layers = get_reader([str(first), str(second)])([str(first), str(second)])

    assert [(kwargs["name"], layer_type) for _data, kwargs, layer_type in layers] == [
        ("a", "labels"), ("b_0000", "image")]


@pytest.mark.parametrize("path", ["notes.txt", "scan.jpg", "scan.nii.bak", ["a.nii.gz", "b.txt"], []])
def test_get_reader_unsupported_returns_none(path):
    assert get_reader(path) is None


def test_get_reader_directory_returns_none(tmp_path):
    folder = tmp_path / "series.nii"
    folder.mkdir()

    assert get_reader(str(folder)) is None


def test_reader_corrupt_file_names_path(tmp_path):
    path = tmp_path / "broken.nii.gz"
    path.write_bytes(b"not a nifti file")

    with pytest.raises(DatasetError, match="broken.nii.gz"):
        get_reader(str(path))(str(path))


# Geometry conversions


@pytest.mark.parametrize("geometry", GEOMETRIES.values(), ids=GEOMETRIES.keys())
def test_geometry_kwargs_round_trip(geometry):
    kwargs = layer_kwargs(geometry, "layer")

    assert geometry_from_attributes(kwargs) == geometry


@pytest.mark.parametrize("geometry", GEOMETRIES.values(), ids=GEOMETRIES.keys())
def test_geometry_round_trip_without_metadata(geometry):
    kwargs = layer_kwargs(geometry, "layer")
    del kwargs["metadata"]

    computed = geometry_from_attributes(kwargs)

    np.testing.assert_allclose(computed.spacing, geometry.spacing, rtol=1e-12)
    np.testing.assert_allclose(computed.origin, geometry.origin, atol=1e-12)
    np.testing.assert_allclose(computed.direction, geometry.direction, atol=1e-12)


# napari warns that it draws a 2D slice of an oblique 3D layer without the out-of-plane rotation.
@pytest.mark.filterwarnings("ignore:Non-orthogonal slicing:UserWarning")
@pytest.mark.parametrize("name", ["oblique 3D", "oblique 2D"])
def test_geometry_oblique_uses_affine(make_napari_viewer, name):
    geometry = GEOMETRIES[name]
    kwargs = layer_kwargs(geometry, "oblique")
    array = np.zeros((5, 6, 7)[-geometry.ndim:], dtype=np.float32)
    reference = sitk.GetImageFromArray(array)
    geometry.to_sitk(reference)
    viewer = make_napari_viewer()
    layer = viewer.add_image(array, **kwargs)

    assert "affine" in kwargs
    np.testing.assert_array_equal(layer.scale, geometry.spacing)
    for index in (np.zeros(geometry.ndim), np.asarray(array.shape) - 1, np.arange(1, geometry.ndim + 1)):
        np.testing.assert_allclose(layer.data_to_world(index), world_position(reference, index), atol=1e-9)
    assert geometry_from_layer(layer) == geometry


def test_geometry_axis_aligned_has_no_affine():
    kwargs = layer_kwargs(GEOMETRIES["LPS flips 3D"], "layer")

    assert "affine" not in kwargs
    assert kwargs["scale"] == (3.0, -0.7, -0.8)
    assert kwargs["translate"] == (94.3, -11.3, 177.9)


def test_geometry_user_negative_scale_flips_direction(make_napari_viewer):
    viewer = make_napari_viewer()
    layer = viewer.add_labels(np.zeros((4, 5, 6), dtype=np.uint8), scale=(-2.0, 0.5, 1.5), translate=(10, -5, 3))

    geometry = geometry_from_layer(layer)

    assert geometry.spacing == (2.0, 0.5, 1.5)
    assert geometry.origin == (3.0, -5.0, 10.0)
    assert geometry.direction == (1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, -1.0)


def test_geometry_changed_layer_ignores_metadata(make_napari_viewer, shared_data):
    viewer = make_napari_viewer()
    (layer,) = open_layers(viewer, shared_data / HIPPOCAMPUS_LABELS)
    layer.translate = (5.0, 6.0, 7.0)

    geometry = geometry_from_layer(layer)

    assert geometry.origin == (7.0, 6.0, 5.0)
    assert geometry.spacing == (1.0, 1.0, 1.0)


def test_geometry_zero_scale_raises():
    with pytest.raises(ValueError, match="non-zero scale"):
        geometry_from_attributes({"scale": [1.0, 0.0, 1.0]})


# Writer


def test_writer_hippocampus_round_trip(make_napari_viewer, shared_data, tmp_path):
    source = shared_data / HIPPOCAMPUS_LABELS
    viewer = make_napari_viewer()
    (layer,) = open_layers(viewer, source)
    target = tmp_path / "hippocampus_001.nii.gz"

    written = save_single_layer(viewer, layer, target)

    assert written == [str(target)]
    original, saved = sitk.ReadImage(str(source)), sitk.ReadImage(str(target))
    np.testing.assert_array_equal(sitk.GetArrayFromImage(saved), sitk.GetArrayFromImage(original))
    assert saved.GetSpacing() == original.GetSpacing()
    assert saved.GetOrigin() == original.GetOrigin()
    assert saved.GetDirection() == original.GetDirection()
    assert saved.GetPixelID() == sitk.sitkUInt8


@pytest.mark.parametrize("ending", [".nii.gz", ".nii", ".nrrd", ".mha"])
def test_writer_negative_scale_round_trip(make_napari_viewer, tmp_path, ending):
    data = np.random.default_rng(1).integers(0, 4, size=(4, 5, 6), dtype=np.uint8)
    viewer = make_napari_viewer()
    layer = viewer.add_labels(data, scale=(-2.0, 0.5, 1.5), translate=(10.0, -5.0, 3.0))
    target = tmp_path / f"flipped{ending}"

    save_single_layer(viewer, layer, target)
    (reread,) = open_layers(viewer, target)

    assert reread._type_string == "labels"
    np.testing.assert_array_equal(reread.data, data)
    np.testing.assert_array_equal(reread.scale, [-2.0, 0.5, 1.5])
    np.testing.assert_array_equal(reread.translate, [10.0, -5.0, 3.0])
    for index in ([0, 0, 0], [3, 4, 5], [1, 2, 3]):
        np.testing.assert_array_equal(reread.data_to_world(index), layer.data_to_world(index))


@pytest.mark.parametrize("ending", [".nrrd", ".mha", ".nii.gz"])
def test_writer_2d_round_trip(make_napari_viewer, tmp_path, ending):
    data = np.zeros((7, 9), dtype=np.uint8)
    data[2:5, 3:8] = 1
    viewer = make_napari_viewer()
    layer = viewer.add_labels(data, scale=(0.25, -0.75), translate=(-3.0, 7.0))
    target = tmp_path / f"slice{ending}"

    save_single_layer(viewer, layer, target)
    (reread,) = open_layers(viewer, target)

    assert reread.ndim == 2
    np.testing.assert_array_equal(reread.data, data)
    np.testing.assert_array_equal(reread.scale, [0.25, -0.75])
    np.testing.assert_array_equal(reread.translate, [-3.0, 7.0])
    np.testing.assert_array_equal(reread.data_to_world([6, 8]), layer.data_to_world([6, 8]))


@pytest.mark.filterwarnings("ignore:Non-orthogonal slicing:UserWarning")
def test_writer_oblique_round_trip(make_napari_viewer, tmp_path):
    geometry = GEOMETRIES["oblique 3D"]
    data = np.random.default_rng(2).integers(0, 3, size=(3, 4, 5), dtype=np.uint8)
    viewer = make_napari_viewer()
    layer = viewer.add_labels(data, **layer_kwargs(geometry, "oblique labels"))
    target = tmp_path / "oblique.nrrd"

    save_single_layer(viewer, layer, target)
    saved = sitk.ReadImage(str(target))

    np.testing.assert_allclose(saved.GetDirection(), geometry.direction, atol=1e-12)
    np.testing.assert_allclose(saved.GetOrigin(), geometry.origin, atol=1e-12)
    np.testing.assert_allclose(saved.GetSpacing(), geometry.spacing[::-1], rtol=1e-12)


@pytest.mark.parametrize("values, dtype", [
    ((0, 255), np.uint8),
    ((0, 256), np.uint16),
    ((0, 70000), np.int32),
    ((-1, 3), np.int32),
])
def test_writer_label_dtype(tmp_path, values, dtype):
    data = np.array(values, dtype=np.int64).reshape(1, 1, 2)
    target = tmp_path / "labels.mha"

    write_labels(str(target), data, {"scale": [1.0, 1.0, 1.0]})

    saved = sitk.GetArrayFromImage(sitk.ReadImage(str(target)))
    assert saved.dtype == dtype
    np.testing.assert_array_equal(saved, data)


def test_writer_unsupported_ending_raises(tmp_path):
    target = tmp_path / "labels.png"

    with pytest.raises(ValueError, match=r"labels\.png.*'\.png'.*\.nii\.gz, \.nii, \.nrrd, \.mha"):
        write_labels(str(target), np.zeros((2, 2), dtype=np.uint8), {"scale": [1.0, 1.0]})
    assert not target.exists()


def test_writer_fractional_values_raise(tmp_path):
    with pytest.raises(ValueError, match="non-integer values"):
        write_labels(str(tmp_path / "labels.nrrd"), np.array([[0.5, 1.0]]), {"scale": [1.0, 1.0]})


def test_writer_scale_length_mismatch_raises(tmp_path):
    with pytest.raises(ValueError, match=r"labels\.nrrd: Layer scale has 2 values but the data has 3"):
        write_labels(str(tmp_path / "labels.nrrd"), np.zeros((2, 2, 2), dtype=np.uint8), {"scale": [1.0, 1.0]})


# Sample data


def test_sample_phantom_layers(make_napari_viewer):
    viewer = make_napari_viewer()

    layers = viewer.open_sample(PLUGIN, "phantom")

    assert [(layer.name, layer._type_string) for layer in layers] == [
        ("phantom", "image"), ("phantom labels", "labels")]
    image, labels = layers
    np.testing.assert_array_equal(image.scale, PHANTOM_SPACING)
    np.testing.assert_array_equal(labels.scale, image.scale)
    np.testing.assert_array_equal(labels.translate, image.translate)
    assert np.any(image.translate != 0)
    assert labels.data.shape == image.data.shape
    assert set(np.unique(labels.data)) == {0, 1, 2}
