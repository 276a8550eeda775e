"""The engine stays headless and cheap to import."""

import json
import subprocess
import sys

GUI_MODULES = ("napari", "qtpy", "PyQt5", "PyQt6", "PySide2", "PySide6", "magicgui", "superqt", "napari_nnsam")


def imported_modules(code: str) -> set:
    script = code + "\nimport json, sys\nprint(json.dumps(sorted(sys.modules)))"
    output = subprocess.run([sys.executable, "-c", script], check=True, capture_output=True, text=True).stdout
    return set(json.loads(output.strip().splitlines()[-1]))


def test_engine_imports_no_gui():
    modules = imported_modules(
        "import nnsam_engine.cli.main, nnsam_engine.cli.handlers, nnsam_engine.training.trainer, "
        "nnsam_engine.inference.model, nnsam_engine.inference.predict, nnsam_engine.planning.plan, "
        "nnsam_engine.demo, nnsam_engine.evaluation.evaluate, nnsam_engine.network.weights"
    )
    loaded = [name for name in GUI_MODULES if name in modules]
    assert loaded == []


def test_engine_package_import_is_light():
    modules = imported_modules("import nnsam_engine, nnsam_engine.workspace, nnsam_engine.errors")
    assert "torch" not in modules
    assert "nnunetv2" not in modules
