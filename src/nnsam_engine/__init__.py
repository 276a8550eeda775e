"""nnsam_engine: the headless core of napari-nnsam (dataset checks, planning, nnSAM network, training, inference).

Importing this package is cheap: torch, nnunetv2 and SimpleITK are imported by
the functions that need them.
"""

__version__ = "0.1.0"
