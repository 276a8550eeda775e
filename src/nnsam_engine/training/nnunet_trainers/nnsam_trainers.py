"""Entry module for nnunetv2's trainer lookup (``nnUNet_extTrainer`` points at this folder).

nnunetv2 imports the files of that folder as top-level modules, so this module
uses an absolute import.
"""

from nnsam_engine.training.trainer import nnSAMTrainer

__all__ = ["nnSAMTrainer"]
