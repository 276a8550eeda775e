"""Fingerprint, plans and preprocessing through nnunetv2, plus the nnSAM configurations."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Sequence

from ..atomic import write_json_atomic
from ..dataset.check import require_valid_dataset
from ..dataset.locate import DatasetRef
from ..errors import PlanError
from ..workspace import Workspace, activated
from .configurations import (BASE_CONFIGURATIONS, ConfigurationSummary, NnsamSettings, base_name,
                             make_nnsam_configuration, nnsam_name, summarize)

logger = logging.getLogger(__name__)

PLANS_IDENTIFIER = "nnUNetPlans"


def plans_path(workspace: Workspace, dataset: DatasetRef) -> Path:
    return workspace.preprocessed / dataset.name / f"{PLANS_IDENTIFIER}.json"


def load_plans(workspace: Workspace, dataset: DatasetRef) -> dict:
    """Return the dataset's plans; raise PlanError naming the command to run if there are none."""
    path = plans_path(workspace, dataset)
    if not path.is_file():
        raise PlanError(f"No plans for {dataset.name} in {path.parent}. Run `nnsam plan {dataset.name}` first.")
    return json.loads(path.read_text(encoding="utf-8"))


def plan_dataset(dataset: DatasetRef, workspace: Workspace, configurations: Sequence[str] = ("2d", "3d_fullres"), *,
                 settings: NnsamSettings = NnsamSettings(), num_processes: int | None = None,
                 gpu_memory_target_gb: float | None = None, preprocess: bool = True) -> list[ConfigurationSummary]:
    """Plan and preprocess ``dataset`` and add an nnSAM variant of each base configuration.

    Parameters
    ----------
    dataset : DatasetRef
        The raw dataset; it is checked first and planning stops on errors.
    workspace : Workspace
        Where plans, preprocessed data and later results go.
    configurations : sequence of str
        Base configurations (``2d``, ``3d_fullres``, ``3d_lowres``) or their
        ``_nnsam`` variants; both are planned in either case. A ``3d`` configuration
        that nnU-Net does not create for this dataset (such as ``3d_lowres`` for
        small images) is skipped with a warning.
    settings : NnsamSettings
        Overrides of the nnSAM batch size, SAM input size and fusion stage.
    num_processes : int, optional
        Worker processes for fingerprinting and preprocessing; CPU count by default.
    gpu_memory_target_gb : float, optional
        nnU-Net's GPU memory target for its planner (8 GB by default).
    preprocess : bool
        Whether to run preprocessing after planning.

    Returns
    -------
    list of ConfigurationSummary
        The base and nnSAM configurations, in the order requested.
    """
    from ..workspace import worker_environment

    require_valid_dataset(dataset.raw_folder)
    bases = _requested_bases(configurations)
    workers = num_processes or int(worker_environment()["nnUNet_def_n_proc"])
    workspace.create()
    with activated(workspace):
        from nnunetv2.experiment_planning.plan_and_preprocess_api import (extract_fingerprints, plan_experiments,
                                                                          preprocess as run_preprocessing)

        logger.info("Extracting the dataset fingerprint of %s", dataset.name)
        extract_fingerprints([dataset.dataset_id], num_processes=workers, check_dataset_integrity=False,
                             clean=True, verbose=False)
        logger.info("Planning %s", dataset.name)
        plan_experiments([dataset.dataset_id], gpu_memory_target_in_gb=gpu_memory_target_gb)
        plans = load_plans(workspace, dataset)
        available = [base for base in bases if base in plans["configurations"]]
        for base in bases:
            if base not in available:
                logger.warning("nnU-Net made no '%s' configuration for %s (available: %s); skipping it.", base,
                               dataset.name, ", ".join(plans["configurations"]))
        if not available:
            raise PlanError(f"None of the requested configurations {list(bases)} exist for {dataset.name}; "
                            f"nnU-Net planned {list(plans['configurations'])}.")
        for base in available:
            plans["configurations"][nnsam_name(base)] = make_nnsam_configuration(plans, base, settings)
        write_json_atomic(plans_path(workspace, dataset), plans)
        if preprocess:
            logger.info("Preprocessing %s: %s", dataset.name, ", ".join(available))
            run_preprocessing([dataset.dataset_id], PLANS_IDENTIFIER, list(available),
                              num_processes=[workers] * len(available), verbose=False)
    summaries = []
    for base in available:
        summaries += [summarize(plans, base), summarize(plans, nnsam_name(base))]
    return summaries


def _requested_bases(configurations: Sequence[str]) -> list[str]:
    bases: list[str] = []
    for name in configurations:
        base = base_name(name)
        if base not in BASE_CONFIGURATIONS:
            raise PlanError(f"Unknown configuration '{name}'; expected one of "
                            f"{', '.join(BASE_CONFIGURATIONS)} or their '_nnsam' variants.")
        if base not in bases:
            bases.append(base)
    return bases
