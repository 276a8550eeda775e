"""Modules named in napari.yaml import quickly and without torch, nnunetv2 or SimpleITK."""

from __future__ import annotations

import importlib.util
import json
import logging
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

import napari_nnsam

logger = logging.getLogger(__name__)

MANIFEST = Path(napari_nnsam.__file__).with_name("napari.yaml")
HEAVY_MODULES = ("torch", "nnunetv2", "SimpleITK", "nibabel", "timm")
# Upper bound on importing all plugin modules after napari in a fresh interpreter, far above the
# measured times (under 0.5 s). The sys.modules check, not this bound, is what catches a torch import.
MAX_IMPORT_SECONDS = 10.0


def manifest_modules() -> list[str]:
    """Return the distinct modules of the ``python_name`` entries in the plugin manifest."""
    manifest = yaml.safe_load(MANIFEST.read_text(encoding="utf-8"))
    names = [command["python_name"].split(":")[0] for command in manifest["contributions"]["commands"]]
    return sorted(set(names))


def import_in_subprocess(modules: list[str]) -> dict:
    """Import ``modules`` in a fresh interpreter after napari and return the loaded module names and the time in s."""
    script = (
        "import json, sys, time\n"
        "import napari\n"
        "start = time.perf_counter()\n"
        f"for name in {modules!r}:\n"
        "    __import__(name)\n"
        "seconds = time.perf_counter() - start\n"
        "print(json.dumps({'seconds': seconds, 'modules': sorted(sys.modules)}))\n"
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_manifest_lists_io_modules():
    modules = manifest_modules()

    assert "napari_nnsam._reader" in modules
    assert "napari_nnsam._writer" in modules
    assert "napari_nnsam._sample_data" in modules


@pytest.mark.parametrize("module", manifest_modules())
def test_manifest_module_imports_light(module):
    if importlib.util.find_spec(module) is None:
        pytest.skip(f"{module} is named in napari.yaml but does not exist yet")

    result = import_in_subprocess([module])

    loaded = [name for name in HEAVY_MODULES if name in result["modules"]]
    assert loaded == [], f"importing {module} loaded {loaded}"


def test_manifest_modules_import_time(record_property):
    present = [module for module in manifest_modules() if importlib.util.find_spec(module) is not None]

    result = import_in_subprocess(present)

    logger.info("Imported %s in %.3f s after napari", present, result["seconds"])
    record_property("import_seconds", round(result["seconds"], 3))
    assert result["seconds"] < MAX_IMPORT_SECONDS
