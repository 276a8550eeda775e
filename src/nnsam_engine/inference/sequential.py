"""Case-by-case prediction in the calling process, with progress and cancellation between cases."""

from __future__ import annotations

import contextlib
import io
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from .model import LoadedModel
from .predict import _write_metadata, find_input_cases


@dataclass(frozen=True)
class CaseDone:
    """Progress of :func:`iter_predict_folder` after one case."""

    done: int
    total: int
    case: str
    output: Path


def iter_predict_folder(model: LoadedModel, input_folder: Path | str, output_folder: Path | str, *,
                        save_probabilities: bool = False) -> Iterator[CaseDone]:
    """Predict the cases of ``input_folder`` one at a time, yielding after each.

    Unlike :func:`nnsam_engine.inference.predict.predict_folder` this starts no
    worker processes, so a GUI thread can drive it and stop between cases by
    closing the generator. Each output is written to a temporary folder and moved
    into place when complete.
    """
    file_ending = model.dataset_json["file_ending"]
    cases = find_input_cases(Path(input_folder), file_ending, model.num_input_channels)
    output_folder = Path(output_folder)
    output_folder.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".partial-", dir=output_folder))
    try:
        for index, (case, files) in enumerate(cases.items()):
            # nnunetv2 reports each case on standard output; a GUI has no use for it.
            with contextlib.redirect_stdout(io.StringIO()):
                model.predictor.predict_from_files_sequential([[str(path) for path in files]], [str(staging / case)],
                                                              save_probabilities=save_probabilities, overwrite=True)
            output = output_folder / f"{case}{file_ending}"
            os.replace(staging / f"{case}{file_ending}", output)
            if save_probabilities:
                for extra in staging.glob(f"{case}.*"):
                    os.replace(extra, output_folder / extra.name)
            yield CaseDone(index + 1, len(cases), case, output)
        _write_metadata(model, output_folder)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
