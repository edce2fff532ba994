"""Small SVG charts (no plotting library): evidence charts of supervision issues and the worked
example of `docs/control-plans.md` (`python -m ecowatt_control_plan.example`)."""

from __future__ import annotations

from collections.abc import Sequence
from html import escape

WIDTH, HEIGHT = 760, 300
LEFT, RIGHT, TOP, BOTTOM = 56, 16, 40, 64
FONT = 'font-family="sans-serif" font-size="11"'


def _scale(values: Sequence[float | None]) -> float:
    top = max([v for v in values if v is not None] or [1.0])
    if top <= 0:
        return 1.0
    magnitude = 10 ** (len(str(int(top))) - 1)
    return float(-(-top // magnitude) * magnitude)


def _frame(title: str, top: float, labels: Sequence[str], every: int) -> list[str]:
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" '
        f'viewBox="0 0 {WIDTH} {HEIGHT}">',
        '<rect width="100%" height="100%" fill="white"/>',
        f'<text x="{WIDTH / 2}" y="20" text-anchor="middle" font-family="sans-serif" '
        'font-size="13">'
        f"{escape(title)}</text>",
    ]
    for i in range(5):
        value = top * i / 4
        y = TOP + plot_h - plot_h * i / 4
        out.append(
            f'<line x1="{LEFT}" y1="{y:.1f}" x2="{WIDTH - RIGHT}" y2="{y:.1f}" stroke="#e4e7eb"/>'
        )
        out.append(
            f'<text x="{LEFT - 6}" y="{y + 4:.1f}" text-anchor="end" {FONT}>{value:g}</text>'
        )
    step = plot_w / max(1, len(labels))
    for i, label in enumerate(labels):
        if i % every:
            continue
        x = LEFT + step * (i + 0.5)
        out.append(
            f'<text x="{x:.1f}" y="{HEIGHT - BOTTOM + 14}" text-anchor="middle" {FONT}>'
            f"{escape(label)}</text>"
        )
    return out


def _legend(series: Sequence[tuple[str, str]]) -> list[str]:
    out = []
    x = LEFT
    for name, color in series:
        out.append(
            f'<rect x="{x}" y="{HEIGHT - 22}" width="12" height="12" fill="{color}"/>'
            f'<text x="{x + 16}" y="{HEIGHT - 12}" {FONT}>{escape(name)}</text>'
        )
        x += 24 + 7 * len(name.encode())
    return out


def bars(
    *, title: str, labels: Sequence[str], series: Sequence[tuple[str, Sequence[float | None], str]]
) -> str:
    """Grouped bars, one group per label."""
    top = _scale([v for _, values, _ in series for v in values])
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
    out = _frame(title, top, labels, max(1, len(labels) // 12))
    step = plot_w / max(1, len(labels))
    width = step * 0.8 / max(1, len(series))
    for s, (_, values, color) in enumerate(series):
        for i, value in enumerate(values):
            if value is None:
                continue
            h = plot_h * value / top
            x = LEFT + step * i + step * 0.1 + width * s
            out.append(
                f'<rect x="{x:.1f}" y="{TOP + plot_h - h:.1f}" width="{width:.1f}" '
                f'height="{h:.1f}" fill="{color}"/>'
            )
    out += _legend([(name, color) for name, _, color in series])
    out.append("</svg>")
    return "\n".join(out)


def lines(
    *,
    title: str,
    labels: Sequence[str],
    series: Sequence[tuple[str, Sequence[float | None], str]],
    bands: Sequence[tuple[int, int, str, str]] = (),
    marks: Sequence[tuple[int, str, str]] = (),
) -> str:
    """Lines over the labels; `bands` (first, last index, label, color) shade stretches and
    `marks` (index, text, color) colour the points of single labels (verdicts)."""
    top = _scale([v for _, values, _ in series for v in values])
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
    out = _frame(title, top, labels, max(1, len(labels) // 12))
    step = plot_w / max(1, len(labels))
    for first, last, label, color in bands:
        x = LEFT + step * first
        out.append(
            f'<rect x="{x:.1f}" y="{TOP}" width="{step * (last - first + 1):.1f}" '
            f'height="{plot_h}" fill="{color}" opacity="0.35"/>'
            f'<text x="{x + 4:.1f}" y="{TOP + 12}" {FONT}>{escape(label)}</text>'
        )
    for _, values, color in series:
        points = [
            f"{LEFT + step * (i + 0.5):.1f},{TOP + plot_h - plot_h * v / top:.1f}"
            for i, v in enumerate(values)
            if v is not None
        ]
        out.append(
            f'<polyline points="{" ".join(points)}" fill="none" stroke="{color}" stroke-width="2"/>'
        )
    for index, text, color in marks:
        x = LEFT + step * (index + 0.5)
        out.append(
            f'<text x="{x:.1f}" y="{TOP + plot_h + 28}" text-anchor="middle" {FONT} '
            f'fill="{color}">{escape(text)}</text>'
        )
    out += _legend([(name, color) for name, _, color in series])
    out.append("</svg>")
    return "\n".join(out)
