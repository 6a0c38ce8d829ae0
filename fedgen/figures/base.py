"""What every fedgen figure shares: a headless matplotlib Figure, its data, and PNG output."""

from __future__ import annotations

import io
import textwrap
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fedgen.core.io import atomic_write_bytes

if TYPE_CHECKING:
    from matplotlib.figure import Figure

DPI = 110
PCA_MAX_CELLS = 25_000_000  # genotype cells the cohort figures use at most (200 MB as float64)
SUBTITLE_CHARS_PER_INCH = 15  # at the suptitle's 10 pt: wider subtitles wrap


@dataclass(frozen=True)
class Plot:
    """A figure and the numbers drawn in it (tests check the numbers, not the pixels).

    Attributes
    ----------
    name : str
        File stem, e.g. ``gradient_norm_histogram`` (saved as ``<name>.png``).
    figure : matplotlib.figure.Figure
    data : dict of str to Any
        The arrays and values the figure shows, by name.
    """

    name: str
    figure: Figure
    data: dict[str, Any] = field(default_factory=dict)
    # The PNG once rendered (a Plot's figure is final): the sweep summary writes each figure
    # to a file and embeds it in its report, and rendering costs ~0.2-0.4 s a figure.
    _png: list[bytes] = field(default_factory=list, repr=False, compare=False)


def new_figure(title: str, subtitle: str = "", size: tuple[float, float] = (6.4, 4.4)) -> Figure:
    """A Figure on the Agg canvas (no display, no pyplot state) with a title and subtitle.

    A subtitle longer than the figure is wide (a run's every attack and threshold) is wrapped
    onto more lines, never cut off at the edges.
    """
    # Imported here: a job hands its figures to the drawing processes and need not load
    # matplotlib itself (~0.45 s of CPU), nor does a job with figures off.
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=size, dpi=DPI, layout="constrained")
    FigureCanvasAgg(fig)
    if subtitle:
        subtitle = textwrap.fill(subtitle, width=int(size[0] * SUBTITLE_CHARS_PER_INCH))
    fig.suptitle(f"{title}\n{subtitle}" if subtitle else title, fontsize=10)
    return fig


def png_bytes(plot: Plot) -> bytes:
    """The figure as PNG bytes (rendered on the first call only)."""
    if not plot._png:
        buffer = io.BytesIO()
        plot.figure.savefig(buffer, format="png", dpi=DPI)
        plot._png.append(buffer.getvalue())
    return plot._png[0]


def save_png(plot: Plot, directory: Path) -> Path:
    """Write ``<directory>/<name>.png`` atomically and return its path."""
    path = directory / f"{plot.name}.png"
    atomic_write_bytes(path, png_bytes(plot))
    return path
