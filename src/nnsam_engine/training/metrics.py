"""Reading the per-epoch metrics file that training appends to."""

from __future__ import annotations

import json
import os
from pathlib import Path

METRICS_FILE = "metrics.jsonl"


def read_metrics(fold_folder: Path | str) -> list[dict]:
    """Return the epoch records of ``fold_folder/metrics.jsonl``, oldest first.

    A last line still being written is skipped, so the file can be read while
    training runs. A missing file gives an empty list.
    """
    path = Path(fold_folder) / METRICS_FILE
    if not path.is_file():
        return []
    records = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return records


def estimate_seconds_left(records: list[dict]) -> float | None:
    """Return the time left from the mean epoch time of the last five epochs, or None before the first."""
    if not records:
        return None
    recent = [record["seconds"] for record in records[-5:] if record.get("seconds")]
    if not recent:
        return None
    remaining = max(0, int(records[-1].get("epochs", 0)) - records[-1]["epoch"] - 1)
    return remaining * sum(recent) / len(recent)


def append_record(fold_folder: Path | str, record: dict) -> None:
    """Append one epoch record as a JSON line."""
    with open(Path(fold_folder) / METRICS_FILE, "a", encoding="utf-8") as stream:
        stream.write(json.dumps(record) + "\n")


def drop_records_from(fold_folder: Path | str, first_epoch: int) -> None:
    """Remove the records of ``first_epoch`` and later, atomically; used when training resumes."""
    path = Path(fold_folder) / METRICS_FILE
    if not path.is_file():
        return
    kept = [record for record in read_metrics(fold_folder) if record["epoch"] < first_epoch]
    partial = path.with_suffix(".jsonl.partial")
    partial.write_text("".join(json.dumps(record) + "\n" for record in kept), encoding="utf-8")
    os.replace(partial, path)
