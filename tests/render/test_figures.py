"""The figure helpers: a grid of axes, and PNGs written atomically."""

from __future__ import annotations

from pathlib import Path

import pytest

from spert.render.figures import new_figure, save_png

pytest.importorskip("matplotlib")

PNG = b"\x89PNG\r\n\x1a\n"


def test_grid_of_axes_and_size() -> None:
    fig, axes = new_figure(ncols=3, nrows=2, width=2.0, height=1.5)
    assert axes.shape == (2, 3)
    assert tuple(fig.get_size_inches()) == pytest.approx((6.0, 3.0))


def size(png: bytes) -> tuple[int, int]:
    return int.from_bytes(png[16:20], "big"), int.from_bytes(png[20:24], "big")


def test_png_written_atomically(tmp_path: Path) -> None:
    sizes = {}
    for tight in (False, True):
        fig, axes = new_figure(layout="tight")
        axes[0][0].plot([0, 1], [1, 0], label="line")
        fig.legend(loc="upper center", bbox_to_anchor=(0.5, 0.0))  # below the figure
        path = tmp_path / f"out-{tight}" / "plot.png"
        assert save_png(fig, path, dpi=50, tight=tight) == path
        png = path.read_bytes()
        assert png.startswith(PNG)
        assert [p.name for p in path.parent.iterdir()] == ["plot.png"]  # no temporary file
        sizes[tight] = size(png)
    assert sizes[False] == (225, 200)  # 4.5 x 4 inches at 50 dpi
    assert sizes[True][1] > 200  # cropped to what is drawn: the legend below included
