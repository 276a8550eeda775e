"""Forms of the dataset widget: the new-dataset form and the label remapping dialog."""

from __future__ import annotations

from qtpy.QtCore import Signal
from qtpy.QtWidgets import (
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QFormLayout,
    QGroupBox,
    QLabel,
    QLineEdit,
    QPushButton,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)


def split_names(text: str) -> list[str]:
    """Split comma-separated names, dropping surrounding spaces and empty entries."""
    return [name.strip() for name in text.split(",") if name.strip()]


class NewDatasetForm(QGroupBox):
    """Fields for a new dataset; emits ``create_requested`` when the user clicks "Create dataset"."""

    create_requested = Signal()

    def __init__(self, parent: QWidget | None = None):
        super().__init__("New dataset", parent)
        self.id_spin = QSpinBox()
        self.id_spin.setRange(1, 999)
        self.id_spin.setToolTip("Three-digit nnU-Net dataset ID; the lowest free ID is proposed")
        self.name_edit = QLineEdit()
        self.name_edit.setPlaceholderText("Liver")
        self.name_edit.setToolTip("Letters, digits, '_' or '-'; the folder becomes DatasetXXX_Name")
        self.channels_edit = QLineEdit("MRI")
        self.channels_edit.setToolTip(
            "Input channels, comma-separated, such as 'T1, T2'. nnU-Net normalizes a channel "
            "named 'CT' with CT statistics and any other name per image (z-score)")
        self.labels_edit = QLineEdit()
        self.labels_edit.setPlaceholderText("liver, tumor")
        self.labels_edit.setToolTip("Foreground labels, comma-separated; they get the values 1, 2, ... "
                                    "and background is 0")
        self.create_button = QPushButton("Create dataset")
        self.create_button.clicked.connect(self.create_requested.emit)

        layout = QFormLayout(self)
        layout.addRow("ID", self.id_spin)
        layout.addRow("Name", self.name_edit)
        layout.addRow("Channels", self.channels_edit)
        layout.addRow("Labels", self.labels_edit)
        layout.addRow(self.create_button)

    def values(self) -> tuple[int, str, list[str], list[str]]:
        """Return the ID, name, channel names and foreground label names as entered."""
        return (self.id_spin.value(), self.name_edit.text().strip(), split_names(self.channels_edit.text()),
                split_names(self.labels_edit.text()))


class RemapDialog(QDialog):
    """Asks which declared label each undeclared value of a label file becomes."""

    def __init__(self, case: str, undeclared_values: tuple[int, ...], labels: dict[str, int],
                 parent: QWidget | None = None):
        super().__init__(parent)
        self.setWindowTitle(f"Remap label values of {case}")
        explanation = QLabel(
            f"The label file of {case} contains values that dataset.json does not declare. Choose the "
            "declared label for each value. OK rewrites the label file; the previous values are not kept.")
        explanation.setWordWrap(True)
        self.combos: dict[int, QComboBox] = {}
        form = QFormLayout()
        for value in undeclared_values:
            combo = QComboBox()
            for name, declared in sorted(labels.items(), key=lambda item: item[1]):
                combo.addItem(f"{declared}: {name}", declared)
            self.combos[value] = combo
            form.addRow(f"Value {value} becomes", combo)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel)
        buttons.accepted.connect(self.accept)
        buttons.rejected.connect(self.reject)

        layout = QVBoxLayout(self)
        layout.addWidget(explanation)
        layout.addLayout(form)
        layout.addWidget(buttons)

    def mapping(self) -> dict[int, int]:
        """Return the chosen mapping from each undeclared value to a declared one."""
        return {value: combo.currentData() for value, combo in self.combos.items()}
