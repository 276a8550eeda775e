"""nnSAM configurations derived from nnU-Net's plans."""

from __future__ import annotations

import copy
from dataclasses import dataclass

from ..errors import PlanError
from ..network import fusion

NNSAM_SUFFIX = "_nnsam"
NETWORK_CLASS_NAME = "nnsam_engine.network.nnsam_unet.NnSAMUNet"
BASE_CONFIGURATIONS = ("2d", "3d_fullres", "3d_lowres")


@dataclass(frozen=True)
class NnsamSettings:
    """User overrides for the nnSAM configurations; ``None`` keeps the planner's rule."""

    batch_size: int | None = None
    sam_input_size: int | None = None
    fusion_stage: int | None = None


def nnsam_name(base: str) -> str:
    return base + NNSAM_SUFFIX


def base_name(configuration: str) -> str:
    return configuration[: -len(NNSAM_SUFFIX)] if configuration.endswith(NNSAM_SUFFIX) else configuration


def is_nnsam(configuration: str) -> bool:
    return configuration.endswith(NNSAM_SUFFIX)


def _resolved(plans: dict, name: str) -> dict:
    """Return configuration ``name`` with nnU-Net's ``inherits_from`` chain applied."""
    configurations = plans["configurations"]
    config = copy.deepcopy(configurations[name])
    while "inherits_from" in config:
        parent = copy.deepcopy(configurations[config.pop("inherits_from")])
        parent.update(config)
        config = parent
    return config


def make_nnsam_configuration(plans: dict, base: str, settings: NnsamSettings = NnsamSettings()) -> dict:
    """Return the plans entry of the nnSAM variant of configuration ``base``.

    The entry inherits everything from ``base``, so it reuses its preprocessed
    data, and replaces the architecture with :class:`NnSAMUNet` around the
    base network, with the SAM input size, fusion stage and batch size chosen
    by the rules in :mod:`nnsam_engine.network.fusion` unless ``settings``
    overrides them.
    """
    config = _resolved(plans, base)
    architecture = config["architecture"]
    kwargs = architecture["arch_kwargs"]
    strides = kwargs["strides"]
    patch_size = config["patch_size"]
    sam_input_size = settings.sam_input_size or fusion.choose_sam_input_size(patch_size)
    if sam_input_size % 64:
        raise PlanError(f"--sam-input-size must be a multiple of 64, got {sam_input_size}; 256, 512 or 1024 are usual.")
    stage = settings.fusion_stage
    if stage is None:
        stage = fusion.choose_fusion_stage(patch_size, strides, sam_input_size)
    elif not 0 <= stage <= len(strides) - 2:
        raise PlanError(f"--fusion-stage {stage} is invalid for configuration '{base}' with {len(strides)} stages; "
                        f"expected 0 to {len(strides) - 2}.")
    batch_size = settings.batch_size or fusion.choose_nnsam_batch_size(
        config["batch_size"], patch_size, strides, stage, sam_input_size)
    nnsam_kwargs = dict(kwargs)
    nnsam_kwargs.update(base_network_class_name=architecture["network_class_name"], sam_input_size=sam_input_size,
                        fusion_stage=stage)
    return {
        "inherits_from": base,
        "batch_size": int(batch_size),
        "architecture": {
            "network_class_name": NETWORK_CLASS_NAME,
            "arch_kwargs": nnsam_kwargs,
            "_kw_requires_import": list(architecture["_kw_requires_import"]),
        },
    }


@dataclass(frozen=True)
class ConfigurationSummary:
    """What a user needs to know about one configuration of the plans."""

    name: str
    patch_size: tuple[int, ...]
    batch_size: int
    n_stages: int
    spacing: tuple[float, ...]
    fusion_stage: int | None
    fusion_stride: tuple[int, ...] | None
    sam_input_size: int | None

    def format(self) -> str:
        text = (f"{self.name:18s} patch {'x'.join(map(str, self.patch_size)):12s} batch {self.batch_size:<4d} "
                f"stages {self.n_stages}  spacing {'x'.join(f'{s:g}' for s in self.spacing)} mm")
        if self.fusion_stage is not None:
            text += (f"  SAM fused at stage {self.fusion_stage} (stride {'x'.join(map(str, self.fusion_stride))}),"
                     f" SAM input {self.sam_input_size} px")
        return text


def summarize(plans: dict, name: str) -> ConfigurationSummary:
    config = _resolved(plans, name)
    kwargs = config["architecture"]["arch_kwargs"]
    stage = kwargs.get("fusion_stage")
    stride = tuple(fusion.cumulative_strides(kwargs["strides"])[stage]) if stage is not None else None
    return ConfigurationSummary(name, tuple(config["patch_size"]), int(config["batch_size"]), int(kwargs["n_stages"]),
                                tuple(float(s) for s in config["spacing"]), stage, stride,
                                kwargs.get("sam_input_size"))
