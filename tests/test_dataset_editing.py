"""Tests of creating datasets, adding training cases and the safe fixes, on small synthetic arrays."""

import json
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from nnsam_engine.dataset import Geometry, check_dataset, read_image, write_image
from nnsam_engine.dataset import editing
from nnsam_engine.dataset.editing import (
    add_training_case,
    create_dataset,
    describe_dataset,
    labels_from_names,
    list_cases,
    next_free_dataset_id,
)
from nnsam_engine.dataset.fixes import (
    COPY_GEOMETRY,
    REMAP_LABELS,
    copy_image_geometry_to_label,
    find_safe_fixes,
    remap_label_values,
)
from nnsam_engine.errors import DatasetError, NnsamError

LABELS = {"background": 0, "left": 1, "right": 2}
SHAPES = {3: (4, 8, 8), 2: (8, 8)}
GEOMETRIES = {
    3: Geometry((2.0, 0.5, 0.75), (-10.0, 5.0, 3.0), tuple(np.eye(3).ravel().tolist())),
    2: Geometry((0.5, 0.75), (1.0, 2.0), tuple(np.eye(2).ravel().tolist())),
}


def image_array(shape, seed=0) -> np.ndarray:
    return np.random.default_rng(seed).normal(100.0, 20.0, size=shape).astype(np.float32)


def label_array(shape) -> np.ndarray:
    label = np.zeros(shape, dtype=np.int32)
    label[..., 1:4, 1:4] = 1
    label[..., 5:7, 5:7] = 2
    return label


def read_json(folder: Path) -> dict:
    return json.loads((folder / "dataset.json").read_text(encoding="utf-8"))


def folder_contents(folder: Path) -> list[str]:
    return sorted(path.relative_to(folder).as_posix() for path in folder.rglob("*"))


@pytest.fixture
def dataset(tmp_path) -> Path:
    return create_dataset(tmp_path, 501, "Liver", ["CT"], LABELS)


def add_case(folder: Path, ndim: int = 3, seed: int = 0, **kwargs) -> str:
    shape = SHAPES[ndim]
    return add_training_case(folder, [image_array(shape, seed)], label_array(shape), GEOMETRIES[ndim], **kwargs)


# --- create_dataset ---------------------------------------------------------------------------------


def test_create_dataset_writes_layout(tmp_path):
    folder = create_dataset(tmp_path / "raw", 7, "Brain-MR_2", ["T1", "T2"], LABELS, file_ending=".nrrd")

    assert folder == tmp_path / "raw" / "Dataset007_Brain-MR_2"
    assert (folder / "imagesTr").is_dir()
    assert (folder / "labelsTr").is_dir()
    assert read_json(folder) == {
        "name": "Brain-MR_2",
        "channel_names": {"0": "T1", "1": "T2"},
        "labels": LABELS,
        "numTraining": 0,
        "file_ending": ".nrrd",
    }


def test_create_dataset_only_lacks_cases(dataset):
    report = check_dataset(dataset)

    # An empty dataset is only missing its cases.
    assert len(report.errors) == 1, report.format()
    assert "no image files" in report.errors[0].found


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ({"dataset_id": 501}, r"Dataset ID 501 is already used by Dataset501_Liver .* choose a free ID such as 1\."),
        ({"dataset_id": 0}, r"Invalid dataset ID 0; expected an integer from 1 to 999\. Use 1"),
        ({"dataset_id": 1000}, r"Invalid dataset ID 1000"),
        ({"name": "My Liver"}, r"Invalid dataset name 'My Liver'; .* Use for example 'MyLiver'\."),
        ({"name": ""}, r"Invalid dataset name ''; .* Use for example 'MyData'\."),
        ({"channel_names": []}, r"Invalid channel names \[\]; expected one non-empty name per input channel"),
        ({"channel_names": ["CT", " "]}, r"Invalid channel names"),
        ({"labels": {"tumor": 1}}, r"have no background 0; .* Add \"background\": 0"),
        ({"labels": {"background": 1, "tumor": 0}}, r"have no background 0"),
        ({"labels": {"background": 0, "a": 1, "b": 1}}, r"use the values \[1\] more than once; .* own value\."),
        ({"labels": {"background": 0, "a": 2}}, r"Label values \[0, 2\] are not consecutive; expected 0 to 1"),
        ({"labels": {"background": 0, "a": True}}, r"Invalid label 'a': True; expected a non-empty name"),
        ({"labels": {"background": 0}}, r"have no foreground label; .* Add the structures to segment\."),
        ({"file_ending": ".png"}, r"Unsupported file ending '\.png' for a new dataset; .* Use '\.nii\.gz'\."),
        ({"file_ending": ".mhd"}, r"Unsupported file ending '\.mhd'"),
    ],
)
def test_create_dataset_rejects_invalid_arguments(dataset, arguments, message):
    values = {"dataset_id": 502, "name": "Other", "channel_names": ["CT"], "labels": LABELS}
    values.update(arguments)
    before = folder_contents(dataset.parent)

    with pytest.raises(DatasetError, match=message):
        create_dataset(dataset.parent, file_ending=arguments.get("file_ending", ".nii.gz"),
                       **{key: value for key, value in values.items() if key != "file_ending"})

    assert folder_contents(dataset.parent) == before


def test_next_free_dataset_id_skips_used(tmp_path):
    assert next_free_dataset_id(tmp_path / "missing") == 1
    create_dataset(tmp_path, 1, "A", ["CT"], LABELS)
    create_dataset(tmp_path, 2, "B", ["CT"], LABELS)

    assert next_free_dataset_id(tmp_path) == 3
    assert next_free_dataset_id(tmp_path, start=500) == 500


def test_labels_from_names_implies_background():
    assert labels_from_names(["liver", "tumor"]) == {"background": 0, "liver": 1, "tumor": 2}
    assert labels_from_names(["background", "liver"]) == {"background": 0, "liver": 1}


def test_labels_from_names_rejects_repeated_name():
    with pytest.raises(DatasetError, match=r"Label name 'liver' occurs twice in \['liver', 'liver'\]"):
        labels_from_names(["liver", "liver"])


def test_describe_dataset_reads_json(dataset):
    description = describe_dataset(dataset)

    assert description.channel_names == ("CT",)
    assert description.labels == LABELS
    assert description.file_ending == ".nii.gz"


def test_describe_dataset_invalid_json_names_fix(dataset):
    (dataset / "dataset.json").write_text("{", encoding="utf-8")

    with pytest.raises(DatasetError, match=r"dataset.json of .*Dataset501_Liver is missing or invalid: .*invalid JSON"):
        describe_dataset(dataset)


# --- add_training_case ------------------------------------------------------------------------------


@pytest.mark.parametrize("ndim", [3, 2])
def test_add_training_case_passes_check(dataset, ndim):
    first = add_case(dataset, ndim, seed=1)
    second = add_case(dataset, ndim, seed=2)

    assert (first, second) == ("liver_001", "liver_002")
    assert read_json(dataset)["numTraining"] == 2
    report = check_dataset(dataset)
    assert report.problems == [], report.format()
    assert report.ndim == ndim
    assert report.num_cases == 2


@pytest.mark.parametrize("ndim", [3, 2])
def test_add_training_case_keeps_geometry_and_values(dataset, ndim):
    shape = SHAPES[ndim]
    image = image_array(shape)
    case = add_training_case(dataset, [image], label_array(shape), GEOMETRIES[ndim])

    written_image, image_geometry = read_image(dataset / "imagesTr" / f"{case}_0000.nii.gz")
    written_label, label_geometry = read_image(dataset / "labelsTr" / f"{case}.nii.gz")
    assert np.array_equal(written_image, image)
    assert np.array_equal(written_label, label_array(shape))
    assert written_label.dtype == np.uint8
    np.testing.assert_allclose(image_geometry.spacing, GEOMETRIES[ndim].spacing, rtol=1e-6)
    np.testing.assert_allclose(image_geometry.origin, GEOMETRIES[ndim].origin, rtol=1e-6)
    assert label_geometry == image_geometry


def test_add_training_case_sitk_spacing(dataset):
    case = add_case(dataset)

    image = sitk.ReadImage(str(dataset / "imagesTr" / f"{case}_0000.nii.gz"))

    # SimpleITK reports spacing in (x, y, z) order, the reverse of the array axes.
    np.testing.assert_allclose(image.GetSpacing(), (0.75, 0.5, 2.0), rtol=1e-6)


def test_add_training_case_two_channels(tmp_path):
    folder = create_dataset(tmp_path, 3, "Prostate", ["T2", "ADC"], LABELS, file_ending=".mha")
    shape = SHAPES[3]

    case = add_training_case(folder, [image_array(shape, 1), image_array(shape, 2)], label_array(shape),
                             GEOMETRIES[3], case_name="patient-7")

    assert case == "patient-7"
    assert (folder / "imagesTr" / "patient-7_0001.mha").is_file()
    assert check_dataset(folder).problems == []


def test_add_training_case_next_number_after_highest(dataset):
    add_case(dataset, case_name="liver_010")
    add_case(dataset, case_name="other")

    assert add_case(dataset) == "liver_011"


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"images": image_array(SHAPES[3])}, r"must be a list with one array per channel, got ndarray; pass \[image\]"),
        ({"images": [image_array(SHAPES[3])] * 2},
         r"Dataset501_Liver has 1 channel\(s\) in dataset.json but 2 images were given"),
        ({"labels": np.zeros((4, 8, 7), np.uint8)},
         r"Labels have shape \(4, 8, 7\) but the images have shape \(4, 8, 8\); draw the labels on the image grid"),
        ({"labels": np.full((4, 8, 8), 5, np.uint8)},
         r"Labels contain the values \[5\], which Dataset501_Liver/dataset.json does not declare "
         r"\(declared: \[0, 1, 2\]\); paint those voxels with a declared value, or add the labels"),
        ({"labels": np.full((4, 8, 8), 0.5)}, r"non-integer values such as \[0.5\]"),
        ({"geometry": GEOMETRIES[2]}, r"Image of channel 0 has shape \(4, 8, 8\); expected a 2D or 3D array with 2"),
        ({"case_name": "../escape"}, r"Invalid case name '../escape'"),
        ({"case_name": "liver_001"}, r"Case liver_001 already exists in Dataset501_Liver \(liver_001_0000.nii.gz\)"),
    ],
)
def test_add_training_case_rejects_invalid_input(dataset, change, message):
    add_case(dataset)
    arguments = {"images": [image_array(SHAPES[3])], "labels": label_array(SHAPES[3]), "geometry": GEOMETRIES[3]}
    arguments.update(change)
    before_files = folder_contents(dataset)
    before_json = (dataset / "dataset.json").read_bytes()

    with pytest.raises(DatasetError, match=message):
        add_training_case(dataset, **arguments)

    assert folder_contents(dataset) == before_files
    assert (dataset / "dataset.json").read_bytes() == before_json


def test_add_training_case_rejects_other_dimensionality(dataset):
    add_case(dataset, ndim=3)

    with pytest.raises(DatasetError, match=r"The new case is 2D but the cases of Dataset501_Liver are 3D"):
        add_case(dataset, ndim=2)


@pytest.mark.parametrize("failing_file", ["label", "image"])
def test_add_training_case_failure_leaves_nothing(dataset, monkeypatch, failing_file):
    add_case(dataset)
    before_files = folder_contents(dataset)
    before_json = (dataset / "dataset.json").read_bytes()
    original = editing.write_image

    def failing_write(path, array, geometry):
        is_label = Path(path).parent.name == "labelsTr"
        if is_label == (failing_file == "label"):
            raise OSError("disk full")
        original(path, array, geometry)

    monkeypatch.setattr(editing, "write_image", failing_write)

    with pytest.raises(OSError, match="disk full"):
        add_case(dataset)

    assert folder_contents(dataset) == before_files
    assert (dataset / "dataset.json").read_bytes() == before_json


def test_add_training_case_json_failure_removes_files(dataset, monkeypatch):
    add_case(dataset)
    before_files = folder_contents(dataset)
    before_json = (dataset / "dataset.json").read_bytes()

    def failing_json(path, data):
        raise OSError("read-only file system")

    monkeypatch.setattr(editing, "write_json_atomic", failing_json)

    with pytest.raises(OSError, match="read-only"):
        add_case(dataset)

    assert folder_contents(dataset) == before_files
    assert (dataset / "dataset.json").read_bytes() == before_json


def test_dataset_error_is_nnsam_error():
    assert issubclass(DatasetError, NnsamError)


# --- list_cases -------------------------------------------------------------------------------------


def test_list_cases_marks_unlabelled_and_test(dataset):
    add_case(dataset)
    write_image(dataset / "imagesTr" / "extra_0000.nii.gz", image_array(SHAPES[3]), GEOMETRIES[3])
    write_image(dataset / "imagesTs" / "unseen_0000.nii.gz", image_array(SHAPES[3]), GEOMETRIES[3])

    cases = list_cases(dataset, include_test=True)

    assert [(case.case, case.labelled, case.is_test) for case in cases] == [
        ("extra", False, False), ("liver_001", True, False), ("unseen", False, True)]
    assert cases[1].channel_files == (dataset / "imagesTr" / "liver_001_0000.nii.gz",)
    assert cases[1].label_file == dataset / "labelsTr" / "liver_001.nii.gz"
    assert [case.case for case in list_cases(dataset)] == ["extra", "liver_001"]


# --- safe fixes -------------------------------------------------------------------------------------


def test_copy_image_geometry_fixes_origin_warning(dataset):
    case = add_case(dataset)
    label_path = dataset / "labelsTr" / f"{case}.nii.gz"
    label, geometry = read_image(label_path)
    write_image(label_path, label, Geometry(geometry.spacing, (0.0, 0.0, 0.0), geometry.direction))
    report = check_dataset(dataset)
    assert [problem.found.split()[0] for problem in report.problems] == ["origin"], report.format()

    fixes = find_safe_fixes(dataset, report)
    assert [(fix.kind, fix.case, fix.title) for fix in fixes] == [
        (COPY_GEOMETRY, case, "Copy image geometry to liver_001 label")]

    description = copy_image_geometry_to_label(dataset, case)

    assert description == ("Copied the geometry of liver_001_0000.nii.gz to labelsTr/liver_001.nii.gz: "
                           "origin (0, 0, 0) -> (-10, 5, 3) mm.")
    assert check_dataset(dataset).problems == []
    assert np.array_equal(read_image(label_path)[0], label)


def test_copy_image_geometry_fixes_spacing_error(dataset):
    case = add_case(dataset)
    label_path = dataset / "labelsTr" / f"{case}.nii.gz"
    label, geometry = read_image(label_path)
    write_image(label_path, label, Geometry((1.0, 1.0, 1.0), geometry.origin, geometry.direction))
    assert not check_dataset(dataset).ok

    assert [fix.kind for fix in find_safe_fixes(dataset, check_dataset(dataset))] == [COPY_GEOMETRY]
    copy_image_geometry_to_label(dataset, case)

    assert check_dataset(dataset).problems == []


def test_copy_image_geometry_same_geometry_changes_nothing(dataset):
    case = add_case(dataset)

    assert copy_image_geometry_to_label(dataset, case).endswith("nothing changed.")


def test_copy_image_geometry_rejects_other_shape(dataset):
    case = add_case(dataset)
    write_image(dataset / "labelsTr" / f"{case}.nii.gz", np.zeros((4, 8, 6), np.uint8), GEOMETRIES[3])

    assert find_safe_fixes(dataset, check_dataset(dataset)) == []
    with pytest.raises(DatasetError, match=r"has shape \(4, 8, 6\) but image liver_001_0000.nii.gz has shape "
                                           r"\(4, 8, 8\); copying the geometry needs equal shapes\. Resample"):
        copy_image_geometry_to_label(dataset, case)


def test_copy_image_geometry_missing_case(dataset):
    with pytest.raises(DatasetError, match=r"File .*liver_404_0000.nii.gz of case liver_404 not found"):
        copy_image_geometry_to_label(dataset, "liver_404")


def test_remap_label_values_fixes_undeclared(dataset):
    case = add_case(dataset)
    label_path = dataset / "labelsTr" / f"{case}.nii.gz"
    label, geometry = read_image(label_path)
    label[label == 2] = 7
    write_image(label_path, label, geometry)
    report = check_dataset(dataset)
    assert "label value 7 is not declared" in report.errors[0].found, report.format()

    fixes = find_safe_fixes(dataset, report)
    assert [(fix.kind, fix.undeclared_values) for fix in fixes] == [(REMAP_LABELS, (7,))]

    description = remap_label_values(dataset, case, {7: 2})

    assert description == "Remapped the values of labelsTr/liver_001.nii.gz: 7 -> 2."
    assert check_dataset(dataset).problems == []
    assert np.array_equal(read_image(label_path)[0], label_array(SHAPES[3]))
    assert read_image(label_path)[1] == geometry


def test_remap_label_values_swaps_at_once(dataset):
    case = add_case(dataset)

    remap_label_values(dataset, case, {1: 2, 2: 1})

    expected = label_array(SHAPES[3])
    expected[label_array(SHAPES[3]) == 1] = 2
    expected[label_array(SHAPES[3]) == 2] = 1
    assert np.array_equal(read_image(dataset / "labelsTr" / f"{case}.nii.gz")[0], expected)


def test_remap_label_values_rejects_undeclared_target(dataset):
    case = add_case(dataset)
    before = (dataset / "labelsTr" / f"{case}.nii.gz").read_bytes()

    with pytest.raises(DatasetError, match=r"Cannot remap the label of case liver_001 to \[3\], which dataset.json "
                                           r"does not declare \(declared: \[0, 1, 2\]\)"):
        remap_label_values(dataset, case, {1: 3})

    assert (dataset / "labelsTr" / f"{case}.nii.gz").read_bytes() == before


def test_remap_label_values_rejects_absent_source(dataset):
    case = add_case(dataset)

    with pytest.raises(DatasetError, match=r"has no voxels with the values \[6\] \(found: \[0, 1, 2\]\)"):
        remap_label_values(dataset, case, {6: 1})


def test_remap_label_values_reports_remaining(dataset):
    case = add_case(dataset)
    label_path = dataset / "labelsTr" / f"{case}.nii.gz"
    label, geometry = read_image(label_path)
    label[0, 0, 0], label[0, 0, 1] = 8, 9
    write_image(label_path, label, geometry)

    assert remap_label_values(dataset, case, {8: 1}).endswith("Values [9] are still undeclared.")


def test_find_safe_fixes_valid_dataset_is_empty(dataset):
    add_case(dataset)

    assert find_safe_fixes(dataset, check_dataset(dataset)) == []


# --- real data, read in place -----------------------------------------------------------------------


def real_dataset(shared_data: Path, name: str) -> Path:
    folder = shared_data / name
    if not folder.is_dir():
        pytest.skip(f"real dataset {folder} not found")
    return folder


def test_real_hippocampus_list_cases(shared_data):
    folder = real_dataset(shared_data, "Dataset004_Hippocampus")

    cases = list_cases(folder)
    description = describe_dataset(folder)

    assert len(cases) == 200
    assert all(case.labelled for case in cases)
    assert cases[0].case == "hippocampus_001"
    assert description.channel_names == ("MRI",)
    assert description.labels == {"background": 0, "Anterior": 1, "Posterior": 2}


def test_real_hippocampus_case_copied_exactly(shared_data, tmp_path):
    source = real_dataset(shared_data, "Dataset004_Hippocampus")
    target = create_dataset(tmp_path, 504, "Hippocampus", ["MRI"], {"background": 0, "Anterior": 1, "Posterior": 2})

    for case in ("hippocampus_001", "hippocampus_003"):
        image, geometry = read_image(source / "imagesTr" / f"{case}_0000.nii.gz")
        label, _ = read_image(source / "labelsTr" / f"{case}.nii.gz")
        assert add_training_case(target, [image], label, geometry, case_name=case) == case

    report = check_dataset(target)
    assert report.problems == [], report.format()
    copied_image, copied_geometry = read_image(target / "imagesTr" / "hippocampus_003_0000.nii.gz")
    original_image, original_geometry = read_image(source / "imagesTr" / "hippocampus_003_0000.nii.gz")
    assert np.array_equal(copied_image, original_image)
    assert copied_geometry == original_geometry
    assert np.array_equal(read_image(target / "labelsTr" / "hippocampus_003.nii.gz")[0],
                          read_image(source / "labelsTr" / "hippocampus_003.nii.gz")[0])


def test_real_hc18_png_added_as_2d(shared_data, tmp_path):
    source = real_dataset(shared_data, "Dataset201_HC18")
    target = create_dataset(tmp_path, 505, "HC18", ["US"], {"background": 0, "fetal_head": 1})
    image, geometry = read_image(source / "imagesTr" / "hc18_000_1_0000.png")
    label, _ = read_image(source / "labelsTr" / "hc18_000_1.png")

    add_training_case(target, [image], label, geometry)

    report = check_dataset(target)
    assert report.problems == [], report.format()
    assert report.ndim == 2
    assert np.array_equal(read_image(target / "imagesTr" / "hc18_001_0000.nii.gz")[0], image)
