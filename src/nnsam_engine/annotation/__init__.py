"""Prompt-based MobileSAM segmentation of 2D images and of 3D volumes slice by slice.

The napari annotation widget is built on this package; it has no GUI code.
"""
