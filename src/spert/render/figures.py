"""Figures: matplotlib's object API (no pyplot, so no global state and no GUI backend), saved
atomically as PNG. They draw the plots of ``spert eval --report``
(:mod:`spert.evaluation.error_report`) and of experiment reports (:mod:`spert.experiments.grid`).

matplotlib comes with the ``experiments`` extra; it is imported when a figure is made, so that
the rest of spert runs without it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from spert.utils import atomic_write


def new_figure(
    ncols: int = 1,
    nrows: int = 1,
    width: float = 4.5,
    height: float = 4.0,
    layout: str = "constrained",
) -> tuple[Any, Any]:
    """A figure of ``nrows`` x ``ncols`` plots of ``width`` x ``height`` inches each, and its
    axes as a 2-D array (``axes[row][col]``)."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width * ncols, height * nrows), layout=layout)
    return fig, fig.subplots(nrows, ncols, squeeze=False)


def save_png(fig: Any, path: str | Path, dpi: int = 110, tight: bool = False) -> Path:
    """Write ``fig`` as a PNG atomically (a temporary file, then a rename); ``tight`` crops the
    image to what is drawn, a legend outside the axes included."""
    options: dict[str, Any] = {"bbox_inches": "tight"} if tight else {}
    return atomic_write(
        path, lambda tmp: fig.savefig(tmp, format="png", dpi=dpi, **options), suffix=".png"
    )
