"""nnU-Net trainer for nnSAM and plain nnU-Net runs driven by :class:`TrainingOptions`."""

from __future__ import annotations

import logging
import os
import signal
import time
from pathlib import Path
from unittest import mock

import numpy as np
import torch
from nnunetv2.training.lr_scheduler.polylr import PolyLRScheduler
from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer
from torch._dynamo import OptimizedModule

from ..errors import TrainingInterrupted
from ..network.nnsam_unet import NnSAMUNet
from .checkpoints import load_checkpoint
from .metrics import append_record, drop_records_from
from .options import TrainingOptions

logger = logging.getLogger(__name__)

LATEST_CHECKPOINT = "checkpoint_latest.pth"


class _StopRequested(Exception):
    pass


class _TimeLimitReached(Exception):
    pass


class nnSAMTrainer(nnUNetTrainer):
    """nnU-Net's trainer with per-run options, per-epoch checkpoints and metrics, and a frozen SAM branch.

    The options (epochs, iterations, batch size, SAM weights) are read from
    ``nnsam_training.json`` in the fold folder, so one class serves every run
    length and both models, and nnunetv2 (including its multi-GPU launcher) can
    construct it with its usual arguments.

    Differences from ``nnUNetTrainer``:

    - a checkpoint is written atomically after every epoch;
    - each epoch appends one JSON line to ``metrics.jsonl``;
    - SAM weights are loaded after weight initialisation, and SAM parameters are
      left out of the optimiser;
    - :meth:`request_stop` (bound to SIGINT and SIGTERM by the CLI) ends the run
      after the current iteration with a checkpoint that resumes the unfinished epoch;
    - checkpoints are read with ``torch.load(weights_only=True)``.
    """

    def __init__(self, plans: dict, configuration: str, fold: int, dataset_json: dict,
                 device: torch.device = torch.device("cuda")):
        super().__init__(plans, configuration, fold, dataset_json, device)
        self.options = TrainingOptions.read(self.output_folder)
        self.num_epochs = self.options.epochs
        self.num_iterations_per_epoch = self.options.iterations_per_epoch
        self.num_val_iterations_per_epoch = self.options.validation_iterations
        self.save_every = 1
        self._stop_signal: int | None = None
        self._started_at = time.monotonic()

    # Set-up
    def _unwrapped_network(self) -> torch.nn.Module:
        module = self.network.module if self.is_ddp else self.network
        return module._orig_mod if isinstance(module, OptimizedModule) else module

    def _set_batch_size_and_oversample(self):
        super()._set_batch_size_and_oversample()
        if self.options.batch_size is not None and not self.is_ddp:
            self.batch_size = self.options.batch_size

    def initialize(self):
        super().initialize()
        network = self._unwrapped_network()
        if isinstance(network, NnSAMUNet):
            from ..network.weights import SamWeights, load_sam_state_dict, verify_weights

            options = self.options
            if options.sam_random:
                network.load_sam_weights(None, "", random=True, source="random")
            else:
                # Verified again here: the file may have changed since the run was configured.
                verify_weights(options.sam_weights_path, expected_sha256=options.sam_weights_sha256)
                weights = SamWeights(Path(options.sam_weights_path), options.sam_weights_sha256, False, "explicit")
                network.load_sam_weights(load_sam_state_dict(weights), options.sam_weights_sha256, random=False,
                                         source=options.sam_weights_path)
            self.print_to_log_file(f"SAM weights: {'seeded RANDOM' if options.sam_random else options.sam_weights_path}"
                                   f" (SHA-256 {network.recorded_sam_sha256}); fused at encoder stage "
                                   f"{network.fusion_stage}, SAM input {network.sam_encoder.input_size} px")

    def configure_optimizers(self):
        # Only trainable parameters: the frozen SAM encoder stays out of the optimiser.
        parameters = [parameter for parameter in self.network.parameters() if parameter.requires_grad]
        optimizer = torch.optim.SGD(parameters, self.initial_lr, weight_decay=self.weight_decay, momentum=0.99,
                                    nesterov=True)
        return optimizer, PolyLRScheduler(optimizer, self.initial_lr, self.num_epochs)

    def on_train_start(self):
        super().on_train_start()
        if self.local_rank == 0:
            drop_records_from(self.output_folder, self.current_epoch)

    # Stopping
    def request_stop(self, signal_number: int = signal.SIGINT) -> None:
        """Ask the run to stop after the current iteration and save a resumable checkpoint."""
        self._stop_signal = signal_number

    def on_epoch_start(self):
        limit = self.options.time_limit_minutes
        if limit is not None and time.monotonic() - self._started_at > limit * 60:
            raise _TimeLimitReached
        super().on_epoch_start()

    def train_step(self, batch: dict) -> dict:
        if self._stop_signal is not None:
            raise _StopRequested
        return super().train_step(batch)

    def validation_step(self, batch: dict) -> dict:
        if self._stop_signal is not None:
            raise _StopRequested
        return super().validation_step(batch)

    def run_training(self):
        try:
            super().run_training()
        except _StopRequested:
            self._stop_cleanly()
        except _TimeLimitReached:
            self.print_to_log_file(f"Time limit of {self.options.time_limit_minutes} min reached after "
                                   f"{self.current_epoch} epochs; ending training here.")
            self.on_train_end()
        except RuntimeError:
            # An interrupted terminal also signals the augmentation workers, which
            # then die; the network itself is intact between iterations.
            if self._stop_signal is None:
                raise
            self._stop_cleanly()

    def _stop_cleanly(self) -> None:
        # save_checkpoint stores current_epoch + 1, the next epoch to run; the
        # unfinished epoch has to run again on --continue.
        self.current_epoch -= 1
        self.save_checkpoint(os.path.join(self.output_folder, LATEST_CHECKPOINT))
        self.current_epoch += 1
        for loader in (self.dataloader_train, self.dataloader_val):
            if hasattr(loader, "_finish"):
                loader._finish()
        name = signal.Signals(self._stop_signal).name
        message = (f"Training stopped by {name} during epoch {self.current_epoch}; saved "
                   f"{os.path.join(self.output_folder, LATEST_CHECKPOINT)}. Resume with --continue.")
        self.print_to_log_file(message)
        raise TrainingInterrupted(message, self._stop_signal)

    # Checkpoints and metrics
    def save_checkpoint(self, filename: str) -> None:
        if self.local_rank != 0 or self.disable_checkpointing:
            return super().save_checkpoint(filename)
        partial = f"{filename}.partial"
        super().save_checkpoint(partial)
        os.replace(partial, filename)

    def load_checkpoint(self, filename_or_checkpoint) -> None:
        # NOTE: nnunetv2 2.8.1 reads a file name with torch.load(weights_only=False)
        # and fails on a dict despite its signature, so torch.load is replaced by the
        # weights-only loader during the call. Drop this once nnunetv2 loads safely.
        def safe_load(path, map_location=None, **_ignored):
            return load_checkpoint(path, map_location=map_location)

        if isinstance(filename_or_checkpoint, dict):
            with mock.patch.object(torch, "load", lambda *args, **kwargs: filename_or_checkpoint):
                return super().load_checkpoint("checkpoint held in memory")
        with mock.patch.object(torch, "load", safe_load):
            super().load_checkpoint(filename_or_checkpoint)

    def on_epoch_end(self):
        epoch = self.current_epoch
        super().on_epoch_end()
        if self.local_rank == 0:
            self._append_metrics(epoch)

    def _append_metrics(self, epoch: int) -> None:
        log = self.logger.get_value
        names = {value: name for name, value in self.dataset_json["labels"].items() if isinstance(value, int)}
        labels = self.label_manager.foreground_regions if self.label_manager.has_regions \
            else self.label_manager.foreground_labels
        dice = [float(value) for value in log("dice_per_class_or_region", epoch)]
        record = {
            "epoch": epoch,
            "train_loss": float(log("train_losses", epoch)),
            "val_loss": float(log("val_losses", epoch)),
            "pseudo_dice": {str(names.get(label, label)): value for label, value in zip(labels, dice)},
            "mean_pseudo_dice": float(log("mean_fg_dice", epoch)),
            "ema_pseudo_dice": float(log("ema_fg_dice", epoch)),
            "learning_rate": float(log("lrs", epoch)),
            "seconds": float(log("epoch_end_timestamps", epoch) - log("epoch_start_timestamps", epoch)),
            "time": time.time(),
            "epochs": self.num_epochs,
        }
        record = {key: (None if isinstance(value, float) and not np.isfinite(value) else value)
                  for key, value in record.items()}
        append_record(self.output_folder, record)

    # Final validation
    def perform_actual_validation(self, save_probabilities: bool = False):
        if not self.options.final_validation:
            self.print_to_log_file("Final validation skipped (final_validation is off).")
            return
        super().perform_actual_validation(save_probabilities)
