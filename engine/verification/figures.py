"""Draws the plain-data figures that tasks return from `verify` (posterior predictive checks), and run plots."""

from __future__ import annotations

import base64
import io
from typing import Any, Mapping, Sequence

import matplotlib

matplotlib.use("Agg")  # no display on clusters; must precede pyplot
import matplotlib.pyplot as plt  # noqa: E402

__all__ = ["draw_task_figure", "to_png", "png_data_uri", "validate_figure"]

ROLE_STYLE = {"data": {"color": "black", "alpha": 0.85}, "model": {"color": "tab:red", "alpha": 0.9}}


def validate_figure(figure: Any) -> list[str]:
    """Returns what is wrong with a task's figure description (empty when it can be drawn)."""
    problems = []
    if not isinstance(figure, Mapping):
        return [f"a figure must be a mapping, found {type(figure).__name__}"]
    if not isinstance(figure.get("series"), Sequence) or not figure.get("series"):
        problems.append(f"figure {figure.get('title', '?')!r} has no series")
        return problems
    for series in figure["series"]:
        if not isinstance(series, Mapping) or "x" not in series or "y" not in series:
            problems.append(f"figure {figure.get('title', '?')!r}: each series needs x and y")
        elif len(series["x"]) != len(series["y"]):
            problems.append(f"figure {figure.get('title', '?')!r}: series {series.get('label')!r} has {len(series['x'])} x and {len(series['y'])} y")
    return problems


def draw_task_figure(figure: Mapping[str, Any], ax=None):
    """Draws one figure description: {"title", "xlabel", "ylabel", "series": [{"label", "x", "y", "kind", "role", "yerr"}]}.

    `"legend": "outside"` puts the legend right of the axes, for figures with many series.
    """
    outside = figure.get("legend") == "outside"
    if ax is None:
        _, ax = plt.subplots(figsize=(6.8 if outside else 5.0, 3.4))
    for series in figure["series"]:
        style = dict(ROLE_STYLE.get(series.get("role", "model"), {}))
        if series.get("color"):
            style["color"] = series["color"]
        kind = series.get("kind", "line")
        x, y, label = series["x"], series["y"], series.get("label")
        if kind == "scatter":
            ax.scatter(x, y, s=12, label=label, **style)
        elif kind == "bar":
            ax.bar(x, y, label=label, width=0.4, **style)
        elif kind == "step":
            ax.step(x, y, where="post", label=label, **style)
        else:
            ax.plot(x, y, label=label, lw=1.2, **style)
        if series.get("yerr") is not None and kind != "bar":
            ax.errorbar(x, y, yerr=series["yerr"], fmt="none", ecolor=style.get("color", "gray"), alpha=0.5)
    ax.set_title(figure.get("title", ""), fontsize=10)
    ax.set_xlabel(figure.get("xlabel", ""))
    ax.set_ylabel(figure.get("ylabel", ""))
    if any(series.get("label") for series in figure["series"]):
        if outside:
            ax.legend(fontsize=8, frameon=False, loc="upper left", bbox_to_anchor=(1.01, 1.0))
        else:
            ax.legend(fontsize=8, frameon=False)
    return ax


def to_png(fig) -> bytes:
    """Renders a matplotlib figure to PNG bytes and closes it."""
    buffer = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buffer, format="png", dpi=110)
    plt.close(fig)
    return buffer.getvalue()


def png_data_uri(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")
