"""A bar chart by day as plain SVG geometry (rendered by a template, no JavaScript)."""
from __future__ import annotations

import dataclasses
from datetime import date, timedelta

WIDTH, HEIGHT = 720, 220
LEFT, RIGHT, TOP, BOTTOM = 56, 8, 12, 28


@dataclasses.dataclass(frozen=True)
class Bar:
    day: str
    value: float
    x: float
    y: float
    width: float
    height: float
    label: bool                # whether the day is written under the axis


@dataclasses.dataclass(frozen=True)
class BarChart:
    bars: list[Bar]
    peak: float
    width: int = WIDTH
    height: int = HEIGHT
    left: int = LEFT
    top: int = TOP
    base: int = HEIGHT - BOTTOM


def days_between(first: date, last: date) -> list[str]:
    return [(first + timedelta(days=n)).isoformat() for n in range((last - first).days + 1)]


def bar_chart(values: dict[str, float], days: list[str]) -> BarChart:
    """One bar per day in ``days`` (zero where ``values`` has none), scaled to the peak."""
    peak = max((values.get(day, 0) for day in days), default=0) or 1
    plot_width, plot_height = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
    slot = plot_width / max(len(days), 1)
    every = max(len(days) // 8, 1)
    bars = []
    for index, day in enumerate(days):
        value = values.get(day, 0)
        height = round(plot_height * value / peak, 2)
        bars.append(Bar(day, value, round(LEFT + index * slot + slot * 0.1, 2), round(TOP + plot_height - height, 2),
                        round(max(slot * 0.8, 1), 2), height, index % every == 0))
    return BarChart(bars, peak)
