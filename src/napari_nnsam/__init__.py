"""napari-nnsam: napari plugin for nnSAM; the heavy work is done by ``nnsam_engine``."""

__version__ = "0.1.0"
