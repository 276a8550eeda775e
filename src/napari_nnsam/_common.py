"""Controls shared by the plugin's widgets."""

from __future__ import annotations

from pathlib import Path

from qtpy.QtCore import QSettings, Signal
from qtpy.QtWidgets import (
    QComboBox,
    QFileDialog,
    QHBoxLayout,
    QLineEdit,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

_SETTINGS_KEY = "napari-nnsam/workspace"


#: Layer metadata key that marks the prompt and preview layers of the SAM annotation widget.
SAM_ROLE_KEY = "nnsam_sam_role"


def default_workspace_folder() -> str:
    """Return the last workspace the user chose, else the engine's default root."""
    stored = QSettings("napari-nnsam", "napari-nnsam").value(_SETTINGS_KEY, "")
    if stored:
        return str(stored)
    from nnsam_engine.workspace import default_workspace_root

    return str(default_workspace_root())


class WorkspaceDatasetPicker(QWidget):
    """A workspace folder and a dataset of its ``nnUNet_raw`` folder.

    Emits ``changed`` when either changes. ``workspace()`` returns the engine's
    :class:`~nnsam_engine.workspace.Workspace` for the folder, ``dataset_name()``
    the chosen ``DatasetXXX_Name`` or an empty string.
    """

    changed = Signal()

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.folder_edit = QLineEdit(default_workspace_folder())
        self.folder_edit.setToolTip("Folder with nnUNet_raw, nnUNet_preprocessed and nnUNet_results")
        browse = QPushButton("Browse…")
        browse.clicked.connect(self._browse)
        self.dataset_combo = QComboBox()
        self.dataset_combo.setToolTip("Datasets in the workspace's nnUNet_raw folder")
        refresh = QPushButton("Refresh")
        refresh.clicked.connect(self.refresh)

        folder_row = QHBoxLayout()
        folder_row.addWidget(self.folder_edit)
        folder_row.addWidget(browse)
        dataset_row = QHBoxLayout()
        dataset_row.addWidget(self.dataset_combo, 1)
        dataset_row.addWidget(refresh)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addLayout(folder_row)
        layout.addLayout(dataset_row)

        self.folder_edit.editingFinished.connect(self._folder_changed)
        self.dataset_combo.currentIndexChanged.connect(lambda _index: self.changed.emit())
        self.refresh()

    def workspace(self):
        from nnsam_engine.workspace import Workspace

        return Workspace.resolve(self.folder_edit.text().strip() or None)

    def dataset_name(self) -> str:
        return self.dataset_combo.currentText()

    def set_workspace_folder(self, folder: str | Path) -> None:
        self.folder_edit.setText(str(folder))
        self._folder_changed()

    def refresh(self, select: str | None = None) -> None:
        """List the datasets of the raw folder again, keeping or setting the selection."""
        current = select or self.dataset_combo.currentText()
        raw = self.workspace().raw
        names = sorted(path.name for path in raw.iterdir() if path.is_dir() and path.name.startswith("Dataset")) \
            if raw.is_dir() else []
        self.dataset_combo.blockSignals(True)
        self.dataset_combo.clear()
        self.dataset_combo.addItems(names)
        if current in names:
            self.dataset_combo.setCurrentText(current)
        self.dataset_combo.blockSignals(False)
        self.changed.emit()

    def _browse(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Choose the nnSAM workspace folder", self.folder_edit.text())
        if folder:
            self.set_workspace_folder(folder)

    def _folder_changed(self) -> None:
        QSettings("napari-nnsam", "napari-nnsam").setValue(_SETTINGS_KEY, self.folder_edit.text().strip())
        self.refresh()
