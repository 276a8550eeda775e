"""``nnsam demo``: the whole job on a small dataset in one call."""

from __future__ import annotations

import logging
import shutil
from pathlib import Path
from typing import Callable

import numpy as np

from .atomic import write_json_atomic

logger = logging.getLogger(__name__)

DEMO_CONFIGURATION = "2d"
DEMO_BATCH_SIZE = 8
DEMO_ITERATIONS_PER_EPOCH = 25


def _default_device() -> str:
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def _hold_out(dataset, workspace, held_out: int, folder: Path) -> list[str]:
    """Write a split whose fold 0 trains on all but the last ``held_out`` cases and link those as test input."""
    from .dataset.layout import IMAGES_FOLDER, LABELS_FOLDER

    ending = dataset.dataset_json()["file_ending"]
    cases = sorted(path.name[: -len(ending)] for path in (dataset.raw_folder / LABELS_FOLDER).iterdir()
                   if path.name.endswith(ending))
    if len(cases) < held_out + 2:
        raise ValueError(f"The demo needs at least {held_out + 2} labelled cases, {dataset.name} has {len(cases)}.")
    test, training = cases[-held_out:], cases[:-held_out]
    # The held-out cases also serve as validation cases for the pseudo-Dice; they never enter training.
    write_json_atomic(workspace.preprocessed / dataset.name / "splits_final.json",
                      [{"train": training, "val": test}])
    for sub in ("images", "labels"):
        shutil.rmtree(folder / sub, ignore_errors=True)
        (folder / sub).mkdir(parents=True)
    for case in test:
        for image in sorted((dataset.raw_folder / IMAGES_FOLDER).glob(f"{case}_[0-9][0-9][0-9][0-9]{ending}")):
            (folder / "images" / image.name).symlink_to(image.resolve())
        (folder / "labels" / f"{case}{ending}").symlink_to((dataset.raw_folder / LABELS_FOLDER / f"{case}{ending}").resolve())
    return test


def run_demo(workspace_folder: Path, *, dataset: str | None = None, minutes: float = 4.0, device: str | None = None,
             held_out: int = 4, sam_weights: str | None = None, sam_sha256: str | None = None,
             report: Callable[[str], None] = logger.info) -> dict:
    """Check, plan, train nnSAM for ``minutes``, predict held-out cases, evaluate, and draw an overlay.

    Without ``dataset`` a phantom dataset is generated in the workspace. When no
    verified SAM weights are found (and ``sam_weights`` is not given) the demo
    uses seeded random SAM weights and says so.

    Returns
    -------
    dict
        ``mean_dice``, per-class Dice, the prediction folder and the overlay PNG path.
    """
    from .dataset.check import check_dataset
    from .dataset.locate import resolve_dataset
    from .dataset.phantom import make_phantom_dataset
    from .errors import WeightsError
    from .evaluation.evaluate import evaluate_folders
    from .inference.model import load_model
    from .inference.predict import predict_folder
    from .network.weights import resolve_weights
    from .planning.plan import plan_dataset
    from .training.options import TrainingOptions
    from .training.run import train
    from .workspace import Workspace

    device = device or _default_device()
    workspace = Workspace.resolve(workspace_folder).create()
    if dataset is None:
        raw_folder = workspace.raw / "Dataset990_Phantom"
        if not raw_folder.is_dir():
            report(f"Generating a phantom dataset in {raw_folder}")
            make_phantom_dataset(workspace.raw)
        dataset = str(raw_folder)
    ref = resolve_dataset(dataset, workspace)

    report(f"1/5 Checking {ref.name}")
    check = check_dataset(ref.raw_folder)
    report(check.format().splitlines()[-1])
    report(f"2/5 Planning and preprocessing ({DEMO_CONFIGURATION})")
    for summary in plan_dataset(ref, workspace, [DEMO_CONFIGURATION]):
        report("    " + summary.format())

    try:
        weights = resolve_weights(sam_weights, expected_sha256=sam_sha256)
    except WeightsError:
        if sam_weights is not None:
            raise
        report("No verified MobileSAM weights found: this demo uses seeded RANDOM SAM weights, so it shows the "
               "pipeline, not nnSAM's accuracy. Run `nnsam weights download` (or `import`) for the real encoder.")
        weights = resolve_weights("random")

    demo_folder = workspace.results / "demo"
    test_cases = _hold_out(ref, workspace, held_out, demo_folder)
    report(f"3/5 Training 2d_nnsam on {device} for about {minutes:g} min "
           f"(held out: {', '.join(test_cases)})")
    options = TrainingOptions(epochs=1000, iterations_per_epoch=DEMO_ITERATIONS_PER_EPOCH, validation_iterations=5,
                              batch_size=DEMO_BATCH_SIZE, final_validation=False, model="nnsam",
                              sam_weights_path=str(weights.path) if weights.path else None,
                              sam_weights_sha256=weights.sha256, sam_random=weights.random,
                              time_limit_minutes=minutes)
    fold_folder = train(ref, workspace, DEMO_CONFIGURATION, 0, options, device=device)

    report("4/5 Predicting the held-out cases")
    model = load_model(fold_folder.parent, [0], device=device, sam_weights="random" if weights.random else str(weights.path),
                       use_mirroring=False)
    predictions = demo_folder / "predictions"
    predict_folder(model, demo_folder / "images", predictions)

    report("5/5 Evaluating")
    evaluation = evaluate_folders(predictions, demo_folder / "labels", labels=ref.dataset_json()["labels"])
    per_class = {name: values["dice"] for name, values in evaluation["summary"]["per_class"].items()}
    mean_dice = evaluation["summary"]["foreground_mean"]["dice"]
    overlay = demo_folder / "overlay.png"
    draw_overlay(demo_folder / "images", demo_folder / "labels", predictions, test_cases,
                 ref.dataset_json()["file_ending"], overlay)
    for name, value in per_class.items():
        report(f"    Dice {name:16s} {value:.3f}" if value is not None else f"    Dice {name:16s} n/a")
    report(f"    Mean Dice on {len(test_cases)} held-out cases: "
           + (f"{mean_dice:.3f}" if mean_dice is not None else "n/a")
           + ("  (random SAM weights)" if weights.random else ""))
    report(f"Overlay: {overlay}\nModel: {fold_folder.parent}")
    return {"mean_dice": mean_dice, "per_class_dice": per_class, "predictions": str(predictions),
            "overlay": str(overlay), "model_folder": str(fold_folder.parent), "random_sam": weights.random}


def draw_overlay(images: Path, labels: Path, predictions: Path, cases: list[str], ending: str, output: Path) -> None:
    """Save a PNG with, per case, the middle slice and the reference (left) and predicted (right) outlines."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from .atomic import atomic_path
    from .dataset.io import read_image

    figure, axes = plt.subplots(len(cases), 2, figsize=(6, 3 * len(cases)), squeeze=False)
    for row, case in enumerate(cases):
        image, _ = read_image(images / f"{case}_0000{ending}")
        reference, _ = read_image(labels / f"{case}{ending}")
        prediction, _ = read_image(predictions / f"{case}{ending}")
        if image.ndim == 3:
            index = int(np.argmax((reference > 0).sum(axis=(1, 2)))) if reference.any() else image.shape[0] // 2
            image, reference, prediction = image[index], reference[index], prediction[index]
        for column, (mask, title) in enumerate(((reference, "reference"), (prediction, "nnSAM"))):
            axis = axes[row, column]
            axis.imshow(image, cmap="gray")
            axis.imshow(np.ma.masked_equal(mask, 0), cmap="tab10", alpha=0.45, vmin=0, vmax=9)
            axis.set_title(f"{case}: {title}", fontsize=8)
            axis.axis("off")
    figure.tight_layout()
    with atomic_path(output) as tmp:
        figure.savefig(tmp, dpi=100, format="png")
    plt.close(figure)
