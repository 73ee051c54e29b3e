"""The inline SVG bar chart and the percentiles behind the waits chart."""

from __future__ import annotations

from decimal import Decimal

from hms.reports.service import percentile
from hms.web.charts import bar_chart


def test_bars_carry_their_values_as_text_and_names_are_escaped():
    svg = str(
        bar_chart(
            "c",
            "Waits <today>",
            [("Dr <b>X</b>", [("p50", 10.0), ("p90", None)]), ("Cash", [("", Decimal("5"))])],
        )
    )
    assert svg.startswith(
        '<svg id="c" class="chart" role="img" aria-labelledby="c-title" aria-label="Waits &lt;today&gt;"'
    )
    assert '<title id="c-title">Waits &lt;today&gt;</title>' in svg
    assert "Dr &lt;b&gt;X&lt;/b&gt;" in svg and "<b>" not in svg
    assert ">p50 10.0</text>" in svg and ">p90 none</text>" in svg and ">5.00</text>" in svg
    assert svg.count("<rect") == 3


def test_the_longest_bar_is_the_largest_value():
    svg = str(bar_chart("c", "t", [("a", [("", 10.0)]), ("b", [("", 40.0)])]))
    widths = [float(part.split('"')[0]) for part in svg.split('width="')[2:]]
    assert widths[1] == 4 * widths[0] > 0


def test_an_empty_chart_says_so():
    assert "Nothing to show" in str(bar_chart("c", "t", []))


def test_percentiles_interpolate_like_percentile_cont():
    assert percentile([], 50) is None
    assert percentile([7.0], 90) == 7.0
    assert percentile([10, 20, 30, 60], 50) == 25.0
    assert percentile([60, 10, 30, 20], 90) == 51.0
    assert percentile([1, 2], 100) == 2.0
