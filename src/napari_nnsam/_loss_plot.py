"""Training curves: loss and pseudo-Dice per epoch, drawn from the records of ``metrics.jsonl``."""

from __future__ import annotations

from matplotlib.backends.backend_qtagg import FigureCanvasQTAgg
from matplotlib.figure import Figure

_DICE_COLOURS = ("#5fb3f9", "#f2a83b", "#7bd389", "#e26d6d", "#b38df0", "#e6d85a", "#58d6c8", "#f08dc6")


class LossPlot(FigureCanvasQTAgg):
    """Two stacked plots: training and validation loss, and the validation pseudo-Dice of each class.

    Parameters
    ----------
    background, foreground : str
        Colours of the figure and of its text and axes, so the plot matches the napari theme.
    """

    def __init__(self, background: str = "#262930", foreground: str = "#f0f1f2"):
        self.figure = Figure(figsize=(4.0, 4.2), layout="constrained", facecolor=background)
        super().__init__(self.figure)
        self._background = background
        self._foreground = foreground
        self.loss_axes, self.dice_axes = self.figure.subplots(2, 1, sharex=True)
        self._records: list[dict] = []
        self._draw_records()

    def show_records(self, records: list[dict]) -> None:
        """Redraw the curves from epoch records (dicts with ``epoch``, ``train_loss``, ``val_loss``, ``pseudo_dice``).

        Nothing is redrawn when the records are those already shown.
        """
        if records == self._records:
            return
        self._records = list(records)
        self._draw_records()

    def plotted_epochs(self) -> list[int]:
        """Return the epochs on the loss plot, oldest first."""
        return [record["epoch"] for record in self._records]

    def _draw_records(self) -> None:
        epochs = [record["epoch"] for record in self._records]
        self.loss_axes.clear()
        self.dice_axes.clear()
        if epochs:
            self.loss_axes.plot(epochs, [record.get("train_loss") for record in self._records], "o-",
                                color="#5fb3f9", label="training loss", markersize=3)
            self.loss_axes.plot(epochs, [record.get("val_loss") for record in self._records], "o--",
                                color="#f2a83b", label="validation loss", markersize=3)
            class_names = list(self._records[-1].get("pseudo_dice") or {})
            for index, name in enumerate(class_names):
                values = [(record.get("pseudo_dice") or {}).get(name) for record in self._records]
                self.dice_axes.plot(epochs, values, "o-", color=_DICE_COLOURS[index % len(_DICE_COLOURS)],
                                    label=name, markersize=3)
        else:
            self.loss_axes.text(0.5, 0.5, "Curves appear after the first epoch", ha="center", va="center",
                                transform=self.loss_axes.transAxes, color=self._foreground)
        self.loss_axes.set_ylabel("loss")
        self.dice_axes.set_ylabel("pseudo-Dice")
        self.dice_axes.set_xlabel("epoch")
        self.dice_axes.set_ylim(0.0, 1.0)
        for axes in (self.loss_axes, self.dice_axes):
            self._style(axes)
        self.draw_idle()

    def _style(self, axes) -> None:
        axes.set_facecolor(self._background)
        axes.tick_params(colors=self._foreground, labelsize=8)
        axes.xaxis.label.set_color(self._foreground)
        axes.yaxis.label.set_color(self._foreground)
        for spine in axes.spines.values():
            spine.set_color(self._foreground)
        axes.grid(True, alpha=0.2)
        if axes.lines:
            # Integer epochs only: a fractional epoch tick would mean nothing.
            axes.xaxis.get_major_locator().set_params(integer=True)
            legend = axes.legend(fontsize=7, facecolor=self._background, edgecolor=self._foreground,
                                 labelcolor=self._foreground)
            legend.get_frame().set_alpha(0.8)
