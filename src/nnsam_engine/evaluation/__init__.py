"""Evaluation of predicted segmentations: Dice, HD95 and ASD per case and class."""

from .evaluate import evaluate_folders
from .metrics import dice, surface_distances

__all__ = ["dice", "evaluate_folders", "surface_distances"]
