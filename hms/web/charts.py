"""Small charts drawn on the server as inline SVG (no script, no CDN, nothing for the CSP
to block: geometry is in attributes, colours in classes of reports.css).

Every bar carries its label and value as text, so nothing is said by colour alone; the
chart has a <title> and an aria-label, and the page shows the same numbers in a table.
"""

from __future__ import annotations

from collections.abc import Sequence
from decimal import Decimal

from markupsafe import Markup, escape

Bar = tuple[str, float | Decimal | None]  # (series, value); None: no value
Group = tuple[str, Sequence[Bar]]  # (label, its bars)

WIDTH = 640
LABEL_WIDTH = 170
VALUE_ROOM = 150  # text after the longest bar
BAR_HEIGHT = 18
BAR_GAP = 4
GROUP_GAP = 12
TOP = 8


def bar_chart(chart_id: str, title: str, groups: Sequence[Group], *, unit: str = "") -> Markup:
    """A horizontal bar chart: one group of bars per label (e.g. p50 and p90 per doctor),
    each bar with "series value unit" written after it."""
    values = [float(value) for _, bars in groups for _, value in bars if value is not None]
    top = max(values, default=0.0)
    scale = (WIDTH - LABEL_WIDTH - VALUE_ROOM) / top if top > 0 else 0.0
    parts: list[str] = []
    y = TOP
    for label, bars in groups:
        group_height = len(bars) * (BAR_HEIGHT + BAR_GAP) - BAR_GAP
        parts.append(
            f'<text class="chart-label" x="{LABEL_WIDTH - 8}" y="{y + group_height / 2 + 5:.0f}" '
            f'text-anchor="end">{escape(_shorten(label))}</text>'
        )
        for index, (series, value) in enumerate(bars):
            length = float(value) * scale if value is not None else 0.0
            text = f"{series} {_number(value)}{(' ' + unit) if unit and value is not None else ''}".strip()
            parts.append(
                f'<rect class="chart-bar chart-series-{index}" x="{LABEL_WIDTH}" y="{y}" '
                f'width="{length:.1f}" height="{BAR_HEIGHT}"></rect>'
                f'<text class="chart-value" x="{LABEL_WIDTH + length + 6:.1f}" y="{y + BAR_HEIGHT - 4}">'
                f"{escape(text)}</text>"
            )
            y += BAR_HEIGHT + BAR_GAP
        y += GROUP_GAP - BAR_GAP
    if not groups:
        parts.append(f'<text class="chart-value" x="{LABEL_WIDTH}" y="{TOP + 14}">Nothing to show</text>')
        y += BAR_HEIGHT + GROUP_GAP
    height = max(y, TOP + BAR_HEIGHT + GROUP_GAP)
    title_id = f"{chart_id}-title"
    return Markup(
        f'<svg id="{escape(chart_id)}" class="chart" role="img" aria-labelledby="{escape(title_id)}" '
        f'aria-label="{escape(title)}" viewBox="0 0 {WIDTH} {height}" width="{WIDTH}" height="{height}" '
        f'xmlns="http://www.w3.org/2000/svg"><title id="{escape(title_id)}">{escape(title)}</title>'
        f"{''.join(parts)}</svg>"
    )


def _number(value: float | Decimal | None) -> str:
    if value is None:
        return "none"
    if isinstance(value, Decimal):
        return f"{value:.2f}"
    return f"{value:.1f}"


def _shorten(label: str, limit: int = 22) -> str:
    return label if len(label) <= limit else label[: limit - 1] + "…"
