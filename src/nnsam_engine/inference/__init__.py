"""Inference: nnunetv2's predictor loaded from a trained model folder with safe checkpoint loading."""
