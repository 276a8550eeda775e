"""A synthetic MRI-like dataset for demos and tests: noisy volumes with two ellipsoid structures."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..atomic import write_json_atomic
from .io import Geometry, write_image

PHANTOM_LABELS = {"background": 0, "core": 1, "satellite": 2}
PHANTOM_SPACING = (2.0, 0.8, 0.8)


def _ellipsoid(shape, centre, radii) -> np.ndarray:
    grid = np.ogrid[tuple(slice(0, size) for size in shape)]
    distance = sum(((axis - c) / r) ** 2 for axis, c, r in zip(grid, centre, radii))
    return distance <= 1.0


def make_phantom_case(seed: int, shape: tuple[int, int, int] = (16, 64, 64)) -> tuple[np.ndarray, np.ndarray]:
    """Return one phantom ``(image, labels)`` pair of the given ``(Z, Y, X)`` shape.

    The image is float32 with a smooth intensity bias and Gaussian noise. Label 1
    (``core``) is a large bright ellipsoid. Label 2 (``satellite``) is a smaller,
    darker one that does not overlap it.
    """
    rng = np.random.default_rng(seed)
    depth, height, width = shape
    labels = np.zeros(shape, dtype=np.uint8)
    core_centre = (depth / 2 + rng.uniform(-1.5, 1.5), height * rng.uniform(0.35, 0.5), width * rng.uniform(0.35, 0.55))
    core_radii = (depth * rng.uniform(0.25, 0.35), height * rng.uniform(0.15, 0.22), width * rng.uniform(0.15, 0.22))
    labels[_ellipsoid(shape, core_centre, core_radii)] = 1
    satellite_centre = (depth / 2 + rng.uniform(-2, 2), height * rng.uniform(0.72, 0.8), width * rng.uniform(0.6, 0.8))
    satellite_radii = (depth * 0.2, height * rng.uniform(0.07, 0.1), width * rng.uniform(0.07, 0.1))
    labels[_ellipsoid(shape, satellite_centre, satellite_radii) & (labels == 0)] = 2

    z, y, x = np.meshgrid(*(np.linspace(-1, 1, size) for size in shape), indexing="ij")
    bias = 1.0 + 0.2 * (rng.uniform(-1, 1) * x + rng.uniform(-1, 1) * y + 0.5 * rng.uniform(-1, 1) * z)
    intensity = np.choose(labels, [0.25, 1.0, 0.6]) * bias
    image = intensity + rng.normal(0.0, 0.12, size=shape)
    return (image * 400).astype(np.float32), labels


def make_phantom_dataset(raw_folder: Path | str, dataset_id: int = 990, num_cases: int = 16,
                         shape: tuple[int, int, int] = (16, 64, 64), seed: int = 0) -> Path:
    """Write an nnU-Net raw dataset ``DatasetXXX_Phantom`` of phantom cases and return its folder.

    Cases are NIfTI volumes with spacing ``PHANTOM_SPACING`` (mm, ``(Z, Y, X)``)
    and a non-zero origin, named ``phantom_000`` and up.
    """
    folder = Path(raw_folder) / f"Dataset{dataset_id:03d}_Phantom"
    (folder / "imagesTr").mkdir(parents=True, exist_ok=True)
    (folder / "labelsTr").mkdir(parents=True, exist_ok=True)
    geometry = Geometry(PHANTOM_SPACING, (-25.6, -25.6, -16.0), tuple(np.eye(3).ravel().tolist()))
    for index in range(num_cases):
        image, labels = make_phantom_case(seed * 1000 + index, shape)
        write_image(folder / "imagesTr" / f"phantom_{index:03d}_0000.nii.gz", image, geometry)
        write_image(folder / "labelsTr" / f"phantom_{index:03d}.nii.gz", labels, geometry)
    write_json_atomic(folder / "dataset.json", {
        "name": "Phantom",
        "description": "Synthetic MRI-like volumes with two ellipsoid structures, made by nnsam_engine.dataset.phantom",
        "channel_names": {"0": "MRI"},
        "labels": PHANTOM_LABELS,
        "numTraining": num_cases,
        "file_ending": ".nii.gz",
    })
    return folder
