"""Tests of the raw dataset check on small synthetic datasets and on real data.

Each synthetic test writes a valid dataset with ``make_dataset``, breaks exactly
one thing, and pins the problem that the check reports for it.
"""

import json
import logging
import re
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from nnsam_engine.dataset import CheckReport, Problem, check_dataset, require_valid_dataset
from nnsam_engine.errors import DatasetCheckError

SHAPE_3D = (4, 8, 8)
SHAPE_2D = (8, 8)
SPACING_3D = (2.0, 1.0, 1.0)
LABELS = {"background": 0, "left": 1, "right": 2}
CASES = ("case_000", "case_001", "case_002")
#: Endings for which ``make_dataset`` writes 2D uint8 images instead of 3D float volumes.
ENDINGS_2D = (".png", ".tif", ".tiff")


# --- builders -------------------------------------------------------------------------------------


def write_sitk(path: Path, array: np.ndarray, spacing=None, origin=None, direction=None, vector=False) -> None:
    """Write ``array`` (array axis order) with SimpleITK; spacing is given in array axis order too."""
    image = sitk.GetImageFromArray(array, isVector=vector)
    if spacing is not None:
        image.SetSpacing(tuple(float(value) for value in reversed(spacing)))
    if origin is not None:
        image.SetOrigin(origin)
    if direction is not None:
        image.SetDirection(direction)
    path.parent.mkdir(parents=True, exist_ok=True)
    sitk.WriteImage(image, str(path))


def image_array(shape, seed: int, ending: str) -> np.ndarray:
    rng = np.random.default_rng(seed)
    if ending in ENDINGS_2D:
        return rng.integers(0, 256, size=shape, dtype=np.uint8)
    return rng.normal(100.0, 20.0, size=shape).astype(np.float32)


def label_array(shape) -> np.ndarray:
    label = np.zeros(shape, dtype=np.uint8)
    label[..., 1:4, 1:4] = 1
    label[..., 5:7, 5:7] = 2
    return label


def image_path(folder: Path, case: str, channel: int = 0, ending: str = ".nii.gz") -> Path:
    return folder / "imagesTr" / f"{case}_{channel:04d}{ending}"


def label_path(folder: Path, case: str, ending: str = ".nii.gz") -> Path:
    return folder / "labelsTr" / f"{case}{ending}"


def make_dataset(root: Path, *, name="Dataset999_Synthetic", cases=CASES, num_channels=1, ending=".nii.gz",
                 labels=None, extra_json=None) -> Path:
    """Write a valid dataset: 3D volumes, or 2D images for the endings in ``ENDINGS_2D``; return its folder."""
    folder = root / name
    shape = SHAPE_2D if ending in ENDINGS_2D else SHAPE_3D
    spacing = None if ending in ENDINGS_2D else SPACING_3D
    for index, case in enumerate(cases):
        for channel in range(num_channels):
            write_sitk(image_path(folder, case, channel, ending),
                       image_array(shape, 10 * index + channel, ending), spacing)
        write_sitk(label_path(folder, case, ending), label_array(shape), spacing)

    description = {
        "channel_names": {str(channel): f"channel{channel}" for channel in range(num_channels)},
        "labels": dict(LABELS if labels is None else labels),
        "numTraining": len(cases),
        "file_ending": ending,
    }
    description.update(extra_json or {})
    (folder / "dataset.json").write_text(json.dumps(description, indent=2), encoding="utf-8")
    return folder


def edit_json(folder: Path, remove=(), **changes) -> None:
    description = json.loads((folder / "dataset.json").read_text(encoding="utf-8"))
    for key in remove:
        del description[key]
    description.update(changes)
    (folder / "dataset.json").write_text(json.dumps(description, indent=2), encoding="utf-8")


def matching(report: CheckReport, pattern: str, severity: str = "error") -> list[Problem]:
    return [problem for problem in report.problems if problem.severity == severity and re.search(pattern, str(problem))]


def only_problem(report: CheckReport, pattern: str, severity: str = "error") -> Problem:
    """Return the single problem of ``report``, after checking that it matches ``pattern``."""
    assert len(report.problems) == 1, report.format()
    problem = report.problems[0]
    assert problem.severity == severity, report.format()
    assert re.search(pattern, str(problem)), report.format()
    return problem


@pytest.fixture
def dataset(tmp_path) -> Path:
    return make_dataset(tmp_path)


# --- valid datasets and report ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("ending", "num_channels", "ndim"),
    [(".nii.gz", 1, 3), (".nii.gz", 2, 3), (".nii", 1, 3), (".nrrd", 3, 3), (".mha", 1, 3), (".png", 1, 2),
     (".png", 2, 2), (".tif", 1, 2)],
)
def test_valid_dataset_has_no_problems(tmp_path, ending, num_channels, ndim):
    folder = make_dataset(tmp_path, num_channels=num_channels, ending=ending)

    report = check_dataset(folder)

    assert report.problems == [], report.format()
    assert report.ok
    assert report.num_cases == len(CASES)
    assert report.ndim == ndim
    assert report.num_channels == num_channels
    assert report.file_ending == ending
    assert report.folder == folder


def test_progress_called_after_each_case(dataset):
    calls = []

    check_dataset(dataset, progress=lambda done, total: calls.append((done, total)))

    assert calls == [(1, 3), (2, 3), (3, 3)]


def test_each_file_read_once(tmp_path, monkeypatch):
    import nnsam_engine.dataset.case_checks as case_checks

    folder = make_dataset(tmp_path, num_channels=2)
    reads = []
    original = case_checks.read_image

    def counting_read(path):
        reads.append(Path(path).name)
        return original(path)

    monkeypatch.setattr(case_checks, "read_image", counting_read)
    check_dataset(folder)

    assert len(reads) == len(CASES) * 3
    assert len(set(reads)) == len(reads)


def test_problem_str_format():
    problem = Problem.error("case_000", "labelsTr/case_000.nii.gz", "label value 3 is not declared",
                            "one of 0, 1, 2", "add the label to dataset.json")

    assert str(problem) == (
        "error   case_000  labelsTr/case_000.nii.gz: label value 3 is not declared; "
        "expected one of 0, 1, 2. Fix: add the label to dataset.json."
    )


def test_problem_rejects_unknown_severity():
    with pytest.raises(ValueError, match="Invalid severity 'fatal'"):
        Problem("fatal", None, None, "found", "expected", "fix")


def test_report_format_groups_by_case(dataset):
    edit_json(dataset, numTraining=5)
    write_sitk(label_path(dataset, "case_001"), np.full(SHAPE_3D, 3, dtype=np.uint8), SPACING_3D)
    write_sitk(image_path(dataset, "case_002"), np.zeros(SHAPE_3D, dtype=np.float32), SPACING_3D)

    report = check_dataset(dataset)
    lines = report.format().splitlines()

    assert lines[0].startswith(f"Dataset check of {dataset} (3D, 1 channel, file ending .nii.gz)")
    assert lines[1] == "dataset:"
    assert re.match(r'  error   dataset.json: "numTraining" is 5', lines[2])
    assert lines[3] == "case_001:"
    assert re.match(r"  error   labelsTr/case_001.nii.gz: label value 3 is not declared", lines[4])
    assert lines[5] == "case_002:"
    assert re.match(r"  warning imagesTr/case_002_0000.nii.gz: all voxels are equal to 0", lines[6])
    assert lines[-1] == "2 errors, 1 warning in 3 cases"


def test_report_to_dict_is_json(dataset):
    edit_json(dataset, numTraining=5)

    data = json.loads(json.dumps(check_dataset(dataset).to_dict()))

    assert data["ok"] is False
    assert data["num_cases"] == 3
    assert data["ndim"] == 3
    assert data["num_channels"] == 1
    assert data["file_ending"] == ".nii.gz"
    assert data["num_errors"] == 1
    assert data["problems"][0]["file"] == "dataset.json"
    assert data["problems"][0]["severity"] == "error"


def test_require_valid_dataset_raises_with_report(dataset):
    edit_json(dataset, numTraining=5)

    with pytest.raises(DatasetCheckError, match=r"is not ready for nnU-Net: 1 error, 0 warnings in 3 cases") as caught:
        require_valid_dataset(dataset)

    assert caught.value.report is not None
    assert not caught.value.report.ok
    assert '"numTraining" is 5 but imagesTr contains 3 cases' in str(caught.value)


def test_require_valid_dataset_logs_warnings(dataset, caplog):
    write_sitk(image_path(dataset, "case_000"), np.full(SHAPE_3D, 7.0, dtype=np.float32), SPACING_3D)

    with caplog.at_level(logging.WARNING, logger="nnsam_engine.dataset.check"):
        report = require_valid_dataset(dataset)

    assert report.ok
    assert len(report.warnings) == 1
    assert "all voxels are equal to 7" in caplog.text


def test_check_rejects_negative_tolerance(dataset):
    with pytest.raises(ValueError, match="spacing_tolerance must be a non-negative number, got -1"):
        check_dataset(dataset, spacing_tolerance=-1)


def test_check_collects_problems_of_all_kinds(dataset):
    edit_json(dataset, numTraining=7)
    label_path(dataset, "case_000").unlink()
    write_sitk(image_path(dataset, "case_001"), image_array((4, 8, 9), 1, ".nii.gz"), SPACING_3D)
    write_sitk(label_path(dataset, "case_002"), np.full(SHAPE_3D, 9, dtype=np.uint8), SPACING_3D)

    report = check_dataset(dataset)

    assert len(report.errors) == 4, report.format()
    assert [problem.case for problem in report.errors] == [None, "case_000", "case_001", "case_002"]


# --- layout ----------------------------------------------------------------------------------------


def test_missing_folder(tmp_path):
    report = check_dataset(tmp_path / "Dataset999_Absent")

    only_problem(report, r"dataset folder .*Dataset999_Absent does not exist; expected an existing folder")
    assert report.num_cases == 0


def test_folder_that_is_a_file(tmp_path):
    path = tmp_path / "Dataset999_File"
    path.write_text("not a folder")

    only_problem(check_dataset(path), r"Dataset999_File is a file, not a folder")


@pytest.mark.parametrize("name", ["Dataset04_Brain", "Brain", "Dataset0004_Brain", "Dataset004", "dataset004_Brain"])
def test_folder_name_without_three_digit_id(tmp_path, name):
    folder = make_dataset(tmp_path, name=name)

    problem = only_problem(check_dataset(folder), rf'dataset folder name "{name}" does not follow the nnU-Net pattern')

    assert "Dataset004_Hippocampus" in problem.expected
    assert "rename the folder" in problem.fix


@pytest.mark.parametrize("subfolder", ["imagesTr", "labelsTr"])
def test_missing_subfolder(dataset, subfolder):
    for path in (dataset / subfolder).iterdir():
        path.unlink()
    (dataset / subfolder).rmdir()

    problems = matching(check_dataset(dataset), rf"{subfolder}: folder not found")

    assert len(problems) == 1


def test_missing_labels_folder_checks_images(dataset):
    for path in (dataset / "labelsTr").iterdir():
        path.unlink()
    (dataset / "labelsTr").rmdir()

    report = check_dataset(dataset)

    assert len(report.errors) == 1, report.format()
    assert report.num_cases == 3


def test_missing_dataset_json(dataset):
    (dataset / "dataset.json").unlink()

    problem = only_problem(check_dataset(dataset), r"dataset.json: file not found")

    assert "channel_names" in problem.fix


def test_invalid_json_names_position(dataset):
    text = '{\n  "channel_names": {"0": "CT"},\n  "labels": {"background": 0,}\n}'
    (dataset / "dataset.json").write_text(text, encoding="utf-8")

    problem = only_problem(check_dataset(dataset), r"dataset.json: invalid JSON at line 3, column 30")

    assert "near line 3, column 30" in problem.fix


def test_dataset_json_is_folder(dataset):
    (dataset / "dataset.json").unlink()
    (dataset / "dataset.json").mkdir()

    only_problem(check_dataset(dataset), r"dataset.json: is a folder, not a file")


def test_unreadable_dataset_json(dataset, monkeypatch):
    original = Path.read_text

    def read_text(self, *args, **kwargs):
        if self.name == "dataset.json":
            raise PermissionError(13, "Permission denied", str(self))
        return original(self, *args, **kwargs)

    monkeypatch.setattr(Path, "read_text", read_text)

    only_problem(check_dataset(dataset), r"dataset.json: file cannot be read: Permission denied")


def test_unlistable_labels_folder(dataset, monkeypatch):
    original = Path.iterdir

    def iterdir(self):
        if self.name == "labelsTr":
            raise PermissionError(13, "Permission denied", str(self))
        return original(self)

    monkeypatch.setattr(Path, "iterdir", iterdir)
    report = check_dataset(dataset)

    assert len(matching(report, r"labelsTr: folder cannot be listed: Permission denied")) == 1, report.format()
    assert len(matching(report, r"label file is missing")) == 3


def test_json_top_level_not_object(dataset):
    (dataset / "dataset.json").write_text("[1, 2]", encoding="utf-8")

    only_problem(check_dataset(dataset), r"top-level value is a JSON list")


def test_json_duplicate_key(dataset):
    text = (dataset / "dataset.json").read_text(encoding="utf-8")
    (dataset / "dataset.json").write_text(text.replace('"numTraining": 3', '"numTraining": 3, "numTraining": 3'))

    only_problem(check_dataset(dataset), r'key "numTraining" appears more than once')


# --- dataset.json keys -----------------------------------------------------------------------------


@pytest.mark.parametrize("key", ["channel_names", "labels", "numTraining", "file_ending"])
def test_missing_json_key(dataset, key):
    edit_json(dataset, remove=[key])

    report = check_dataset(dataset)

    only_problem(report, rf'dataset.json: required key "{key}" is missing')
    assert report.num_cases == 3


def test_legacy_modality_key_accepted(dataset):
    edit_json(dataset, remove=["channel_names"], modality={"0": "MRI"})

    report = check_dataset(dataset)

    assert report.problems == [], report.format()
    assert report.num_channels == 1


def test_channel_names_keys_with_gap(tmp_path):
    folder = make_dataset(tmp_path, num_channels=2)
    edit_json(folder, channel_names={"0": "T1", "2": "T2"})

    only_problem(check_dataset(folder), r'"channel_names" has the keys 0, 2; expected the keys 0, 1')


def test_channel_name_not_string(dataset):
    edit_json(dataset, channel_names={"0": 5})

    only_problem(check_dataset(dataset), r'channel "0" in "channel_names" has the name 5')


@pytest.mark.parametrize("value", ['"one"', "true", "1.0", "[]", '["a"]'])
def test_label_value_not_integer(dataset, value):
    edit_json(dataset, labels={"background": 0, "left": json.loads(value), "right": 2})

    report = check_dataset(dataset)

    problems = matching(report, rf'label "left" has the value {re.escape(value)}; expected an integer')
    assert len(problems) == 1, report.format()


def test_labels_without_background(dataset):
    edit_json(dataset, labels={"zero": 0, "left": 1, "right": 2})

    only_problem(check_dataset(dataset), r'"labels" has no "background" entry \(names: zero, left, right\)')


def test_background_not_zero(dataset):
    edit_json(dataset, labels={"left": 0, "background": 1, "right": 2})

    only_problem(check_dataset(dataset), r'"background" has the value 1; expected the value 0')


def test_duplicate_label_values(dataset):
    edit_json(dataset, labels={"background": 0, "left": 1, "right": 2, "other": 2})

    only_problem(check_dataset(dataset), r'labels "right" and "other" have the same value 2')


def test_labels_not_consecutive(dataset):
    edit_json(dataset, labels={"background": 0, "left": 1, "right": 3})

    report = check_dataset(dataset)

    assert len(matching(report, r"label values 0, 1, 3 are not consecutive; missing 2")) == 1, report.format()


def test_ignore_label_accepted_when_highest(dataset):
    edit_json(dataset, labels={"background": 0, "left": 1, "right": 2, "ignore": 3})

    assert check_dataset(dataset).problems == []


def test_ignore_label_not_highest(dataset):
    edit_json(dataset, labels={"background": 0, "left": 1, "right": 2, "ignore": 5})

    only_problem(check_dataset(dataset), r'the "ignore" label has the value 5; expected the value 3')


def test_region_labels_accepted_with_class_order(dataset):
    edit_json(dataset, labels={"background": 0, "whole": [1, 2], "core": 2}, regions_class_order=[1, 2])

    assert check_dataset(dataset).problems == []


def test_region_labels_without_class_order(dataset):
    edit_json(dataset, labels={"background": 0, "whole": [1, 2], "core": 2})

    only_problem(check_dataset(dataset), r'labels whole are lists of values .* "regions_class_order" is missing')


def test_region_class_order_wrong_length(dataset):
    edit_json(dataset, labels={"background": 0, "whole": [1, 2], "core": 2}, regions_class_order=[1])

    only_problem(check_dataset(dataset), r'"regions_class_order" is \[1\]; expected a list of 2 integers')


@pytest.mark.parametrize("ending", [".jpg", "nii.gz", ".NII.GZ", 3])
def test_unsupported_file_ending(dataset, ending):
    edit_json(dataset, file_ending=ending)

    report = check_dataset(dataset)

    only_problem(report, rf'"file_ending" is {re.escape(json.dumps(ending))}; expected one of .nii.gz')
    assert report.file_ending == ".nii.gz"


def test_num_training_mismatch(dataset):
    edit_json(dataset, numTraining=4)

    problem = only_problem(check_dataset(dataset), r'"numTraining" is 4 but imagesTr contains 3 cases')

    assert problem.fix == 'set "numTraining" to 3, or add the missing cases'


@pytest.mark.parametrize("value", ['"3"', "-1", "3.0"])
def test_num_training_not_integer(dataset, value):
    edit_json(dataset, numTraining=json.loads(value))

    only_problem(check_dataset(dataset), rf'"numTraining" is {re.escape(value)}; expected a non-negative integer')


def test_dataset_file_list_warns(dataset):
    edit_json(dataset, dataset={"case_000": {"images": ["x_0000.nii.gz"], "label": "x.nii.gz"}})

    only_problem(check_dataset(dataset), r'"dataset" file list, which this check ignores', severity="warning")


# --- file names ------------------------------------------------------------------------------------


def test_image_without_channel_index(dataset):
    write_sitk(dataset / "imagesTr" / "case_000.nii.gz", image_array(SHAPE_3D, 0, ".nii.gz"), SPACING_3D)

    only_problem(check_dataset(dataset), r"imagesTr/case_000.nii.gz: image file name has no 4-digit channel index")


def test_missing_channel_file(tmp_path):
    folder = make_dataset(tmp_path, num_channels=2)
    image_path(folder, "case_001", 1).unlink()

    problem = only_problem(check_dataset(folder), r"imagesTr/case_001_0001.nii.gz: channel file is missing")

    assert problem.case == "case_001"
    assert problem.expected == "one image file per channel (_0000 to _0001) for the 2 channels in channel_names"


def test_extra_channel_file(dataset):
    write_sitk(image_path(dataset, "case_002", 1), image_array(SHAPE_3D, 5, ".nii.gz"), SPACING_3D)

    problem = only_problem(
        check_dataset(dataset), r"imagesTr/case_002_0001.nii.gz: extra channel file: index 1 is not declared"
    )

    assert problem.expected == "only the suffixes _0000 for the 1 channel in channel_names"


def test_channel_count_inferred_from_files(tmp_path):
    folder = make_dataset(tmp_path, num_channels=2)
    edit_json(folder, channel_names=[])

    report = check_dataset(folder)

    only_problem(report, r'"channel_names" is \[\]')
    assert report.num_channels == 2


def test_file_with_other_ending_warns(dataset):
    (dataset / "imagesTr" / "notes.txt").write_text("scanner settings")
    (dataset / "labelsTr" / "old").mkdir()

    report = check_dataset(dataset)

    assert len(report.errors) == 0, report.format()
    assert len(matching(report, r"imagesTr/notes.txt: a file without the ending .nii.gz", "warning")) == 1
    assert len(matching(report, r"labelsTr/old: a folder, which nnU-Net ignores", "warning")) == 1


def test_missing_label_file(dataset):
    label_path(dataset, "case_001").unlink()

    problem = only_problem(check_dataset(dataset), r"labelsTr/case_001.nii.gz: label file is missing")

    assert problem.case == "case_001"


def test_label_file_without_images(dataset):
    write_sitk(label_path(dataset, "case_009"), label_array(SHAPE_3D), SPACING_3D)

    problem = only_problem(check_dataset(dataset), r"labelsTr/case_009.nii.gz: label file has no image files")

    assert "imagesTr/case_009_0000.nii.gz" in problem.expected


def test_hidden_files_ignored(dataset):
    for subfolder in ("imagesTr", "labelsTr"):
        (dataset / subfolder / ".DS_Store").write_bytes(b"\0\1")
        (dataset / subfolder / "._case_000_0000.nii.gz").write_bytes(b"resource fork")

    assert check_dataset(dataset).problems == []


def test_no_image_with_declared_ending(dataset):
    edit_json(dataset, file_ending=".mha")

    report = check_dataset(dataset)

    assert len(matching(report, r'imagesTr: no image files ending in ".mha"')) == 1, report.format()
    assert len(matching(report, r'"numTraining" is 3 but imagesTr contains 0 cases')) == 1
    assert report.num_cases == 0


# --- per-case contents -----------------------------------------------------------------------------


def test_shape_mismatch_reports_both_shapes(dataset):
    write_sitk(label_path(dataset, "case_001"), label_array((5, 8, 8)), SPACING_3D)

    problem = only_problem(check_dataset(dataset), r"labelsTr/case_001.nii.gz: shape \(Z, Y, X\) \(5, 8, 8\) differs "
                                                   r"from shape \(Z, Y, X\) \(4, 8, 8\) of imagesTr/case_001_0000")

    assert problem.case == "case_001"


def test_shape_mismatch_between_channels(tmp_path):
    folder = make_dataset(tmp_path, num_channels=2)
    write_sitk(image_path(folder, "case_000", 1), image_array((4, 8, 7), 3, ".nii.gz"), SPACING_3D)

    only_problem(check_dataset(folder), r"imagesTr/case_000_0001.nii.gz: shape \(Z, Y, X\) \(4, 8, 7\) differs")


@pytest.mark.parametrize(("tolerance", "num_errors"), [(1e-3, 1), (2e-2, 0)])
def test_spacing_mismatch_with_tolerance(dataset, tolerance, num_errors):
    write_sitk(label_path(dataset, "case_002"), label_array(SHAPE_3D), (2.0, 1.0, 1.01))

    report = check_dataset(dataset, spacing_tolerance=tolerance)

    assert len(report.problems) == num_errors, report.format()
    if num_errors:
        only_problem(report, r"labelsTr/case_002.nii.gz: spacing \(Z, Y, X\) \(2, 1, 1.01\) mm differs from "
                             r"\(2, 1, 1\) mm of imagesTr/case_002_0000.nii.gz; expected the same spacing within "
                             r"a relative tolerance of 0.001")


def test_origin_mismatch_warns(dataset):
    write_sitk(label_path(dataset, "case_000"), label_array(SHAPE_3D), SPACING_3D, origin=(0.0, 0.0, 5.0))

    only_problem(check_dataset(dataset), r"labelsTr/case_000.nii.gz: origin \(0, 0, 5\) mm differs from \(0, 0, 0\) mm",
                 severity="warning")


def test_direction_mismatch_warns(dataset):
    flipped = (-1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0)
    write_sitk(label_path(dataset, "case_000"), label_array(SHAPE_3D), SPACING_3D, direction=flipped)

    only_problem(check_dataset(dataset), r"labelsTr/case_000.nii.gz: direction \(-1, 0, 0, 0, 1, 0, 0, 0, 1\) differs",
                 severity="warning")


def test_geometry_within_tolerance_accepted(dataset):
    write_sitk(label_path(dataset, "case_000"), label_array(SHAPE_3D), (2.0, 1.0, 1.0005), origin=(0.0, 0.0, 5e-5))

    assert check_dataset(dataset).problems == []


def test_undeclared_label_value(dataset):
    label = label_array(SHAPE_3D)
    label[0, 0, 0] = 3
    write_sitk(label_path(dataset, "case_001"), label, SPACING_3D)

    problem = only_problem(
        check_dataset(dataset),
        r'labelsTr/case_001.nii.gz: label value 3 is not declared in dataset.json "labels" \(found 0, 1, 2, 3\); '
        r"expected only the declared values 0, 1, 2",
    )

    assert "add the missing labels" in problem.fix


def test_several_undeclared_label_values(dataset):
    label = label_array(SHAPE_3D)
    label[0, 0, :2] = [4, 255]
    write_sitk(label_path(dataset, "case_001"), label, SPACING_3D)

    only_problem(check_dataset(dataset), r"label values 4, 255 are not declared")


def test_non_integer_label_values(dataset):
    label = label_array(SHAPE_3D).astype(np.float32)
    label[0, 0, :2] = 1.5
    write_sitk(label_path(dataset, "case_000"), label, SPACING_3D)

    problem = only_problem(check_dataset(dataset),
                           r"labelsTr/case_000.nii.gz: 2 voxels have non-integer label values such as 1.5")

    assert "nearest-neighbor" in problem.fix


def test_float_label_integral_values_accepted(dataset):
    write_sitk(label_path(dataset, "case_000"), label_array(SHAPE_3D).astype(np.float32), SPACING_3D)

    assert check_dataset(dataset).problems == []


@pytest.mark.parametrize("ending", [".nrrd", ".mha", ".nii.gz", ".nii"])
def test_nan_and_inf_in_image(tmp_path, ending):
    folder = make_dataset(tmp_path, ending=ending)
    image = image_array(SHAPE_3D, 0, ending)
    image[0, 0, :2] = np.nan
    image[1, 1, 1] = np.inf
    write_sitk(image_path(folder, "case_002", ending=ending), image, SPACING_3D)

    only_problem(check_dataset(folder),
                 rf"imagesTr/case_002_0000{re.escape(ending)}: 3 of 256 voxels are not finite \(2 NaN, 1 inf\)")


def test_nan_in_constant_nifti_image(dataset):
    image = np.full(SHAPE_3D, 7.0, dtype=np.float64)
    image[2, 3, 4] = np.nan
    write_sitk(image_path(dataset, "case_001"), image, SPACING_3D)

    report = check_dataset(dataset)

    assert len(report.problems) == 2, report.format()
    assert len(matching(report, r"imagesTr/case_001_0000.nii.gz: 1 of 256 voxels are not finite \(1 NaN, 0 inf\)")) == 1
    assert len(matching(report, r"imagesTr/case_001_0000.nii.gz: all voxels are equal to 7", "warning")) == 1


def test_nibabel_reads_only_float_nifti_images(dataset, monkeypatch):
    import nibabel
    from nibabel.arrayproxy import ArrayProxy

    # case_000 is stored as uint8, case_001 as int16 scaled by 0.5 (SimpleITK reads it as float32)
    # and case_002 as float32.
    write_sitk(image_path(dataset, "case_000"), image_array(SHAPE_3D, 0, ".png"), SPACING_3D)
    scaled = nibabel.Nifti1Image(image_array(SHAPE_3D, 1, ".png").astype(np.int16).T, np.diag([-1.0, -1.0, 2.0, 1.0]))
    scaled.header.set_slope_inter(0.5, 0.0)
    nibabel.save(scaled, image_path(dataset, "case_001"))
    headers, arrays = [], []
    original_load, original_array = nibabel.load, ArrayProxy.__array__

    def recording_load(path, *args, **kwargs):
        headers.append(Path(path).name)
        return original_load(path, *args, **kwargs)

    def recording_array(self, *args, **kwargs):
        arrays.append(Path(self.file_like).name)
        return original_array(self, *args, **kwargs)

    monkeypatch.setattr(nibabel, "load", recording_load)
    monkeypatch.setattr(ArrayProxy, "__array__", recording_array)
    report = check_dataset(dataset)

    assert report.problems == [], report.format()
    assert sorted(headers) == ["case_001_0000.nii.gz", "case_002_0000.nii.gz"]
    assert arrays == ["case_002_0000.nii.gz"]


def test_nifti_unreadable_by_nibabel_warns(dataset, monkeypatch):
    import nibabel
    from nibabel.filebasedimages import ImageFileError

    def failing_load(path, *args, **kwargs):
        raise ImageFileError(f"Cannot work out file type of {path}")

    monkeypatch.setattr(nibabel, "load", failing_load)
    report = check_dataset(dataset)

    assert len(report.problems) == len(CASES), report.format()
    problems = matching(report, r"imagesTr/case_000_0000.nii.gz: nibabel cannot read the file, so NaN and inf were "
                                r"not checked: Cannot work out file type", "warning")
    assert len(problems) == 1, report.format()


def test_constant_image_warns(dataset):
    write_sitk(image_path(dataset, "case_001"), np.full(SHAPE_3D, -3.5, dtype=np.float32), SPACING_3D)

    only_problem(check_dataset(dataset), r"imagesTr/case_001_0000.nii.gz: all voxels are equal to -3.5",
                 severity="warning")


def test_label_with_only_background_warns(dataset):
    write_sitk(label_path(dataset, "case_001"), np.zeros(SHAPE_3D, dtype=np.uint8), SPACING_3D)

    only_problem(check_dataset(dataset), r"labelsTr/case_001.nii.gz: label contains only background \(0\)",
                 severity="warning")


CHANNEL_LAYOUTS = ("one single-component file per channel, or a single 2D .png, .bmp or .tif file _0000 whose 3 or 4 "
                   "components (RGB or RGBA) are the channels listed in channel_names")


def color_array(components: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, size=(*SHAPE_2D, components), dtype=np.uint8)


def make_color_dataset(root: Path, components: int, num_channels: int, ending: str = ".png") -> Path:
    """Write a dataset whose cases each have one RGB or RGBA ``_0000`` file and ``num_channels`` channel names."""
    folder = make_dataset(root, ending=ending)
    for index, case in enumerate(CASES):
        write_sitk(image_path(folder, case, ending=ending), color_array(components, index), vector=True)
    edit_json(folder, channel_names={str(channel): f"channel{channel}" for channel in range(num_channels)})
    return folder


@pytest.mark.parametrize(("ending", "components"), [(".png", 3), (".png", 4), (".tif", 3), (".tif", 4)])
def test_color_image_channels_accepted(tmp_path, ending, components):
    folder = make_color_dataset(tmp_path, components, components, ending)

    report = check_dataset(folder)

    assert report.problems == [], report.format()
    assert report.num_channels == components
    assert report.ndim == 2


def test_rgb_png_with_one_channel_name(tmp_path):
    folder = make_color_dataset(tmp_path, components=3, num_channels=1)

    report = check_dataset(folder)

    problems = matching(report, r"imagesTr/case_000_0000.png: found vector pixels with 3 components but "
                                r"channel_names lists 1 channel")
    assert len(problems) == 1, report.format()
    assert len(report.problems) == len(CASES), report.format()
    assert problems[0].expected == CHANNEL_LAYOUTS
    assert "list 3 channels in channel_names" in problems[0].fix
    assert "_0000, _0001, _0002" in problems[0].fix


def test_rgb_png_with_stray_channel_file(tmp_path):
    folder = make_color_dataset(tmp_path, components=3, num_channels=3)
    write_sitk(image_path(folder, "case_001", 1, ".png"), image_array(SHAPE_2D, 7, ".png"))

    problem = only_problem(check_dataset(folder), r"imagesTr/case_001_0001.png: extra channel file: case_001_0000.png "
                                                  r"already contains the 3 channels as color components")

    assert problem.case == "case_001"
    assert "split case_001_0000.png into 3 grayscale channel files" in problem.fix


def test_rgb_png_with_two_channel_names(tmp_path):
    folder = make_color_dataset(tmp_path, components=3, num_channels=2)

    report = check_dataset(folder)

    assert len(matching(report, r"found vector pixels with 3 components but channel_names lists 2 channels")) == 3
    assert len(matching(report, r"channel file is missing")) == 3, report.format()


def test_rgb_in_second_channel_file(tmp_path):
    folder = make_dataset(tmp_path, ending=".png", num_channels=3)
    write_sitk(image_path(folder, "case_000", 1, ".png"), color_array(3), vector=True)

    problem = only_problem(check_dataset(folder),
                           r"imagesTr/case_000_0001.png: found vector pixels with 3 components in a .png file")

    assert problem.expected == CHANNEL_LAYOUTS


@pytest.mark.parametrize("ending", [".nii.gz", ".nrrd", ".mha", ".tiff"])
def test_vector_pixels_not_read_as_channels(tmp_path, ending):
    folder = make_dataset(tmp_path, ending=ending, num_channels=3)
    shape = SHAPE_2D if ending in ENDINGS_2D else SHAPE_3D
    spacing = None if ending in ENDINGS_2D else SPACING_3D
    vector = np.stack([image_array(shape, channel, ending) for channel in range(3)], axis=-1)
    write_sitk(image_path(folder, "case_000", 0, ending), vector, spacing, vector=True)
    for channel in (1, 2):
        image_path(folder, "case_000", channel, ending).unlink()

    report = check_dataset(folder)

    problems = matching(report, rf"imagesTr/case_000_0000{re.escape(ending)}: found vector pixels with 3 components "
                                rf"in a {re.escape(ending)} file")
    assert len(problems) == 1, report.format()
    assert problems[0].expected == CHANNEL_LAYOUTS
    assert len(matching(report, r"channel file is missing")) == 2, report.format()


def test_vector_volume_rejected(dataset):
    vector = np.random.default_rng(0).normal(size=(*SHAPE_3D, 2)).astype(np.float32)
    write_sitk(image_path(dataset, "case_000"), vector, SPACING_3D, vector=True)

    problem = only_problem(check_dataset(dataset),
                           r"imagesTr/case_000_0000.nii.gz: found vector pixels with 2 components")

    assert "_0000, _0001" in problem.fix


def test_label_with_several_components(tmp_path):
    folder = make_dataset(tmp_path, ending=".png")
    mask = np.stack([label_array(SHAPE_2D)] * 3, axis=-1)
    write_sitk(label_path(folder, "case_001", ".png"), mask, vector=True)

    only_problem(check_dataset(folder), r"labelsTr/case_001.png: label has vector pixels with 3 components")


def test_four_dimensional_image_rejected(dataset):
    write_sitk(image_path(dataset, "case_000"), np.ones((2, *SHAPE_3D), dtype=np.float32))

    only_problem(check_dataset(dataset), r"imagesTr/case_000_0000.nii.gz: image has 4 spatial dimensions")


def test_unreadable_file(dataset):
    image_path(dataset, "case_001").write_bytes(b"this is not a NIfTI file")

    problem = only_problem(check_dataset(dataset), r"imagesTr/case_001_0000.nii.gz: file cannot be read: ")

    assert problem.case == "case_001"


def test_mixed_2d_and_3d_cases(dataset):
    write_sitk(image_path(dataset, "case_001"), image_array(SHAPE_2D, 0, ".nii.gz"), (1.0, 1.0))
    write_sitk(label_path(dataset, "case_001"), label_array(SHAPE_2D), (1.0, 1.0))

    report = check_dataset(dataset)

    problem = only_problem(report, r"imagesTr/case_001_0000.nii.gz: case is 2D but 2 of 3 cases are 3D")
    assert problem.case == "case_001"
    assert report.ndim == 3


# --- real data -------------------------------------------------------------------------------------


def real_dataset(shared_data: Path, name: str) -> Path:
    folder = shared_data / name
    if not folder.is_dir():
        pytest.skip(f"real dataset {folder} not found")
    return folder


def test_real_hippocampus_is_valid(shared_data):
    folder = real_dataset(shared_data, "Dataset004_Hippocampus")

    report = check_dataset(folder)

    assert report.ok, report.format()
    assert report.num_cases == 200
    assert report.ndim == 3
    assert report.num_channels == 1
    assert report.file_ending == ".nii.gz"


def test_real_hc18_png_is_valid(shared_data):
    folder = real_dataset(shared_data, "Dataset201_HC18")

    report = check_dataset(folder)

    assert report.ok, report.format()
    assert report.num_cases == 200
    assert report.ndim == 2
    assert report.num_channels == 1
    assert report.file_ending == ".png"
