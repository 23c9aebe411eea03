"""The SVG charts' geometry (connector/console/charts.py): round gridlines, columns in scale, and
a waterfall whose movements float from the running total."""

from __future__ import annotations

from decimal import Decimal

import pytest

from connector.console import charts


@pytest.mark.parametrize(("top", "step"), [
    (Decimal("5101.91"), Decimal(2000)), (Decimal(61222), Decimal(20000)), (Decimal("0.9"), Decimal("0.25")),
    (Decimal(400), Decimal(100)), (Decimal(0), Decimal(1)),
])
def test_gridlines_fall_on_round_amounts(top, step):
    assert charts.nice_step(top) == step


def _labels(value: Decimal) -> str:
    return format(value, "f")


def test_a_month_chart_scales_columns_and_marks_an_unknown_month():
    chart = charts.month_chart([("2026-11", Decimal(100)), ("2026-12", None), ("2027-01", Decimal(400))],
                               value_label=_labels, title=_labels, axis_label=_labels, month_label=lambda m: m[5:],
                               year_label=lambda m: m[:4])
    assert [t.label for t in chart.ticks] == ["0", "100", "200", "300", "400"]
    first, missing, last = chart.columns
    assert Decimal(last.height) == 4 * Decimal(first.height)
    assert missing.kind == "missing" and missing.height == "0.0" and missing.title == "—"
    assert (first.label, last.label) == ("", "400")  # only the last month carries its value
    assert [c.sub_label for c in chart.columns] == ["2026", "", "2027"]


def test_a_waterfall_floats_each_movement_from_the_running_total():
    steps = [charts.Step("opening", "Opening", Decimal(300), "total"), charts.Step("new", "New", Decimal(100), "up"),
             charts.Step("churn", "Churn", Decimal(50), "down"), charts.Step("closing", "Closing", Decimal(350), "total")]
    chart = charts.waterfall_chart(steps, value_label=_labels, axis_label=_labels)
    opening, new, churn, closing = chart.columns
    assert new.y < opening.y and Decimal(new.y) + Decimal(new.height) == pytest.approx(Decimal(opening.y), abs=1)
    assert churn.y == new.y  # churn hangs from the top reached after the new MRR
    assert Decimal(closing.y) == pytest.approx(Decimal(churn.y) + Decimal(churn.height), abs=1)
    assert [c.label for c in chart.columns] == ["300", "+100", "−50", "350"]


def test_a_forecast_chart_draws_its_band_around_the_expected_line():
    points = [("2026-12", Decimal(400), Decimal(380), Decimal(360), Decimal(400)),
              ("2027-01", Decimal(200), Decimal(180), Decimal(100), Decimal(200))]
    chart = charts.band_chart(points, value_label=_labels, title=lambda c, e, lo, hi: f"{e} ({lo}-{hi}) {c}",
                              axis_label=_labels, month_label=lambda m: m[5:], year_label=lambda m: m[:4])
    base, top = Decimal(chart.baseline), Decimal(chart.ticks[-1].y)

    def y(value):  # the ticks run 0 to 400
        return base - (base - top) * value / 400

    def ys(points_text):
        return [Decimal(p.split(",")[1]) for p in points_text.split()]

    assert [t.label for t in chart.ticks] == ["0", "100", "200", "300", "400"]
    assert ys(chart.line) == [y(Decimal(380)).quantize(Decimal("0.1")), y(Decimal(180)).quantize(Decimal("0.1"))]
    # The band: the highs left to right, then the lows back.
    assert ys(chart.band) == [y(v).quantize(Decimal("0.1")) for v in (Decimal(400), Decimal(200), Decimal(100),
                                                                       Decimal(360))]
    assert ys(chart.second_line) == [y(Decimal(400)).quantize(Decimal("0.1")), y(Decimal(200)).quantize(Decimal("0.1"))]
    assert [c.label for c in chart.columns] == ["", "180"]
    assert chart.columns[0].title == "380 (360-400) 400" and [c.sub_label for c in chart.columns] == ["2026", "2027"]
