"""The ``nnsam`` command line."""

from __future__ import annotations

import argparse
import logging
import os
import sys

from .. import __version__
from ..errors import DatasetCheckError, NnsamError, TrainingInterrupted

logger = logging.getLogger("nnsam_engine")


def _add_workspace_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("workspace (default: $nnUNet_* variables, then the user data folder)")
    group.add_argument("--workspace", metavar="DIR",
                       help="folder holding nnUNet_raw, nnUNet_preprocessed and nnUNet_results")
    group.add_argument("--raw", metavar="DIR", help="raw datasets folder (overrides --workspace)")
    group.add_argument("--preprocessed", metavar="DIR", help="preprocessed data folder (overrides --workspace)")
    group.add_argument("--results", metavar="DIR", help="trained models folder (overrides --workspace)")


def _add_sam_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--sam-weights", metavar="PATH",
                        help="MobileSAM weights file; default: $NNSAM_SAM_WEIGHTS, then the cache "
                             "(see `nnsam weights status`). 'random' draws seeded random weights, for tests and "
                             "demos only")
    parser.add_argument("--sam-weights-sha256", metavar="HEX",
                        help="expected SHA-256 of --sam-weights when it is not the official mobile_sam.pt "
                             "(for example a fine-tuned vit_t)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="nnsam", description="nnSAM: nnU-Net with a frozen MobileSAM encoder.")
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="show debug messages")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    check = commands.add_parser("check", help="report every problem of a raw dataset")
    check.add_argument("dataset", help="dataset ID, DatasetXXX_Name, or path of the dataset folder")
    check.add_argument("--spacing-tolerance", type=float, default=1e-3,
                       help="relative difference allowed between image and label spacing (default 1e-3)")
    check.add_argument("--json", metavar="FILE", help="also write the report as JSON")
    _add_workspace_options(check)

    plan = commands.add_parser("plan", help="fingerprint, plan and preprocess a dataset (nnU-Net and nnSAM)")
    plan.add_argument("dataset", help="dataset ID, DatasetXXX_Name, or path of the dataset folder")
    plan.add_argument("-c", "--configurations", nargs="+", default=["2d", "3d_fullres"], metavar="CONFIG",
                      help="base configurations: 2d, 3d_fullres, 3d_lowres (default: 2d 3d_fullres)")
    plan.add_argument("--batch-size", type=int, help="batch size of the nnSAM configurations (default: rule, see README)")
    plan.add_argument("--sam-input-size", type=int, choices=(256, 512, 1024),
                      help="SAM encoder input edge in pixels (default: smallest that enlarges the patch at least 2x)")
    plan.add_argument("--fusion-stage", type=int, help="encoder stage that receives SAM features (default: by resolution)")
    plan.add_argument("--gpu-memory-gb", type=float, help="nnU-Net planner's GPU memory target (default 8)")
    plan.add_argument("-np", "--num-processes", type=int, help="worker processes (default: CPU count, at most 8)")
    plan.add_argument("--no-preprocess", action="store_true", help="write plans only")
    _add_workspace_options(plan)

    train = commands.add_parser("train", help="train one fold of nnSAM or nnU-Net")
    train.add_argument("dataset", help="dataset ID, DatasetXXX_Name, or path of the dataset folder")
    train.add_argument("configuration", help="2d, 3d_fullres, 3d_lowres (or an explicit *_nnsam name)")
    train.add_argument("fold", help="0-4 for nnU-Net's 5-fold cross-validation, or 'all'")
    train.add_argument("--model", choices=("nnsam", "nnunet"), default="nnsam", help="default: nnsam")
    train.add_argument("--epochs", type=int, default=1000, help="number of epochs (default 1000, as nnU-Net)")
    train.add_argument("--iterations-per-epoch", type=int, default=250, help="default 250, as nnU-Net")
    train.add_argument("--validation-iterations", type=int, default=50,
                       help="validation iterations per epoch for the pseudo-Dice (default 50)")
    train.add_argument("--batch-size", type=int, help="override the plans' batch size")
    train.add_argument("--time-limit", type=float, metavar="MINUTES",
                       help="end training after the first epoch that finishes past this time, with a final checkpoint")
    train.add_argument("--device", choices=("cuda", "cpu", "mps"), default="cuda", help="default: cuda")
    train.add_argument("--num-gpus", type=int, default=1,
                       help="GPUs for nnunetv2's DistributedDataParallel training (CUDA only)")
    train.add_argument("--continue", dest="continue_training", action="store_true",
                       help="resume from the fold's latest checkpoint")
    train.add_argument("--no-final-validation", action="store_true",
                       help="skip predicting the fold's validation cases after training")
    _add_sam_options(train)
    _add_workspace_options(train)

    predict = commands.add_parser("predict", help="segment a folder of images with a trained model")
    predict.add_argument("-i", "--input", required=True, help="folder of <case>_0000.<ext> images")
    predict.add_argument("-o", "--output", required=True, help="output folder")
    source = predict.add_mutually_exclusive_group(required=True)
    source.add_argument("-m", "--model-folder", help="trained model folder (<trainer>__<plans>__<configuration>)")
    source.add_argument("-d", "--dataset", help="dataset ID, name or path; use with -c and --model")
    predict.add_argument("-c", "--configuration", default="2d", help="with -d: 2d, 3d_fullres... (default 2d)")
    predict.add_argument("--model", choices=("nnsam", "nnunet"), default="nnsam", help="with -d (default nnsam)")
    predict.add_argument("-f", "--folds", nargs="+", help="folds to ensemble (default: all trained folds)")
    predict.add_argument("--checkpoint", default="checkpoint_final.pth",
                         help="checkpoint_final.pth (default), checkpoint_best.pth or checkpoint_latest.pth")
    predict.add_argument("--device", choices=("cuda", "cpu", "mps"), default="cuda", help="default: cuda")
    predict.add_argument("--disable-tta", action="store_true", help="no mirroring test-time augmentation (faster)")
    predict.add_argument("--save-probabilities", action="store_true", help="also write class probabilities (.npz)")
    predict.add_argument("--step-size", type=float, default=0.5, help="sliding-window step as a patch fraction")
    predict.add_argument("--part-id", type=int, default=0, help="this job's part, 0 to --num-parts - 1")
    predict.add_argument("--num-parts", type=int, default=1, help="split the cases across this many jobs")
    predict.add_argument("--no-overwrite", action="store_true", help="skip cases whose output exists")
    predict.add_argument("-np", "--num-processes", type=int, help="preprocessing and export workers")
    _add_sam_options(predict)
    _add_workspace_options(predict)

    evaluate = commands.add_parser("evaluate", help="Dice and surface distances of predictions against labels")
    evaluate.add_argument("predictions", help="folder of predicted label files")
    evaluate.add_argument("references", help="folder of reference label files with the same names")
    evaluate.add_argument("-o", "--output", help="folder for evaluation.json and evaluation.csv (default: predictions)")

    weights = commands.add_parser("weights", help="MobileSAM weights: status, download, import")
    weights_commands = weights.add_subparsers(dest="weights_command", required=True, metavar="ACTION")
    status = weights_commands.add_parser("status", help="where the weights are looked for and what is found")
    status.add_argument("--sam-weights", metavar="PATH", help="also check this file")
    download = weights_commands.add_parser("download", help="download and verify the official mobile_sam.pt")
    download.add_argument("--url", help="download address (default: the official MobileSAM repository)")
    download.add_argument("--destination", help="where to store the file (default: the cache)")
    import_ = weights_commands.add_parser("import", help="copy a mobile_sam.pt you already have into the cache")
    import_.add_argument("file", help="the weights file")

    demo = commands.add_parser("demo", help="check, plan, train, predict and evaluate on a phantom or real dataset")
    demo.add_argument("--dataset", help="raw dataset folder to use instead of the generated phantom")
    demo.add_argument("--workspace", default="nnsam-demo", help="demo workspace folder (default ./nnsam-demo)")
    demo.add_argument("--minutes", type=float, default=4.0, help="training time budget (default 4)")
    demo.add_argument("--device", choices=("cuda", "cpu", "mps"), help="default: cuda if available, else cpu")
    demo.add_argument("--held-out", type=int, default=4, help="cases kept out of training (default 4)")
    _add_sam_options(demo)
    return parser


def _configure_logging(verbose: bool) -> None:
    # Our messages at INFO; other libraries' only from WARNING, unless --verbose.
    logging.basicConfig(level=logging.DEBUG if verbose else logging.WARNING, format="%(levelname)s %(message)s",
                        stream=sys.stderr)
    logging.getLogger("nnsam_engine").setLevel(logging.DEBUG if verbose else logging.INFO)


def main(argv: list[str] | None = None) -> int:
    """Run the ``nnsam`` command and return its exit status."""
    from ..workspace import worker_environment

    # nnunetv2 reads its default worker count when first imported.
    for key, value in worker_environment().items():
        os.environ.setdefault(key, value)
    args = build_parser().parse_args(argv)
    _configure_logging(args.verbose)
    from . import handlers

    try:
        return handlers.run(args)
    except DatasetCheckError as error:
        print(str(error), file=sys.stderr)
        return 2
    except TrainingInterrupted as error:
        logger.warning("%s", error)
        return 128 + error.signal_number
    except NnsamError as error:
        logger.error("%s", error)
        return 2
    except KeyboardInterrupt:
        logger.warning("Interrupted.")
        return 130


if __name__ == "__main__":
    sys.exit(main())
