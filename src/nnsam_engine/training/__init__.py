"""Training: nnunetv2's trainer with nnSAM's options, checkpoints and metrics."""
