"""Cell diagrams drawn with matplotlib from a :class:`~nasp.viz.cell_layout.CellLayout`.

Every length is in inches: each cell gets an axes whose data units are inches, so a label's box
from the layout is the box its text occupies and the figure is exactly as large as the layout.
Edges are coloured by operation family (all separable convolutions one colour, all poolings
another...), the family legend under the cells; an edge's label sits on the edge, in the edge's
colour. ``none`` edges (NAS-Bench-201's removed edges) are drawn dashed and grey.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from functools import lru_cache

import matplotlib
from matplotlib.backends.backend_agg import FigureCanvasAgg, RendererAgg
from matplotlib.figure import Figure
from matplotlib.font_manager import FontProperties
from matplotlib.lines import Line2D
from matplotlib.patches import FancyBboxPatch, PathPatch, Polygon
from matplotlib.path import Path as MplPath

from nasp.viz.cell_layout import CellGraph, CellLayout, layout_cell

FONT = {"node": 9.5, "label": 8.0, "title": 10.0, "legend": 8.0}
BOX_COLORS = {"input": "#cfe8cf", "node": "#cfe0f5", "output": "#f5e6b8"}
# Okabe-Ito colours: distinguishable with the common colour-vision deficiencies
FAMILY_COLORS = {
    "sep conv": "#0072B2",
    "dil conv": "#009E73",
    "conv": "#CC79A7",
    "pool": "#D55E00",
    "skip / identity": "#E69F00",
    "none": "#9A9A9A",
    "tanh": "#0072B2",
    "relu": "#D55E00",
    "sigmoid": "#009E73",
    "other": "#555555",
    "": "#8C8C8C",  # unlabelled connections (cell output, x_t and h_{t-1})
}
_MARGIN = 0.12
_TITLE_H = 0.30
_LEGEND_H = 0.34
_RC = {"svg.fonttype": "none"}


def op_family(op: str | None) -> str:
    """The colour group of an operation name, by the naming conventions of the DARTS spaces,
    NASP's and NAS-Bench-201's (unknown names share one colour rather than failing)."""
    if op is None:
        return ""
    name = op.lower()
    if name in ("none", "zero"):
        return "none"
    if name in ("skip_connect", "identity", "skip"):
        return "skip / identity"
    if "pool" in name:
        return "pool"
    if name.startswith("sep_conv"):
        return "sep conv"
    if name.startswith("dil_conv"):
        return "dil conv"
    if "conv" in name:
        return "conv"
    if name in ("tanh", "relu", "sigmoid"):
        return name
    return "other"


def _display(text: str) -> str:
    """State names written with TeX subscripts (c_{k-2}, h_{t-1}) are set as math."""
    return f"${text}$" if re.fullmatch(r"[A-Za-z]_\{[^{}$\\]*\}", text) else text


@lru_cache(maxsize=4096)
def _text_size(text: str, role: str) -> tuple[float, float]:
    renderer = _renderer()
    shown = _display(text) if role == "node" else text
    w, h, _ = renderer.get_text_width_height_descent(shown, FontProperties(size=FONT[role]),
                                                     ismath=shown != text)
    return w / renderer.dpi, h / renderer.dpi


@lru_cache(maxsize=1)
def _renderer() -> RendererAgg:
    return RendererAgg(1, 1, 720)  # 720 dpi: metrics to a tenth of a point


def cell_layouts(graphs: Sequence[CellGraph]) -> list[CellLayout]:
    return [layout_cell(g, _text_size) for g in graphs]


def _tint(color: str, amount: float = 0.86) -> tuple[float, float, float]:
    r, g, b = matplotlib.colors.to_rgb(color)
    return (r + (1 - r) * amount, g + (1 - g) * amount, b + (1 - b) * amount)


def _edge_path(points: list[tuple[float, float]]) -> MplPath:
    """Straight runs through columns, S-curves with level ends between them."""
    verts, codes = [points[0]], [MplPath.MOVETO]
    for (x0, y0), (x1, y1) in zip(points, points[1:]):
        if abs(y1 - y0) < 1e-6:
            verts.append((x1, y1))
            codes.append(MplPath.LINETO)
        else:
            mid = (x1 - x0) / 2
            verts += [(x0 + mid, y0), (x1 - mid, y1), (x1, y1)]
            codes += [MplPath.CURVE4] * 3
    return MplPath(verts, codes)


def _add(ax, patch) -> None:
    """Add without ``add_patch``'s data-limit update, which costs more than the drawing on
    curved paths; the axes limits are set from the layout anyway."""
    ax.add_artist(patch)


def draw_layout(ax, layout: CellLayout, top: float) -> None:
    """Draw ``layout`` on ``ax`` (data units inches, y down) with its top at ``top``."""
    arrow = 0.075
    for e in layout.edges:
        family = op_family(e.op)
        color = FAMILY_COLORS.get(family, FAMILY_COLORS["other"])
        pts = [(x, y + top) for x, y in e.points]
        tip = pts[-1]
        pts[-1] = (tip[0] - arrow, tip[1])
        _add(ax, PathPatch(_edge_path(pts), fill=False, edgecolor=color,
                               linewidth=1.0 if e.op is None else 1.4,
                               linestyle="--" if family == "none" else "-", zorder=1,
                               capstyle="butt"))
        _add(ax, Polygon([tip, (tip[0] - arrow, tip[1] - arrow / 2.2),
                              (tip[0] - arrow, tip[1] + arrow / 2.2)], closed=True,
                             facecolor=color, edgecolor="none", zorder=2))
    for v in layout.vertices:
        if v.kind == "dummy":
            continue
        x, y = v.x, v.y + top
        if v.kind == "label":
            color = FAMILY_COLORS.get(op_family(v.op), FAMILY_COLORS["other"])
            _add(ax, FancyBboxPatch(
                (x - v.width / 2 + 0.03, y - v.height / 2 + 0.03), v.width - 0.06,
                v.height - 0.06, boxstyle="round,pad=0.03,rounding_size=0.05",
                facecolor=_tint(color), edgecolor=color, linewidth=0.8, zorder=3))
            ax.text(x, y, v.text, ha="center", va="center_baseline", fontsize=FONT["label"],
                    color="#1a1a1a", zorder=4)
        else:
            _add(ax, FancyBboxPatch(
                (x - v.width / 2 + 0.04, y - v.height / 2 + 0.04), v.width - 0.08,
                v.height - 0.08, boxstyle="round,pad=0.04,rounding_size=0.08",
                facecolor=BOX_COLORS[v.kind], edgecolor="#4d4d4d", linewidth=1.0, zorder=3))
            ax.text(x, y, _display(v.text), ha="center", va="center", fontsize=FONT["node"],
                    color="#1a1a1a", zorder=4)


def cell_figure(graphs: Sequence[CellGraph], layouts: Sequence[CellLayout] | None = None
                ) -> Figure:
    """One figure with every cell of ``graphs`` stacked top to bottom, titled, and a legend of
    the operation families that occur."""
    layouts = list(layouts) if layouts is not None else cell_layouts(graphs)
    width = max(lay.width for lay in layouts) + 2 * _MARGIN
    heights = [_TITLE_H + lay.height for lay in layouts]
    present = {op_family(e.op) for lay in layouts for e in lay.edges}
    families = [f for f in FAMILY_COLORS if f and f in present]  # one order in every figure
    legend_rows = 1 + (len(families) > 0 and sum(len(f) + 4 for f in families) * 0.075 > width)
    height = sum(heights) + _MARGIN * (len(layouts) + 1) + _LEGEND_H * legend_rows * bool(families)
    with matplotlib.rc_context(_RC):
        fig = Figure(figsize=(width, height))
        FigureCanvasAgg(fig)
        y = _MARGIN
        for lay, h in zip(layouts, heights):
            ax = fig.add_axes((0, 1 - (y + h) / height, 1, h / height))
            ax.set_xlim(-_MARGIN, width - _MARGIN)
            ax.set_ylim(h, 0)
            ax.set_axis_off()
            ax.text(0, 0.04, lay.graph.title, ha="left", va="top", fontsize=FONT["title"],
                    fontweight="bold", color="#333333")
            draw_layout(ax, lay, _TITLE_H)
            y += h + _MARGIN
        if families:
            handles = [Line2D([], [], color=FAMILY_COLORS[f], linewidth=2,
                              linestyle="--" if f == "none" else "-") for f in families]
            fig.legend(handles, families, loc="lower center", ncols=-(-len(families)
                                                                   // legend_rows),
                       frameon=False, fontsize=FONT["legend"], handlelength=1.6,
                       columnspacing=1.2, bbox_to_anchor=(0.5, 0.0))
    return fig
