"""Server-rendered SVG charts for the admin pages: no script, a <title> and <desc>, and text labels.
The funnel of emails sent per step, and an experiment's conversion rate per arm with its interval."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from html import escape
from typing import Final

from markupsafe import Markup

WIDTH: Final = 640
ROW_HEIGHT: Final = 46
LABEL_BASELINE: Final = 16
BAR_TOP: Final = 22
BAR_HEIGHT: Final = 18
TOP_MARGIN: Final = 6
# A stage with a few emails still shows as a sliver rather than vanishing.
MIN_BAR: Final = 2


@dataclass(frozen=True)
class FunnelStage:
    label: str
    value: int
    note: str = ""
    """Shown after the value, e.g. "2 unsubscribed after"."""


def percent_of(value: int, first: int) -> str:
    if first <= 0:
        return ""
    return f"{round(100 * value / first)}%"


def _stage_text(stage: FunnelStage, first: int, unit: str) -> str:
    parts = [f"{stage.label}: {stage.value} {unit}"]
    share = percent_of(stage.value, first)
    if share:
        parts[0] += f" ({share})"
    if stage.note:
        parts.append(stage.note)
    return ", ".join(parts)


def funnel_svg(title: str, stages: Sequence[FunnelStage], *, chart_id: str,
               unit: str = "sent") -> Markup:
    """Centred bars, one per stage, scaled to the largest; each labelled with its value and its share
    of the first stage. `chart_id` makes the ids of <title> and <desc> unique on the page."""
    safe_id = re.sub(r"[^A-Za-z0-9_-]", "-", chart_id) or "chart"
    height = TOP_MARGIN * 2 + ROW_HEIGHT * max(1, len(stages))
    largest = max((stage.value for stage in stages), default=0)
    first = stages[0].value if stages else 0
    if stages and largest:
        description = "; ".join(_stage_text(stage, first, unit) for stage in stages) + "."
    else:
        description = "Nothing in this period."
    title_id, desc_id = f"{safe_id}-title", f"{safe_id}-desc"
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="funnel" viewBox="0 0 {WIDTH} {height}" '
        f'width="{WIDTH}" height="{height}" role="img" aria-labelledby="{title_id} {desc_id}">',
        f'<title id="{title_id}">{escape(title)}</title>',
        f'<desc id="{desc_id}">{escape(description)}</desc>',
    ]
    for index, stage in enumerate(stages):
        top = TOP_MARGIN + index * ROW_HEIGHT
        bar = 0 if not largest else max(MIN_BAR if stage.value else 0,
                                         round(WIDTH * stage.value / largest))
        left = (WIDTH - bar) // 2
        parts.append(
            f'<g class="funnel-stage">'
            f'<text class="funnel-label" x="0" y="{top + LABEL_BASELINE}">'
            f'{escape(_stage_text(stage, first, unit))}</text>'
            f'<rect class="funnel-track" x="0" y="{top + BAR_TOP}" width="{WIDTH}" '
            f'height="{BAR_HEIGHT}" fill="#eceef1"/>'
            f'<rect class="funnel-bar" x="{left}" y="{top + BAR_TOP}" width="{bar}" '
            f'height="{BAR_HEIGHT}" fill="#1d4f91"/>'
            f'</g>'
        )
    parts.append("</svg>")
    return Markup("".join(parts))


@dataclass(frozen=True)
class ArmBar:
    """One arm of an experiment: its people judged, their conversions, the rate and its 95%
    interval, and its probability of being best (None for the holdout)."""

    key: str
    sends: int
    conversions: int
    rate: float
    low: float
    high: float
    p_best: float | None


def arm_text(arm: ArmBar) -> str:
    text = (f"{arm.key}: {arm.sends} sends, {arm.conversions} conversions, {arm.rate:.1%} "
            f"(95% interval {arm.low:.1%} to {arm.high:.1%})")
    return text + ("" if arm.p_best is None else f", P(best) {arm.p_best:.1%}")


def _arm_row(arm: ArmBar, top: int, scale: float) -> str:
    """The label, the track, the bar to the rate and the whisker over the interval."""
    def x(value: float) -> int:
        return round(WIDTH * min(value, scale) / scale) if scale else 0

    middle = top + BAR_TOP + BAR_HEIGHT // 2
    bar = max(MIN_BAR if arm.rate else 0, x(arm.rate))
    return (
        f'<g class="arm" data-arm="{escape(arm.key)}">'
        f'<text class="funnel-label" x="0" y="{top + LABEL_BASELINE}">{escape(arm_text(arm))}</text>'
        f'<rect class="funnel-track" x="0" y="{top + BAR_TOP}" width="{WIDTH}" '
        f'height="{BAR_HEIGHT}" fill="#eceef1"/>'
        f'<rect class="funnel-bar arm-bar" x="0" y="{top + BAR_TOP}" width="{bar}" '
        f'height="{BAR_HEIGHT}" fill="#1d4f91"/>'
        f'<line class="arm-interval" x1="{x(arm.low)}" y1="{middle}" x2="{x(arm.high)}" '
        f'y2="{middle}" stroke="#d4351c" stroke-width="2"/>'
        + "".join(f'<line class="arm-interval-end" x1="{x(end)}" y1="{middle - 6}" x2="{x(end)}" '
                  f'y2="{middle + 6}" stroke="#d4351c" stroke-width="2"/>'
                  for end in (arm.low, arm.high))
        + "</g>"
    )


def experiment_svg(title: str, arms: Sequence[ArmBar], *, chart_id: str) -> Markup:
    """One bar per arm from zero to its conversion rate, with a whisker over its 95% interval,
    all on one scale up to the highest end of an interval."""
    safe_id = re.sub(r"[^A-Za-z0-9_-]", "-", chart_id) or "chart"
    height = TOP_MARGIN * 2 + ROW_HEIGHT * max(1, len(arms))
    scale = max((arm.high for arm in arms), default=0.0)
    description = ("Conversion rate per arm, the line over each bar its 95% interval: "
                   + "; ".join(arm_text(arm) for arm in arms) + ".") if arms else \
        "Nobody judged yet."
    title_id, desc_id = f"{safe_id}-title", f"{safe_id}-desc"
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="funnel experiment-chart" '
        f'viewBox="0 0 {WIDTH} {height}" width="{WIDTH}" height="{height}" role="img" '
        f'aria-labelledby="{title_id} {desc_id}">',
        f'<title id="{title_id}">{escape(title)}</title>',
        f'<desc id="{desc_id}">{escape(description)}</desc>',
        *(_arm_row(arm, TOP_MARGIN + index * ROW_HEIGHT, scale) for index, arm in enumerate(arms)),
        "</svg>",
    ]
    return Markup("".join(parts))
