"""Charts drawn on the server as inline SVG (the console's Content-Security-Policy allows no inline
script, and a chart needs none): the geometry of a column or line chart over months, and of a
waterfall. Coordinates are computed with ``Decimal`` and written with one decimal; labels are
formatted by the caller in the user's language, so this module knows nothing of money or locales.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from decimal import ROUND_CEILING, ROUND_HALF_UP, Decimal

ZERO = Decimal(0)
ONE_PLACE = Decimal("0.1")
#: Drawing area of a chart, in SVG units (the SVG scales to its box): a month chart fills half the
#: page, a waterfall three fifths of it.
MONTH_WIDTH, WATERFALL_WIDTH, HEIGHT = Decimal(540), Decimal(640), Decimal(290)
LEFT, RIGHT, TOP, BOTTOM = Decimal(64), Decimal(10), Decimal(24), Decimal(42)
TICKS = 4


def px(value: Decimal) -> str:
    return format(value.quantize(ONE_PLACE, ROUND_HALF_UP), "f")


@dataclass(frozen=True)
class Tick:
    y: str
    label: str


@dataclass(frozen=True)
class Column:
    x: str  # left edge
    y: str  # top edge
    width: str
    height: str
    centre: str
    label_y: str  # where the value's label sits (above the column)
    label: str  # the formatted value ("—" when unknown)
    axis_label: str  # the category under the axis
    href: str | None = None
    kind: str = ""  # a CSS class: up, down, total, missing
    title: str = ""  # the full value, shown on hover
    sub_label: str = ""  # a second line under the category (the year of a month chart)
    label_end: str = ""  # when set, the value's label ends there instead of centring on the column


@dataclass(frozen=True)
class Chart:
    width: str
    height: str
    plot_left: str
    plot_right: str
    baseline: str
    ticks: tuple[Tick, ...]
    columns: tuple[Column, ...]
    line: str  # SVG polyline points ("" for a column chart)
    band: str = ""  # SVG polygon points of a band (low to high), "" without one
    second_line: str = ""  # SVG polyline points of a second, dashed line

    @property
    def tick_x(self) -> str:
        return px(LEFT - 8)

    @property
    def category_y(self) -> str:
        return px(HEIGHT - BOTTOM + 17)

    @property
    def sub_label_y(self) -> str:
        return px(HEIGHT - BOTTOM + 32)


def nice_step(top: Decimal, ticks: int = TICKS) -> Decimal:
    """A round gridline step (1, 2, 2.5 or 5 × a power of ten) so that ``ticks`` steps reach ``top``."""
    if top <= 0:
        return Decimal(1)
    raw = top / ticks
    power = Decimal(10) ** (raw.adjusted())
    for factor in (Decimal(1), Decimal(2), Decimal("2.5"), Decimal(5), Decimal(10)):
        if raw <= factor * power:
            return factor * power
    return Decimal(10) * power  # pragma: no cover - the loop always ends at factor 10


def _scale(top: Decimal) -> tuple[Decimal, Decimal]:
    step = nice_step(top)
    ceiling = (top / step).to_integral_value(ROUND_CEILING) * step if top > 0 else step * TICKS
    return step, max(ceiling, step)


def _ticks(step: Decimal, ceiling: Decimal, y_of: Callable[[Decimal], Decimal],
           label: Callable[[Decimal], str]) -> tuple[Tick, ...]:
    out = []
    value = ZERO
    while value <= ceiling:
        out.append(Tick(px(y_of(value)), label(value)))
        value += step
    return tuple(out)


def month_chart(points: Sequence[tuple[str, Decimal | None]], *, value_label: Callable[[Decimal], str],
                title: Callable[[Decimal], str], axis_label: Callable[[Decimal], str],
                month_label: Callable[[str], str], year_label: Callable[[str], str], line: bool = False) -> Chart:
    """Columns (or a line) of one value per month, the last one labelled with its value (every
    one has it as its title); a month whose value is unknown has no column and the label "—".
    Under each month its name, and its year under the first month and each January."""
    known = [v for _, v in points if v is not None]
    step, ceiling = _scale(max(known, default=ZERO))
    width = MONTH_WIDTH
    plot_height = HEIGHT - TOP - BOTTOM
    plot_width = width - LEFT - RIGHT
    base = HEIGHT - BOTTOM

    def y_of(value: Decimal) -> Decimal:
        return base - plot_height * value / ceiling

    slot = plot_width / max(len(points), 1)
    bar = slot * Decimal("0.62")
    columns = []
    vertices = []
    for index, (month, value) in enumerate(points):
        centre = LEFT + slot * index + slot / 2
        top = y_of(value) if value is not None else base
        last = index == len(points) - 1
        columns.append(Column(x=px(centre - bar / 2), y=px(top), width=px(bar), height=px(base - top),
                              centre=px(centre), label_y=px(top - 8), axis_label=month_label(month),
                              label="—" if value is None else value_label(value) if last else "",
                              kind="missing" if value is None else "total",
                              title="—" if value is None else title(value),
                              sub_label=year_label(month) if index == 0 or month.endswith("-01") else "",
                              label_end=px(centre + (Decimal(4) if line else bar / 2))))
        if value is not None:
            vertices.append(f"{px(centre)},{px(top)}")
    return Chart(width=px(width), height=px(HEIGHT), plot_left=px(LEFT), plot_right=px(width - RIGHT),
                 baseline=px(base), ticks=_ticks(step, ceiling, y_of, axis_label), columns=tuple(columns),
                 line=" ".join(vertices) if line else "")


def _frame(top: Decimal, width: Decimal, count: int) -> tuple[Decimal, Decimal, Callable[[Decimal], Decimal],
                                                                Decimal, Decimal]:
    """A chart's scale for values up to ``top`` and ``count`` categories: the gridline step, the
    axis's ceiling, the y of a value (never below the baseline), the width of a category, the baseline."""
    step, ceiling = _scale(top)
    plot_height = HEIGHT - TOP - BOTTOM
    base = HEIGHT - BOTTOM

    def y_of(value: Decimal) -> Decimal:
        return base - plot_height * max(value, ZERO) / ceiling

    return step, ceiling, y_of, (width - LEFT - RIGHT) / max(count, 1), base


@dataclass(frozen=True)
class Step:
    name: str
    label: str
    amount: Decimal
    kind: str  # total (opening, closing), up, down
    href: str | None = None


def waterfall_chart(steps: Sequence[Step], *, value_label: Callable[[Decimal], str],
                    axis_label: Callable[[Decimal], str]) -> Chart:
    """Opening and closing as full columns, each movement as a floating column from the running
    total: up for new, expansion and reactivation, down for contraction and churn."""
    running = ZERO
    spans = []
    for step in steps:
        if step.kind == "total":
            low, high = ZERO, step.amount
            running = step.amount
        elif step.kind == "up":
            low, high = running, running + step.amount
            running = high
        else:
            low, high = running - step.amount, running
            running = low
        spans.append((min(low, high), max(low, high)))
    width = WATERFALL_WIDTH
    step_size, ceiling, y_of, slot, base = _frame(max((high for _, high in spans), default=ZERO), width, len(steps))
    bar = slot * Decimal("0.6")
    columns = []
    for index, (item, (low, high)) in enumerate(zip(steps, spans, strict=True)):
        centre = LEFT + slot * index + slot / 2
        top, bottom = y_of(high), y_of(low)
        height = max(bottom - top, Decimal(1)) if item.amount else ZERO
        sign = "" if not item.amount else "+" if item.kind == "up" else "−" if item.kind == "down" else ""
        columns.append(Column(x=px(centre - bar / 2), y=px(top), width=px(bar), height=px(height),
                              centre=px(centre), label_y=px(top - 6), label=sign + value_label(item.amount),
                              axis_label=item.label, href=item.href, kind=item.kind))
    return Chart(width=px(width), height=px(HEIGHT), plot_left=px(LEFT), plot_right=px(width - RIGHT),
                 baseline=px(base), ticks=_ticks(step_size, ceiling, y_of, axis_label), columns=tuple(columns),
                 line="")


def band_chart(points: Sequence[tuple[str, Decimal, Decimal, Decimal, Decimal]], *,
               value_label: Callable[[Decimal], str], title: Callable[[Decimal, Decimal, Decimal, Decimal], str],
               axis_label: Callable[[Decimal], str], month_label: Callable[[str], str],
               year_label: Callable[[str], str]) -> Chart:
    """A forecast over months: ``(month, contracted, expected, low, high)`` each; the band from low
    to high as an area, the expected value as a line with a point per month (the last one labelled,
    each with every figure as its title) and the contracted value as a dashed line."""
    width = MONTH_WIDTH
    step, ceiling, y_of, slot, base = _frame(max((max(c, h) for _, c, _, _, h in points), default=ZERO), width,
                                             len(points))
    columns, expected, contracted, highs, lows = [], [], [], [], []
    for index, (month, committed, value, low, high) in enumerate(points):
        centre = LEFT + slot * index + slot / 2
        y = y_of(value)
        last = index == len(points) - 1
        columns.append(Column(x=px(centre), y=px(y), width="0", height="0", centre=px(centre), label_y=px(y - 10),
                              axis_label=month_label(month), label=value_label(value) if last else "",
                              kind="total", title=title(committed, value, low, high),
                              sub_label=year_label(month) if index == 0 or month.endswith("-01") else "",
                              label_end=px(centre + 4)))
        expected.append(f"{px(centre)},{px(y)}")
        contracted.append(f"{px(centre)},{px(y_of(committed))}")
        highs.append(f"{px(centre)},{px(y_of(high))}")
        lows.append(f"{px(centre)},{px(y_of(low))}")
    return Chart(width=px(width), height=px(HEIGHT), plot_left=px(LEFT), plot_right=px(width - RIGHT),
                 baseline=px(base), ticks=_ticks(step, ceiling, y_of, axis_label), columns=tuple(columns),
                 line=" ".join(expected), band=" ".join(highs + lows[::-1]), second_line=" ".join(contracted))
