"""Writing matplotlib figures: to files (``save_figure``) or as inline SVG text (``figure_svg``),
with nasp's one style (text stays text in SVG) and no timestamps, so the same run folder gives
byte-identical files.

Plots and cell diagrams both write through here; it imports nothing else of nasp's, so neither
needs the other to save a figure.
"""

from __future__ import annotations

import io
import os
import re
from collections.abc import Sequence
from pathlib import Path

import matplotlib
from matplotlib.figure import Figure

FORMATS = ("png", "svg")
# Text stays text in SVG output: searchable, selectable, and checkable by tests.
RC = {"svg.fonttype": "none", "font.size": 9, "axes.titlesize": 9, "legend.fontsize": 8}


def save_figure(fig: Figure, stem: str | os.PathLike[str],
                formats: Sequence[str] = FORMATS) -> list[Path]:
    """Write ``stem.<fmt>`` for each format (creating the folder) and return the paths."""
    stem = Path(stem)
    stem.parent.mkdir(parents=True, exist_ok=True)
    paths = []
    engine = fig.get_layout_engine()
    try:
        with matplotlib.rc_context(RC):
            for fmt in formats:
                path = stem.with_name(f"{stem.name}.{fmt}")
                fig.savefig(path, format=fmt, dpi=150, metadata=_metadata(fmt))
                paths.append(path)
                # The layout is solved; re-solving it for every format costs as much as a draw.
                fig.set_layout_engine("none")
    finally:
        fig.set_layout_engine(engine)
    return paths


def figure_svg(fig: Figure) -> str:
    """The figure as SVG text without the XML prolog, ready to inline in HTML."""
    buf = io.StringIO()
    with matplotlib.rc_context(RC):
        fig.savefig(buf, format="svg", metadata=_metadata("svg"))
    text = buf.getvalue()
    text = re.sub(r"<\?xml[^>]*\?>\s*", "", text)
    text = re.sub(r"<!DOCTYPE[^>]*>\s*", "", text)
    return re.sub(r"<metadata>.*?</metadata>\s*", "", text, flags=re.S)


def _metadata(fmt: str) -> dict[str, str | None]:
    # No timestamps: the same run folder gives byte-identical figures.
    return {"Date": None} if fmt == "svg" else {}
