"""Benchmark nnSAM against plain nnU-Net on one plan: training iteration time and prediction time.

Run from the repository root:

    .venv/bin/python benchmarks/bench_engine.py --device cpu

It plans a 24-case subset of Dataset004_Hippocampus (read in place from the
``shared/data`` folder next to the repository) in a temporary workspace, then

1. times training iterations (forward, loss, backward, optimiser step; data
   loading excluded) of the ``2d`` and ``2d_nnsam`` networks at the same batch size;
2. trains each for a few iterations through ``nnsam train`` and times
   ``nnsam predict`` on held-out cases, per case.

Results go to ``benchmarks/results/engine-<device>.json``.
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPOSITORY = Path(__file__).resolve().parents[1]
SHARED_DATA = REPOSITORY.parent / "shared" / "data" / "Dataset004_Hippocampus"
NNSAM = str(Path(sys.executable).parent / "nnsam")
TRAINING_CASES = 24
HELD_OUT = 6


def run(*args: str) -> None:
    subprocess.run([NNSAM, *args], check=True, stdout=subprocess.DEVNULL)


def make_subset(root: Path) -> tuple[Path, Path]:
    dataset = root / "Dataset105_HippocampusBench"
    images, held_out = dataset / "imagesTr", root / "held_out"
    for folder in (images, dataset / "labelsTr", held_out):
        folder.mkdir(parents=True)
    cases = sorted(path.name[: -len(".nii.gz")] for path in (SHARED_DATA / "labelsTr").iterdir())
    for case in cases[:TRAINING_CASES]:
        (images / f"{case}_0000.nii.gz").symlink_to(SHARED_DATA / "imagesTr" / f"{case}_0000.nii.gz")
        (dataset / "labelsTr" / f"{case}.nii.gz").symlink_to(SHARED_DATA / "labelsTr" / f"{case}.nii.gz")
    for case in cases[-HELD_OUT:]:
        (held_out / f"{case}_0000.nii.gz").symlink_to(SHARED_DATA / "imagesTr" / f"{case}_0000.nii.gz")
    description = json.loads((SHARED_DATA / "dataset.json").read_text())
    description["numTraining"] = TRAINING_CASES
    (dataset / "dataset.json").write_text(json.dumps(description))
    return dataset, held_out


def time_iterations(plans: dict, dataset_json: dict, configuration: str, batch_size: int, device: str,
                    iterations: int) -> float:
    """Return mean seconds per training iteration of the network alone."""
    import torch
    from nnunetv2.training.loss.compound_losses import DC_and_CE_loss
    from nnunetv2.training.loss.dice import MemoryEfficientSoftDiceLoss
    from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer
    from nnunetv2.utilities.plans_handling.plans_handler import PlansManager

    from nnsam_engine.network.nnsam_unet import NnSAMUNet

    manager = PlansManager(plans)
    config = manager.get_configuration(configuration)
    classes = len(dataset_json["labels"])
    network = nnUNetTrainer.build_network_architecture(manager, config, 1, classes, False).to(device)
    if isinstance(network, NnSAMUNet):
        network.load_sam_weights(None, "", random=True, source="random")
    optimizer = torch.optim.SGD([p for p in network.parameters() if p.requires_grad], 0.01, momentum=0.99)
    loss_function = DC_and_CE_loss({"batch_dice": True, "smooth": 1e-5, "do_bg": False, "ddp": False}, {}, 1, 1,
                                   dice_class=MemoryEfficientSoftDiceLoss)
    data = torch.randn(batch_size, 1, *config.patch_size, device=device)
    target = torch.randint(0, classes, (batch_size, 1, *config.patch_size), device=device)
    network.train()

    def step():
        optimizer.zero_grad(set_to_none=True)
        loss = loss_function(network(data), target)
        loss.backward()
        optimizer.step()

    step()  # warm-up
    if device == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(iterations):
        step()
    if device == "cuda":
        torch.cuda.synchronize()
    return (time.perf_counter() - start) / iterations


def time_prediction(workspace: Path, dataset: Path, held_out: Path, model: str, device: str, output: Path,
                    tta: bool) -> float:
    """Return seconds per case of ``nnsam predict`` (model loading and worker start-up included)."""
    folder = workspace / "nnUNet_results" / dataset.name / f"nnSAMTrainer__nnUNetPlans__{'2d_nnsam' if model == 'nnsam' else '2d'}"
    args = ["predict", "-i", str(held_out), "-o", str(output), "-m", str(folder), "--device", device]
    if model == "nnsam":
        args += ["--sam-weights", "random"]
    if not tta:
        args.append("--disable-tta")
    start = time.perf_counter()
    run(*args)
    return (time.perf_counter() - start) / HELD_OUT


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu", choices=("cpu", "cuda", "mps"))
    parser.add_argument("--iterations", type=int, default=3, help="timed training iterations per network")
    parser.add_argument("--batch-size", type=int, help="batch size for both networks (default: the nnSAM plan's)")
    parser.add_argument("--output", type=Path, help="result file (default benchmarks/results/engine-<device>.json)")
    args = parser.parse_args()
    if not SHARED_DATA.is_dir():
        parser.error(f"{SHARED_DATA} not found; the benchmark reads Dataset004_Hippocampus there.")

    import torch

    with tempfile.TemporaryDirectory() as temporary:
        root = Path(temporary)
        dataset, held_out = make_subset(root)
        workspace = root / "workspace"
        run("plan", str(dataset), "--workspace", str(workspace), "-c", "2d")
        plans = json.loads((workspace / "nnUNet_preprocessed" / dataset.name / "nnUNetPlans.json").read_text())
        dataset_json = json.loads((dataset / "dataset.json").read_text())
        nnsam_batch = args.batch_size or plans["configurations"]["2d_nnsam"]["batch_size"]
        training = {}
        for name in ("2d", "2d_nnsam"):
            training[name] = time_iterations(plans, dataset_json, name, nnsam_batch, args.device, args.iterations)

        prediction = {}
        for model in ("nnunet", "nnsam"):
            extra = ["--sam-weights", "random"] if model == "nnsam" else []
            run("train", dataset.name, "2d", "0", "--model", model, "--workspace", str(workspace), "--device",
                args.device, "--epochs", "1", "--iterations-per-epoch", "2", "--validation-iterations", "1",
                "--batch-size", "4", "--no-final-validation", *extra)
            for tta in (False, True):
                key = f"{model}_{'tta' if tta else 'no_tta'}"
                prediction[key] = time_prediction(workspace, dataset, held_out, model, args.device,
                                                  root / f"out_{key}", tta)

    result = {
        "benchmark": "bench_engine.py",
        "date": time.strftime("%Y-%m-%d"),
        "device": args.device,
        "machine": {"processor": platform.processor() or platform.machine(), "cpu_threads": torch.get_num_threads(),
                    "gpu": torch.cuda.get_device_name(0) if args.device == "cuda" else None},
        "torch": torch.__version__,
        "plan": {"dataset": "Dataset004_Hippocampus, 24-case subset", "configuration": "2d",
                 "patch_size": plans["configurations"]["2d"]["patch_size"],
                 "sam_input_size": plans["configurations"]["2d_nnsam"]["architecture"]["arch_kwargs"]["sam_input_size"],
                 "fusion_stage": plans["configurations"]["2d_nnsam"]["architecture"]["arch_kwargs"]["fusion_stage"]},
        "training_seconds_per_iteration": {"batch_size": nnsam_batch, **training,
                                           "nnsam_over_nnunet": training["2d_nnsam"] / training["2d"]},
        "prediction_seconds_per_case": {"cases": HELD_OUT, **prediction},
    }
    output = args.output or REPOSITORY / "benchmarks" / "results" / f"engine-{args.device}.json"
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
