"""What each ``nnsam`` command does with its parsed arguments."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

from ..errors import NnsamError

logger = logging.getLogger(__name__)


def _out(text: str = "") -> None:
    sys.stdout.write(text + "\n")
    sys.stdout.flush()


def _workspace(args: argparse.Namespace):
    from ..workspace import Workspace

    return Workspace.resolve(getattr(args, "workspace", None), raw=getattr(args, "raw", None),
                             preprocessed=getattr(args, "preprocessed", None), results=getattr(args, "results", None))


def _sam_weights(args: argparse.Namespace):
    from ..network.weights import resolve_weights

    return resolve_weights(args.sam_weights, expected_sha256=args.sam_weights_sha256)


def run(args: argparse.Namespace) -> int:
    handler = {"check": check, "plan": plan, "train": train, "predict": predict, "evaluate": evaluate,
               "weights": weights, "demo": demo}[args.command]
    return handler(args)


def check(args: argparse.Namespace) -> int:
    from ..dataset.check import check_dataset
    from ..dataset.locate import resolve_dataset
    from ..atomic import write_json_atomic

    dataset = resolve_dataset(args.dataset, _workspace(args), link=False)
    report = check_dataset(dataset.raw_folder, spacing_tolerance=args.spacing_tolerance)
    _out(report.format())
    if args.json:
        write_json_atomic(args.json, report.to_dict())
    return 0 if report.ok else 1


def plan(args: argparse.Namespace) -> int:
    from ..dataset.locate import resolve_dataset
    from ..planning.configurations import NnsamSettings
    from ..planning.plan import plan_dataset, plans_path

    workspace = _workspace(args).create()
    dataset = resolve_dataset(args.dataset, workspace)
    settings = NnsamSettings(args.batch_size, args.sam_input_size, args.fusion_stage)
    summaries = plan_dataset(dataset, workspace, args.configurations, settings=settings,
                             num_processes=args.num_processes, gpu_memory_target_gb=args.gpu_memory_gb,
                             preprocess=not args.no_preprocess)
    _out(f"Plans: {plans_path(workspace, dataset)}")
    for summary in summaries:
        _out("  " + summary.format())
    return 0


def train(args: argparse.Namespace) -> int:
    from ..dataset.locate import resolve_dataset
    from ..planning.configurations import is_nnsam
    from ..training.options import TrainingOptions
    from ..training.run import resolve_configuration, train as run_training

    workspace = _workspace(args).create()
    dataset = resolve_dataset(args.dataset, workspace)
    configuration = resolve_configuration(args.configuration, args.model)
    sam = {}
    if is_nnsam(configuration):
        weights = _sam_weights(args)
        sam = {"sam_weights_path": str(weights.path) if weights.path else None,
               "sam_weights_sha256": weights.sha256, "sam_random": weights.random}
    options = TrainingOptions(epochs=args.epochs, iterations_per_epoch=args.iterations_per_epoch,
                              validation_iterations=args.validation_iterations, batch_size=args.batch_size,
                              final_validation=not args.no_final_validation, model=args.model,
                              time_limit_minutes=args.time_limit, **sam)
    folder = run_training(dataset, workspace, configuration, args.fold, options, device=args.device,
                          continue_training=args.continue_training, num_gpus=args.num_gpus)
    _out(f"Training finished: {folder}")
    return 0


def _model_folder(args: argparse.Namespace) -> Path:
    if args.model_folder:
        return Path(args.model_folder)
    from ..dataset.locate import resolve_dataset
    from ..training.run import fold_folder, resolve_configuration

    workspace = _workspace(args)
    dataset = resolve_dataset(args.dataset, workspace)
    configuration = resolve_configuration(args.configuration, args.model)
    return fold_folder(workspace, dataset, configuration, 0).parent


def _check_inputs_before_loading(model_folder: Path, input_folder: Path) -> None:
    """Check the input folder's case names against the model's dataset.json, so a mistake costs no model loading."""
    from ..inference.predict import find_input_cases

    try:
        description = json.loads((model_folder / "dataset.json").read_text(encoding="utf-8"))
        file_ending = description["file_ending"]
        num_channels = len(description.get("channel_names") or description["modality"])
    except (OSError, ValueError, KeyError, TypeError):
        return  # load_model reports a missing or invalid model folder
    find_input_cases(input_folder, file_ending, num_channels)


def predict(args: argparse.Namespace) -> int:
    from ..inference.model import load_model
    from ..inference.predict import predict_folder

    model_folder = _model_folder(args)
    _check_inputs_before_loading(model_folder, Path(args.input))
    model = load_model(model_folder, args.folds, args.checkpoint, device=args.device,
                       sam_weights=args.sam_weights, sam_sha256=args.sam_weights_sha256,
                       use_mirroring=not args.disable_tta, tile_step_size=args.step_size)
    written = predict_folder(model, args.input, args.output, save_probabilities=args.save_probabilities,
                             overwrite=not args.no_overwrite, part_id=args.part_id, num_parts=args.num_parts,
                             num_processes=args.num_processes)
    _out(f"Wrote {len(written)} segmentation(s) to {args.output}")
    return 0


def evaluate(args: argparse.Namespace) -> int:
    from ..evaluation.evaluate import evaluate_folders

    result = evaluate_folders(args.predictions, args.references, output_folder=args.output)
    summary = result["summary"]
    for name, values in summary["per_class"].items():
        _out(f"  {name:20s} Dice {_number(values['dice'])}  HD95 {_number(values['hd95_mm'])} mm  "
             f"ASD {_number(values['asd_mm'])} mm")
    _out(f"  {'mean (foreground)':20s} Dice {_number(summary['foreground_mean']['dice'])}")
    return 0


def _number(value) -> str:
    return "  n/a" if value is None else f"{value:.4f}"


def weights(args: argparse.Namespace) -> int:
    from ..network import weights as sam_weights

    if args.weights_command == "status":
        status = sam_weights.weights_status(args.sam_weights)
        _out(json.dumps(status, indent=2, default=str))
        return 0 if status.get("usable") else 1
    if args.weights_command == "download":
        path = sam_weights.download_weights(args.url or sam_weights.OFFICIAL_URL, args.destination,
                                            progress=_download_progress())
        _out(f"\nVerified and saved {path}")
        return 0
    path = sam_weights.import_weights(args.file)
    _out(f"Verified and saved {path}")
    return 0


def _download_progress():
    def report(done: int, total: int | None) -> None:
        if total:
            sys.stderr.write(f"\r{done / 1e6:6.1f} / {total / 1e6:.1f} MB ({100 * done / total:3.0f}%)")
        else:
            sys.stderr.write(f"\r{done / 1e6:6.1f} MB")
        sys.stderr.flush()

    return report


def demo(args: argparse.Namespace) -> int:
    from ..demo import run_demo

    result = run_demo(Path(args.workspace), dataset=args.dataset, minutes=args.minutes, device=args.device,
                      held_out=args.held_out, sam_weights=args.sam_weights, sam_sha256=args.sam_weights_sha256,
                      report=_out)
    if result["mean_dice"] is None:
        raise NnsamError("The demo produced no Dice value; see the messages above.")
    return 0
