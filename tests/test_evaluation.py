"""Tests of the Dice, HD95 and ASD metrics and of folder evaluation.

The expected values of the two offset squares are computed by hand in
``square_pair``. The brute-force checks compare against pairwise distances between
surface voxels found without scipy.
"""

import csv
import itertools
import json
import logging
import math
import shutil
from pathlib import Path

import numpy as np
import pytest

from nnsam_engine.dataset.io import Geometry, read_image, write_image
from nnsam_engine.errors import DatasetError
from nnsam_engine.evaluation import dice, evaluate_folders, surface_distances

DATA_ROOT = Path(__file__).resolve().parents[1].parent / "shared" / "data"
HIPPOCAMPUS = DATA_ROOT / "Dataset004_Hippocampus"


def square_pair(shape=(20, 20)) -> tuple[np.ndarray, np.ndarray]:
    """Return (prediction, reference): 5x5 squares at rows 7-11 and 5-9, both in columns 5-9.

    With spacing (0.5, 2.0) mm, the 16 prediction surface voxels have these distances to the
    reference surface. Six lie on it (0 mm), 2 are at 0.5 mm (row 10, edge columns) and 8 are
    at 1.0 mm (row 7 inner columns, and row 11). The reference side is the mirror image, so the 32 pooled
    distances are 12 x 0, 4 x 0.5 and 16 x 1.0: HD95 = 1.0 mm, ASD = 18 / 32 = 0.5625 mm.
    With spacing (1, 1) they are 12 x 0, 8 x 1 and 12 x 2: HD95 = 2.0, ASD = 32 / 32 = 1.0.
    Overlap is 3 rows x 5 columns, so Dice = 2 * 15 / 50 = 0.6.
    """
    prediction = np.zeros(shape, dtype=np.uint8)
    reference = np.zeros(shape, dtype=np.uint8)
    prediction[7:12, 5:10] = 1
    reference[5:10, 5:10] = 1
    return prediction, reference


def brute_force_surface_distances(pred, ref, spacing):
    """Compute HD95 and ASD from all pairwise distances of face-connected surface voxels."""

    def surface_points(mask):
        padded = np.pad(mask.astype(bool), 1, constant_values=False)
        interior = padded.copy()
        for axis in range(mask.ndim):
            interior &= np.roll(padded, 1, axis=axis) & np.roll(padded, -1, axis=axis)
        surface = padded & ~interior
        return np.argwhere(surface).astype(float) * np.asarray(spacing)

    pred_points, ref_points = surface_points(pred), surface_points(ref)
    pairwise = np.linalg.norm(pred_points[:, None, :] - ref_points[None, :, :], axis=-1)
    pooled = np.concatenate([pairwise.min(axis=1), pairwise.min(axis=0)])
    return float(np.percentile(pooled, 95)), float(pooled.mean())


# dice


def test_dice_offset_squares():
    prediction, reference = square_pair()
    assert dice(prediction, reference) == pytest.approx(0.6)


def test_dice_identical_and_disjoint():
    prediction, _ = square_pair()
    assert dice(prediction, prediction) == 1.0
    assert dice(prediction, np.roll(prediction, 10, axis=1)) == 0.0


def test_dice_both_empty_is_one():
    empty = np.zeros((4, 4, 4))
    assert dice(empty, empty) == 1.0


def test_dice_one_empty_is_zero():
    prediction, _ = square_pair()
    assert dice(prediction, np.zeros_like(prediction)) == 0.0


def test_dice_shape_mismatch():
    with pytest.raises(ValueError, match=r"prediction \(3, 3\), reference \(3, 4\)"):
        dice(np.ones((3, 3)), np.ones((3, 4)))


# surface_distances


@pytest.mark.parametrize(
    ("spacing", "expected_hd95", "expected_asd"),
    [((0.5, 2.0), 1.0, 0.5625), ((1.0, 1.0), 2.0, 1.0)],
)
def test_surface_distances_offset_squares(spacing, expected_hd95, expected_asd):
    prediction, reference = square_pair()
    hd95, asd = surface_distances(prediction, reference, spacing)
    assert hd95 == pytest.approx(expected_hd95)
    assert asd == pytest.approx(expected_asd)


def test_surface_distances_symmetric():
    prediction, reference = square_pair()
    assert surface_distances(prediction, reference, (0.5, 2.0)) == surface_distances(reference, prediction, (0.5, 2.0))


def test_surface_distances_identical_is_zero():
    prediction, _ = square_pair()
    assert surface_distances(prediction, prediction, (0.5, 2.0)) == (0.0, 0.0)


def test_surface_distances_both_empty():
    empty = np.zeros((5, 5))
    assert surface_distances(empty, empty, (1.0, 1.0)) == (0.0, 0.0)


@pytest.mark.parametrize("empty_side", ["prediction", "reference"])
def test_surface_distances_one_empty_is_nan(empty_side):
    mask, _ = square_pair()
    empty = np.zeros_like(mask)
    pair = (empty, mask) if empty_side == "prediction" else (mask, empty)
    hd95, asd = surface_distances(*pair, (1.0, 1.0))
    assert math.isnan(hd95)
    assert math.isnan(asd)


def test_surface_distances_3d_single_voxels():
    prediction = np.zeros((6, 4, 4), dtype=bool)
    reference = np.zeros_like(prediction)
    prediction[3, 1, 2] = True
    reference[2, 1, 2] = True
    assert surface_distances(prediction, reference, (3.0, 1.0, 1.0)) == pytest.approx((3.0, 3.0))


def test_surface_distances_3d_parallel_planes():
    prediction = np.zeros((8, 5, 6), dtype=bool)
    reference = np.zeros_like(prediction)
    prediction[4] = True
    reference[2] = True
    assert surface_distances(prediction, reference, (2.5, 0.7, 0.9)) == pytest.approx((5.0, 5.0))


def test_surface_distances_mask_touching_border():
    full = np.ones((4, 5), dtype=bool)
    shrunk = full.copy()
    shrunk[0] = False
    hd95, asd = surface_distances(full, shrunk, (1.0, 1.0))
    assert hd95 == pytest.approx(1.0)
    assert 0.0 < asd < 1.0


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("spacing", [(1.0, 1.0, 1.0), (3.0, 0.8, 1.3)])
def test_surface_distances_3d_matches_brute_force(seed, spacing):
    from scipy import ndimage

    rng = np.random.default_rng(seed)
    prediction = ndimage.gaussian_filter(rng.standard_normal((10, 12, 11)), 1.5) > 0.05
    reference = ndimage.gaussian_filter(rng.standard_normal((10, 12, 11)), 1.5) > 0.05
    assert prediction.any()
    assert reference.any()
    expected = brute_force_surface_distances(prediction, reference, spacing)
    assert surface_distances(prediction, reference, spacing) == pytest.approx(expected)


def test_surface_distances_invalid_spacing():
    prediction, reference = square_pair()
    with pytest.raises(ValueError, match="expected 2 positive values"):
        surface_distances(prediction, reference, (1.0, 1.0, 1.0))
    with pytest.raises(ValueError, match="expected 2 positive values"):
        surface_distances(prediction, reference, (1.0, 0.0))


# evaluate_folders


def write_label(folder: Path, case: str, array: np.ndarray, spacing) -> Path:
    path = folder / f"{case}.nii.gz"
    write_image(path, np.asarray(array, dtype=np.uint8), Geometry.identity(spacing))
    return path


@pytest.fixture
def square_folders(tmp_path):
    """Two 2D cases with spacing (0.5, 2.0): offset squares, and an exact match."""
    prediction_folder, reference_folder = tmp_path / "pred", tmp_path / "ref"
    prediction, reference = square_pair()
    write_label(prediction_folder, "case_a", prediction, (0.5, 2.0))
    write_label(reference_folder, "case_a", reference, (0.5, 2.0))
    write_label(prediction_folder, "case_b", reference, (0.5, 2.0))
    write_label(reference_folder, "case_b", reference, (0.5, 2.0))
    return prediction_folder, reference_folder


def read_csv(path: Path) -> list[dict]:
    with open(path, newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def test_evaluate_squares_values(square_folders):
    prediction_folder, reference_folder = square_folders
    result = evaluate_folders(prediction_folder, reference_folder, labels={"background": 0, "square": 1})
    case_a, case_b = result["cases"]

    assert [case_a["case"], case_b["case"]] == ["case_a", "case_b"]
    assert case_a["spacing_mm"] == [0.5, 2.0]
    assert case_a["classes"]["square"]["dice"] == pytest.approx(0.6)
    assert case_a["classes"]["square"]["hd95_mm"] == pytest.approx(1.0)
    assert case_a["classes"]["square"]["asd_mm"] == pytest.approx(0.5625)
    assert case_b["classes"]["square"]["dice"] == 1.0
    assert "background" not in case_a["classes"]
    summary = result["summary"]
    assert summary["per_class"]["square"]["dice"] == pytest.approx(0.8)
    assert summary["per_class"]["square"]["hd95_mm"] == pytest.approx(0.5)
    assert summary["foreground_mean"]["asd_mm"] == pytest.approx(0.28125)


def test_evaluate_writes_json_and_csv(square_folders):
    prediction_folder, reference_folder = square_folders
    result = evaluate_folders(prediction_folder, reference_folder, labels={"square": 1})

    written = json.loads((prediction_folder / "evaluation.json").read_text())
    assert written == result
    assert "conventions" in written["software"]
    rows = read_csv(prediction_folder / "evaluation.csv")
    assert list(rows[0]) == ["case", "label", "label_name", "dice", "hd95_mm", "asd_mm"]
    assert rows[0] == {
        "case": "case_a", "label": "1", "label_name": "square", "dice": "0.6", "hd95_mm": "1.0", "asd_mm": "0.5625"
    }
    assert len(rows) == 2


def test_evaluate_output_folder(square_folders, tmp_path):
    prediction_folder, reference_folder = square_folders
    evaluate_folders(prediction_folder, reference_folder, labels={"square": 1}, output_folder=tmp_path / "out")
    assert (tmp_path / "out" / "evaluation.json").is_file()
    assert (tmp_path / "out" / "evaluation.csv").is_file()
    assert not (prediction_folder / "evaluation.json").exists()


def test_evaluate_labels_from_dataset_json(square_folders):
    prediction_folder, reference_folder = square_folders
    (reference_folder.parent / "dataset.json").write_text(json.dumps({"labels": {"background": 0, "lesion": 1}}))
    result = evaluate_folders(prediction_folder, reference_folder)
    assert list(result["labels"]) == ["lesion"]
    assert result["file_ending"] == ".nii.gz"


def test_evaluate_empty_cases_and_missing_class(tmp_path):
    prediction_folder, reference_folder = tmp_path / "pred", tmp_path / "ref"
    empty = np.zeros((8, 8), dtype=np.uint8)
    only_reference = empty.copy()
    only_reference[2:4, 2:4] = 2
    write_label(prediction_folder, "both_empty", empty, (1.0, 1.0))
    write_label(reference_folder, "both_empty", empty, (1.0, 1.0))
    write_label(prediction_folder, "missed", empty, (1.0, 1.0))
    write_label(reference_folder, "missed", only_reference, (1.0, 1.0))

    result = evaluate_folders(prediction_folder, reference_folder, labels={"a": 1, "b": 2})
    both_empty, missed = result["cases"]
    assert both_empty["classes"]["b"] == {
        "label": 2, "dice": 1.0, "hd95_mm": 0.0, "asd_mm": 0.0, "prediction_voxels": 0, "reference_voxels": 0
    }
    assert missed["classes"]["b"]["dice"] == 0.0
    assert missed["classes"]["b"]["hd95_mm"] is None
    assert result["summary"]["per_class"]["b"]["hd95_mm"] == 0.0
    assert result["summary"]["per_class"]["b"]["cases_with_distances"] == 1
    missed_row = [row for row in read_csv(prediction_folder / "evaluation.csv") if row["case"] == "missed"][1]
    assert missed_row["label_name"] == "b"
    assert missed_row["hd95_mm"] == ""
    assert missed_row["asd_mm"] == ""


def test_evaluate_labels_found_without_dataset_json(tmp_path):
    prediction_folder, reference_folder = tmp_path / "pred", tmp_path / "ref"
    first, second = np.zeros((6, 6, 6), dtype=np.uint8), np.zeros((6, 6, 6), dtype=np.uint8)
    first[1:3, 1:3, 1:3] = 1
    second[3:5, 3:5, 3:5] = 3
    write_label(prediction_folder, "one", first, (2.0, 1.0, 1.0))
    write_label(reference_folder, "one", first, (2.0, 1.0, 1.0))
    write_label(prediction_folder, "three", second, (2.0, 1.0, 1.0))
    write_label(reference_folder, "three", second, (2.0, 1.0, 1.0))

    result = evaluate_folders(prediction_folder, reference_folder)
    assert result["labels"] == {"label_1": 1, "label_3": 3}
    for case in result["cases"]:
        assert list(case["classes"]) == ["label_1", "label_3"]
        assert all(row["dice"] == 1.0 for row in case["classes"].values())


def test_evaluate_missing_prediction(square_folders):
    prediction_folder, reference_folder = square_folders
    (prediction_folder / "case_b.nii.gz").unlink()
    with pytest.raises(DatasetError, match="1 of 2 reference cases have no prediction.*case_b"):
        evaluate_folders(prediction_folder, reference_folder, labels={"square": 1})


def test_evaluate_extra_prediction_ignored(square_folders, caplog):
    prediction_folder, reference_folder = square_folders
    write_label(prediction_folder, "stray", np.zeros((3, 3)), (1.0, 1.0))
    with caplog.at_level(logging.WARNING, logger="nnsam_engine.evaluation.evaluate"):
        result = evaluate_folders(prediction_folder, reference_folder, labels={"square": 1})
    assert result["ignored_predictions"] == ["stray"]
    assert [case["case"] for case in result["cases"]] == ["case_a", "case_b"]
    assert "stray" in caplog.text


def test_evaluate_shape_mismatch(square_folders):
    prediction_folder, reference_folder = square_folders
    prediction_path = write_label(prediction_folder, "case_b", np.zeros((20, 21)), (0.5, 2.0))
    with pytest.raises(DatasetError, match=r"Shape mismatch") as caught:
        evaluate_folders(prediction_folder, reference_folder, labels={"square": 1})
    message = str(caught.value)
    assert str(prediction_path) in message
    assert str(reference_folder / "case_b.nii.gz") in message
    assert "(20, 21)" in message
    assert "(20, 20)" in message


def test_evaluate_spacing_mismatch(square_folders):
    prediction_folder, reference_folder = square_folders
    _, reference = square_pair()
    write_label(prediction_folder, "case_b", reference, (0.5, 2.1))
    with pytest.raises(DatasetError, match=r"Spacing mismatch") as caught:
        evaluate_folders(prediction_folder, reference_folder, labels={"square": 1})
    message = str(caught.value)
    assert str(prediction_folder / "case_b.nii.gz") in message
    assert "(0.5, 2.0) mm" in message
    # NIfTI stores spacing as float32, so 2.1 is read back as 2.0999999...
    assert "(0.5, 2.09999" in message


def test_evaluate_spacing_within_tolerance(square_folders):
    prediction_folder, reference_folder = square_folders
    _, reference = square_pair()
    write_label(prediction_folder, "case_b", reference, (0.5, 2.0 * (1 + 5e-4)))
    result = evaluate_folders(prediction_folder, reference_folder, labels={"square": 1})
    assert result["cases"][1]["classes"]["square"]["dice"] == 1.0


def test_evaluate_invalid_label_value(square_folders):
    prediction_folder, reference_folder = square_folders
    with pytest.raises(DatasetError, match="Invalid value 'one' for label 'square'"):
        evaluate_folders(prediction_folder, reference_folder, labels={"square": "one"})


def test_evaluate_region_label(square_folders):
    prediction_folder, reference_folder = square_folders
    result = evaluate_folders(prediction_folder, reference_folder, labels={"square": 1, "any": [1, 2]})
    assert result["labels"]["any"] == [1, 2]
    assert result["cases"][0]["classes"]["any"]["dice"] == pytest.approx(0.6)
    rows = read_csv(prediction_folder / "evaluation.csv")
    assert rows[1]["label"] == "1+2"


def test_evaluate_missing_folder(tmp_path):
    with pytest.raises(DatasetError, match="Prediction folder not found"):
        evaluate_folders(tmp_path / "absent", tmp_path)


@pytest.fixture
def hippocampus_folders(tmp_path):
    labels_folder = HIPPOCAMPUS / "labelsTr"
    if not labels_folder.is_dir():
        pytest.skip(f"Hippocampus sample data not found at {labels_folder}")
    prediction_folder, reference_folder = tmp_path / "pred", tmp_path / "ref"
    prediction_folder.mkdir()
    reference_folder.mkdir()
    for case in ("hippocampus_001", "hippocampus_003"):
        for folder in (prediction_folder, reference_folder):
            shutil.copy(labels_folder / f"{case}.nii.gz", folder)
    shutil.copy(HIPPOCAMPUS / "dataset.json", prediction_folder)
    return prediction_folder, reference_folder


def test_evaluate_hippocampus_against_itself(hippocampus_folders):
    prediction_folder, reference_folder = hippocampus_folders
    result = evaluate_folders(prediction_folder, reference_folder)
    assert list(result["labels"]) == ["Anterior", "Posterior"]
    for case, name in itertools.product(result["cases"], ["Anterior", "Posterior"]):
        assert case["classes"][name]["dice"] == 1.0
        assert case["classes"][name]["hd95_mm"] == 0.0
        assert case["classes"][name]["asd_mm"] == 0.0
        assert case["classes"][name]["reference_voxels"] > 0


def test_evaluate_hippocampus_shifted_prediction(hippocampus_folders):
    prediction_folder, reference_folder = hippocampus_folders
    path = prediction_folder / "hippocampus_001.nii.gz"
    labels, geometry = read_image(path)
    shifted = np.roll(labels, 1, axis=1)
    write_image(path, shifted, geometry)

    result = evaluate_folders(prediction_folder, reference_folder)
    anterior = result["cases"][0]["classes"]["Anterior"]
    expected_hd95, expected_asd = surface_distances(shifted == 1, labels == 1, geometry.spacing)
    assert 0.0 < anterior["dice"] < 1.0
    assert anterior["dice"] == pytest.approx(dice(shifted == 1, labels == 1))
    assert anterior["hd95_mm"] == pytest.approx(expected_hd95)
    assert anterior["asd_mm"] == pytest.approx(expected_asd)
    assert anterior["hd95_mm"] > 0.0


def test_evaluate_mixed_endings_need_file_ending(tmp_path):
    prediction_folder, reference_folder = tmp_path / "pred", tmp_path / "ref"
    mask = np.zeros((4, 4), dtype=np.uint8)
    for folder in (prediction_folder, reference_folder):
        write_label(folder, "case", mask, (1.0, 1.0))
        write_image(folder / "case.nrrd", mask, Geometry.identity((1.0, 1.0)))
    with pytest.raises(DatasetError, match=r"found endings \['.nii.gz', '.nrrd'\], expected exactly one"):
        evaluate_folders(prediction_folder, reference_folder)
    result = evaluate_folders(prediction_folder, reference_folder, file_ending="nrrd")
    assert result["file_ending"] == ".nrrd"
