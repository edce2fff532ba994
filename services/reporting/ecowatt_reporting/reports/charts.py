"""Charts of PDF reports (reportlab graphics, drawn as vectors into the PDF)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

__all__ = ["bar_chart", "line_chart"]

PALETTE = ("#2F6FB2", "#E07B39", "#3A9A5B", "#B23A48", "#7A5BA6")
WIDTH, HEIGHT = 500, 190


def _frame(title: str, font: str) -> Any:
    from reportlab.graphics.shapes import Drawing, String

    drawing = Drawing(WIDTH, HEIGHT)
    drawing.add(
        String(WIDTH / 2, HEIGHT - 14, title, fontName=font, fontSize=10, textAnchor="middle")
    )
    return drawing


def _legend(drawing: Any, names: Sequence[str], font: str) -> None:
    from reportlab.graphics.shapes import Rect, String
    from reportlab.lib import colors

    x = WIDTH - 12 - 70 * len(names)
    for index, name in enumerate(names):
        color = colors.HexColor(PALETTE[index % len(PALETTE)])
        # types-reportlab annotates Rect's `**kw` with the TypedDict itself (not `Unpack[...]`),
        # so no keyword argument type-checks; reportlab takes both colours.
        rect = Rect(x, HEIGHT - 30, 8, 8, fillColor=color, strokeColor=color)  # type: ignore[arg-type]
        drawing.add(rect)
        drawing.add(String(x + 11, HEIGHT - 29, name, fontName=font, fontSize=7.5))
        x += 70


def _scale(values: Sequence[Sequence[float | None]], value_max: float | None) -> float:
    top = max((v for series in values for v in series if v is not None), default=0.0)
    if value_max is not None:
        return value_max
    return top * 1.15 if top > 0 else 1.0


def bar_chart(
    title: str,
    labels: Sequence[str],
    values: Sequence[Sequence[float]],
    names: Sequence[str],
    font: str,
    *,
    value_max: float | None = None,
) -> Any:
    """Grouped vertical bars, one group per label, one bar per series."""
    from reportlab.graphics.charts.barcharts import VerticalBarChart
    from reportlab.lib import colors

    drawing = _frame(title, font)
    chart = VerticalBarChart()
    chart.x, chart.y, chart.width, chart.height = 45, 45, WIDTH - 70, HEIGHT - 85
    chart.data = [list(v) for v in values]
    chart.categoryAxis.categoryNames = [label[:8] for label in labels]
    chart.categoryAxis.labels.fontName = font
    chart.categoryAxis.labels.fontSize = 7
    chart.categoryAxis.labels.angle = 30 if len(labels) > 6 else 0
    chart.categoryAxis.labels.boxAnchor = "ne" if len(labels) > 6 else "n"
    chart.valueAxis.labels.fontName = font
    chart.valueAxis.labels.fontSize = 7
    chart.valueAxis.valueMin = 0
    chart.valueAxis.valueMax = _scale(values, value_max)
    chart.barSpacing = 1
    chart.groupSpacing = 6
    for index in range(len(values)):
        chart.bars[index].fillColor = colors.HexColor(PALETTE[index % len(PALETTE)])
        chart.bars[index].strokeColor = None
    drawing.add(chart)
    if len(names) > 1:
        _legend(drawing, names, font)
    return drawing


def line_chart(
    title: str,
    labels: Sequence[str],
    values: Sequence[Sequence[float | None]],
    names: Sequence[str],
    font: str,
) -> Any:
    """Lines over the days of the period. With a missing value (a day before any point was
    commissioned) the chart is drawn as bars instead, where the missing day has no bar:
    reportlab cannot draw a line segment of a single point."""
    from reportlab.graphics.charts.linecharts import HorizontalLineChart
    from reportlab.lib import colors

    if any(v is None for series in values for v in series):
        return bar_chart(
            title, labels, [[v or 0.0 for v in series] for series in values], names, font
        )

    drawing = _frame(title, font)
    chart = HorizontalLineChart()
    chart.x, chart.y, chart.width, chart.height = 45, 35, WIDTH - 70, HEIGHT - 75
    chart.data = [list(v) for v in values]
    step = max(len(labels) // 10, 1)
    chart.categoryAxis.categoryNames = [
        label if i % step == 0 else "" for i, label in enumerate(labels)
    ]
    chart.categoryAxis.labels.fontName = font
    chart.categoryAxis.labels.fontSize = 7
    chart.valueAxis.labels.fontName = font
    chart.valueAxis.labels.fontSize = 7
    chart.valueAxis.valueMin = 0
    chart.valueAxis.valueMax = _scale(values, None)
    chart.joinedLines = 1
    for index in range(len(values)):
        chart.lines[index].strokeColor = colors.HexColor(PALETTE[index % len(PALETTE)])
        chart.lines[index].strokeWidth = 1.4
    drawing.add(chart)
    if len(names) > 1:
        _legend(drawing, names, font)
    return drawing
